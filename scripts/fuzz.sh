#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for SECONDS each (default 60) with cargo-fuzz (libFuzzer,
# AddressSanitizer), and prints per target the executions, the corpus and the regressions
# kept; a target that crashes or executes no input fails the run.
#
#   bash scripts/fuzz.sh          # 60 s per target
#   bash scripts/fuzz.sh 15       # what CI runs (.ci/run)
#   bash scripts/fuzz.sh 3600     # a long run: an hour per target
#   FUZZ_TARGETS="map_parse" bash scripts/fuzz.sh 600   # some targets only
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) and the corpus grown by
# earlier runs on this machine (fuzz/corpus/<target>, not committed). An input that crashes
# a target is copied to agent/tests/fuzz-regressions/<target>/, where `cargo test` replays
# it (agent/tests/fuzz_regressions.rs): fix the code until that test passes, then commit
# the input with the fix. Needs a nightly toolchain (cargo-fuzz builds with -Zsanitizer);
# installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS per target]" >&2; exit 2 ;;
esac
targets="${FUZZ_TARGETS:-protocol_decode config_parse haproxy_reply map_parse access_log}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "error: fuzzing needs a nightly Rust toolchain (cargo-fuzz builds with sanitizers);" >&2
    echo "       install it with: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets (nightly, AddressSanitizer)"
cargo +nightly fuzz build --fuzz-dir fuzz

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for t in $targets; do
    echo "== fuzzing $t for ${seconds} s"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
        tail -n 40 "$logs/$t.log" >&2
        regressions="agent/tests/fuzz-regressions/$t"
        for a in fuzz/artifacts/"$t"/*; do
            [ -f "$a" ] || continue
            cp "$a" "$regressions/"
            echo "kept $(basename "$a") in $regressions (replayed by cargo test)" >&2
        done
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)"
    if [ "$status" = ok ] && [ "${runs:-0}" -eq 0 ]; then
        # A target that ran nothing proves nothing: a broken build or harness, not a pass.
        status=NO-RUNS
        failed+=("$t")
        tail -n 40 "$logs/$t.log" >&2
    fi
    corpus="$(find "fuzz/corpus/$t" -type f | wc -l)"
    kept="$(find "agent/tests/fuzz-regressions/$t" -type f ! -name .gitkeep 2>/dev/null | wc -l)"
    summary+=("$(printf '%-16s %-8s %12s executions  %6s corpus inputs  %4s regressions kept' \
        "$t" "$status" "${runs:-0}" "$corpus" "$kept")")
done

echo "== fuzzing summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "error: crashes, or no input executed, in: ${failed[*]}" >&2
    exit 1
fi
