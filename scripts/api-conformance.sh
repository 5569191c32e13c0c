#!/usr/bin/env bash
# API conformance: schemathesis against the real stamps-server, from the
# OpenAPI document the server itself serves (GET /api/openapi.json).
#
# Builds the debug binaries (the ones the tests use), provisions a
# temporary data directory with stamps-admin (merchant 1, user 5870, one
# static token), starts the server on 127.0.0.1 with a port the OS picks,
# gets a JWT from it, then runs schemathesis with every check that applies,
# the JWT for the `jwt` scheme and the static token for `static_token`.
# Stops the server (by its pid) and removes the directory on exit.
#
# Needs python3 (with venv, or pip) and PyPI. schemathesis is installed once
# into target/schemathesis-<version>/ and reused.
#
# Arguments: more `schemathesis run` options (e.g. `--include-path
# /api/ping`, `--report junit`), after the script's own.
# Environment: MAX_EXAMPLES (per operation, default 300), SEED (default 1),
# CONFORMANCE_TIMEOUT (seconds for the whole schemathesis run, default 240).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-300}
SEED=${SEED:-1}
CONFORMANCE_TIMEOUT=${CONFORMANCE_TIMEOUT:-240}

echo "== api conformance: build"
# The same selection as scripts/test.sh, so after the tests nothing is
# rebuilt: `-p stamps-server` alone resolves other features and recompiles
# half the tree. The test build places the binaries in target/debug/.
cargo test --workspace --all-targets --locked --no-run -q
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server_bin="$target_dir/debug/stamps-server"
admin_bin="$target_dir/debug/stamps-admin"

echo "== api conformance: schemathesis $SCHEMATHESIS_VERSION"
tools="$target_dir/schemathesis-$SCHEMATHESIS_VERSION"
if [ -x "$tools/bin/schemathesis" ]; then
    schemathesis=("$tools/bin/schemathesis")
elif [ -d "$tools/lib-target" ]; then
    schemathesis=(env "PYTHONPATH=$tools/lib-target" python3 -m schemathesis.cli)
else
    rm -rf "$tools"
    if python3 -m venv "$tools" 2>/dev/null; then
        "$tools/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            "schemathesis==$SCHEMATHESIS_VERSION"
        schemathesis=("$tools/bin/schemathesis")
    else
        # No venv module (Debian's python3 without python3-venv): pip into
        # a directory of our own instead.
        rm -rf "$tools"
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --target "$tools/lib-target" "schemathesis==$SCHEMATHESIS_VERSION"
        schemathesis=(env "PYTHONPATH=$tools/lib-target" python3 -m schemathesis.cli)
    fi
fi
"${schemathesis[@]}" --version

work=$(mktemp -d)
chmod 700 "$work"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== api conformance: provision and start the server"
data="$work/data"
admin() { "$admin_bin" --data-dir "$data" --json "$@"; }
admin merchant add --name "My Merchant" --id 1 >/dev/null
admin merchant add --name "Other Merchant" --id 2 >/dev/null
admin user add --name user5870 --id 5870 >/dev/null
static_token=$(admin token create --user 5870 --merchant 1 --label conformance |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

: >"$work/server.log"
STAMPS_LISTEN=127.0.0.1:0 \
    STAMPS_DATA_DIR="$data" \
    STAMPS_JWT__SECRET="conformance-run-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')" \
    STAMPS_LOG=info \
    "$server_bin" 2>"$work/server.log" &
server_pid=$!

# Bounded wait for the "listening on http://ADDR" line.
url=""
for _ in $(seq 300); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" | head -n1 | cut -d' ' -f3 || true)
    [ -n "$url" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$work/server.log" >&2
        echo "api conformance: the server exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    cat "$work/server.log" >&2
    echo "api conformance: the server did not start within 30 s" >&2
    exit 1
fi
echo "server at $url (pid $server_pid)"

# A JWT, the way a client gets one (this also proves the static token, so
# neither credential is ever throttled).
jwt=$(python3 - "$url" "$static_token" <<'EOF'
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    url + "/api/auth/get-access-token/",
    data=json.dumps({"token": token, "crm_merchant_id": 1}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(request, timeout=30) as response:
    print(json.load(response)["access_token"])
EOF
)

# The credentials for the security schemes; and get-access-token is also
# sent the real static token, and merchants 1 (its own: 200) and 2 (403),
# half of the time each, beside what schemathesis makes up.
cat >"$work/schemathesis.toml" <<EOF
[cache]
enabled = false

[auth.openapi.jwt]
bearer = "$jwt"

[auth.openapi.static_token]
api_key = "Token $static_token"

[dictionaries.static_tokens]
values = ["$static_token"]

[dictionaries.merchants]
values = [1, 2]

[parameters]
"body.token" = { dictionary = "static_tokens", probability = 0.5 }
"body.crm_merchant_id" = { dictionary = "merchants", probability = 0.5 }
EOF

echo "== api conformance: schemathesis run (at most $MAX_EXAMPLES examples per operation, seed $SEED)"
started=$(date +%s)
status=0
timeout "$CONFORMANCE_TIMEOUT" "${schemathesis[@]}" --no-color --config-file "$work/schemathesis.toml" \
    run "$url/api/openapi.json" \
    --url "$url" \
    --include-path-regex "^/(api/|healthz|readyz)" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 30 \
    --generation-database none \
    --suppress-health-check too_slow \
    "$@" \
    || status=$?
echo "schemathesis took $(($(date +%s) - started)) s"
echo "== api conformance: what the server answered (requests per path and status)"
grep -o 'path=[^ ]* status=[0-9]*' "$work/server.log" | sort | uniq -c | sort -rn || true
if [ "$status" -ne 0 ]; then
    echo "== server log (last 40 lines)" >&2
    tail -n 40 "$work/server.log" >&2
    echo "api conformance: FAILED (exit $status)" >&2
    exit "$status"
fi
echo "api conformance: passed"
