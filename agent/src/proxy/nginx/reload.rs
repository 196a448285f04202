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

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::errorlog::{self, Level, Tail};
use super::{procs, status, Nginx};
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

fn failed(message: String) -> ProxyError {
    ProxyError::ReloadFailed(message)
}

impl Nginx {
    pub(super) async fn signal_and_confirm(
        &self,
        generation: u64,
    ) -> Result<ReloadReport, ProxyError> {
        let master = procs::master(&self.settings.pid_file).map_err(failed)?;
        let before =
            procs::snapshot(master).map_err(|e| failed(format!("nginx master {master}: {e}")))?;
        let mut log = Tail::at_end(&self.settings.error_log);
        let started = Instant::now();
        kill(Pid::from_raw(master as i32), Signal::SIGHUP).map_err(|e| {
            failed(format!(
                "cannot send SIGHUP to the nginx master {master}: {e}"
            ))
        })?;
        let deadline = started + self.reload_timeout;
        let mut fatal: Vec<String> = Vec::new();
        let mut log_grew = started;
        let mut serving = None;
        let mut old_stopped = None;
        let mut last_answer = String::from("not asked yet");
        loop {
            if !procs::alive(master) {
                return Err(failed(with_log(
                    format!("the nginx master {master} exited during the reload"),
                    &fatal,
                )));
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
            let now = procs::snapshot(master)
                .map_err(|e| failed(format!("nginx master {master}: {e}")))?;
            let new_workers: BTreeSet<u32> = now.workers.difference(&before.all).copied().collect();
            if !new_workers.is_empty() {
                if serving.is_none() {
                    match status::generation(&self.settings.status, PROBE_TIMEOUT).await {
                        Ok(g) if g == generation => serving = Some(started.elapsed()),
                        Ok(g) => last_answer = format!("generation {g}"),
                        Err(e) => last_answer = e,
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
                        Ok(g) if g == generation => {
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
                        Err(e) => last_answer = e,
                    }
                }
            } else if !fatal.is_empty()
                && (fatal.iter().any(|l| l.contains(BIND_GAVE_UP))
                    || log_grew.elapsed() >= REFUSAL_QUIET)
            {
                return Err(failed(with_log(
                    "nginx refused the new config and kept serving the previous one \
                     (no new worker started)"
                        .into(),
                    &fatal,
                )));
            }
            if Instant::now() >= deadline {
                let what = if new_workers.is_empty() {
                    format!(
                        "no new nginx worker within {:?} of SIGHUP",
                        self.reload_timeout
                    )
                } else if serving.is_none() {
                    format!(
                        "new workers {new_workers:?} started, but the status endpoint {} did not \
                         answer generation {generation} within {:?} (last answer: {last_answer})",
                        self.settings.status, self.reload_timeout
                    )
                } else {
                    format!(
                        "workers of the previous config still accept connections {:?} after \
                         SIGHUP",
                        self.reload_timeout
                    )
                };
                return Err(failed(with_log(what, &fatal)));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `what`, and the master's fatal log lines when there are any.
fn with_log(what: String, fatal: &[String]) -> String {
    if fatal.is_empty() {
        what
    } else {
        format!("{what}; its error log says:\n{}", fatal.join("\n"))
    }
}
