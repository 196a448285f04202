//! The JSON-lines [`protocol`] on one connection of the control socket or the peer
//! listener: each request line is decoded and handed to the engine task as an
//! [`Envelope`] with who sent it, and its reply written back. Every request line is bounded
//! ([`Limits::max_line`]), and so are the time to send it and the time to take its reply
//! ([`Limits::read_timeout`]); a connection that breaks a bound gets one error line and is
//! closed.
//!
//! [`protocol`]: crate::protocol

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

use super::Handler;
use crate::protocol::{self, Command, Reply};
use crate::requester::Requester;

/// Bounds of a JSON-lines server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections.
    pub max_connections: usize,
    /// Longest request line, bytes.
    pub max_line: usize,
    /// Time to finish the handshake, to receive one request line, and to take a reply.
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
    /// A switch, on or off.
    pub fn new(enabled: bool) -> GroupLookup {
        GroupLookup(Arc::new(AtomicBool::new(enabled)))
    }

    /// Turns the lookup on or off for connections opened from now on.
    pub fn set(&self, enabled: bool) {
        self.0.store(enabled, Ordering::Relaxed);
    }

    /// Whether the lookup is on.
    pub fn enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request on its way to the engine, with who sent it and where the answer goes.
#[derive(Debug)]
pub struct Envelope {
    /// The request.
    pub command: Command,
    /// Who sent it.
    pub requester: Requester,
    /// Where its reply goes.
    pub reply: oneshot::Sender<Reply>,
}

/// How a connection is established and who is on the other end: the peer credentials of
/// the unix socket ([`super::PeerCredentials`]) or the verified certificate of a TLS client
/// (`peers::server::TlsHandshake`).
pub trait Handshake: Send + Sync + 'static {
    /// The connection as accepted.
    type Conn: Send + 'static;
    /// The established stream requests are read from.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Finishes the connection (handshake) and names who is on it; runs in the
    /// connection's own task, bounded by [`Limits::read_timeout`].
    fn establish(
        &self,
        conn: Self::Conn,
    ) -> impl Future<Output = io::Result<(Self::Stream, Requester)>> + Send + 'static;
}

/// The [`Handler`] of a JSON-lines server: establishes each connection with its handshake,
/// then serves its requests to the engine task.
pub struct Requests<H> {
    handshake: H,
    limits: Limits,
    engine: mpsc::Sender<Envelope>,
}

impl<H: Handshake> Requests<H> {
    /// Serves connections established by `handshake` within `limits`, sending their
    /// requests to `engine`.
    pub fn new(handshake: H, limits: Limits, engine: mpsc::Sender<Envelope>) -> Requests<H> {
        Requests {
            handshake,
            limits,
            engine,
        }
    }
}

impl<H: Handshake> Handler<H::Conn> for Requests<H> {
    fn handle(&mut self, conn: H::Conn) -> impl Future<Output = ()> + Send + 'static {
        let establish = self.handshake.establish(conn);
        let (limits, engine) = (self.limits.clone(), self.engine.clone());
        async move {
            match tokio::time::timeout(limits.read_timeout, establish).await {
                Ok(Ok((stream, who))) => connection(stream, who, &limits, &engine).await,
                Ok(Err(e)) => tracing::info!("connection refused: {e}"),
                Err(_) => tracing::info!("connection refused: handshake timed out"),
            }
        }
    }
}

/// Serves JSON-lines requests on an established stream for `who`, until the client closes
/// or breaks a bound.
pub async fn connection<S>(
    stream: S,
    who: Requester,
    limits: &Limits,
    engine: &mpsc::Sender<Envelope>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
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
            Ok(command) => ask(engine, command, &who).await,
        };
        // A client that does not take its reply loses the connection, not a permit forever.
        match tokio::time::timeout(limits.read_timeout, send(&mut framed, reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Hands one request to the engine task and waits for its reply.
async fn ask(engine: &mpsc::Sender<Envelope>, command: Command, who: &Requester) -> Reply {
    let (tx, rx) = oneshot::channel();
    let envelope = Envelope {
        command,
        requester: who.clone(),
        reply: tx,
    };
    if engine.send(envelope).await.is_err() {
        return Reply::error("the agent is shutting down", serde_json::Value::Null);
    }
    rx.await
        .unwrap_or_else(|_| Reply::error("the agent dropped the request", serde_json::Value::Null))
}

async fn send<S>(framed: &mut Framed<S, LinesCodec>, reply: Reply) -> Result<(), LinesCodecError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    framed.send(reply.to_line()).await
}
