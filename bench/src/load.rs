//! The load generator: steady traffic through the proxy while switches happen. A fixed
//! number of kept-alive connections share one request rate, and new connections (one
//! request each, `Connection: close`) arrive at another rate with a bound on how many are in
//! flight. Every request's send time, completion time and outcome goes to a [`Recorder`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::client::{self, Conn, Outcome};

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Load on a kept-alive connection.
    KeepAlive,
    /// Load on a new connection per request.
    NewConn,
    /// The first-new-colour probe on new connections.
    ProbeNew,
    /// The first-new-colour probe on a kept-alive connection.
    ProbeKeepAlive,
}

/// One request.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Microseconds from the recorder's origin to sending (connect included).
    pub sent_us: u64,
    /// Microseconds from the origin to the outcome.
    pub done_us: u64,
    pub source: Source,
    pub outcome: Outcome,
}

/// A shared log of requests with one time origin.
#[derive(Clone)]
pub struct Recorder {
    origin: Instant,
    records: Arc<Mutex<Vec<Record>>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            records: Arc::new(Mutex::new(Vec::with_capacity(1 << 16))),
        }
    }

    /// Microseconds from the origin to `t`.
    pub fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_micros() as u64
    }

    pub fn push(&self, sent: Instant, source: Source, outcome: Outcome) {
        let record = Record {
            sent_us: self.us(sent),
            done_us: self.us(Instant::now()),
            source,
            outcome,
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// Takes every record so far, in completion order.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Kept-alive connections (each reconnects when the proxy closes it).
    pub keepalive_conns: usize,
    /// Requests per second over all kept-alive connections.
    pub keepalive_rate: f64,
    /// New connections per second, one request each.
    pub new_conn_rate: f64,
    /// Most new-connection requests in flight; a due request beyond it is counted as
    /// skipped, not sent.
    pub max_in_flight: usize,
    /// Bound on one request, connect included.
    pub timeout: Duration,
    /// The load stops by itself after this long.
    pub max_duration: Duration,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            keepalive_conns: 4,
            keepalive_rate: 2_000.0,
            new_conn_rate: 200.0,
            max_in_flight: 64,
            timeout: Duration::from_secs(2),
            max_duration: Duration::from_secs(900),
        }
    }
}

/// Running load; [`Load::stop`] ends it.
pub struct Load {
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the load against `addr` with `Host: host` on the runtime `rt`.
    pub fn start(
        rt: &Handle,
        addr: SocketAddr,
        host: &str,
        spec: &LoadSpec,
        rec: &Recorder,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let skipped = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + spec.max_duration;
        let mut tasks = Vec::new();
        let n = spec.keepalive_conns.max(1);
        let period = Duration::from_secs_f64(n as f64 / spec.keepalive_rate);
        for i in 0..spec.keepalive_conns {
            let offset = period.mul_f64(i as f64 / n as f64);
            let job = KeepAliveJob {
                addr,
                request: client::request_bytes(host, true),
                period,
                offset,
                deadline,
                timeout: spec.timeout,
                stop: stop.clone(),
                rec: rec.clone(),
            };
            tasks.push(rt.spawn(job.run()));
        }
        if spec.new_conn_rate > 0.0 {
            let job = NewConnJob {
                addr,
                request: Arc::from(client::request_bytes(host, false)),
                period: Duration::from_secs_f64(1.0 / spec.new_conn_rate),
                in_flight: Arc::new(Semaphore::new(spec.max_in_flight)),
                max_in_flight: spec.max_in_flight as u32,
                deadline,
                timeout: spec.timeout,
                stop: stop.clone(),
                skipped: skipped.clone(),
                rec: rec.clone(),
            };
            tasks.push(rt.spawn(job.run()));
        }
        Load {
            stop,
            skipped,
            tasks,
        }
    }

    /// Stops sending, waits for requests in flight (each is bounded by the timeout), and
    /// returns how many due requests were skipped because too many were in flight.
    pub fn stop(self, rt: &Handle) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = rt.block_on(task);
        }
        self.skipped.load(Ordering::SeqCst)
    }
}

struct KeepAliveJob {
    addr: SocketAddr,
    request: Vec<u8>,
    period: Duration,
    offset: Duration,
    deadline: Instant,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    rec: Recorder,
}

impl KeepAliveJob {
    async fn run(self) {
        let start = tokio::time::Instant::now() + self.offset;
        let mut tick = tokio::time::interval_at(start, self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut conn: Option<Conn> = None;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline {
            tick.tick().await;
            let sent = Instant::now();
            let mut c = match conn.take() {
                Some(c) => c,
                None => match client::connect(self.addr, self.timeout).await {
                    Ok(c) => c,
                    Err(outcome) => {
                        self.rec.push(sent, Source::KeepAlive, outcome);
                        continue;
                    }
                },
            };
            let (outcome, reusable) = c.exchange(&self.request, self.timeout).await;
            self.rec.push(sent, Source::KeepAlive, outcome);
            if reusable {
                conn = Some(c);
            }
        }
    }
}

struct NewConnJob {
    addr: SocketAddr,
    request: Arc<[u8]>,
    period: Duration,
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    deadline: Instant,
    timeout: Duration,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    rec: Recorder,
}

impl NewConnJob {
    async fn run(self) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline {
            tick.tick().await;
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (addr, request, timeout, rec) = (
                self.addr,
                self.request.clone(),
                self.timeout,
                self.rec.clone(),
            );
            tokio::spawn(async move {
                let sent = Instant::now();
                let outcome = client::one_shot(addr, &request, timeout).await;
                rec.push(sent, Source::NewConn, outcome);
                drop(permit);
            });
        }
        // Every request in flight ends within its timeout.
        let _ = tokio::time::timeout(
            self.timeout * 2,
            self.in_flight.acquire_many(self.max_in_flight),
        )
        .await;
    }
}
