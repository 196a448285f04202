//! The first-new-colour probes: from the instant a switch command is issued, one probe polls
//! back to back on new connections and one on a kept-alive connection (opened and used
//! before the command), until each reads the new colour. A kept-alive probe whose
//! connection the proxy closes reconnects, as a client's pool would, and says so.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{self, Colour, Conn, Outcome};
use crate::load::{Recorder, Source};

/// Most requests one probe sends for one switch.
const MAX_PROBE_REQUESTS: u32 = 200_000;
/// Pause after a failed probe request, so a refused connect does not spin.
const FAILURE_PAUSE: Duration = Duration::from_millis(1);

/// When each probe first read the new colour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub new_conn: Option<Instant>,
    pub keepalive: Option<Instant>,
    /// The kept-alive probe had to open a new connection (the proxy closed its old one).
    pub keepalive_reconnected: bool,
}

/// Both probes, with the kept-alive connection they keep between switches.
pub struct Probes {
    addr: SocketAddr,
    keepalive_request: Vec<u8>,
    new_request: Vec<u8>,
    conn: Option<Conn>,
    timeout: Duration,
    rec: Recorder,
}

/// Probes waiting for the start signal.
pub struct Armed {
    go: Vec<oneshot::Sender<Instant>>,
    new_conn: JoinHandle<Option<Instant>>,
    keepalive: JoinHandle<(Option<Instant>, Option<Conn>, bool)>,
}

impl Probes {
    pub fn new(addr: SocketAddr, host: &str, rec: &Recorder) -> Probes {
        Probes {
            addr,
            keepalive_request: client::request_bytes(host, true),
            new_request: client::request_bytes(host, false),
            conn: None,
            timeout: Duration::from_secs(2),
            rec: rec.clone(),
        }
    }

    /// The colour served now, read on a new connection.
    pub fn current(&self, rt: &Handle) -> Outcome {
        rt.block_on(client::one_shot(self.addr, &self.new_request, self.timeout))
    }

    /// Opens the kept-alive connection if needed and has it carry one response, so that it
    /// is a reused connection when the switch starts.
    pub fn prepare(&mut self, rt: &Handle) -> Result<(), String> {
        for _ in 0..3 {
            if self.conn.is_none() {
                self.conn = rt.block_on(client::connect(self.addr, self.timeout)).ok();
            }
            if let Some(mut conn) = self.conn.take() {
                let (outcome, reusable) =
                    rt.block_on(conn.exchange(&self.keepalive_request, self.timeout));
                if outcome.colour().is_some() && reusable {
                    self.conn = Some(conn);
                    return Ok(());
                }
            }
        }
        Err("the kept-alive probe cannot get a response".into())
    }

    /// Spawns both probes; they start polling for `want` at [`Armed::go`] and give up
    /// `max_wait` later.
    pub fn arm(&mut self, rt: &Handle, want: Colour, max_wait: Duration) -> Armed {
        let (go_new, wait_new) = oneshot::channel::<Instant>();
        let (go_ka, wait_ka) = oneshot::channel::<Instant>();
        let (addr, timeout, rec) = (self.addr, self.timeout, self.rec.clone());
        let request = self.new_request.clone();
        let new_conn = rt.spawn(async move {
            let t0 = wait_new.await.ok()?;
            let deadline = t0 + max_wait;
            for _ in 0..MAX_PROBE_REQUESTS {
                if Instant::now() > deadline {
                    break;
                }
                let sent = Instant::now();
                let outcome = client::one_shot(addr, &request, timeout).await;
                rec.push(sent, Source::ProbeNew, outcome);
                if outcome == Outcome::Ok(want) {
                    return Some(Instant::now());
                }
                if outcome.is_failure() {
                    tokio::time::sleep(FAILURE_PAUSE).await;
                }
            }
            None
        });
        let (request, rec) = (self.keepalive_request.clone(), self.rec.clone());
        let mut conn = self.conn.take();
        let keepalive = rt.spawn(async move {
            let mut reconnected = false;
            let Ok(t0) = wait_ka.await else {
                return (None, conn, reconnected);
            };
            let deadline = t0 + max_wait;
            for _ in 0..MAX_PROBE_REQUESTS {
                if Instant::now() > deadline {
                    break;
                }
                let sent = Instant::now();
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => {
                        reconnected = true;
                        match client::connect(addr, timeout).await {
                            Ok(c) => c,
                            Err(outcome) => {
                                rec.push(sent, Source::ProbeKeepAlive, outcome);
                                tokio::time::sleep(FAILURE_PAUSE).await;
                                continue;
                            }
                        }
                    }
                };
                let (outcome, reusable) = c.exchange(&request, timeout).await;
                rec.push(sent, Source::ProbeKeepAlive, outcome);
                if reusable {
                    conn = Some(c);
                }
                if outcome == Outcome::Ok(want) {
                    return (Some(Instant::now()), conn, reconnected);
                }
                if outcome.is_failure() {
                    tokio::time::sleep(FAILURE_PAUSE).await;
                }
            }
            (None, conn, reconnected)
        });
        Armed {
            go: vec![go_new, go_ka],
            new_conn,
            keepalive,
        }
    }

    /// Waits for armed probes to finish and keeps the kept-alive connection.
    pub fn finish(&mut self, rt: &Handle, armed: Armed) -> Seen {
        drop(armed.go);
        let new_conn = rt.block_on(armed.new_conn).ok().flatten();
        let (keepalive, conn, keepalive_reconnected) =
            rt.block_on(armed.keepalive).unwrap_or((None, None, false));
        self.conn = conn;
        Seen {
            new_conn,
            keepalive,
            keepalive_reconnected,
        }
    }
}

impl Armed {
    /// Starts both probes with `t0` as the instant the command is issued.
    pub fn go(&mut self, t0: Instant) {
        for tx in self.go.drain(..) {
            let _ = tx.send(t0);
        }
    }
}
