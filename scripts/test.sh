#!/usr/bin/env bash
# `make test`: every check the project has, from a clean checkout.
#   1. install what is missing and build once;
#   2. formatting, clippy (warnings are errors), template lint (cfn-lint, sam validate --lint);
#   3. unit and integration tests of every crate;
#   4. start the test stack (its own ports), run the end-to-end tests through the proxy, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/venv/bin:$PATH"
export AWS_EC2_METADATA_DISABLED=true

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

started=$(date +%s)
step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "template lint"
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0
cfn-lint template.yaml
sam validate --lint --template template.yaml
python scripts/check_template.py --template template.yaml
for config in dev local-aws; do
    ./target/debug/edge-proxy check --config "edge-proxy/config/$config.toml"
done

step "unit and integration tests"
cargo test --workspace --exclude e2e

step "end-to-end tests against the local stack"
trap 'scripts/stack.sh stop test' EXIT
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
cargo test --workspace --no-fail-fast "${e2e_tests[@]}" -- --test-threads 4

step "fault tests (alone: they pause the DynamoDB endpoint)"
cargo test --workspace --test faults -- --test-threads 1

step "all checks passed in $(( $(date +%s) - started )) s"
