//! The `[remote]` table: the remote API (gRPC over mutual TLS) — where it listens, its
//! certificates (the cluster's by default), the roles of its clients
//! (`[[remote.clients]]`) and its bounds, with their documented defaults. The `grpc`
//! module serves it; `access` judges its callers by the roles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::TlsFiles;
use crate::access::Role;
use crate::requester::Identity;

/// Default most concurrent calls (unary and streams together) of one client identity.
pub const DEFAULT_MAX_STREAMS_PER_CLIENT: usize = 8;
/// Default most concurrent connections to the remote API.
pub const DEFAULT_REMOTE_MAX_CONNECTIONS: usize = 64;
/// Default largest request message, bytes (the JSON-lines protocol's line bound).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default longest a call may take when the client sets no shorter deadline, milliseconds.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 300_000;
/// Default time for the TLS handshake and between HTTP/2 keepalive pings, milliseconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Most `[[remote.clients]]` entries.
pub const MAX_CLIENTS: usize = 10_000;

/// The validated `[remote]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Where the gRPC listener binds (its own address, not the peer listener's).
    pub listen: SocketAddr,
    /// CA that signs the clients, and the server's certificate and key. Default: those of
    /// `[cluster]`.
    pub tls: TlsFiles,
    /// Identity to role (`[[remote.clients]]`); none by default, so nobody may call.
    pub clients: Vec<(Identity, Role)>,
    /// Most concurrent calls of one identity. Default [`DEFAULT_MAX_STREAMS_PER_CLIENT`].
    pub max_streams_per_client: usize,
    /// Most concurrent connections. Default [`DEFAULT_REMOTE_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Largest request message, bytes. Default [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// Longest a call may take (a client's shorter `grpc-timeout` wins). Default
    /// [`DEFAULT_CALL_TIMEOUT_MS`].
    pub call_timeout: Duration,
    /// TLS handshake time, and the HTTP/2 keepalive interval and timeout that drop a dead
    /// client. Default [`DEFAULT_HANDSHAKE_TIMEOUT_MS`].
    pub handshake_timeout: Duration,
}

impl RemoteConfig {
    /// The table without its clients: what the listener was started with, which changes
    /// only with a restart (the clients' roles change on SIGHUP).
    pub fn listener(&self) -> RemoteConfig {
        RemoteConfig {
            clients: Vec::new(),
            ..self.clone()
        }
    }
}

/// `[remote]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    pub(super) listen: String,
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    pub(super) max_streams_per_client: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) call_timeout_ms: Option<u64>,
    pub(super) handshake_timeout_ms: Option<u64>,
}

/// One `[[remote.clients]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    /// `dns:<name>` or `uri:<uri>`.
    pub(super) identity: String,
    /// `read`, `operate` or `admin`.
    pub(super) role: Role,
}
