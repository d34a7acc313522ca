#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer via cargo fuzz) of the parsers and validators:
#   edge-proxy/fuzz   config, request (hygiene + routing), utf8 (streamed body check)
#   functions/fuzz    cursor, user_create, user_update, product_create, product_update, reservation
# The properties live in each crate's `fuzzing` module; `cargo test` replays the checked-in
# seeds (`*/fuzz/seeds/<target>/`) on stable, so a crash found here becomes a regression test
# once its input is copied there.
#
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh config cursor   only these targets
#
# Needs a nightly toolchain (sanitizers, -Z flags); cargo-fuzz is installed into .tools/cargo.
# Builds go to target/fuzz, the growing corpus to target/fuzz-corpus, crashes to
# target/fuzz-artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
CARGO_FUZZ_VERSION=0.13.2

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "cargo fuzz needs a nightly toolchain (rustup toolchain install nightly); none is installed"
    exit 2
fi
if [ ! -x .tools/cargo/bin/cargo-fuzz ]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/cargo"
    cargo install -q --locked --root .tools/cargo cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
export PATH="$PWD/.tools/cargo/bin:$PATH"

declare -A FUZZ_DIR=(
    [config]=edge-proxy/fuzz [request]=edge-proxy/fuzz [utf8]=edge-proxy/fuzz
    [cursor]=functions/fuzz [user_create]=functions/fuzz [user_update]=functions/fuzz
    [product_create]=functions/fuzz [product_update]=functions/fuzz [reservation]=functions/fuzz
)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config request utf8 cursor user_create user_update
    product_create product_update reservation)

failed=()
for target in "${targets[@]}"; do
    dir=${FUZZ_DIR[$target]:-}
    [ -n "$dir" ] || { log "unknown fuzz target '$target'"; exit 2; }
    corpus=target/fuzz-corpus/$target
    artifacts=target/fuzz-artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    log "fuzzing $target for ${SECONDS_PER_TARGET}s"
    # Release build with debug assertions (overflow checks on), AddressSanitizer.
    if ! cargo +nightly fuzz run --fuzz-dir "$dir" --target-dir target/fuzz "$target" \
        "$corpus" "$dir/seeds/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -max_len=65536 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 | tail -n 25; then
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    log "crashes in: ${failed[*]} (inputs in target/fuzz-artifacts/; replay one with"
    log "  cargo +nightly fuzz run --fuzz-dir <dir> --target-dir target/fuzz <target> <file>)"
    exit 1
fi
log "no crash in: ${targets[*]}"
