//! The client side of the control protocol: one request out, replies in until the final
//! one, over the local unix socket or over mutual TLS to an agent's peer listener. Used by
//! the command line and by agents talking to their peers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use crate::protocol::{self, Command, Reply, Status};

/// Longest reply line read from the agent, in bytes.
pub const MAX_REPLY: usize = 256 * 1024 * 1024;
/// Longest wait for the unix socket to accept a connection.
const UNIX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The connection broke, timed out, or carried something that is not a reply.
    #[error("talking to the agent at {path}: {reason}")]
    Talk {
        /// The socket, or `node (host:port)`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Sends one command over the unix socket and returns the final reply (progress replies
/// go to `on_progress`).
pub async fn unix(
    socket: &Path,
    command: &Command,
    timeout: Duration,
    on_progress: impl FnMut(&Reply),
) -> Result<Reply, ClientError> {
    let stream = tokio::time::timeout(UNIX_CONNECT_TIMEOUT, UnixStream::connect(socket))
        .await
        .map_err(|_| ClientError::Connect {
            path: socket.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        })?
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    exchange(
        stream,
        &socket.display().to_string(),
        command,
        timeout,
        on_progress,
    )
    .await
}

/// Sends `command` to the agent `name` at `address` (`host:port`, its peer listener) over
/// mutual TLS and returns its final reply. `name` must be the node name its certificate
/// carries.
pub async fn tls(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    address: &str,
    command: &Command,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let peer = format!("{name} ({address})");
    let connect_error = |e: std::io::Error| ClientError::Connect {
        path: PathBuf::from(&peer),
        source: e,
    };
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| connect_error(std::io::Error::other(format!("TLS setup: {name:?}: {e}"))))?;
    let connect = async {
        let tcp = TcpStream::connect(address).await?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config.clone())
            .connect(server_name, tcp)
            .await
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?
        .map_err(connect_error)?;
    exchange(stream, &peer, command, timeout, |_| {}).await
}

/// Sends one command on an open stream (unix socket or TLS) and reads replies until the
/// final one. `peer` names the other end in errors.
pub async fn exchange<S>(
    stream: S,
    peer: &str,
    command: &Command,
    timeout: Duration,
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
    let mut reader = BufReader::new(read);
    let work = async {
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| talk(e.to_string()))?;
        write.flush().await.map_err(|e| talk(e.to_string()))?;
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
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| talk(format!("no answer within {} s", timeout.as_secs())))?
}
