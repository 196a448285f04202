#!/usr/bin/env bash
# Builds the packages (packaging/build.sh) and tests them on this machine, as root:
#
#  1. installs the .deb with dpkg -i: binary, user and group, directories, conffile, man page;
#  2. runs `cutover --version` and `cutover check` against the installed example, as root and
#     as the cutover user: the host's stock /etc/haproxy/haproxy.cfg defines none of the
#     example's backends, and check must refuse it naming the missing backend;
#  3. runs the installed agent as the cutover user against a real HAProxy whose admin and
#     master sockets have the options the docs give (group cutover, mode 660, level admin),
#     with a copy of the installed example whose proxy paths point at that HAProxy: render,
#     check (now `haproxy -c` reads the rendered maps), a switch proven by a request, the
#     metrics endpoint and `cutover metrics`, SIGHUP and SIGTERM;
#  4. verifies the installed unit with systemd-analyze verify;
#  5. upgrades to a copy of the .deb with a higher version: config edits and state kept;
#  6. removes (config and state kept) and purges (both gone);
#  7. prints the .rpm's header, file list, config files and scripts.
#
# Whatever it installs or starts is removed or stopped on exit; the cutover user and group
# stay, as after any purge.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "packaging/test.sh installs packages: run it as root" >&2
    exit 1
fi

# Tools this test uses, by the Debian package that has them.
missing=()
for pair in haproxy:haproxy curl:curl python3:python3 systemd-analyze:systemd \
    rpm:rpm man:man-db adduser:adduser setpriv:util-linux; do
    cmd="${pair%%:*}"
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"

bash packaging/build.sh all

target_dir="$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
deb="$(ls "$target_dir"/packages/cutover_*.deb)"
rpm="$(ls "$target_dir"/packages/cutover-*.rpm)"

work="$(mktemp -d /tmp/cutover-package.XXXXXX)"
chmod 755 "$work"
maps_existed=no
[ -e /etc/haproxy/maps ] && maps_existed=yes
cleanup() {
    set +e
    [ -f "$work/agent.pid" ] && kill "$(cat "$work/agent.pid")" 2>/dev/null
    [ -f "$work/haproxy.pid" ] && kill "$(cat "$work/haproxy.pid")" 2>/dev/null
    wait 2>/dev/null
    dpkg-query -W cutover >/dev/null 2>&1 && dpkg -P cutover >/dev/null
    [ "$maps_existed" = no ] && rm -rf /etc/haproxy/maps
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "!! $*" >&2
    [ -f "$work/agent.log" ] && sed 's/^/   agent: /' "$work/agent.log" >&2
    exit 1
}
expect() { "$@" || fail "failed: $*"; }
as_cutover() { setpriv --reuid=cutover --regid=cutover --init-groups -- "$@"; }
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
owner_mode() { stat -c '%U:%G %a' "$1"; }

echo "== sizes"
echo "dist binary: $(stat -c %s "$target_dir/dist/cutover") bytes"
echo "$(basename "$deb"): $(stat -c %s "$deb") bytes"
echo "$(basename "$rpm"): $(stat -c %s "$rpm") bytes"

if dpkg-query -W cutover >/dev/null 2>&1; then
    echo "== purging the cutover package installed before this test"
    dpkg -P cutover >/dev/null
fi

echo "== dpkg -i $(basename "$deb")"
dpkg -i "$deb" </dev/null
echo "-- installed files"
dpkg -L cutover | while read -r path; do [ -f "$path" ] && echo "$path"; done
expect test -x /usr/bin/cutover
cutover --version
expect getent passwd cutover >/dev/null
expect getent group cutover >/dev/null
for dir in /var/lib/cutover /run/cutover; do
    [ "$(owner_mode "$dir")" = "cutover:cutover 750" ] || fail "$dir is $(owner_mode "$dir")"
done
if [ "$maps_existed" = no ] && [ -d /etc/haproxy ]; then
    [ "$(owner_mode /etc/haproxy/maps)" = "cutover:cutover 755" ] \
        || fail "/etc/haproxy/maps is $(owner_mode /etc/haproxy/maps)"
fi
dpkg-query -W -f='${Conffiles}\n' cutover | grep -q '/etc/cutover/cutover.toml' \
    || fail "/etc/cutover/cutover.toml is not a conffile"
expect man -w cutover >/dev/null
expect man -w cutover-switch >/dev/null

echo "== cutover check: the installed example, as root and as the cutover user"
# The host's stock haproxy.cfg defines none of the example's backends: check must refuse it
# and name what is missing (exit 64), for root and for the cutover user alike.
for run in "" as_cutover; do
    code=0
    out="$($run cutover check 2>&1)" || code=$?
    [ "$code" = 64 ] || fail "cutover check ${run:+($run) }exited $code on a haproxy.cfg without the example's backends: $out"
    grep -qF 'names backend "shop_blue", which the checked haproxy config' <<<"$out" \
        || fail "cutover check ${run:+($run) }did not name the missing backend: $out"
done
echo "check refuses the example until haproxy.cfg defines its backends, and says which"

echo "== the agent as the cutover user, HAProxy with the documented socket options"
listen_port="$(free_port)"
metrics_port="$(free_port)"
blue_port="$(free_port)"
green_port="$(free_port)"
install -d -o cutover -g cutover -m 0755 "$work/maps"
cat >"$work/haproxy.cfg" <<CFG
global
    stats socket $work/admin.sock user haproxy group cutover mode 660 level admin expose-fd listeners

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend in
    bind 127.0.0.1:$listen_port
    use_backend %[req.hdr(host),host_only,lower,map($work/maps/routes.map),map($work/maps/services.map)]

# The two colours' servers: answered by HAProxy itself, so no other process is needed.
frontend origin_blue
    bind 127.0.0.1:$blue_port
    http-request return status 200 content-type text/plain string blue

frontend origin_green
    bind 127.0.0.1:$green_port
    http-request return status 200 content-type text/plain string green

backend shop_blue
    server b1 127.0.0.1:$blue_port

backend shop_green
    server g1 127.0.0.1:$green_port
CFG
# The installed example with this HAProxy's paths; socket, state and templates as installed.
sed -e "s#^config = .*#config = \"$work/haproxy.cfg\"#" \
    -e "s#^admin_socket = .*#admin_socket = \"$work/admin.sock\"#" \
    -e "s#^master_socket = .*#master_socket = \"$work/master.sock\"#" \
    -e "s#^map_dir = .*#map_dir = \"$work/maps\"#" \
    -e "s#^listen = .*#listen = \"127.0.0.1:$metrics_port\"#" \
    /etc/cutover/cutover.toml >"$work/cutover.toml"
chmod 644 "$work/cutover.toml"
export CUTOVER_CONFIG="$work/cutover.toml"

as_cutover cutover render
as_cutover cutover check
"$haproxy_bin" -W -D -S "$work/master.sock,mode,660,group,cutover" -f "$work/haproxy.cfg" \
    -p "$work/haproxy.pid"
[ "$(owner_mode "$work/master.sock")" = "root:cutover 660" ] \
    || fail "master socket is $(owner_mode "$work/master.sock")"

# setpriv execs the agent: $! is the agent's PID.
setpriv --reuid=cutover --regid=cutover --init-groups -- cutover agent 2>"$work/agent.log" &
echo $! >"$work/agent.pid"
for _ in $(seq 100); do [ -S /run/cutover/cutover.sock ] && break; sleep 0.1; done
[ -S /run/cutover/cutover.sock ] || fail "the agent did not open /run/cutover/cutover.sock"
[ "$(owner_mode /run/cutover/cutover.sock)" = "cutover:cutover 660" ] \
    || fail "control socket is $(owner_mode /run/cutover/cutover.sock)"

get() { curl -s --max-time 5 -H "Host: shop.example.com" "http://127.0.0.1:$listen_port/"; }
[ "$(get)" = blue ] || fail "expected blue before the switch, got '$(get)'"
as_cutover cutover switch shop green
[ "$(get)" = green ] || fail "expected green after the switch, got '$(get)'"
as_cutover cutover status

scrape="$(curl -s --max-time 5 "http://127.0.0.1:$metrics_port/metrics")"
over_socket="$(as_cutover cutover metrics)"
for series in 'cutover_switches_total{service="shop",result="ok"} 1' \
    'cutover_live_colour{service="shop",colour="green"} 1' \
    'cutover_live_colour{service="shop",colour="blue"} 0' \
    'cutover_proxy_up 1'; do
    grep -qF "$series" <<<"$scrape" || fail "GET /metrics lacks: $series"
    grep -qF "$series" <<<"$over_socket" || fail "cutover metrics lacks: $series"
done
echo "metrics: $(grep -c '^# TYPE' <<<"$scrape") families over HTTP and the socket"

kill -HUP "$(cat "$work/agent.pid")"
for _ in $(seq 50); do grep -q 'new config in force' "$work/agent.log" && break; sleep 0.1; done
grep -q 'new config in force' "$work/agent.log" || fail "SIGHUP: the config was not reloaded"
kill -TERM "$(cat "$work/agent.pid")"
status=0
wait "$(cat "$work/agent.pid")" || status=$?
rm -f "$work/agent.pid"
[ "$status" = 0 ] || fail "the agent exited with $status on SIGTERM"
[ ! -e /run/cutover/cutover.sock ] || fail "the agent left its socket behind"
kill "$(cat "$work/haproxy.pid")"
rm -f "$work/haproxy.pid"
unset CUTOVER_CONFIG

echo "== systemd-analyze verify"
systemd-analyze verify /usr/lib/systemd/system/cutover.service
systemd-analyze security --offline=true /usr/lib/systemd/system/cutover.service | tail -n 1

echo "== upgrade: the edited config and the state are kept"
[ -s /var/lib/cutover/state.json ] || fail "no state to keep"
state_before="$(sha256sum </var/lib/cutover/state.json)"
echo "# edited by the administrator" >>/etc/cutover/cutover.toml
version="$(dpkg-deb -f "$deb" Version)"
dpkg-deb -R "$deb" "$work/next"
sed -i "s/^Version: .*/Version: ${version}+upgrade1/" "$work/next/DEBIAN/control"
dpkg-deb --build --root-owner-group "$work/next" "$work/cutover-next.deb" >/dev/null
dpkg -i "$work/cutover-next.deb" </dev/null
[ "$(dpkg-query -W -f='${Version}' cutover)" = "${version}+upgrade1" ] || fail "not upgraded"
grep -q '^# edited by the administrator' /etc/cutover/cutover.toml || fail "config edit lost"
[ "$(sha256sum </var/lib/cutover/state.json)" = "$state_before" ] || fail "state changed"

echo "== remove keeps config and state, purge removes them"
dpkg -r cutover
[ ! -e /usr/bin/cutover ] || fail "binary left after remove"
[ -f /etc/cutover/cutover.toml ] || fail "config gone after remove"
[ -f /var/lib/cutover/state.json ] || fail "state gone after remove"
dpkg -P cutover
for gone in /etc/cutover /var/lib/cutover /run/cutover; do
    [ ! -e "$gone" ] || fail "$gone left after purge"
done

echo "== $(basename "$rpm")"
rpm -qip "$rpm"
echo "-- files"
rpm -qlpv "$rpm"
echo "-- config files"
rpm -qp --configfiles "$rpm"
echo "-- scripts"
rpm -qp --scripts "$rpm"

echo "== packages ok"
