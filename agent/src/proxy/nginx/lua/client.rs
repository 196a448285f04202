//! The client of the Lua control endpoint: HTTP/1.1 requests on one persistent unix-socket
//! connection (opened on first use, opened again once after it broke), every exchange
//! bounded by the command timeout and every reply by [`MAX_REPLY`].
//!
//! Every reply of the endpoint starts with `generation <n>` and `seeded <ms>` lines (the
//! dict's [`Head`]); map dumps and updates follow them with a blank line and `key value`
//! lines.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::mapfile::MapEntries;
use crate::proxy::ProxyError;

/// Largest reply body read, in bytes: 64 MiB (a dump of a million routes).
pub const MAX_REPLY: usize = 64 << 20;
/// Longest header line read, in bytes.
const MAX_HEADER_LINE: usize = 8192;

/// What the dict says about itself in every reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// The state generation the agent last wrote; 0 right after seeding from the files.
    pub generation: u64,
    /// When the dict was seeded from the files, in ms since the epoch (changes with every
    /// start of Nginx, and with a reload that changed the dict's size).
    pub seeded_ms: u64,
}

/// One reply of the endpoint.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// One request to the endpoint.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path with its query, e.g. `/cutover/map/services?generation=7`.
    pub path: String,
    /// The body (`set`/`del` lines for a map update).
    pub body: String,
}

impl Request<'_> {
    /// `METHOD path`, for errors.
    pub fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Why an exchange with the control endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be reached: nothing was sent.
    #[error("control socket {}: cannot connect: {source}", socket.display())]
    Connect {
        /// The control socket (`proxy.lua_control`).
        socket: PathBuf,
        /// The connect error.
        source: io::Error,
    },
    /// The connection broke during `what`; it may or may not have been applied.
    #[error("control socket {}: {what}: {source}", socket.display())]
    Io {
        /// The control socket.
        socket: PathBuf,
        /// The request in flight (`POST /cutover/map/services`).
        what: String,
        /// The I/O error.
        source: io::Error,
    },
    /// No complete reply within the timeout.
    #[error("control socket {}: {what}: no answer within {timeout:?}", socket.display())]
    Timeout {
        /// The control socket.
        socket: PathBuf,
        /// The request in flight.
        what: String,
        /// How long the exchange was given.
        timeout: Duration,
    },
    /// The endpoint refused the request with its own words.
    #[error("control socket {}: {what}: answered {status}: {}", socket.display(), body.trim_end())]
    Refused {
        /// The control socket.
        socket: PathBuf,
        /// The request refused.
        what: String,
        /// The HTTP status (400 bad line, 413 too large, 507 dict full, ...).
        status: u16,
        /// The endpoint's explanation.
        body: String,
    },
    /// A reply that is not what the endpoint sends.
    #[error("control socket {}: {what}: unexpected reply: {why}", socket.display())]
    BadReply {
        /// The control socket.
        socket: PathBuf,
        /// The request.
        what: String,
        /// What was wrong.
        why: String,
    },
}

impl From<ControlError> for ProxyError {
    fn from(e: ControlError) -> ProxyError {
        let status = match &e {
            ControlError::Refused { status, .. } => Some(*status),
            _ => None,
        };
        let source = Box::new(e);
        match (&*source, status) {
            (ControlError::Connect { .. }, _) => ProxyError::Unreachable { source },
            (ControlError::Io { .. }, _) => ProxyError::ConnectionLost { source },
            (ControlError::Timeout { .. }, _) => ProxyError::Timeout { source },
            (_, Some(507)) => ProxyError::Full { source },
            (ControlError::Refused { body, .. }, _) => ProxyError::Refused {
                reply: body.trim_end().to_owned(),
                source,
            },
            _ => ProxyError::UnexpectedReply { source },
        }
    }
}

/// A persistent connection to the control endpoint.
#[derive(Debug)]
pub struct Control {
    socket: PathBuf,
    timeout: Duration,
    conn: Mutex<Option<BufReader<UnixStream>>>,
}

impl Control {
    /// A client of the endpoint at `socket`; nothing is connected yet.
    pub fn new(socket: &Path, timeout: Duration) -> Control {
        Control {
            socket: socket.to_owned(),
            timeout,
            conn: Mutex::new(None),
        }
    }

    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and reads its reply (see [`Control::requests`]).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<Reply, ControlError> {
        let one = [Request {
            method,
            path: path.to_owned(),
            body: body.to_owned(),
        }];
        let mut replies = self.requests(&one).await?;
        Ok(replies.pop().expect("one reply per request"))
    }

    /// Sends `requests` one after the other without waiting for the replies (HTTP/1.1
    /// pipelining: Nginx answers them in order) and reads the replies: one round trip. A
    /// status other than 200 is an error with the endpoint's words, naming its request. A
    /// connection that ends before a reply started (a kept-alive one Nginx closed meanwhile:
    /// a reload, its keepalive timeout or request limit) carries the unanswered requests
    /// again on a new one, which Nginx never read; one that breaks inside a reply is an
    /// error (the request may have been applied).
    pub async fn requests(&self, requests: &[Request<'_>]) -> Result<Vec<Reply>, ControlError> {
        let mut conn = self.conn.lock().await;
        let mut replies = Vec::with_capacity(requests.len());
        let exchanged = async {
            // Each new connection answers at least one request, so this ends.
            let mut fresh_in_a_row = 0;
            while replies.len() < requests.len() {
                if conn.is_none() {
                    let s = UnixStream::connect(&self.socket).await.map_err(|source| {
                        ControlError::Connect {
                            socket: self.socket.clone(),
                            source,
                        }
                    })?;
                    *conn = Some(BufReader::new(s));
                    fresh_in_a_row += 1;
                }
                let c = conn.as_mut().expect("connected");
                let rest = &requests[replies.len()..];
                let what = |i: usize| rest[i].what();
                let written = write_requests(c, rest).await;
                let mut i = 0;
                let outcome = match written {
                    Err(e) => Err(e),
                    Ok(()) => loop {
                        if i == rest.len() {
                            break Ok(());
                        }
                        match read_reply(c).await {
                            Ok(reply) => {
                                replies.push(reply);
                                i += 1;
                            }
                            Err(e) => break Err(e),
                        }
                    },
                };
                match outcome {
                    Ok(()) => {}
                    Err(Exchange::Closed) if fresh_in_a_row < 2 || i > 0 => {
                        *conn = None;
                        if i > 0 {
                            fresh_in_a_row = 0;
                        }
                    }
                    Err(Exchange::Closed) => {
                        return Err(self.io_error(&what(i), io::ErrorKind::UnexpectedEof.into()))
                    }
                    Err(Exchange::Io(e)) => return Err(self.io_error(&what(i), e)),
                    Err(Exchange::Bad(why)) => {
                        return Err(ControlError::BadReply {
                            socket: self.socket.clone(),
                            what: what(i),
                            why,
                        })
                    }
                }
            }
            Ok(())
        };
        let outcome = match tokio::time::timeout(self.timeout, exchanged).await {
            Err(_) => Err(ControlError::Timeout {
                socket: self.socket.clone(),
                what: requests
                    .get(replies.len())
                    .map_or_else(String::new, Request::what),
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => match replies.iter().position(|r| r.status != 200) {
                None => return Ok(replies),
                Some(i) => Err(ControlError::Refused {
                    socket: self.socket.clone(),
                    what: requests[i].what(),
                    status: replies[i].status,
                    body: std::mem::take(&mut replies[i].body),
                }),
            },
        };
        // After an error the connection's place in the stream is unknown (a refusal keeps
        // it usable, but a fresh one costs little).
        *conn = None;
        outcome
    }

    fn io_error(&self, what: &str, source: io::Error) -> ControlError {
        ControlError::Io {
            socket: self.socket.clone(),
            what: what.to_owned(),
            source,
        }
    }

    /// The dict's head (`GET /cutover/runtime`).
    pub async fn head(&self) -> Result<Head, ControlError> {
        let reply = self.request("GET", "/cutover/runtime", "").await?;
        self.parse(&reply, "GET /cutover/runtime").map(|(h, _)| h)
    }

    /// The entries of `map` the dict holds (`GET /cutover/map/<map>`).
    pub async fn dump(&self, map: &str) -> Result<(Head, MapEntries), ControlError> {
        let path = format!("/cutover/map/{map}");
        let reply = self.request("GET", &path, "").await?;
        self.parse(&reply, &format!("GET {path}"))
    }

    /// The entries of each of `maps` the dict holds, asked in one round trip.
    pub async fn dumps(&self, maps: &[&str]) -> Result<Vec<(Head, MapEntries)>, ControlError> {
        let requests: Vec<Request<'_>> = maps
            .iter()
            .map(|map| Request {
                method: "GET",
                path: format!("/cutover/map/{map}"),
                body: String::new(),
            })
            .collect();
        let replies = self.requests(&requests).await?;
        requests
            .iter()
            .zip(&replies)
            .map(|(r, reply)| self.parse(reply, &r.what()))
            .collect()
    }

    /// Applies `lines` (`set <key> <value>` / `del <key>`, at most
    /// [`super::MAX_LINES`]) to `map`, recording `generation` when given; returns the head
    /// and the values of the keys set, read back from the dict.
    pub async fn update(
        &self,
        map: &str,
        lines: &str,
        generation: Option<u64>,
    ) -> Result<(Head, MapEntries), ControlError> {
        let path = match generation {
            Some(g) => format!("/cutover/map/{map}?generation={g}"),
            None => format!("/cutover/map/{map}"),
        };
        let reply = self.request("POST", &path, lines).await?;
        self.parse(&reply, &format!("POST {path}"))
    }

    /// Records `generation` in the dict (`POST /cutover/generation`).
    pub async fn set_generation(&self, generation: u64) -> Result<Head, ControlError> {
        let path = format!("/cutover/generation?generation={generation}");
        let reply = self.request("POST", &path, "").await?;
        self.parse(&reply, &format!("POST {path}")).map(|(h, _)| h)
    }

    fn parse(&self, reply: &Reply, what: &str) -> Result<(Head, MapEntries), ControlError> {
        parse_body(&reply.body).map_err(|why| ControlError::BadReply {
            socket: self.socket.clone(),
            what: what.to_owned(),
            why,
        })
    }
}

/// The head and the `key value` lines of a reply body.
pub fn parse_body(body: &str) -> Result<(Head, MapEntries), String> {
    let mut head = Head::default();
    let mut lines = body.lines();
    let mut seen = 0;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(' ')
            .ok_or_else(|| format!("head line {line:?}"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("head line {line:?}: not a number"))?;
        match name {
            "generation" => head.generation = n,
            "seeded" => head.seeded_ms = n,
            _ => return Err(format!("unknown head line {line:?}")),
        }
        seen += 1;
    }
    if seen < 2 {
        return Err("no generation and seed time".into());
    }
    let mut entries = MapEntries::new();
    for line in lines {
        let (k, v) = line
            .split_once(' ')
            .ok_or_else(|| format!("entry line {line:?}"))?;
        entries.insert(k.to_owned(), v.to_owned());
    }
    Ok((head, entries))
}

/// How one exchange on an open connection failed.
enum Exchange {
    /// The peer had closed the connection before any reply byte.
    Closed,
    Io(io::Error),
    Bad(String),
}

/// Writes `requests` in one go.
async fn write_requests(
    conn: &mut BufReader<UnixStream>,
    requests: &[Request<'_>],
) -> Result<(), Exchange> {
    let mut out = String::new();
    for r in requests {
        out.push_str(&format!(
            "{} {} HTTP/1.1\r\nHost: cutover\r\nContent-Length: {}\r\n\r\n{}",
            r.method,
            r.path,
            r.body.len(),
            r.body
        ));
    }
    conn.get_mut()
        .write_all(out.as_bytes())
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Exchange::Closed,
            _ => Exchange::Io(e),
        })
}

/// Reads one reply: status line, headers, a body of `Content-Length` bytes.
async fn read_reply(conn: &mut BufReader<UnixStream>) -> Result<Reply, Exchange> {
    let mut line = String::new();
    let n = read_line(conn, &mut line).await?;
    if n == 0 {
        return Err(Exchange::Closed);
    }
    let status: u16 = line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Exchange::Bad(format!("status line {:?}", line.trim_end())))?;
    let mut length = None;
    loop {
        line.clear();
        if read_line(conn, &mut line).await? == 0 {
            return Err(Exchange::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| Exchange::Bad("no Content-Length".into()))?;
    if length > MAX_REPLY {
        return Err(Exchange::Bad(format!(
            "a body of {length} bytes (most accepted: {MAX_REPLY})"
        )));
    }
    let mut buf = vec![0; length];
    conn.read_exact(&mut buf).await.map_err(Exchange::Io)?;
    let body = String::from_utf8(buf).map_err(|_| Exchange::Bad("body not UTF-8".into()))?;
    Ok(Reply { status, body })
}

async fn read_line(conn: &mut BufReader<UnixStream>, line: &mut String) -> Result<usize, Exchange> {
    let n = conn
        .take(MAX_HEADER_LINE as u64)
        .read_line(line)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionReset => Exchange::Closed,
            _ => Exchange::Io(e),
        })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let (h, e) =
            parse_body("generation 7\nseeded 1700\n\nweb web_green\napi api_blue\n").unwrap();
        assert_eq!(
            h,
            Head {
                generation: 7,
                seeded_ms: 1700
            }
        );
        assert_eq!(e["web"], "web_green");
        assert_eq!(e.len(), 2);
        let (h, e) = parse_body("generation 0\nseeded 5\n").unwrap();
        assert_eq!(h.seeded_ms, 5);
        assert!(e.is_empty());
        assert!(parse_body("generation x\nseeded 5\n").is_err());
        assert!(parse_body("hello\n").is_err());
        assert!(parse_body("").is_err());
    }

    /// A peer that answers one request per connection (as Nginx does at its
    /// `keepalive_requests` limit) with the request line as the body, then closes.
    async fn one_per_connection(listener: tokio::net::UnixListener) {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            let mut conn = BufReader::new(conn);
            let mut first = String::new();
            conn.read_line(&mut first).await.unwrap();
            // The rest of the request head (no bodies in this test).
            let mut line = String::new();
            while conn.read_line(&mut line).await.unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let body = first.trim_end();
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.get_mut().write_all(reply.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn pipelined_requests_a_closing_peer_left_unanswered_go_again_on_a_new_connection() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        tokio::spawn(one_per_connection(listener));
        let control = Control::new(&socket, Duration::from_secs(5));
        let requests: Vec<Request<'_>> = ["a", "b", "c"]
            .iter()
            .map(|m| Request {
                method: "GET",
                path: format!("/cutover/map/{m}"),
                body: String::new(),
            })
            .collect();
        let replies = control.requests(&requests).await.unwrap();
        let bodies: Vec<&str> = replies.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(
            bodies,
            [
                "GET /cutover/map/a HTTP/1.1",
                "GET /cutover/map/b HTTP/1.1",
                "GET /cutover/map/c HTTP/1.1"
            ]
        );
    }
}
