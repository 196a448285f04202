//! The client side of the control protocol: one request out, replies in until the final
//! one, over the local unix socket or over mutual TLS to an agent's peer listener. Used by
//! the command line and by agents talking to their peers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::protocol::{self, Command, Reply, Status};

/// Longest reply line read from the agent, in bytes.
pub const MAX_REPLY: usize = 256 * 1024 * 1024;
/// Longest refusal line read after a request could not be sent, in bytes.
const MAX_REFUSAL: u64 = 64 * 1024;
/// Longest wait for the unix socket to accept a connection.
const UNIX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A step of one exchange with an agent, named when it stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the connection (TCP, or the unix socket).
    Connect,
    /// The TLS handshake of a peer connection.
    TlsHandshake,
    /// Writing the request.
    Request,
    /// Waiting for and reading the final reply.
    Reply,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::TlsHandshake => "TLS handshake",
            Phase::Request => "request",
            Phase::Reply => "reply",
        })
    }
}

/// The agent could not be reached, or broke off.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened.
    #[error("cannot reach the agent at {path}: {source}")]
    Connect {
        /// The socket, or `node (host:port)`.
        path: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The connection broke, or carried something that is not a reply.
    #[error("talking to the agent at {path}: {reason}")]
    Talk {
        /// The socket, or `node (host:port)`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The exchange did not finish in time; `phase` is where it stalled.
    #[error("the agent at {path} stalled: {phase} timed out after {} ms", after.as_millis())]
    TimedOut {
        /// The socket, or `node (host:port)`.
        path: PathBuf,
        /// The step that was under way when the time ran out.
        phase: Phase,
        /// The time the exchange had, from its start.
        after: Duration,
    },
}

/// When an exchange must be done by, and the time it had from its start (named in a
/// timeout).
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// `budget` from now.
    fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// Runs `step` of an exchange with `peer` until the deadline; names `phase` when the
    /// time runs out.
    async fn run<T>(
        self,
        peer: &str,
        phase: Phase,
        step: impl std::future::Future<Output = T>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout_at(self.at, step)
            .await
            .map_err(|_| ClientError::TimedOut {
                path: PathBuf::from(peer),
                phase,
                after: self.budget,
            })
    }
}

/// Sends one command over the unix socket and returns the final reply (progress replies
/// go to `on_progress`). Connecting has [`UNIX_CONNECT_TIMEOUT`]; the request and its
/// replies then have `timeout` together.
pub async fn unix(
    socket: &Path,
    command: &Command,
    timeout: Duration,
    on_progress: impl FnMut(&Reply),
) -> Result<Reply, ClientError> {
    let path = socket.display().to_string();
    let stream = Deadline::after(UNIX_CONNECT_TIMEOUT)
        .run(&path, Phase::Connect, UnixStream::connect(socket))
        .await?
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    let deadline = Deadline::after(timeout);
    exchange(stream, &path, command, deadline, on_progress).await
}

/// Sends `command` to the agent `name` at `address` (`host:port`, its peer listener) over
/// mutual TLS and returns its final reply. `name` must be the node name its certificate
/// carries. `timeout` bounds the whole exchange: connect, TLS handshake, request and reply
/// together; a stall names the step it stalled in ([`ClientError::TimedOut`]).
pub async fn tls(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    address: &str,
    command: &Command,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let peer = format!("{name} ({address})");
    let deadline = Deadline::after(timeout);
    let connect_error = |e: std::io::Error| ClientError::Connect {
        path: PathBuf::from(&peer),
        source: e,
    };
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| connect_error(std::io::Error::other(format!("TLS setup: {name:?}: {e}"))))?;
    let tcp = deadline
        .run(&peer, Phase::Connect, TcpStream::connect(address))
        .await?
        .map_err(connect_error)?;
    let _ = tcp.set_nodelay(true);
    let handshake = TlsConnector::from(config.clone()).connect(server_name, tcp);
    let stream = deadline
        .run(&peer, Phase::TlsHandshake, handshake)
        .await?
        .map_err(|e| connect_error(std::io::Error::new(e.kind(), format!("TLS handshake: {e}"))))?;
    exchange(stream, &peer, command, deadline, |_| {}).await
}

/// Sends one command on an open stream (unix socket or TLS) and reads replies until the
/// final one, all before `deadline`. `peer` names the other end in errors.
async fn exchange<S>(
    stream: S,
    peer: &str,
    command: &Command,
    deadline: Deadline,
    mut on_progress: impl FnMut(&Reply),
) -> Result<Reply, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let talk = |reason: String| ClientError::Talk {
        path: PathBuf::from(peer),
        reason,
    };
    let (read, mut write) = tokio::io::split(stream);
    let mut line = protocol::encode(command);
    line.push('\n');
    let send = async {
        write.write_all(line.as_bytes()).await?;
        write.flush().await
    };
    // An agent that refuses the connection answers at once and closes it, so the request
    // may meet a closed socket: its refusal is then the reply to read, not the write error.
    let sent = deadline.run(peer, Phase::Request, send).await?;
    let mut reader = BufReader::new(read);
    if let Err(e) = sent {
        let refusal = deadline
            .run(peer, Phase::Reply, read_reply(&mut reader))
            .await;
        return match refusal {
            Ok(Ok(Some(reply))) if reply.status == Status::Error => Ok(reply),
            _ => Err(talk(e.to_string())),
        };
    }
    let replies = async {
        loop {
            let mut buf = String::new();
            let n = (&mut reader)
                .take(MAX_REPLY as u64)
                .read_line(&mut buf)
                .await
                .map_err(|e| talk(e.to_string()))?;
            if n == 0 {
                return Err(talk("the agent closed the connection".into()));
            }
            let reply: Reply =
                serde_json::from_str(&buf).map_err(|e| talk(format!("unreadable reply: {e}")))?;
            if reply.status == Status::Progress {
                on_progress(&reply);
                continue;
            }
            return Ok(reply);
        }
    };
    deadline.run(peer, Phase::Reply, replies).await?
}

/// The one line the agent may have written before closing a connection it refused;
/// `None` when there is none (or it is not a reply).
async fn read_reply<R>(reader: &mut BufReader<R>) -> std::io::Result<Option<Reply>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut buf = String::new();
    let n = reader.take(MAX_REFUSAL).read_line(&mut buf).await?;
    Ok((n > 0).then(|| serde_json::from_str(&buf).ok()).flatten())
}
