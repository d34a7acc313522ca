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

PROXY_LOG_FORMAT=${PROXY_LOG_FORMAT:-text} scripts/stack.sh start dev

cat <<'TRY'

The stack is up. Try:

  curl -s -X POST localhost:8080/api/users -H 'content-type: application/json' \
       -d '{"name":"Ada Lovelace","email":"ada@example.com"}'
  curl -s localhost:8080/api/users
  curl -s -X POST localhost:8080/api/products -H 'content-type: application/json' \
       -d '{"sku":"LAMP-1","name":"Desk lamp","price_cents":1999,"currency":"EUR","stock":5}'
  curl -s localhost:8080/api/products

Logs: .stack/dev/{proxy,functions,dynamodb}.log    Stop: Ctrl-C
TRY

# Follow the proxy's access log until interrupted.
tail -n 0 -F .stack/dev/proxy.log &
wait $!
