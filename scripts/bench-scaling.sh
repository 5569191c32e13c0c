#!/usr/bin/env bash
# CPU per request of one replica on PostgreSQL, beside the bare floor, in
# one run: a throwaway PostgreSQL server (scripts/with-postgres.sh), the
# release binaries, wrk on loopback. The figures of docs/SCALING.md.
#
#   scripts/bench-scaling.sh                 # ~1.5 min
#   scripts/bench-scaling.sh --duration 20   # any option of scripts/bench_http.py
#
# Writes benches/results/http-postgres.json. Needs wrk, taskset and
# PostgreSQL's server binaries (scripts/install-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin stamps-server --bin stamps-admin --bin stamps-floor
scripts/with-postgres.sh bash -c 'exec python3 scripts/bench_http.py --tokens 0 \
    --store-url "$STAMPS_TEST_POSTGRES_URL" --out benches/results/http-postgres.json "$@"' bench "$@"
