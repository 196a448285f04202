# Sourced by the scripts: installs the proxies and tools the tests use, and makes the
# toolchain pinned in rust-toolchain.toml available without downloading one.
need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
missing=()
for tool in haproxy nginx curl python3; do need "$tool" || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
pinned="$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
if command -v rustup >/dev/null 2>&1 && ! rustup toolchain list | grep -q "^$pinned"; then
    # The pin names the version the stable toolchain has; link it rather than download it.
    if [ "$(rustc +stable --version | cut -d' ' -f2)" = "$pinned" ]; then
        rustup toolchain link "$pinned" "$(rustc +stable --print sysroot)"
    fi
fi
