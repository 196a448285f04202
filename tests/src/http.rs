//! Minimal HTTP/1.1 clients for tests: one request per connection ([`get`]) or many requests
//! on one kept-alive connection ([`KeepAliveClient`]). Errors are returned, never hidden, so
//! tests can count failed or dropped requests.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Bound on one whole request/response exchange: 5 seconds.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body read, in bytes (16 MiB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body, decoded from UTF-8 lossily.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// `GET /` with `Host: host` on a new connection (closed afterwards); returns status and body.
pub async fn get(addr: SocketAddr, host: &str) -> io::Result<(u16, String)> {
    let response = request(addr, "GET", host, "/").await?;
    Ok((response.status, response.body))
}

/// One request on a new connection that is closed afterwards.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
) -> io::Result<Response> {
    request_with(addr, method, host, path, &[]).await
}

/// [`request`] with more request headers (`name`, `value`).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<Response> {
    with_timeout(async {
        let stream = TcpStream::connect(addr).await?;
        let mut stream = BufReader::new(stream);
        send(&mut stream, method, host, path, false, headers).await?;
        Ok(read_response(&mut stream, method == "HEAD").await?.0)
    })
    .await
}

/// Many requests over ONE connection. It never reconnects on its own: when the server or the
/// proxy closes the connection, the next request fails, which is what tests of "no dropped
/// connections" need to see.
pub struct KeepAliveClient {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    requests: u64,
}

impl KeepAliveClient {
    /// Opens the connection.
    pub async fn connect(addr: SocketAddr) -> io::Result<KeepAliveClient> {
        let stream = with_timeout(TcpStream::connect(addr)).await?;
        stream.set_nodelay(true)?;
        Ok(KeepAliveClient {
            addr,
            stream: Some(BufReader::new(stream)),
            requests: 0,
        })
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests completed on this connection.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// True until the connection was closed (by a `Connection: close` reply or an error).
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// `GET /` with `Host: host`; returns status and body.
    pub async fn get(&mut self, host: &str) -> io::Result<(u16, String)> {
        let response = self.request("GET", host, "/").await?;
        Ok((response.status, response.body))
    }

    /// One request on the kept-alive connection.
    pub async fn request(&mut self, method: &str, host: &str, path: &str) -> io::Result<Response> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "keep-alive connection already closed",
            ));
        };
        let result = with_timeout(async {
            send(stream, method, host, path, true, &[]).await?;
            read_response(stream, method == "HEAD").await
        })
        .await;
        match result {
            Ok((response, reusable)) => {
                self.requests += 1;
                if !reusable {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(err) => {
                self.stream = None;
                Err(err)
            }
        }
    }
}

async fn with_timeout<T>(fut: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(HTTP_TIMEOUT, fut).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no HTTP response within {HTTP_TIMEOUT:?}"),
        )
    })?
}

async fn send(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    host: &str,
    path: &str,
    keep_alive: bool,
    headers: &[(&str, &str)],
) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: {connection}\r\n\r\n"
    );
    stream.get_mut().write_all(head.as_bytes()).await
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    let n = (&mut *stream).take(64 * 1024).read_line(&mut line).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one response; the flag says whether the connection may carry another request.
async fn read_response(
    stream: &mut BufReader<TcpStream>,
    head_only: bool,
) -> io::Result<(Response, bool)> {
    let status_line = read_line(stream).await?;
    let status = status_line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(stream).await?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers,
        body: String::new(),
    };
    let mut reusable = !response.closes();
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((response, reusable));
    }
    let mut body = Vec::new();
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_line(stream).await?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
            if body.len() + size > MAX_BODY_BYTES {
                return Err(invalid("response body too large".into()));
            }
            if size == 0 {
                // Trailers end with an empty line.
                while !read_line(stream).await?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..]).await?;
            read_line(stream).await?;
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        if length > MAX_BODY_BYTES {
            return Err(invalid("response body too large".into()));
        }
        body.resize(length, 0);
        stream.read_exact(&mut body).await?;
    } else {
        // No length: the body ends with the connection.
        (&mut *stream)
            .take(MAX_BODY_BYTES as u64)
            .read_to_end(&mut body)
            .await?;
        reusable = false;
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok((response, reusable))
}

/// The body of `GET /` with `Host: host` on a new blocking connection (one second to
/// connect and to answer), for measuring programs that poll in a tight loop; `None` on any
/// failure.
pub fn get_body_blocking(addr: SocketAddr, host: &str) -> Option<String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(1);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split("\r\n\r\n").nth(1).map(|b| b.trim().to_owned())
}

/// The `p` quantile (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
