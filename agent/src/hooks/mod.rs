//! The hooks (`[[hooks]]`): each event the agent journals (a switch, a canary step, an
//! automatic rollback, a fault, a drift repair, a refused config; see
//! [`EventKind`](crate::config::EventKind)) is handed to every hook that names it, which
//! posts it as JSON to a URL or runs a command with it.
//!
//! Off the switch path: the engine tells [`Hooks::offer`] of each journal line on its own
//! task, which turns it into a [`Notice`] and puts it on each interested hook's bounded
//! queue ([`QUEUE_DEPTH`]) without waiting; a full queue drops the event and counts it
//! (`cutover_hook_dropped_total`). Each hook has one task that delivers its queue in order:
//! an attempt bounded by the hook's timeout, retries after a doubling backoff, the result
//! counted (`cutover_hook_runs_total{hook,result}`) and a failure logged. A slow or hanging
//! hook delays only its own later events, never a switch or another hook.
//!
//! - what a journal line is as an event, and the JSON a hook receives ([`event`]);
//! - an HTTP `POST` and its signature ([`http`]); a command run ([`command`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::hooks::MAX_HOOK_BACKOFF_MS;
use crate::config::{HookAction, HookConfig};
use crate::engine::JournalTap;
use crate::metrics::Metrics;
use crate::store::JournalEntry;

pub mod command;
pub mod event;
pub mod http;

pub use event::Notice;

/// Events waiting for one hook before new ones are dropped.
pub const QUEUE_DEPTH: usize = 64;

/// Bundle of trust roots an `https` hook without `ca_file` is verified with: the first of
/// these that exists (Debian and derivatives, then Fedora and RHEL).
pub const SYSTEM_CA_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The running hooks. Cheap to clone: clones share the same hooks.
#[derive(Clone)]
pub struct Hooks {
    shared: Arc<Shared>,
}

struct Shared {
    /// The configured hooks with their queues; replaced whole when the config changes.
    workers: Mutex<Vec<Worker>>,
    metrics: Metrics,
    /// This host's name, for the events.
    host: String,
}

/// One hook and the sending end of its queue; dropping it ends the hook's task once the
/// queue is delivered.
struct Worker {
    hook: Arc<HookConfig>,
    queue: mpsc::Sender<Arc<Delivery>>,
}

/// An event ready to go: its body, and what a command's environment says of it.
#[derive(Debug)]
pub struct Delivery {
    /// The notice.
    pub notice: Notice,
    /// Its JSON, the body of every hook that receives it.
    pub body: Vec<u8>,
}

impl Hooks {
    /// Starts a task per configured hook; on a tokio runtime.
    pub fn start(hooks: &[HookConfig], metrics: Metrics) -> Hooks {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let me = Hooks {
            shared: Arc::new(Shared {
                workers: Mutex::new(Vec::new()),
                metrics,
                host,
            }),
        };
        me.replace(hooks);
        me
    }

    /// Puts `hooks` in force when they differ from the running ones (a config reload): the
    /// old hooks deliver what they hold and stop; the new ones take the events from now on.
    pub fn sync(&self, hooks: &[HookConfig]) {
        let same = {
            let workers = self.shared.workers.lock().expect("hooks lock");
            workers.len() == hooks.len() && workers.iter().zip(hooks).all(|(w, h)| *w.hook == *h)
        };
        if !same {
            self.replace(hooks);
            tracing::info!(hooks = hooks.len(), "hooks replaced by the new config");
        }
    }

    fn replace(&self, hooks: &[HookConfig]) {
        let workers = hooks
            .iter()
            .map(|h| {
                let hook = Arc::new(h.clone());
                let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(deliver_all(hook.clone(), rx, self.shared.metrics.clone()));
                Worker { hook, queue }
            })
            .collect();
        self.shared
            .metrics
            .hooks(hooks.iter().map(|h| h.name.as_str()));
        *self.shared.workers.lock().expect("hooks lock") = workers;
    }

    /// Hands the event of `entry`, if it is one, to every hook that names it; never waits.
    pub fn offer(&self, entry: &JournalEntry) {
        let workers = self.shared.workers.lock().expect("hooks lock");
        if workers.is_empty() {
            return;
        }
        let Some(notice) = event::notice(entry, &self.shared.host) else {
            return;
        };
        let mut delivery = None;
        for w in workers
            .iter()
            .filter(|w| w.hook.events.contains(&notice.event))
        {
            let d = delivery.get_or_insert_with(|| {
                let body = serde_json::to_vec(&notice).expect("a notice serializes");
                Arc::new(Delivery {
                    notice: notice.clone(),
                    body,
                })
            });
            if w.queue.try_send(d.clone()).is_err() {
                self.shared.metrics.hook_dropped(&w.hook.name);
                tracing::warn!(hook = %w.hook.name, event = %notice.event,
                    "hook queue full ({QUEUE_DEPTH} events): event dropped");
            }
        }
    }

    /// [`Hooks::offer`] as the engine's journal tap.
    pub fn tap(&self) -> JournalTap {
        let me = self.clone();
        Box::new(move |entry| me.offer(entry))
    }
}

/// The wait before retry `retry` (0 for the first): `first` doubled `retry` times, at most
/// [`MAX_HOOK_BACKOFF_MS`].
pub fn backoff(first: Duration, retry: u32) -> Duration {
    let cap = Duration::from_millis(MAX_HOOK_BACKOFF_MS);
    first
        .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .map_or(cap, |d| d.min(cap))
}

/// A hook's task: delivers its queue in order until the queue's sender is dropped.
async fn deliver_all(
    hook: Arc<HookConfig>,
    mut rx: mpsc::Receiver<Arc<Delivery>>,
    metrics: Metrics,
) {
    let tls = match &hook.action {
        HookAction::Http { url, ca_file, .. } if url.tls => trust(ca_file.as_deref())
            .map_err(|e| tracing::error!(hook = %hook.name, "cannot verify https receivers: {e}"))
            .ok(),
        _ => None,
    };
    while let Some(d) = rx.recv().await {
        let result = deliver(&hook, tls.as_ref(), &d).await;
        metrics.hook_run(&hook.name, result.is_ok());
        match result {
            Ok(attempts) => tracing::info!(hook = %hook.name, event = %d.notice.event,
                generation = d.notice.generation, attempts, "hook delivered"),
            Err((attempts, e)) => tracing::warn!(hook = %hook.name, event = %d.notice.event,
                generation = d.notice.generation, attempts, "hook failed: {e}"),
        }
    }
}

/// For `cutover check`: each `https` hook whose trust roots cannot be loaded, as a problem
/// naming the hook.
pub fn trust_problems(hooks: &[HookConfig]) -> Vec<String> {
    hooks
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match &h.action {
            HookAction::Http { url, ca_file, .. } if url.tls => trust(ca_file.as_deref())
                .err()
                .map(|e| format!("hooks[{i}] ({}).ca_file: {e}", h.name)),
            _ => None,
        })
        .collect()
}

/// The trust roots of an `https` hook: `ca_file`, else the system's bundle.
fn trust(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = match ca_file {
        Some(p) => p.to_owned(),
        None => SYSTEM_CA_BUNDLES
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no ca_file and no system CA bundle ({})",
                    SYSTEM_CA_BUNDLES.join(", ")
                )
            })?,
    };
    crate::peers::tls::verify_only_client_config(&path).map_err(|e| e.to_string())
}

/// Delivers one event with the hook's retries (each attempt bounded by the hook's timeout): the number of attempts made, and the last
/// error when none succeeded.
async fn deliver(
    hook: &HookConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    d: &Delivery,
) -> Result<u32, (u32, String)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Err((error, retryable)) = once(hook, tls, d).await else {
            return Ok(attempt);
        };
        if !retryable || attempt > hook.retries {
            return Err((attempt, error));
        }
        tracing::debug!(hook = %hook.name, attempt, "hook attempt failed, retrying: {error}");
        tokio::time::sleep(backoff(hook.backoff, attempt - 1)).await;
    }
}

/// One attempt; its error and whether another attempt may succeed.
async fn once(
    hook: &HookConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    d: &Delivery,
) -> Result<(), (String, bool)> {
    let n = &d.notice;
    match &hook.action {
        HookAction::Http { url, secret, .. } => {
            let mut headers = vec![(http::EVENT_HEADER, n.event.to_string())];
            if let Some(key) = secret {
                headers.push((http::SIGNATURE_HEADER, http::signature(&key.0, &d.body)));
            }
            let request = http::request(url, &headers, &d.body);
            match tokio::time::timeout(hook.timeout, http::post(url, tls, &request)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err((e.to_string(), e.retryable())),
                Err(_) => Err((format!("{url}: no answer within {:?}", hook.timeout), true)),
            }
        }
        HookAction::Command { argv } => {
            let colour =
                |c: Option<crate::protocol::Colour>| c.map(|c| c.to_string()).unwrap_or_default();
            let env = [
                ("CUTOVER_EVENT", n.event.to_string()),
                ("CUTOVER_SERVICE", n.service.clone().unwrap_or_default()),
                ("CUTOVER_FROM", colour(n.from)),
                ("CUTOVER_TO", colour(n.to)),
                ("CUTOVER_GENERATION", n.generation.to_string()),
                ("CUTOVER_TIME_MS", n.time_ms.to_string()),
                ("CUTOVER_HOST", n.host.clone()),
                ("CUTOVER_HOOK", hook.name.clone()),
            ];
            // Bounded by the hook's timeout, after which the command's process group is
            // killed.
            command::run(argv, &env, &d.body, hook.timeout)
                .await
                .map_err(|e| (e.to_string(), true))
        }
    }
}

#[cfg(test)]
mod tests;
