# Sourced by the scripts: installs the proxies and tools the tests use, and makes the
# toolchain pinned in rust-toolchain.toml available without downloading one.
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
# Each program the tests run, and the Debian package that installs it: etcd 3.4 (server
# and etcdctl) for the tests against a real etcd cluster, protoc for etcd's gRPC API.
missing=()
for pair in haproxy:haproxy nginx:nginx curl:curl python3:python3 \
    etcd:etcd-server etcdctl:etcd-client protoc:protobuf-compiler; do
    need "${pair%%:*}" || missing+=("${pair#*:}")
done
# Nginx's Lua module (with the development kit and lua-resty-core), for the runtime mode.
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing+=(libnginx-mod-http-lua)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # The tests start their own etcd members on free ports. Under systemd the package
    # starts a system etcd on 2379/2380: stop the one just installed. Without systemd
    # (CI containers) policy-rc.d keeps it from starting at all.
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now etcd.service >/dev/null 2>&1 || true
    fi
fi
pinned="$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
if command -v rustup >/dev/null 2>&1 && ! rustup toolchain list | grep -q "^$pinned"; then
    # The pin names the version the stable toolchain has; link it rather than download it.
    if [ "$(rustc +stable --version | cut -d' ' -f2)" = "$pinned" ]; then
        rustup toolchain link "$pinned" "$(rustc +stable --print sysroot)"
    fi
fi
