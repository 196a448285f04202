//! [`ReloadGap`]: the minimum gap between two reloads of one proxy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The minimum gap between the end of one reload and the start of the next. Each proxy
/// implementation owns one and waits on it before every reload, so the gap holds whoever
/// asks (a change, an undo, a reconcile).
#[derive(Debug)]
pub struct ReloadGap {
    min: Duration,
    last_end: Mutex<Option<Instant>>,
}

impl ReloadGap {
    /// A gap of `min` (zero: no gap); the first reload never waits.
    pub fn new(min: Duration) -> ReloadGap {
        ReloadGap {
            min,
            last_end: Mutex::new(None),
        }
    }

    /// Time left before a reload may start (zero when it may start now).
    pub fn remaining(&self) -> Duration {
        let last = *self.last_end.lock().expect("reload gap lock");
        match last {
            Some(end) => self.min.saturating_sub(end.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// Sleeps until a reload may start; returns the time waited.
    pub async fn wait(&self) -> Duration {
        let wait = self.remaining();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Records that a reload (confirmed or not) ended now.
    pub fn ended(&self) {
        *self.last_end.lock().expect("reload gap lock") = Some(Instant::now());
    }
}
