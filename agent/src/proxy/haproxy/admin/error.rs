//! [`AdminError`]: a failed admin-socket operation, naming the socket and the command.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::proxy::haproxy::reply::ReplyError;

/// A failed admin-socket operation. Every variant names the socket and the command (the
/// command line only, never a payload); HAProxy's own text is kept where it answered.
#[derive(Debug, Error)]
pub enum AdminError {
    /// An argument that the CLI would misread; nothing was sent.
    #[error("haproxy admin {}: `{command}`: invalid {what} {value:?}: {reason}", path.display())]
    InvalidArgument {
        /// The admin socket.
        path: PathBuf,
        /// The command's first two words, e.g. `set map` (the rest may embed the value).
        command: String,
        /// Which argument: `map`, `key`, `value`, ...
        what: &'static str,
        /// The argument as given, clipped to a bounded length.
        value: String,
        /// Why the CLI would misread it, e.g. a space or a `;` in a key.
        reason: &'static str,
    },
    /// The socket could not be reached.
    #[error("haproxy admin {}: `{command}`: cannot connect: {source}", path.display())]
    Connect {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// The connect error (missing socket, connection refused, permission denied).
        source: io::Error,
    },
    /// Writing the command or reading the reply failed.
    #[error("haproxy admin {}: `{command}`: {source}", path.display())]
    Io {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// The error of the write or read.
        source: io::Error,
    },
    /// HAProxy stayed silent for longer than the client's timeout.
    #[error("haproxy admin {}: `{command}`: no progress within {timeout:?}", path.display())]
    Timeout {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// The client's timeout without progress (default
        /// [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT), 5 seconds).
        timeout: Duration,
    },
    /// HAProxy answered with an error text.
    #[error("haproxy admin {}: `{command}`: HAProxy refused it: {reply}", path.display())]
    Refused {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// HAProxy's error text, trimmed and clipped to a bounded length.
        reply: String,
    },
    /// A command with payload was not executed because command plus payload exceeded
    /// `tune.bufsize`: HAProxy 2.6 answers nothing or resets the connection, 3.0 and 3.2
    /// answer "The command (line) is too big for the buffer size".
    #[error(
        "haproxy admin {}: `{command}`: payload of {payload_bytes} bytes dropped by HAProxy \
         ({}; command and payload must fit in tune.bufsize)",
        path.display(),
        reply.as_deref().unwrap_or("empty reply or reset")
    )]
    PayloadDropped {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// Size of the payload sent after the command line, in bytes.
        payload_bytes: usize,
        /// HAProxy's text when it said why (3.0+), trimmed; `None` for an empty reply or a
        /// reset (2.6).
        reply: Option<String>,
    },
    /// The connection reached a worker that is stopping (an old one, after a reload), also
    /// on a new connection.
    #[error("haproxy admin {}: `{command}`: answered by worker {pid}, which is stopping", path.display())]
    WorkerStopping {
        /// The admin socket.
        path: PathBuf,
        /// The first command of the exchange.
        command: String,
        /// PID of the stopping worker.
        pid: u32,
    },
    /// A reply in a format this client does not understand.
    #[error("haproxy admin {}: `{command}`: {source}", path.display())]
    UnexpectedReply {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// What was wrong with the reply.
        source: ReplyError,
    },
    /// A reply larger than [`MAX_REPLY_BYTES`](super::MAX_REPLY_BYTES).
    #[error("haproxy admin {}: `{command}`: reply exceeds {limit} bytes", path.display())]
    ReplyTooLarge {
        /// The admin socket.
        path: PathBuf,
        /// The command line (never its payload).
        command: String,
        /// The largest reply accepted, in bytes.
        limit: usize,
    },
    /// `show map` does not list the map (it must be named as in the configuration).
    #[error("haproxy admin {}: map {map} is not loaded (not listed by `show map`)", path.display())]
    MapNotFound {
        /// The admin socket.
        path: PathBuf,
        /// The map's file path, as named on the CLI.
        map: String,
    },
    /// One map entry alone does not fit in a payload chunk; nothing was sent.
    #[error(
        "haproxy admin {}: replace map {map}: entry #{index} ({bytes} bytes with the command) \
         exceeds the chunk limit of {limit} bytes",
        path.display()
    )]
    EntryTooLong {
        /// The admin socket.
        path: PathBuf,
        /// The map's file path, as named on the CLI.
        map: String,
        /// Position of the entry in the map, from 0.
        index: usize,
        /// Size of the chunk holding only that entry, command line included, in bytes.
        bytes: usize,
        /// The client's chunk limit, in bytes (default
        /// [`MAX_CHUNK_BYTES`](super::MAX_CHUNK_BYTES), 8 KiB).
        limit: usize,
    },
    /// After filling a prepared version, HAProxy holds a different number of entries than
    /// were sent; the version was not committed.
    #[error(
        "haproxy admin {}: replace map {map}: version {version} holds {found} new entries, \
         {expected} were sent; not committed",
        path.display()
    )]
    EntryCountMismatch {
        /// The admin socket.
        path: PathBuf,
        /// The map's file path, as named on the CLI.
        map: String,
        /// The prepared version that was filled and left uncommitted.
        version: u64,
        /// Entries sent.
        expected: u64,
        /// Entries the map gained while the version was filled, by HAProxy's count (may
        /// be negative if entries went away meanwhile).
        found: i128,
    },
}

impl AdminError {
    /// True when the connection was closed or reset under the exchange: a kept connection
    /// that HAProxy closed meanwhile (`stats timeout`, a worker that exited).
    pub(super) fn connection_lost(&self) -> bool {
        matches!(self, AdminError::Io { source, .. }
            if source.kind() == io::ErrorKind::UnexpectedEof
                || crate::proxy::haproxy::oneshot::is_reset(source))
    }
}
