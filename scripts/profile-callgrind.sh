#!/usr/bin/env bash
# Where the time goes, in instructions: runs the release stamps-server (and
# the floor) under valgrind's callgrind, sends N requests of one endpoint
# after a warm-up, and prints user-space instructions per request. Unlike
# req/s on this shared machine, the counts repeat to within a percent, so
# a before/after of a change is one run each.
#
#   scripts/profile-callgrind.sh get-access-token        # 2000 requests
#   scripts/profile-callgrind.sh verify-token 5000
#   IN_FLIGHT=32 scripts/profile-callgrind.sh verify-token 6400
#   callgrind_annotate --inclusive=yes target/callgrind/stamps.get-access-token.out | less
#
# Endpoints: verify-token, ping-jwt, ping-static, get-access-token, floor.
# The server runs with its default settings (STAMPS_LOG=info, a line per
# request, to stderr: here a file); STAMPS_LOG=warn measures it without.
# By default one request is in flight at a time (over 4 connections in
# turn); IN_FLIGHT=N sends N at once on N connections, then reads the N
# answers, as a loaded server sees them: what a worker batches per turn of
# its event loop (the request lines) shows only then.
# Caveat: valgrind does not emulate SHA-NI, so SHA-256 runs its portable
# code here and is over-weighted (about 10x) against a native run.
# Needs valgrind (apt-get install valgrind) and curl. Every process it
# starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint=${1:?usage: $0 ENDPOINT [REQUESTS]}
requests=${2:-2000}
if [ "${IN_FLIGHT:-0}" -gt 0 ] && [ "$requests" -lt "${IN_FLIGHT}" ]; then
    echo "IN_FLIGHT=$IN_FLIGHT needs at least as many requests" >&2
    exit 2
fi
release=target/release
out_dir=target/callgrind
mkdir -p "$out_dir"
cargo build -q --release --locked --bin stamps-server --bin stamps-admin --bin stamps-floor

data=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out="$out_dir/stamps.$endpoint.out"
rm -f "$out"*

admin() { "$release/stamps-admin" --data-dir "$data" --json "$@"; }
if [ "$endpoint" = floor ]; then
    out="$out_dir/floor.out"
    rm -f "$out"*
    valgrind --tool=callgrind --callgrind-out-file="$out" "$release/stamps-floor" "127.0.0.1:$port" 2>"$out_dir/valgrind.log" &
    pid=$!
else
    admin merchant add --name "My Merchant" --id 1 >/dev/null
    admin user add --name user5870 --id 5870 >/dev/null
    static=$(admin token create --user 5870 --merchant 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    STAMPS_LISTEN="127.0.0.1:$port" STAMPS_DATA_DIR="$data" STAMPS_LOG="${STAMPS_LOG:-info}" STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN=0 \
        STAMPS_JWT__SECRET="a profiling secret of at least thirty-two bytes" \
        valgrind --tool=callgrind --callgrind-out-file="$out" "$release/stamps-server" 2>"$out_dir/valgrind.log" &
    pid=$!
fi
# Start-up under valgrind takes seconds; bounded at 60.
for _ in $(seq 600); do
    curl -s -o /dev/null -X POST "http://127.0.0.1:$port/" && break
    sleep 0.1
done

body=
auth=
case $endpoint in
    floor) path=/api/auth/verify-token/ ;;
    get-access-token) path=/api/auth/get-access-token/; body="{\"token\": \"$static\", \"crm_merchant_id\": 1}" ;;
    verify-token | ping-jwt | ping-static)
        jwt=$(curl -s -X POST -H 'Content-Type: application/json' \
            -d "{\"token\": \"$static\", \"crm_merchant_id\": 1}" \
            "http://127.0.0.1:$port/api/auth/get-access-token/" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
        case $endpoint in
            verify-token) path=/api/auth/verify-token/; auth="Bearer $jwt" ;;
            ping-jwt) path=/api/ping; auth="Bearer $jwt" ;;
            ping-static) path=/api/ping; auth="Token $static" ;;
        esac ;;
    *) echo "unknown endpoint: $endpoint" >&2; exit 2 ;;
esac

# N POSTs over keep-alive connections; exits non-zero unless all are 200.
send() {
    python3 - "$port" "$path" "$auth" "$body" "$1" "${IN_FLIGHT:-0}" <<'PY'
import socket, sys
port, path, auth, body, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
in_flight = int(sys.argv[6])
head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
if auth:
    head += f"Authorization: {auth}\r\n"
request = (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(in_flight or 4)]

def received(c, i):
    chunk = c.recv(65536)
    if not chunk:
        sys.exit(f"request {i}: the server closed the connection")
    return chunk

def answer(c, i):
    data = b""
    while b"\r\n\r\n" not in data:
        data += received(c, i)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(rest) < length:
        rest += received(c, i)
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"request {i}: {head.splitlines()[0].decode()}")

if in_flight:
    for burst in range(n // in_flight):
        for c in conns:
            c.sendall(request)
        for c in conns:
            answer(c, burst * in_flight)
else:
    for i in range(n):
        c = conns[i % 4]
        c.sendall(request)
        answer(c, i)
PY
}
send 300
callgrind_control --zero "$pid" >/dev/null 2>&1
send "$requests"
callgrind_control --dump "$pid" >/dev/null 2>&1
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
# The explicit dump is part 1; what valgrind writes at exit is the rest.
dump="$out.1"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
sent=$requests
[ "${IN_FLIGHT:-0}" -gt 0 ] && sent=$((requests / IN_FLIGHT * IN_FLIGHT))
echo "$endpoint: $((total / sent)) instructions per request ($sent requests; profile: $dump)"
