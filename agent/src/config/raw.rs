//! The config file as written: serde structs with unknown fields refused, turned into a
//! [`Config`](super::Config) by `validate`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

use super::{
    GateConfig, PeerSpec, PrewarmConfig, ProxyKind, Server, Sticky, ValueCheck, WatchConfig,
};
use crate::protocol::Colour;
use crate::protocol::FileKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) agent: RawAgent,
    pub(super) proxy: RawProxy,
    #[serde(default)]
    pub(super) templates: RawTemplates,
    #[serde(default)]
    pub(super) files: Vec<RawFile>,
    #[serde(default)]
    pub(super) services: Vec<RawService>,
    pub(super) cluster: Option<RawCluster>,
    pub(super) remote: Option<super::remote::RawRemote>,
    #[serde(default)]
    pub(super) metrics: super::metrics::RawMetrics,
    #[serde(default)]
    pub(super) hooks: Vec<super::hooks::RawHook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(default)]
    pub(super) store: ClusterStore,
    pub(super) node: String,
    pub(super) listen: Option<String>,
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    #[serde(default)]
    pub(super) expect_hosts: Vec<String>,
    pub(super) etcd: Option<RawEtcd>,
    #[serde(default)]
    pub(super) peers: Vec<PeerSpec>,
    pub(super) report_interval_ms: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) prepare_ttl_ms: Option<u64>,
    #[serde(default)]
    pub(super) hold_before_decision_ms: u64,
    #[serde(default)]
    pub(super) hold_before_commit_ms: u64,
}

/// Where the hosts of a cluster meet (`[cluster] store`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClusterStore {
    /// Listed peers over mutual TLS (docs/CLUSTER.md, static peers).
    #[default]
    Peers,
    /// The fleet store in etcd.
    Etcd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    pub(super) endpoints: Vec<String>,
    pub(super) prefix: String,
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) user: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) dial_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) lease_ttl_s: Option<u64>,
    pub(super) vote_timeout_ms: Option<u64>,
    pub(super) wait_ms: Option<u64>,
    pub(super) check_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) socket: Option<PathBuf>,
    pub(super) socket_mode: Option<u32>,
    pub(super) socket_group: Option<String>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_uid: Option<usize>,
    pub(super) reserved_connections: Option<usize>,
    pub(super) journal_max_bytes: Option<u64>,
    pub(super) journal_files: Option<u32>,
    pub(super) journal_max_age_days: Option<u64>,
    pub(super) max_line: Option<usize>,
    pub(super) read_timeout_ms: Option<u64>,
    pub(super) reconcile_interval_ms: Option<u64>,
    pub(super) desired_state: Option<PathBuf>,
    pub(super) desired_debounce_ms: Option<u64>,
    #[serde(default)]
    pub(super) allow_uids: BTreeSet<IdOrName>,
    #[serde(default)]
    pub(super) allow_gids: BTreeSet<IdOrName>,
    #[serde(default)]
    pub(super) read_uids: BTreeSet<IdOrName>,
    #[serde(default)]
    pub(super) read_gids: BTreeSet<IdOrName>,
}

/// A user or group in an access list: its number, or its name in the user database
/// (resolved when the config is validated).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum IdOrName {
    Id(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for IdOrName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IdOrName;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number (0..=4294967295) or a user or group name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IdOrName, E> {
                u32::try_from(v)
                    .map(IdOrName::Id)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IdOrName, E> {
                u32::try_from(v)
                    .map(IdOrName::Id)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IdOrName, E> {
                let ok = !v.is_empty()
                    && v.len() <= 256
                    && !v.chars().any(|c| c.is_whitespace() || c.is_control());
                if ok {
                    Ok(IdOrName::Name(v.to_owned()))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub(super) kind: ProxyKind,
    pub(super) binary: Option<PathBuf>,
    pub(super) config: Option<PathBuf>,
    pub(super) admin_socket: Option<PathBuf>,
    pub(super) master_socket: Option<PathBuf>,
    pub(super) pid_file: Option<PathBuf>,
    pub(super) error_log: Option<PathBuf>,
    pub(super) status: Option<String>,
    pub(super) access_log_socket: Option<PathBuf>,
    pub(super) access_log_group: Option<String>,
    pub(super) prefix: Option<PathBuf>,
    pub(super) runtime: Option<super::NginxRuntime>,
    pub(super) lua_control: Option<PathBuf>,
    pub(super) module_dir: Option<PathBuf>,
    pub(super) map_dir: Option<PathBuf>,
    pub(super) reload_timeout_ms: Option<u64>,
    pub(super) command_timeout_ms: Option<u64>,
    pub(super) min_reload_gap_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplates {
    pub(super) dir: Option<PathBuf>,
    pub(super) override_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) vars: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) name: String,
    pub(super) template: String,
    pub(super) path: PathBuf,
    pub(super) kind: FileKind,
    #[serde(default = "yes")]
    pub(super) uses_state: bool,
    #[serde(default = "any")]
    pub(super) values: ValueCheck,
    #[serde(default)]
    pub(super) allow_empty: bool,
}

fn any() -> ValueCheck {
    ValueCheck::Any
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) name: String,
    #[serde(default)]
    pub(super) routes: Vec<String>,
    pub(super) routes_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) allow_empty_routes: bool,
    #[serde(default = "blue")]
    pub(super) initial: Colour,
    pub(super) blue: RawColour,
    pub(super) green: RawColour,
    #[serde(default)]
    pub(super) preview_hosts: Vec<String>,
    #[serde(default = "yes")]
    pub(super) drain_after_switch: bool,
    #[serde(default)]
    pub(super) gate: GateConfig,
    pub(super) watch: Option<WatchConfig>,
    pub(super) canary_sticky: Option<Sticky>,
    pub(super) prewarm: Option<PrewarmConfig>,
    pub(super) health: Option<super::HealthConfig>,
    pub(super) drain_timeout_ms: Option<u64>,
}

fn blue() -> Colour {
    Colour::Blue
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawColour {
    pub(super) backend: String,
    #[serde(default)]
    pub(super) servers: Vec<Server>,
}
