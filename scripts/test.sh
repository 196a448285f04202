#!/usr/bin/env bash
# Runs every test of the workspace against the real proxies, installing what is missing.
# CUTOVER_REQUIRE_PROXIES=1 turns a missing proxy into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
cargo test --workspace --locked "$@"
