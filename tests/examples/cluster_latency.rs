//! Measures, with three hosts on loopback (HAProxy + agent each, peered over mutual TLS), the
//! time from issuing `cutover switch --cluster` to all three hosts serving the new colour
//! (each polled on new connections), over N switches.
//!
//! `cargo run --release -p cutover-tests --example cluster_latency [N]` (default N = 30).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_tests::cluster::{cluster, HOST};
use cutover_tests::http::{get_body_blocking, percentile};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(30, |a| a.parse().expect("N"));
    let c = cluster(["", "", ""]).expect("haproxy installed");
    let addrs: Vec<SocketAddr> = c.hosts.iter().map(|h| h.haproxy().frontend()).collect();
    let binary = cutover_tests::cutover_binary();
    let mut all_new = Vec::with_capacity(n);
    let mut replied = Vec::with_capacity(n);
    let mut colour = "green";
    for _ in 0..n {
        let t0 = Instant::now();
        let mut child = Command::new(&binary)
            .arg("--config")
            .arg(&c.hosts[0].config)
            .args(["switch", "web", colour, "--cluster"])
            .stdout(Stdio::null())
            .spawn()
            .expect("run cutover");
        // Poll every host in turn until each has served the new colour once.
        let mut seen = [false; 3];
        let deadline = t0 + Duration::from_secs(10);
        while !seen.iter().all(|s| *s) && Instant::now() < deadline {
            for (i, addr) in addrs.iter().enumerate() {
                if !seen[i] && get_body_blocking(*addr, HOST).as_deref() == Some(colour) {
                    seen[i] = true;
                }
            }
        }
        all_new.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(
            child.wait().expect("wait").success(),
            "cluster switch failed"
        );
        replied.push(t0.elapsed().as_secs_f64() * 1e3);
        assert!(seen.iter().all(|s| *s), "not every host switched");
        colour = if colour == "green" { "blue" } else { "green" };
    }
    all_new.sort_by(f64::total_cmp);
    replied.sort_by(f64::total_cmp);
    println!(
        "{n} cluster switches over 3 hosts: issue -> all hosts serving the new colour: median {:.1} ms, p99 {:.1} ms; issue -> CLI exit: median {:.1} ms, p99 {:.1} ms",
        percentile(&all_new, 0.5),
        percentile(&all_new, 0.99),
        percentile(&replied, 0.5),
        percentile(&replied, 0.99),
    );
}
