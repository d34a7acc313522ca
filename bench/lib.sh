# Shared by bench/run.sh and bench/tune.sh (sourced from the repository root): settings,
# clean-up, the upstream and proxies under test, and how a configuration is measured.
# shellcheck shell=bash

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
REDIS_PORT=${REDIS_PORT:-18079}
if [ "${BENCH_SMOKE:-0}" = 1 ]; then RUNS=1; DURATION=2s; fi
WORK=$(mktemp -d /tmp/edge-bench.XXXXXX)
mkdir -p bench/results
PIDS=()

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    pkill -f "$WORK" 2>/dev/null || true
    wait 2>/dev/null || true
    scripts/stack.sh stop test >/dev/null 2>&1 || true
    rm -rf "$WORK"
    git worktree prune 2>/dev/null || true
}
trap cleanup EXIT

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v redis-server >/dev/null || missing+=(redis-server)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]} (apt)"
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The edge proxy at git ref REF, built with cargo profile PROFILE (release or profiling);
# prints the binary's path.
# The ref's workspace builds into the same target/ (its crates get their own hashes, the
# dependencies are shared), before the working tree's, so the working tree's binary is the
# one left in place.
build_compare() { # ref profile
    local ref=$1 profile=$2
    log "building the edge proxy at $ref ($profile) to run beside the working tree's"
    git worktree add --detach "$WORK/compare" "$ref" >/dev/null 2>&1 || {
        log "cannot check out $ref"; return 1
    }
    # A failed build stops the run: copying target/'s binary then would compare the working
    # tree (or an older build) with itself under the ref's name.
    if ! (cd "$WORK/compare" && CARGO_TARGET_DIR="$ROOT/target" cargo build --locked --profile "$profile" -p edge-proxy --bin edge-proxy 2>&1 | tail -n 1) >&2; then
        git worktree remove --force "$WORK/compare"
        log "the edge proxy at $ref did not build"; return 1
    fi
    cp "target/$profile/edge-proxy" "$WORK/edge-proxy-$ref"
    git worktree remove --force "$WORK/compare"
    echo "$WORK/edge-proxy-$ref"
}

wait_port() {
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "port $1 did not open" >&2; return 1
}

stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

# A redis-server for global rate limits, on the server side's CPU, without persistence.
start_redis() {
    taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        >"$WORK/redis.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$REDIS_PORT"
    echo "$pid"
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# The part of an nginx config every bench nginx shares, for one working directory; the
# caller appends its server blocks and closes the http block.
nginx_head() { # dir
    cat <<CONF
worker_processes 1;
master_process off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1;
    uwsgi_temp_path $1; scgi_temp_path $1;
CONF
}

start_upstreams() {
    mkdir -p "$WORK/up"
    { nginx_head "$WORK/up"; cat <<CONF
    server {
        listen 127.0.0.1:18081;
        listen 127.0.0.1:18087;
        location / { default_type application/json; return 200 '{"id":"bench","ok":true}'; }
        # The cached-read rows: the same body, cacheable by a shared cache for an hour.
        location /api/cached {
            default_type application/json;
            add_header Cache-Control "public, max-age=3600";
            return 200 '{"id":"bench","ok":true}';
        }
    }
}
CONF
    } >"$WORK/up/nginx.conf"
    taskset -c 0 nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    wait_port 18081
}

start_nginx_proxy() {
    mkdir -p "$WORK/np"
    { nginx_head "$WORK/np"; cat <<CONF
    upstream up { server 127.0.0.1:18081; keepalive 64; }
    server {
        listen 127.0.0.1:18082;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
    } >"$WORK/np/nginx.conf"
    taskset -c 0 nginx -p "$WORK/np" -c "$WORK/np/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
    echo $!
}

# nginx's proxy_cache in front of the same upstream: the cached-read row to beat.
start_nginx_cache() {
    mkdir -p "$WORK/nc/cache"
    { nginx_head "$WORK/nc"; cat <<CONF
    upstream up { server 127.0.0.1:18081; keepalive 64; }
    proxy_cache_path $WORK/nc/cache keys_zone=edge:10m max_size=64m;
    server {
        listen 127.0.0.1:18100;
        location / {
            proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_cache edge; proxy_cache_lock on;
        }
    }
}
CONF
    } >"$WORK/nc/nginx.conf"
    taskset -c 0 nginx -p "$WORK/nc" -c "$WORK/nc/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
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

edge_config() { # name listen admin routing|full|global|cached
    local auth="" limit="" route_auth="" second="" extra=""
    if [ "$4" = cached ]; then
        # Routing only, with the route's GETs served from the edge cache.
        route_auth=$'cache = {}'
    fi
    if [ "$4" = full ] || [ "$4" = global ]; then
        auth=$'[auth]\n[[auth.api-keys]]\nconsumer = "bench"\nkey-sha256 = "0fc44cf1dc0c85f7811e9f7fd516a92ea1f30e017687ad81c57b32674df898c3"\nscopes = ["bench"]'
        limit=$'[rate-limit]\nrequests-per-second = 1000000\nburst = 1000000'
        if [ "$4" = global ]; then
            # The same limit counted in Redis (bench's redis-server), with the default lease.
            limit+=$'\nscope = "global"\n[redis]\nurl = "redis://127.0.0.1:'"$REDIS_PORT"$'"'
        fi
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

start_edge() { # name port admin routing|full|global
    edge_config "$1" "$2" "$3" "$4"
    if [ "$4" = full ] || [ "$4" = global ]; then
        taskset -c 0 "${EDGE_BIN:-target/release/edge-proxy}" --log-format json run --config "$WORK/$1.toml" >/dev/null 2>"$WORK/$1-access.log" &
    else
        RUST_LOG=warn taskset -c 0 "${EDGE_BIN:-target/release/edge-proxy}" --log-format json run --config "$WORK/$1.toml" >/dev/null 2>&1 &
    fi
    echo $!
}

# Nanoseconds of CPU a process and its children have used (every thread, from schedstat).
cpu_ns() { # pid
    local pids total=0 f
    pids="$1 $(pgrep -P "$1" | tr '\n' ' ')"
    for pid in $pids; do
        for f in /proc/"$pid"/task/*/schedstat; do
            [ -r "$f" ] && total=$((total + $(cut -d' ' -f1 "$f" 2>/dev/null || echo 0)))
        done
    done
    echo "$total"
}

# run_wrk URL PID [script-env...]: median of RUNS runs -> JSON (with the CPU per request of
# PID, the process serving URL; 0 = not measured)
run_wrk() {
    local url=$1 pid=$2; shift 2
    for _ in $(seq 1 "$RUNS"); do
        wrk_once "$url" "$pid" "$@"
    done | summarise_runs
}

# One wrk run against URL, its result as a JSON line with the CPU time PID spent over it.
wrk_once() { # url pid [script-env...]
    local url=$1 pid=$2; shift 2
    local before after line
    before=$([ "$pid" = 0 ] && echo 0 || cpu_ns "$pid")
    line=$(env "$@" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/report.lua "$url" | tail -n 1)
    after=$([ "$pid" = 0 ] && echo 0 || cpu_ns "$pid")
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["cpu_ns"]=int(sys.argv[2]); print(json.dumps(r))' "$line" "$((after - before))"
}

# Runs of one configuration (JSON lines on stdin) reduced to its row: medians, error sums.
summarise_runs() {
    python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
print(json.dumps({"rps": med("rps"), "p50_us": med("p50_us"), "p99_us": med("p99_us"),
                  "p999_us": med("p999_us"), "errors": sum(r["errors"] for r in runs),
                  "non2xx": sum(r["non2xx"] for r in runs), "runs": len(runs),
                  "cpu_us_per_request": statistics.median(r["cpu_ns"] / 1000 / max(r["requests"], 1) for r in runs)}))'
}

# Heap allocations per request of the edge proxy with config NAME: a short run of the counting
# build on its own port (the figure does not depend on speed, so one short run is enough).
# NAME is an edge_config name, or "bare" for bare Pingora.
count_allocations() { # name port admin [script-env...]
    local name=$1 port=$2 admin=$3; shift 3
    if [ "$name" = bare ]; then
        ALLOC_COUNT_FILE="$WORK/$name.allocs" taskset -c 0 target/release/examples/counting_proxy \
            bare "127.0.0.1:$port" 127.0.0.1:18081 >/dev/null 2>&1 &
    else
        edge_config "$name-count" "$port" "$admin" "$name"
        ALLOC_COUNT_FILE="$WORK/$name.allocs" taskset -c 0 target/release/examples/counting_proxy \
            --log-format json run --config "$WORK/$name-count.toml" >/dev/null 2>"$WORK/$name-count.log" &
    fi
    local pid=$!
    wait_port "$port"; sleep 0.5
    local before after line
    before=$(cat "$WORK/$name.allocs")
    line=$(env "$@" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s bench/report.lua "http://127.0.0.1:$port/api/items" | tail -n 1)
    sleep 0.3
    after=$(cat "$WORK/$name.allocs")
    stop_pid "$pid"
    python3 -c '
import json, sys
b, a, r = sys.argv[1].split(), sys.argv[2].split(), json.loads(sys.argv[3])
n = max(r["requests"], 1)
print(json.dumps({"allocs_per_request": (int(a[0]) - int(b[0])) / n,
                  "bytes_per_request": (int(a[1]) - int(b[1])) / n}))' "$before" "$after" "$line"
}

