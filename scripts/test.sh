#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests, the benchmarks
# built and run once each as tests, the documentation examples, and the
# library crates' cargo examples.
# Ends with one summary line, "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

# The PostgreSQL backend's tests need a database: a throwaway server, from
# Debian's packages if need be (unless STAMPS_TEST_POSTGRES_URL names one).
if [ -z "${STAMPS_TEST_POSTGRES_URL:-}" ]; then
    scripts/install-postgres.sh
    exec scripts/with-postgres.sh "$0" "$@"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"
# The end-to-end HTTP tests of the API, the abuse limits and revocation,
# again with every server on PostgreSQL (each test on a scratch schema).
STAMPS_TEST_BACKEND=postgres cargo test --locked -p stamps-server \
    --test api --test abuse --test revocation 2>&1 | tee -a "$log"
# --all-targets leaves out doctests; they are the rustdoc examples.
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

# The library crates' examples, run the way their doc comments say.
cargo run -q --locked -p stamps-core --example mint_and_verify
cargo run -q --locked -p stamps-http --example protected_service -- --self-test

passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
