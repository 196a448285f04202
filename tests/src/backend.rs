//! `Backend`: a tiny HTTP/1.1 origin server on 127.0.0.1 that the proxies under test route to.
//!
//! It runs on its own thread with its own Tokio runtime, so it keeps answering whatever the
//! test does meanwhile (blocking calls, another runtime, none at all).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Largest request head accepted, in bytes (64 KiB); larger ones close the connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest delay a `/slow/<ms>` request asks for that is honoured, in milliseconds.
pub const MAX_DELAY_MS: u64 = 10_000;

/// Largest request body read and discarded, in bytes (1 MiB).
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// A running origin server. Every request gets `200 OK` with the configured body (or `500`
/// while [`Backend::set_failing`] is on); a request for `/slow/<ms>` is answered after that
/// many milliseconds (at most [`MAX_DELAY_MS`]). Connections are kept alive unless the
/// client asks otherwise. Stops on drop.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    body: Mutex<String>,
    failing: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
}

impl Backend {
    /// Starts a server on a free loopback port answering `body` (e.g. `"blue"`). Returns
    /// once it accepts connections. Panics if the thread or runtime cannot be created.
    pub fn start(body: &str) -> Backend {
        let listener = crate::ports::bind_free();
        let addr = listener.local_addr().expect("backend local address");
        listener
            .set_nonblocking(true)
            .expect("backend listener non-blocking");
        let shared = Arc::new(Shared {
            body: Mutex::new(body.to_owned()),
            failing: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let (tx, rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("backend-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("backend runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("backend listener");
                    serve(listener, thread_shared, rx).await;
                });
                // Dropping the runtime here cancels the connection tasks and closes them.
            })
            .expect("backend thread");
        Backend {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The address it listens on (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far (health checks included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// While `true`, every request is answered `500 Internal Server Error` (same body).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Changes the body of later responses.
    pub fn set_body(&self, body: &str) {
        *self.shared.body.lock().unwrap_or_else(|e| e.into_inner()) = body.to_owned();
    }

    /// Stops accepting, closes all connections and joins the server thread.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(connection(stream, shared.clone()));
                }
            }
        }
    }
}

/// Serves requests on one connection until the client closes it or asks to.
async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader).await {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(ms) = request.delay_ms {
            tokio::time::sleep(std::time::Duration::from_millis(ms.min(MAX_DELAY_MS))).await;
        }
        let failing = shared.failing.load(Ordering::SeqCst);
        let body = shared
            .body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let status = if failing {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !request.keep_alive {
            response.push_str("Connection: close\r\n");
        }
        response.push_str("\r\n");
        if !request.head_only {
            response.push_str(&body);
        }
        if write.write_all(response.as_bytes()).await.is_err() || !request.keep_alive {
            return;
        }
    }
}

struct Request {
    keep_alive: bool,
    head_only: bool,
    /// From a `/slow/<ms>` path.
    delay_ms: Option<u64>,
}

/// Reads one request head and discards its body; `None` on EOF, error or a malformed or
/// unsupported request (the connection is then closed).
async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Option<Request> {
    let mut line = String::new();
    let mut head_bytes = 0;
    let mut request_line = None;
    let mut content_length = 0u64;
    let mut connection = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await.ok()?;
        if n == 0 {
            return None;
        }
        head_bytes += n;
        if head_bytes > MAX_HEAD_BYTES {
            return None;
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if request_line.is_none() {
            if text.is_empty() {
                continue; // tolerated empty lines before a request
            }
            request_line = Some(text.to_owned());
            continue;
        }
        if text.is_empty() {
            break;
        }
        let (name, value) = text.split_once(':')?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse().ok()?,
            "connection" => connection = value.to_ascii_lowercase(),
            "transfer-encoding" => return None, // chunked uploads are not needed by tests
            _ => {}
        }
    }
    let request_line = request_line?;
    let mut parts = request_line.split_ascii_whitespace();
    let method = parts.next()?;
    let path = parts.next().unwrap_or("/");
    let version = parts.next().unwrap_or("HTTP/1.0");
    let delay_ms = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok());
    if content_length > MAX_BODY_BYTES {
        return None;
    }
    let mut body = reader.take(content_length);
    tokio::io::copy(&mut body, &mut tokio::io::sink())
        .await
        .ok()?;
    let keep_alive = if version == "HTTP/1.1" {
        !connection.contains("close")
    } else {
        connection.contains("keep-alive")
    };
    Some(Request {
        keep_alive,
        head_only: method == "HEAD",
        delay_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{self, KeepAliveClient};

    #[tokio::test]
    async fn answers_keeps_alive_fails_on_demand_and_stops() {
        let backend = Backend::start("blue");
        let mut client = KeepAliveClient::connect(backend.addr()).await.unwrap();
        assert_eq!(client.get("a.example").await.unwrap(), (200, "blue".into()));
        backend.set_body("green");
        assert_eq!(
            client.get("a.example").await.unwrap(),
            (200, "green".into())
        );
        backend.set_failing(true);
        assert_eq!(client.get("a.example").await.unwrap().0, 500);
        assert_eq!((backend.connections(), backend.requests()), (1, 3));
        assert!(client.is_open());

        backend.set_failing(false);
        assert_eq!(
            http::get(backend.addr(), "b.example").await.unwrap(),
            (200, "green".into())
        );
        let head = http::request(backend.addr(), "HEAD", "b.example", "/")
            .await
            .unwrap();
        assert_eq!((head.status, head.body.as_str()), (200, ""));
        assert_eq!(backend.connections(), 3);

        let addr = backend.addr();
        backend.stop();
        assert!(
            client.get("a.example").await.is_err(),
            "connection closed on stop"
        );
        assert!(!client.is_open());
        assert!(
            http::get(addr, "a.example").await.is_err(),
            "listener closed on stop"
        );
    }
}
