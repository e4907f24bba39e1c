#!/usr/bin/env bash
# Fuzzes the parsers of what reaches the bridge from outside (`make fuzz`): Meta's webhook body,
# the web form's body and the customer-key folding, each for FUZZ_SECONDS (default 600), under
# libFuzzer with limits against unbounded allocation. Prints one line per target: seconds,
# executions, executions per second and the coverage reached; exits non-zero naming the input
# of any crash (kept under fuzz/artifacts/<target>/).
#
#   FUZZ_SECONDS=60 FUZZ_TARGETS="form_body customer_key" scripts/fuzz.sh
#
# Needs cargo-fuzz (installed here if missing) and a nightly toolchain; without one it builds on
# stable with RUSTC_BOOTSTRAP=1. AddressSanitizer either way (FUZZ_SANITIZER=none to go faster). The corpus grows in fuzz/corpus/<target>
# (kept out of git), seeded from fuzz/seeds/<target>; libFuzzer's output is in
# target/fuzz/<target>.log.
set -euo pipefail

cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_TARGETS=${FUZZ_TARGETS:-webhook_payload form_body customer_key}

# The longest input per target: Meta's bodies are larger than a form's, a key is short.
max_len() {
    case "$1" in
        webhook_payload) echo 65536 ;;
        form_body) echo 16384 ;;
        customer_key) echo 64 ;;
        *) echo 4096 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    toolchain=nightly
else
    # cargo-fuzz passes nightly flags (-Zsanitizer, …): stable takes them with RUSTC_BOOTSTRAP.
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    toolchain="stable (RUSTC_BOOTSTRAP=1)"
fi
sanitizer=${FUZZ_SANITIZER:-address}

mkdir -p target/fuzz
summary=()
failed=()
for target in $FUZZ_TARGETS; do
    log="target/fuzz/$target.log"
    corpus="fuzz/corpus/$target"
    seeds="fuzz/seeds/$target"
    mkdir -p "$corpus"
    inputs=("$corpus")
    [ -d "$seeds" ] && inputs+=("$seeds")
    echo "fuzzing $target for ${FUZZ_SECONDS}s ($toolchain, sanitizer $sanitizer; log: $log)"
    status=0
    "${fuzz[@]}" run --fuzz-dir fuzz --sanitizer "$sanitizer" "$target" "${inputs[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" \
        -max_len="$(max_len "$target")" \
        -rss_limit_mb=1024 \
        -malloc_limit_mb=128 \
        -timeout=10 \
        -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    # "#123456  DONE   cov: 812 ft: 3300 corp: 410/52Kb lim: 4096 exec/s: 2057 rss: 95Mb"
    # "Done 123456 runs in 601 second(s)"
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
    seconds=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\2/p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then
        runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    fi
    exec_s=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$done_line")
    cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$done_line")
    corp=$(sed -nE 's/.*corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$done_line")
    line=$(printf '%-16s %5ss  %10s runs  %7s exec/s  cov %s  ft %s  corpus %s' \
        "$target" "${seconds:-?}" "${runs:-?}" "${exec_s:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")
    if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
        artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        line="$line  FAILED (exit $status${artifact:+; input: $artifact}; see $log)"
        failed+=("$target")
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "fuzzing summary ($toolchain, sanitizer $sanitizer):"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed or failed: ${failed[*]}" >&2
    exit 1
fi
