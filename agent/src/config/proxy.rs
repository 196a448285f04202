//! The `[proxy]` section: which proxy, its binary, config, sockets and timeouts, the Nginx
//! settings and the status address, with their defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::mapfile::MapSyntax;

/// Default HAProxy binary.
pub const DEFAULT_HAPROXY_BINARY: &str = "/usr/sbin/haproxy";
/// Default HAProxy main config.
pub const DEFAULT_HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// Default directory of the map files.
pub const DEFAULT_MAP_DIR: &str = "/etc/haproxy/maps";
/// Default Nginx binary.
pub const DEFAULT_NGINX_BINARY: &str = "/usr/sbin/nginx";
/// Default Nginx main config.
pub const DEFAULT_NGINX_CONFIG: &str = "/etc/nginx/nginx.conf";
/// Default directory of the Nginx map files.
pub const DEFAULT_NGINX_MAP_DIR: &str = "/etc/nginx/cutover";
/// Default Nginx pid file (Debian's), read to find the master.
pub const DEFAULT_NGINX_PID_FILE: &str = "/run/nginx.pid";
/// Default Nginx error log (Debian's), read to see why a reload was refused.
pub const DEFAULT_NGINX_ERROR_LOG: &str = "/var/log/nginx/error.log";
/// Default address of the status listener the rendered Nginx config serves the applied
/// generation on: a unix socket beside the agent's own.
pub const DEFAULT_NGINX_STATUS: &str = "unix:/run/cutover/nginx-status.sock";
/// Default unix datagram socket the agent reads Nginx's access-log lines from (syslog), for
/// the post-switch watch of the services that have one.
pub const DEFAULT_NGINX_ACCESS_LOG_SOCKET: &str = "/run/cutover/nginx-access.sock";
/// Default unix socket of the Lua control endpoint the rendered Nginx config serves in the
/// runtime mode. Nginx creates unix listeners with mode 0666, so its directory (created by
/// the agent with mode 0700) is what keeps other users out.
pub const DEFAULT_NGINX_LUA_CONTROL: &str = "/run/cutover/nginx-lua/control.sock";
/// Default directory of Nginx's dynamic modules (Debian's), where the runtime mode finds
/// `ndk_http_module.so` and `ngx_http_lua_module.so`; `load_module` gets absolute paths.
pub const DEFAULT_NGINX_MODULE_DIR: &str = "/usr/lib/nginx/modules";
/// File name of the Nginx Development Kit module, which must load before Lua's.
pub const NDK_MODULE: &str = "ndk_http_module.so";
/// File name of the Lua module (Debian: `libnginx-mod-http-lua`).
pub const LUA_MODULE: &str = "ngx_http_lua_module.so";
/// Default minimum gap between two Nginx reloads, in milliseconds: every Nginx change is a
/// reload, and each leaves the previous workers draining their connections.
pub const DEFAULT_NGINX_MIN_RELOAD_GAP_MS: u64 = 250;
/// Default minimum gap between two HAProxy reloads, in milliseconds: none, HAProxy reloads
/// only for structural changes and hands its listeners over.
pub const DEFAULT_HAPROXY_MIN_RELOAD_GAP_MS: u64 = 0;
/// Largest minimum reload gap accepted, in milliseconds.
pub const MAX_MIN_RELOAD_GAP_MS: u64 = 60_000;
/// Default time for a reload to be confirmed, in milliseconds.
pub const DEFAULT_RELOAD_TIMEOUT_MS: u64 = 15_000;
/// Default time for one runtime-API command, in milliseconds.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 5_000;

/// Which proxy, and where its parts are.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Which proxy (`kind`, required); it picks the defaults below.
    pub kind: ProxyKind,
    /// Proxy binary, used for the config check. Default [`DEFAULT_HAPROXY_BINARY`] or
    /// [`DEFAULT_NGINX_BINARY`].
    pub binary: PathBuf,
    /// Main config file the proxy reads. Default [`DEFAULT_HAPROXY_CONFIG`] or
    /// [`DEFAULT_NGINX_CONFIG`].
    pub config: PathBuf,
    /// HAProxy admin (stats) socket, `level admin`. Required for HAProxy.
    pub admin_socket: Option<PathBuf>,
    /// HAProxy master CLI socket (`-S`). Required for HAProxy.
    pub master_socket: Option<PathBuf>,
    /// Nginx parts; set exactly when `kind` is Nginx.
    pub nginx: Option<NginxSettings>,
    /// Directory of the default map files. Default [`DEFAULT_MAP_DIR`] or
    /// [`DEFAULT_NGINX_MAP_DIR`].
    pub map_dir: PathBuf,
    /// Time for a reload to be confirmed. Default [`DEFAULT_RELOAD_TIMEOUT_MS`] ms.
    pub reload_timeout: Duration,
    /// Time for one runtime command (HAProxy) or status request (Nginx). Default
    /// [`DEFAULT_COMMAND_TIMEOUT_MS`] ms.
    pub command_timeout: Duration,
    /// Least time from the end of one reload to the start of the next; changes that arrive
    /// meanwhile go into that next reload. Default [`DEFAULT_NGINX_MIN_RELOAD_GAP_MS`] ms
    /// for Nginx, [`DEFAULT_HAPROXY_MIN_RELOAD_GAP_MS`] ms for HAProxy; at most
    /// [`MAX_MIN_RELOAD_GAP_MS`].
    pub min_reload_gap: Duration,
}

/// Where the parts of an Nginx setup are. The shipped template renders `pid`, `error_log`
/// and the status listener from these, so Nginx and the agent agree on them.
#[derive(Debug, Clone)]
pub struct NginxSettings {
    /// Pid file of the master (`pid`). Default [`DEFAULT_NGINX_PID_FILE`].
    pub pid_file: PathBuf,
    /// Error log of the master (`error_log`, a file). Default [`DEFAULT_NGINX_ERROR_LOG`].
    pub error_log: PathBuf,
    /// Listener that answers the applied generation. Default [`DEFAULT_NGINX_STATUS`].
    pub status: StatusAddress,
    /// Unix datagram socket the agent binds (mode 0660) while a service has a post-switch
    /// watch; the shipped template sends those services' access-log lines to it as syslog
    /// messages. Default [`DEFAULT_NGINX_ACCESS_LOG_SOCKET`].
    pub access_log_socket: PathBuf,
    /// Group given to that socket, so that Nginx's workers (`user` in nginx.conf; Debian:
    /// `www-data`) may write to it; default: the agent's own group. The agent must be root
    /// or a member of the group.
    pub access_log_group: Option<String>,
    /// Prefix Nginx runs with (`-p`), passed to `nginx -t` too; default: none (Nginx's
    /// compiled-in prefix).
    pub prefix: Option<PathBuf>,
    /// How changes reach Nginx as configured (`runtime`); default [`NginxRuntime::Reload`].
    pub runtime: NginxRuntime,
    /// Whether the Lua runtime mode is in use: `runtime = "lua"`, or `"auto"` once the
    /// probe found it working (`proxy::nginx::lua::resolve`); false until then.
    pub lua: bool,
    /// Unix socket of the Lua control endpoint (`lua_control`). Default
    /// [`DEFAULT_NGINX_LUA_CONTROL`]; its directory must be private (mode 0700).
    pub lua_control: PathBuf,
    /// Directory of Nginx's dynamic modules (`module_dir`). Default
    /// [`DEFAULT_NGINX_MODULE_DIR`].
    pub module_dir: PathBuf,
    /// Map files the Lua runtime holds in its shared dict: file name -> path (`routes`,
    /// `services`, `idle`, `canary`), from `[[files]]`.
    pub lua_maps: std::collections::BTreeMap<String, PathBuf>,
}

/// How changes reach Nginx (`[proxy] runtime`, kind `nginx` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NginxRuntime {
    /// Every change is a reload of the rendered config (the default).
    #[default]
    Reload,
    /// Routing changes are written into a `lua_shared_dict` through a control endpoint on a
    /// unix socket, without a reload (Debian's `libnginx-mod-http-lua`); structural changes
    /// still reload. The agent refuses to start when the module does not work.
    Lua,
    /// `lua` when the probe proves it works on this host, else `reload`.
    Auto,
}

/// The maps the Lua runtime mode keeps in its shared dict, by `[[files]]` name.
pub const LUA_MAPS: [&str; 4] = ["routes", "services", "idle", "canary"];

impl NginxRuntime {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            NginxRuntime::Reload => "reload",
            NginxRuntime::Lua => "lua",
            NginxRuntime::Auto => "auto",
        }
    }
}

/// A listener only this host can reach: a loopback TCP address or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAddress {
    /// A loopback TCP address, e.g. `127.0.0.1:8099` or `[::1]:8099`.
    Tcp(std::net::SocketAddr),
    /// A unix socket, written `unix:/path`; the path is absolute.
    Unix(PathBuf),
}

/// Why a status address was refused; each variant carries the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusAddressError {
    /// `unix:` followed by a relative path.
    #[error("{0:?}: a unix socket path must be absolute")]
    RelativeUnixPath(String),
    /// Neither `ip:port` nor `unix:/path`.
    #[error("{0:?} is neither ip:port nor unix:/path")]
    Unparsable(String),
    /// A TCP address other hosts could reach.
    #[error(
        "{0:?} is not a loopback address; the status listener must not be reachable from other hosts"
    )]
    NotLoopback(String),
}

impl StatusAddress {
    /// Parses `127.0.0.1:8099`, `[::1]:8099` or `unix:/path`; TCP must be loopback.
    pub fn parse(s: &str) -> Result<StatusAddress, StatusAddressError> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(StatusAddressError::RelativeUnixPath(s.to_owned()));
            }
            return Ok(StatusAddress::Unix(path));
        }
        let addr: std::net::SocketAddr = s
            .parse()
            .map_err(|_| StatusAddressError::Unparsable(s.to_owned()))?;
        if !addr.ip().is_loopback() {
            return Err(StatusAddressError::NotLoopback(s.to_owned()));
        }
        Ok(StatusAddress::Tcp(addr))
    }
}

/// As Nginx's `listen` takes it: `127.0.0.1:8099` or `unix:/path`.
impl fmt::Display for StatusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusAddress::Tcp(a) => write!(f, "{a}"),
            StatusAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Which proxy the agent drives (`[proxy] kind`, written in lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    /// HAProxy: maps change at runtime through the admin socket, reloads go through the
    /// master CLI.
    Haproxy,
    /// Nginx: every change is a reload (`SIGHUP` to the master), confirmed by its
    /// generation endpoint.
    Nginx,
}

impl ProxyKind {
    /// How this proxy's map files are written.
    pub fn map_syntax(self) -> MapSyntax {
        match self {
            ProxyKind::Haproxy => MapSyntax::Haproxy,
            ProxyKind::Nginx => MapSyntax::Nginx,
        }
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyKind::Haproxy => "haproxy",
            ProxyKind::Nginx => "nginx",
        })
    }
}
