#!/usr/bin/env bash
# The soak test, one command: builds release, then runs stamps-server on
# sled with its default settings (but a 2-minute audit retention and a
# raised issuance quota) under a mixed load for --minutes (default 30),
# while an admin loop changes the store once a second. It samples RSS,
# data directory size, descriptors, threads, req/s, p50/p99 and 5xx every
# --interval seconds, checks the store against the loop's model at the end,
# and exits non-zero if any pass criterion fails.
#
#   scripts/soak.sh                     # 30 minutes
#   scripts/soak.sh --minutes 3 --interval 20 --retention 30   # CI's run
#   scripts/soak.sh --report            # and the table and chart into docs/OPERATIONS.md
#   scripts/soak.sh --rejudge benches/results/soak-latest.json --report
#                                       # a saved run, judged by the current criteria
#   scripts/soak.sh --help
#
# Needs wrk and taskset (apt-get install wrk util-linux); gnuplot-nox for
# the chart. Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --help "*|*" -h "*|*" --rejudge "*) exec python3 scripts/soak.py "$@" ;; esac
cargo build --release --locked --bin stamps-server --bin stamps-admin
exec python3 scripts/soak.py "$@"
