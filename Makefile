# Two commands do all set-up on a fresh machine:
#   make dev    run the whole stack locally (DynamoDB endpoint, tables, functions, proxy on :8080)
#   make test   run every check and test (what CI runs)
.PHONY: dev test setup stack-up stack-down fmt lint instances build-aws bench fuzz

dev:
	scripts/dev.sh

test:
	scripts/test.sh

setup:
	scripts/setup.sh

# The test stack alone, for running single end-to-end tests by hand:
#   make stack-up && eval "$$(scripts/stack.sh env test)" && cargo test --workspace --test users
stack-up:
	scripts/stack.sh start test

stack-down:
	scripts/stack.sh stop test

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

# What the discovery registry of the running `make dev` stack holds.
instances:
	@set -a; eval "$$(scripts/stack.sh env dev)"; set +a; \
	AWS_EC2_METADATA_DISABLED=true target/debug/edge-proxy --log-format text registry list --table RegistryTable

# Build both functions for AWS (arm64, release) the way `sam deploy` will: SAM's
# rust-cargolambda build method, cross-compiled with cargo-lambda and zig from .tools/venv.
# Size-optimised (opt-level z, fat LTO): the stripped bootstrap stays under 8 MB. Only the
# tools are set up first: sam build builds what it needs, nothing else is.
build-aws:
	SKIP_BUILD=1 scripts/setup.sh
	PATH="$(CURDIR)/.tools/venv/bin:$$PATH" SAM_CLI_TELEMETRY=0 SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 \
		CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat \
		sam build --beta-features --template template.yaml
	@ls -l .aws-sam/build/UserServiceFunction/bootstrap .aws-sam/build/ProductServiceFunction/bootstrap

# Benchmarks (not part of `make test`): bench/run.sh, results in bench/results/latest.md.
bench:
	bench/run.sh

# Fuzzing (not part of `make test`; needs a nightly toolchain): every cargo-fuzz target for
# FUZZ_SECONDS (default 60) each. `cargo test` replays the checked-in seeds on stable.
fuzz:
	scripts/fuzz.sh
