//! The agent's link to the fleet store (`[cluster] store = "etcd"`): starts the fleet task
//! ([`crate::fleet::follow`]), answers its calls on the engine task, hands it this host's
//! report after every change, and serves the fleet verbs of the socket: a change proposed
//! to every host (`--cluster`), `status --cluster` and `history --cluster`, each in a task
//! of its own so that the engine goes on serving (its own votes included).

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::FleetConfig;
use crate::engine::Engine;
use crate::fleet::follow::Follower;
use crate::fleet::host::{self, Call};
use crate::fleet::{etcd, propose, query};
use crate::metrics::Metrics;
use crate::protocol::{FleetHealth, Mutation, PeerReport, Reply};
use crate::proxy::Proxy;
use crate::requester::Requester;

/// Calls of the fleet task queued for the engine task.
const CALLS: usize = 16;

/// The engine task's end of the fleet store.
pub struct FleetLink {
    /// `[cluster]` with `store = "etcd"`.
    pub config: FleetConfig,
    health: watch::Receiver<FleetHealth>,
    calls: mpsc::Receiver<Call>,
    reports: watch::Sender<Option<PeerReport>>,
}

impl FleetLink {
    /// Starts the fleet task (always `Some` in a build with the fleet store).
    pub fn start(config: &FleetConfig, metrics: Metrics) -> Option<FleetLink> {
        let (calls_tx, calls) = mpsc::channel(CALLS);
        let (reports, reports_rx) = watch::channel(None);
        let (health_tx, health) = watch::channel(FleetHealth {
            prefix: config.etcd.prefix.clone(),
            ..FleetHealth::default()
        });
        metrics.fleet(false, 0);
        let follower = Follower {
            config: config.clone(),
            calls: calls_tx,
            reports: reports_rx,
            health: health_tx,
            metrics,
        };
        tokio::spawn(follower.run());
        Some(FleetLink {
            config: config.clone(),
            health,
            calls,
            reports,
        })
    }

    /// The next call of the fleet task; never, without a fleet store.
    pub async fn next_call(link: &mut Option<FleetLink>) -> Call {
        match link {
            Some(l) => match l.calls.recv().await {
                Some(call) => call,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// How the fleet task fares, for `status`.
    pub fn health(&self) -> &watch::Receiver<FleetHealth> {
        &self.health
    }

    /// Answers a call of the fleet task.
    pub async fn answer<P: Proxy>(&self, engine: &mut Engine<P>, call: Call) {
        host::answer(engine, &self.config.node, call).await;
    }

    /// Hands this host's report to the fleet task when it changed (its time aside).
    pub fn publish<P: Proxy>(&self, engine: &Engine<P>) {
        let report = engine.report(&self.config.node);
        self.reports.send_if_modified(|current| {
            let same = current.as_ref().is_some_and(|c| {
                PeerReport {
                    time_ms: c.time_ms,
                    ..report.clone()
                } == *c
            });
            if !same {
                *current = Some(report);
            }
            !same
        });
    }

    /// The refusal of a change on this host alone, without `--local`.
    pub fn not_local(&self) -> Reply {
        Reply::error(
            format!(
                "this host follows the fleet in etcd ({}): add --cluster to change every \
                 host, or --local to change this host alone (it shows as diverged until the \
                 next fleet change)",
                self.config.etcd.prefix
            ),
            Value::Null,
        )
    }

    /// Proposes `change` to the fleet in a task of its own and answers `reply` with the
    /// outcome.
    pub fn propose(&self, change: Mutation, asked_by: Requester, reply: oneshot::Sender<Reply>) {
        let config = self.config.clone();
        tokio::spawn(async move {
            let answer = match etcd::connect(&config.etcd, etcd::any_start()).await {
                Ok((client, _)) => {
                    let change = propose::Change {
                        request: change.request,
                        force: change.force,
                        dry_run: change.dry_run,
                        by: config.node.clone(),
                        terms: change.terms,
                        asked_by: Some(asked_by),
                    };
                    propose::propose(&client, &config.etcd, change).await
                }
                Err(e) => Reply::error(e.to_string(), Value::Null),
            };
            let _ = reply.send(answer);
        });
    }

    /// Answers `status --cluster` from etcd in a task of its own.
    pub fn status(&self, reply: oneshot::Sender<Reply>) {
        let config = self.config.clone();
        tokio::spawn(async move {
            let _ = reply.send(status(&config).await);
        });
    }

    /// Answers `history --cluster` from etcd in a task of its own.
    pub fn history(&self, service: Option<String>, limit: usize, reply: oneshot::Sender<Reply>) {
        let config = self.config.clone();
        tokio::spawn(async move {
            let _ = reply.send(history(&config, service.as_deref(), limit).await);
        });
    }
}

/// `status --cluster` read from etcd.
pub async fn status(config: &FleetConfig) -> Reply {
    let result = async {
        let (client, _) = etcd::connect(&config.etcd, etcd::any_start()).await?;
        query::status(&client, &config.etcd, &config.expect_hosts).await
    };
    match result.await {
        Ok((summary, status)) => {
            Reply::ok(summary, serde_json::to_value(status).unwrap_or_default())
        }
        Err(e) => Reply::error(e.to_string(), Value::Null),
    }
}

/// `history --cluster` read from etcd.
pub async fn history(config: &FleetConfig, service: Option<&str>, limit: usize) -> Reply {
    let result = async {
        let (client, _) = etcd::connect(&config.etcd, etcd::any_start()).await?;
        query::history(&client, &config.etcd, service, limit).await
    };
    match result.await {
        Ok(changes) => Reply::ok(
            format!("{} fleet change(s)", changes.len()),
            json!({ "fleet": changes }),
        ),
        Err(e) => Reply::error(e.to_string(), Value::Null),
    }
}
