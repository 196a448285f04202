//! The daemon: one engine task that owns the [`Engine`] and takes requests from the control
//! socket in order, a periodic reconcile, and signals (SIGTERM/SIGINT stop gracefully,
//! SIGHUP re-reads the config and keeps the old one if the new one is refused). An apply
//! that fails is answered and journaled; it never stops the agent. Under systemd it reports
//! readiness once it serves its socket and pings the watchdog from the engine loop (see
//! [`crate::notify`]); with `[metrics] listen` it serves the metrics over HTTP.
//!
//! Changes are coalesced here, where they are serialized: when a local change (a switch,
//! rollback, canary... that is not a dry run) comes up, the task first lets the proxy's
//! minimum reload gap pass (for a proxy that reloads on every change), then takes every
//! change queued behind it, and applies them all with one transition (one reload) before
//! answering each. Changes that arrive while a reload runs wait in the queue and go into
//! the next one. One task means never two reloads at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::control::{self, Envelope, GroupLookup, Limits};
use crate::engine::{Applied, ApplyError, Engine, Queued, Step};
use crate::metrics::{self, Metrics};
use crate::notify::Notifier;
use crate::peers::coordinator::Coordinator;
use crate::peers::server::TlsTransport;
use crate::peers::{self, Node, PeerReport};
use crate::protocol::{Command, Reply};
use crate::proxy::{AnyProxy, Proxy};
use crate::requester::Requester;
use crate::store::Store;

/// Requests queued for the engine before senders wait.
pub const QUEUE_DEPTH: usize = 64;
/// Most requests taken from the queue for one transition.
pub const MAX_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("opening state directory: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("starting the engine: {0}")]
    Engine(#[from] ApplyError),
    #[error("binding control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("binding the metrics endpoint {addr}: {source}")]
    MetricsBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("starting the proxy's side: {0}")]
    Proxy(crate::proxy::ProxyError),
    #[error("peer TLS: {0}")]
    Tls(peers::tls::TlsError),
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config_path: &Path, config: Config) -> Result<(), AgentError> {
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

    let store = Store::open(&config.agent.state_dir)?;
    // One process owns the state, the journal and the managed files: a second agent stops
    // here, before it could touch any of them.
    let _lock = store.lock()?;
    proxy.start(&config).map_err(AgentError::Proxy)?;
    let mut engine = Engine::new(config.clone(), proxy, store)?;
    match engine.reconcile("start").await {
        Ok(fixes) if fixes.is_empty() => tracing::info!("started: proxy serves the desired state"),
        Ok(fixes) => tracing::info!("started: repaired {} drift(s)", fixes.len()),
        Err(e) => {
            tracing::warn!(step = %e.step, "start: cannot reconcile yet, will retry: {}", e.message)
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_server = serve_metrics(&config, engine.metrics(), stop_tx.subscribe()).await?;
    let listener = control::bind(
        &config.agent.socket,
        config.agent.socket_mode,
        config.agent.socket_group.as_deref(),
    )
    .await
    .map_err(|source| AgentError::Bind {
        path: config.agent.socket.clone(),
        source,
    })?;
    let groups = GroupLookup::new(config.agent.access.needs_groups());
    let limits = Limits {
        max_connections: config.agent.max_connections,
        max_line: config.agent.max_line,
        read_timeout: config.agent.read_timeout,
        groups: groups.clone(),
    };
    let (tx, mut rx) = mpsc::channel::<Envelope>(QUEUE_DEPTH);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tokio::spawn(control::serve(
        listener,
        limits.clone(),
        tx.clone(),
        stopped(stop_rx.clone()),
    ));
    tracing::info!(socket = %config.agent.socket.display(), "listening");
    let (report_tx, report_rx) = watch::channel(None);
    let (mut node, peer_server) = match &config.cluster {
        None => (None, None),
        Some(c) => {
            let node = Node::new(c.clone()).map_err(AgentError::Tls)?;
            let listener =
                TcpListener::bind(c.listen)
                    .await
                    .map_err(|source| AgentError::Bind {
                        path: c.listen.to_string().into(),
                        source,
                    })?;
            let transport = TlsTransport::new(
                listener,
                peers::tls::server_config(&c.tls).map_err(AgentError::Tls)?,
            );
            let server = tokio::spawn(control::serve_on(
                transport,
                limits,
                tx.clone(),
                stopped(stop_rx.clone()),
            ));
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
                let status = reload_config(&mut engine, config_path, &groups).await;
                notifier.ready(status);
            }
            _ = ping(&mut watchdog) => notifier.watchdog(),
            Some(env) = rx.recv() => serve(&mut engine, &mut node, env, &mut rx, &tx).await,
            _ = tick.tick() => {
                engine.tick().await;
                engine.poll_desired_file().await;
            }
            _ = watch_timer(engine.next_watch_due()) => { engine.run_watches().await; }
        }
        if let Some(n) = &node {
            let report = n.report(&engine);
            engine
                .metrics()
                .peers(n.config.peers.len(), n.agreeing(&report));
            report_tx.send_if_modified(|current| {
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
    }
    notifier.stopping();
    let _ = stop_tx.send(true);
    drop(tx);
    drop(report_tx);
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    // Answer what is still queued while the servers drain.
    let drain = async {
        while let Some(env) = rx.recv().await {
            let reply = match refusal(&engine, &env.command, &env.requester) {
                Some(refused) => refused,
                None => handle(&mut engine, env.command, &env.requester).await,
            };
            let _ = env.reply.send(reply);
        }
    };
    let peers_done = async {
        if let Some(s) = peer_server {
            let _ = s.await;
        }
    };
    let _ = tokio::join!(server, peers_done, drain);
    let _ = std::fs::remove_file(&engine.config().agent.socket);
    tracing::info!("stopped");
    Ok(())
}

/// The access check of [`crate::access`] for a request from the control socket: `Some`
/// refusal (journaled with who asked) when the peer may not run it. Requests over the
/// TLS listener are admitted by their certificate, and the agent's own are trusted.
/// The envelope when the access check admits it; else the refusal is sent and `None`.
fn admit<P: Proxy>(engine: &Engine<P>, env: Envelope) -> Option<Envelope> {
    match refusal(engine, &env.command, &env.requester) {
        None => Some(env),
        Some(refused) => {
            let _ = env.reply.send(refused);
            None
        }
    }
}

fn refusal<P: Proxy>(
    engine: &Engine<P>,
    command: &Command,
    requester: &Requester,
) -> Option<Reply> {
    let agent_uid = nix::unistd::geteuid().as_raw();
    let denied = engine
        .config()
        .agent
        .access
        .check(requester, command, agent_uid)
        .err()?;
    tracing::warn!("refused: {denied}");
    // Journaled like the requests the engine journals: `op` names the verb.
    let mut request = serde_json::to_value(command).expect("command serializes");
    if let Some(obj) = request.as_object_mut() {
        if let Some(verb) = obj.remove("cmd") {
            obj.insert("op".into(), verb);
        }
    }
    engine.journal_refusal(request, requester, Step::Access, denied.to_string());
    let e = ApplyError::new(Step::Access, denied);
    Some(Reply::error(e.to_string(), json!({ "step": e.step })))
}

/// Routes one request (admitted by [`admit`]): cluster changes to a coordinator task, peer
/// commands to the node, everything else to [`handle`].
async fn dispatch<P: Proxy>(
    engine: &mut Engine<P>,
    node: &mut Option<Node>,
    env: Envelope,
    local: &mpsc::Sender<Envelope>,
) {
    let no_cluster = || {
        Reply::error(
            "this agent has no [cluster] configured",
            serde_json::Value::Null,
        )
    };
    let reply = match env.command {
        Command::Cluster { command } => {
            let (Some(n), Some(m)) = (node.as_ref(), command.mutation()) else {
                let _ = env.reply.send(no_cluster());
                return;
            };
            let c = &n.config;
            let coordinator = Coordinator {
                node: c.node.clone(),
                peers: c.peers.clone(),
                client: n.client.clone(),
                timeout: c.timeout,
                hold_before_decision: c.hold_before_decision,
                local: local.clone(),
            };
            tokio::spawn(async move {
                let reply = coordinator.run(m.request, m.force, m.dry_run).await;
                let _ = env.reply.send(reply);
            });
            return;
        }
        Command::ClusterStatus => match node {
            Some(n) => Reply::ok(
                format!("{} hosts", n.config.peers.len() + 1),
                n.status(engine),
            ),
            None => no_cluster(),
        },
        cmd if cmd.is_peer_only() => match node {
            Some(n) => peers::handle_peer_command(n, engine, cmd, &env.requester).await,
            None => no_cluster(),
        },
        cmd => handle(engine, cmd, &env.requester).await,
    };
    let _ = env.reply.send(reply);
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

/// Starts the metrics endpoint when the config has `[metrics] listen`.
async fn serve_metrics(
    config: &Config,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, AgentError> {
    let Some(addr) = config.metrics.listen else {
        return Ok(None);
    };
    let listener = metrics::http::bind(addr)
        .await
        .map_err(|source| AgentError::MetricsBind { addr, source })?;
    tracing::info!("serving metrics on http://{addr}/metrics");
    let limits = metrics::http::Limits::default();
    Ok(Some(tokio::spawn(metrics::http::serve(
        listener,
        metrics.clone(),
        limits,
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        },
    ))))
}

/// Reads the config again (SIGHUP); returns the status line for the service manager.
async fn reload_config<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> &'static str {
    tracing::info!(config = %path.display(), "SIGHUP: reading the config again");
    let accepted = replace_config(engine, path, groups).await;
    engine.metrics().config_reload(accepted);
    if accepted {
        "serving; config reloaded"
    } else {
        "serving; new config refused, the old one is in force"
    }
}

async fn replace_config<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> bool {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("new config refused, the old one stays in force: {e}");
            return false;
        }
    };
    if config.agent.socket != engine.config().agent.socket
        || config.agent.state_dir != engine.config().agent.state_dir
        || config.proxy.kind != engine.config().proxy.kind
        || config.metrics != engine.config().metrics
    {
        tracing::error!(
            "new config refused: agent.socket, agent.state_dir, proxy.kind and [metrics] change only with a restart"
        );
        return false;
    }
    let (mode, group) = (config.agent.socket_mode, config.agent.socket_group.clone());
    match engine.replace_config(Arc::new(config)).await {
        Ok(a) => {
            tracing::info!("new config in force: {}", a.summary());
            groups.set(engine.config().agent.access.needs_groups());
            let socket = &engine.config().agent.socket;
            if let Err(e) = control::set_mode_group(socket, mode, group.as_deref()) {
                tracing::error!(socket = %socket.display(), "cannot apply socket_mode/socket_group: {e}");
            }
            true
        }
        Err(e) => {
            tracing::error!("new config refused, the old one stays in force: {e}");
            false
        }
    }
}

/// A change to carry out now (not a dry run): what the engine takes in a batch.
fn queued(env: &Envelope) -> Option<Queued> {
    let m = env.command.mutation().filter(|m| !m.dry_run)?;
    Some(Queued {
        request: m.request,
        requester: env.requester.clone(),
        force: m.force,
    })
}

/// Answers `first`; when it is a local change, together with every local change queued
/// behind it, applied with one transition (see the module doc). Other requests taken from
/// the queue meanwhile are dispatched after the batch, in order.
async fn serve<P: Proxy>(
    engine: &mut Engine<P>,
    node: &mut Option<Node>,
    first: Envelope,
    rx: &mut mpsc::Receiver<Envelope>,
    local: &mpsc::Sender<Envelope>,
) {
    // Every request passes the access check before it is dispatched or batched.
    let Some(first) = admit(engine, first) else {
        return;
    };
    if queued(&first).is_none() {
        dispatch(engine, node, first, local).await;
        return;
    }
    if !engine.proxy().has_runtime_maps() {
        // Bounded by the configured gap (at most a minute).
        tokio::time::sleep(engine.proxy().reload_wait()).await;
    }
    let mut changes = vec![first];
    let mut others = Vec::new();
    while changes.len() + others.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(env) => match admit(engine, env) {
                Some(env) if queued(&env).is_some() => changes.push(env),
                Some(env) => others.push(env),
                None => {}
            },
            Err(_) => break,
        }
    }
    let batch: Vec<Queued> = changes
        .iter()
        .map(|env| queued(env).expect("only changes are batched"))
        .collect();
    if batch.len() > 1 {
        tracing::info!("{} queued changes go into one transition", batch.len());
    }
    let results = engine.apply_batch(&batch).await;
    for (env, result) in changes.into_iter().zip(results) {
        let _ = env.reply.send(change_reply(result));
    }
    for env in others {
        dispatch(engine, node, env, local).await;
    }
}

fn failed(e: ApplyError) -> Reply {
    Reply::error(e.to_string(), json!({ "step": e.step }))
}

fn change_reply(result: Result<Applied, ApplyError>) -> Reply {
    match result {
        Ok(a) => Reply::ok(a.summary(), serde_json::to_value(&a).expect("serializes")),
        Err(e) => failed(e),
    }
}

/// Answers one command.
pub async fn handle<P: Proxy>(
    engine: &mut Engine<P>,
    command: Command,
    requester: &Requester,
) -> Reply {
    match command {
        Command::Status => {
            let snap = engine.snapshot().await;
            let message = format!(
                "generation {}, {} service(s), {} {}",
                snap.generation,
                snap.services.len(),
                snap.proxy.kind,
                if snap.proxy.reachable {
                    "reachable"
                } else {
                    "unreachable"
                }
            );
            Reply::ok(
                message,
                serde_json::to_value(&snap).expect("snapshot serializes"),
            )
        }
        cmd if cmd.is_mutation() => {
            let m = cmd.mutation().expect("mutation");
            if m.dry_run {
                return match engine.plan(&m.request, m.force).await {
                    Ok(plan) => Reply::ok(
                        format!(
                            "dry run: generation {} would apply; nothing changed",
                            plan.generation
                        ),
                        serde_json::to_value(&plan).expect("serializes"),
                    ),
                    Err(e) => Reply::error(
                        format!("dry run: would be refused at {e}"),
                        json!({ "step": e.step, "dry_run": true }),
                    ),
                };
            }
            change_reply(engine.apply(&m.request, requester, m.force).await)
        }
        Command::MapShow { name, view } => match engine.map_show(&name, view).await {
            Ok(data) => Reply::ok(format!("map {name}"), data),
            Err(e) => failed(e),
        },
        Command::History { service, limit } => match engine.history(service.as_deref(), limit) {
            Ok(entries) => Reply::ok(
                format!("{} entries", entries.len()),
                json!({ "entries": entries }),
            ),
            Err(e) => failed(e),
        },
        Command::Metrics => Reply::ok(
            "metrics",
            json!({ "content_type": metrics::CONTENT_TYPE, "text": engine.metrics().render() }),
        ),
        _ => Reply::error("this command is not served here", serde_json::Value::Null),
    }
}
