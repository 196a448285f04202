//! Async client for the HAProxy admin (stats) socket: map entries, versioned map
//! replacement, server weight and state.
//!
//! Every command uses its own connection (`oneshot`): write `<command>\n` (plus
//! payload), half-close, read the reply to EOF. Arguments are validated before anything is
//! sent (`args`), because the CLI splits on spaces and treats `;`, `\`, `#` and quotes
//! specially. The commands are grouped by what they act on: [`maps`] (listing, reading and
//! per-key edits), [`transaction`] (versioned replacement of a whole map, in chunks) and
//! [`servers`] (backends, server states and weights, counters).

mod args;
mod error;
pub mod maps;
pub mod servers;
pub mod transaction;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::oneshot::{into_string, open_oneshot, read_to_end, Exchange};
use super::reply::{self, ReplyError};

pub use self::error::AdminError;
pub use self::servers::ServerAdminState;
pub use self::transaction::ReplaceStats;

/// Default for [`AdminClient::timeout`]: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default for [`AdminClient::max_chunk_bytes`]: 8 KiB, half of HAProxy's default
/// `tune.bufsize` (16 KiB). A command plus its payload must fit in one buffer, otherwise
/// HAProxy silently drops it (empty reply); the other half is headroom for HAProxy's own use.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024;

/// Largest reply [`AdminClient::command`] accepts, in bytes (64 MiB). Listings of big maps
/// go through [`AdminClient::show_map`], which streams and has no such limit.
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Client for one HAProxy admin socket (`stats socket ... level admin`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    path: PathBuf,
    timeout: Duration,
    max_chunk_bytes: usize,
}

impl AdminClient {
    /// A client for the socket at `path`, with [`DEFAULT_TIMEOUT`] and [`MAX_CHUNK_BYTES`].
    /// Nothing is connected until a command is sent.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AdminClient {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            max_chunk_bytes: MAX_CHUNK_BYTES,
        }
    }

    /// Sets how long HAProxy may stay silent: the bound on connecting, on writing a command,
    /// and on each wait for more reply bytes. A long listing that keeps flowing is never cut.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the most bytes one payload command (command line plus payload) may take. Keep it
    /// at or below half of HAProxy's `tune.bufsize`; above `tune.bufsize`, HAProxy drops the
    /// payload and the call fails with [`AdminError::PayloadDropped`].
    pub fn with_max_chunk_bytes(mut self, bytes: usize) -> Self {
        self.max_chunk_bytes = bytes;
        self
    }

    /// The admin socket path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The silence bound (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The payload command size bound in bytes (default [`MAX_CHUNK_BYTES`]).
    pub fn max_chunk_bytes(&self) -> usize {
        self.max_chunk_bytes
    }

    /// Sends one raw command line (no trailing newline needed) and returns the whole reply.
    /// The command is not validated: callers building it from data should use the typed
    /// methods. Replies above [`MAX_REPLY_BYTES`] fail.
    pub async fn command(&self, command: &str) -> Result<String, AdminError> {
        let command = command.trim_end_matches('\n');
        let mut stream = self.open(command, &[command.as_bytes(), b"\n"]).await?;
        let bytes = read_to_end(&mut stream, self.timeout, MAX_REPLY_BYTES)
            .await
            .map_err(|e| self.exchange_error(command, e))?;
        Ok(into_string(bytes))
    }

    /// Which worker answers the admin socket, and its version (`show info`).
    pub async fn info(&self) -> Result<reply::ProcessInfo, AdminError> {
        const COMMAND: &str = "show info";
        let reply = self.command(COMMAND).await?;
        reply::parse_show_info(&reply).map_err(|e| self.reply_error(COMMAND, e))
    }

    /// Sends a mutating command and expects HAProxy's success reply (exactly `"\n"`).
    pub async fn mutate(&self, command: &str) -> Result<(), AdminError> {
        let reply = self.command(command).await?;
        self.check_mutation(command, &reply)
    }
    /// Connects, writes `parts`, half-closes.
    async fn open(&self, command: &str, parts: &[&[u8]]) -> Result<UnixStream, AdminError> {
        open_oneshot(&self.path, parts, self.timeout)
            .await
            .map_err(|e| self.exchange_error(command, e))
    }

    fn check_mutation(&self, command: &str, reply: &str) -> Result<(), AdminError> {
        reply::check_mutation(reply).map_err(|e| self.reply_error(command, e))
    }

    fn reply_error(&self, command: &str, err: ReplyError) -> AdminError {
        match err {
            ReplyError::Refused { reply } => AdminError::Refused {
                path: self.path.clone(),
                command: command.to_owned(),
                reply,
            },
            other => AdminError::UnexpectedReply {
                path: self.path.clone(),
                command: command.to_owned(),
                source: other,
            },
        }
    }

    fn exchange_error(&self, command: &str, err: Exchange) -> AdminError {
        let (path, command) = (self.path.clone(), command.to_owned());
        match err {
            Exchange::Connect(source) => AdminError::Connect {
                path,
                command,
                source,
            },
            Exchange::Io(source) => AdminError::Io {
                path,
                command,
                source,
            },
            Exchange::Timeout => AdminError::Timeout {
                path,
                command,
                timeout: self.timeout,
            },
            Exchange::TooLarge(limit) => AdminError::ReplyTooLarge {
                path,
                command,
                limit,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_socket_names_path_and_command() {
        let client = AdminClient::new("/nonexistent/admin.sock");
        let err = client.backends().await.unwrap_err();
        assert!(matches!(err, AdminError::Connect { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/admin.sock") && text.contains("show backend"),
            "{text}"
        );
    }
}
