//! Measures, on loopback under load, how long after `cutover switch` only the new colour
//! reaches new connections through Nginx, next to a plain rewrite-the-map-and-SIGHUP in the
//! same run.
//!
//! ```sh
//! cargo run --release -p cutover-tests --example nginx_switch_latency -- [--switches 30] [--routes 2] [--clients 4]
//! ```
//!
//! One Nginx (2 workers, shipped templates) in front of two origins, driven by closed-loop
//! clients: `--clients` making one request per new connection, as many on kept-alive
//! connections. Phase 1 runs `cutover switch` (the agent confirms each reload) `--switches`
//! times, alternating colours, one second apart. Phase 2 stops the agent and does the same
//! by hand: rewrite the services map, `kill -HUP` the master. For each switch, started at
//! t0, it reports when the last new connection that still got the old colour was opened
//! (after that, only the new colour), the first new-colour answer on a new and on a
//! kept-alive connection, and the requests that failed. Results go to stdout as a table.
//! The service does not drain the colour that lost its traffic (`drain_after_switch =
//! false`), so both methods change the same thing: the services map.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_tests::agent::{Setup, SetupOptions};
use cutover_tests::http::percentile;
use cutover_tests::{get, KeepAliveClient};
use nix::sys::signal::Signal;

const HOST: &str = "www.example.test";
/// Time from one switch to the next: previous workers drain, the reload gap passes.
const SPACING: Duration = Duration::from_millis(1000);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    New,
    KeepAlive,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Got {
    Blue,
    Green,
    Failed,
}

struct Sample {
    start: Instant,
    kind: Kind,
    got: Got,
}

fn colour(body: &str) -> Got {
    match body {
        "blue" => Got::Blue,
        "green" => Got::Green,
        _ => Got::Failed,
    }
}

struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Runtime,
}

impl Load {
    fn start(addr: std::net::SocketAddr, clients: usize) -> Load {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let samples = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..clients {
            let (new_samples, new_stop) = (samples.clone(), stop.clone());
            runtime.spawn(async move {
                let (samples, stop) = (new_samples, new_stop);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let got = match get(addr, HOST).await {
                        Ok((200, body)) => colour(&body),
                        _ => Got::Failed,
                    };
                    let s = Sample {
                        start,
                        kind: Kind::New,
                        got,
                    };
                    samples.lock().unwrap().push(s);
                }
            });
            let (samples, stop) = (samples.clone(), stop.clone());
            runtime.spawn(async move {
                let mut client = None;
                while !stop.load(Ordering::Relaxed) {
                    if client
                        .as_ref()
                        .is_none_or(|c: &KeepAliveClient| !c.is_open())
                    {
                        client = KeepAliveClient::connect(addr).await.ok();
                    }
                    let Some(c) = client.as_mut() else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    // A request on a connection that served before: a reused one.
                    let reused = c.requests() > 0;
                    let start = Instant::now();
                    let got = match c.get(HOST).await {
                        Ok((200, body)) => colour(&body),
                        _ => Got::Failed,
                    };
                    if reused || got != Got::Failed {
                        let s = Sample {
                            start,
                            kind: Kind::KeepAlive,
                            got,
                        };
                        samples.lock().unwrap().push(s);
                    }
                }
            });
        }
        Load {
            samples,
            stop,
            runtime,
        }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.runtime.shutdown_timeout(Duration::from_secs(10));
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// What one switch looked like from the clients.
struct Observed {
    /// Opening of the last new connection that still got the old colour, after t0.
    last_old_new_conn: f64,
    first_new_on_new_conn: Option<f64>,
    first_new_on_keep_alive: Option<f64>,
    failed_new: usize,
    failed_keep_alive: usize,
}

fn observe(samples: &[Sample], t0: Instant, until: Instant, old: Got, new: Got) -> Observed {
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    let window = samples.iter().filter(|s| s.start >= t0 && s.start < until);
    let mut o = Observed {
        last_old_new_conn: 0.0,
        first_new_on_new_conn: None,
        first_new_on_keep_alive: None,
        failed_new: 0,
        failed_keep_alive: 0,
    };
    for s in window {
        match (s.kind, s.got) {
            (Kind::New, Got::Failed) => o.failed_new += 1,
            (Kind::KeepAlive, Got::Failed) => o.failed_keep_alive += 1,
            (Kind::New, g) if g == old => {
                o.last_old_new_conn = o.last_old_new_conn.max(ms(s.start))
            }
            (Kind::New, g) if g == new => {
                let t = ms(s.start);
                o.first_new_on_new_conn = Some(o.first_new_on_new_conn.map_or(t, |f| f.min(t)));
            }
            (Kind::KeepAlive, g) if g == new => {
                let t = ms(s.start);
                o.first_new_on_keep_alive = Some(o.first_new_on_keep_alive.map_or(t, |f| f.min(t)));
            }
            _ => {}
        }
    }
    o
}

/// Median and p99 of `v` (sorted here), as [`percentile`] takes them; NaN when empty.
fn stats(mut v: Vec<f64>) -> (f64, f64, usize) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return (f64::NAN, f64::NAN, 0);
    }
    (percentile(&v, 0.5), percentile(&v, 0.99), v.len())
}

fn row(name: &str, v: Vec<f64>) {
    let (median, p99, n) = stats(v);
    println!("  {name:<58} median {median:>7.1} ms   p99 {p99:>7.1} ms   (n={n})");
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn report(title: &str, observed: &[Observed], extra: Vec<(&str, Vec<f64>)>) {
    println!("{title}");
    for (name, v) in extra {
        row(name, v);
    }
    row(
        "t0 -> only the new colour on new connections",
        observed.iter().map(|o| o.last_old_new_conn).collect(),
    );
    row(
        "t0 -> first new colour on a new connection",
        observed
            .iter()
            .filter_map(|o| o.first_new_on_new_conn)
            .collect(),
    );
    row(
        "t0 -> first new colour on a kept-alive connection",
        observed
            .iter()
            .filter_map(|o| o.first_new_on_keep_alive)
            .collect(),
    );
    let failed_new: usize = observed.iter().map(|o| o.failed_new).sum();
    let failed_ka: usize = observed.iter().map(|o| o.failed_keep_alive).sum();
    println!(
        "  failed requests over {} switches: {failed_new} on new connections, {failed_ka} on reused kept-alive connections",
        observed.len()
    );
}

fn main() {
    let switches = arg("--switches", 30);
    let routes = arg("--routes", 2);
    let clients = arg("--clients", 4);
    let Some(nginx) = cutover_tests::proxy_binary("nginx") else {
        eprintln!("nginx not found; install it (apt-get install nginx)");
        std::process::exit(69);
    };
    let mut options = SetupOptions {
        routes_in_file: routes > 2,
        reconcile_interval_ms: 1000,
        // Both methods flip only the map: no colour's servers are marked down, so the
        // hand-made flips of phase 2 route to servers that are up.
        service_extra: "drain_after_switch = false".into(),
        ..SetupOptions::default()
    };
    options.routes = std::iter::once(HOST.to_owned())
        .chain((1..routes).map(|i| format!("h{i}.example.test")))
        .collect();
    let mut s = Setup::new_nginx(&nginx, options);
    s.start_agent();
    let load = Load::start(s.frontend(), clients);
    std::thread::sleep(Duration::from_millis(500));

    // Phase 1: cutover switch.
    let mut current = Got::Blue;
    let mut marks = Vec::new();
    let mut cli_ms = Vec::new();
    let mut serving_ms = Vec::new();
    let mut stopped_ms = Vec::new();
    let (mut validate_ms, mut commit_ms) = (Vec::new(), Vec::new());
    for _ in 0..switches {
        let (target, name) = match current {
            Got::Blue => (Got::Green, "green"),
            _ => (Got::Blue, "blue"),
        };
        let t0 = Instant::now();
        let (code, reply) = s.cli_json(&["switch", "web", name]);
        cli_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(code, 0, "{reply}");
        let r = &reply["data"]["reload"];
        serving_ms.push(r["serving_ms"].as_f64().unwrap_or(f64::NAN));
        stopped_ms.push(r["old_stopped_ms"].as_f64().unwrap_or(f64::NAN));
        let t = &reply["data"]["timings_ms"];
        validate_ms.push(t["validate"].as_f64().unwrap_or(f64::NAN));
        commit_ms.push(t["commit"].as_f64().unwrap_or(f64::NAN));
        marks.push((t0, current, target));
        current = target;
        std::thread::sleep(SPACING.saturating_sub(t0.elapsed()));
    }
    let phase1_end = Instant::now();
    assert_eq!(s.stop_agent(), Some(0));

    // Phase 2: rewrite the map, SIGHUP the master; nothing confirms.
    let map = s.services_map();
    for _ in 0..switches {
        let (target, backend) = match current {
            Got::Blue => (Got::Green, "web_green"),
            _ => (Got::Blue, "web_blue"),
        };
        let t0 = Instant::now();
        std::fs::write(&map, format!("web {backend};\n")).expect("write services map");
        s.nginx().signal(Signal::SIGHUP);
        marks.push((t0, current, target));
        current = target;
        std::thread::sleep(SPACING.saturating_sub(t0.elapsed()));
    }
    let end = Instant::now();
    let samples = load.finish();

    let observed: Vec<Observed> = marks
        .iter()
        .enumerate()
        .map(|(i, (t0, old, new))| {
            let until = marks.get(i + 1).map_or(end, |m| m.0).min(if i < switches {
                phase1_end
            } else {
                end
            });
            observe(&samples, *t0, until, *old, *new)
        })
        .collect();
    let (cutover, plain) = observed.split_at(switches);
    let new_conns = samples.iter().filter(|s| s.kind == Kind::New).count();
    println!(
        "nginx {} | {switches} switches per method, {SPACING:?} apart | {routes} routes | {clients}+{clients} clients, {} requests ({new_conns} on new connections)",
        nginx.display(),
        samples.len()
    );
    report(
        "cutover switch (t0 = command started; reload confirmed before the answer)",
        cutover,
        vec![
            ("t0 -> command answered", cli_ms),
            ("validate step (nginx -T of the staged tree)", validate_ms),
            ("commit step (write_atomic, fsynced)", commit_ms),
            (
                "SIGHUP -> new config serving (reply serving_ms)",
                serving_ms,
            ),
            (
                "SIGHUP -> previous workers stopped accepting (reply)",
                stopped_ms,
            ),
        ],
    );
    report(
        "plain map rewrite + SIGHUP (t0 = before the write)",
        plain,
        vec![],
    );
}
