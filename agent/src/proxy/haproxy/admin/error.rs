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
        path: PathBuf,
        command: String,
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The socket could not be reached.
    #[error("haproxy admin {}: `{command}`: cannot connect: {source}", path.display())]
    Connect {
        path: PathBuf,
        command: String,
        source: io::Error,
    },
    /// Writing the command or reading the reply failed.
    #[error("haproxy admin {}: `{command}`: {source}", path.display())]
    Io {
        path: PathBuf,
        command: String,
        source: io::Error,
    },
    /// HAProxy stayed silent for longer than the client's timeout.
    #[error("haproxy admin {}: `{command}`: no progress within {timeout:?}", path.display())]
    Timeout {
        path: PathBuf,
        command: String,
        timeout: Duration,
    },
    /// HAProxy answered with an error text.
    #[error("haproxy admin {}: `{command}`: HAProxy refused it: {reply}", path.display())]
    Refused {
        path: PathBuf,
        command: String,
        reply: String,
    },
    /// A command with payload got zero bytes back or a reset: HAProxy dropped it, usually
    /// because command plus payload exceeded `tune.bufsize`.
    #[error(
        "haproxy admin {}: `{command}`: payload of {payload_bytes} bytes dropped by HAProxy \
         (empty reply or reset; command and payload must fit in tune.bufsize)",
        path.display()
    )]
    PayloadDropped {
        path: PathBuf,
        command: String,
        payload_bytes: usize,
    },
    /// A reply in a format this client does not understand.
    #[error("haproxy admin {}: `{command}`: {source}", path.display())]
    UnexpectedReply {
        path: PathBuf,
        command: String,
        source: ReplyError,
    },
    /// A reply larger than [`MAX_REPLY_BYTES`](super::MAX_REPLY_BYTES).
    #[error("haproxy admin {}: `{command}`: reply exceeds {limit} bytes", path.display())]
    ReplyTooLarge {
        path: PathBuf,
        command: String,
        limit: usize,
    },
    /// `show map` does not list the map (it must be named as in the configuration).
    #[error("haproxy admin {}: map {map} is not loaded (not listed by `show map`)", path.display())]
    MapNotFound { path: PathBuf, map: String },
    /// One map entry alone does not fit in a payload chunk; nothing was sent.
    #[error(
        "haproxy admin {}: replace map {map}: entry #{index} ({bytes} bytes with the command) \
         exceeds the chunk limit of {limit} bytes",
        path.display()
    )]
    EntryTooLong {
        path: PathBuf,
        map: String,
        index: usize,
        bytes: usize,
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
        path: PathBuf,
        map: String,
        version: u64,
        expected: u64,
        found: i128,
    },
}
