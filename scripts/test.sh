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
    exec scripts/with-postgres.sh scripts/test.sh "$@"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"
# The end-to-end HTTP tests of the API, the abuse limits and revocation,
# again with every server on PostgreSQL (each test on a scratch schema).
# The binaries just built are run again: another cargo selection would
# resolve other features and rebuild half the tree.
mapfile -t on_postgres < <(
    cargo test --workspace --all-targets --locked --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("executable") and t.get("kind") == ["test"] and t.get("name") in ("api", "abuse", "revocation"):
        print(m["executable"])'
)
[ "${#on_postgres[@]}" -eq 3 ] || { echo "test.sh: expected the api, abuse and revocation test binaries" >&2; exit 1; }
if [ "$STAMPS_TEST_POSTGRES_URL" = skip ]; then
    echo "test.sh: STAMPS_TEST_POSTGRES_URL=skip: the HTTP tests do not run on PostgreSQL"
else
    for binary in "${on_postgres[@]}"; do
        (cd apps/stamps-server && STAMPS_TEST_BACKEND=postgres "$binary") 2>&1 | tee -a "$log"
    done
fi
# --all-targets leaves out doctests; they are the rustdoc examples.
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

# The library crates' examples, as the first command built them (a
# `cargo run -p ...` would rebuild for its own feature selection).
examples="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples"
"$examples/mint_and_verify"
"$examples/protected_service" --self-test

passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
