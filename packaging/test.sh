#!/usr/bin/env bash
# Builds the packages (packaging/build.sh) and tests them on this machine, as root:
#
#  0. lintian on the .deb: no error and no warning;
#  1. installs the .deb with dpkg -i: binary, user and group, directories, no config in
#     /etc/cutover (the unit is enabled but its start condition unmet), the examples and the
#     Nginx drop-in, man pages (cutover.toml(5) too); `dpkg -V` finds every file intact and
#     flags one that was changed;
#  2. runs `cutover --version` and `cutover check` against the shipped example, as root and
#     as the cutover user: the host's stock /etc/haproxy/haproxy.cfg defines none of the
#     example's backends, and check must refuse it naming the missing backend;
#  3. runs the installed agent as the cutover user against a real HAProxy whose admin and
#     master sockets have the options the docs give (group cutover, mode 660, level admin),
#     with a copy of the installed example whose proxy paths point at that HAProxy: render,
#     check (now `haproxy -c` reads the rendered maps), a switch proven by a request, the
#     metrics endpoint and `cutover metrics`, the bash completion of service names from the
#     running agent (and nothing without one), SIGHUP and SIGTERM;
#  4. verifies the installed unit, alone and with the Nginx drop-in, with systemd-analyze;
#  5. upgrades to a copy of the .deb with a higher version: the operator's config and the
#     state kept;
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
    rpm:rpm man:man-db adduser:adduser setpriv:util-linux lintian:lintian \
    bash-completion:bash-completion; do
    cmd="${pair%%:*}"
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] \
        || [ -e "/usr/share/bash-completion/$cmd" ] || missing+=("${pair#*:}")
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

echo "== lintian $(basename "$deb")"
# Errors and warnings fail; informational tags are printed.
# (Its exit status is not the verdict: the tags are.)
lintian --info --display-level '>=info' "$deb" 2>&1 | tee "$work/lintian.txt" || true
if grep -E '^[EW]: ' "$work/lintian.txt"; then
    fail "lintian reports errors or warnings"
fi

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
# Enabled, but no config until the operator writes one: the unit waits for it.
[ -L /etc/systemd/system/multi-user.target.wants/cutover.service ] \
    || fail "the unit is not enabled"

[ ! -e /etc/cutover/cutover.toml ] || fail "the package installed /etc/cutover/cutover.toml"
[ "$(owner_mode /etc/cutover)" = "root:root 755" ] || fail "/etc/cutover is $(owner_mode /etc/cutover)"
grep -qx 'ConditionPathExists=/etc/cutover/cutover.toml' /usr/lib/systemd/system/cutover.service \
    || fail "the unit does not wait for /etc/cutover/cutover.toml"
examples=/usr/share/doc/cutover/examples
for f in cutover.toml cutover-nginx.toml cutover.service.d/nginx.conf; do
    expect test -s "$examples/$f"
done
expect man -w cutover >/dev/null
expect man -w cutover-switch >/dev/null
[ "$(man -w cutover.toml)" = /usr/share/man/man5/cutover.toml.5.gz ] \
    || fail "no cutover.toml(5): $(man -w cutover.toml 2>&1)"
zcat /usr/share/man/man5/cutover.toml.5.gz | grep -qF 'kind = "nginx"' \
    || fail "cutover.toml(5) lacks the Nginx example"

echo "== dpkg -V: every file as shipped, a changed one flagged"
out="$(dpkg -V cutover)" || fail "dpkg -V cutover failed: $out"
[ -z "$out" ] || fail "dpkg -V cutover reports changes right after install: $out"
cp /usr/share/cutover/templates/haproxy/canary.map "$work/canary.map.orig"
echo "# changed" >>/usr/share/cutover/templates/haproxy/canary.map
out="$(dpkg -V cutover || true)"
grep -qE '^\?\?5\?\?\?\?\?\?   /usr/share/cutover/templates/haproxy/canary.map$' <<<"$out" \
    || fail "dpkg -V did not flag a changed template: '$out'"
cp "$work/canary.map.orig" /usr/share/cutover/templates/haproxy/canary.map
[ -z "$(dpkg -V cutover)" ] || fail "dpkg -V still reports changes"
echo "dpkg -V: clean, and flags a changed file"

echo "== cutover check: the shipped example, as root and as the cutover user"
# The host's stock haproxy.cfg defines none of the example's backends: check must refuse it
# and name what is missing (exit 64), for root and for the cutover user alike.
for run in "" as_cutover; do
    code=0
    out="$($run cutover --config "$examples/cutover.toml" check 2>&1)" || code=$?
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
# The shipped example with this HAProxy's paths; socket, state and templates as installed.
sed -e "s#^config = .*#config = \"$work/haproxy.cfg\"#" \
    -e "s#^admin_socket = .*#admin_socket = \"$work/admin.sock\"#" \
    -e "s#^master_socket = .*#master_socket = \"$work/master.sock\"#" \
    -e "s#^map_dir = .*#map_dir = \"$work/maps\"#" \
    -e "s#^listen = .*#listen = \"127.0.0.1:$metrics_port\"#" \
    "$examples/cutover.toml" >"$work/cutover.toml"
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

# The bash completion offers the running agent's services after a routing verb.
complete_line() {
    bash -c 'source /usr/share/bash-completion/completions/cutover
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        _cutover_with_services cutover "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf "%s\n" "${COMPREPLY[@]}"' complete "$@"
}
[ "$(complete_line cutover switch '')" = shop ] \
    || fail "bash completion of a service: '$(complete_line cutover switch '')'"
[ "$(complete_line cutover --socket /nonexistent.sock switch '')" = "" ] \
    || fail "bash completion without an agent printed something"
echo "bash completion: the running agent's services, nothing without one"

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
# With the Nginx drop-in, as the unit file beside it would be read.
install -D -m 644 /usr/lib/systemd/system/cutover.service "$work/units/cutover.service"
install -D -m 644 "$examples/cutover.service.d/nginx.conf" "$work/units/cutover.service.d/nginx.conf"
SYSTEMD_UNIT_PATH="$work/units:" systemd-analyze verify "$work/units/cutover.service"
echo "the unit with the Nginx drop-in verified"

echo "== upgrade: the operator's config and the state are kept"
[ -s /var/lib/cutover/state.json ] || fail "no state to keep"
state_before="$(sha256sum </var/lib/cutover/state.json)"
cp "$examples/cutover.toml" /etc/cutover/cutover.toml
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
