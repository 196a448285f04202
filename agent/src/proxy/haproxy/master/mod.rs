//! Async client for the HAProxy master CLI (`haproxy -W -S <socket>`): the process table
//! and reloads confirmed by reading it back.
//!
//! Like the admin socket, every command uses its own connection: write, half-close (the
//! master CLI otherwise keeps the connection open), read to EOF.
//! Asking for a reload and confirming it from the process table is in `reload`.

mod reload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::oneshot::{into_string, open_oneshot, read_to_end, Exchange};
use super::reply::{self, ProcEpoch, ProcTable, ReplyError};

pub use self::reload::{ReloadOutcome, RELOAD_POLL_MAX, RELOAD_POLL_START};

/// Default for [`MasterClient::timeout`]: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest reply accepted from the master CLI, in bytes (1 MiB; 2.7+ `reload` replies carry
/// the startup logs).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// A failed master-CLI operation. Every variant names the socket; HAProxy's text or the
/// process table is kept where there is one.
#[derive(Debug, Error)]
pub enum MasterError {
    /// The socket could not be reached. For `reload`, the reload was NOT sent.
    #[error("haproxy master {}: `{command}`: cannot connect: {source}", path.display())]
    Connect {
        /// The master CLI socket.
        path: PathBuf,
        /// The command line sent.
        command: String,
        /// The connect error (missing socket, connection refused, permission denied).
        source: std::io::Error,
    },
    /// Writing the command or reading the reply failed.
    #[error("haproxy master {}: `{command}`: {source}", path.display())]
    Io {
        /// The master CLI socket.
        path: PathBuf,
        /// The command line sent.
        command: String,
        /// The error of the write or read.
        source: std::io::Error,
    },
    /// The master stayed silent for longer than the client's timeout.
    #[error("haproxy master {}: `{command}`: no progress within {timeout:?}", path.display())]
    Timeout {
        /// The master CLI socket.
        path: PathBuf,
        /// The command line sent.
        command: String,
        /// The client's timeout without progress (default [`DEFAULT_TIMEOUT`], 5 seconds).
        timeout: Duration,
    },
    /// A reply above [`MAX_REPLY_BYTES`].
    #[error("haproxy master {}: `{command}`: reply exceeds {limit} bytes", path.display())]
    ReplyTooLarge {
        /// The master CLI socket.
        path: PathBuf,
        /// The command line sent.
        command: String,
        /// The largest reply accepted, in bytes ([`MAX_REPLY_BYTES`]).
        limit: usize,
    },
    /// A reply this client does not understand, or an error text of the master.
    #[error("haproxy master {}: `{command}`: {source}", path.display())]
    UnexpectedReply {
        /// The master CLI socket.
        path: PathBuf,
        /// The command line sent.
        command: String,
        /// What was wrong with the reply, or the master's error text.
        source: ReplyError,
    },
    /// The master tried to reload and failed (bad configuration, worker did not start): the
    /// previous workers keep serving.
    #[error(
        "haproxy master {}: reload failed, previous workers keep serving \
         (reloads {}, failed {}){}",
        path.display(), table.reloads, table.failed,
        reply.as_deref().map(|r| format!("; HAProxy said: {}", r.trim())).unwrap_or_default()
    )]
    ReloadFailed {
        /// The master CLI socket.
        path: PathBuf,
        /// The process table read after the failure.
        table: ProcTable,
        /// HAProxy's reply to `reload` (2.7+ only; cut to a bounded size).
        reply: Option<String>,
    },
    /// Another reload kept the master busy until the deadline ("Another reload is still in
    /// progress." on 3.2, refused or reset connections on 2.6 and 3.0, which a master that
    /// is down also gives): ours was not done.
    #[error(
        "haproxy master {}: no reload possible for {waited:?} (another reload in progress, or \
         the master not accepting connections), ours was not done; last seen: {last}",
        path.display()
    )]
    Busy {
        /// The master CLI socket.
        path: PathBuf,
        /// How long the client retried.
        waited: Duration,
        /// The master's last answer, or the last connection error.
        last: String,
    },
    /// The reload was sent but neither success nor failure was seen before the deadline.
    #[error(
        "haproxy master {}: reload sent but not confirmed within {waited:?}; last seen: {last}",
        path.display()
    )]
    ReloadUnconfirmed {
        /// The master CLI socket.
        path: PathBuf,
        /// How long the client waited for the outcome after sending the reload.
        waited: Duration,
        /// The last process table (debug form) or error seen while polling.
        last: String,
        /// HAProxy's reply to `reload` (2.7+ only; cut to a bounded size).
        reply: Option<String>,
    },
}

/// Client for one HAProxy master CLI socket.
#[derive(Debug, Clone)]
pub struct MasterClient {
    path: PathBuf,
    timeout: Duration,
}

impl MasterClient {
    /// A client for the master socket at `path`, with [`DEFAULT_TIMEOUT`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        MasterClient {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets how long the master may stay silent: the bound on connecting, on writing, and on
    /// each wait for more reply bytes.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The master socket path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The silence bound (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one raw command line and returns the whole reply.
    pub async fn command(&self, command: &str) -> Result<String, MasterError> {
        self.command_within(command, self.timeout).await
    }

    /// The master's process table (`show proc`).
    pub async fn show_proc(&self) -> Result<ProcTable, MasterError> {
        self.show_proc_within(self.timeout).await
    }

    /// The log of the latest (re)load, as the master kept it (`show startup-logs`, 2.7+):
    /// after a failed reload, HAProxy's own ALERT lines. `None` when the master has no such
    /// command (2.6).
    pub async fn startup_logs(&self) -> Result<Option<String>, MasterError> {
        let reply = self.command("show startup-logs").await?;
        if reply.starts_with("Unknown command") {
            return Ok(None);
        }
        Ok(Some(reply::clip(reply.trim_end()).to_owned()))
    }

    /// The current generation (master PID and reload counter). Compare two epochs to notice
    /// reloads made by others, e.g. a `kill -USR2` to the master.
    pub async fn epoch(&self) -> Result<ProcEpoch, MasterError> {
        Ok(self.show_proc().await?.epoch())
    }

    async fn show_proc_within(&self, timeout: Duration) -> Result<ProcTable, MasterError> {
        const COMMAND: &str = "show proc";
        let reply = self.command_within(COMMAND, timeout).await?;
        reply::parse_show_proc(&reply).map_err(|source| MasterError::UnexpectedReply {
            path: self.path.clone(),
            command: COMMAND.to_owned(),
            source,
        })
    }

    async fn command_within(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<String, MasterError> {
        let command = command.trim_end_matches('\n');
        let exchange = async {
            let mut stream =
                open_oneshot(&self.path, &[command.as_bytes(), b"\n"], timeout).await?;
            read_to_end(&mut stream, timeout, MAX_REPLY_BYTES).await
        };
        exchange
            .await
            .map(into_string)
            .map_err(|e| self.exchange_error(command, e, timeout))
    }

    fn exchange_error(&self, command: &str, err: Exchange, timeout: Duration) -> MasterError {
        let (path, command) = (self.path.clone(), command.to_owned());
        match err {
            Exchange::Connect(source) => MasterError::Connect {
                path,
                command,
                source,
            },
            Exchange::Io(source) => MasterError::Io {
                path,
                command,
                source,
            },
            Exchange::Timeout => MasterError::Timeout {
                path,
                command,
                timeout,
            },
            Exchange::TooLarge(limit) => MasterError::ReplyTooLarge {
                path,
                command,
                limit,
            },
        }
    }
}
