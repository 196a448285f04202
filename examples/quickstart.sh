#!/usr/bin/env bash
# Quickstart: starts two backends, a proxy and the cutover agent on loopback in a temporary
# directory, switches a service from blue to green, proves it with real requests, rolls
# back, and cleans up after itself.
#
#   bash examples/quickstart.sh          # HAProxy (master-worker), flips through its runtime API
#   bash examples/quickstart.sh nginx    # Nginx, every flip a validated and confirmed reload
set -euo pipefail

kind="${1:-haproxy}"
case "$kind" in
    haproxy | nginx) ;;
    *) echo "usage: $0 [haproxy|nginx]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if ! need "$kind" || ! need curl || ! need python3; then
    echo "== installing $kind, curl and python3"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$kind" curl python3 >/dev/null
fi
proxy_bin="$(command -v "$kind" || echo "/usr/sbin/$kind")"

# CUTOVER_PROFILE=debug reuses a debug build (CI does, after the tests built it).
profile="${CUTOVER_PROFILE:-release}"
echo "== building cutover ($profile)"
if [ "$profile" = debug ]; then
    (cd "$repo" && cargo build --quiet -p cutover)
else
    (cd "$repo" && cargo build --quiet --profile "$profile" -p cutover)
fi
cutover="$repo/target/$profile/cutover"

work="$(mktemp -d "/tmp/cutover-quickstart-$kind.XXXXXX")"
pids=()
cleanup() {
    set +e
    [ -f "$work/agent.pid" ] && kill "$(cat "$work/agent.pid")" 2>/dev/null
    [ -s "$work/$kind.pid" ] && kill "$(cat "$work/$kind.pid")" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    # Give the proxy a moment to exit before its directory goes.
    for _ in $(seq 20); do [ -s "$work/$kind.pid" ] && kill -0 "$(cat "$work/$kind.pid")" 2>/dev/null || break; sleep 0.1; done
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
for port in "$blue_port" "$green_port"; do
    for _ in $(seq 50); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

mkdir -p "$work/maps" "$work/state"
kind_files=""
if [ "$kind" = haproxy ]; then
    main="$work/haproxy.cfg"
    # What the shipped haproxy.cfg reads for preview hosts and canaries.
    kind_files="[[files]]
name = \"idle\"
template = \"haproxy/idle.map\"
path = \"$work/maps/idle.map\"
kind = \"map\"
values = \"backends\"

[[files]]
name = \"canary\"
template = \"haproxy/canary.map\"
path = \"$work/maps/canary.map\"
kind = \"map\"
values = \"percent\"

[[files]]
name = \"preview\"
template = \"haproxy/preview.map\"
path = \"$work/maps/preview.map\"
kind = \"map\"
uses_state = false
values = \"services\"
# No preview hosts is normal: an empty preview map is intended.
allow_empty = true

"
    proxy_toml="admin_socket = \"$work/admin.sock\"
master_socket = \"$work/master.sock\""
    vars="listen = \"127.0.0.1:$listen_port\""
else
    main="$work/nginx.conf"
    # pid, error log and the generation endpoint: the template renders them from here.
    proxy_toml="pid_file = \"$work/nginx.pid\"
error_log = \"$work/error.log\"
status = \"unix:$work/status.sock\"
prefix = \"$work\""
    vars="listen = \"127.0.0.1:$listen_port\", worker_processes = 2, temp_dir = \"$work\""
fi
main_name="$(basename "$main")"
cat > "$work/cutover.toml" <<TOML
[agent]
socket = "$work/cutover.sock"
state_dir = "$work/state"

[proxy]
kind = "$kind"
binary = "$proxy_bin"
config = "$main"
$proxy_toml

[templates]
dir = "$repo/templates"
vars = { $vars }

[[files]]
name = "routes"
template = "$kind/routes.map"
path = "$work/maps/routes.map"
kind = "map"
uses_state = false
values = "services"

[[files]]
name = "services"
template = "$kind/services.map"
path = "$work/maps/services.map"
kind = "map"
values = "backends"

${kind_files}[[files]]
name = "$kind"
template = "$kind/$main_name"
path = "$main"
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
echo "== cutover render (the files $kind reads at its first start)"
"$cutover" render

if [ "$kind" = haproxy ]; then
    echo "== starting HAProxy (master-worker) on 127.0.0.1:$listen_port"
    "$proxy_bin" -W -D -S "$work/master.sock" -f "$main" -p "$work/haproxy.pid"
else
    echo "== starting Nginx on 127.0.0.1:$listen_port"
    "$proxy_bin" -p "$work" -e "$work/error.log" -c "$main"
fi

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
if [ "$kind" = haproxy ]; then
    echo "== cutover map show services --live"
    "$cutover" map show services --live
else
    echo "== cutover map show services (Nginx cannot show what it serves; status shows the generation it serves)"
    "$cutover" map show services
    "$cutover" status
fi
echo "== cutover history"
"$cutover" history
if [ "$kind" = haproxy ]; then
    echo "== done: blue -> green -> blue, all through the HAProxy runtime API"
else
    echo "== done: blue -> green -> blue, each a reload validated with nginx -t and confirmed by the generation Nginx serves"
fi
