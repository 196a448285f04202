//! The one-shot exchange both HAProxy sockets speak (admin socket and master CLI): connect,
//! write the command (and payload), half-close, read the reply to EOF, every step bounded
//! by a timeout. The clients give its failures their context (socket and command).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// What went wrong in one connect/write/read exchange, before it is given a context.
#[derive(Debug)]
pub(super) enum Exchange {
    Connect(io::Error),
    Io(io::Error),
    Timeout,
    TooLarge(usize),
}

/// Connects to `path`, writes `parts` and half-closes the write side, each step bounded by
/// `timeout`.
pub(super) async fn open_oneshot(
    path: &Path,
    parts: &[&[u8]],
    timeout: Duration,
) -> Result<UnixStream, Exchange> {
    let mut stream = tokio::time::timeout(timeout, UnixStream::connect(path))
        .await
        .map_err(|_| Exchange::Timeout)?
        .map_err(Exchange::Connect)?;
    let write = async {
        for part in parts {
            stream.write_all(part).await?;
        }
        stream.shutdown().await
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| Exchange::Timeout)?
        .map_err(Exchange::Io)?;
    Ok(stream)
}

/// Reads to EOF, each read bounded by `timeout`, the total by `limit` bytes.
pub(super) async fn read_to_end<R: AsyncRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<u8>, Exchange> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(timeout, reader.read(&mut buf))
            .await
            .map_err(|_| Exchange::Timeout)?
            .map_err(Exchange::Io)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(Exchange::TooLarge(limit));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reply bytes as text; HAProxy's replies are ASCII, anything else is replaced, not refused.
pub(super) fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// True for the errors of a connection the peer closed or reset.
pub(super) fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}
