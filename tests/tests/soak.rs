//! Soak: [`CLIENTS`] concurrent clients × [`COMMANDS`] mixed commands (status, map show in
//! every view, switch) against one agent and real HAProxy 2.6. Half the clients keep one
//! connection for all their commands, half open one per command. No reply may be an error
//! except the refusals the protocol has by design (too many connections). The agent's open
//! descriptors and resident memory are measured after a warm-up and again after the run
//! (once it has settled), and must not grow beyond [`FD_TOLERANCE`] and
//! [`RSS_TOLERANCE_KIB`]; the figures are printed.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cutover_tests::agent::{Setup, SetupOptions};
use cutover_tests::host::{open_fds, rss_kib};
use cutover_tests::require_proxy;
use serde_json::{json, Value};

/// Concurrent clients.
const CLIENTS: usize = 50;
/// Commands per client.
const COMMANDS: usize = 200;
/// Descriptors the agent may hold more after the run than before: none. A descriptor
/// per request leaked would show as hundreds.
const FD_TOLERANCE: usize = 0;
/// Resident memory the agent may have grown by, KiB: 4 MiB, room for the allocator keeping
/// freed pages of 50 concurrent connections' buffers (about 10 KiB per request leaked would
/// show as 100 MiB).
const RSS_TOLERANCE_KIB: u64 = 4 * 1024;
/// Time the agent gets to close what the run opened before the second measure.
const SETTLE: Duration = Duration::from_secs(2);

/// A small seeded generator per client (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn command(rng: &mut Rng) -> Value {
    match rng.below(20) {
        0..=7 => json!({"cmd": "status"}),
        8..=9 => json!({"cmd": "map_show", "name": "services", "view": "live"}),
        10..=11 => json!({"cmd": "map_show", "name": "services", "view": "diff"}),
        12..=13 => json!({"cmd": "map_show", "name": "routes"}),
        14 => json!({"cmd": "history", "limit": 20}),
        _ => json!({
            "cmd": "switch",
            "service": "web",
            "colour": if rng.below(2) == 0 { "blue" } else { "green" }
        }),
    }
}

/// What one client saw: replies by verb and outcome, and unexpected errors in full.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, usize>,
    errors: Vec<String>,
}

fn client(socket: &Path, index: usize, commands: usize) -> Tally {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((index as u64 + 1) * 0x1000_0001));
    let persistent = index.is_multiple_of(2);
    let connect = || {
        let s = UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        (s.try_clone().unwrap(), BufReader::new(s))
    };
    let mut conn = persistent.then(connect);
    let mut tally = Tally::default();
    for _ in 0..commands {
        let request = command(&mut rng);
        let (writer, reader) = conn.get_or_insert_with(connect);
        writer.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("client {index}: {request}: not JSON ({e}): {line:?}"));
        let verb = request["cmd"].as_str().unwrap();
        let by_design = reply["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("too many control connections"));
        let outcome = match reply["status"].as_str() {
            Some("ok") => "ok",
            _ if by_design => "refused by design",
            _ => {
                tally.errors.push(format!("{request} -> {reply}"));
                "error"
            }
        };
        *tally
            .outcomes
            .entry(format!("{verb} {outcome}"))
            .or_insert(0) += 1;
        if !persistent {
            conn = None;
        }
    }
    tally
}

/// Runs `clients` clients at once, `commands` each; returns the merged tally.
fn run(socket: &Path, clients: usize, commands: usize) -> Tally {
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let socket = socket.to_owned();
            std::thread::spawn(move || client(&socket, i, commands))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().expect("client thread");
        for (k, v) in t.outcomes {
            *all.outcomes.entry(k).or_insert(0) += v;
        }
        all.errors.extend(t.errors);
    }
    all
}

/// Waits for the agent's descriptors to come back to at most `baseline`, at most
/// [`SETTLE`] (connections close asynchronously), then measures.
fn settle(pid: u32, baseline: usize) -> (usize, u64) {
    let deadline = Instant::now() + SETTLE;
    while open_fds(pid) > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    (open_fds(pid), rss_kib(pid))
}

#[test]
fn fifty_clients_by_two_hundred_commands_leak_nothing() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent();
    let socket = s.agent().socket.clone();
    let pid = s.agent().pid();

    // Warm-up: the same mix, so that buffers and caches reach their working size.
    let warm = run(&socket, CLIENTS, 40);
    assert!(warm.errors.is_empty(), "warm-up errors: {:#?}", warm.errors);
    std::thread::sleep(SETTLE);
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));

    let started = Instant::now();
    let tally = run(&socket, CLIENTS, COMMANDS);
    let elapsed = started.elapsed();
    let (fds_after, rss_after) = settle(pid, fds_before);

    let total: usize = tally.outcomes.values().sum();
    eprintln!(
        "soak: {CLIENTS} clients x {COMMANDS} commands = {total} in {:.1} s ({:.0}/s): {:?}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        tally.outcomes
    );
    eprintln!(
        "soak: agent open fds {fds_before} before, {fds_after} after; VmRSS {rss_before} KiB \
         before, {rss_after} KiB after ({:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    assert_eq!(total, CLIENTS * COMMANDS);
    assert!(
        tally.errors.is_empty(),
        "{} unexpected errors, e.g. {:#?}",
        tally.errors.len(),
        &tally.errors[..tally.errors.len().min(5)]
    );
    assert!(s.agent_running(), "the agent exited");
    assert!(
        fds_after <= fds_before + FD_TOLERANCE,
        "descriptors grew: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after <= rss_before + RSS_TOLERANCE_KIB,
        "resident memory grew: {rss_before} -> {rss_after} KiB"
    );
    // And it still tells the truth: runtime, file and state agree.
    s.wait_consistent(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
}
