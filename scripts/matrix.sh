#!/usr/bin/env bash
# Runs the tests that start a real proxy against the HAProxy and Nginx of other Debian
# releases: Debian 13 "trixie" (HAProxy 3.0, Nginx 1.26) and Debian unstable "sid"
# (HAProxy 3.2 LTS). The proxies of this host (Debian 12: HAProxy 2.6, Nginx 1.22) are
# covered by scripts/test.sh.
#
#   bash scripts/matrix.sh [SUITE...]        # default: trixie sid
#
# Each suite's packages are installed with debootstrap into a chroot cached under
# $CUTOVER_CHROOT_CACHE (default /var/cache/cutover-ci/<suite>), built once and reused by
# later runs; CUTOVER_CHROOT_REFRESH=1 rebuilds them. While the tests run, /dev, /proc, /tmp
# and this checkout are bind-mounted at the same paths inside, and wrappers named haproxy
# and nginx run the chroot's binaries (`exec chroot DIR /usr/sbin/haproxy`, so the PID the
# tests see is the proxy's); CUTOVER_PROXY_DIR makes the tests take them first (PATH stays
# as it is: build scripts watch it, and a changed PATH would rebuild them). Needs root. CUTOVER_MATRIX_TESTS overrides the
# test targets (space separated, default below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
checkout="$(pwd -P)"
cache="${CUTOVER_CHROOT_CACHE:-/var/cache/cutover-ci}"
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=(trixie sid)
tests="${CUTOVER_MATRIX_TESTS:-haproxy_client agent_haproxy safety_haproxy plan_haproxy agent_nginx}"

if [ "$(id -u)" -ne 0 ]; then
    echo "matrix.sh: chroots and bind mounts need root" >&2
    exit 1
fi
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

# The Debian mirror of this host's apt sources (deb822 or one-line form).
mirror() {
    local uri
    uri="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
    [ -n "$uri" ] || uri="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]].*/\2/p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)"
    echo "${uri:-http://deb.debian.org/debian}"
}

# Builds the chroot of suite $1 unless a complete one is cached (built into a .partial
# directory and renamed, so an interrupted build is never reused).
build_chroot() {
    local suite="$1" dir="$cache/$1"
    if [ -x "$dir/usr/sbin/haproxy" ] && [ "${CUTOVER_CHROOT_REFRESH:-0}" != 1 ]; then
        return
    fi
    mkdir -p "$cache"
    rm -rf "$dir.partial" "$dir"
    echo "== building the $suite chroot in $dir ($(mirror))"
    if ! debootstrap --variant=minbase --include=haproxy,nginx "$suite" "$dir.partial" \
        "$(mirror)" >"$cache/$suite.log" 2>&1; then
        tail -n 20 "$cache/$suite.log" >&2
        exit 1
    fi
    mv "$dir.partial" "$dir"
}

mounted=()
unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
    done
    mounted=()
}
trap unmount_all EXIT

bind() {
    local source="$1" target="$2"
    mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        mount --bind "$source" "$target"
        mounted+=("$target")
    fi
}

# The wrappers that make suite $1's proxies the ones the tests find first on PATH.
wrappers() {
    local dir="$cache/$1" bin="$cache/$1.bin" name
    mkdir -p "$bin"
    for name in haproxy nginx; do
        printf '#!/bin/sh\nexec chroot %s /usr/sbin/%s "$@"\n' "$dir" "$name" >"$bin/$name"
        chmod 0755 "$bin/$name"
    done
    echo "$bin"
}

# The chroots are built side by side (mostly downloads), then the suites run one by one.
builds=()
for suite in "${suites[@]}"; do
    build_chroot "$suite" &
    builds+=("$!")
done
for pid in "${builds[@]}"; do
    wait "$pid"
done

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
    dir="$cache/$suite"
    bind /dev "$dir/dev"
    mkdir -p "$dir/proc"
    if ! mountpoint -q "$dir/proc"; then
        mount -t proc proc "$dir/proc"
        mounted+=("$dir/proc")
    fi
    bind /tmp "$dir/tmp"
    bind "$checkout" "$dir$checkout"
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
