#!/usr/bin/env bash
# Forward authentication behind nginx, one command: builds release, then
# loads nginx alone in front of an upstream, and nginx with docs/PROXIES.md's
# configuration (every request checked by stamps with a JWT), side by side;
# req/s, latency and CPU per request of nginx and of stamps.
#
#   scripts/bench-proxy.sh [--duration 10] [--connections 64]
#
# Needs nginx and wrk (scripts/install-tools.sh nginx wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in *" --help "*|*" -h "*) exec python3 scripts/bench_proxy.py --help ;; esac
cargo build --release --locked --bin stamps-server --bin stamps-admin
exec python3 scripts/bench_proxy.py "$@"
