//! The metrics endpoint: a minimal HTTP/1.1 responder for Prometheus scrapes. It answers
//! `GET /metrics` (and `HEAD`) with the exposition text and everything else with an error
//! status, one request per connection ([`connection`]). The text is OpenMetrics, or the
//! classic Prometheus format when the request's `Accept` header prefers `text/plain`
//! ([`Format::from_accept`]).
//!
//! The agent serves it with the accept loop of the control socket ([`crate::control`]),
//! capped at [`Limits::max_connections`] (one over the cap is closed at once) and drained
//! for [`DRAIN_GRACE`] at shutdown. Each connection bounds the request head
//! ([`Limits::max_request`]) and the time to send it and to take the answer
//! ([`Limits::timeout`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Format, Metrics};

/// Time open connections get to finish when the server shuts down.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Most bytes read and dropped after answering, while waiting for the client to close.
const LINGER_BYTES: usize = 64 * 1024;

/// Bounds of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent connections. Default 8: a scraper needs one.
    pub max_connections: usize,
    /// Longest request head (request line and headers), bytes. Default 8 KiB.
    pub max_request: usize,
    /// Time to receive the request head, and again to send the answer. Default 5 s.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 8,
            max_request: 8 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Binds the endpoint's listener.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// What a request head asks for, or why it is refused.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Metrics { head_only: bool, format: Format },
    Error { status: &'static str, allow: bool },
}

/// Answers the one request of a connection.
pub async fn connection(mut stream: TcpStream, metrics: Metrics, limits: Limits) {
    let answer = match tokio::time::timeout(limits.timeout, read_head(&mut stream, limits)).await {
        Err(_) => Answer::Error {
            status: "408 Request Timeout",
            allow: false,
        },
        Ok(Err(_)) => return,
        Ok(Ok(answer)) => answer,
    };
    let response = match answer {
        Answer::Metrics { head_only, format } => {
            let body = metrics.render_as(format);
            let mut r = head("200 OK", format.content_type(), body.len(), false);
            if !head_only {
                r.push_str(&body);
            }
            r
        }
        Answer::Error { status, allow } => {
            let body = format!("{status}\n");
            let mut r = head(status, "text/plain; charset=utf-8", body.len(), allow);
            r.push_str(&body);
            r
        }
    };
    let _ = tokio::time::timeout(limits.timeout, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client still sends (an unread request rest) until it closes, so
        // closing does not reset the connection before the client has read the answer.
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        io::Result::Ok(())
    })
    .await;
}

fn head(status: &str, content_type: &str, len: usize, allow: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n{}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        if allow { "Allow: GET, HEAD\r\n" } else { "" }
    )
}

/// Reads up to the end of the request head (a body, if any, is not read).
async fn read_head(stream: &mut TcpStream, limits: Limits) -> io::Result<Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_end(&buf) {
            return Ok(parse(&buf[..end]));
        }
        if buf.len() > limits.max_request {
            return Ok(Answer::Error {
                status: "431 Request Header Fields Too Large",
                allow: false,
            });
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses the request line of a head, and its `Accept` headers.
fn parse(head: &[u8]) -> Answer {
    let bad = Answer::Error {
        status: "400 Bad Request",
        allow: false,
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return bad;
    };
    let mut lines = head.lines();
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Answer::Error {
            status: "505 HTTP Version Not Supported",
            allow: false,
        };
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Answer::Error {
            status: "404 Not Found",
            allow: false,
        };
    }
    let accept = lines.filter_map(|h| {
        let (name, value) = h.split_once(':')?;
        name.trim().eq_ignore_ascii_case("accept").then_some(value)
    });
    let format = Format::from_accept(accept);
    match method {
        "GET" => Answer::Metrics {
            head_only: false,
            format,
        },
        "HEAD" => Answer::Metrics {
            head_only: true,
            format,
        },
        _ => Answer::Error {
            status: "405 Method Not Allowed",
            allow: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let p = |s: &str| parse(s.as_bytes());
        let om = Format::OpenMetrics;
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x"),
            Answer::Metrics {
                head_only: false,
                format: om
            }
        );
        assert_eq!(
            p("GET /metrics?name[]=x HTTP/1.0"),
            Answer::Metrics {
                head_only: false,
                format: om
            }
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.1"),
            Answer::Metrics {
                head_only: true,
                format: om
            }
        );
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: text/plain;version=0.0.4"),
            Answer::Metrics {
                head_only: false,
                format: Format::Classic
            }
        );
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\naccept: text/plain;q=0.5\r\nAccept: application/openmetrics-text"),
            Answer::Metrics {
                head_only: false,
                format: om
            }
        );
        let status = |s: &str| match p(s) {
            Answer::Error { status, .. } => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status("POST /metrics HTTP/1.1"), "405 Method Not Allowed");
        assert_eq!(status("GET / HTTP/1.1"), "404 Not Found");
        assert_eq!(status("GET /metricsx HTTP/1.1"), "404 Not Found");
        assert_eq!(status("GET /metrics"), "400 Bad Request");
        assert_eq!(status("GET  /metrics HTTP/1.1"), "400 Bad Request");
        assert_eq!(
            status("GET /metrics SPDY/3"),
            "505 HTTP Version Not Supported"
        );
    }
}
