//! The daemon: one engine task that owns the [`Engine`] and takes requests from the control
//! socket and the peer listener in order, a periodic reconcile, and signals (SIGTERM/SIGINT
//! stop gracefully, SIGHUP re-reads the config and keeps the old one if the new one is
//! refused). An apply that fails is answered and journaled; it never stops the agent. Under
//! systemd it reports readiness once it serves its socket and pings the watchdog from the
//! engine loop (see [`crate::notify`]); with `[metrics] listen` it serves the metrics over
//! HTTP.
//!
//! - the servers ([`servers`]): the control socket, the peer listener and the metrics
//!   endpoint, each on the accept loop of [`crate::control`];
//! - what the engine task does with a request ([`dispatch`]): the access check, then the
//!   batch of local changes, a dry run, a query, a cluster change, a peer's step;
//! - the replies built from the engine's answers ([`reply`]);
//! - SIGHUP ([`reload`]);
//! - the hooks ([`crate::hooks`]), told of every journal line, and replaced when a config
//!   reload changes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::control::{Envelope, GroupLookup, Limits};
use crate::engine::{ApplyError, Engine};
use crate::hooks::Hooks;
use crate::notify::Notifier;
use crate::peers::{self, Node};
use crate::protocol::PeerReport;
use crate::proxy::{AnyProxy, Proxy};
use crate::store::Store;

pub mod dispatch;
#[cfg_attr(not(feature = "etcd"), path = "fleet_off.rs")]
pub mod fleet;
pub mod reload;
pub mod reply;
pub mod servers;
#[cfg(test)]
mod tests;

pub use dispatch::{Agent, MAX_BATCH};
use fleet::FleetLink;

/// Requests queued for the engine before senders wait.
pub const QUEUE_DEPTH: usize = 64;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state directory.
    #[error("opening state directory: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The engine's start (state, render, the proxy's first check).
    #[error("starting the engine: {0}")]
    Engine(#[from] ApplyError),
    /// The control socket or the peer listener.
    #[error("binding control socket {path}: {source}")]
    Bind {
        /// The socket's path or the listener's address.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics endpoint.
    #[error("binding the metrics endpoint {addr}: {source}")]
    MetricsBind {
        /// Its address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The signal handlers.
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    /// The proxy's side of the agent.
    #[error("starting the proxy's side: {0}")]
    Proxy(crate::proxy::ProxyError),
    /// The cluster's certificates.
    #[error("peer TLS: {0}")]
    Tls(peers::tls::TlsError),
    /// `[proxy] runtime = "lua"` on a host where the Lua runtime does not work.
    #[error("{0}")]
    NginxRuntime(String),
    /// The remote API (`[remote]`).
    #[cfg(feature = "grpc")]
    #[error("{0}")]
    Remote(crate::grpc::listen::ListenError),
    /// `[cluster] store = "etcd"` in a build without the fleet store.
    #[error("[cluster] store = \"etcd\": this cutover was built without the etcd feature")]
    NoFleetStore,
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config_path: &Path, mut config: Config) -> Result<(), AgentError> {
    // Which Nginx mode is in use is decided once, before the proxy is built.
    let detected = crate::proxy::nginx::lua::detect::resolve(&mut config, true)
        .await
        .map_err(AgentError::NginxRuntime)?;
    if let Some(d) = detected {
        tracing::info!("{}", d.summary());
    }
    let config = Arc::new(config);
    let proxy = AnyProxy::new(&config.proxy);
    run_with(config_path, config, proxy).await
}

/// Runs the agent with a given proxy.
pub async fn run_with<P: Proxy>(
    config_path: &Path,
    config: Arc<Config>,
    proxy: P,
) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
    let notifier = Notifier::from_env();

    let store = Store::open(&config.agent.state_dir)?.with_journal_limits(config.agent.journal);
    // One process owns the state, the journal and the managed files: a second agent stops
    // here, before it could touch any of them.
    let _lock = store.lock()?;
    proxy.start(&config).map_err(AgentError::Proxy)?;
    let mut engine = Engine::new(config.clone(), proxy, store)?;
    // Every journal line from here on reaches the hooks that name its event.
    let hooks = Hooks::start(&config.hooks, engine.metrics().clone());
    engine.set_journal_tap(Some(hooks.tap()));
    match engine.reconcile("start").await {
        Ok(fixes) if fixes.is_empty() => tracing::info!("started: proxy serves the desired state"),
        Ok(fixes) => tracing::info!("started: repaired {} drift(s)", fixes.len()),
        Err(e) => {
            tracing::warn!(step = %e.step, "start: cannot reconcile yet, will retry: {}", e.message())
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_server =
        servers::metrics_endpoint(&config, engine.metrics(), stop_rx.clone()).await?;
    let groups = GroupLookup::new(config.agent.access.needs_groups());
    let limits = Limits {
        max_connections: config.agent.max_connections,
        max_line: config.agent.max_line,
        read_timeout: config.agent.read_timeout,
        groups: groups.clone(),
    };
    let (tx, mut rx) = mpsc::channel::<Envelope>(QUEUE_DEPTH);
    let server = servers::control_socket(&config, &limits, &tx, stop_rx.clone()).await?;
    tracing::info!(socket = %config.agent.socket.display(), "listening");
    let (events_tx, events_rx) = watch::channel(engine.event());
    let remote_server = servers::remote_api(&config, &tx, events_rx, stop_rx.clone()).await?;
    let (report_tx, report_rx) = watch::channel(None);
    let (node, peer_server) = match &config.cluster {
        None => (None, None),
        Some(c) => {
            let node = Node::new(c.clone()).map_err(AgentError::Tls)?;
            let server = servers::peer_listener(c, &limits, &tx, stop_rx.clone()).await?;
            tokio::spawn(peers::coordinator::report_loop(
                c.peers.clone(),
                node.client.clone(),
                c.timeout,
                c.report_interval,
                report_rx,
            ));
            tracing::info!(node = %c.node, listen = %c.listen, peers = c.peers.len(), "peer listener");
            (Some(node), Some(server))
        }
    };
    let fleet = match &config.fleet {
        None => None,
        Some(f) => {
            tracing::info!(node = %f.node, prefix = %f.etcd.prefix, endpoints = %f.etcd.endpoints.join(","), "fleet store");
            Some(FleetLink::start(f, engine.metrics().clone()).ok_or(AgentError::NoFleetStore)?)
        }
    };
    let (done_tx, mut done_rx) = mpsc::channel(QUEUE_DEPTH);
    let mut agent = Agent {
        engine,
        node,
        fleet,
        local: Some(tx),
        coordinated: Some(done_tx),
        config_path: config_path.to_owned(),
        groups: groups.clone(),
    };
    notifier.ready(&format!("serving {}", config.agent.socket.display()));
    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);

    let mut tick = tokio::time::interval(config.agent.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                notifier.reloading();
                tracing::info!("SIGHUP");
                let verdict = reload::reload_config(&mut agent.engine, config_path, &groups).await;
                notifier.ready(reload::notice(&verdict));
            }
            _ = ping(&mut watchdog) => notifier.watchdog(),
            Some(env) = rx.recv() => agent.receive(env, &mut rx).await,
            call = FleetLink::next_call(&mut agent.fleet) => {
                if let Some(f) = &agent.fleet {
                    f.answer(&mut agent.engine, call).await;
                }
            }
            Some(done) = done_rx.recv() => agent.finish(done),
            _ = tick.tick() => {
                agent.engine.tick().await;
                agent.engine.poll_servers().await;
                agent.engine.poll_desired_file().await;
            }
            _ = watch_timer(agent.engine.next_watch_due()) => { agent.engine.run_watches().await; }
        }
        if let Some(n) = &agent.node {
            publish_report(n, &agent.engine, &report_tx);
        }
        if let Some(f) = &agent.fleet {
            f.publish(&agent.engine);
        }
        publish_event(&agent.engine, &events_tx);
        hooks.sync(&agent.engine.config().hooks);
        agent.engine.publish_health();
        // Whatever was answered above is durable before the next request is taken.
        agent.engine.flush().await;
    }
    notifier.stopping();
    let _ = stop_tx.send(true);
    agent.local = None;
    agent.coordinated = None;
    drop(report_tx);
    // Ends the remote API's Watch streams, so its connections can close.
    drop(events_tx);
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    // Answer what is still queued, and the cluster changes still under way, while the
    // servers drain.
    let drain = async {
        loop {
            tokio::select! {
                Some(env) = rx.recv() => {
                    if let Some(authorized) = agent.authorize(env) {
                        agent.dispatch(authorized).await;
                    }
                }
                Some(done) = done_rx.recv() => agent.finish(done),
                else => break,
            }
        }
    };
    let peers_done = async {
        if let Some(s) = peer_server {
            let _ = s.await;
        }
        if let Some(s) = remote_server {
            // tonic waits for open calls; they get the grace the other servers give.
            let grace = crate::control::DRAIN_GRACE * 2;
            if tokio::time::timeout(grace, s).await.is_err() {
                tracing::warn!("remote API: calls cut at shutdown");
            }
        }
    };
    let _ = tokio::join!(server, peers_done, drain);
    agent.engine.flush().await;
    let _ = std::fs::remove_file(&agent.engine.config().agent.socket);
    tracing::info!("stopped");
    Ok(())
}

/// Counts the agreeing peers and hands this node's report to the report loop when it
/// changed (its time aside).
fn publish_report<P: Proxy>(
    node: &Node,
    engine: &Engine<P>,
    reports: &watch::Sender<Option<PeerReport>>,
) {
    let report = node.report(engine);
    engine
        .metrics()
        .peers(node.config.peers.len(), node.agreeing(&report));
    reports.send_if_modified(|current| {
        let changed = current.as_ref().is_none_or(|c| {
            PeerReport {
                time_ms: c.time_ms,
                ..report.clone()
            } != *c
        });
        if changed {
            *current = Some(report);
        }
        changed
    });
}

/// Hands the routing state to the remote API's `Watch` streams when it changed. A `watch`
/// channel: the engine never waits for a reader, a slow one sees the newest state.
fn publish_event<P: Proxy>(engine: &Engine<P>, events: &watch::Sender<crate::protocol::Event>) {
    let event = engine.event();
    events.send_if_modified(|current| {
        let changed = *current != event;
        if changed {
            *current = event;
        }
        changed
    });
}

/// Waits for the next watchdog ping, forever without a watchdog.
async fn ping(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Completes when the next post-switch watch sample is due; never without a watch.
async fn watch_timer(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep(crate::engine::until(due)).await,
        None => std::future::pending().await,
    }
}
