//! Replies: every reply is one JSON object on one line, `{"status": "ok" | "progress" |
//! "error", "message": "<for humans>", "data": <optional, per verb>}`.

use serde::{Deserialize, Serialize};

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
