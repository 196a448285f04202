//! The wire command: `{"v": 1, "cmd": "<verb>", ...arguments}`. The routing verbs are one
//! variant, [`Command::Change`], whose arguments are a [`Request`]; the JSON stays the flat
//! object it has always been (`{"cmd":"switch","service":"web","colour":"green",
//! "force":false,"dry_run":false}`), written and read by the hand-written serde impls below.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{PeerReport, Request, Terms};

/// A request from a client.
///
/// Serialised through the derive (`remote = "Self"`) for every variant but
/// [`Command::Change`], which the `Serialize`/`Deserialize` impls below write and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    remote = "Self",
    tag = "cmd",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Command {
    /// Services, their colours, the proxy and the last error.
    Status,
    /// A routing change: `switch`, `rollback`, `canary`, `promote`, `abort`, `drain`,
    /// `undrain` or `apply` (see [`Request`]), with its flags.
    #[serde(skip)]
    Change(Mutation),
    /// Run a mutating command on every host of the cluster, all or nothing.
    Cluster {
        /// The change, a [`Command::Change`].
        command: Box<Command>,
    },
    /// One row per host of the cluster, and per service whether they agree.
    ClusterStatus,
    /// A peer's state report (peer listener only).
    Report {
        /// What the peer says about itself.
        report: Box<PeerReport>,
    },
    /// Plan and hold a cluster change (peer listener and the local coordinator only).
    Prepare {
        /// The cluster change's id.
        txn: String,
        /// The change.
        request: Request,
        /// Skip the pre-switch gate.
        #[serde(default)]
        force: bool,
        /// The node that coordinates the change.
        coordinator: String,
        /// Why, and the cluster generation the change expects (checked on every host).
        #[serde(default, skip_serializing_if = "is_default")]
        terms: Terms,
        /// Who asked the coordinator for the change, journaled by every host that
        /// applies it (absent from older coordinators).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        asked_by: Option<crate::requester::Requester>,
    },
    /// Whether the cluster change `txn` is still held.
    Ready {
        /// The cluster change's id.
        txn: String,
    },
    /// Apply the held change `txn` as cluster generation `cluster_generation`.
    Commit {
        /// The cluster change's id.
        txn: String,
        /// The cluster generation the change becomes.
        cluster_generation: u64,
    },
    /// Drop the held change `txn`.
    AbortTxn {
        /// The cluster change's id.
        txn: String,
    },
    /// Entries of the managed map file `name`.
    MapShow {
        /// The map's name in the config.
        name: String,
        /// Which content to show.
        #[serde(default)]
        view: MapView,
    },
    /// The newest journal entries, oldest first.
    History {
        /// Only entries about this service.
        #[serde(default)]
        service: Option<String>,
        /// At most this many entries (at most [`super::MAX_HISTORY`]).
        #[serde(default = "default_history")]
        limit: usize,
        /// Only entries asked for by this user: a user name or uid (of the requester, or
        /// of whoever asked for a cluster change), a certificate identity (`dns:<name>`,
        /// `uri:<uri>`) or a peer's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Only entries of this verb (`switch`, `rollback`..., or what the agent did by
        /// itself: `watch`, `reconcile`, `config`, `recover`...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        verb: Option<String>,
        /// Only entries at or after this Unix time, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<u64>,
        /// Only entries before this Unix time, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_ms: Option<u64>,
    },
    /// The agent's metrics in the OpenMetrics text format, as the HTTP endpoint serves them
    /// (`data.text`, `data.content_type`). Added in version 1 without a version change: an
    /// older agent answers it with an "unknown variant" error.
    Metrics,
    /// Read the agent's config file again and put it in force, as SIGHUP does, answering
    /// only once it is in force (`ok`) or refused (`error`, with `data` the
    /// [`super::ConfigRefusal`]). Needs the mutating permission. Added in version 1 without
    /// a version change: an older agent answers it with an "unknown variant" error.
    ReloadConfig,
}

/// Every `cmd` the protocol knows, in declaration order (the routing verbs in place of
/// `Change`).
pub const VERBS: &[&str] = &[
    "status",
    "switch",
    "rollback",
    "canary",
    "promote",
    "abort",
    "drain",
    "undrain",
    "apply",
    "cluster",
    "cluster_status",
    "report",
    "prepare",
    "ready",
    "commit",
    "abort_txn",
    "map_show",
    "history",
    "metrics",
    "reload_config",
];

fn default_history() -> usize {
    50
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A routing change as the engine takes it: the request and its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// What to change.
    pub request: Request,
    /// Skip the pre-switch gate (only verbs that [take it](Request::takes_force)).
    pub force: bool,
    /// Plan only: validate, run the gates, show what would change; change nothing.
    pub dry_run: bool,
    /// On a host of a fleet (etcd): change this host alone; it shows as diverged until the
    /// next fleet change. Written on the wire only when set.
    pub local: bool,
    /// Why, and the generation the change expects; each written on the wire only when
    /// set.
    pub terms: Terms,
}

impl Command {
    /// A routing change.
    pub fn change(request: Request, force: bool, dry_run: bool) -> Command {
        Command::Change(Mutation {
            request,
            force,
            dry_run,
            local: false,
            terms: Terms::default(),
        })
    }

    /// `history`: the newest `limit` entries, about `service` when given, unfiltered
    /// otherwise.
    pub fn history(service: Option<String>, limit: usize) -> Command {
        Command::History {
            service,
            limit,
            user: None,
            verb: None,
            since_ms: None,
            until_ms: None,
        }
    }

    /// Whether the command is one agents send each other (accepted only from peers).
    pub fn is_peer_only(&self) -> bool {
        matches!(
            self,
            Command::Report { .. }
                | Command::Prepare { .. }
                | Command::Ready { .. }
                | Command::Commit { .. }
                | Command::AbortTxn { .. }
        )
    }

    /// Whether the command may change routing (and so is journaled and needs the
    /// mutating permission).
    pub fn is_mutation(&self) -> bool {
        matches!(self, Command::Change(_))
    }

    /// The verb as it appears in the request's `cmd`.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Change(m) => m.request.verb(),
            Command::Cluster { .. } => "cluster",
            Command::ClusterStatus => "cluster_status",
            Command::Report { .. } => "report",
            Command::Prepare { .. } => "prepare",
            Command::Ready { .. } => "ready",
            Command::Commit { .. } => "commit",
            Command::AbortTxn { .. } => "abort_txn",
            Command::MapShow { .. } => "map_show",
            Command::History { .. } => "history",
            Command::Metrics => "metrics",
            Command::ReloadConfig => "reload_config",
        }
    }

    /// The routing change of a mutating command, with its flags.
    pub fn mutation(&self) -> Option<Mutation> {
        match self {
            Command::Change(m) => Some(m.clone()),
            _ => None,
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Command::Change(m) => m
                .to_object()
                .map_err(serde::ser::Error::custom)?
                .serialize(s),
            other => Command::serialize(other, s),
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match value.get("cmd").and_then(Value::as_str) {
            Some(verb) if Request::VERBS.contains(&verb) => Mutation::from_object(value)
                .map(Command::Change)
                .map_err(D::Error::custom),
            Some(verb) if !VERBS.contains(&verb) => Err(D::Error::unknown_variant(verb, VERBS)),
            // Known verbs, and the errors of a missing or odd `cmd`, as the derive words them.
            _ => Command::deserialize(value).map_err(D::Error::custom),
        }
    }
}

impl Mutation {
    /// The flat wire object: `cmd`, the request's fields, `force` (where the verb takes
    /// it) and `dry_run`.
    fn to_object(&self) -> Result<Map<String, Value>, serde_json::Error> {
        let verb = self.request.verb();
        let mut obj = Map::new();
        obj.insert("cmd".into(), verb.into());
        if let Value::Object(fields) = serde_json::to_value(&self.request)? {
            obj.extend(fields.into_iter().filter(|(k, _)| k != "op"));
        }
        if Request::takes_force(verb) {
            obj.insert("force".into(), self.force.into());
        }
        obj.insert("dry_run".into(), self.dry_run.into());
        if self.local {
            obj.insert("local".into(), true.into());
        }
        if let Value::Object(terms) = serde_json::to_value(&self.terms)? {
            obj.extend(terms);
        }
        Ok(obj)
    }

    /// Reads the flat wire object of a routing verb: the flags are taken out (`force` only
    /// where the verb takes it, so elsewhere it is an unknown field), the rest is the
    /// request.
    fn from_object(mut value: Value) -> Result<Mutation, serde_json::Error> {
        let Some(obj) = value.as_object_mut() else {
            return Err(serde_json::Error::custom("request must be a JSON object"));
        };
        let verb = match obj.remove("cmd") {
            Some(Value::String(verb)) => verb,
            _ => return Err(serde_json::Error::missing_field("cmd")),
        };
        if obj.contains_key("op") {
            return Err(serde_json::Error::custom(format!(
                "unknown field `op` for `{verb}`"
            )));
        }
        let mut flag = |name: &str| -> Result<bool, serde_json::Error> {
            obj.remove(name)
                .map(bool::deserialize)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let dry_run = flag("dry_run")?;
        let local = flag("local")?;
        let force = if Request::takes_force(&verb) {
            flag("force")?
        } else {
            false
        };
        let terms: Map<String, Value> = Terms::FIELDS
            .iter()
            .filter_map(|f| obj.remove_entry(*f))
            .collect();
        let terms = Terms::deserialize(Value::Object(terms))?;
        obj.insert("op".into(), Request::op_of(&verb).into());
        Ok(Mutation {
            request: Request::deserialize(value)?,
            force,
            dry_run,
            local,
            terms,
        })
    }
}

/// Which content of a map to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MapView {
    /// What the desired state renders.
    #[default]
    Desired,
    /// What the running proxy serves.
    Live,
    /// The per-key difference from live to desired.
    Diff,
}
