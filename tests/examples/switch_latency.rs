//! Measures, on loopback with real HAProxy, the time from issuing `cutover switch` to the
//! first response in the new colour (polled on new connections), over N switches, for a
//! service with 2 routes and one with 100,000 routes.
//!
//! `cargo run --release -p cutover-tests --example switch_latency [N]` (default N = 30).
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_tests::agent::{Setup, SetupOptions};
use cutover_tests::http::{get_body_blocking, percentile};

const HOST: &str = "www.example.test";

fn run(label: &str, options: SetupOptions, n: usize) {
    let haproxy = cutover_tests::proxy_binary("haproxy").expect("haproxy installed");
    let mut setup = Setup::new(&haproxy, options);
    setup.start_agent();
    let addr = setup.haproxy().frontend();
    let binary = cutover_tests::cutover_binary();
    let mut to_first = Vec::with_capacity(n);
    let mut to_reply = Vec::with_capacity(n);
    let mut colour = "green";
    for _ in 0..n {
        let seen: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (seen, stop, colour) = (seen.clone(), stop.clone(), colour.to_owned());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if get_body_blocking(addr, HOST).as_deref() == Some(colour.as_str()) {
                        *seen.lock().unwrap() = Some(Instant::now());
                        return;
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20)); // the poller is running
        let t0 = Instant::now();
        let status = Command::new(&binary)
            .arg("--config")
            .arg(&setup.config)
            .args(["switch", "web", colour])
            .stdout(Stdio::null())
            .status()
            .expect("run cutover switch");
        let replied = t0.elapsed();
        assert!(status.success(), "switch failed");
        poller.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        let first = seen.lock().unwrap().expect("new colour seen") - t0;
        to_first.push(first.as_secs_f64() * 1e3);
        to_reply.push(replied.as_secs_f64() * 1e3);
        colour = if colour == "green" { "blue" } else { "green" };
    }
    to_first.sort_by(f64::total_cmp);
    to_reply.sort_by(f64::total_cmp);
    println!(
        "{label}: {n} switches: issue -> first new-colour response: median {:.2} ms, p99 {:.2} ms, max {:.2} ms; issue -> CLI exit: median {:.2} ms, p99 {:.2} ms",
        percentile(&to_first, 0.5),
        percentile(&to_first, 0.99),
        to_first[n - 1],
        percentile(&to_reply, 0.5),
        percentile(&to_reply, 0.99),
    );
    setup.stop_agent();
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N"))
        .unwrap_or(30);
    run("2 routes", SetupOptions::default(), n);
    let mut routes: Vec<String> = vec![HOST.into()];
    routes.extend((0..100_000).map(|i| format!("h{i}.example.test")));
    run(
        "100k routes",
        SetupOptions {
            routes,
            routes_in_file: true,
            ..SetupOptions::default()
        },
        n,
    );
}
