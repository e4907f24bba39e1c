#!/usr/bin/env bash
# `make bench`: the functions' release binaries measured on the local stack (see bench/harness/).
# Prints a table beside the product's targets, writes target/bench/report.json and draws
# target/bench/latency.png. A missed target is reported, never a failure: this exits non-zero
# only when the benchmark could not run.
#
# matplotlib comes from PyPI into its own virtual environment (BENCH_TOOLS, default
# ~/.cache/whatsapp-retell-bridge/bench-tools), pinned, installed once, as the deploy tools are.
#
#   scripts/bench.sh           everything
#   scripts/bench.sh --quick   fewer and shorter runs, to try the harness itself
#   scripts/bench.sh --cold-start-only   only the cold starts (no stack, no chart)
set -euo pipefail
cd "$(dirname "$0")/.."

MATPLOTLIB_VERSION=3.10.8
tools=${BENCH_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/whatsapp-retell-bridge/bench-tools}
bin="$tools/bin"

if ! "$bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" 2>/dev/null; then
  echo "installing matplotlib $MATPLOTLIB_VERSION (PyPI) into $tools"
  if ! python3 -m venv --clear "$tools" 2>/dev/null; then
    echo "python3 -m venv is not available (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$bin/python" -m pip install --quiet --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
fi

# PostgreSQL, postrust and moto, as the tests use them.
scripts/install-test-deps.sh

# The measured binaries with the real release profile (fat LTO); the harness with a profile of
# its own that skips LTO, so changing it does not relink the functions.
echo "building the functions and hello-lambda (release profile)"
cargo build --release -p whatsapp-inbound -p form-intake -p conversation-worker -p hello-lambda
echo "building the harness (bench-harness profile)"
cargo build --profile bench-harness -p bench-harness --bin bench

target=${CARGO_TARGET_DIR:-target}
"$target/bench-harness/bench" "$@"
# The chart needs the latency runs, which a cold-start-only run does not make.
case " $* " in
  *" --cold-start-only "*) ;;
  *) "$bin/python" scripts/bench-chart.py "$target/bench/report.json" "$target/bench/latency.png" ;;
esac
