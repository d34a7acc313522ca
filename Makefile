# Two commands do all set-up on a fresh machine:
#   make dev    run the whole stack locally (DynamoDB endpoint, tables, functions, proxy on :8080)
#   make test   run every check and test (what CI runs)
.PHONY: dev test setup stack-up stack-down fmt lint instances

dev:
	scripts/dev.sh

test:
	scripts/test.sh

setup:
	scripts/setup.sh

# The test stack alone, for running single end-to-end tests by hand:
#   make stack-up && eval "$$(scripts/stack.sh env test)" && cargo test -p e2e users
stack-up:
	scripts/stack.sh start test

stack-down:
	scripts/stack.sh stop test

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# What the discovery registry of the running `make dev` stack holds.
instances:
	@set -a; eval "$$(scripts/stack.sh env dev)"; set +a; \
	AWS_EC2_METADATA_DISABLED=true target/debug/edge-proxy --log-format text registry list --table RegistryTable
