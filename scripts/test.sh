#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests, the benchmarks
# built and run once each as tests, the documentation examples, and the
# library crates' cargo examples.
# Ends with one summary line, "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

# The forward-authentication test runs real nginx: Debian's, installed if
# need be; where it cannot be, the test says it skips (STAMPS_TEST_NGINX
# unset) rather than failing.
if [ -z "${STAMPS_TEST_NGINX:-}" ] && scripts/install-tools.sh nginx; then
    export STAMPS_TEST_NGINX=required
fi

# The PostgreSQL backend's tests need a database: a throwaway server, from
# Debian's packages if need be (unless STAMPS_TEST_POSTGRES_URL names one).
if [ -z "${STAMPS_TEST_POSTGRES_URL:-}" ]; then
    scripts/install-postgres.sh
    exec scripts/with-postgres.sh scripts/test.sh "$@"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --workspace --all-targets --locked 2>&1 | tee -a "$log"
# The test binaries the first command built, by name: the HTTP ones run
# again on PostgreSQL. Run as built, since another cargo selection (`cargo
# test -p ...`) resolves other features and rebuilds half the tree.
built=$(
    cargo test --workspace --all-targets --locked --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("executable") and t.get("kind") == ["test"]:
        print(t["name"], m["executable"])'
)
test_binary() { awk -v name="$1" '$1 == name { print $2; exit }' <<<"$built"; }

# The end-to-end HTTP tests of the API, the abuse limits, revocation and
# static tokens (expiry, imported tokens, last use),
# again with every server on PostgreSQL (each test on a scratch schema).
if [ "$STAMPS_TEST_POSTGRES_URL" = skip ]; then
    echo "test.sh: STAMPS_TEST_POSTGRES_URL=skip: the HTTP tests do not run on PostgreSQL"
else
    for name in api abuse revocation tokens; do
        path=$(test_binary "$name")
        [ -n "$path" ] || { echo "test.sh: no $name test binary was built" >&2; exit 1; }
        (cd apps/stamps-server && STAMPS_TEST_BACKEND=postgres "$path") 2>&1 | tee -a "$log"
    done
fi
# --all-targets leaves out doctests; they are the rustdoc examples.
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"

# The library crates' examples, run the way their doc comments say. Built
# for the whole workspace, as the tests were: every library is reused.
cargo build --workspace --examples --locked
examples="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples"
"$examples/mint_and_verify"
"$examples/protected_service" --self-test

passed=$(grep -oE '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
[ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
