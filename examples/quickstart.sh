#!/usr/bin/env bash
# Quickstart: starts two backends, HAProxy (master-worker) and the cutover agent on loopback
# in a temporary directory, switches a service from blue to green, proves it with real
# requests, rolls back, and cleans up after itself.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if ! need haproxy || ! need curl || ! need python3; then
    echo "== installing haproxy, curl and python3"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy curl python3 >/dev/null
fi
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"

# CUTOVER_PROFILE=debug reuses a debug build (CI does, after the tests built it).
profile="${CUTOVER_PROFILE:-release}"
echo "== building cutover ($profile)"
if [ "$profile" = debug ]; then
    (cd "$repo" && cargo build --quiet -p cutover)
else
    (cd "$repo" && cargo build --quiet --profile "$profile" -p cutover)
fi
cutover="$repo/target/$profile/cutover"

work="$(mktemp -d /tmp/cutover-quickstart.XXXXXX)"
pids=()
cleanup() {
    set +e
    [ -f "$work/agent.pid" ] && kill "$(cat "$work/agent.pid")" 2>/dev/null
    [ -f "$work/haproxy.pid" ] && kill "$(cat "$work/haproxy.pid")" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen_port="$(free_port)"; blue_port="$(free_port)"; green_port="$(free_port)"

echo "== backends: blue on 127.0.0.1:$blue_port, green on 127.0.0.1:$green_port"
for colour in blue green; do
    mkdir -p "$work/$colour"
    echo "$colour" > "$work/$colour/index.html"
done
python3 -m http.server --bind 127.0.0.1 --directory "$work/blue" "$blue_port" >/dev/null 2>&1 & pids+=($!)
python3 -m http.server --bind 127.0.0.1 --directory "$work/green" "$green_port" >/dev/null 2>&1 & pids+=($!)

mkdir -p "$work/maps" "$work/state"
cat > "$work/cutover.toml" <<TOML
[agent]
socket = "$work/cutover.sock"
state_dir = "$work/state"

[proxy]
kind = "haproxy"
binary = "$haproxy_bin"
config = "$work/haproxy.cfg"
admin_socket = "$work/admin.sock"
master_socket = "$work/master.sock"

[templates]
dir = "$repo/templates"
vars = { listen = "127.0.0.1:$listen_port" }

[[files]]
name = "routes"
template = "haproxy/routes.map"
path = "$work/maps/routes.map"
kind = "map"
uses_state = false
values = "services"

[[files]]
name = "services"
template = "haproxy/services.map"
path = "$work/maps/services.map"
kind = "map"
values = "backends"

[[files]]
name = "idle"
template = "haproxy/idle.map"
path = "$work/maps/idle.map"
kind = "map"
values = "backends"

[[files]]
name = "canary"
template = "haproxy/canary.map"
path = "$work/maps/canary.map"
kind = "map"
values = "percent"

[[files]]
name = "preview"
template = "haproxy/preview.map"
path = "$work/maps/preview.map"
kind = "map"
uses_state = false
values = "services"
# No preview hosts is normal: an empty preview map is intended.
allow_empty = true

[[files]]
name = "haproxy"
template = "haproxy/haproxy.cfg"
path = "$work/haproxy.cfg"
kind = "config"

[[services]]
name = "web"
routes = ["www.example.test", "example.test"]
blue = { backend = "web_blue", servers = [{ name = "b1", address = "127.0.0.1:$blue_port" }] }
green = { backend = "web_green", servers = [{ name = "g1", address = "127.0.0.1:$green_port" }] }
TOML

export CUTOVER_CONFIG="$work/cutover.toml"
echo "== cutover check"
"$cutover" check
echo "== cutover render (the files HAProxy reads at its first start)"
"$cutover" render

echo "== starting HAProxy (master-worker) on 127.0.0.1:$listen_port"
"$haproxy_bin" -W -D -S "$work/master.sock" -f "$work/haproxy.cfg" -p "$work/haproxy.pid"

echo "== starting the agent"
"$cutover" agent 2>"$work/agent.log" & echo $! > "$work/agent.pid"
for _ in $(seq 50); do [ -S "$work/cutover.sock" ] && break; sleep 0.1; done

ask() { curl -s --max-time 2 -H "Host: www.example.test" "http://127.0.0.1:$listen_port/"; }
expect() {
    local got; got="$(ask)"
    if [ "$got" != "$1" ]; then echo "!! expected $1, got '$got'"; cat "$work/agent.log"; exit 1; fi
    echo "   GET www.example.test -> $got"
}

echo "== cutover status"
"$cutover" status
expect blue
echo "== cutover switch web green --dry-run (the plan; nothing changes)"
"$cutover" switch web green --dry-run
expect blue
echo "== cutover switch web green"
"$cutover" switch web green
expect green
echo "== cutover rollback web"
"$cutover" rollback web
expect blue
echo "== cutover map show services --live"
"$cutover" map show services --live
echo "== cutover history"
"$cutover" history
echo "== done: blue -> green -> blue, all through the HAProxy runtime API"
