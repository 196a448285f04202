//! A small, exact HTTP/1.1 client for the load generator and the probes: one request at a
//! time on a connection, and every way a request can fail told apart (connect errors,
//! resets, EOF on a fresh or on a reused connection, non-2xx, timeouts, garbage).
//!
//! The origins answer a body naming their colour (`blue` or `green`); a 2xx response is
//! read as that colour.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted, head and body, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The colour a response came from: the agent's own.
pub use cutover::protocol::Colour;

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A 2xx response whose body names a colour.
    Ok(Colour),
    /// A complete response with a status outside 2xx.
    Status(u16),
    /// The TCP connection could not be opened.
    ConnectError,
    /// Reset (ECONNRESET, EPIPE, ECONNABORTED) before the response was complete.
    Reset,
    /// EOF before a complete response on a connection that had carried a response before.
    EofReused,
    /// EOF before a complete response on a fresh connection.
    EofNew,
    /// No complete response within the timeout (connect included).
    Timeout,
    /// Bytes that are not a response we understand, a 2xx body naming no colour, or
    /// another I/O error.
    Malformed,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Ok(_))
    }

    pub fn colour(self) -> Option<Colour> {
        match self {
            Outcome::Ok(c) => Some(c),
            _ => None,
        }
    }

    /// Short label for tables: `503`, `reset`, `eof-reused`, ...
    pub fn label(self) -> String {
        match self {
            Outcome::Ok(c) => c.as_str().into(),
            Outcome::Status(s) => s.to_string(),
            Outcome::ConnectError => "connect".into(),
            Outcome::Reset => "reset".into(),
            Outcome::EofReused => "eof-reused".into(),
            Outcome::EofNew => "eof-new".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Malformed => "malformed".into(),
        }
    }
}

/// The bytes of `GET /` for `host`, keeping the connection alive or closing it.
pub fn request_bytes(host: &str, keep_alive: bool) -> Vec<u8> {
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cutover-bench\r\n{close}\r\n")
        .into_bytes()
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Complete responses read on this connection.
    responses: u64,
}

/// Opens a connection within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, Outcome> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Outcome::Timeout),
        Ok(Err(_)) => Err(Outcome::ConnectError),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(Conn {
                stream,
                buf: Vec::with_capacity(1024),
                responses: 0,
            })
        }
    }
}

/// One request on a new connection that is closed afterwards.
pub async fn one_shot(addr: SocketAddr, request: &[u8], timeout: Duration) -> Outcome {
    let started = tokio::time::Instant::now();
    match connect(addr, timeout).await {
        Ok(mut conn) => {
            conn.exchange(request, timeout - started.elapsed().min(timeout))
                .await
                .0
        }
        Err(outcome) => outcome,
    }
}

impl Conn {
    /// Sends `request` and reads one response within `timeout`. The flag says whether the
    /// connection may carry another request.
    pub async fn exchange(&mut self, request: &[u8], timeout: Duration) -> (Outcome, bool) {
        match tokio::time::timeout(timeout, self.exchange_inner(request)).await {
            Err(_) => (Outcome::Timeout, false),
            Ok(result) => result,
        }
    }

    async fn exchange_inner(&mut self, request: &[u8]) -> (Outcome, bool) {
        if let Err(e) = self.stream.write_all(request).await {
            return (io_failure(&e), false);
        }
        self.buf.clear();
        loop {
            let eof = match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => return (io_failure(&e), false),
            };
            match parse(&self.buf, eof) {
                Parsed::Incomplete if eof => {
                    let outcome = if self.responses > 0 {
                        Outcome::EofReused
                    } else {
                        Outcome::EofNew
                    };
                    return (outcome, false);
                }
                Parsed::Incomplete if self.buf.len() > MAX_RESPONSE_BYTES => {
                    return (Outcome::Malformed, false)
                }
                Parsed::Incomplete => {}
                Parsed::Malformed => return (Outcome::Malformed, false),
                Parsed::Complete { outcome, reusable } => {
                    self.responses += 1;
                    return (outcome, reusable && !eof);
                }
            }
        }
    }
}

fn io_failure(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => Outcome::Reset,
        io::ErrorKind::UnexpectedEof => Outcome::EofReused,
        _ => Outcome::Malformed,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    Malformed,
    Complete { outcome: Outcome, reusable: bool },
}

/// Parses one response from the start of `buf`; `eof` says the peer closed after it.
fn parse(buf: &[u8], eof: bool) -> Parsed {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return Parsed::Malformed;
    };
    let body = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = match status_line.strip_prefix("HTTP/1.") {
        Some(rest) => rest.get(2..5).and_then(|s| s.parse::<u16>().ok()),
        None => None,
    };
    let Some(status) = status else {
        return Parsed::Malformed;
    };
    let mut length = None;
    let mut close = status_line.starts_with("HTTP/1.0");
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Malformed;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Parsed::Malformed,
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let body = match (length, chunked) {
        (Some(n), false) if body.len() >= n => &body[..n],
        (Some(_), false) => return Parsed::Incomplete,
        // Only error pages may be chunked here; their status is all we need, and the
        // connection is not reused.
        (_, true) if !(200..300).contains(&status) => {
            return Parsed::Complete {
                outcome: Outcome::Status(status),
                reusable: false,
            }
        }
        (_, true) => return Parsed::Malformed,
        (None, false) if !eof => return Parsed::Incomplete,
        (None, false) => {
            close = true;
            body
        }
    };
    let outcome = if !(200..300).contains(&status) {
        Outcome::Status(status)
    } else {
        match body.trim_ascii() {
            b"blue" => Outcome::Ok(Colour::Blue),
            b"green" => Outcome::Ok(Colour::Green),
            _ => Outcome::Malformed,
        }
    };
    Parsed::Complete {
        outcome,
        reusable: !close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_colours_statuses_and_partial_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ngreen";
        assert_eq!(
            parse(ok, false),
            Parsed::Complete {
                outcome: Outcome::Ok(Colour::Green),
                reusable: true
            }
        );
        assert_eq!(parse(&ok[..ok.len() - 1], false), Parsed::Incomplete);
        let close = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\nblue";
        assert_eq!(
            parse(close, false),
            Parsed::Complete {
                outcome: Outcome::Ok(Colour::Blue),
                reusable: false
            }
        );
        let unavailable = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno!";
        assert_eq!(
            parse(unavailable, false),
            Parsed::Complete {
                outcome: Outcome::Status(503),
                reusable: true
            }
        );
        let until_eof = b"HTTP/1.0 200 OK\r\n\r\nblue";
        assert_eq!(parse(until_eof, false), Parsed::Incomplete);
        assert_eq!(
            parse(until_eof, true),
            Parsed::Complete {
                outcome: Outcome::Ok(Colour::Blue),
                reusable: false
            }
        );
        assert_eq!(
            parse(b"SSH-2.0\r\n\r\n", false),
            Parsed::Malformed,
            "not HTTP"
        );
        let other = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nred";
        assert!(matches!(
            parse(other, false),
            Parsed::Complete {
                outcome: Outcome::Malformed,
                ..
            }
        ));
    }

    #[test]
    fn only_colours_count_as_success() {
        assert!(!Outcome::Ok(Colour::Blue).is_failure());
        for failed in [
            Outcome::Status(503),
            Outcome::Reset,
            Outcome::EofReused,
            Outcome::Timeout,
        ] {
            assert!(failed.is_failure(), "{failed:?}");
        }
    }
}
