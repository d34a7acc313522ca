#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per request of bare Pingora and the edge proxy
# (routing only, everything on), counted by callgrind: the same figure for the same binary
# and load however busy the machine is, so a change's effect on the proxy's own code can be
# told on a machine whose speed moves between runs (requests/s cannot). Kernel time and
# cache behaviour are not in it: `make bench` stays the measure of speed.
#
#   bench/instructions.sh                       bare, bare + headers, routing, full
#   BENCH_COMPARE=<git ref> bench/instructions.sh
#                                               also that ref's edge proxy (routing, full)
#
# Each proxy runs under valgrind with instrumentation off until a warm-up is done; then wrk
# (4 connections, DURATION) and a dump of the counts. Results: bench/results/instructions.md
# (per request: total, and the functions whose own instructions differ most from bare
# Pingora's), with each proxy's syscalls and context switches per request from a native run.
# Builds the `profiling` profile. Not part of `make bench`. With KEEP=<dir> the callgrind
# files are kept there, for `callgrind_annotate --tree=caller` and the like.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
# shellcheck source=bench/lib.sh
. bench/lib.sh
OUT=bench/results/instructions.md

install_tools
command -v valgrind >/dev/null || { log "installing valgrind (apt)"; apt-get install -y -qq valgrind >/dev/null; }
command -v perf >/dev/null || { log "installing perf (apt)"; apt-get install -y -qq linux-perf >/dev/null; }
COMPARE_REF="" COMPARE_BIN=""
if [ -n "${BENCH_COMPARE:-}" ]; then
    COMPARE_REF=$(git rev-parse --short "$BENCH_COMPARE")
    COMPARE_BIN=$(build_compare "$COMPARE_REF" profiling)
fi
cargo build --locked --profile profiling -p edge-proxy --bin edge-proxy --example bare_pingora 2>&1 | tail -n 1
BIN=target/profiling
start_upstreams

# count NAME PORT [wrk options] -- COMMAND...: syscalls and context switches per request
# (perf stat, COMMAND run natively under make bench's load), then callgrind over one wrk
# run against COMMAND. callgrind sees user space only: a change that moves work into the
# kernel (a syscall more per request) shows in the first figures, not in the instructions.
count() {
    local name=$1 port=$2; shift 2
    local opts=()
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    taskset -c 0 "$@" >/dev/null 2>"$WORK/$name.native.err" &
    local native=$!
    PIDS+=("$native")
    wait_port "$port"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "${opts[@]}" "http://127.0.0.1:$port/api/items" >/dev/null
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$native" -o "$WORK/$name.perf" &
    local perf=$!
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/report.lua "${opts[@]}" \
        "http://127.0.0.1:$port/api/items" | tail -n 1 >"$WORK/$name.native"
    kill -INT "$perf"; wait "$perf" || true
    stop_pid "$native"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$name.cg" \
        "$@" >/dev/null 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port"; sleep 1
    taskset -c 1 wrk -t1 -c4 -d3s "${opts[@]}" "http://127.0.0.1:$port/api/items" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    taskset -c 1 wrk -t1 -c4 -d"$DURATION" -s bench/report.lua "${opts[@]}" \
        "http://127.0.0.1:$port/api/items" | tail -n 1 >"$WORK/$name.wrk"
    callgrind_control -d "$pid" >/dev/null
    stop_pid "$pid"
    # The dump taken under load is part 1; the one at exit (nothing counted) is dropped.
    callgrind_annotate --auto=no --threshold=100 "$WORK/$name.cg.1" >"$WORK/$name.txt" 2>/dev/null
}

# edge NAME CONFIG BINARY: the edge proxy as `make bench` runs it (everything on writes its
# access log, here into the valgrind log, and is sent the API key; routing only gets the
# same requests as bare Pingora)
edge() {
    local name=$1 config=$2 bin=$3
    log "edge proxy ($bin), $config"
    edge_config "$name" 18090 18091 "$config"
    if [ "$config" = routing ]; then
        RUST_LOG=warn count "$name" 18090 -- "$bin" --log-format json run --config "$WORK/$name.toml"
    else
        count "$name" 18090 -H "x-api-key: lambda-edge-dev-key" -- \
            "$bin" --log-format json run --config "$WORK/$name.toml"
    fi
    TARGETS+=("$name")
}

TARGETS=(bare)
log "bare Pingora"
count bare 18086 -- "$BIN/examples/bare_pingora" 127.0.0.1:18086 127.0.0.1:18081
# Bare Pingora setting only the headers any edge proxy sets (examples/common/bare.rs,
# `WithHeaders`): how much of our layer is Pingora's price for those headers.
log "bare Pingora + the headers any edge proxy adds"
PINGORA_BARE_HEADERS=1 count headers 18086 -- "$BIN/examples/bare_pingora" 127.0.0.1:18086 127.0.0.1:18081
TARGETS+=(headers)
for config in routing full; do
    edge "$config" "$config" "$BIN/edge-proxy"
    [ -z "$COMPARE_BIN" ] || edge "$config-$COMPARE_REF" "$config" "$COMPARE_BIN"
done

CPU=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
python3 bench/instructions_report.py "$WORK" "$OUT" "$CPU" "${TARGETS[@]}"
log "written to $OUT"
if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    for name in "${TARGETS[@]}"; do cp "$WORK/$name.cg.1" "$KEEP/$name.cg"; done
    log "callgrind files kept in $KEEP"
fi
