#!/usr/bin/env bash
# Benchmark of cutover against the scripted method (rewrite the map, reload) on loopback
# with real proxies: `short` (under a minute, after the build), `full` (the run behind
# docs/BENCHMARKS.md; add --write-docs to replace its generated sections), `fleet` (the
# fleet part of the full run alone: etcd, 3/10/30 hosts, static peers, the dist build with
# and without etcd), `remote` (the remote API against the unix socket: a switch's answer
# over gRPC and over the socket in the same run) or `versions` (the HAProxy flips and
# reloads once per HAProxy version: this host's and those of the Debian releases in SUITES,
# default "trixie sid", run from the chroots of scripts/chroot.sh; needs root; a few
# minutes). Extra arguments go to the benchmark (see --help). Installs the proxies if
# missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
mode="${1:-short}"
case "$mode" in
short | full | fleet | remote | versions) shift || true ;;
*)
    echo "usage: scripts/bench.sh short|full|fleet|remote|versions [--write-docs] [--flips N] [--no-scale] [--no-fleet] [--fleet-flips N] [--no-remote] [--remote-flips N] [--no-dist]" >&2
    exit 2
    ;;
esac
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
versions=()
if [ "$mode" = versions ]; then
    # shellcheck source=scripts/chroot.sh
    . scripts/chroot.sh
    read -r -a suites <<<"${SUITES:-trixie sid}"
    chroot_init
    build_chroots "${suites[@]}"
    for suite in "${suites[@]}"; do
        mount_suite "$suite"
        versions+=(--haproxy "$(wrappers "$suite")/haproxy")
    done
fi
cargo build --release --locked -p cutover-bench -p cutover
if [ "$mode" = full ]; then
    # The one test too slow for every run: a one-million-entry map replaced through the
    # runtime API, in release mode.
    cargo test --release --locked -p cutover-tests --test haproxy_client -- --ignored \
        replace_map_with_1m_entries
fi
# Not exec'd: the versions mode's EXIT trap unmounts the chroots afterwards.
cargo run --release --locked -q -p cutover-bench -- "--$mode" "${versions[@]}" "$@"
