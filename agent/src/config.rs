//! The agent's own configuration: TOML file -> raw serde structs (unknown fields refused)
//! -> a validated [`Config`]. Validation reads the route files it names and nothing else; it
//! binds no socket and writes no file. Every problem found is reported, each with where it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gates::{GateConfig, WatchConfig};
use crate::mapfile::{check_name, check_token};
use crate::state::Colour;

mod metrics;
pub use metrics::{Metrics, SUGGESTED_METRICS_LISTEN};

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
/// Default time for a reload to be confirmed, in milliseconds.
pub const DEFAULT_RELOAD_TIMEOUT_MS: u64 = 15_000;
/// Default time for one runtime-API command, in milliseconds.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 5_000;
/// Default interval of the drift and foreign-reload check, in milliseconds.
pub const DEFAULT_RECONCILE_INTERVAL_MS: u64 = 1_000;
/// Default directory of the shipped templates.
pub const DEFAULT_TEMPLATE_DIR: &str = "/usr/share/cutover/templates";
/// Largest config or routes file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Most routes over all services.
pub const MAX_ROUTES: usize = 5_000_000;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it was read from.
    pub source: PathBuf,
    pub agent: Agent,
    pub proxy: Proxy,
    pub templates: Templates,
    /// Files rendered from templates, in the order given.
    pub files: Vec<FileSpec>,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// This node and its peers; none for a single host.
    pub cluster: Option<crate::peers::ClusterConfig>,
    /// The Prometheus endpoint.
    pub metrics: Metrics,
}

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
}

/// Which proxy, and where its parts are.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub kind: ProxyKind,
    /// Proxy binary, used for the config check. Default [`DEFAULT_HAPROXY_BINARY`].
    pub binary: PathBuf,
    /// Main config file the proxy reads. Default [`DEFAULT_HAPROXY_CONFIG`].
    pub config: PathBuf,
    /// HAProxy admin (stats) socket, `level admin`.
    pub admin_socket: Option<PathBuf>,
    /// HAProxy master CLI socket (`-S`).
    pub master_socket: Option<PathBuf>,
    /// Directory of the default map files. Default [`DEFAULT_MAP_DIR`].
    pub map_dir: PathBuf,
    /// Time for a reload to be confirmed. Default [`DEFAULT_RELOAD_TIMEOUT_MS`] ms.
    pub reload_timeout: Duration,
    /// Time for one runtime command. Default [`DEFAULT_COMMAND_TIMEOUT_MS`] ms.
    pub command_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    Haproxy,
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyKind::Haproxy => "haproxy",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Templates {
    /// Shipped templates. Default [`DEFAULT_TEMPLATE_DIR`].
    pub dir: PathBuf,
    /// User templates; a file here overrides the shipped one with the same relative path.
    pub override_dir: Option<PathBuf>,
    /// Free values for templates, visible as `vars` (e.g. listen addresses).
    pub vars: toml::Table,
}

/// How the proxy takes a rendered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A map: applied through the runtime API where the proxy has one.
    Map,
    /// Part of the proxy config: a change needs a validated reload.
    Config,
}

/// One file rendered from a template.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Name templates use to refer to it (`files.<name>.path`).
    pub name: String,
    /// Template path relative to the template directories.
    pub template: String,
    /// Where the file lives.
    pub path: PathBuf,
    pub kind: FileKind,
    /// Whether the template sees the live routing state. A file rendered from the config
    /// alone (`false`) is rendered again only when the config changes.
    pub uses_state: bool,
    /// What the values of a map must be; see [`ValueCheck`].
    pub values: ValueCheck,
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

#[derive(Debug, Clone)]
pub struct Service {
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
    pub prewarm: Option<crate::gates::prewarm::PrewarmConfig>,
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

#[derive(Debug, Clone, serde::Serialize)]
pub struct ColourSpec {
    /// Proxy backend (HAProxy) that serves this colour.
    pub backend: String,
    /// Servers of the backend, for templates that render the full config.
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub name: String,
    /// `host:port`.
    pub address: String,
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

// ---- raw file format -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    agent: RawAgent,
    proxy: RawProxy,
    #[serde(default)]
    templates: RawTemplates,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    services: Vec<RawService>,
    cluster: Option<RawCluster>,
    #[serde(default)]
    metrics: metrics::RawMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    node: String,
    listen: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    peers: Vec<crate::peers::PeerSpec>,
    report_interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    prepare_ttl_ms: Option<u64>,
    #[serde(default)]
    hold_before_decision_ms: u64,
    #[serde(default)]
    hold_before_commit_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    socket: Option<PathBuf>,
    socket_mode: Option<u32>,
    socket_group: Option<String>,
    state_dir: Option<PathBuf>,
    max_connections: Option<usize>,
    max_line: Option<usize>,
    read_timeout_ms: Option<u64>,
    reconcile_interval_ms: Option<u64>,
    desired_state: Option<PathBuf>,
    desired_debounce_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    kind: ProxyKind,
    binary: Option<PathBuf>,
    config: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    master_socket: Option<PathBuf>,
    map_dir: Option<PathBuf>,
    reload_timeout_ms: Option<u64>,
    command_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplates {
    dir: Option<PathBuf>,
    override_dir: Option<PathBuf>,
    #[serde(default)]
    vars: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    template: String,
    path: PathBuf,
    kind: FileKind,
    #[serde(default = "yes")]
    uses_state: bool,
    #[serde(default = "any")]
    values: ValueCheck,
}

fn any() -> ValueCheck {
    ValueCheck::Any
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    #[serde(default)]
    routes: Vec<String>,
    routes_file: Option<PathBuf>,
    #[serde(default)]
    allow_empty_routes: bool,
    #[serde(default = "blue")]
    initial: Colour,
    blue: RawColour,
    green: RawColour,
    #[serde(default)]
    preview_hosts: Vec<String>,
    #[serde(default = "yes")]
    drain_after_switch: bool,
    #[serde(default)]
    gate: GateConfig,
    watch: Option<WatchConfig>,
    canary_sticky: Option<Sticky>,
    prewarm: Option<crate::gates::prewarm::PrewarmConfig>,
}

fn blue() -> Colour {
    Colour::Blue
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColour {
    backend: String,
    #[serde(default)]
    servers: Vec<Server>,
}

// ---- loading and validation ------------------------------------------------------------

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
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(err(format!(
            "{} bytes is larger than the limit of {MAX_FILE_BYTES}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

struct Validator<'a> {
    base: &'a Path,
    problems: Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn abs(&mut self, what: &str, p: PathBuf) -> PathBuf {
        if p.as_os_str().is_empty() {
            self.problem(format!("{what}: empty path"));
        }
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, what: &str, ms: Option<u64>, default: u64) -> Duration {
        let ms = ms.unwrap_or(default);
        if ms == 0 || ms > 3_600_000 {
            self.problem(format!("{what}: {ms} ms is outside 1..=3600000"));
        }
        Duration::from_millis(ms)
    }

    fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let agent = self.agent(raw.agent);
        let proxy = self.proxy(raw.proxy);
        let templates = Templates {
            dir: raw
                .templates
                .dir
                .map(|d| self.abs("templates.dir", d))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TEMPLATE_DIR)),
            override_dir: raw
                .templates
                .override_dir
                .map(|d| self.abs("templates.override_dir", d)),
            vars: raw.templates.vars,
        };
        let files = self.files(raw.files, &proxy);
        let services = self.services(raw.services);
        let cluster = raw.cluster.map(|c| self.cluster(c));
        let metrics = metrics::validate(raw.metrics, &mut self.problems);
        Config {
            source: path.to_owned(),
            agent,
            proxy,
            templates,
            files,
            services,
            cluster,
            metrics,
        }
    }

    fn agent(&mut self, raw: RawAgent) -> Agent {
        let socket_mode = raw.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE);
        if socket_mode & !0o777 != 0 || socket_mode & 0o007 != 0 {
            self.problem(format!(
                "agent.socket_mode: {socket_mode:#o} must not give access to others (at most 0o770)"
            ));
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=4096).contains(&max_connections) {
            self.problem(format!(
                "agent.max_connections: {max_connections} is outside 1..=4096"
            ));
        }
        let max_line = raw.max_line.unwrap_or(DEFAULT_MAX_LINE);
        if !(1024..=16 * 1024 * 1024).contains(&max_line) {
            self.problem(format!(
                "agent.max_line: {max_line} is outside 1024..=16777216 bytes"
            ));
        }
        Agent {
            socket: raw
                .socket
                .map(|s| self.abs("agent.socket", s))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            socket_mode,
            socket_group: raw.socket_group,
            state_dir: raw
                .state_dir
                .map(|s| self.abs("agent.state_dir", s))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            max_connections,
            max_line,
            read_timeout: self.duration(
                "agent.read_timeout_ms",
                raw.read_timeout_ms,
                DEFAULT_READ_TIMEOUT_MS,
            ),
            reconcile_interval: self.duration(
                "agent.reconcile_interval_ms",
                raw.reconcile_interval_ms,
                DEFAULT_RECONCILE_INTERVAL_MS,
            ),
            desired_state: raw
                .desired_state
                .map(|p| self.abs("agent.desired_state", p)),
            desired_debounce: match raw.desired_debounce_ms {
                Some(0) => Duration::ZERO,
                ms => self.duration("agent.desired_debounce_ms", ms, DEFAULT_DESIRED_DEBOUNCE_MS),
            },
        }
    }

    fn proxy(&mut self, raw: RawProxy) -> Proxy {
        let admin_socket = raw.admin_socket.map(|p| self.abs("proxy.admin_socket", p));
        let master_socket = raw
            .master_socket
            .map(|p| self.abs("proxy.master_socket", p));
        if raw.kind == ProxyKind::Haproxy {
            if admin_socket.is_none() {
                self.problem(
                    "proxy.admin_socket: required for haproxy (a `stats socket ... level admin`)"
                        .into(),
                );
            }
            if master_socket.is_none() {
                self.problem(
                    "proxy.master_socket: required for haproxy (the `-S` master CLI socket)".into(),
                );
            }
        }
        Proxy {
            kind: raw.kind,
            binary: raw
                .binary
                .unwrap_or_else(|| PathBuf::from(DEFAULT_HAPROXY_BINARY)),
            config: raw
                .config
                .map(|p| self.abs("proxy.config", p))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_HAPROXY_CONFIG)),
            admin_socket,
            master_socket,
            map_dir: raw
                .map_dir
                .map(|p| self.abs("proxy.map_dir", p))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MAP_DIR)),
            reload_timeout: self.duration(
                "proxy.reload_timeout_ms",
                raw.reload_timeout_ms,
                DEFAULT_RELOAD_TIMEOUT_MS,
            ),
            command_timeout: self.duration(
                "proxy.command_timeout_ms",
                raw.command_timeout_ms,
                DEFAULT_COMMAND_TIMEOUT_MS,
            ),
        }
    }

    /// The configured files, or the two default maps in `proxy.map_dir`.
    fn files(&mut self, raw: Vec<RawFile>, proxy: &Proxy) -> Vec<FileSpec> {
        if raw.is_empty() {
            return default_files(proxy);
        }
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        let mut out = Vec::new();
        for (i, f) in raw.into_iter().enumerate() {
            let at = format!("files[{i}] ({})", f.name);
            if let Err(e) = check_name(&f.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if !names.insert(f.name.clone()) {
                self.problem(format!("{at}.name: used twice"));
            }
            if !is_clean_relative(&f.template) {
                self.problem(format!(
                    "{at}.template: {:?} must be a relative path inside the template directory",
                    f.template
                ));
            }
            let path = self.abs(&format!("{at}.path"), f.path);
            if !paths.insert(path.clone()) {
                self.problem(format!("{at}.path: {} is used twice", path.display()));
            }
            if f.kind == FileKind::Config
                && path != proxy.config
                && !path.starts_with(proxy.config.parent().unwrap_or(Path::new("/")))
            {
                self.problem(format!(
                    "{at}.path: a config file must be {} or beside it, so the staged copy validates as one tree",
                    proxy.config.display()
                ));
            }
            out.push(FileSpec {
                name: f.name,
                template: f.template,
                path,
                kind: f.kind,
                uses_state: f.uses_state,
                values: f.values,
            });
        }
        out
    }

    fn services(&mut self, raw: Vec<RawService>) -> BTreeMap<String, Service> {
        let mut out = BTreeMap::new();
        let mut route_owner: BTreeMap<String, String> = BTreeMap::new();
        let mut backends: BTreeMap<String, String> = BTreeMap::new();
        let mut total_routes = 0usize;
        if raw.is_empty() {
            self.problem("services: at least one [[services]] is required".into());
        }
        for (i, s) in raw.into_iter().enumerate() {
            let at = format!("services[{i}] ({})", s.name);
            if let Err(e) = check_name(&s.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if out.contains_key(&s.name) {
                self.problem(format!("{at}.name: service defined twice"));
                continue;
            }
            let mut routes = Vec::new();
            for (j, r) in s.routes.into_iter().enumerate() {
                self.route(&format!("{at}.routes[{j}]"), r, &mut routes);
            }
            if let Some(file) = s.routes_file {
                let file = self.abs(&format!("{at}.routes_file"), file);
                match read_bounded(&file) {
                    Err(e) => self.problem(format!("{at}.routes_file: {e}")),
                    Ok(text) => {
                        for (n, line) in text.lines().enumerate() {
                            let line = line.trim();
                            if line.is_empty() || line.starts_with('#') {
                                continue;
                            }
                            self.route(
                                &format!("{}:{}", file.display(), n + 1),
                                line.to_owned(),
                                &mut routes,
                            );
                        }
                    }
                }
            }
            if routes.is_empty() && !s.allow_empty_routes {
                self.problem(format!(
                    "{at}.routes: no routes; an empty route map looks valid and sends nothing \
                     to the service (set allow_empty_routes = true if that is intended)"
                ));
            }
            for r in &routes {
                if let Some(owner) = route_owner.insert(r.clone(), s.name.clone()) {
                    self.problem(format!(
                        "{at}: route {r:?} is also a route of service {owner:?}"
                    ));
                }
            }
            total_routes += routes.len();
            let mut colours = BTreeMap::new();
            for (colour, c) in [(Colour::Blue, s.blue), (Colour::Green, s.green)] {
                let cat = format!("{at}.{colour}");
                if let Err(e) = check_name(&c.backend) {
                    self.problem(format!("{cat}.backend: {e}"));
                }
                if let Some(other) =
                    backends.insert(c.backend.clone(), format!("{}.{colour}", s.name))
                {
                    self.problem(format!(
                        "{cat}.backend: {:?} is also the backend of {other}",
                        c.backend
                    ));
                }
                for (k, srv) in c.servers.iter().enumerate() {
                    if let Err(e) = check_name(&srv.name) {
                        self.problem(format!("{cat}.servers[{k}].name: {e}"));
                    }
                    if srv.address.parse::<std::net::SocketAddr>().is_err()
                        && check_token(&srv.address).is_err()
                    {
                        self.problem(format!(
                            "{cat}.servers[{k}].address: {:?} is not host:port",
                            srv.address
                        ));
                    }
                }
                colours.insert(
                    colour,
                    ColourSpec {
                        backend: c.backend,
                        servers: c.servers,
                    },
                );
            }
            let mut preview_hosts = Vec::new();
            for (j, h) in s.preview_hosts.into_iter().enumerate() {
                let hat = format!("{at}.preview_hosts[{j}]");
                self.route(&hat, h.clone(), &mut preview_hosts);
                if let Some(owner) = route_owner.insert(h.clone(), s.name.clone()) {
                    self.problem(format!("{hat}: {h:?} is also a route of service {owner:?}"));
                }
            }
            let mut problems = s.gate.problems(&format!("{at}.gate"));
            if let Some(w) = &s.watch {
                problems.extend(w.problems(&format!("{at}.watch")));
            }
            if let Some(p) = &s.prewarm {
                problems.extend(p.problems(&format!("{at}.prewarm")));
            }
            match &s.canary_sticky {
                Some(Sticky::Cookie(n) | Sticky::Header(n))
                    if n.is_empty()
                        || n.len() > 64
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    problems.push(format!(
                        "{at}.canary_sticky: {n:?} must be 1 to 64 letters, digits, '-' or '_'"
                    ))
                }
                Some(Sticky::Source(false)) => problems.push(format!(
                    "{at}.canary_sticky: source = false means nothing; leave canary_sticky out"
                )),
                _ => {}
            }
            for p in problems {
                self.problem(p);
            }
            out.insert(
                s.name.clone(),
                Service {
                    name: s.name,
                    routes,
                    initial: s.initial,
                    colours,
                    preview_hosts,
                    drain_after_switch: s.drain_after_switch,
                    gate: s.gate,
                    watch: s.watch,
                    canary_sticky: s.canary_sticky,
                    prewarm: s.prewarm,
                },
            );
        }
        if total_routes > MAX_ROUTES {
            self.problem(format!(
                "services: {total_routes} routes in all, more than the limit of {MAX_ROUTES}"
            ));
        }
        out
    }

    fn cluster(&mut self, raw: RawCluster) -> crate::peers::ClusterConfig {
        use crate::peers::*;
        if let Err(e) = check_name(&raw.node) {
            self.problem(format!("cluster.node: {e}"));
        }
        let listen = raw.listen.parse().unwrap_or_else(|_| {
            self.problem(format!("cluster.listen: {:?} is not ip:port", raw.listen));
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let mut names = BTreeSet::from([raw.node.clone()]);
        for (i, p) in raw.peers.iter().enumerate() {
            let at = format!("cluster.peers[{i}] ({})", p.name);
            if let Err(e) = check_name(&p.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if !names.insert(p.name.clone()) {
                self.problem(format!("{at}.name: used twice (or the name of this node)"));
            }
            let port_ok = p
                .address
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
            if !port_ok {
                self.problem(format!("{at}.address: {:?} is not host:port", p.address));
            }
        }
        let tls = tls::TlsFiles {
            ca: self.abs("cluster.ca", raw.ca),
            cert: self.abs("cluster.cert", raw.cert),
            key: self.abs("cluster.key", raw.key),
        };
        for (what, p) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if !p.is_file() {
                self.problem(format!(
                    "cluster.{what}: {} is not a readable file",
                    p.display()
                ));
            }
        }
        let hold = |ms: u64| Duration::from_millis(ms.min(600_000));
        ClusterConfig {
            node: raw.node,
            listen,
            tls,
            peers: raw.peers,
            report_interval: self.duration(
                "cluster.report_interval_ms",
                raw.report_interval_ms,
                DEFAULT_REPORT_INTERVAL_MS,
            ),
            timeout: self.duration(
                "cluster.timeout_ms",
                raw.timeout_ms,
                DEFAULT_PEER_TIMEOUT_MS,
            ),
            prepare_ttl: self.duration(
                "cluster.prepare_ttl_ms",
                raw.prepare_ttl_ms,
                DEFAULT_PREPARE_TTL_MS,
            ),
            hold_before_decision: hold(raw.hold_before_decision_ms),
            hold_before_commit: hold(raw.hold_before_commit_ms),
        }
    }

    fn route(&mut self, at: &str, r: String, routes: &mut Vec<String>) {
        match check_token(&r) {
            Ok(()) => routes.push(r),
            Err(e) => self.problem(format!("{at}: route {r:?} {e}")),
        }
    }
}

/// The two maps every HAProxy setup needs, in `proxy.map_dir`.
fn default_files(proxy: &Proxy) -> Vec<FileSpec> {
    vec![
        FileSpec {
            name: "routes".into(),
            template: "haproxy/routes.map".into(),
            path: proxy.map_dir.join("routes.map"),
            kind: FileKind::Map,
            uses_state: false,
            values: ValueCheck::Services,
        },
        FileSpec {
            name: "services".into(),
            template: "haproxy/services.map".into(),
            path: proxy.map_dir.join("services.map"),
            kind: FileKind::Map,
            uses_state: true,
            values: ValueCheck::Backends,
        },
    ]
}

/// A relative path with no `..`, no root and no empty parts.
pub fn is_clean_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agent]
socket = "/tmp/c.sock"
state_dir = "/tmp/state"

[proxy]
kind = "haproxy"
admin_socket = "/tmp/admin.sock"
master_socket = "/tmp/master.sock"
map_dir = "/tmp/maps"

[[services]]
name = "web"
routes = ["www.example.com", "example.com"]
blue = { backend = "web_blue" }
green = { backend = "web_green" }
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/cutover/cutover.toml"), text)
    }

    #[test]
    fn good_config_with_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.agent.socket_mode, DEFAULT_SOCKET_MODE);
        assert_eq!(c.services["web"].routes.len(), 2);
        assert_eq!(c.services["web"].initial, Colour::Blue);
        assert_eq!(c.files.len(), 2);
        assert_eq!(
            c.file("routes").unwrap().path,
            Path::new("/tmp/maps/routes.map")
        );
        assert!(!c.file("routes").unwrap().uses_state);
    }

    #[test]
    fn unknown_field_is_refused() {
        let e = load(&GOOD.replace("[agent]", "[agent]\nsokcet = 1")).unwrap_err();
        assert!(e.to_string().contains("unknown field `sokcet`"), "{e}");
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = GOOD
            .replace("\"www.example.com\"", "\"www example.com\"")
            .replace("web_green", "web_blue")
            .replace("/tmp/admin.sock", "")
            .replace("name = \"web\"", "name = \"web/x\"");
        let e = load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("route \"www example.com\" contains a space"),
            "{e}"
        );
        assert!(e.contains("is also the backend of"), "{e}");
        assert!(e.contains("proxy.admin_socket: empty path"), "{e}");
        assert!(e.contains("services[0] (web/x).name"), "{e}");
    }

    #[test]
    fn empty_routes_refused_unless_allowed() {
        let bad = GOOD.replace("[\"www.example.com\", \"example.com\"]", "[]");
        assert!(load(&bad).unwrap_err().to_string().contains("no routes"));
        let ok = bad.replace("routes = []", "routes = []\nallow_empty_routes = true");
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn shared_route_refused() {
        let two = format!(
            "{GOOD}\n[[services]]\nname = \"api\"\nroutes = [\"example.com\"]\nblue = {{ backend = \"a_b\" }}\ngreen = {{ backend = \"a_g\" }}\n"
        );
        let e = load(&two).unwrap_err().to_string();
        assert!(e.contains("also a route of service \"web\""), "{e}");
    }

    #[test]
    fn routes_file_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("routes.txt");
        std::fs::write(&f, "# hosts\na.example\n\nb#x\n").unwrap();
        let text = GOOD.replace(
            "routes = [\"www.example.com\", \"example.com\"]",
            &format!("routes_file = {:?}", f.display().to_string()),
        );
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains("routes.txt:4: route \"b#x\""), "{e}");
    }

    #[test]
    fn template_outside_dir_refused() {
        let text = format!(
            "{GOOD}\n[[files]]\nname = \"x\"\ntemplate = \"../../etc/passwd\"\npath = \"/tmp/maps/x.map\"\nkind = \"map\"\n"
        );
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains("must be a relative path inside"), "{e}");
    }
}
