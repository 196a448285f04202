//! Pre-warm: before traffic moves to a colour, send it a configured number of requests
//! (caches filled, connections opened, code paths loaded) and refuse the switch when too
//! many fail. Bounded in requests, concurrency and total time.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Deserialize;

use super::probe;

/// Most requests one pre-warm may send.
pub const MAX_REQUESTS: u32 = 100_000;
/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 64;

/// `[services.prewarm]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrewarmConfig {
    /// Paths requested, in turn. Default `["/"]`.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// Requests in all, spread over the colour's servers. Default 100.
    #[serde(default = "default_requests")]
    pub requests: u32,
    /// Requests in flight at once. Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time of one request, milliseconds. Default 2000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Time of the whole pre-warm, milliseconds; requests not sent by then count as failed.
    /// Default 30000.
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
    /// Highest share of failed requests (status >= 400, or no answer), percent. Default 0.
    #[serde(default)]
    pub max_failure_percent: f64,
}

fn default_paths() -> Vec<String> {
    vec!["/".into()]
}
fn default_requests() -> u32 {
    100
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_total_ms() -> u64 {
    30_000
}

impl PrewarmConfig {
    /// Problems with this table, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.paths.is_empty() || self.paths.len() > 100 {
            p.push(format!("{at}.paths: 1 to 100 paths"));
        }
        for path in &self.paths {
            if !path.starts_with('/')
                || path.len() > 1024
                || !path.chars().all(|c| c.is_ascii_graphic())
            {
                p.push(format!(
                    "{at}.paths: {path:?} must start with '/' and be printable ASCII"
                ));
            }
        }
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            p.push(format!(
                "{at}.requests: {} is outside 1..={MAX_REQUESTS}",
                self.requests
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            p.push(format!(
                "{at}.concurrency: {} is outside 1..={MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            p.push(format!(
                "{at}.timeout_ms: {} is outside 1..=60000",
                self.timeout_ms
            ));
        }
        if !(1..=600_000).contains(&self.total_ms) {
            p.push(format!(
                "{at}.total_ms: {} is outside 1..=600000",
                self.total_ms
            ));
        }
        if !(0.0..=100.0).contains(&self.max_failure_percent) {
            p.push(format!("{at}.max_failure_percent: outside 0..=100"));
        }
        p
    }
}

pub use crate::protocol::PrewarmReport;

/// Sends the configured requests to `servers` (`host:port`), round robin over servers and
/// paths. Returns the report; the caller compares it with `max_failure_percent`.
pub async fn run(config: &PrewarmConfig, servers: &[String]) -> PrewarmReport {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(config.total_ms);
    let timeout = Duration::from_millis(config.timeout_ms);
    let jobs = (0..config.requests).map(|i| {
        let server = &servers[i as usize % servers.len().max(1)];
        let path = &config.paths[i as usize % config.paths.len()];
        async move {
            if Instant::now() >= deadline || servers.is_empty() {
                return Err("not sent within the pre-warm's total time".to_owned());
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(timeout);
            match tokio::time::timeout(left, probe::get_status(server, path)).await {
                Err(_) => Err(format!(
                    "no answer within {} ms on {path}",
                    left.as_millis()
                )),
                Ok(Err(e)) => Err(format!("{e} on {path}")),
                Ok(Ok(status)) if status < 400 => Ok(()),
                Ok(Ok(status)) => Err(format!("{status} on {path}")),
            }
        }
    });
    let results: Vec<Result<(), String>> = stream::iter(jobs)
        .buffer_unordered(config.concurrency)
        .collect()
        .await;
    let mut report = PrewarmReport {
        sent: results.len() as u32,
        ..PrewarmReport::default()
    };
    for e in results.into_iter().filter_map(Result::err) {
        report.failed += 1;
        *report.failures.entry(e).or_default() += 1;
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let c: PrewarmConfig =
            toml::from_str("requests = 0\nconcurrency = 1000\npaths = [\"x\"]").unwrap();
        assert_eq!(c.problems("p").len(), 3);
        let ok: PrewarmConfig = toml::from_str("").unwrap();
        assert!(ok.problems("p").is_empty());
        assert_eq!((ok.requests, ok.concurrency), (100, 4));
    }

    #[tokio::test]
    async fn counts_failures_by_kind() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut n = 0u32;
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                n += 1;
                let status = if n % 2 == 0 { "500 Oops" } else { "200 OK" };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let c = PrewarmConfig {
            requests: 10,
            concurrency: 1,
            ..toml::from_str("").unwrap()
        };
        let r = run(&c, &[addr]).await;
        assert_eq!(r.sent, 10);
        assert_eq!(r.failed, 5);
        assert_eq!(r.failures["500 on /"], 5);
        assert_eq!(r.failure_percent(), 50.0);
    }
}
