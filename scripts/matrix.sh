#!/usr/bin/env bash
# Runs the tests that start a real proxy against the HAProxy and Nginx of other Debian
# releases: Debian 13 "trixie" (HAProxy 3.0, Nginx 1.26) and Debian unstable "sid"
# (HAProxy 3.2 LTS). The proxies of this host (Debian 12: HAProxy 2.6, Nginx 1.22) are
# covered by scripts/test.sh.
#
#   bash scripts/matrix.sh [SUITE...]        # default: trixie sid
#
# The chroots, their mounts and the wrappers come from scripts/chroot.sh (cached under
# $CUTOVER_CHROOT_CACHE, default /var/cache/cutover-ci/<suite>; CUTOVER_CHROOT_REFRESH=1
# rebuilds them). CUTOVER_PROXY_DIR makes the tests take the wrappers first (PATH stays as
# it is: build scripts watch it, and a changed PATH would rebuild them). Needs root.
# CUTOVER_MATRIX_TESTS overrides the test targets (space separated, default below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/chroot.sh
. scripts/chroot.sh
checkout="$chroot_checkout"
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=(trixie sid)
tests="${CUTOVER_MATRIX_TESTS:-haproxy_client agent_haproxy safety_haproxy plan_haproxy agent_nginx}"
chroot_init
build_chroots "${suites[@]}"

# Built once for all suites: the tests, and the agent they start (CUTOVER_BINARY), which the
# harness would otherwise build with `cargo build -p cutover` from each suite's run.
# --workspace, as scripts/test.sh builds them: the same features, so nothing is rebuilt.
args=()
for t in $tests; do args+=(--test "$t"); done
cargo test --workspace --locked --no-run "${args[@]}"
cargo build --locked -p cutover --bin cutover
export CUTOVER_BINARY="${CUTOVER_BINARY:-${CARGO_TARGET_DIR:-$checkout/target}/debug/cutover}"

status=0
for suite in "${suites[@]}"; do
    dir="$(suite_dir "$suite")"
    mount_suite "$suite"
    bin="$(wrappers "$suite")"
    echo "== $suite: $(chroot "$dir" /usr/sbin/haproxy -v | head -n1); $(chroot "$dir" /usr/sbin/nginx -v 2>&1)"
    started=$SECONDS
    if ! CUTOVER_PROXY_DIR="$bin" CUTOVER_REQUIRE_PROXIES=1 \
        cargo test --workspace --locked "${args[@]}"; then
        echo "== $suite: FAILED" >&2
        status=1
    fi
    echo "== $suite: $((SECONDS - started)) s"
    unmount_all
done
exit "$status"
