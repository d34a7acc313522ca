#!/usr/bin/env bash
# `make test`: every check the project has, from a clean checkout.
#   1. install what is missing and build once;
#   2. formatting, clippy (warnings are errors), template lint (cfn-lint, sam validate --lint,
#      scripts/check_template.py), the proxy's configs;
#   3. unit and integration tests of every crate;
#   4. start the test stack (its own ports, in AWS's shape), run the end-to-end tests through the
#      proxy, then the fault tests alone, and stop it.
# At the end (pass or fail) it prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/venv/bin:$PATH"
export AWS_EC2_METADATA_DISABLED=true

started=$(date +%s)
stage_names=()
stage_seconds=()
stage=""
stage_started=$started

# Closes the running stage and opens `$1` (none for the last).
next_stage() {
    local now
    now=$(date +%s)
    if [ -n "$stage" ]; then
        stage_names+=("$stage")
        stage_seconds+=($((now - stage_started)))
    fi
    stage=${1:-}
    stage_started=$now
    [ -n "$stage" ] && printf '\n\033[1m==> %s\033[0m\n' "$stage"
    return 0
}

report() {
    local status=$?
    next_stage
    scripts/stack.sh stop test >/dev/null 2>&1 || true
    printf '\n\033[1m%-28s %6s\033[0m\n' "stage" "seconds"
    for i in "${!stage_names[@]}"; do
        printf '%-28s %6s\n' "${stage_names[$i]}" "${stage_seconds[$i]}"
    done
    printf '%-28s %6s\n' "total" "$(( $(date +%s) - started ))"
    if [ "$status" = 0 ]; then
        printf '\033[1m==> all checks passed\033[0m\n'
    else
        printf '\033[1;31m==> failed (exit %s)\033[0m\n' "$status"
    fi
}
trap report EXIT

next_stage "set-up"
SKIP_BUILD=1 scripts/setup.sh

next_stage "build"
scripts/setup.sh

next_stage "lint"
cargo fmt --all --check
# The same targets and features as the build: clippy checks what was built, nothing more.
cargo clippy --locked --workspace --all-targets -- -D warnings
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0
cfn-lint template.yaml
sam validate --lint --template template.yaml
python scripts/check_template.py --template template.yaml
for config in dev local-aws; do
    ./target/debug/edge-proxy check --config "edge-proxy/config/$config.toml"
done
promtool check rules edge-proxy/monitoring/alerts.yml
promtool test rules edge-proxy/monitoring/alerts_test.yml

next_stage "unit and integration tests"
cargo test --locked --workspace --exclude e2e

next_stage "end-to-end"
scripts/stack.sh start test
set -a
eval "$(scripts/stack.sh env test)"
E2E_JWT=$(./target/debug/edge-proxy token --config edge-proxy/config/dev.toml --sub e2e-jwt --scopes "users products" --ttl-seconds 3600)
set +a
# `--workspace --test NAME`, not `-p e2e`: selecting the e2e crate alone would make Cargo
# resolve dependency features for that crate only and build the AWS SDK a second time.
# Every suite but the fault tests, which run alone afterwards (by file: a name filter such as
# `--skip fault_` would also skip any test whose name merely contains it).
e2e_tests=()
for file in tests/tests/*.rs; do
    name=$(basename "$file" .rs)
    [ "$name" = faults ] || e2e_tests+=(--test "$name")
done
cargo test --locked --workspace --no-fail-fast "${e2e_tests[@]}" -- --test-threads 4
# The live exposition, after the suite has made every kind of series appear.
curl -sf "$E2E_ADMIN_URL/metrics" | promtool check metrics

next_stage "faults"
cargo test --locked --workspace --test faults -- --test-threads 1
