//! The agent's servers: one accept loop ([`serve`]) shared by the unix control socket, the
//! peer listener (mutual TLS, its handshake in `peers::server`) and the metrics endpoint, and
//! the control socket itself.
//!
//! [`serve`] takes its listener and a shutdown future, so it runs as well inside a test as
//! in the agent. It caps concurrent connections (one over the cap gets the listener's
//! [`Listener::refuse`] and is closed), runs each connection in a task of its own, and on
//! shutdown stops accepting, closes the listener and gives open connections
//! [`Bounds::drain_grace`] to finish. What a connection speaks is the handler's business:
//! the JSON-lines [`protocol`] of [`lines`] for the control socket and the peers, HTTP for
//! the metrics.
//!
//! The control socket is created with its final mode (the umask is tightened while
//! binding), so it is never reachable by more users than meant, and names each peer by the
//! credentials the kernel reports for it (for the access check of [`crate::access`] and the
//! journal).
//!
//! [`protocol`]: crate::protocol

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::protocol::Reply;
use crate::requester::{Names, Requester};

pub mod budget;
pub mod lines;
pub mod users;

pub use budget::{Ledger, PeerBudget, PeerId, Refusal};
pub use lines::{Envelope, GroupLookup, Handshake, Limits, Requests};

/// Time open connections of the control socket and the peer listener get to finish when
/// the agent shuts down.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Longest wait for the user database when looking up a peer's groups and names; past it
/// the peer is judged by its uid and primary gid only, and journaled without names.
pub const GROUP_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Pause after a failed `accept` (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where [`serve`] takes its connections from.
pub trait Listener: Send + 'static {
    /// A connection as accepted, before any handshake.
    type Conn: Send + 'static;
    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
    /// Who is on `conn`, for a per-user budget; `None` when the listener cannot tell.
    fn peer(_conn: &Self::Conn) -> Option<PeerId> {
        None
    }
    /// Answers a connection refused for `why` (best effort, without waiting on the peer)
    /// and closes it.
    fn refuse(conn: Self::Conn, why: Refusal) -> impl Future<Output = ()> + Send + 'static;
}

/// What [`serve`] does with each accepted connection: serves it to its end, in a task of
/// its own.
pub trait Handler<C>: Send + 'static {
    /// Serves one connection.
    fn handle(&mut self, conn: C) -> impl Future<Output = ()> + Send + 'static;
}

impl<C, F, Fut> Handler<C> for F
where
    F: FnMut(C) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(&mut self, conn: C) -> impl Future<Output = ()> + Send + 'static {
        self(conn)
    }
}

/// Bounds of one server.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// What is served, for the log (`control`, `peer`, `metrics`).
    pub name: &'static str,
    /// Concurrent connections.
    pub max_connections: usize,
    /// The budget of each user and the slots kept for administrators (the control
    /// socket); `None`: only the cap.
    pub budget: Option<PeerBudget>,
    /// Time open connections get to finish at shutdown; the rest are cut.
    pub drain_grace: Duration,
}

/// Serves connections from `listener` with `handler` until `shutdown` completes, then
/// closes the listener and drains (see the module doc).
pub async fn serve<L, H>(
    mut listener: L,
    bounds: Bounds,
    mut handler: H,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    H: Handler<L::Conn>,
{
    let ledger = Ledger::new(bounds.name, bounds.max_connections, bounds.budget.clone());
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let conn = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(server = bounds.name, error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                match ledger.admit(L::peer(&conn)) {
                    Ok(ticket) => {
                        let served = handler.handle(conn);
                        tasks.spawn(async move {
                            served.await;
                            drop(ticket);
                        });
                    }
                    Err(why) => {
                        tracing::debug!(server = bounds.name, "refused: {why}");
                        tasks.spawn(L::refuse(conn, why));
                    }
                }
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(bounds.drain_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            server = bounds.name,
            "{} connections cut at shutdown",
            tasks.len()
        );
        tasks.abort_all();
    }
}

/// The control socket: peers are named by their credentials, and a refused connection
/// gets one error line (written only if the socket takes it at once) and is closed.
impl Listener for UnixListener {
    type Conn = UnixStream;

    async fn accept(&mut self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(s, _)| s)
    }

    fn peer(conn: &UnixStream) -> Option<PeerId> {
        let cred = conn.peer_cred().ok()?;
        Some(PeerId {
            uid: cred.uid(),
            gid: cred.gid(),
        })
    }

    async fn refuse(conn: UnixStream, why: Refusal) {
        let reply = Reply::error(why.to_string(), serde_json::Value::Null);
        let mut line = reply.to_line();
        line.push('\n');
        // A fresh socket's buffer takes one line; a peer that cannot take it loses it.
        let _ = conn.try_write(line.as_bytes());
        let _ = conn
            .into_std()
            .map(|s| s.shutdown(std::net::Shutdown::Both));
    }
}

/// The peer listener and the metrics endpoint: a connection over the cap is closed
/// unanswered (nothing can be said before a TLS handshake; a scraper retries).
impl Listener for TcpListener {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn refuse(_conn: TcpStream, _why: Refusal) {}
}

/// Binds the control socket at `path` with `mode` and optional group: a stale socket file
/// left by a previous run is replaced, a live one (another agent answering) is an error.
pub async fn bind(path: &Path, mode: u32, group: Option<&str>) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another running agent", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // The socket file gets its mode from the umask: create it owner-only, then open it up
    // to the group (after the group is set), never wider than configured in between.
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound?;
    crate::fsio::set_mode_group(path, mode, group)?;
    Ok(listener)
}

/// Names the peer of a control-socket connection; `groups` says whether its groups are
/// looked up in the user database.
#[derive(Debug, Clone, Default)]
pub struct PeerCredentials {
    /// Whether to look up the peer's groups.
    pub groups: GroupLookup,
    /// What the user database answered lately ([`users::TTL`]).
    pub lookups: users::Lookups,
}

impl Handshake for PeerCredentials {
    type Conn = UnixStream;
    type Stream = UnixStream;

    fn establish(
        &self,
        conn: UnixStream,
    ) -> impl Future<Output = io::Result<(UnixStream, Requester)>> + Send + 'static {
        let groups = self.groups.clone();
        let lookups = self.lookups.clone();
        async move {
            let who = requester(&conn, &groups, &lookups).await;
            Ok((conn, who))
        }
    }
}

/// The peer credentials of the connection, the names of its uid and gid, and, when
/// `groups` is on, the groups the user database lists for its uid: as `lookups` has them
/// from the last [`users::TTL`], or else looked up off the async thread, at most
/// [`GROUP_LOOKUP_TIMEOUT`] (the lookup may go to NSS).
async fn requester(
    stream: &UnixStream,
    groups: &GroupLookup,
    lookups: &users::Lookups,
) -> Requester {
    let cred = stream.peer_cred().ok();
    let uid = cred.map(|c| c.uid());
    let gid = cred.map(|c| c.gid());
    let with_groups = groups.enabled();
    let peer = (uid, gid, with_groups);
    let (groups, names) = match lookups.recent(peer) {
        Some(found) => found,
        None => {
            let lookup = tokio::task::spawn_blocking(move || {
                let groups = match uid.filter(|_| with_groups) {
                    Some(uid) => crate::access::user_groups(uid),
                    None => vec![],
                };
                (groups, Names::resolve(uid, gid))
            });
            match tokio::time::timeout(GROUP_LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok((groups, names))) => {
                    lookups.found(peer, groups.clone(), names.clone());
                    (groups, names)
                }
                Ok(Err(_)) => Default::default(),
                Err(_) => {
                    tracing::warn!(uid, "the user database did not answer within {GROUP_LOOKUP_TIMEOUT:?}; judging the peer by uid and gid only, journaling it without names");
                    (vec![], Names::default())
                }
            }
        }
    };
    Requester::Local {
        uid,
        gid,
        pid: cred.and_then(|c| c.pid()),
        groups,
        names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{http, Metrics, CONTENT_TYPE};
    use crate::protocol::Status;
    use std::net::SocketAddr;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::sync::mpsc;

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_scrapes_and_refuses_the_rest() {
        let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = http::Limits {
            timeout: Duration::from_millis(300),
            ..http::Limits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bounds = Bounds {
            name: "metrics",
            max_connections: limits.max_connections,
            budget: None,
            drain_grace: http::DRAIN_GRACE,
        };
        let metrics = Metrics::new();
        let scrape = move |s| http::connection(s, metrics.clone(), limits);
        let server = tokio::spawn(serve(listener, bounds, scrape, async {
            let _ = stopped.await;
        }));

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{ok}"
        );
        assert!(body.contains("# TYPE cutover_applies counter"), "{body}");

        let head_only = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");

        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");

        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        let big = exchange(addr, big.as_bytes()).await;
        assert!(big.starts_with("HTTP/1.1 431"), "{big}");

        // A client that never finishes its request is answered 408 and closed.
        let slow = exchange(addr, b"GET /metrics HTTP/1.1\r\n").await;
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");

        stop.send(()).unwrap();
        server.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    #[tokio::test]
    async fn the_control_socket_names_its_peers_caps_connections_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cutover.sock");
        let listener = bind(&path, 0o600, None).await.unwrap();
        let limits = Limits {
            max_connections: 1,
            max_line: 1024,
            read_timeout: Duration::from_secs(5),
            groups: GroupLookup::new(false),
        };
        let bounds = Bounds {
            name: "control",
            max_connections: limits.max_connections,
            budget: None,
            drain_grace: DRAIN_GRACE,
        };
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let handshake = PeerCredentials {
            groups: limits.groups.clone(),
            ..PeerCredentials::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            bounds,
            Requests::new(handshake, limits, tx),
            async {
                let _ = stopped.await;
            },
        ));
        let engine = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(env) = rx.recv().await {
                seen.push((env.command.verb(), env.requester));
                let _ = env.reply.send(Reply::ok("fine", serde_json::Value::Null));
            }
            seen
        });

        let mut first = BufReader::new(UnixStream::connect(&path).await.unwrap());
        first
            .get_mut()
            .write_all(b"{\"cmd\": \"status\"}\n")
            .await
            .unwrap();
        let mut line = String::new();
        first.read_line(&mut line).await.unwrap();
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(reply.status, Status::Ok, "{line}");

        // The one permit is taken: the next connection gets one error line.
        let mut second = UnixStream::connect(&path).await.unwrap();
        let mut refused = String::new();
        second.read_to_string(&mut refused).await.unwrap();
        assert!(
            refused.contains("too many control connections (at most 1); try again"),
            "{refused}"
        );

        drop(first);
        stop.send(()).unwrap();
        server.await.unwrap();
        let seen = engine.await.unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert!(
            matches!(
                seen.as_slice(),
                [("status", Requester::Local { uid: Some(uid), pid: Some(_), .. })] if *uid == me
            ),
            "{seen:?}"
        );
    }
}
