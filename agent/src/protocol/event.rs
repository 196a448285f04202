//! The data of one event of the remote API's `Watch` stream: the agent's routing state and
//! the post-switch watch's phase of each service, as of one moment. Added fields get
//! defaults, as everywhere in the protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Desired, Phase};

/// The agent's routing state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The state generation.
    pub generation: u64,
    /// Every service's routing: live colour, canary, previous colour, drains.
    pub services: BTreeMap<String, Desired>,
    /// The post-switch watch's phase of each service that had one (watching, passed, held,
    /// rolled back), with its reason and start.
    #[serde(default)]
    pub watches: BTreeMap<String, Phase>,
    /// Whether the proxy answers.
    pub proxy_reachable: bool,
    /// The last error, if any.
    #[serde(default)]
    pub last_error: Option<String>,
}
