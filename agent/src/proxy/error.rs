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
    CheckFailed {
        /// The checker's error lines, less its banner; or, when it printed none, the program
        /// and its exit status.
        output: String,
    },
    /// The checker ran longer than `timeout` and was killed.
    #[error("config check failed:\n{} did not finish within {timeout:?}", program.display())]
    CheckTimedOut {
        /// The checker's executable.
        program: PathBuf,
        /// How long it was given before it was killed.
        timeout: Duration,
    },
    /// A program (the checker) could not be started.
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The executable that could not be started.
        program: PathBuf,
        /// Why the operating system refused to start it.
        source: io::Error,
    },
    /// The proxy could not be reached: its socket is missing or refuses connections, or no
    /// master process runs. Nothing was sent.
    #[error("runtime API: {source}")]
    Unreachable {
        /// What could not be reached, and why: the socket's connect error, or the missing
        /// master process.
        source: Cause,
    },
    /// The proxy answered the command with its own error text, `reply` (e.g. `Key not
    /// found.`); the command was not applied.
    #[error("runtime API: {source}")]
    Refused {
        /// The proxy's error text, as it answered.
        reply: String,
        /// The client's error, naming the socket and the command refused, with `reply`.
        source: Cause,
    },
    /// The proxy dropped a command's payload (empty reply or reset), usually because it did
    /// not fit in the proxy's buffer.
    #[error("runtime API: {source}")]
    PayloadDropped {
        /// The client's error, naming the socket and the command whose payload was lost.
        source: Cause,
    },
    /// The proxy stayed silent for longer than the command timeout.
    #[error("runtime API: {source}")]
    Timeout {
        /// The client's error, naming the command and how long it waited.
        source: Cause,
    },
    /// The connection failed during the exchange: a mutating command may or may not have
    /// been applied.
    #[error("runtime API: {source}")]
    ConnectionLost {
        /// The client's error, naming the command in flight and the I/O error.
        source: Cause,
    },
    /// A reply this client does not understand, or one larger than it accepts.
    #[error("runtime API: {source}")]
    UnexpectedReply {
        /// The client's error, naming the command and what was wrong with its reply.
        source: Cause,
    },
    /// The proxy has no room left for the entries sent (Nginx's Lua dict answered 507); it
    /// evicted nothing, and the entries before the one refused were written.
    #[error("runtime API: {source}")]
    Full {
        /// The client's error, naming the request and the proxy's words.
        source: Cause,
    },
    /// An argument the proxy would misread, or an entry too long to send; nothing was sent.
    #[error("runtime API: {source}")]
    InvalidArgument {
        /// The client's error, naming the argument or entry and why it cannot be sent.
        source: Cause,
    },
    /// The running proxy has not loaded the map asked for (a reload would load it).
    #[error("runtime API: {source}")]
    MapNotLoaded {
        /// The client's error, naming the map the proxy has not loaded.
        source: Cause,
    },
    /// A listener the proxy feeds beside the agent could not be bound (Nginx: the socket
    /// receiving access-log lines).
    #[error("runtime API: binding the access-log socket {}: {source}", path.display())]
    Listener {
        /// The socket path that could not be bound.
        path: PathBuf,
        /// Why binding failed.
        source: io::Error,
    },
    /// The reload was not asked for: the proxy could not be reached or signalled, or its
    /// state could not be read first. Nothing changed.
    #[error("reload failed: {source}")]
    ReloadNotSent {
        /// What failed before the reload was asked for: reaching or signalling the proxy, or
        /// reading its state.
        source: Cause,
    },
    /// The proxy did not take the new config: its master refused it (the previous config
    /// keeps serving) or died while trying.
    #[error("reload failed: {source}")]
    ReloadRefused {
        /// The master's refusal, with the proxy's own words (master-CLI reply or error-log
        /// lines).
        source: Cause,
    },
    /// The reload was asked for but not confirmed in time: which config serves is unknown.
    #[error("reload failed: {source}")]
    ReloadUnconfirmed {
        /// What was still missing when the wait for confirmation ended.
        source: Cause,
    },
    /// The proxy cannot do `what` at all.
    #[error("{what} is not supported by {proxy}")]
    Unsupported {
        /// The operation asked for, e.g. `draining servers`.
        what: &'static str,
        /// The proxy's short name ([`Proxy::name`](super::Proxy::name)).
        proxy: &'static str,
    },
}
