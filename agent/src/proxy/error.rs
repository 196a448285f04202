//! [`ProxyError`]: how a call into a proxy failed. The variant is the kind a caller branches
//! on (unreachable, refused with the proxy's reply, timed out, a reload refused or left
//! unconfirmed, ...); the error of the client underneath (the admin-socket or master-CLI
//! error naming socket and command, an I/O error, the Nginx master's log lines) is kept as
//! the `source`, so a human reads the whole chain.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The error under a [`ProxyError`]: what the proxy's client saw, in its own type.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the proxy, by kind, with the proxy's own words in its source.
///
/// Every runtime kind prints as `runtime API: <source>`, every reload kind as
/// `reload failed: <source>`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy's checker refused the config; `output` is the checker's own words.
    #[error("config check failed:\n{output}")]
    CheckFailed { output: String },
    /// The checker ran longer than `timeout` and was killed.
    #[error("config check failed:\n{} did not finish within {timeout:?}", program.display())]
    CheckTimedOut { program: PathBuf, timeout: Duration },
    /// A program (the checker) could not be started.
    #[error("cannot run {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },
    /// The proxy could not be reached: its socket is missing or refuses connections, or no
    /// master process runs. Nothing was sent.
    #[error("runtime API: {source}")]
    Unreachable { source: Cause },
    /// The proxy answered the command with its own error text, `reply` (e.g. `Key not
    /// found.`); the command was not applied.
    #[error("runtime API: {source}")]
    Refused { reply: String, source: Cause },
    /// The proxy dropped a command's payload (empty reply or reset), usually because it did
    /// not fit in the proxy's buffer.
    #[error("runtime API: {source}")]
    PayloadDropped { source: Cause },
    /// The proxy stayed silent for longer than the command timeout.
    #[error("runtime API: {source}")]
    Timeout { source: Cause },
    /// The connection failed during the exchange: a mutating command may or may not have
    /// been applied.
    #[error("runtime API: {source}")]
    ConnectionLost { source: Cause },
    /// A reply this client does not understand, or one larger than it accepts.
    #[error("runtime API: {source}")]
    UnexpectedReply { source: Cause },
    /// An argument the proxy would misread, or an entry too long to send; nothing was sent.
    #[error("runtime API: {source}")]
    InvalidArgument { source: Cause },
    /// The running proxy has not loaded the map asked for (a reload would load it).
    #[error("runtime API: {source}")]
    MapNotLoaded { source: Cause },
    /// A listener the proxy feeds beside the agent could not be bound (Nginx: the socket
    /// receiving access-log lines).
    #[error("runtime API: binding the access-log socket {}: {source}", path.display())]
    Listener { path: PathBuf, source: io::Error },
    /// The reload was not asked for: the proxy could not be reached or signalled, or its
    /// state could not be read first. Nothing changed.
    #[error("reload failed: {source}")]
    ReloadNotSent { source: Cause },
    /// The proxy did not take the new config: its master refused it (the previous config
    /// keeps serving) or died while trying.
    #[error("reload failed: {source}")]
    ReloadRefused { source: Cause },
    /// The reload was asked for but not confirmed in time: which config serves is unknown.
    #[error("reload failed: {source}")]
    ReloadUnconfirmed { source: Cause },
    /// The proxy cannot do `what` at all.
    #[error("{what} is not supported by {proxy}")]
    Unsupported {
        what: &'static str,
        proxy: &'static str,
    },
}
