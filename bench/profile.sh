#!/usr/bin/env bash
# bench/profile.sh: where each proxy's CPU goes under `make bench`'s load (same upstream,
# connections and pinning): perf samples (cpu-clock, with call graphs) of nginx, bare Pingora
# and the edge proxy (routing only, everything on), reduced by bench/profile_report.py to the
# kernel/user split, the share of each area of code and the top functions.
#
#   bench/profile.sh                 all four
#   bench/profile.sh bare routing    just these (nginx, bare, routing, full; and the cached-read
#                                    rows, nginx-cached and cached)
#
# The Rust binaries are built with the `profiling` profile (release + symbols + line tables).
# Results: bench/results/profile.md. Not part of `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
# shellcheck source=bench/lib.sh
. bench/lib.sh
OUT=bench/results/profile.md
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(nginx bare routing full)

install_tools
command -v perf >/dev/null || { log "installing linux-perf (apt)"; apt-get install -y -qq linux-perf >/dev/null; }
cargo build --locked --profile profiling -p edge-proxy --bin edge-proxy --example bare_pingora 2>&1 | tail -n 1
BIN=target/profiling
start_upstreams

# profile NAME PID URL [script-env...]: perf over one wrk run
profile() {
    local name=$1 pid=$2 url=$3; shift 3
    wait_port "${url##*:}" 2>/dev/null || true
    sleep 0.5
    perf record -e cpu-clock -F 2999 -g -p "$pid" -o "$WORK/$name.data" -- sleep "${DURATION%s}" >/dev/null 2>&1 &
    local perf_pid=$!
    env "$@" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/report.lua "$url" | tail -n 1 >"$WORK/$name.wrk"
    wait "$perf_pid" || true
    perf report -i "$WORK/$name.data" --no-children --sort dso,symbol --stdio -g none \
        --percent-limit 0.05 2>/dev/null >"$WORK/$name.txt"
    stop_pid "$pid"
}

for target in "${TARGETS[@]}"; do
    log "profiling $target"
    case "$target" in
        nginx)
            pid=$(start_nginx_proxy); wait_port 18082
            profile nginx "$pid" http://127.0.0.1:18082/api/items
            ;;
        bare)
            taskset -c 0 "$BIN/examples/bare_pingora" 127.0.0.1:18086 127.0.0.1:18081 >/dev/null 2>&1 &
            pid=$!; PIDS+=("$pid"); wait_port 18086
            profile bare "$pid" http://127.0.0.1:18086/api/items
            ;;
        routing)
            pid=$(EDGE_BIN=$BIN/edge-proxy start_edge routing 18084 18094 routing); wait_port 18084
            profile routing "$pid" http://127.0.0.1:18084/api/items
            ;;
        full)
            pid=$(EDGE_BIN=$BIN/edge-proxy start_edge full 18085 18095 full); wait_port 18085
            profile full "$pid" http://127.0.0.1:18085/api/items HEADER_NAME=x-api-key HEADER_VALUE=lambda-edge-dev-key
            ;;
        nginx-cached)
            pid=$(start_nginx_cache); wait_port 18100
            curl -s -o /dev/null http://127.0.0.1:18100/api/cached
            profile nginx-cached "$pid" http://127.0.0.1:18100/api/cached
            ;;
        cached)
            pid=$(EDGE_BIN=$BIN/edge-proxy start_edge cached 18101 18102 cached); wait_port 18101
            curl -s -o /dev/null http://127.0.0.1:18101/api/cached
            profile cached "$pid" http://127.0.0.1:18101/api/cached
            ;;
        *) log "unknown target $target"; exit 2 ;;
    esac
done

CPU=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
python3 bench/profile_report.py "$WORK" "$OUT" "$CPU" "${TARGETS[@]}"
log "written to $OUT"
