#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, idempotently (a second run changes
# nothing), saying what it does:
#   - from apt, whatever is missing of: cmake (pingora's zlib-ng build), curl, make, a C
#     compiler, python3 with venv and ensurepip, redis-server (global rate limits: the tests
#     and `make dev` start their own on a free port), prometheus (its promtool checks the
#     metrics and alert rules; `make dev PROMETHEUS=1` runs it), with no service started;
#   - a project-local Python venv in .tools/venv with the locked tools (scripts/requirements.lock,
#     installed with --require-hashes): moto, cargo-lambda, the SAM CLI, cfn-lint;
#   - one build of the whole workspace into the shared target/ (tests never rebuild it: they
#     run with `--workspace` too, so Cargo resolves the same features and reuses every crate).
# The Rust toolchain is rust-toolchain.toml's (rustup reads it); Cargo.lock is never changed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
fail() { printf '\033[1;31msetup: %s\033[0m\n' "$*" >&2; exit 1; }

# --- Debian packages ------------------------------------------------------------------------
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        as_root() { "$@"; }
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root() { sudo "$@"; }
    else
        fail "missing ${missing[*]}, and this user can install nothing (not root, no password-less sudo); install them with apt and run again"
    fi
    log "installing from apt: ${missing[*]}"
    as_root apt-get update -qq
    # Packages such as redis-server and prometheus start a system service on install; the
    # project starts its own on its own ports, so none is started (policy-rc.d: 101 = deny).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || { if [ -n "$policy" ]; then as_root rm -f "$policy"; fi; fail "apt-get could not install ${missing[*]}"; }
    if [ -n "$policy" ]; then as_root rm -f "$policy"; fi
fi
command -v cargo >/dev/null 2>&1 || fail "no cargo: install Rust with rustup (rust-toolchain.toml names the version)"

# --- Python tools (locked, with hashes) -------------------------------------------------------
VENV=.tools/venv
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum scripts/requirements.lock | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    log "installing the locked Python tools into $VENV (moto, cargo-lambda, aws-sam-cli, cfn-lint)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes \
        -r scripts/requirements.lock || fail "pip could not install scripts/requirements.lock"
    echo "$WANT" > "$STAMP"
fi

# --- One build of everything ----------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building the workspace (debug)"
    cargo build --locked --workspace --all-targets
    # `cargo lambda watch` starts each function with `cargo run --bin NAME`. Without the test
    # targets, Cargo resolves a few shared crates with fewer features (dev-dependencies do not
    # count) and builds those again: do it here, so a build error shows up now and not as a
    # function that never warms up.
    cargo build --locked --bin user-service --bin product-service
fi
