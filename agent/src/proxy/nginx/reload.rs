//! One confirmed reload: `SIGHUP` to the master, then evidence sampled every [`POLL`]
//! until the new config serves and the previous one can take no new connection, or until
//! the master's refusal or the reload timeout.
//!
//! What Nginx does on `SIGHUP`: the master parses the whole config again; if that fails it
//! logs why (`[emerg]`) and keeps its workers. Otherwise it starts new workers, sleeps
//! 100 ms, and tells the previous workers to finish, whereupon each stops accepting (its
//! title becomes `worker process is shutting down`) and serves out its open connections.
//! Until then a new connection may still reach a previous worker, so the reload counts as
//! done only when no previous worker accepts any more; the report gives both times.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::errorlog::{self, Level, Tail};
use super::{procs, status, Nginx};
use crate::config::StatusAddress;
use crate::proxy::{ProxyError, ReloadReport};

/// How often the evidence is sampled: 2 ms.
pub const POLL: Duration = Duration::from_millis(2);
/// After the master logged a fatal line, how long its error log must stay quiet, with no
/// new worker, before the reload counts as refused: 700 ms (Nginx retries the bind of a
/// busy listener every 500 ms, five times, before it gives up).
pub const REFUSAL_QUIET: Duration = Duration::from_millis(700);
/// Longest one request to the generation endpoint may take during a reload.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The master's last word when it gives up binding a busy listener.
const BIND_GAVE_UP: &str = "still could not bind()";

/// Why a reload of Nginx failed; `fatal` holds the lines the master logged at `crit` or
/// worse meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The pid file names no running master: nothing was signalled.
    #[error(transparent)]
    PidFile(#[from] procs::PidFileError),
    /// The master's children could not be read.
    #[error(transparent)]
    Children(#[from] procs::ChildrenError),
    /// `SIGHUP` could not be sent.
    #[error("cannot send SIGHUP to the nginx master {master}: {source}")]
    Signal { master: u32, source: Errno },
    /// The master exited while reloading.
    #[error(
        "the nginx master {master} exited during the reload{}",
        log_lines(fatal)
    )]
    MasterExited { master: u32, fatal: Vec<String> },
    /// The master refused the new config and kept its workers.
    #[error(
        "nginx refused the new config and kept serving the previous one (no new worker \
         started){}",
        log_lines(fatal)
    )]
    Refused { fatal: Vec<String> },
    /// No new worker started before the deadline.
    #[error("no new nginx worker within {timeout:?} of SIGHUP{}", log_lines(fatal))]
    NoNewWorker {
        timeout: Duration,
        fatal: Vec<String>,
    },
    /// New workers started, but the generation endpoint did not answer the new generation.
    #[error(
        "new workers {workers:?} started, but the status endpoint {status} did not answer \
         generation {generation} within {timeout:?} (last answer: {last_answer}){}",
        log_lines(fatal)
    )]
    NotServing {
        workers: BTreeSet<u32>,
        status: StatusAddress,
        generation: u64,
        timeout: Duration,
        /// What the endpoint answered last, or why it did not.
        last_answer: String,
        fatal: Vec<String>,
    },
    /// Workers of the previous config still accepted connections at the deadline.
    #[error(
        "workers of the previous config still accept connections {timeout:?} after SIGHUP{}",
        log_lines(fatal)
    )]
    OldStillAccepting {
        timeout: Duration,
        fatal: Vec<String>,
    },
}

impl From<ReloadError> for ProxyError {
    fn from(err: ReloadError) -> ProxyError {
        let source = Box::new(err);
        match *source {
            ReloadError::PidFile(_) | ReloadError::Signal { .. } => {
                ProxyError::ReloadNotSent { source }
            }
            // Children unreadable before the signal is handled where it happens.
            ReloadError::MasterExited { .. } | ReloadError::Refused { .. } => {
                ProxyError::ReloadRefused { source }
            }
            _ => ProxyError::ReloadUnconfirmed { source },
        }
    }
}

impl Nginx {
    /// `generation`: what the generation endpoint must answer once the new config serves;
    /// `None` (the Lua runtime, whose endpoint answers the dict's generation, which a
    /// reload keeps) takes any answer of a new worker.
    pub(super) async fn signal_and_confirm(
        &self,
        generation: Option<u64>,
    ) -> Result<ReloadReport, ProxyError> {
        let wanted = |g: u64| generation.is_none_or(|w| w == g);
        let master = procs::master(&self.settings.pid_file).map_err(ReloadError::from)?;
        let before = procs::snapshot(master).map_err(|e| ProxyError::ReloadNotSent {
            source: Box::new(ReloadError::from(e)),
        })?;
        let mut log = Tail::at_end(&self.settings.error_log);
        let started = Instant::now();
        kill(Pid::from_raw(master as i32), Signal::SIGHUP)
            .map_err(|source| ReloadError::Signal { master, source })?;
        let deadline = started + self.reload_timeout;
        let mut fatal: Vec<String> = Vec::new();
        let mut log_grew = started;
        let mut serving = None;
        let mut old_stopped = None;
        let mut last_answer = String::from("not asked yet");
        loop {
            if !procs::alive(master) {
                return Err(ReloadError::MasterExited { master, fatal }.into());
            }
            let text = log.read_new().unwrap_or_default();
            if !text.is_empty() {
                log_grew = Instant::now();
                for m in errorlog::messages(&text, Level::Crit, Some(master)) {
                    if fatal.last() != Some(&m.to_string()) {
                        fatal.push(m.to_string());
                    }
                }
            }
            let now = procs::snapshot(master).map_err(ReloadError::from)?;
            let new_workers: BTreeSet<u32> = now.workers.difference(&before.all).copied().collect();
            if !new_workers.is_empty() {
                if serving.is_none() {
                    match status::generation(&self.settings.status, PROBE_TIMEOUT).await {
                        Ok(g) if wanted(g) => serving = Some(started.elapsed()),
                        Ok(g) => last_answer = format!("generation {g}"),
                        Err(e) => last_answer = e.to_string(),
                    }
                }
                let old_accepting = before
                    .workers
                    .iter()
                    .any(|p| procs::role(*p) == Some(procs::Role::Worker));
                if !old_accepting && old_stopped.is_none() {
                    old_stopped = Some(started.elapsed());
                }
                if serving.is_some() && old_stopped.is_some() {
                    // Only new workers accept now: every new connection must see it.
                    match status::generation(&self.settings.status, PROBE_TIMEOUT).await {
                        Ok(g) if wanted(g) => {
                            return Ok(ReloadReport {
                                workers: now.workers.into_iter().collect(),
                                elapsed: started.elapsed(),
                                previous_workers: before.workers.into_iter().collect(),
                                serving,
                                old_stopped,
                                gap_wait: Duration::ZERO,
                            });
                        }
                        Ok(g) => last_answer = format!("generation {g}"),
                        Err(e) => last_answer = e.to_string(),
                    }
                }
            } else if !fatal.is_empty()
                && (fatal.iter().any(|l| l.contains(BIND_GAVE_UP))
                    || log_grew.elapsed() >= REFUSAL_QUIET)
            {
                return Err(ReloadError::Refused { fatal }.into());
            }
            if Instant::now() >= deadline {
                let timeout = self.reload_timeout;
                let err = if new_workers.is_empty() {
                    ReloadError::NoNewWorker { timeout, fatal }
                } else if serving.is_none() {
                    ReloadError::NotServing {
                        workers: new_workers,
                        status: self.settings.status.clone(),
                        generation: generation.unwrap_or_default(),
                        timeout,
                        last_answer,
                        fatal,
                    }
                } else {
                    ReloadError::OldStillAccepting { timeout, fatal }
                };
                return Err(err.into());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The master's fatal log lines after what they explain, when there are any.
fn log_lines(fatal: &[String]) -> String {
    if fatal.is_empty() {
        String::new()
    } else {
        format!("; its error log says:\n{}", fatal.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_kind_and_keeps_the_masters_words() {
        let fatal = vec!["[emerg] bind() to 127.0.0.1:1 failed".to_owned()];
        let err = ProxyError::from(ReloadError::Refused {
            fatal: fatal.clone(),
        });
        assert!(matches!(err, ProxyError::ReloadRefused { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "reload failed: nginx refused the new config and kept serving the previous one \
             (no new worker started); its error log says:\n[emerg] bind() to 127.0.0.1:1 failed"
        );
        let err = ProxyError::from(ReloadError::NoNewWorker {
            timeout: Duration::from_secs(1),
            fatal: vec![],
        });
        assert!(
            matches!(err, ProxyError::ReloadUnconfirmed { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "reload failed: no new nginx worker within 1s of SIGHUP"
        );
        let missing = procs::master(std::path::Path::new("/nonexistent/nginx.pid")).unwrap_err();
        let err = ProxyError::from(ReloadError::from(missing));
        assert!(matches!(err, ProxyError::ReloadNotSent { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/nginx.pid"), "{err}");
    }
}
