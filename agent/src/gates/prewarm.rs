//! Pre-warm: before traffic moves to a colour, send it a configured number of requests
//! (caches filled, connections opened, code paths loaded) and refuse the switch when too
//! many fail. Bounded in requests, concurrency and total time.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::probe;
use crate::config::PrewarmConfig;

use crate::protocol::PrewarmReport;

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
                return Some("not sent within the pre-warm's total time".to_owned());
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(timeout);
            match tokio::time::timeout(left, probe::get_status(server, path)).await {
                Err(_) => Some(format!(
                    "no answer within {} ms on {path}",
                    left.as_millis()
                )),
                Ok(Err(e)) => Some(format!("{e} on {path}")),
                Ok(Ok(status)) if status < 400 => None,
                Ok(Ok(status)) => Some(format!("{status} on {path}")),
            }
        }
    });
    // The failure of each request, described as the report counts it; `None`: answered.
    let results: Vec<Option<String>> = stream::iter(jobs)
        .buffer_unordered(config.concurrency)
        .collect()
        .await;
    let mut report = PrewarmReport {
        sent: results.len() as u32,
        ..PrewarmReport::default()
    };
    for e in results.into_iter().flatten() {
        report.failed += 1;
        *report.failures.entry(e).or_default() += 1;
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

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
