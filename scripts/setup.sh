#!/usr/bin/env bash
# Installs what the project needs on a fresh machine, idempotently:
#   - cmake (Debian package; pingora's zlib-ng build needs it),
#   - a project-local Python venv in .tools/venv with moto, cargo-lambda, SAM CLI, cfn-lint,
#   - one build of the whole workspace into the shared target/ (tests never rebuild it: they
#     run with `--workspace` too, so Cargo resolves the same features and reuses every crate).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v cmake >/dev/null 2>&1; then
    log "installing cmake (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
fi

VENV=.tools/venv
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum scripts/requirements-dev.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    log "installing Python tools into $VENV (moto, cargo-lambda, aws-sam-cli, cfn-lint)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-dev.txt
    echo "$WANT" > "$STAMP"
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building the workspace (debug)"
    cargo build --workspace --all-targets
    # `cargo lambda watch` starts each function with `cargo run --bin NAME`. Without the test
    # targets, Cargo resolves a few shared crates with fewer features (dev-dependencies do not
    # count) and builds those again: do it here, so a build error shows up now and not as a
    # function that never warms up.
    cargo build --bin user-service --bin product-service
fi
