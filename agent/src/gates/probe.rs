//! The agent's own HTTP health probe: one `GET <path>` per server on a new connection,
//! bounded in time and in what it reads (the status line only).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest status line read, in bytes.
pub const MAX_STATUS_LINE: usize = 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer within the timeout (milliseconds).
    #[error("no answer within {0} ms")]
    Timeout(u128),
    /// The connection could not be made.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The request could not be sent.
    #[error("send: {0}")]
    Send(#[source] io::Error),
    /// The answer could not be read.
    #[error("read: {0}")]
    Read(#[source] io::Error),
    /// The server closed the connection without answering.
    #[error("closed without an answer")]
    Closed,
    /// The server answered something that is not HTTP.
    #[error("not an HTTP answer: {0:?}")]
    NotHttp(String),
    /// The server answered another status than the one expected.
    #[error("answered {got}, expected {expected}")]
    Status {
        /// The status it answered.
        got: u16,
        /// The status the gate expects.
        expected: u16,
    },
}

/// Probes `http://<address><path>`; `Ok(())` when it answers `expect` within `timeout`,
/// otherwise what went wrong.
pub async fn probe(
    address: &str,
    path: &str,
    expect: u16,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, get_status(address, path)).await {
        Err(_) => Err(ProbeError::Timeout(timeout.as_millis())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(status)) if status == expect => Ok(()),
        Ok(Ok(got)) => Err(ProbeError::Status {
            got,
            expected: expect,
        }),
    }
}

/// The status of `GET <path>` on `address` (no timeout of its own).
pub async fn get_status(address: &str, path: &str) -> Result<u16, ProbeError> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(ProbeError::Connect)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: cutover-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Send)?;
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_STATUS_LINE as u64);
    reader
        .read_until(b'\n', &mut line)
        .await
        .map_err(ProbeError::Read)?;
    parse_status_line(&line)
}

fn parse_status_line(line: &[u8]) -> Result<u16, ProbeError> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_ascii_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(v), Some(status)) if v.starts_with("HTTP/") => Ok(status),
        _ if line.is_empty() => Err(ProbeError::Closed),
        _ => Err(ProbeError::NotHttp(text.trim_end().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\n").unwrap(), 503);
        let e = |line: &[u8]| parse_status_line(line).unwrap_err().to_string();
        assert!(e(b"").contains("closed"));
        assert!(e(b"SSH-2.0-x\r\n").contains("not an HTTP"));
    }

    #[tokio::test]
    async fn probes_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(2);
        assert!(probe(&addr, "/health", 200, t).await.is_ok());
        assert_eq!(
            probe(&addr, "/health", 200, t)
                .await
                .unwrap_err()
                .to_string(),
            "answered 500, expected 200"
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert!(matches!(
            probe(&gone, "/", 200, t).await,
            Err(ProbeError::Connect(_))
        ));
    }
}
