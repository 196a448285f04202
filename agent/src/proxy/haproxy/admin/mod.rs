//! Async client for the HAProxy admin (stats) socket: map entries, versioned map
//! replacement, server weight and state.
//!
//! Commands go over one persistent connection in interactive mode (`session`): the
//! commands of one exchange are written together and answered in one round trip, and every
//! exchange ends with `show info`, so a connection that a reload left with an old worker is
//! noticed, closed and the exchange sent again to the current worker. Payload commands (the
//! versioned replacement of a map) and the background polls (server states for health,
//! backend counters for the post-switch watch) use a connection of their own (`oneshot`:
//! write `<command>\n` and payload, half-close, read to EOF), so they never wait for a
//! change, nor a change for them. Arguments are validated before anything is sent
//! (`args`), because the CLI splits on spaces and treats `;`, `\`, `#` and quotes
//! specially. The commands are grouped by what they act on: [`maps`] (listing, reading and
//! per-key edits), [`transaction`] (versioned replacement of a whole map, in chunks) and
//! [`servers`] (backends, server states and weights, counters).

mod args;
mod error;
pub mod maps;
pub mod servers;
mod session;
pub mod transaction;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::Mutex;

use self::session::Session;
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

/// The command that ends every exchange on the persistent connection: its `Stopping:`
/// field says whether the worker that answered is an old one.
const SENTINEL: &str = "show info";

/// What an exchange on the persistent connection reads back.
enum Reading<'a> {
    /// One whole reply per command.
    Replies(&'a [String]),
    /// The listing of each `show map` command, parsed as it arrives.
    Maps(&'a [String]),
}

/// What [`Reading`] read.
enum Read {
    Replies(Vec<String>),
    Maps(Vec<Vec<(String, String)>>),
}

/// Client for one HAProxy admin socket (`stats socket ... level admin`). Clones share the
/// persistent connection.
#[derive(Debug, Clone)]
pub struct AdminClient {
    path: PathBuf,
    timeout: Duration,
    max_chunk_bytes: usize,
    /// The persistent connection, `None` until the first exchange and after a failed one.
    /// An exchange takes it out while it runs: one dropped halfway (cancelled) never leaves
    /// unread replies behind for the next.
    session: Arc<Mutex<Option<Session>>>,
}

impl AdminClient {
    /// A client for the socket at `path`, with [`DEFAULT_TIMEOUT`] and [`MAX_CHUNK_BYTES`].
    /// Nothing is connected until a command is sent.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AdminClient {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            max_chunk_bytes: MAX_CHUNK_BYTES,
            session: Arc::new(Mutex::new(None)),
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
        let command = command.trim_end_matches('\n').to_owned();
        let mut replies = self.exchange(std::slice::from_ref(&command)).await?;
        Ok(replies.pop().unwrap_or_default())
    }

    /// Sends `commands` together on the persistent connection and returns their replies in
    /// order: one round trip for all of them. A command holding a line break is refused
    /// before anything is sent (its replies would be miscounted).
    pub async fn exchange(&self, commands: &[String]) -> Result<Vec<String>, AdminError> {
        let label = commands.first().map_or("", String::as_str);
        let mut request = String::new();
        for command in commands {
            if command.contains('\n') {
                return Err(self.invalid(command, "command", command, "holds a line break"));
            }
            request.push_str(command);
            request.push('\n');
        }
        match self
            .on_session(label, request.as_bytes(), Reading::Replies(commands))
            .await?
        {
            Read::Replies(replies) => Ok(replies),
            Read::Maps(_) => unreachable!("replies were asked for"),
        }
    }

    /// Sends one command on a connection of its own (the one-shot exchange) and returns the
    /// whole reply: for the background polls, which must not wait for a change.
    pub(super) async fn command_apart(&self, command: &str) -> Result<String, AdminError> {
        let mut stream = self.open(command, &[command.as_bytes(), b"\n"]).await?;
        let bytes = read_to_end(&mut stream, self.timeout, MAX_REPLY_BYTES)
            .await
            .map_err(|e| self.exchange_error(command, e))?;
        Ok(into_string(bytes))
    }

    /// Writes `request` (whole command lines) on the persistent connection, lets `read`
    /// take the replies, then reads the sentinel's. A connection that was kept from before
    /// and turns out closed (HAProxy's `stats timeout`), or whose worker is stopping (a
    /// reload), is replaced by a new one and the request sent again, once. `label` names
    /// the request in errors.
    async fn on_session(
        &self,
        label: &str,
        request: &[u8],
        reading: Reading<'_>,
    ) -> Result<Read, AdminError> {
        let mut slot = self.session.lock().await;
        let mut request = request.to_vec();
        request.extend_from_slice(SENTINEL.as_bytes());
        request.push(b'\n');
        for attempt in 0..2 {
            let (mut session, kept) = match slot.take() {
                Some(session) => (session, true),
                None => (
                    Session::open(&self.path, self.timeout)
                        .await
                        .map_err(|e| self.exchange_error(label, e))?,
                    false,
                ),
            };
            let outcome = match session.write(&request, self.timeout).await {
                Ok(()) => self.read(&mut session, &reading).await,
                Err(e) => Err(self.exchange_error(label, e)),
            };
            let value = match outcome {
                Ok(value) => value,
                Err(e) if kept && attempt == 0 && e.connection_lost() => continue,
                Err(e) => return Err(e),
            };
            let info = session
                .reply(self.timeout, MAX_REPLY_BYTES)
                .await
                .map_err(|e| self.exchange_error(SENTINEL, e))?;
            let info = reply::parse_show_info(&into_string(info))
                .map_err(|e| self.reply_error(SENTINEL, e))?;
            if info.stopping {
                tracing::debug!(
                    worker = info.pid,
                    "admin socket: the worker of this connection is stopping; reconnecting"
                );
                if attempt == 0 {
                    continue;
                }
                return Err(AdminError::WorkerStopping {
                    path: self.path.clone(),
                    command: label.to_owned(),
                    pid: info.pid,
                });
            }
            *slot = Some(session);
            return Ok(value);
        }
        unreachable!("the second attempt returns")
    }

    /// Reads the replies `reading` asks for from `session`.
    async fn read(&self, session: &mut Session, reading: &Reading<'_>) -> Result<Read, AdminError> {
        match reading {
            Reading::Replies(commands) => {
                let mut replies = Vec::with_capacity(commands.len());
                for command in commands.iter() {
                    let reply = session
                        .reply(self.timeout, MAX_REPLY_BYTES)
                        .await
                        .map_err(|e| self.exchange_error(command, e))?;
                    replies.push(into_string(reply));
                }
                Ok(Read::Replies(replies))
            }
            Reading::Maps(commands) => {
                let mut maps = Vec::with_capacity(commands.len());
                for command in commands.iter() {
                    maps.push(self.read_map_listing(session, command).await?);
                }
                Ok(Read::Maps(maps))
            }
        }
    }

    /// Which worker answers a new connection to the admin socket, and its version (`show
    /// info`).
    pub async fn info(&self) -> Result<reply::ProcessInfo, AdminError> {
        const COMMAND: &str = "show info";
        let reply = self.command_apart(COMMAND).await?;
        reply::parse_show_info(&reply).map_err(|e| self.reply_error(COMMAND, e))
    }

    /// Closes the persistent connection (after a reload: it would keep the old worker
    /// alive); the next exchange opens a new one.
    pub async fn disconnect(&self) {
        self.session.lock().await.take();
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
