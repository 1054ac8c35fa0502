#!/usr/bin/env bash
# Fuzzes the decoding and validation of every pushed message kind (fuzz/fuzz_targets/
# push_messages.rs) for a bounded time, and fails on a crash (a panic, an overflow, a timeout, or
# running out of memory). The crashing input is left in fuzz/artifacts/push_messages/.
#
#   scripts/fuzz.sh [SECONDS]     # default 60 s in all
#
# cargo-fuzz needs nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
# It is installed with `cargo install cargo-fuzz --locked` when missing. The target is built
# without a sanitizer (the code under test is safe Rust: the fuzzer looks for panics, and runs
# several times more inputs a second without AddressSanitizer) but with debug assertions and
# overflow checks. The corpus grows in fuzz/corpus/ (not committed), starting from the valid
# messages in fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
target=push_messages
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

mkdir -p "fuzz/corpus/$target"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
(cd fuzz && cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
    >"$log" 2>&1 || status=$?
grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done )' "$log" | tail -n 3 || true
executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target crashed after ${executed:-?} inputs (exit $status); see fuzz/artifacts/$target/" >&2
    exit "$status"
fi
echo "fuzz: $target ran ${executed:-?} inputs in ${seconds} s without a crash"
