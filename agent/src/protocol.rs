//! The control protocol: JSON lines over the unix socket, shared by the agent, the CLI and
//! (later) peer agents.
//!
//! A request is one JSON object on one line: `{"v": 1, "cmd": "<verb>", ...arguments}`.
//! Every reply is one JSON object on one line: `{"status": "ok" | "progress" | "error",
//! "message": "<for humans>", "data": <optional, per verb>}`; `progress` replies may
//! precede the final `ok` or `error`.
//!
//! How the schema may evolve: fields are only added, always with a default, and never
//! renamed or given a new meaning; a verb that changes meaning gets a new name. `v` is the
//! highest version the client speaks; the agent refuses a request newer than
//! [`PROTOCOL_VERSION`] and serves every older one. A missing `v` means 1.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::state::{Colour, Desired, Request};

/// Highest protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Most entries a `history` request may ask for.
pub const MAX_HISTORY: usize = 10_000;
/// Deepest JSON nesting accepted in a request.
pub const MAX_DEPTH: usize = 8;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Services, their colours, the proxy and the last error.
    Status,
    /// Make `colour` the live colour of `service`. `force` skips the pre-switch gate.
    Switch {
        service: String,
        colour: Colour,
        #[serde(default)]
        force: bool,
        /// Plan only: validate, run the gates, show what would change; change nothing.
        #[serde(default)]
        dry_run: bool,
    },
    /// Make the previous colour of `service` live again.
    Rollback {
        service: String,
        #[serde(default)]
        force: bool,
        /// Plan only: validate, run the gates, show what would change; change nothing.
        #[serde(default)]
        dry_run: bool,
    },
    /// Send `percent` (1..=99) of the traffic of `service` to `colour`.
    Canary {
        service: String,
        colour: Colour,
        percent: u8,
        #[serde(default)]
        force: bool,
        /// Plan only: validate, run the gates, show what would change; change nothing.
        #[serde(default)]
        dry_run: bool,
    },
    /// Make the canary colour of `service` live.
    Promote {
        service: String,
        #[serde(default)]
        force: bool,
        /// Plan only: validate, run the gates, show what would change; change nothing.
        #[serde(default)]
        dry_run: bool,
    },
    /// End the canary of `service`.
    Abort {
        service: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// Drain the servers of `colour` of `service`.
    Drain {
        service: String,
        colour: Colour,
        #[serde(default)]
        dry_run: bool,
    },
    /// Run a mutating command on every host of the cluster, all or nothing.
    Cluster { command: Box<Command> },
    /// One row per host of the cluster, and per service whether they agree.
    ClusterStatus,
    /// A peer's state report (peer listener only).
    Report {
        report: Box<crate::peers::PeerReport>,
    },
    /// Plan and hold a cluster change (peer listener and the local coordinator only).
    Prepare {
        txn: String,
        request: Request,
        #[serde(default)]
        force: bool,
        coordinator: String,
    },
    /// Whether the cluster change `txn` is still held.
    Ready { txn: String },
    /// Apply the held change `txn` as cluster generation `cluster_generation`.
    Commit {
        txn: String,
        cluster_generation: u64,
    },
    /// Drop the held change `txn`.
    AbortTxn { txn: String },
    /// Set the live colour (and canary) of several services in one change.
    Apply {
        services: BTreeMap<String, Desired>,
        #[serde(default)]
        force: bool,
        #[serde(default)]
        dry_run: bool,
    },
    /// Take the servers of `colour` of `service` out of drain.
    Undrain {
        service: String,
        colour: Colour,
        #[serde(default)]
        dry_run: bool,
    },
    /// Entries of the managed map file `name`.
    MapShow {
        name: String,
        #[serde(default)]
        view: MapView,
    },
    /// The newest journal entries, oldest first.
    History {
        #[serde(default)]
        service: Option<String>,
        #[serde(default = "default_history")]
        limit: usize,
    },
    /// The agent's metrics in the OpenMetrics text format, as the HTTP endpoint serves them
    /// (`data.text`, `data.content_type`). Added in version 1 without a version change: an
    /// older agent answers it with an "unknown variant" error.
    Metrics,
}

fn default_history() -> usize {
    50
}

impl Command {
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
        self.mutation().is_some()
    }

    /// The verb as it appears in the request's `cmd`.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Switch { .. } => "switch",
            Command::Rollback { .. } => "rollback",
            Command::Canary { .. } => "canary",
            Command::Promote { .. } => "promote",
            Command::Abort { .. } => "abort",
            Command::Drain { .. } => "drain",
            Command::Cluster { .. } => "cluster",
            Command::ClusterStatus => "cluster_status",
            Command::Report { .. } => "report",
            Command::Prepare { .. } => "prepare",
            Command::Ready { .. } => "ready",
            Command::Commit { .. } => "commit",
            Command::AbortTxn { .. } => "abort_txn",
            Command::Apply { .. } => "apply",
            Command::Undrain { .. } => "undrain",
            Command::MapShow { .. } => "map_show",
            Command::History { .. } => "history",
            Command::Metrics => "metrics",
        }
    }

    /// The routing request of a mutating command, with its flags.
    pub fn mutation(&self) -> Option<Mutation> {
        let m = |request, force, dry_run: &bool| Mutation {
            request,
            force,
            dry_run: *dry_run,
        };
        let s = String::clone;
        Some(match self {
            Command::Status
            | Command::MapShow { .. }
            | Command::History { .. }
            | Command::Cluster { .. }
            | Command::ClusterStatus
            | Command::Report { .. }
            | Command::Prepare { .. }
            | Command::Ready { .. }
            | Command::Commit { .. }
            | Command::AbortTxn { .. }
            | Command::Metrics => return None,
            Command::Switch {
                service,
                colour,
                force,
                dry_run,
            } => m(
                Request::Switch {
                    service: s(service),
                    colour: *colour,
                },
                *force,
                dry_run,
            ),
            Command::Rollback {
                service,
                force,
                dry_run,
            } => m(
                Request::Rollback {
                    service: s(service),
                },
                *force,
                dry_run,
            ),
            Command::Canary {
                service,
                colour,
                percent,
                force,
                dry_run,
            } => m(
                Request::Canary {
                    service: s(service),
                    colour: *colour,
                    percent: *percent,
                },
                *force,
                dry_run,
            ),
            Command::Promote {
                service,
                force,
                dry_run,
            } => m(
                Request::Promote {
                    service: s(service),
                },
                *force,
                dry_run,
            ),
            Command::Abort { service, dry_run } => m(
                Request::Abort {
                    service: s(service),
                },
                false,
                dry_run,
            ),
            Command::Drain {
                service,
                colour,
                dry_run,
            } => m(
                Request::Drain {
                    service: s(service),
                    colour: *colour,
                },
                false,
                dry_run,
            ),
            Command::Apply {
                services,
                force,
                dry_run,
            } => m(
                Request::Set {
                    services: services.clone(),
                },
                *force,
                dry_run,
            ),
            Command::Undrain {
                service,
                colour,
                dry_run,
            } => m(
                Request::Undrain {
                    service: s(service),
                    colour: *colour,
                },
                false,
                dry_run,
            ),
        })
    }
}

/// A mutating command as the engine takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub request: Request,
    /// Skip the pre-switch gate.
    pub force: bool,
    /// Plan only.
    pub dry_run: bool,
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

/// A reply's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Progress,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub status: Status,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Reply {
    pub fn ok(message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            status: Status::Ok,
            message: message.into(),
            data,
        }
    }

    pub fn error(message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            status: Status::Error,
            message: message.into(),
            data,
        }
    }

    /// The reply as one line, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("reply serializes")
    }
}

/// Why a request line was refused before it reached the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request is not valid JSON: {0}")]
    Json(String),
    #[error("request must be a JSON object")]
    NotAnObject,
    #[error("request nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("\"v\" must be a positive integer")]
    BadVersion,
    #[error("protocol version {0} is newer than this agent speaks ({PROTOCOL_VERSION})")]
    TooNew(u64),
    #[error("bad request: {0}")]
    Command(String),
    #[error("history limit {0} is above {MAX_HISTORY}")]
    HistoryLimit(usize),
    #[error("request names a field twice: {0}")]
    Duplicate(String),
}

/// Decodes one request line.
pub fn decode(line: &str) -> Result<Command, DecodeError> {
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        // serde_json's own recursion limit (128) answers "recursion limit exceeded".
        DecodeError::Json(e.to_string())
    })?;
    if depth(&value) > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    // A JSON object keeps the last of two equal keys; other parsers keep the first. A
    // request that means different things to different readers is refused.
    serde_json::from_str::<NoDuplicateKeys>(line)
        .map_err(|e| DecodeError::Duplicate(e.to_string()))?;
    let obj = value.as_object_mut().ok_or(DecodeError::NotAnObject)?;
    if let Some(v) = obj.remove("v") {
        let v = v
            .as_u64()
            .filter(|v| *v >= 1)
            .ok_or(DecodeError::BadVersion)?;
        if v > u64::from(PROTOCOL_VERSION) {
            return Err(DecodeError::TooNew(v));
        }
    }
    let cmd: Command =
        serde_json::from_value(value.clone()).map_err(|e| DecodeError::Command(e.to_string()))?;
    // serde ignores extra fields next to the tag of a variant without fields (`status`):
    // every known field of a command serializes, so anything else is unknown.
    let known = serde_json::to_value(&cmd).expect("command serializes");
    if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
        if let Some(extra) = given.keys().find(|k| !known.contains_key(*k)) {
            return Err(DecodeError::Command(format!(
                "unknown field `{extra}` for `{}`",
                cmd.verb()
            )));
        }
    }
    if let Command::History { limit, .. } = &cmd {
        if *limit > MAX_HISTORY {
            return Err(DecodeError::HistoryLimit(*limit));
        }
    }
    if let Command::Cluster { command } = &cmd {
        if !command.is_mutation() {
            return Err(DecodeError::Command(
                "cluster takes a command that changes routing".into(),
            ));
        }
    }
    if let Command::Apply { services, .. } = &cmd {
        if services.len() > crate::desired::MAX_SERVICES {
            return Err(DecodeError::Command(format!(
                "apply names {} services, more than {}",
                services.len(),
                crate::desired::MAX_SERVICES
            )));
        }
    }
    Ok(cmd)
}

/// Encodes a request as one line, with the protocol version.
pub fn encode(cmd: &Command) -> String {
    let mut v = serde_json::to_value(cmd).expect("command serializes");
    v.as_object_mut()
        .expect("command is an object")
        .insert("v".into(), PROTOCOL_VERSION.into());
    v.to_string()
}

/// Parses any JSON and fails on an object with a key twice.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicateKeys>()?;
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
            }
        }
        Ok(self)
    }
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for cmd in [
            Command::Status,
            Command::Switch {
                service: "web".into(),
                colour: Colour::Green,
                force: true,
                dry_run: true,
            },
            Command::Rollback {
                service: "web".into(),
                force: false,
                dry_run: false,
            },
            Command::Canary {
                service: "web".into(),
                colour: Colour::Blue,
                percent: 10,
                force: false,
                dry_run: false,
            },
            Command::Promote {
                service: "web".into(),
                force: false,
                dry_run: false,
            },
            Command::Abort {
                service: "web".into(),
                dry_run: true,
            },
            Command::Drain {
                service: "web".into(),
                colour: Colour::Blue,
                dry_run: false,
            },
            Command::Undrain {
                service: "web".into(),
                colour: Colour::Blue,
                dry_run: false,
            },
            Command::MapShow {
                name: "routes".into(),
                view: MapView::Diff,
            },
            Command::History {
                service: None,
                limit: 5,
            },
            Command::Metrics,
        ] {
            assert_eq!(decode(&encode(&cmd)).unwrap(), cmd);
            let tag = serde_json::to_value(&cmd).unwrap()["cmd"].clone();
            assert_eq!(tag, cmd.verb());
        }
    }

    /// A payload written by a version-1 client without `v` and without optional fields.
    #[test]
    fn parses_v1_payloads() {
        assert_eq!(decode(r#"{"cmd":"status"}"#).unwrap(), Command::Status);
        // Written before `force` existed.
        assert_eq!(
            decode(r#"{"v":1,"cmd":"switch","service":"web","colour":"green"}"#).unwrap(),
            Command::Switch {
                service: "web".into(),
                colour: Colour::Green,
                force: false,
                dry_run: false
            }
        );
        assert_eq!(
            decode(r#"{"cmd":"map_show","name":"services"}"#).unwrap(),
            Command::MapShow {
                name: "services".into(),
                view: MapView::Desired
            }
        );
        assert_eq!(
            decode(r#"{"v":1,"cmd":"history"}"#).unwrap(),
            Command::History {
                service: None,
                limit: 50
            }
        );
    }

    /// Every request an older client sends still parses to what it meant after later
    /// additions (`force`, `dry_run`, `metrics`).
    #[test]
    fn older_payloads_parse_after_additions() {
        let old = [
            (r#"{"v":1,"cmd":"status"}"#, Command::Status),
            (
                r#"{"v":1,"cmd":"switch","service":"web","colour":"green"}"#,
                Command::Switch {
                    service: "web".into(),
                    colour: Colour::Green,
                    force: false,
                    dry_run: false,
                },
            ),
            (
                r#"{"cmd":"rollback","service":"web"}"#,
                Command::Rollback {
                    service: "web".into(),
                    force: false,
                    dry_run: false,
                },
            ),
            (
                r#"{"v":1,"cmd":"map_show","name":"routes","view":"diff"}"#,
                Command::MapShow {
                    name: "routes".into(),
                    view: MapView::Diff,
                },
            ),
            (
                r#"{"cmd":"history","service":"web","limit":3}"#,
                Command::History {
                    service: Some("web".into()),
                    limit: 3,
                },
            ),
        ];
        for (line, cmd) in old {
            assert_eq!(decode(line).unwrap(), cmd, "{line}");
        }
        assert_eq!(decode(r#"{"cmd":"metrics"}"#).unwrap(), Command::Metrics);
        assert_eq!(encode(&Command::Metrics), r#"{"cmd":"metrics","v":1}"#);
    }

    #[test]
    fn refusals_are_clear() {
        let e = |l: &str| decode(l).unwrap_err().to_string();
        assert!(e("{\"cmd\":").contains("not valid JSON"));
        assert_eq!(e("[1]"), "request must be a JSON object");
        assert!(e(r#"{"cmd":"switch","service":"web","colour":"red"}"#)
            .contains("unknown variant `red`, expected `blue` or `green`"));
        assert!(
            e(r#"{"cmd":"switch","service":"web","colour":"blue","forse":true}"#)
                .contains("unknown field `forse`")
        );
        assert!(
            e(r#"{"cmd":"canary","service":"web","colour":"blue","percent":300}"#)
                .contains("invalid value")
        );
        assert!(e(r#"{"cmd":"reboot"}"#).contains("unknown variant `reboot`"));
        assert!(e(r#"{"cmd":"status","verbose":true}"#).contains("unknown field `verbose`"));
        assert!(
            e(r#"{"cmd":"switch","service":"web","colour":"blue","service":"api"}"#)
                .contains("names a field twice: duplicate field `service`")
        );
        assert!(e(r#"{"cmd":"status","x":{"a":1,"a":2}}"#).contains("duplicate field `a`"));
        assert!(e(r#"{"cmd":"history","force":1}"#).contains("unknown field `force`"));
        assert!(e(r#"{"cmd":"switch","service":5,"colour":"blue"}"#).contains("invalid type"));
        assert!(e(r#"{"v":2,"cmd":"status"}"#).contains("newer than this agent speaks"));
        assert_eq!(
            e(r#"{"cmd":"status","x":[[[[[[[[[[1]]]]]]]]]]}"#),
            DecodeError::TooDeep.to_string()
        );
        assert!(e(&format!("{}1{}", "[".repeat(200), "]".repeat(200))).contains("recursion"));
        assert!(e(r#"{"cmd":"history","limit":99999999}"#).contains("above"));
    }

    #[test]
    fn reply_shape() {
        let r = Reply::ok("done", serde_json::Value::Null).to_line();
        assert_eq!(r, r#"{"status":"ok","message":"done"}"#);
    }
}
