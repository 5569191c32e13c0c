#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries are installed, for the tests of
# the PostgreSQL backend (scripts/with-postgres.sh runs a throwaway server
# from them; nothing is started here). Installs Debian's `postgresql`
# package when they are missing and this runs as root with apt-get.
set -euo pipefail

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    { command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; }; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-postgres: PostgreSQL's server binaries are missing; install them" >&2
    echo "  (Debian/Ubuntu: sudo apt-get install postgresql), or set" >&2
    echo "  STAMPS_TEST_POSTGRES_URL to a database the tests may use." >&2
    exit 2
fi
echo "install-postgres: installing Debian's postgresql package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The package's own cluster is not used (and not started in a container).
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
ls /usr/lib/postgresql/*/bin/initdb
