#!/usr/bin/env bash
# Starts and stops the local stack: DynamoDB endpoint, tables (from template.yaml), the functions
# under `cargo lambda watch`, and the edge proxy.
#
# Two shapes. `aws` (the test profile's default; `AWS_SHAPE=1` for dev): as deployed, each
# function instance sits behind a stand-in for its IAM-protected function URL on a host name
# (target/debug/function-url, on localhost:9200.. in dev, :9300.. in test) that refuses
# anything not signed with SigV4; the proxy runs edge-proxy/config/local-aws.toml and signs
# requests and health checks with credentials generated for this stack, which the fronts
# check. `plain` (dev's default): the proxy reaches `cargo lambda watch` directly (dev.toml).
#
#   scripts/stack.sh start PROFILE   start in the background (state in .stack/PROFILE)
#   scripts/stack.sh stop PROFILE    stop everything PROFILE started
#   scripts/stack.sh env PROFILE     print the stack's endpoints as shell assignments
#   scripts/stack.sh sweep-reservations PROFILE
#                                    invoke the reservation sweeper every SWEEP_INTERVAL
#                                    seconds (default 2), as its schedule does on AWS (the
#                                    stack starts this itself)
#   scripts/stack.sh restart-dynamodb PROFILE
#                                    stop the local DynamoDB endpoint (if running), start an
#                                    empty one on the same port and create the tables again
#                                    (the fault tests; functions and proxy keep running)
#   scripts/stack.sh restart-instance PROFILE
#                                    start the second function instance (:9101 in the test
#                                    profile, and its function URLs) again, e.g. after a
#                                    fault test killed it
#   scripts/stack.sh restart-instances PROFILE
#                                    the same for both instances (after a fault test killed
#                                    every instance)
#
# PROFILE is `dev` (ports 4566 / 9000 / 8080) or `test` (4576 / 9100 / 8180), so `make test`
# can run while `make dev` is up. When the proxy's config has a global rate limit, a
# redis-server (Debian's, no persistence) is started for it on :6390 (dev) or :6391 (test).
# PROMETHEUS=1 also starts Debian's Prometheus scraping the proxy (edge-proxy/monitoring/). Every process is started in its own session and stopped by
# process group, so nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.tools/venv/bin:$PATH"

PROFILE=${2:-dev}
case "$PROFILE" in
    dev) DYNAMO_PORT=${DYNAMO_PORT:-4566}; LAMBDA_PORT=${LAMBDA_PORT:-9000}; LAMBDA_PORT2=${LAMBDA_PORT2:-9001}; SWEEPER_PORT=${SWEEPER_PORT:-9002}; PROXY_PORT=${PROXY_PORT:-8080}; ADMIN_PORT=${ADMIN_PORT:-9901}; FRONT_PORT=${FRONT_PORT:-9200}; FRONT_PORT2=${FRONT_PORT2:-9210}; REDIS_PORT=${REDIS_PORT:-6390}
         DEFAULT_SHAPE=$([ "${AWS_SHAPE:-0}" = 1 ] && echo aws || echo plain) ;;
    test) DYNAMO_PORT=${DYNAMO_PORT:-4576}; LAMBDA_PORT=${LAMBDA_PORT:-9100}; LAMBDA_PORT2=${LAMBDA_PORT2:-9101}; SWEEPER_PORT=${SWEEPER_PORT:-9102}; PROXY_PORT=${PROXY_PORT:-8180}; ADMIN_PORT=${ADMIN_PORT:-9911}; FRONT_PORT=${FRONT_PORT:-9300}; FRONT_PORT2=${FRONT_PORT2:-9310}; REDIS_PORT=${REDIS_PORT:-6391}
         # The end-to-end suite's own OTLP receiver listens here while it checks a trace.
         OTLP_ENDPOINT=http://127.0.0.1:${OTLP_TEST_PORT:-4328}
         # Spans leave the proxy within a fifth of a second (the SDK default is 5 s).
         export OTEL_BSP_SCHEDULE_DELAY=${OTEL_BSP_SCHEDULE_DELAY:-200}
         DEFAULT_SHAPE=$([ "${AWS_SHAPE:-1}" = 0 ] && echo plain || echo aws) ;;
    *) echo "unknown profile: $PROFILE (dev or test)" >&2; exit 2 ;;
esac
STATE="$ROOT/.stack/$PROFILE"
DYNAMO_URL="http://127.0.0.1:$DYNAMO_PORT"
PROXY_URL="http://127.0.0.1:$PROXY_PORT"
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
LAMBDA_URL="http://127.0.0.1:$LAMBDA_PORT"
LAMBDA_URL2="http://127.0.0.1:$LAMBDA_PORT2"
# The reservation sweeper runs under a `cargo lambda watch` of its own: invoked on a timer
# beside the HTTP functions' queued invocations, the shared one stopped dispatching anything.
SWEEPER_INVOKE_URL="http://127.0.0.1:$SWEEPER_PORT/2015-03-31/functions/reservation-sweeper/invocations"
REGISTRY_TABLE=RegistryTable
# Where the proxy and the functions export spans (OTLP/HTTP), if anywhere: for `make dev`,
# e.g. OTLP_ENDPOINT=http://127.0.0.1:4318 with Jaeger or an OpenTelemetry Collector running.
OTLP_ENDPOINT=${OTLP_ENDPOINT:-}
PROXY_BIN="$ROOT/target/debug/edge-proxy"
FRONT_BIN="$ROOT/target/debug/function-url"
# The shape a running stack was started in wins over the environment's.
SHAPE=$(cat "$STATE/shape" 2>/dev/null || echo "$DEFAULT_SHAPE")
# Hot reload of the functions: on for dev (HOT_RELOAD=0 turns it off), off for test.
HOT_RELOAD=${HOT_RELOAD:-$([ "$PROFILE" = dev ] && echo 1 || echo 0)}

log() { printf '\033[1m==> [%s] %s\033[0m\n' "$PROFILE" "$*" >&2; }

# Credentials: the local DynamoDB endpoint ignores them, the SDK wants some. In the AWS shape
# they are this stack's own (made at start, in $STATE/credentials.env): the proxy signs with
# them, the function URL stand-ins accept only them.
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN
if [ -f "$STATE/credentials.env" ]; then
    set -a; . "$STATE/credentials.env"; set +a
fi
export AWS_ENDPOINT_URL="$DYNAMO_URL"
# Never let the SDK look for instance metadata: locally there is none to find.
export AWS_EC2_METADATA_DISABLED=true

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() { # url seconds what
    local deadline=$((SECONDS + $2))
    until curl -s -o /dev/null "$1"; do
        if [ $SECONDS -ge $deadline ]; then
            log "$3 did not come up at $1 within $2 s; see $STATE/*.log"
            return 1
        fi
        sleep 0.3
    done
}

# start NAME COMMAND...: runs COMMAND in its own session, logs to $STATE/NAME.log.
start() {
    local name=$1; shift
    setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
    echo $! >"$STATE/$name.pid"
}

stop_one() {
    local pidfile=$1 pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop_all() {
    [ -d "$STATE" ] || return 0
    # Reverse start order: proxy, function URLs, functions, database.
    for name in prometheus proxy redis sweeper sweeper-runtime reloader registrar-user-service registrar-product-service front2 front functions2 functions dynamodb; do
        [ -f "$STATE/$name.pid" ] && stop_one "$STATE/$name.pid"
    done
    rm -f "$STATE/shape" "$STATE/credentials.env"
    if [ -f "$STATE/localstack" ]; then
        docker compose -f localstack/docker-compose.yml down >/dev/null 2>&1 || true
        rm -f "$STATE/localstack"
    fi
    return 0
}

start_dynamodb() {
    if [ "$PROFILE" = dev ] && [ "${USE_LOCALSTACK:-auto}" != 0 ] && command -v docker >/dev/null 2>&1 \
        && docker info >/dev/null 2>&1; then
        log "Docker answers: starting LocalStack on :$DYNAMO_PORT"
        docker compose -f localstack/docker-compose.yml up -d
        touch "$STATE/localstack"
        wait_http "$DYNAMO_URL/_localstack/health" 120 LocalStack
    else
        log "starting moto server (DynamoDB) on :$DYNAMO_PORT"
        port_free "$DYNAMO_PORT" || { log "port $DYNAMO_PORT is in use"; return 1; }
        start dynamodb python scripts/moto_serial.py -H 127.0.0.1 -p "$DYNAMO_PORT"
        wait_http "$DYNAMO_URL/moto-api/" 60 "moto server"
    fi
}

random_hex() { python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"; }

make_credentials() {
    export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
    unset AWS_SESSION_TOKEN
    # An identity of this stack's own, temporary-style (with a session token), as a role on AWS.
    if [ "$SHAPE" = aws ]; then
        cat >"$STATE/credentials.env" <<ENV
AWS_ACCESS_KEY_ID=ASIA$(random_hex 8 | tr a-f A-F)
AWS_SECRET_ACCESS_KEY=$(random_hex 20)
AWS_SESSION_TOKEN=$(random_hex 32)
ENV
        set -a; . "$STATE/credentials.env"; set +a
    fi
}

create_tables() {
    log "creating tables from template.yaml"
    python scripts/tables.py create --template template.yaml >"$STATE/functions.env.new"
    # The cursor secret survives a restart of the DynamoDB endpoint (cursors stay valid).
    local cursor_secret
    cursor_secret=$(grep -s '^CURSOR_SECRET=' "$STATE/functions.env" | cut -d= -f2- || true)
    cat >>"$STATE/functions.env.new" <<ENV
AWS_ENDPOINT_URL=$DYNAMO_URL
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
AWS_REGION=us-east-1
CURSOR_SECRET=${cursor_secret:-$(random_hex 32)}
RUST_LOG=info
LOG_FORMAT=${FUNCTION_LOG_FORMAT:-json}
ENV
    if [ -n "$OTLP_ENDPOINT" ]; then
        echo "OTEL_EXPORTER_OTLP_ENDPOINT=$OTLP_ENDPOINT" >>"$STATE/functions.env.new"
    fi
    mv "$STATE/functions.env.new" "$STATE/functions.env"
}

start_sweeper() {
    # One sweep at a time, as the template's reserved concurrency of 1 has it on AWS.
    log "starting the reservation sweeper under cargo lambda watch on :$SWEEPER_PORT, every ${SWEEP_INTERVAL:-2} s"
    port_free "$SWEEPER_PORT" || { log "port $SWEEPER_PORT is in use"; return 1; }
    start_watch sweeper-runtime "$SWEEPER_PORT" 1
    curl -s -o /dev/null --max-time 300 -d "$(scheduled_event)" "$SWEEPER_INVOKE_URL" || true
    start sweeper "$0" sweep-reservations "$PROFILE"
}

start_functions() {
    # Two instances of each function: two `cargo lambda watch` processes, each serving both.
    log "starting both functions twice under cargo lambda watch on :$LAMBDA_PORT and :$LAMBDA_PORT2"
    for port in "$LAMBDA_PORT" "$LAMBDA_PORT2"; do
        port_free "$port" || { log "port $port is in use"; return 1; }
    done
    start_watch functions "$LAMBDA_PORT"
    start_watch functions2 "$LAMBDA_PORT2"
    # Hot reload is ours, not cargo lambda watch's: with --concurrency its reload restarts some
    # of a function's processes and leaves others serving the old build.
    [ "$HOT_RELOAD" = 1 ] && start reloader "$0" reload-functions "$PROFILE"
    return 0
}

start_watch() { # name port [concurrency]
    start "$1" cargo lambda watch --ignore-changes --disable-cors --quiet \
        -A 127.0.0.1 -P "$2" --concurrency "${3:-8}" --env-file "$STATE/functions.env"
    wait_http "http://127.0.0.1:$2/" 300 "cargo lambda watch on :$2"
}

restart_watch() { # name port
    stop_one "$STATE/$1.pid"
    port_free "$2" || { log "port $2 is in use"; return 1; }
    start_watch "$1" "$2"
    warm_functions "http://127.0.0.1:$2"
}

reload_functions() {
    # On an edit under functions/ (or to the workspace manifest or lock): build once, then
    # restart the two instances one after the other, so the proxy always has one to send to.
    # A failed build restarts nothing.
    local stamp="$STATE/sources.stamp" changed
    touch "$stamp"
    while sleep 1; do
        changed=$(find functions Cargo.toml Cargo.lock -newer "$stamp" -type f \
            \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit 2>/dev/null)
        [ -n "$changed" ] || continue
        touch "$stamp" # edits made during the build trigger the next round
        log "$changed changed: rebuilding the functions"
        if cargo build --locked --bin user-service --bin product-service; then
            restart_watch functions "$LAMBDA_PORT" && restart_watch functions2 "$LAMBDA_PORT2" &&
                stop_one "$STATE/sweeper-runtime.pid" && start_watch sweeper-runtime "$SWEEPER_PORT" 1 &&
                log "functions reloaded on both instances, and the sweeper"
        else
            log "the build failed: nothing restarted; fix it and save again"
        fi
    done
}

# What EventBridge Scheduler sends the sweeper on AWS (template.yaml), sent by hand here.
scheduled_event() {
    printf '{"version":"0","id":"local-%s","detail-type":"Scheduled Event","source":"aws.scheduler","account":"000000000000","time":"%s","region":"us-east-1","resources":["arn:aws:scheduler:us-east-1:000000000000:schedule/default/reservation-sweeper"],"detail":{}}' \
        "$(date +%s%N)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

sweep_reservations() {
    # The schedule's stand-in: invoke the sweeper (through cargo lambda watch's Invoke API,
    # as the schedule does on AWS) every SWEEP_INTERVAL seconds. Each invocation's result
    # ({"expired":..,"skipped":..,"failed":..}) is logged.
    while sleep "${SWEEP_INTERVAL:-2}"; do
        curl -s --max-time 60 -d "$(scheduled_event)" "$SWEEPER_INVOKE_URL" \
            | grep -v '"expired":0,"skipped":0,"failed":0' || true
    done
}

# The URL the proxy reaches an instance of a function by: its function URL stand-in in the
# AWS shape, cargo lambda watch's path otherwise.
instance_url() { # instance(1|2) function
    local offset=0
    [ "$2" = product-service ] && offset=1
    if [ "$SHAPE" = aws ]; then
        local port=$FRONT_PORT
        [ "$1" = 2 ] && port=$FRONT_PORT2
        echo "http://localhost:$((port + offset))"
    else
        local base=$LAMBDA_URL
        [ "$1" = 2 ] && base=$LAMBDA_URL2
        echo "$base/lambda-url/$2"
    fi
}

start_front() { # name front-port lambda-base
    start "$1" "$FRONT_BIN" --region us-east-1 \
        --front "localhost:$2=$3/lambda-url/user-service" \
        --front "localhost:$(($2 + 1))=$3/lambda-url/product-service"
    # An unsigned request is refused: the front is up.
    local deadline=$((SECONDS + 30))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$2/health")" = 403 ]; do
        [ $SECONDS -ge $deadline ] && { log "function URL stand-in $1 did not come up on :$2; see $STATE/$1.log"; return 1; }
        sleep 0.2
    done
}

start_fronts() {
    [ "$SHAPE" = aws ] || return 0
    log "starting the function URL stand-ins (SigV4-checked) on localhost:$FRONT_PORT.. and :$FRONT_PORT2.."
    [ -x "$FRONT_BIN" ] || cargo build --locked --workspace --bin function-url
    for port in "$FRONT_PORT" $((FRONT_PORT + 1)) "$FRONT_PORT2" $((FRONT_PORT2 + 1)); do
        port_free "$port" || { log "port $port is in use"; return 1; }
    done
    start_front front "$FRONT_PORT" "$LAMBDA_URL"
    start_front front2 "$FRONT_PORT2" "$LAMBDA_URL2"
}

register_instances() {
    # The second instances are found through the registry, renewed by a heartbeat each.
    log "registering the second instances in $REGISTRY_TABLE"
    for function in user-service product-service; do
        start "registrar-$function" "$PROXY_BIN" --log-format text registry heartbeat --table "$REGISTRY_TABLE" \
            --service "$function" --url "$(instance_url 2 "$function")" --ttl-seconds 30 --interval-seconds 10
    done
}

start_proxy() {
    log "starting the edge proxy on :$PROXY_PORT"
    port_free "$PROXY_PORT" || { log "port $PROXY_PORT is in use"; return 1; }
    port_free "$ADMIN_PORT" || { log "port $ADMIN_PORT is in use"; return 1; }
    if [ "$SHAPE" = aws ]; then
        sed -e "s/127.0.0.1:8080/127.0.0.1:$PROXY_PORT/; s/127.0.0.1:9901/127.0.0.1:$ADMIN_PORT/" \
            -e "s/localhost:9200/localhost:$FRONT_PORT/; s/localhost:9201/localhost:$((FRONT_PORT + 1))/" \
            edge-proxy/config/local-aws.toml >"$STATE/proxy.toml"
    else
        sed -e "s/127.0.0.1:8080/127.0.0.1:$PROXY_PORT/; s/127.0.0.1:9901/127.0.0.1:$ADMIN_PORT/; s/127.0.0.1:9000/127.0.0.1:$LAMBDA_PORT/g" \
            edge-proxy/config/dev.toml >"$STATE/proxy.toml"
    fi
    sed -i -e "s#redis://127.0.0.1:6390#redis://127.0.0.1:$REDIS_PORT#" "$STATE/proxy.toml"
    if grep -q 'scope = "global"' "$STATE/proxy.toml"; then
        start_redis
    fi
    if [ "$PROFILE" = test ]; then
        # Cut stalled and slow clients sooner, so the hostile-input suite can watch it happen.
        sed -i -e "s/^client-timeout-ms = .*/client-timeout-ms = 3000/" \
            -e "s/^head-timeout-ms = .*/head-timeout-ms = 2000/" "$STATE/proxy.toml"
    fi
    if [ -n "$OTLP_ENDPOINT" ]; then
        log "the proxy and the functions export spans to $OTLP_ENDPOINT"
        export OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_ENDPOINT"
    fi
    start proxy "$PROXY_BIN" --log-format "${PROXY_LOG_FORMAT:-json}" run --config "$STATE/proxy.toml" \
        --upgrade-socket "$STATE/upgrade.sock"
    wait_http "$ADMIN_URL/healthz" 30 "edge proxy"
    # Ready once every service has a usable instance (the registry ones come within a poll).
    local deadline=$((SECONDS + 30))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/readyz")" = 200 ]; do
        [ $SECONDS -ge $deadline ] && { log "edge proxy not ready: $(curl -s "$ADMIN_URL/readyz")"; return 1; }
        sleep 0.3
    done
}

start_redis() {
    log "starting redis-server (global rate limits) on :$REDIS_PORT"
    command -v redis-server >/dev/null || { log "no redis-server: run scripts/setup.sh"; return 1; }
    port_free "$REDIS_PORT" || { log "port $REDIS_PORT is in use"; return 1; }
    start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    local deadline=$((SECONDS + 10))
    until ! port_free "$REDIS_PORT"; do
        [ $SECONDS -ge $deadline ] && { log "redis-server did not start"; return 1; }
        sleep 0.1
    done
}

start_prometheus() {
    # Debian's prometheus, scraping the admin listener with the alert rules loaded; UI on :9090
    # (dev) or :9190 (test).
    local port=$([ "$PROFILE" = dev ] && echo 9090 || echo 9190)
    command -v prometheus >/dev/null || { log "no prometheus: run scripts/setup.sh"; return 1; }
    port_free "$port" || { log "port $port is in use"; return 1; }
    mkdir -p "$STATE/prometheus"
    cp edge-proxy/monitoring/alerts.yml "$STATE/prometheus/"
    sed "s/127.0.0.1:9901/127.0.0.1:$ADMIN_PORT/" edge-proxy/monitoring/prometheus.yml >"$STATE/prometheus/prometheus.yml"
    log "starting Prometheus on :$port (scraping the proxy's admin listener)"
    start prometheus prometheus --config.file="$STATE/prometheus/prometheus.yml" \
        --storage.tsdb.path="$STATE/prometheus/data" --web.listen-address="127.0.0.1:$port"
    wait_http "http://127.0.0.1:$port/-/ready" 30 Prometheus
}

warm_functions() { # base URL...
    # The first invocation of each function compiles/starts it: do it now, not in a test.
    log "warming up the functions"
    for base in "$@"; do
        for function in user-service product-service; do
            curl -s -o /dev/null --max-time 300 "$base/lambda-url/$function/health" || true
        done
    done
}

restart_instance() { # name lambda-port front-name front-port
    stop_one "$STATE/$3.pid"
    stop_one "$STATE/$1.pid"
    port_free "$2" || { log "port $2 is in use"; exit 1; }
    log "starting an instance of both functions on :$2"
    start_watch "$1" "$2"
    warm_functions "http://127.0.0.1:$2"
    if [ "$SHAPE" = aws ]; then
        start_front "$3" "$4" "http://127.0.0.1:$2"
    fi
}

case "${1:-}" in
    start)
        mkdir -p "$STATE"
        stop_all
        SHAPE=$DEFAULT_SHAPE
        echo "$SHAPE" >"$STATE/shape"
        trap 'stop_all' ERR
        make_credentials
        start_dynamodb
        create_tables
        [ -x "$PROXY_BIN" ] || cargo build --locked --workspace --bin edge-proxy
        start_functions
        warm_functions "$LAMBDA_URL" "$LAMBDA_URL2"
        start_fronts
        register_instances
        start_sweeper
        start_proxy
        [ "${PROMETHEUS:-0}" = 1 ] && start_prometheus
        trap - ERR
        log "stack is up ($SHAPE shape): proxy $PROXY_URL (admin $ADMIN_URL), functions $(instance_url 1 user-service) and $(instance_url 1 product-service), DynamoDB $DYNAMO_URL (logs in $STATE)"
        ;;
    stop)
        stop_all
        ;;
    restart-dynamodb)
        [ -f "$STATE/localstack" ] && { log "restart-dynamodb is for the moto endpoint"; exit 2; }
        stop_one "$STATE/dynamodb.pid"
        start_dynamodb
        create_tables
        ;;
    restart-instance)
        restart_instance functions2 "$LAMBDA_PORT2" front2 "$FRONT_PORT2"
        ;;
    restart-instances)
        restart_instance functions "$LAMBDA_PORT" front "$FRONT_PORT"
        restart_instance functions2 "$LAMBDA_PORT2" front2 "$FRONT_PORT2"
        ;;
    reload-functions)
        reload_functions
        ;;
    sweep-reservations)
        sweep_reservations
        ;;
    env)
        echo "E2E_BASE_URL=$PROXY_URL"
        echo "E2E_ADMIN_URL=$ADMIN_URL"
        echo "AWS_ENDPOINT_URL=$DYNAMO_URL"
        echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
        echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
        [ -n "${AWS_SESSION_TOKEN:-}" ] && echo "AWS_SESSION_TOKEN=$AWS_SESSION_TOKEN"
        echo "AWS_REGION=us-east-1"
        echo "STACK_LOG_DIR=$STATE"
        echo "STACK_SHAPE=$SHAPE"
        echo "E2E_OTLP_ENDPOINT=$OTLP_ENDPOINT"
        echo "SECOND_PRODUCTS_URL=$(instance_url 2 product-service)"
        echo "SWEEPER_INVOKE_URL=$SWEEPER_INVOKE_URL"
        if [ "$SHAPE" = aws ]; then
            echo "FUNCTION_URL_USERS=$(instance_url 1 user-service)"
            echo "FUNCTION_URL_PRODUCTS=$(instance_url 1 product-service)"
        fi
        echo "REGISTRY_TABLE=$REGISTRY_TABLE"
        [ -f "$STATE/functions.env" ] && grep -E '_TABLE=' "$STATE/functions.env"
        ;;
    *)
        sed -n '2,35p' "$0" >&2
        exit 2
        ;;
esac
