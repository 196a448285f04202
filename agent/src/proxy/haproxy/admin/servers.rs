//! Backends and servers: listing them, reading server states and backend counters, and
//! setting a server's weight or administrative state.

use super::{AdminClient, AdminError};
use crate::proxy::haproxy::reply::{self, ServerState};
use crate::proxy::BackendStats;

/// Administrative state of a server, for `set server <b>/<s> state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAdminState {
    /// Takes traffic.
    Ready,
    /// Keeps existing and persistent connections, gets no new ones.
    Drain,
    /// Takes no traffic at all.
    Maint,
}

impl ServerAdminState {
    /// The CLI word: `ready`, `drain` or `maint`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerAdminState::Ready => "ready",
            ServerAdminState::Drain => "drain",
            ServerAdminState::Maint => "maint",
        }
    }
}

impl AdminClient {
    /// Backend names (`show backend`).
    pub async fn backends(&self) -> Result<Vec<String>, AdminError> {
        const COMMAND: &str = "show backend";
        let reply = self.command(COMMAND).await?;
        reply::parse_backends(&reply).map_err(|e| self.reply_error(COMMAND, e))
    }

    /// The servers of `backend` with their state and weights (`show servers state`).
    pub async fn servers_state(&self, backend: &str) -> Result<Vec<ServerState>, AdminError> {
        let command = format!("show servers state {backend}");
        self.check_name(&command, "backend", backend)?;
        let reply = self.command(&command).await?;
        reply::parse_servers_state(&reply).map_err(|e| self.reply_error(&command, e))
    }

    /// Cumulative counters of `backend` and whether it is down (its `BACKEND` line of
    /// `show stat <backend> 2 -1`), on a connection of its own (the post-switch watch's).
    pub async fn backend_stat(&self, backend: &str) -> Result<BackendStats, AdminError> {
        let command = format!("show stat {backend} 2 -1");
        self.check_name(&command, "backend", backend)?;
        let reply = self.command_apart(&command).await?;
        reply::parse_backend_stat(&reply, backend).map_err(|e| self.reply_error(&command, e))
    }

    /// Every server of every backend with its state and weights, in one command (`show
    /// servers state`), on a connection of its own (the health poll's).
    pub async fn all_servers_state(&self) -> Result<Vec<ServerState>, AdminError> {
        const COMMAND: &str = "show servers state";
        let reply = self.command_apart(COMMAND).await?;
        reply::parse_servers_state(&reply).map_err(|e| self.reply_error(COMMAND, e))
    }

    /// Sets the weight of `backend/server` (`set weight`); HAProxy accepts 0..=256.
    pub async fn set_weight(
        &self,
        backend: &str,
        server: &str,
        weight: u32,
    ) -> Result<(), AdminError> {
        let command = format!("set weight {backend}/{server} {weight}");
        self.check_name(&command, "backend", backend)?;
        self.check_name(&command, "server", server)?;
        self.mutate(&command).await
    }

    /// Sets the administrative state of `backend/server` (`set server ... state`).
    pub async fn set_server_state(
        &self,
        backend: &str,
        server: &str,
        state: ServerAdminState,
    ) -> Result<(), AdminError> {
        let command = format!("set server {backend}/{server} state {}", state.as_str());
        self.check_name(&command, "backend", backend)?;
        self.check_name(&command, "server", server)?;
        self.mutate(&command).await
    }
}
