#!/usr/bin/env bash
# The HTTP benchmark, one command: builds release, provisions a store, and
# load-tests stamps-server beside the project's bare actix-web floor
# (benches/src/bin/stamps-floor.rs), on loopback, with wrk; then writes the
# results (benches/results/http-latest.json), the HTTP section of
# docs/PERFORMANCE.md and the chart docs/http-bench.png.
#
#   scripts/bench-http.sh                      # stamps and its floor (~1.5 min)
#   scripts/bench-http.sh --peers ../shared/bench   # and the peers, same run
#   scripts/bench-http.sh --alternate 5 --endpoints verify-token --out /tmp/alt.json
#                                              # stamps and the floor in turn
#   scripts/bench-http.sh --help
#
# Needs wrk and taskset (apt-get install wrk util-linux); gnuplot-nox for
# the chart. Every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --help "*|*" -h "*) exec python3 scripts/bench_http.py --help ;; esac
cargo build --release --locked --bin stamps-server --bin stamps-admin --bin stamps-floor
# --alternate ROUNDS (stamps and the floor in turn; the median ratio) has
# no table or chart to write: its figures are printed and in its JSON.
case " $* " in *" --alternate"*) exec python3 scripts/bench_http.py "$@" ;; esac
python3 scripts/bench_http.py "$@"
python3 scripts/bench_report.py benches/results/http-latest.json
