#!/usr/bin/env bash
# The flood benchmark, one command: builds release, provisions a store with
# one static token, and measures verify-token p99 with wrk, without and
# during a flood of wrong-secret attempts (1000/s by default, valid
# checksums, each from its own forwarded address) against that token's id;
# with rate limits on (the default) and, for comparison, off. Writes the
# flood section of docs/PERFORMANCE.md.
#
#   scripts/bench-flood.sh            # ~1 min
#   scripts/bench-flood.sh --help
#
# Needs wrk and taskset (apt-get install wrk util-linux) and python3 (the
# flood generator uses its standard library only). Every process it starts
# is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --help "*|*" -h "*) exec python3 scripts/bench_flood.py --help ;; esac
for tool in wrk taskset python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: apt-get install wrk util-linux python3)" >&2; exit 1; }
done
cargo build --release --locked --bin stamps-server --bin stamps-admin
python3 scripts/bench_flood.py "$@"
