#!/usr/bin/env bash
# `make dev`: install what is missing, start the whole stack, print what to try, and stop
# everything on Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
stopping=0
cleanup() {
    [ "$stopping" = 1 ] && return
    stopping=1
    echo
    echo "stopping the stack..."
    scripts/stack.sh stop dev
}
trap cleanup EXIT
trap 'exit 0' INT
trap 'exit 0' TERM

# Human-readable logs for development (JSON is the default everywhere else).
PROXY_LOG_FORMAT=${PROXY_LOG_FORMAT:-text} FUNCTION_LOG_FORMAT=${FUNCTION_LOG_FORMAT:-text} scripts/stack.sh start dev

cat <<'TRY'

The stack is up. Try (the development API key is lambda-edge-dev-key):

  curl -s -X POST localhost:8080/api/users -H 'x-api-key: lambda-edge-dev-key' \
       -H 'content-type: application/json' -d '{"name":"Ada Lovelace","email":"ada@example.com"}'
  curl -s localhost:8080/api/users -H 'x-api-key: lambda-edge-dev-key'
  curl -s -X POST localhost:8080/api/products -H 'x-api-key: lambda-edge-dev-key' \
       -H 'content-type: application/json' \
       -d '{"sku":"LAMP-1","name":"Desk lamp","price_cents":1999,"currency":"EUR","stock":5}'
  TOKEN=$(target/debug/edge-proxy token --config edge-proxy/config/dev.toml --sub alice --scopes "users products")
  curl -s localhost:8080/api/products -H "authorization: Bearer $TOKEN"
  make instances                                               # the discovery registry

Logs: .stack/dev/{proxy,functions,functions2,dynamodb}.log    Stop: Ctrl-C
TRY

# Follow the proxy's access log until interrupted.
tail -n 0 -F .stack/dev/proxy.log &
wait $!
