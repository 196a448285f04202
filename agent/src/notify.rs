//! Notifications to systemd (`Type=notify`): `READY=1` once the agent serves its socket,
//! `WATCHDOG=1` pings from the engine loop, `RELOADING=1` .. `READY=1` around a config
//! reload, `STOPPING=1` on shutdown, and a one-line `STATUS=`. Every call is a no-op when
//! `NOTIFY_SOCKET` is unset (not started by systemd, or `Type=simple`).

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends notifications to the service manager, if there is one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    /// Interval of the watchdog pings: half of `WATCHDOG_USEC`, when systemd set it for
    /// this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC`/`WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled().map(ping_interval),
        }
    }

    /// How often [`Notifier::watchdog`] must be called; `None` without a watchdog.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// The agent serves its socket: startup (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The config is being read again; [`Notifier::ready`] follows.
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        // systemd 253+ wants the time the reload began with RELOADING=1.
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        send(&states);
    }

    /// The agent is shutting down (`STOPPING=1`, status `stopping`).
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The engine loop is alive.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            send(&[NotifyState::Watchdog]);
        }
    }
}

/// Half the watchdog timeout (systemd's advice), at least 10 ms.
fn ping_interval(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(10))
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_timeout() {
        assert_eq!(
            ping_interval(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            ping_interval(Duration::from_micros(1)),
            Duration::from_millis(10)
        );
    }
}
