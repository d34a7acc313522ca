#!/usr/bin/env bash
# bench/tune.sh: every Pingora setting that can matter on the request path, measured one at a
# time against the current settings (edge_proxy::server::tuning), on bare Pingora
# (examples/bare_pingora.rs) and on the edge proxy with routing only (examples/tuned_proxy.rs),
# with the same pinning and upstream as `make bench`. Each variant is run PAIRS times, each
# time right after a run of the current settings, so drift hits both alike; the change is the
# median of the paired ratios.
#
#   bench/tune.sh                          all settings below
#   bench/tune.sh PINGORA_WORK_STEALING=0  just these
#
# Results: printed, and written to bench/results/tuning.md. Not part of `make bench` (about 15
# minutes); run it when Pingora or the machine changes, and move what helps into `tuning`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5s}
PAIRS=${PAIRS:-3}
# shellcheck source=bench/lib.sh
. bench/lib.sh
RUNS=1
OUT=bench/results/tuning.md

if [ $# -gt 0 ]; then
    SETTINGS=("$@")
else
    SETTINGS=(
        PINGORA_WORK_STEALING=0
        PINGORA_WORK_STEALING=1
        PINGORA_LISTENER_TASKS=2
        PINGORA_KEEPALIVE_POOL=16
        PINGORA_KEEPALIVE_POOL=1024
        PINGORA_READ_BUFFER=4096
        PINGORA_READ_BUFFER=16384
        PINGORA_WRITE_BUFFER=0
        PINGORA_WRITE_BUFFER=16384
        PINGORA_UPSTREAM_TIMEOUTS_MS=30000
        PINGORA_TOKIO_TIMEOUTS_ABOVE=never
        ALLOCATOR=system
    )
fi

install_tools
cargo build --locked --release -p edge-proxy --example bare_pingora --example tuned_proxy 2>&1 | tail -n 1
if printf '%s\n' "${SETTINGS[@]}" | grep -qx ALLOCATOR=system; then
    # The allocator is chosen at build time: build the variant once, keep its binaries aside.
    log "building the examples with the system allocator"
    cargo build --locked --release -p edge-proxy --features system-allocator \
        --example bare_pingora --example tuned_proxy 2>&1 | tail -n 1
    mkdir -p "$WORK/system"
    cp target/release/examples/bare_pingora target/release/examples/tuned_proxy "$WORK/system/"
    cargo build --locked --release -p edge-proxy --example bare_pingora --example tuned_proxy 2>&1 | tail -n 1
fi
start_upstreams
edge_config routing 18084 18094 routing

# measure TARGET SETTING: one run -> JSON (rps, p99, CPU per request)
measure() {
    local target=$1 setting=$2 pid port bin=target/release/examples
    local envs=(BENCH_SETTING="$setting")
    case "$setting" in
        current) ;;
        ALLOCATOR=system) bin=$WORK/system ;;
        *) envs+=("$setting") ;;
    esac
    if [ "$target" = bare ]; then
        port=18086
        env "${envs[@]}" taskset -c 0 "$bin/bare_pingora" 127.0.0.1:$port 127.0.0.1:18081 >/dev/null 2>&1 &
    else
        port=18084
        env "${envs[@]}" RUST_LOG=warn taskset -c 0 "$bin/tuned_proxy" "$WORK/routing.toml" >/dev/null 2>&1 &
    fi
    pid=$!
    wait_port "$port"
    run_wrk "http://127.0.0.1:$port/api/items" "$pid"
    stop_pid "$pid"
}

CPU=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
RESULTS="$WORK/tuning.json"
: >"$RESULTS"
for target in bare edge; do
    for setting in "${SETTINGS[@]}"; do
        # The upstream timeouts are a bare-Pingora experiment: the edge proxy always sets them.
        [ "$target" = edge ] && [ "${setting%%=*}" = PINGORA_UPSTREAM_TIMEOUTS_MS ] && continue
        log "$target: $setting"
        for _ in $(seq 1 "$PAIRS"); do
            current=$(measure "$target" current)
            variant=$(measure "$target" "$setting")
            python3 -c 'import json,sys; print(json.dumps({"target": sys.argv[1], "setting": sys.argv[2], "current": json.loads(sys.argv[3]), "variant": json.loads(sys.argv[4])}))' \
                "$target" "$setting" "$current" "$variant" >>"$RESULTS"
        done
    done
done

python3 - "$RESULTS" "$OUT" "$CPU" "$DURATION" "$PAIRS" <<'PY'
import json, statistics, sys
path, out, cpu, duration, pairs = sys.argv[1:6]
rows = {}
for line in open(path):
    r = json.loads(line)
    rows.setdefault((r["target"], r["setting"]), []).append(r)
lines = [
    "# Pingora settings, one at a time",
    "",
    "Machine: %s. Each variant run %s times for %s, each time right after a run with the current" % (cpu, pairs, duration),
    "settings (`edge_proxy::server::tuning`); change = median of the paired ratios.",
    "",
    "| target | setting | current req/s | variant req/s | change | current CPU/req | variant CPU/req | current p99 | variant p99 |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
]
for (target, setting), runs in rows.items():
    med = lambda side, key: statistics.median(r[side][key] for r in runs)
    change = statistics.median(r["variant"]["rps"] / r["current"]["rps"] for r in runs) - 1
    lines.append("| %s | `%s` | %.0f | %.0f | %+.1f %% | %.1f us | %.1f us | %d us | %d us |" % (
        "bare Pingora" if target == "bare" else "edge proxy, routing only", setting,
        med("current", "rps"), med("variant", "rps"), change * 100,
        med("current", "cpu_us_per_request"), med("variant", "cpu_us_per_request"),
        med("current", "p99_us"), med("variant", "p99_us")))
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY
log "written to $OUT"
