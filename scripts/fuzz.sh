#!/usr/bin/env bash
# Fuzzes each target in turn (one libFuzzer process at a time), then
# minimises its corpus (fuzz/corpus/<target>/) in place. Needs cargo-fuzz
# and a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable); see
# docs/FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   # default: 600, all
#
# Logs (with libFuzzer's final stats) go to fuzz/logs/<target>.log; a crash
# stops the script, its input is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jwt_verify static_token access_token_body authorization_header)

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

mkdir -p fuzz/logs
# Inputs longer than these reach no new code (a JWT of ours is about 250
# bytes, a static token 62), and they keep the kept corpus small.
max_len() {
    case $1 in
        static_token) echo 128 ;;
        *) echo 1024 ;;
    esac
}

for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    # -a: debug assertions and overflow checks on, in the optimised build.
    status=0
    "${fuzz[@]}" run -a "$target" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"fuzz/logs/$target.log" 2>&1 || status=$?
    grep -E '^(Done|stat::|SUMMARY)|panicked' "fuzz/logs/$target.log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz target $target failed (status $status); see fuzz/logs/$target.log" >&2
        exit "$status"
    fi
    # One input per covered edge (hit counts ignored): the same edges as a
    # plain cmin with about a third of the files, so the corpus kept in the
    # repository stays small.
    "${fuzz[@]}" cmin -a "$target" -- -use_counters=0 >"fuzz/logs/$target.cmin.log" 2>&1
    echo "corpus: $(find "fuzz/corpus/$target" -type f | wc -l) files, $(du -sb "fuzz/corpus/$target" | cut -f1) bytes"
done
