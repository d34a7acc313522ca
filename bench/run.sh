#!/usr/bin/env bash
# `make bench`: the edge proxy against nginx and HAProxy on one fixed upstream, side by side in
# one run on this machine, plus the functions' size, cold start and local warm latency.
#
#   bench/run.sh                       full run (3 runs x 10 s per configuration)
#   BENCH_SMOKE=1 bench/run.sh         quick check that the harness works (1 run x 2 s)
#   BENCH_ONLY=proxies bench/run.sh    the proxy rows only (no limiter, functions, local stack)
#   BENCH_COMPARE=<git ref> bench/run.sh
#                                      also builds that ref's edge proxy and runs it beside the
#                                      working tree's, in the same run (rows marked with the ref),
#                                      each of its runs in turn with the working tree's
#
# The proxy rows the goals compare (direct, nginx, HAProxy, bare Pingora, the edge proxy's)
# take their runs in turn, one group: each ratio between them is from runs seconds apart.
#
# Per proxy row: requests/s and latency as wrk saw them, and the CPU time the proxy's process
# spent per request (from /proc/<pid>/task/*/schedstat, summed over its threads and children,
# divided by the requests of that run). For the edge proxy, heap allocations per request: a
# short extra run of examples/counting_proxy.rs (the same proxy behind a counting allocator).
#
# CPU pinning: the load generator (wrk) runs on CPU 1; the proxy under test and the upstream
# share CPU 0; every configuration gets the same connections, duration and pinning.
# Results: printed, and written to bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.tools/venv/bin:$PATH" AWS_EC2_METADATA_DISABLED=true

# shellcheck source=bench/lib.sh
. bench/lib.sh
OUT=bench/results/latest.md

log "installing and building what the benchmark needs"
install_tools
scripts/setup.sh >/dev/null 2>&1 || SKIP_BUILD=1 scripts/setup.sh
COMPARE_BIN="" COMPARE_REF=""
if [ -n "${BENCH_COMPARE:-}" ]; then
    COMPARE_REF=$(git rev-parse --short "$BENCH_COMPARE")
    COMPARE_BIN=$(build_compare "$COMPARE_REF" release)
fi
cargo build --locked --release -p edge-proxy -p user-service -p product-service --bins \
    --example limiter_memory --example bare_pingora --example counting_proxy 2>&1 | tail -n 1
if [ -n "$COMPARE_BIN" ] && cmp -s "$COMPARE_BIN" target/release/edge-proxy; then
    log "note: $COMPARE_REF builds the same edge-proxy binary as the working tree"
fi

CPU=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
CORES=$(nproc)
log "proxy overhead: $RUNS runs x $DURATION, $CONNECTIONS connections, wrk on CPU 1, server side on CPU 0"
start_upstreams
ROWS=()
declare -A RESULT
row() { ROWS+=("$1"); RESULT[$1]=$2; }
KEY=(HEADER_NAME=x-api-key HEADER_VALUE=lambda-edge-dev-key)
# Rows compared with each other take their runs in turn, every server up at once and idle
# while another is measured, so drift during a run (this machine's speed moves by 10 % and
# more between runs) falls on each alike: in_turn_add NAME URL PID [wrk script env...] for
# each, then in_turn_run [curl options for the warm-up request] (the servers are left
# running).
IN_TURN=()
IN_TURN_ENVS=()
in_turn_add() { IN_TURN+=("$1" "$2" "$3"); shift 3; IN_TURN_ENVS+=("$*"); }
in_turn_run() {
    local i n=$((${#IN_TURN[@]} / 3))
    for ((i = 0; i < n; i++)); do
        wait_port "${IN_TURN[3 * i + 1]:17:5}"
        curl -s -o /dev/null "$@" "${IN_TURN[3 * i + 1]}" || true
        : >"$WORK/in-turn-$i.runs"
    done
    for _ in $(seq 1 "$RUNS"); do
        for ((i = 0; i < n; i++)); do
            # shellcheck disable=SC2086 # the entry's env: NAME=value words without spaces
            wrk_once "${IN_TURN[3 * i + 1]}" "${IN_TURN[3 * i + 2]}" ${IN_TURN_ENVS[i]} >>"$WORK/in-turn-$i.runs"
        done
    done
    for ((i = 0; i < n; i++)); do
        row "${IN_TURN[3 * i]}" "$(summarise_runs <"$WORK/in-turn-$i.runs")"
    done
    IN_TURN=()
    IN_TURN_ENVS=()
}

# Every row the goals compare (direct, nginx, HAProxy, bare Pingora, the edge proxy's, and
# with BENCH_COMPARE the compare build's edge proxy rows) in one group: the ratios between
# them come from runs taken in turn, not from blocks minutes apart.
in_turn_add direct http://127.0.0.1:18081/api/items "$UPSTREAM_PID"
nginx_pid=$(start_nginx_proxy)
in_turn_add nginx http://127.0.0.1:18082/api/items "$nginx_pid"
haproxy_pid=$(start_haproxy)
in_turn_add haproxy http://127.0.0.1:18083/api/items "$haproxy_pid"
# Pingora with none of our code: what the framework itself costs here.
taskset -c 0 target/release/examples/bare_pingora 127.0.0.1:18086 127.0.0.1:18081 >/dev/null 2>&1 &
bare_pid=$!; PIDS+=("$bare_pid")
in_turn_add "pingora, bare (no filters)" http://127.0.0.1:18086/api/items "$bare_pid"
routing_pid=$(start_edge routing 18084 18094 routing)
in_turn_add "edge-proxy, routing only" http://127.0.0.1:18084/api/items "$routing_pid"
if [ -n "$COMPARE_BIN" ]; then
    routing_compare_pid=$(EDGE_BIN=$COMPARE_BIN start_edge routing-compare 18110 18111 routing)
    in_turn_add "edge-proxy ($COMPARE_REF), routing only" http://127.0.0.1:18110/api/items "$routing_compare_pid"
fi
pid=$(start_edge full 18085 18095 full)
in_turn_add "edge-proxy, everything on" http://127.0.0.1:18085/api/items "$pid" "${KEY[@]}"
if [ -n "$COMPARE_BIN" ]; then
    compare_pid=$(EDGE_BIN=$COMPARE_BIN start_edge full-compare 18112 18113 full)
    in_turn_add "edge-proxy ($COMPARE_REF), everything on" http://127.0.0.1:18112/api/items "$compare_pid" "${KEY[@]}"
fi
wait_port 18085; sleep 1
EDGE_RSS_IDLE=$(rss_kb "$pid")
in_turn_run -H 'x-api-key: lambda-edge-dev-key'
EDGE_RSS_LOAD=$(rss_kb "$pid")
# Under load again to sample RSS mid-run.
(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d3s -s bench/report.lua -H 'x-api-key: lambda-edge-dev-key' http://127.0.0.1:18085/api/items >/dev/null 2>&1 &)
sleep 2; EDGE_RSS_LOAD=$(( $(rss_kb "$pid") > EDGE_RSS_LOAD ? $(rss_kb "$pid") : EDGE_RSS_LOAD )); sleep 2
ACCESS_LINES=$(wc -l <"$WORK/full-access.log")
for p in "$nginx_pid" "$haproxy_pid" "$bare_pid" "$routing_pid" "$pid"; do stop_pid "$p"; done
if [ -n "$COMPARE_BIN" ]; then stop_pid "$routing_compare_pid"; stop_pid "$compare_pid"; fi
# The same everything-on proxy with its limit counted in Redis (scope = "global", default
# lease): what a limit shared by every replica costs against the per-replica one above.
redis_pid=$(start_redis)
pid=$(start_edge global 18092 18093 global); wait_port 18092; sleep 1
row "edge-proxy, everything on, global limit (Redis)" "$(run_wrk http://127.0.0.1:18092/api/items "$pid" "${KEY[@]}")"
stop_pid "$pid"; stop_pid "$redis_pid"

# Cached reads: every request after the first answered from the proxy's own cache, the
# upstream saying `Cache-Control: public, max-age=3600`; nginx's proxy_cache and the edge
# cache (and the compare build's) in turn.
cached_pids=("$(start_nginx_cache)" "$(start_edge cached 18101 18102 cached)")
in_turn_add "nginx, proxy_cache (cached read)" http://127.0.0.1:18100/api/cached "${cached_pids[0]}"
in_turn_add "edge-proxy, edge cache (cached read)" http://127.0.0.1:18101/api/cached "${cached_pids[1]}"
# The compare build's cached row, when that build has an edge cache (its config check passes).
if [ -n "$COMPARE_BIN" ] && "$COMPARE_BIN" check --config "$WORK/cached.toml" >/dev/null 2>&1; then
    cached_pids+=("$(EDGE_BIN=$COMPARE_BIN start_edge cached-compare 18103 18104 cached)")
    in_turn_add "edge-proxy ($COMPARE_REF), edge cache (cached read)" http://127.0.0.1:18103/api/cached "${cached_pids[2]}"
fi
in_turn_run
for pid in "${cached_pids[@]}"; do stop_pid "$pid"; done

log "heap allocations per request (counting build)"
ALLOC_BARE=$(count_allocations bare 18090 18091)
ALLOC_ROUTING=$(count_allocations routing 18088 18098)
ALLOC_FULL=$(count_allocations full 18089 18099 "${KEY[@]}")

# Everything measured goes to one JSON file; bench/report.py writes the Markdown and the chart.
DATA="$WORK/results.json"
{
    echo "{\"kind\": \"meta\", \"cpu\": \"$CPU\", \"cores\": $CORES, \"connections\": $CONNECTIONS, \"runs\": $RUNS, \"duration\": \"$DURATION\", \"access_lines\": ${ACCESS_LINES:-0}, \"rss_idle_kb\": ${EDGE_RSS_IDLE:-0}, \"rss_load_kb\": ${EDGE_RSS_LOAD:-0}, \"compare\": \"$COMPARE_REF\"}"
    for name in "${ROWS[@]}"; do
        python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r.update(kind="row", name=sys.argv[1]); print(json.dumps(r))' "$name" "${RESULT[$name]}"
    done
    python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r.update(kind="allocs", name=sys.argv[1]); print(json.dumps(r))' "pingora, bare (no filters)" "$ALLOC_BARE"
    python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r.update(kind="allocs", name=sys.argv[1]); print(json.dumps(r))' "edge-proxy, routing only" "$ALLOC_ROUTING"
    python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r.update(kind="allocs", name=sys.argv[1]); print(json.dumps(r))' "edge-proxy, everything on" "$ALLOC_FULL"
} >"$DATA"

if [ "${BENCH_ONLY:-}" != proxies ]; then
log "rate limiter memory"
target/release/examples/limiter_memory 1000 100000 1000000 |
    python3 -c 'import json,sys; [print(json.dumps(dict(json.loads(l), kind="limiter"))) for l in sys.stdin if l.strip()]' >>"$DATA"

log "functions: bootstrap size, cold start, idle RSS"
# The functions are built as for Lambda: size-optimised (opt-level z, fat LTO, stripped), in a
# target directory of their own so the proxy's speed-optimised release build is left alone.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat
LAMBDA_TARGET="$ROOT/target/lambda-size"
for fn in user-service product-service; do
    table_env=USERS_TABLE; [ "$fn" = product-service ] && table_env=PRODUCTS_TABLE
    CARGO_TARGET_DIR="$LAMBDA_TARGET" cargo lambda build --release --bin "$fn" >/dev/null 2>&1
    cp "$LAMBDA_TARGET/lambda/$fn/bootstrap" "$WORK/$fn-x86_64"
    x86=$(stat -c %s "$WORK/$fn-x86_64")
    colds=()
    for _ in $(seq 1 "$((RUNS * 3))"); do
        colds+=("$(python3 bench/runtime_api.py "$WORK/$fn-x86_64" "$table_env=bench" "CURSOR_SECRET=$(python3 -c "import secrets; print(secrets.token_hex(32))")")")
    done
    arm=0
    if CARGO_TARGET_DIR="$LAMBDA_TARGET" cargo lambda build --release --arm64 --bin "$fn" >/dev/null 2>&1; then
        arm=$(stat -c %s "$LAMBDA_TARGET/lambda/$fn/bootstrap")
    fi
    printf '%s\n' "${colds[@]}" | python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
print(json.dumps({"kind": "function", "name": sys.argv[1], "x86_bytes": int(sys.argv[2]),
                  "arm_bytes": int(sys.argv[3]),
                  "cold_ms": statistics.median(r["init_to_first_answer_ms"] for r in runs),
                  "idle_rss_kb": statistics.median(r["idle_rss_kb"] for r in runs)}))' "$fn" "$x86" "$arm" >>"$DATA"
done
unset CARGO_PROFILE_RELEASE_OPT_LEVEL CARGO_PROFILE_RELEASE_LTO

log "warm latency through proxy -> cargo lambda watch -> local DynamoDB (local-dev figure)"
scripts/stack.sh start test >/dev/null 2>&1
for request in "GET /api/users?limit=1" "POST /api/users"; do
    if [ "${request%% *}" = GET ]; then
        line=$(taskset -c 1 wrk -t1 -c4 -d"$DURATION" -s bench/report.lua -H 'x-api-key: lambda-edge-dev-key' \
            "http://127.0.0.1:8180/api/users?limit=1" | tail -n 1)
    else
        line=$(taskset -c 1 wrk -t1 -c4 -d"$DURATION" -s bench/post_user.lua "http://127.0.0.1:8180/api/users" | tail -n 1)
    fi
    python3 -c 'import json,sys; r=json.loads(sys.argv[2]); r.update(kind="warm", name=sys.argv[1]); print(json.dumps(r))' "$request" "$line" >>"$DATA"
done
# Reservations per second on one product (each a transaction over the product and its own
# reservation item; the sweeper gives the stock back after 5 s).
product=$(curl -s -H 'x-api-key: lambda-edge-dev-key' -H 'content-type: application/json' \
    -d "{\"sku\":\"BENCH-$(date +%s)\",\"name\":\"Bench\",\"price_cents\":1,\"currency\":\"EUR\",\"stock\":4000000000}" \
    http://127.0.0.1:8180/api/products | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
line=$(taskset -c 1 wrk -t1 -c4 -d"$DURATION" -s bench/reserve.lua "http://127.0.0.1:8180/api/products/$product/reservations" | tail -n 1)
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(kind="warm", name="POST /api/products/{id}/reservations (one product)"); print(json.dumps(r))' "$line" >>"$DATA"
scripts/stack.sh stop test >/dev/null 2>&1
# What each reservation operation costs in DynamoDB capacity at 0, 1,000 and 10,000 open
# reservations, by the documented rules (the local endpoint reports no consumed capacity).
cargo run -q --locked -p product-service --example capacity >bench/results/reservation-capacity.md
fi

cp "$DATA" "bench/results/latest.json"
python3 bench/report.py "$DATA" "$OUT" "${OUT%.md}.svg"
log "written to $OUT and ${OUT%.md}.svg"
