//! Nginx's access log as counters for the post-switch watch: the shipped template sends one
//! syslog message per request of a watched service to a unix datagram socket the agent
//! binds ([`Listener`]), and each message is parsed as it arrives ([`parse`]) into
//! cumulative counters per upstream ([`AccessStats`]), the same counters HAProxy's
//! `show stat` gives.
//!
//! The message body the template writes (`log_format cutover_watch`) is
//! `cutover-watch-1 <upstream> <status> <upstream_response_time>`, after the syslog header
//! Nginx adds (`<190>Nov 23 10:00:00 cutover: `). Only upstreams of the config are counted,
//! so a bounded set of counters whatever arrives; anything else is counted as rejected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UnixDatagram;

use crate::proxy::BackendStats;

/// What starts the body of a message, and names its format version.
pub const MARKER: &str = "cutover-watch-1 ";
/// Largest message read; Nginx's syslog messages are at most 4 KiB and ours are short.
pub const MAX_MESSAGE: usize = 2048;
/// Response times averaged for [`BackendStats::avg_response_ms`]: the most recent ones.
pub const LATENCY_WINDOW: usize = 256;
/// Mode of the socket: Nginx's workers (in its group) may write to it.
pub const SOCKET_MODE: u32 = 0o660;

/// One request as the access log tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// The upstream the request was sent to.
    pub upstream: &'a str,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Time the upstream took, in milliseconds (the sum over the tries; 0 when none).
    pub response_ms: f64,
}

/// Parses one syslog message; `None` when it is not one of ours or is malformed.
pub fn parse(message: &[u8]) -> Option<Line<'_>> {
    let text = std::str::from_utf8(message).ok()?;
    let body = &text[text.find(MARKER)? + MARKER.len()..];
    let mut fields = body.trim_end().splitn(3, ' ');
    let upstream = fields.next().filter(|u| !u.is_empty() && *u != "-")?;
    let status: u16 = fields.next()?.parse().ok()?;
    if !(100..=599).contains(&status) {
        return None;
    }
    // `$upstream_response_time`: "0.004", "-", or one value per try ("0.001, 0.002",
    // "0.001 : 0.002" across internal redirects), in seconds.
    let response_ms = fields
        .next()
        .unwrap_or("-")
        .split([',', ':', ' '])
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .sum::<f64>()
        * 1000.0;
    Some(Line {
        upstream,
        status,
        response_ms,
    })
}

/// Counters of one upstream since the agent started.
#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    errors_5xx: u64,
    /// The latest response times, microseconds, as a ring of [`LATENCY_WINDOW`].
    recent: Vec<u32>,
    /// Next slot of `recent` to overwrite once it is full.
    next: usize,
}

impl Counters {
    fn record(&mut self, line: &Line) {
        self.requests += 1;
        if line.status >= 500 {
            self.errors_5xx += 1;
        }
        let micros = (line.response_ms * 1000.0).min(u32::MAX as f64) as u32;
        if self.recent.len() < LATENCY_WINDOW {
            self.recent.push(micros);
        } else {
            self.recent[self.next] = micros;
            self.next = (self.next + 1) % LATENCY_WINDOW;
        }
    }

    fn stats(&self) -> BackendStats {
        let n = self.recent.len().max(1) as u64;
        let sum: u64 = self.recent.iter().map(|&m| m as u64).sum();
        BackendStats {
            requests: self.requests,
            errors_5xx: self.errors_5xx,
            avg_response_ms: sum / n / 1000,
            ..BackendStats::default()
        }
    }
}

/// Cumulative counters per upstream, fed by the [`Listener`] and read by the watch.
#[derive(Debug)]
pub struct AccessStats {
    known: BTreeSet<String>,
    counters: Mutex<BTreeMap<String, Counters>>,
    /// Messages that were not ours, malformed, or named an unknown upstream.
    rejected: AtomicU64,
}

impl AccessStats {
    /// Counts the requests of these upstreams only.
    pub fn new(upstreams: impl IntoIterator<Item = String>) -> AccessStats {
        AccessStats {
            known: upstreams.into_iter().collect(),
            counters: Mutex::new(BTreeMap::new()),
            rejected: AtomicU64::new(0),
        }
    }

    /// Counts one message.
    pub fn record(&self, message: &[u8]) {
        match parse(message).filter(|l| self.known.contains(l.upstream)) {
            Some(line) => self
                .counters
                .lock()
                .expect("access stats lock")
                .entry(line.upstream.to_string())
                .or_default()
                .record(&line),
            None => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters of `upstream` (zeros before its first request).
    pub fn stats(&self, upstream: &str) -> BackendStats {
        self.counters
            .lock()
            .expect("access stats lock")
            .get(upstream)
            .map(Counters::stats)
            .unwrap_or_default()
    }

    /// Messages not counted.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

/// The bound socket; reading stops when it is dropped (the task is aborted).
#[derive(Debug)]
pub struct Listener {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Binds `path` (replacing a socket left by an earlier run, refusing any other file),
    /// gives it `group` (if any) and [`SOCKET_MODE`], and counts every message into `stats`
    /// until dropped.
    pub fn bind(
        path: &Path,
        group: Option<&str>,
        stats: Arc<AccessStats>,
    ) -> std::io::Result<Listener> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                std::fs::remove_file(path)?
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(_) => {}
        }
        // Created owner-only, opened to the group once it has its group.
        use nix::sys::stat::{umask, Mode};
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixDatagram::bind(path);
        umask(old);
        let socket = bound?;
        crate::fsio::set_mode_group(path, SOCKET_MODE, group)?;
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                match socket.recv(&mut buf).await {
                    Ok(n) => stats.record(&buf[..n]),
                    Err(e) => {
                        tracing::warn!("nginx access log socket: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Listener {
            path: path.to_path_buf(),
            task,
        })
    }

    /// The socket path Nginx sends its access-log lines to; removed when the listener is
    /// dropped.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_nginx_sends() {
        let l =
            parse(b"<190>Nov 23 10:00:00 cutover: cutover-watch-1 web_green 503 0.012").unwrap();
        assert_eq!(
            (l.upstream, l.status, l.response_ms.round()),
            ("web_green", 503, 12.0)
        );
        let tries = parse(b"<190>x: cutover-watch-1 web_blue 200 0.001, 0.002 : 0.003\n").unwrap();
        assert_eq!((tries.response_ms * 1000.0).round(), 6000.0);
        let none = parse(b"cutover-watch-1 web_blue 502 -").unwrap();
        assert_eq!(none.response_ms, 0.0);
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        for m in [
            &b"<190>Nov 23 10:00:00 nginx: GET / 200"[..],
            b"cutover-watch-1 web_blue",
            b"cutover-watch-1 web_blue 2000 0.1",
            b"cutover-watch-1 - 404 -",
            b"cutover-watch-1 web_blue abc 0.1",
            b"\xffcutover-watch-1 web_blue 200 0.1\xfe",
        ] {
            assert_eq!(parse(m), None, "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn counts_known_upstreams_only() {
        let stats = AccessStats::new(["web_blue".to_string()]);
        for status in [200, 500, 503, 404] {
            stats.record(format!("cutover-watch-1 web_blue {status} 0.010").as_bytes());
        }
        stats.record(b"cutover-watch-1 other 500 0.010");
        stats.record(b"garbage");
        assert_eq!(
            stats.stats("web_blue"),
            BackendStats {
                requests: 4,
                errors_5xx: 2,
                avg_response_ms: 10,
                ..BackendStats::default()
            }
        );
        assert_eq!(stats.stats("other"), BackendStats::default());
        assert_eq!(stats.rejected(), 2);
    }

    #[test]
    fn latency_is_the_average_of_the_latest_responses() {
        let stats = AccessStats::new(["b".to_string()]);
        for _ in 0..LATENCY_WINDOW {
            stats.record(b"cutover-watch-1 b 200 1.000");
        }
        assert_eq!(stats.stats("b").avg_response_ms, 1000);
        for _ in 0..LATENCY_WINDOW {
            stats.record(b"cutover-watch-1 b 200 0.002");
        }
        assert_eq!(stats.stats("b").avg_response_ms, 2);
    }

    #[tokio::test]
    async fn counts_datagrams_as_they_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.sock");
        let stats = Arc::new(AccessStats::new(["web_green".to_string()]));
        let listener = Listener::bind(&path, None, stats.clone()).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        for _ in 0..10 {
            client
                .send_to(
                    b"<190>Nov 23 10:00:00 cutover: cutover-watch-1 web_green 500 0.001",
                    &path,
                )
                .await
                .unwrap();
        }
        for _ in 0..100 {
            if stats.stats("web_green").requests == 10 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(stats.stats("web_green").errors_5xx, 10);
        drop(listener);
        assert!(!path.exists(), "the socket goes with the listener");
    }
}
