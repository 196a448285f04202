//! One attempt of a webhook: an HTTP/1.1 `POST` of the event's JSON on a new connection
//! (TLS 1.3 for `https`), answered by the receiver's status line. The request is all a
//! webhook needs (a fixed body with its length, `Connection: close`), so it is written here
//! rather than pulling an HTTP client into the binary; of the answer only the status line is
//! read, at most [`MAX_STATUS_LINE`] bytes.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::HookUrl;

/// Longest status line read from a receiver, bytes.
pub const MAX_STATUS_LINE: usize = 1_024;

/// Header carrying the body's HMAC-SHA256 (`sha256=<hex>`) when the hook has a secret.
pub const SIGNATURE_HEADER: &str = "X-Cutover-Signature";
/// Header carrying the event's name.
pub const EVENT_HEADER: &str = "X-Cutover-Event";

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection (refused, unreachable, name not resolved).
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The TLS handshake failed (certificate not trusted, no common version).
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    /// Sending the request or reading the answer failed.
    #[error("exchanging with {0}: {1}")]
    Io(String, std::io::Error),
    /// The answer did not start with an HTTP status line.
    #[error("{0} answered no HTTP status line: {1:?}")]
    Answer(String, String),
    /// The receiver answered a status other than 2xx.
    #[error("{0} answered HTTP {1}")]
    Status(String, u16),
}

impl PostError {
    /// Whether another attempt may succeed: not after a 4xx answer other than 408 (request
    /// timeout) and 429 (too many requests), which would be the same again.
    pub fn retryable(&self) -> bool {
        match self {
            PostError::Status(_, code) => !(400..500).contains(code) || matches!(code, 408 | 429),
            _ => true,
        }
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` with `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The request's bytes: head and body.
pub fn request(url: &HookUrl, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let host = match (url.host.contains(':'), url.port, url.tls) {
        (true, p, _) => format!("[{}]:{p}", url.host),
        (false, 80, false) | (false, 443, true) => url.host.clone(),
        (false, p, _) => format!("{}:{p}", url.host),
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cutover/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `request` to `url` (through `tls` for `https`) and reads the status; `Ok` for 2xx.
/// The caller bounds the time it takes.
pub async fn post(
    url: &HookUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    request: &[u8],
) -> Result<u16, PostError> {
    let at = url.to_string();
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| PostError::Connect(at.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    match (url.tls, tls) {
        (true, Some(config)) => {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| PostError::Tls(at.clone(), std::io::Error::other(e.to_string())))?;
            let stream = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| PostError::Tls(at.clone(), e))?;
            exchange(stream, &at, request).await
        }
        (true, None) => Err(PostError::Tls(
            at,
            std::io::Error::other("no trust roots loaded"),
        )),
        (false, _) => exchange(tcp, &at, request).await,
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    at: &str,
    request: &[u8],
) -> Result<u16, PostError> {
    let io = |e| PostError::Io(at.to_owned(), e);
    stream.write_all(request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !line.contains(&b'\n') && line.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&line);
    let first = text.lines().next().unwrap_or_default();
    let code = first
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| PostError::Answer(at.to_owned(), first.chars().take(80).collect()))?;
    let _ = stream.shutdown().await;
    if (200..300).contains(&code) {
        Ok(code)
    } else {
        Err(PostError::Status(at.to_owned(), code))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_request_names_its_length_host_and_headers() {
        let url = HookUrl::parse("http://127.0.0.1:8080/in?x=1").unwrap();
        let bytes = request(&url, &[(EVENT_HEADER, "switch".into())], b"{}");
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("POST /in?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
        assert!(
            text.ends_with("X-Cutover-Event: switch\r\n\r\n{}"),
            "{text}"
        );
        let url = HookUrl::parse("https://h.test/").unwrap();
        let text = String::from_utf8(request(&url, &[], b"")).unwrap();
        assert!(text.contains("\r\nHost: h.test\r\n"), "{text}");
    }

    #[test]
    fn a_client_error_is_not_retried() {
        let s = |c| PostError::Status("x".into(), c);
        assert!(!s(400).retryable());
        assert!(!s(404).retryable());
        assert!(s(408).retryable());
        assert!(s(429).retryable());
        assert!(s(500).retryable());
        assert!(s(503).retryable());
    }

    /// A receiver on loopback answering each connection with `answer`, once.
    async fn receiver(answer: &'static [u8]) -> (HookUrl, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            HookUrl::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.unwrap();
            got.truncate(n);
            s.write_all(answer).await.unwrap();
            got
        });
        (url, task)
    }

    #[tokio::test]
    async fn posts_and_reads_the_status() {
        let (url, task) = receiver(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let req = request(&url, &[], b"{\"a\":1}");
        assert_eq!(post(&url, None, &req).await.unwrap(), 204);
        let got = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(got.starts_with("POST /hook HTTP/1.1\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n{\"a\":1}"), "{got}");

        let (url, _task) = receiver(b"HTTP/1.0 500 Oops\r\n\r\n").await;
        let e = post(&url, None, &request(&url, &[], b""))
            .await
            .unwrap_err();
        assert!(matches!(e, PostError::Status(_, 500)), "{e}");

        let (url, _task) = receiver(b"SSH-2.0-x\r\n").await;
        let e = post(&url, None, &request(&url, &[], b""))
            .await
            .unwrap_err();
        assert!(matches!(e, PostError::Answer(..)), "{e}");
    }
}
