//! The agent's own configuration: TOML file -> raw serde structs (unknown fields refused,
//! `raw`) -> a validated [`Config`] (`validate`). Validation reads the route files it names
//! and nothing else; it binds no socket and writes no file. Every problem found is
//! reported, each with where it is. This module holds the validated [`Config`] and
//! loading; the types of each section, with their documented defaults, live in a file per
//! section (`agent`, `proxy`, `files`, `services`) and are re-exported here; the tables of a
//! service's gates and of the cluster are in [`gates`] and [`cluster`], which the gates and
//! the peers read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::protocol::Colour;

mod agent;
pub mod cluster;
mod files;
pub mod fleet;
pub mod gates;
pub mod health;
pub mod hooks;
mod metrics;
mod proxy;
mod raw;
pub mod remote;
mod services;
mod validate;

pub use agent::{
    Agent, JournalLimits, DEFAULT_DESIRED_DEBOUNCE_MS, DEFAULT_JOURNAL_FILES,
    DEFAULT_JOURNAL_MAX_AGE_DAYS, DEFAULT_JOURNAL_MAX_BYTES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_UID, DEFAULT_MAX_LINE, DEFAULT_READ_TIMEOUT_MS,
    DEFAULT_RECONCILE_INTERVAL_MS, DEFAULT_RESERVED_CONNECTIONS, DEFAULT_SOCKET,
    DEFAULT_SOCKET_MODE, DEFAULT_STATE_DIR,
};
pub use cluster::{ClusterConfig, PeerSpec, TlsFiles};
pub use files::{EmptyMapError, FileSpec, Templates, ValueCheck, DEFAULT_TEMPLATE_DIR, MAX_FILES};
pub use fleet::{EtcdAuth, EtcdConfig, EtcdTls, FleetConfig};
pub use gates::{GateConfig, NoTraffic, PrewarmConfig, WatchConfig};
pub use health::{HealthChecks, HealthConfig};
pub use hooks::{EventKind, HookAction, HookConfig, HookUrl};
pub use metrics::{Metrics, SUGGESTED_METRICS_LISTEN};
pub use proxy::{
    NginxRuntime, NginxSettings, Proxy, ProxyKind, StatusAddress, StatusAddressError,
    DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_HAPROXY_BINARY, DEFAULT_HAPROXY_CONFIG,
    DEFAULT_HAPROXY_MIN_RELOAD_GAP_MS, DEFAULT_MAP_DIR, DEFAULT_NGINX_ACCESS_LOG_SOCKET,
    DEFAULT_NGINX_BINARY, DEFAULT_NGINX_CONFIG, DEFAULT_NGINX_ERROR_LOG, DEFAULT_NGINX_LUA_CONTROL,
    DEFAULT_NGINX_MAP_DIR, DEFAULT_NGINX_MIN_RELOAD_GAP_MS, DEFAULT_NGINX_MODULE_DIR,
    DEFAULT_NGINX_PID_FILE, DEFAULT_NGINX_STATUS, DEFAULT_RELOAD_TIMEOUT_MS, LUA_MAPS, LUA_MODULE,
    MAX_MIN_RELOAD_GAP_MS, NDK_MODULE,
};
pub use remote::RemoteConfig;
pub use services::{ColourSpec, Server, Service, Sticky, MAX_ROUTES, MAX_SERVICES};

use raw::RawConfig;
use validate::Validator;

/// Largest config or routes file read, in bytes; only regular files are read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

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
    /// This node and its peers (`[cluster]`, static peers); none for a single host.
    pub cluster: Option<ClusterConfig>,
    /// This host as a member of a fleet whose desired state lives in etcd (`[cluster]`
    /// with `store = "etcd"`).
    pub fleet: Option<FleetConfig>,
    /// The remote API (`[remote]`): gRPC over mutual TLS; none by default.
    pub remote: Option<RemoteConfig>,
    /// The Prometheus endpoint.
    pub metrics: Metrics,
    /// What is told to the outside world when something happens (`[[hooks]]`); none by
    /// default.
    pub hooks: Vec<HookConfig>,
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
        /// The line the parser stopped at, 1-based, when it says.
        line: Option<u64>,
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

impl ConfigError {
    /// The line of the config file at fault, 1-based, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            ConfigError::Parse { line, .. } => *line,
            ConfigError::Read { .. } | ConfigError::Invalid { .. } => None,
        }
    }
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
            line: e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| before.matches('\n').count() as u64 + 1),
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
        line: None,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(only
        .agent
        .socket
        .map(|s| base.join(s))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)))
}

/// The control socket of a config that does not parse, for `cutover reload` (the running
/// agent must hear about a broken config, and it answers on the socket of the config it
/// runs): a `socket = "..."` line of the `[agent]` table, read line by line, else the
/// default socket; `None` when the file cannot be read at all.
pub fn socket_of_broken(path: &Path) -> Option<PathBuf> {
    let text = read_bounded(path).or_else(|_| {
        // Not UTF-8, say: read what is readable.
        std::fs::read(path).map(|b| {
            String::from_utf8_lossy(&b[..b.len().min(MAX_FILE_BYTES as usize)]).into_owned()
        })
    });
    let text = text.ok()?;
    let mut in_agent = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            // `[agent]`, or the header itself broken (`[agent`).
            in_agent = line.trim_matches(|c| c == '[' || c == ']').trim() == "agent";
            continue;
        }
        let Some(value) = line.strip_prefix("socket").map(str::trim_start) else {
            continue;
        };
        if let (true, Some(value)) = (in_agent, value.strip_prefix('=')) {
            if let Ok(socket) = toml::from_str::<toml::Table>(&format!("s = {}", value.trim())) {
                if let Some(s) = socket.get("s").and_then(|v| v.as_str()) {
                    let base = path.parent().unwrap_or(Path::new("."));
                    return Some(base.join(s));
                }
            }
        }
    }
    Some(PathBuf::from(DEFAULT_SOCKET))
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
