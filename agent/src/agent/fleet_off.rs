//! The agent's link to the fleet store in a build without it (`--no-default-features`):
//! a type with no values, so every path that would use one is statically unreachable, and
//! an agent configured with `store = "etcd"` refuses to start.

use tokio::sync::{oneshot, watch};

use crate::config::FleetConfig;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::protocol::{FleetHealth, Mutation, Reply};
use crate::proxy::Proxy;
use crate::requester::Requester;

/// Never a value: this build has no fleet store.
pub enum FleetLink {}

/// What the fleet task would ask; never asked in this build.
pub enum Call {}

impl FleetLink {
    /// Always `None`: this build has no fleet store.
    pub fn start(_config: &FleetConfig, _metrics: Metrics) -> Option<FleetLink> {
        None
    }

    /// Never completes.
    pub async fn next_call(_link: &mut Option<FleetLink>) -> Call {
        std::future::pending().await
    }

    /// Unreachable.
    pub async fn answer<P: Proxy>(&self, _engine: &mut Engine<P>, call: Call) {
        match call {}
    }

    /// Unreachable.
    pub fn publish<P: Proxy>(&self, _engine: &Engine<P>) {
        match *self {}
    }

    /// Unreachable.
    pub fn health(&self) -> &watch::Receiver<FleetHealth> {
        match *self {}
    }

    /// Unreachable.
    pub fn not_local(&self) -> Reply {
        match *self {}
    }

    /// Unreachable.
    pub fn propose(&self, _change: Mutation, _asked_by: Requester, _reply: oneshot::Sender<Reply>) {
        match *self {}
    }

    /// Unreachable.
    pub fn status(&self, _reply: oneshot::Sender<Reply>) {
        match *self {}
    }

    /// Unreachable.
    pub fn history(&self, _service: Option<String>, _limit: usize, _reply: oneshot::Sender<Reply>) {
        match *self {}
    }
}
