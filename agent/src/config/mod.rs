//! The agent's own configuration: TOML file -> raw serde structs (unknown fields refused,
//! `raw`) -> a validated [`Config`] (`validate`). Validation reads the route files it names
//! and nothing else; it binds no socket and writes no file. Every problem found is
//! reported, each with where it is. This module holds the validated types, their
//! documented defaults and loading; the tables of a service's gates and of the cluster are
//! in [`gates`] and [`cluster`], which the gates and the peers read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mapfile::MapSyntax;
use crate::state::Colour;

pub mod cluster;
pub mod gates;
mod metrics;
mod raw;
mod validate;

pub use cluster::{ClusterConfig, PeerSpec, TlsFiles};
pub use gates::{GateConfig, NoTraffic, PrewarmConfig, WatchConfig};
pub use metrics::{Metrics, SUGGESTED_METRICS_LISTEN};

use raw::RawConfig;
use validate::Validator;

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/cutover/cutover.sock";
/// Default directory of state and history.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cutover";
/// Default mode of the control socket: owner and group may read and write.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// Default cap on concurrent control connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default longest request line on the control socket, in bytes.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default time a control client has to send a request line, in milliseconds.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time a desired-state file must stay unchanged before it is applied, ms.
pub const DEFAULT_DESIRED_DEBOUNCE_MS: u64 = 500;
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
/// Default interval of the drift and foreign-reload check, in milliseconds.
pub const DEFAULT_RECONCILE_INTERVAL_MS: u64 = 1_000;
/// Default directory of the shipped templates.
pub const DEFAULT_TEMPLATE_DIR: &str = "/usr/share/cutover/templates";
/// Largest config or routes file read, in bytes; only regular files are read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Most routes over all services.
pub const MAX_ROUTES: usize = 5_000_000;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it was read from.
    pub source: PathBuf,
    /// The agent itself (`[agent]`): control socket, state directory, limits, access.
    pub agent: Agent,
    /// The proxy it drives (`[proxy]`).
    pub proxy: Proxy,
    /// Where templates come from and the free values they see (`[templates]`).
    pub templates: Templates,
    /// Files rendered from templates, in the order given.
    pub files: Vec<FileSpec>,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// This node and its peers; none for a single host.
    pub cluster: Option<ClusterConfig>,
    /// The Prometheus endpoint.
    pub metrics: Metrics,
}

/// The agent's own settings (`[agent]`): its control socket and the limits on it, where
/// it keeps state, the desired-state file it follows, and who may ask for what.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Control socket path. Default [`DEFAULT_SOCKET`].
    pub socket: PathBuf,
    /// Control socket mode. Default [`DEFAULT_SOCKET_MODE`].
    pub socket_mode: u32,
    /// Group owning the control socket; default: the agent's own group.
    pub socket_group: Option<String>,
    /// Directory of the state file and history journal. Default [`DEFAULT_STATE_DIR`].
    pub state_dir: PathBuf,
    /// Cap on concurrent control connections. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Longest request line, bytes. Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// Time to receive one request line. Default [`DEFAULT_READ_TIMEOUT_MS`] ms.
    pub read_timeout: Duration,
    /// Interval of the drift / foreign-reload check. Default
    /// [`DEFAULT_RECONCILE_INTERVAL_MS`] ms.
    pub reconcile_interval: Duration,
    /// A desired-state file to reconcile whenever it changes (see `desired`); none by
    /// default.
    pub desired_state: Option<PathBuf>,
    /// How long the desired-state file must stay unchanged before it is applied. Default
    /// [`DEFAULT_DESIRED_DEBOUNCE_MS`] ms.
    pub desired_debounce: Duration,
    /// Who may run which commands (`allow_uids`, `allow_gids`, `read_uids`, `read_gids`;
    /// all empty by default: whoever can open the socket). See [`crate::access`].
    pub access: crate::access::Policy,
}

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
}

/// A listener only this host can reach: a loopback TCP address or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAddress {
    /// A loopback TCP address, e.g. `127.0.0.1:8099` or `[::1]:8099`.
    Tcp(std::net::SocketAddr),
    /// A unix socket, written `unix:/path`; the path is absolute.
    Unix(PathBuf),
}

impl StatusAddress {
    /// Parses `127.0.0.1:8099`, `[::1]:8099` or `unix:/path`; TCP must be loopback.
    pub fn parse(s: &str) -> Result<StatusAddress, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("{s:?}: a unix socket path must be absolute"));
            }
            return Ok(StatusAddress::Unix(path));
        }
        let addr: std::net::SocketAddr = s
            .parse()
            .map_err(|_| format!("{s:?} is neither ip:port nor unix:/path"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{s:?} is not a loopback address; the status listener must not be reachable from other hosts"
            ));
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

/// Where the templates are and what they see besides the state (`[templates]`).
#[derive(Debug, Clone)]
pub struct Templates {
    /// Shipped templates. Default [`DEFAULT_TEMPLATE_DIR`].
    pub dir: PathBuf,
    /// User templates; a file here overrides the shipped one with the same relative path.
    pub override_dir: Option<PathBuf>,
    /// Free values for templates, visible as `vars` (e.g. listen addresses).
    pub vars: toml::Table,
}

pub use crate::protocol::FileKind;

/// One file rendered from a template.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Name templates use to refer to it (`files.<name>.path`).
    pub name: String,
    /// Template path relative to the template directories.
    pub template: String,
    /// Where the file lives.
    pub path: PathBuf,
    /// Whether the proxy takes it as a map (runtime update where possible) or as config
    /// (a checked reload). Required.
    pub kind: FileKind,
    /// Whether the template sees the live routing state. A file rendered from the config
    /// alone (`false`) is rendered again only when the config changes.
    pub uses_state: bool,
    /// What the values of a map must be; see [`ValueCheck`].
    pub values: ValueCheck,
    /// Whether the map may render no entries. Default false: an empty map looks valid and
    /// routes nothing, the classic outage, so it is refused unless the file says
    /// `allow_empty = true` (the default routes map allows it only when every service
    /// sets `allow_empty_routes = true`).
    pub allow_empty: bool,
}

impl FileSpec {
    /// Refuses the rendered entries of this map when they are empty and the file does not
    /// allow that.
    pub fn check_entries(&self, entries: &crate::mapfile::MapEntries) -> Result<(), String> {
        if entries.is_empty() && self.kind == FileKind::Map && !self.allow_empty {
            return Err(format!(
                "map {} renders no entries; an empty map looks valid and routes nothing \
                 (set allow_empty = true on this [[files]] entry if that is intended)",
                self.name
            ));
        }
        Ok(())
    }
}

/// What the values of a rendered map must name. A map whose values the agent can check
/// itself (services or backends) is applied without running the proxy's config checker:
/// its keys and values are proven valid tokens, and every value names something the
/// proxy config (or the running proxy) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueCheck {
    /// Any valid token; a change is validated with the proxy's checker when the main
    /// config is rendered by cutover.
    Any,
    /// Every value is a configured service.
    Services,
    /// Every value is a backend the running proxy lists.
    Backends,
    /// Every value is a whole percentage, 0 to 100 (the canary shares).
    Percent,
}

/// One service (a `[[services]]` entry): the routes that reach it, its two colours and the
/// gates of a switch.
#[derive(Debug, Clone)]
pub struct Service {
    /// Unique name the control commands use: 1 to 64 ASCII letters, digits, `_`, `.` or
    /// `-`.
    pub name: String,
    /// Route keys (e.g. host names) that reach this service.
    pub routes: Vec<String>,
    /// Colour live when the service is first seen.
    pub initial: Colour,
    /// Proxy backend of each colour.
    pub colours: BTreeMap<Colour, ColourSpec>,
    /// Host names that always reach the colour that is not live (preview).
    pub preview_hosts: Vec<String>,
    /// Drain the old colour's servers after a switch, promote or rollback. Default true.
    pub drain_after_switch: bool,
    /// Pre-switch gate (always on; `[services.gate]` tunes it).
    pub gate: GateConfig,
    /// Post-switch watch; none when `[services.watch]` is absent.
    pub watch: Option<WatchConfig>,
    /// How a client keeps its canary decision; random per request when unset.
    pub canary_sticky: Option<Sticky>,
    /// Requests sent to the target colour before traffic moves to it; none when unset.
    pub prewarm: Option<PrewarmConfig>,
}

/// What keeps a client on the colour the canary gave it. Each client gets a bucket 0..99
/// (from a cookie the proxy sets, or a hash of a header or of its address) and goes to the
/// canary when its bucket is below the canary share: its colour holds while the share
/// holds, and a canary client stays on the canary as the share grows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Sticky {
    /// A cookie with this name carries the bucket.
    Cookie(String),
    /// A hash of this request header is the bucket.
    Header(String),
    /// A hash of the client address is the bucket.
    Source(bool),
}

/// One colour of a service (`blue = { ... }`, `green = { ... }`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColourSpec {
    /// Proxy backend (HAProxy) that serves this colour.
    pub backend: String,
    /// Servers of the backend, for templates that render the full config.
    pub servers: Vec<Server>,
}

/// One server of a colour's backend, as templates that render the full config need it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Server name in the backend: 1 to 64 ASCII letters, digits, `_`, `.` or `-`.
    pub name: String,
    /// `host:port`.
    pub address: String,
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: missing, not a regular file, larger than
    /// [`MAX_FILE_BYTES`], or not UTF-8.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// The file is not TOML, or does not match the schema (unknown field, wrong type,
    /// missing required field).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// The file parsed but its values do not hold together.
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found, each starting with where it is (e.g.
        /// `services[0] (web).gate.timeout_ms: ...`).
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads and validates the config at `path` (and the route files it names).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_bounded(path)?;
        Config::from_toml(path, &text)
    }

    /// Validates config text; `path` is used for messages and to resolve relative paths.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut v = Validator {
            base,
            problems: Vec::new(),
        };
        let config = v.config(path, raw);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: v.problems,
            })
        }
    }

    /// The rendered file called `name` in `[[files]]`, if there is one.
    pub fn file(&self, name: &str) -> Option<&FileSpec> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Initial colour of every configured service.
    pub fn initial_colours(&self) -> BTreeMap<String, Colour> {
        self.services
            .iter()
            .map(|(n, s)| (n.clone(), s.initial))
            .collect()
    }
}

/// The control socket named by the config at `path`, read without validating the rest (the
/// CLI needs only this, and must not pay for reading large route files).
pub fn socket_of(path: &Path) -> Result<PathBuf, ConfigError> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        agent: OnlyAgent,
    }
    #[derive(Default, Deserialize)]
    struct OnlyAgent {
        socket: Option<PathBuf>,
    }
    let text = read_bounded(path)?;
    let only: Only = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(only
        .agent
        .socket
        .map(|s| base.join(s))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)))
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let err = |reason: String| ConfigError::Read {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(e.to_string()))?;
    // A device, FIFO or /proc file reports no useful length and may never end.
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let too_large = |len: u64| {
        err(format!(
            "{len} bytes is larger than the limit of {MAX_FILE_BYTES}"
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// A relative path with no `..`, no root and no empty parts.
pub fn is_clean_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests;
