//! The daemon: one engine task that owns the [`Engine`] and takes requests from the control
//! socket in order, a periodic reconcile, and signals (SIGTERM/SIGINT stop gracefully,
//! SIGHUP re-reads the config and keeps the old one if the new one is refused). An apply
//! that fails is answered and journaled; it never stops the agent.
//!
//! Changes are coalesced here, where they are serialized: when a switch or rollback comes
//! up, the task first lets the proxy's minimum reload gap pass (for a proxy that reloads on
//! every change), then takes every request queued behind it, and applies all the queued
//! changes with one transition (one reload) before answering each. Changes that arrive
//! while a reload runs wait in the queue and go into the next one. One task means never
//! two reloads at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::control::{self, Envelope, Limits};
use crate::engine::{Applied, ApplyError, Engine, Queued};
use crate::protocol::{Command, Reply};
use crate::proxy::{AnyProxy, Proxy};
use crate::store::{Requester, Store};

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
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
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

    let store = Store::open(&config.agent.state_dir)?;
    let mut engine = Engine::new(config.clone(), proxy, store)?;
    match engine.reconcile("start").await {
        Ok(fixes) if fixes.is_empty() => tracing::info!("started: proxy serves the desired state"),
        Ok(fixes) => tracing::info!("started: repaired {} drift(s)", fixes.len()),
        Err(e) => {
            tracing::warn!(step = %e.step, "start: cannot reconcile yet, will retry: {}", e.message)
        }
    }

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
    let limits = Limits {
        max_connections: config.agent.max_connections,
        max_line: config.agent.max_line,
        read_timeout: config.agent.read_timeout,
    };
    let (tx, mut rx) = mpsc::channel::<Envelope>(QUEUE_DEPTH);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(control::serve(listener, limits, tx, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));
    tracing::info!(socket = %config.agent.socket.display(), "listening");

    let mut tick = tokio::time::interval(config.agent.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => reload_config(&mut engine, config_path).await,
            Some(env) = rx.recv() => serve(&mut engine, env, &mut rx).await,
            _ = tick.tick() => {
                engine.tick().await;
                engine.poll_desired_file().await;
            }
            _ = watch_timer(engine.next_watch_due()) => { engine.run_watches().await; }
        }
    }
    let _ = stop_tx.send(true);
    // Answer what is still queued while the server drains.
    let drain = async {
        while let Some(env) = rx.recv().await {
            let reply = handle(&mut engine, env.command, &env.requester).await;
            let _ = env.reply.send(reply);
        }
    };
    let _ = tokio::join!(server, drain);
    let _ = std::fs::remove_file(&engine.config().agent.socket);
    tracing::info!("stopped");
    Ok(())
}

/// Completes when the next post-switch watch sample is due; never without a watch.
async fn watch_timer(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep(crate::engine::until(due)).await,
        None => std::future::pending().await,
    }
}

async fn reload_config<P: Proxy>(engine: &mut Engine<P>, path: &Path) {
    tracing::info!(config = %path.display(), "SIGHUP: reading the config again");
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("new config refused, the old one stays in force: {e}");
            return;
        }
    };
    if config.agent.socket != engine.config().agent.socket
        || config.agent.state_dir != engine.config().agent.state_dir
        || config.proxy.kind != engine.config().proxy.kind
    {
        tracing::error!(
            "new config refused: agent.socket, agent.state_dir and proxy.kind change only with a restart"
        );
        return;
    }
    match engine.replace_config(Arc::new(config)).await {
        Ok(a) => tracing::info!("new config in force: {}", a.summary()),
        Err(e) => tracing::error!("new config refused, the old one stays in force: {e}"),
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

/// Answers `first`; when it is a change, together with every change queued behind it,
/// applied with one transition (see the module doc). Other requests taken from the queue
/// meanwhile are answered after the batch, in order.
async fn serve<P: Proxy>(
    engine: &mut Engine<P>,
    first: Envelope,
    rx: &mut mpsc::Receiver<Envelope>,
) {
    if queued(&first).is_none() {
        let reply = handle(engine, first.command, &first.requester).await;
        let _ = first.reply.send(reply);
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
            Ok(env) if queued(&env).is_some() => changes.push(env),
            Ok(env) => others.push(env),
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
        let reply = handle(engine, env.command, &env.requester).await;
        let _ = env.reply.send(reply);
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
        _ => unreachable!("every mutation is handled above"),
    }
}
