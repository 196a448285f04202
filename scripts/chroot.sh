# Sourced by scripts/matrix.sh and scripts/bench.sh: the HAProxy and Nginx of other Debian
# releases, installed with debootstrap into chroots and run through wrappers.
#
# Each suite's packages go into a chroot cached under $CUTOVER_CHROOT_CACHE (default
# /var/cache/cutover-ci/<suite>), built once and reused by later runs;
# CUTOVER_CHROOT_REFRESH=1 rebuilds them. `mount_suite` bind-mounts /dev, /proc, /tmp and
# the checkout at the same paths inside; `wrappers` writes scripts named haproxy and nginx
# that run the chroot's binaries (`exec chroot DIR /usr/sbin/haproxy`, so the PID a caller
# sees is the proxy's), for CUTOVER_PROXY_DIR or a benchmark to take. `unmount_all` (set
# as the EXIT trap by `chroot_init`) undoes the mounts. Needs root.
#
#   . scripts/chroot.sh
#   chroot_init                 # root check, debootstrap, the EXIT trap
#   build_chroots trixie sid    # side by side (mostly downloads)
#   mount_suite trixie; bin="$(wrappers trixie)"

chroot_cache="${CUTOVER_CHROOT_CACHE:-/var/cache/cutover-ci}"
chroot_checkout="$(pwd -P)"
mounted=()

# Checks for root, installs debootstrap when missing and sets the EXIT trap that unmounts.
chroot_init() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$(basename "$0"): chroots and bind mounts need root" >&2
        exit 1
    fi
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    trap unmount_all EXIT
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

# The chroot directory of suite $1.
suite_dir() {
    echo "$chroot_cache/$1"
}

# Builds the chroot of suite $1 unless a complete one is cached (built into a .partial
# directory and renamed, so an interrupted build is never reused).
build_chroot() {
    local suite="$1" dir
    dir="$(suite_dir "$1")"
    if [ -x "$dir/usr/sbin/haproxy" ] && [ "${CUTOVER_CHROOT_REFRESH:-0}" != 1 ]; then
        return
    fi
    mkdir -p "$chroot_cache"
    rm -rf "$dir.partial" "$dir"
    echo "== building the $suite chroot in $dir ($(mirror))"
    if ! debootstrap --variant=minbase --include=haproxy,nginx "$suite" "$dir.partial" \
        "$(mirror)" >"$chroot_cache/$suite.log" 2>&1; then
        tail -n 20 "$chroot_cache/$suite.log" >&2
        exit 1
    fi
    mv "$dir.partial" "$dir"
}

# Builds the chroots of the suites given, side by side; fails when one failed.
build_chroots() {
    local suite pid status=0
    local builds=()
    for suite in "$@"; do
        build_chroot "$suite" &
        builds+=("$!")
    done
    for pid in "${builds[@]}"; do
        wait "$pid" || status=1
    done
    return "$status"
}

unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
    done
    mounted=()
}

bind() {
    local source="$1" target="$2"
    mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        mount --bind "$source" "$target"
        mounted+=("$target")
    fi
}

# Mounts /dev, /proc, /tmp and the checkout into the chroot of suite $1.
mount_suite() {
    local dir
    dir="$(suite_dir "$1")"
    bind /dev "$dir/dev"
    mkdir -p "$dir/proc"
    if ! mountpoint -q "$dir/proc"; then
        mount -t proc proc "$dir/proc"
        mounted+=("$dir/proc")
    fi
    bind /tmp "$dir/tmp"
    bind "$chroot_checkout" "$dir$chroot_checkout"
}

# Writes the wrappers that run suite $1's proxies and prints their directory.
wrappers() {
    local dir bin name
    dir="$(suite_dir "$1")"
    bin="$chroot_cache/$1.bin"
    mkdir -p "$bin"
    for name in haproxy nginx; do
        printf '#!/bin/sh\nexec chroot %s /usr/sbin/%s "$@"\n' "$dir" "$name" >"$bin/$name"
        chmod 0755 "$bin/$name"
    done
    echo "$bin"
}
