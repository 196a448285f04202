//! The generation endpoint: the rendered Nginx config serves, on a loopback or unix-socket
//! listener, the state generation it was rendered for (`GET /cutover/generation` answers
//! `200` with the number). Reading it back proves which rendered config the worker that
//! answered runs, which a successful `SIGHUP` alone does not.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::StatusAddress;

/// Path of the endpoint in the rendered config.
pub const GENERATION_PATH: &str = "/cutover/generation";
/// Largest reply read, in bytes.
const MAX_REPLY: u64 = 4096;

/// Why the generation endpoint gave no generation.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing answered within the timeout.
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout {
        /// The endpoint's listener (`proxy.nginx.status`).
        addr: StatusAddress,
        /// How long the whole exchange was given.
        timeout: Duration,
    },
    /// Connecting, sending or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The endpoint's listener (`proxy.nginx.status`).
        addr: StatusAddress,
        /// The error of the connect, write or read.
        source: io::Error,
    },
    /// The endpoint answered something else than a generation.
    #[error("{addr}{GENERATION_PATH}: {source}")]
    Reply {
        /// The endpoint's listener (`proxy.nginx.status`).
        addr: StatusAddress,
        /// What was wrong with the reply.
        source: BadReply,
    },
}

/// An HTTP reply of the generation endpoint that carries no generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReply {
    /// No blank line after the head.
    #[error("incomplete HTTP reply")]
    Incomplete,
    /// A status other than 200 (the status line).
    #[error("answered {0:?}")]
    Status(String),
    /// Status 200 with a body that is not a number (the body, trimmed).
    #[error("answered {0:?}, not a generation")]
    NotAGeneration(String),
}

/// Asks the endpoint at `addr` on a new connection; the whole exchange is bounded by
/// `timeout`.
pub async fn generation(addr: &StatusAddress, timeout: Duration) -> Result<u64, StatusError> {
    let exchange = async {
        match addr {
            StatusAddress::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                ask(s).await
            }
            StatusAddress::Unix(p) => ask(tokio::net::UnixStream::connect(p).await?).await,
        }
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| StatusError::Timeout {
            addr: addr.clone(),
            timeout,
        })?
        .map_err(|source| StatusError::Io {
            addr: addr.clone(),
            source,
        })?;
    parse_reply(&reply).map_err(|source| StatusError::Reply {
        addr: addr.clone(),
        source,
    })
}

async fn ask<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<Vec<u8>> {
    let request = format!("GET {GENERATION_PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    s.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    s.take(MAX_REPLY).read_to_end(&mut reply).await?;
    Ok(reply)
}

/// The generation in an HTTP reply: status 200 and a body of one decimal number.
pub fn parse_reply(reply: &[u8]) -> Result<u64, BadReply> {
    let text = String::from_utf8_lossy(reply);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(BadReply::Incomplete)?;
    let status = head.lines().next().unwrap_or("");
    if status.split_ascii_whitespace().nth(1) != Some("200") {
        return Err(BadReply::Status(status.to_owned()));
    }
    body.trim()
        .parse()
        .map_err(|_| BadReply::NotAGeneration(body.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let ok = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 2\r\n\r\n7\n";
        assert_eq!(parse_reply(ok), Ok(7));
        let e = parse_reply(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n\r\nseven").is_err());
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[tokio::test]
    async fn asks_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /cutover/generation "));
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n42\n").await.unwrap();
        });
        let got = generation(&StatusAddress::Unix(path.clone()), Duration::from_secs(5)).await;
        assert_eq!(got.unwrap(), 42);
        server.await.unwrap();
        let missing = generation(
            &StatusAddress::Unix(dir.path().join("none.sock")),
            Duration::from_secs(1),
        )
        .await;
        assert!(missing.unwrap_err().to_string().contains("none.sock"));
    }
}
