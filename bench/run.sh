#!/usr/bin/env bash
# `make bench`: the edge proxy against nginx and HAProxy on one fixed upstream, side by side in
# one run on this machine, plus the functions' size, cold start and local warm latency.
#
#   bench/run.sh            full run (3 runs x 10 s per configuration)
#   BENCH_SMOKE=1 bench/run.sh   quick check that the harness works (1 run x 2 s)
#
# CPU pinning: the load generator (wrk) runs on CPU 1; the proxy under test and the upstream
# share CPU 0; every configuration gets the same connections, duration and pinning.
# Results: printed, and written to bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.tools/venv/bin:$PATH" AWS_EC2_METADATA_DISABLED=true

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
if [ "${BENCH_SMOKE:-0}" = 1 ]; then RUNS=1; DURATION=2s; fi
WORK=$(mktemp -d /tmp/edge-bench.XXXXXX)
mkdir -p bench/results
OUT=bench/results/latest.md
PIDS=()

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    pkill -f "$WORK" 2>/dev/null || true
    wait 2>/dev/null || true
    scripts/stack.sh stop test >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v haproxy >/dev/null || missing+=(haproxy)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} (apt)"
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

wait_port() {
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "port $1 did not open" >&2; return 1
}

stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

start_upstreams() {
    mkdir -p "$WORK/up"
    cat >"$WORK/up/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up;
    uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
    server {
        listen 127.0.0.1:18081;
        listen 127.0.0.1:18087;
        location / { default_type application/json; return 200 '{"id":"bench","ok":true}'; }
    }
}
CONF
    taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
    PIDS+=($!)
    wait_port 18081
}

start_nginx_proxy() {
    mkdir -p "$WORK/np"
    cat >"$WORK/np/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/np/nginx.pid;
error_log $WORK/np/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $WORK/np; proxy_temp_path $WORK/np; fastcgi_temp_path $WORK/np;
    uwsgi_temp_path $WORK/np; scgi_temp_path $WORK/np;
    upstream up { server 127.0.0.1:18081; keepalive 64; }
    server {
        listen 127.0.0.1:18082;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
    taskset -c 0 nginx -p "$WORK/np" -c "$WORK/np/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
    echo $!
}

start_haproxy() {
    cat >"$WORK/haproxy.cfg" <<CONF
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:18083
    default_backend up
backend up
    http-reuse always
    server s1 127.0.0.1:18081
CONF
    taskset -c 0 haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
    echo $!
}

edge_config() { # name listen admin full?
    local auth="" limit="" route_auth="" second="" extra=""
    if [ "$4" = full ]; then
        auth=$'[auth]\n[[auth.api-keys]]\nconsumer = "bench"\nkey-sha256 = "0fc44cf1dc0c85f7811e9f7fd516a92ea1f30e017687ad81c57b32674df898c3"\nscopes = ["bench"]'
        limit=$'[rate-limit]\nrequests-per-second = 1000000\nburst = 1000000'
        route_auth=$'auth = "api-key"\nscopes = ["bench"]'
        second=', "http://127.0.0.1:18087"'
        extra=$'balancer = "least-in-flight"\n[services.up.health-check]\ninterval-ms = 1000'
    else
        extra=$'[services.up.health-check]\nenabled = false'
    fi
    cat >"$WORK/$1.toml" <<CONF
[server]
listen = "127.0.0.1:$2"
admin-listen = "127.0.0.1:$3"
threads = 1
grace-period-seconds = 0
graceful-shutdown-timeout-seconds = 1
$auth
$limit
[services.up]
instances = ["http://127.0.0.1:18081"$second]
$extra
[[routes]]
prefix = "/"
service = "up"
$route_auth
CONF
}

start_edge() { # name port admin full?
    edge_config "$1" "$2" "$3" "$4"
    if [ "$4" = full ]; then
        taskset -c 0 target/release/edge-proxy --log-format json run --config "$WORK/$1.toml" >/dev/null 2>"$WORK/$1-access.log" &
    else
        RUST_LOG=warn taskset -c 0 target/release/edge-proxy --log-format json run --config "$WORK/$1.toml" >/dev/null 2>&1 &
    fi
    echo $!
}

# run_wrk URL [script-env...]: median of RUNS runs -> JSON
run_wrk() {
    local url=$1; shift
    local results=()
    for _ in $(seq 1 "$RUNS"); do
        results+=("$(env "$@" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/report.lua "$url" | tail -n 1)")
    done
    printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
print(json.dumps({"rps": med("rps"), "p50_us": med("p50_us"), "p99_us": med("p99_us"),
                  "p999_us": med("p999_us"), "errors": sum(r["errors"] for r in runs),
                  "non2xx": sum(r["non2xx"] for r in runs), "runs": len(runs)}))'
}

log "installing and building what the benchmark needs"
install_tools
scripts/setup.sh >/dev/null 2>&1 || SKIP_BUILD=1 scripts/setup.sh
cargo build --locked --release -p edge-proxy -p user-service -p product-service --bins \
    --example limiter_memory --example bare_pingora 2>&1 | tail -n 1

CPU=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
CORES=$(nproc)
log "proxy overhead: $RUNS runs x $DURATION, $CONNECTIONS connections, wrk on CPU 1, server side on CPU 0"
start_upstreams
declare -A RESULT
RESULT[direct]=$(run_wrk http://127.0.0.1:18081/api/items)

pid=$(start_nginx_proxy); wait_port 18082
RESULT[nginx]=$(run_wrk http://127.0.0.1:18082/api/items); stop_pid "$pid"

pid=$(start_haproxy); wait_port 18083
RESULT[haproxy]=$(run_wrk http://127.0.0.1:18083/api/items); stop_pid "$pid"

# Pingora with none of our code: what the framework itself costs here.
taskset -c 0 target/release/examples/bare_pingora 127.0.0.1:18086 127.0.0.1:18081 >/dev/null 2>&1 &
pid=$!; PIDS+=("$pid"); wait_port 18086
RESULT[pingora]=$(run_wrk http://127.0.0.1:18086/api/items); stop_pid "$pid"

pid=$(start_edge routing 18084 18094 routing); wait_port 18084
RESULT[edge-routing]=$(run_wrk http://127.0.0.1:18084/api/items); stop_pid "$pid"

pid=$(start_edge full 18085 18095 full); wait_port 18085; sleep 1
EDGE_RSS_IDLE=$(rss_kb "$pid")
RESULT[edge-full]=$(run_wrk http://127.0.0.1:18085/api/items HEADER_NAME=x-api-key HEADER_VALUE=lambda-edge-dev-key)
EDGE_RSS_LOAD=$(rss_kb "$pid")
# Under load again to sample RSS mid-run.
(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d3s -s bench/report.lua http://127.0.0.1:18085/api/items >/dev/null 2>&1 &)
sleep 2; EDGE_RSS_LOAD=$(( $(rss_kb "$pid") > EDGE_RSS_LOAD ? $(rss_kb "$pid") : EDGE_RSS_LOAD )); sleep 2
ACCESS_LINES=$(wc -l <"$WORK/full-access.log")
stop_pid "$pid"

log "rate limiter memory"
LIMITER=$(target/release/examples/limiter_memory 1000 100000 1000000)

log "functions: bootstrap size, cold start, idle RSS"
# The functions are built as for Lambda: size-optimised (opt-level z, fat LTO, stripped), in a
# target directory of their own so the proxy's speed-optimised release build is left alone.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat
LAMBDA_TARGET="$ROOT/target/lambda-size"
FUNCTIONS=""
for fn in user-service product-service; do
    table_env=USERS_TABLE; [ "$fn" = product-service ] && table_env=PRODUCTS_TABLE
    CARGO_TARGET_DIR="$LAMBDA_TARGET" cargo lambda build --release --bin "$fn" >/dev/null 2>&1
    cp "$LAMBDA_TARGET/lambda/$fn/bootstrap" "$WORK/$fn-x86_64"
    x86=$(stat -c %s "$WORK/$fn-x86_64")
    colds=()
    for _ in $(seq 1 "$((RUNS * 3))"); do
        colds+=("$(python3 bench/runtime_api.py "$WORK/$fn-x86_64" "$table_env=bench")")
    done
    stats=$(printf '%s\n' "${colds[@]}" | python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
print("%.1f ms | %d KiB" % (statistics.median(r["init_to_first_answer_ms"] for r in runs),
                           statistics.median(r["idle_rss_kb"] for r in runs)))')
    arm="n/a"
    if CARGO_TARGET_DIR="$LAMBDA_TARGET" cargo lambda build --release --arm64 --bin "$fn" >/dev/null 2>&1; then
        arm=$(stat -c %s "$LAMBDA_TARGET/lambda/$fn/bootstrap")
    fi
    FUNCTIONS+="| $fn | $((x86 / 1024)) KiB | $([ "$arm" = n/a ] && echo n/a || echo "$((arm / 1024)) KiB") | $stats |"$'\n'
done
unset CARGO_PROFILE_RELEASE_OPT_LEVEL CARGO_PROFILE_RELEASE_LTO

log "warm latency through proxy -> cargo lambda watch -> local DynamoDB (local-dev figure)"
scripts/stack.sh start test >/dev/null 2>&1
WARM_GET=$(taskset -c 1 wrk -t1 -c4 -d"$DURATION" -s bench/report.lua -H 'x-api-key: lambda-edge-dev-key' \
    "http://127.0.0.1:8180/api/users?limit=1" | tail -n 1)
WARM_POST=$(taskset -c 1 wrk -t1 -c4 -d"$DURATION" -s bench/post_user.lua "http://127.0.0.1:8180/api/users" | tail -n 1)
scripts/stack.sh stop test >/dev/null 2>&1

python3 - "$OUT" <<PY
import json, sys
out = sys.argv[1]
results = {k: json.loads(v) for k, v in [
    ("direct", '''${RESULT[direct]}'''), ("nginx", '''${RESULT[nginx]}'''), ("haproxy", '''${RESULT[haproxy]}'''),
    ("pingora, bare (no filters)", '''${RESULT[pingora]}'''),
    ("edge-proxy, routing only", '''${RESULT[edge-routing]}'''), ("edge-proxy, everything on", '''${RESULT[edge-full]}''')]}
nginx = results["nginx"]
direct = results["direct"]
lines = [
    "# Benchmark results",
    "",
    "Machine: ${CPU}, ${CORES} cores. wrk on CPU 1; proxy and upstream on CPU 0; ${CONNECTIONS} connections;",
    "median of ${RUNS} run(s) of ${DURATION} each. Upstream: nginx returning a small JSON body (keep-alive).",
    "",
    "| configuration | requests/s | p50 | p99 | p99.9 | rps vs nginx | p99 vs nginx | added p50 over direct | errors / non-2xx |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for name, r in results.items():
    lines.append("| %s | %.0f | %d us | %d us | %d us | %.2fx | %.2fx | %+d us | %d / %d |" % (
        name, r["rps"], r["p50_us"], r["p99_us"], r["p999_us"], r["rps"] / nginx["rps"],
        r["p99_us"] / max(nginx["p99_us"], 1), r["p50_us"] - direct["p50_us"], r["errors"], r["non2xx"]))
lines += [
    "",
    "Pingora, bare = Pingora's proxy with an empty filter set and one upstream",
    "(edge-proxy/examples/bare_pingora.rs), same thread count and allocator as the edge proxy.",
    "",
    "Everything on = API-key auth, rate limit (set high enough not to reject), circuit breakers,",
    "two instances with least-in-flight balancing and health checks, metrics, and a JSON access-log",
    "line per request written to a file (${ACCESS_LINES} lines in the last run).",
    "",
    "Edge proxy RSS: idle ${EDGE_RSS_IDLE} KiB, under load ${EDGE_RSS_LOAD} KiB.",
    "",
    "Rate limiter memory (fixed table of 1 Mi cells), by distinct client keys:",
    "",
    "| keys | process RSS | growth over baseline | limiter table |",
    "|---:|---:|---:|---:|",
]
for line in '''$LIMITER'''.strip().splitlines():
    m = json.loads(line)
    lines.append("| %d | %d KiB | %d KiB | %d KiB |" % (m["keys"], m["rss_kb"], m["rss_growth_kb"], m["limiter_table_kb"]))
lines += [
    "",
    "Functions (cargo lambda build --release with opt-level z and fat LTO, stripped; cold start and",
    "idle RSS of the x86_64 build = process spawn to first answered invocation against a local",
    "Runtime API, median):",
    "",
    "| function | bootstrap x86_64 | bootstrap arm64 | cold start | idle RSS |",
    "|---|---:|---:|---:|---:|",
]
lines += [l for l in '''$FUNCTIONS'''.strip().splitlines()]
get, post = json.loads('''$WARM_GET'''), json.loads('''$WARM_POST''')
lines += [
    "",
    "**Local-dev figure, not an AWS one**: warm latency through the proxy, cargo lambda watch (debug",
    "build) and moto, 4 connections:",
    "",
    "| request | requests/s | p50 | p99 |",
    "|---|---:|---:|---:|",
    "| GET /api/users?limit=1 | %.0f | %d us | %d us |" % (get["rps"], get["p50_us"], get["p99_us"]),
    "| POST /api/users | %.0f | %d us | %d us |" % (post["rps"], post["p50_us"], post["p99_us"]),
]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
log "written to $OUT"
