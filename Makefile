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
	cargo build --quiet -p bridge-tests --bin local-stack
	target/debug/local-stack scripts/pgtap.sh

test-rust:
	cargo test --workspace 2>&1 | tee target/cargo-test.log
	@awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "cargo: %d passed, %d failed\n", passed, failed }' target/cargo-test.log

# A stack to try things by hand: prints its environment, Ctrl-C stops and deletes it.
stack:
	cargo run --quiet -p bridge-tests --bin local-stack

DEV_PORT ?= 3000
export DEV_PORT

# The whole bridge on this machine (see README, "Quick start"). Reads .env if present.
dev:
	@scripts/install-test-deps.sh
	cargo run --quiet -p bridge-tests --bin dev

# Be a customer on WhatsApp: make chat PHONE=5215512345678
chat:
	@cargo run --quiet -p bridge-tests --bin chat -- "$(PHONE)"

# Submit the web form: make form NAME=Ana PHONE=5512345678
form:
	@secret=$$(grep -s '^FORM_SHARED_SECRET=.' .env | cut -d= -f2-); \
	curl -sS -X POST "http://127.0.0.1:$(DEV_PORT)/form" \
	  -H "Authorization: Bearer $${FORM_SHARED_SECRET:-$${secret:-dev-form-secret}}" \
	  -H 'Content-Type: application/json' \
	  --data "$$(printf '{"name": "%s", "phone": "%s", "consent": true}' "$(NAME)" "$(PHONE)")"; echo
