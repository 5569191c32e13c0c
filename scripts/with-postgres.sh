#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server on 127.0.0.1 and its URL
# in STAMPS_TEST_POSTGRES_URL, for the tests of the PostgreSQL backend:
#
#   scripts/with-postgres.sh cargo test -p stamps-store-postgres
#
# Needs PostgreSQL's server binaries (Debian: apt-get install postgresql).
# The cluster lives in a temporary directory, listens on a free port with
# trust authentication on loopback only, skips fsync (it is thrown away),
# and is stopped and deleted when the command ends. An already set
# STAMPS_TEST_POSTGRES_URL is used as it is.
set -euo pipefail

bindir=""
if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    bindir=$(pg_config --bindir)
else
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi

if [ -n "${STAMPS_TEST_POSTGRES_URL:-}" ]; then
    # The tests that stop a server of their own still need the binaries.
    if [ -z "${STAMPS_TEST_POSTGRES_BIN:-}" ] && [ -n "$bindir" ]; then
        export STAMPS_TEST_POSTGRES_BIN="$bindir"
    fi
    exec "$@"
fi

if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "with-postgres: PostgreSQL's server binaries were not found." >&2
    echo "  Install them (Debian/Ubuntu: apt-get install postgresql), or set" >&2
    echo "  STAMPS_TEST_POSTGRES_URL to a database the tests may use." >&2
    exit 2
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/stamps-pg.XXXXXX")
# initdb refuses to run as root: run the server as the postgres user then.
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
    as_owner=(runuser -u postgres --)
fi
stop() {
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U stamps --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
"${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=400" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }

export STAMPS_TEST_POSTGRES_URL="postgres://stamps@127.0.0.1:$port/postgres"
# Its own bin directory too, for tests that stop and start the server.
export STAMPS_TEST_POSTGRES_BIN="$bindir"
export STAMPS_TEST_POSTGRES_DATA="$dir/data"
"$@"
