//! The replies the agent builds from what the engine answers: the JSON of each is part of
//! the protocol and stays as it is.

use serde_json::json;

use crate::engine::{Applied, ApplyError};
use crate::metrics::{self, Metrics};
use crate::protocol::Reply;
use crate::protocol::{Plan, Snapshot};

/// A request the engine refused or failed: its message and the failed step.
pub fn failed(e: ApplyError) -> Reply {
    Reply::error(e.to_string(), json!({ "step": e.step }))
}

/// The answer to a change: what it did, or why it was refused.
pub fn change(result: Result<Applied, ApplyError>) -> Reply {
    match result {
        Ok(a) => Reply::ok(a.summary(), serde_json::to_value(&a).expect("serializes")),
        Err(e) => failed(e),
    }
}

/// The answer to a dry run: what would apply, or where it would be refused.
pub fn plan(result: Result<Plan, ApplyError>) -> Reply {
    match result {
        Ok(plan) => Reply::ok(
            format!(
                "dry run: generation {} would apply; nothing changed",
                plan.generation
            ),
            serde_json::to_value(&plan).expect("serializes"),
        ),
        Err(e) => Reply::error(
            format!("dry run: would be refused at {e}"),
            json!({ "step": e.step, "dry_run": true }),
        ),
    }
}

/// The answer to `status`.
pub fn status(snap: &Snapshot) -> Reply {
    let message = format!(
        "generation {}, {} service(s), {} {}",
        snap.generation,
        snap.services.len(),
        snap.proxy.kind,
        if snap.proxy.reachable {
            "reachable"
        } else {
            "unreachable"
        }
    );
    Reply::ok(
        message,
        serde_json::to_value(snap).expect("snapshot serializes"),
    )
}

/// The answer to `metrics`: the exposition text.
pub fn metrics(metrics: &Metrics) -> Reply {
    Reply::ok(
        "metrics",
        json!({ "content_type": metrics::CONTENT_TYPE, "text": metrics.render() }),
    )
}

/// A cluster request to an agent without `[cluster]`.
pub fn no_cluster() -> Reply {
    Reply::error(
        "this agent has no [cluster] configured",
        serde_json::Value::Null,
    )
}

/// A request this agent does not serve (now).
pub fn not_served() -> Reply {
    Reply::error("this command is not served here", serde_json::Value::Null)
}
