//! The control socket: a unix-socket server speaking the JSON-lines [`protocol`].
//!
//! The server takes its listener and a shutdown future, so it runs as well inside a test
//! as in the agent. It caps concurrent connections (a connection over the cap gets one
//! error line and is closed), bounds every request line, the time to send it and the time
//! to take a reply, records the peer credentials of each connection (for the access check
//! of [`crate::access`] and the journal), and on shutdown stops accepting and gives open
//! connections [`DRAIN_GRACE`] to finish. The socket is created with its final mode (the
//! umask is tightened while binding), so it is never reachable by more users than meant.
//!
//! [`protocol`]: crate::protocol

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

use crate::protocol::{self, Command, Reply};
use crate::requester::Requester;

/// Time open connections get to finish when the server shuts down.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Longest wait for the user database when looking up a peer's groups; past it the peer
/// is judged by its uid and primary gid only.
pub const GROUP_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds of the control socket.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Longest request line, bytes.
    pub max_line: usize,
    /// Time to receive one request line.
    pub read_timeout: Duration,
    /// Whether to look up the peers' groups in the user database.
    pub groups: GroupLookup,
}

/// Whether connections look up the groups the user database lists for the peer's uid: only
/// needed when the access lists name gids, and worth avoiding otherwise (a directory
/// service that hangs would slow every connection). Shared, so SIGHUP can turn it on.
#[derive(Debug, Clone, Default)]
pub struct GroupLookup(Arc<AtomicBool>);

impl GroupLookup {
    pub fn new(enabled: bool) -> GroupLookup {
        GroupLookup(Arc::new(AtomicBool::new(enabled)))
    }

    pub fn set(&self, enabled: bool) {
        self.0.store(enabled, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request on its way to the engine, with who sent it and where the answer goes.
#[derive(Debug)]
pub struct Envelope {
    pub command: Command,
    pub requester: Requester,
    pub reply: oneshot::Sender<Reply>,
}

/// Binds the control socket at `path` with `mode` and optional group: a stale socket file
/// left by a previous run is replaced, a live one (another agent answering) is an error.
pub async fn bind(path: &Path, mode: u32, group: Option<&str>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another running agent", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // The socket file gets its mode from the umask: create it owner-only, then open it up
    // to the group (after the group is set), never wider than configured in between.
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound?;
    set_mode_group(path, mode, group)?;
    Ok(listener)
}

/// Gives the socket at `path` its group (if any) and then its mode; also used when SIGHUP
/// brings a new `socket_mode` or `socket_group`.
pub fn set_mode_group(path: &Path, mode: u32, group: Option<&str>) -> io::Result<()> {
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other(format!("no group named {group:?}")))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::other)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// How connections arrive and who is on the other end: the unix socket (peer credentials)
/// or TLS (the verified certificate's name).
pub trait Transport: Send + Sync + 'static {
    /// What `accept` yields before any handshake.
    type Raw: Send + 'static;
    /// The established stream requests are read from.
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Raw>> + Send;
    /// Finishes the connection (handshake) and names who is on it; runs in the
    /// connection's own task, bounded by the read timeout.
    fn establish(
        &self,
        raw: Self::Raw,
    ) -> impl Future<Output = io::Result<(Self::Stream, Requester)>> + Send + 'static;
    /// A short refusal written on a connection over the cap (best effort).
    fn refuse(raw: Self::Raw, message: String) -> impl Future<Output = ()> + Send + 'static;
}

/// The local control socket; `groups` says whether peers' groups are looked up.
pub struct UnixTransport {
    pub listener: UnixListener,
    pub groups: GroupLookup,
}

impl Transport for UnixTransport {
    type Raw = UnixStream;
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(s, _)| s)
    }

    fn establish(
        &self,
        raw: UnixStream,
    ) -> impl Future<Output = io::Result<(UnixStream, Requester)>> + Send + 'static {
        let groups = self.groups.clone();
        async move {
            let who = requester(&raw, &groups).await;
            Ok((raw, who))
        }
    }

    async fn refuse(raw: UnixStream, message: String) {
        let mut framed = Framed::new(raw, LinesCodec::new());
        let reply = Reply::error(message, serde_json::Value::Null);
        let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(reply.to_line())).await;
    }
}

/// Serves the unix control socket until `shutdown` completes, then drains.
pub async fn serve(
    listener: UnixListener,
    limits: Limits,
    engine: mpsc::Sender<Envelope>,
    shutdown: impl Future<Output = ()>,
) {
    let transport = UnixTransport {
        listener,
        groups: limits.groups.clone(),
    };
    serve_on(transport, limits, engine, shutdown).await
}

/// Serves connections of any transport until `shutdown` completes, then drains.
pub async fn serve_on<T: Transport>(
    transport: T,
    limits: Limits,
    engine: mpsc::Sender<Envelope>,
    shutdown: impl Future<Output = ()>,
) {
    let transport = Arc::new(transport);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = transport.accept() => {
                let raw = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let engine = engine.clone();
                        let limits = limits.clone();
                        let establish = transport.establish(raw);
                        tasks.spawn(async move {
                            match tokio::time::timeout(limits.read_timeout, establish).await {
                                Ok(Ok((stream, who))) => serve_stream(stream, who, limits, engine).await,
                                Ok(Err(e)) => tracing::info!("connection refused: {e}"),
                                Err(_) => tracing::info!("connection refused: handshake timed out"),
                            }
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let max = limits.max_connections;
                        tasks.spawn(T::refuse(
                            raw,
                            format!("too many control connections (at most {max}); try again"),
                        ));
                    }
                }
            }
        }
    }
    drop(transport);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("{} control connections cut at shutdown", tasks.len());
        tasks.abort_all();
    }
}

/// The peer credentials of the connection, and, when `groups` is on, the groups the user
/// database lists for its uid (looked up off the async thread, at most
/// [`GROUP_LOOKUP_TIMEOUT`]; the lookup may go to NSS).
async fn requester(stream: &UnixStream, groups: &GroupLookup) -> Requester {
    let cred = stream.peer_cred().ok();
    let uid = cred.map(|c| c.uid());
    let groups = match uid.filter(|_| groups.enabled()) {
        Some(uid) => {
            let lookup = tokio::task::spawn_blocking(move || crate::access::user_groups(uid));
            match tokio::time::timeout(GROUP_LOOKUP_TIMEOUT, lookup).await {
                Ok(found) => found.unwrap_or_default(),
                Err(_) => {
                    tracing::warn!(uid, "the user database did not answer within {GROUP_LOOKUP_TIMEOUT:?}; judging the peer by uid and gid only");
                    vec![]
                }
            }
        }
        None => vec![],
    };
    Requester::Local {
        uid,
        gid: cred.map(|c| c.gid()),
        pid: cred.and_then(|c| c.pid()),
        groups,
    }
}

/// Serves JSON-lines requests on any stream (the unix socket, or a TLS connection of a
/// peer or remote client) for `who`, until the client closes or breaks a bound.
pub async fn serve_stream<S>(
    stream: S,
    who: Requester,
    limits: Limits,
    engine: mpsc::Sender<Envelope>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(limits.max_line));
    loop {
        let line = match tokio::time::timeout(limits.read_timeout, framed.next()).await {
            Err(_) => {
                let msg = format!(
                    "no complete request line within {} ms; closing",
                    limits.read_timeout.as_millis()
                );
                let _ = send(&mut framed, Reply::error(msg, serde_json::Value::Null)).await;
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(LinesCodecError::MaxLineLengthExceeded))) => {
                let msg = format!(
                    "request line longer than {} bytes; closing",
                    limits.max_line
                );
                let _ = send(&mut framed, Reply::error(msg, serde_json::Value::Null)).await;
                return;
            }
            Ok(Some(Err(LinesCodecError::Io(e)))) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let msg = "request line is not UTF-8; closing";
                    let _ = send(&mut framed, Reply::error(msg, serde_json::Value::Null)).await;
                }
                return;
            }
            Ok(Some(Ok(line))) => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match protocol::decode(&line) {
            Err(e) => Reply::error(e.to_string(), serde_json::json!({ "step": "request" })),
            Ok(command) => {
                let (tx, rx) = oneshot::channel();
                let envelope = Envelope {
                    command,
                    requester: who.clone(),
                    reply: tx,
                };
                if engine.send(envelope).await.is_err() {
                    Reply::error("the agent is shutting down", serde_json::Value::Null)
                } else {
                    rx.await.unwrap_or_else(|_| {
                        Reply::error("the agent dropped the request", serde_json::Value::Null)
                    })
                }
            }
        };
        // A client that does not take its reply loses the connection, not a permit forever.
        match tokio::time::timeout(limits.read_timeout, send(&mut framed, reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

async fn send<S>(framed: &mut Framed<S, LinesCodec>, reply: Reply) -> Result<(), LinesCodecError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    framed.send(reply.to_line()).await
}
