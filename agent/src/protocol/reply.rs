//! Replies: every reply is one JSON object on one line, `{"status": "ok" | "progress" |
//! "error", "message": "<for humans>", "data": <optional, per verb>}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A reply's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The request was served; the final reply.
    Ok,
    /// Work in progress; more replies follow.
    Progress,
    /// The request was refused or failed; the final reply.
    Error,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The outcome.
    pub status: Status,
    /// For humans.
    pub message: String,
    /// Per verb: a [`Snapshot`](super::Snapshot) for `status`, a [`Plan`](super::Plan) for a
    /// dry run, a [`MapShown`] for `map_show`, ... (see the command line's printer, which
    /// reads each by its type).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Reply {
    /// A final reply that the request was served.
    pub fn ok(message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            status: Status::Ok,
            message: message.into(),
            data,
        }
    }

    /// A final reply that the request was refused or failed.
    pub fn error(message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            status: Status::Error,
            message: message.into(),
            data,
        }
    }

    /// The reply's data read as the type the request's verb answers with.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The reply as one line, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("reply serializes")
    }
}

/// The data of a `metrics` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsText {
    /// The OpenMetrics content type, as the HTTP endpoint sends it.
    pub content_type: String,
    /// The metrics in the OpenMetrics text format.
    pub text: String,
}

/// The data of a `map_show` reply: the entries (views `desired` and `live`) or the per-key
/// difference from live to desired (view `diff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MapShown {
    /// Key to value.
    Entries {
        /// The map's entries.
        entries: BTreeMap<String, String>,
    },
    /// What desired changes against live.
    Diff {
        /// Keys to add, with their value.
        added: Vec<(String, String)>,
        /// Keys whose value changes, with the new value.
        changed: Vec<(String, String)>,
        /// Keys to remove.
        removed: Vec<String>,
    },
}
