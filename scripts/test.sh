#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests, the benchmarks
# built and run once each as tests, the documentation examples, and the
# library crates' cargo examples.
# Ends with one summary line, "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"
# --all-targets leaves out doctests; they are the rustdoc examples.
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

# The library crates' examples, run the way their doc comments say.
cargo run -q --locked -p stamps-core --example mint_and_verify
cargo run -q --locked -p stamps-http --example protected_service -- --self-test

passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
