#!/usr/bin/env bash
# Runs every test of the workspace against the real proxies, installing what is missing.
# CUTOVER_REQUIRE_PROXIES=1 turns a missing proxy into a failure instead of a skip. Every
# test binary runs even when an earlier one fails (--no-fail-fast); the last line is the
# grand total over all of them and the doctests: `N passed, N failed, N skipped`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# `test result: ok. 12 passed; 0 failed; 2 ignored; ...` once per binary and doctest run.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) s += $(i - 1)
        }
     }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
