# `make test` is the one command that proves it all: format, lints, the SQL's pgTAP tests and
# every cargo test, on a local PostgreSQL + PostgREST-compatible stack it starts and stops.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)

.PHONY: test deps lint test-sql test-rust stack dev chat form

test: deps lint test-sql test-rust

deps:
	@scripts/install-test-deps.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-sql:
	cargo build --quiet -p sandbox --bin local-stack
	target/debug/local-stack scripts/pgtap.sh

test-rust:
	cargo test --workspace 2>&1 | tee target/cargo-test.log
	@awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "cargo: %d passed, %d failed\n", passed, failed }' target/cargo-test.log

# A stack to try things by hand: prints its environment, Ctrl-C stops and deletes it.
stack:
	cargo run --quiet -p sandbox --bin local-stack

DEV_PORT ?= 3000
export DEV_PORT

# The whole bridge on this machine (see README, "Quick start"). Reads .env if present.
dev:
	@scripts/install-test-deps.sh
	cargo run --quiet -p sandbox --bin dev

# Be a customer on WhatsApp: make chat PHONE=5215512345678
chat:
	@cargo run --quiet -p sandbox --bin chat -- "$(PHONE)"

# Submit the web form: make form NAME=Ana PHONE=5512345678
form:
	@secret=$$(grep -s '^FORM_SHARED_SECRET=.' .env | cut -d= -f2-); \
	curl -sS -X POST "http://127.0.0.1:$(DEV_PORT)/form" \
	  -H "Authorization: Bearer $${FORM_SHARED_SECRET:-$${secret:-dev-form-secret-of-the-local-sandbox}}" \
	  -H 'Content-Type: application/json' \
	  --data "$$(printf '{"name": "%s", "phone": "%s", "consent": true}' "$(NAME)" "$(PHONE)")"; echo

# ---------------------------------------------------------------- AWS (docs/deploy.md)
.PHONY: build check deploy

# The four Lambda bootstraps, target/lambda/<function>/bootstrap: one release build of the
# workspace for arm64 (x86_64 if the aarch64 target cannot be added), each under 8 MB.
build:
	@scripts/lambda-build.sh

# What CI can check of a deployment without an AWS account: cfn-lint and `sam validate --lint`
# on template.yaml, then the release build of every function for Lambda.
check:
	@scripts/check-template.sh
	@$(MAKE) --no-print-directory build

# The SAM CLI scripts/check-template.sh installs (its own virtual environment).
DEPLOY_TOOLS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/whatsapp-retell-bridge/deploy-tools
export DEPLOY_TOOLS

# Checks and builds, then deploys: `sam deploy --guided` while samconfig.toml holds no stack
# parameters yet (the first time; it asks for them and saves them there), `sam deploy` after.
# `make deploy GUIDED=1` asks again.
deploy: check
	@arch=$$(cat target/lambda/ARCHITECTURE); \
	saved=$$(grep -Eo 'Architecture=[^ ]*(arm64|x86_64)' samconfig.toml | grep -Eo '(arm64|x86_64)$$' || echo arm64); \
	if [ "$$arch" != "$$saved" ]; then \
	  echo "The bootstraps are built for $$arch: answer $$arch for the Architecture parameter."; \
	  guided=1; \
	fi; \
	if [ -n "$(GUIDED)" ] || [ -n "$$guided" ] || ! grep -q '^parameter_overrides' samconfig.toml; then \
	  echo "sam deploy --guided"; \
	  "$(DEPLOY_TOOLS)/bin/sam" deploy --guided --template-file template.yaml; \
	else \
	  echo "sam deploy"; \
	  "$(DEPLOY_TOOLS)/bin/sam" deploy --template-file template.yaml; \
	fi

# libFuzzer on the webhook, form and customer-key parsers, FUZZ_SECONDS (default 600) per target.
.PHONY: fuzz
fuzz:
	@scripts/fuzz.sh

# The chaos run: 200 customers, duplicates, out-of-order bursts, Retell and Graph failures,
# workers killed at any moment of a turn, and four 20 s outages (the store, the queue, WhatsApp's
# token, Retell's billing) on a local stack of its own, with the sweeper running; fails if
# anything is lost, failed, doubled or dead-lettered. (A short run is part of `make test`.)
.PHONY: chaos
chaos:
	@scripts/install-test-deps.sh
	cargo run --quiet -p bridge-tests --bin chaos

# ---------------------------------------------------------------- benchmarks (issue 7)
.PHONY: bench

# The functions' release binaries on the local stack: a table beside the targets, every figure
# in target/bench/report.json, the latency chart in target/bench/latency.png. Reports, never fails.
bench:
	@scripts/bench.sh
