//! The agent's servers, each on the one accept loop of [`control::serve`]: the control
//! socket, the peer listener of a cluster, and the metrics endpoint; and the remote API
//! (gRPC, `[remote]`) on tonic's. Each runs in a task of its own until the shutdown signal,
//! then drains.

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::AgentError;
use crate::config::ClusterConfig;
use crate::config::Config;
use crate::control::{self, Bounds, Envelope, Limits, PeerCredentials, Requests};
use crate::metrics::{self, Metrics};
use crate::peers;
use crate::peers::server::TlsHandshake;

/// Completes when the agent stops.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Binds the control socket and serves it, requests going to `engine`.
pub async fn control_socket(
    config: &Config,
    limits: &Limits,
    engine: &mpsc::Sender<Envelope>,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, AgentError> {
    let agent = &config.agent;
    let listener = control::bind(
        &agent.socket,
        agent.socket_mode,
        agent.socket_group.as_deref(),
    )
    .await
    .map_err(|source| AgentError::Bind {
        path: agent.socket.clone(),
        source,
    })?;
    let handshake = PeerCredentials {
        groups: limits.groups.clone(),
        ..PeerCredentials::default()
    };
    let requests = Requests::new(handshake, limits.clone(), engine.clone());
    let budget = control::PeerBudget {
        per_uid: agent.max_connections_per_uid,
        reserved: agent.reserved_connections,
        admin_uids: agent.access.allow_uids.clone(),
        admin_gids: agent.access.allow_gids.clone(),
    };
    Ok(spawn_lines(
        "control",
        listener,
        requests,
        limits,
        Some(budget),
        stop,
    ))
}

/// Binds the peer listener of `cluster` and serves it, requests going to `engine`.
pub async fn peer_listener(
    cluster: &ClusterConfig,
    limits: &Limits,
    engine: &mpsc::Sender<Envelope>,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, AgentError> {
    let listener = TcpListener::bind(cluster.listen)
        .await
        .map_err(|source| AgentError::Bind {
            path: cluster.listen.to_string().into(),
            source,
        })?;
    let tls = peers::tls::server_config(&cluster.tls).map_err(AgentError::Tls)?;
    let requests = Requests::new(TlsHandshake::new(tls), limits.clone(), engine.clone());
    Ok(spawn_lines("peer", listener, requests, limits, None, stop))
}

/// Serves JSON-lines `requests` on `listener` in a task of its own, under the agent's
/// connection cap (and the per-user `budget`, if any), until the agent stops.
fn spawn_lines<L, H>(
    name: &'static str,
    listener: L,
    requests: H,
    limits: &Limits,
    budget: Option<control::PeerBudget>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    L: control::Listener,
    H: control::Handler<L::Conn>,
{
    let bounds = Bounds {
        name,
        max_connections: limits.max_connections,
        budget,
        drain_grace: control::DRAIN_GRACE,
    };
    tokio::spawn(control::serve(listener, bounds, requests, stopped(stop)))
}

/// Serves the metrics endpoint when the config has `[metrics] listen`.
pub async fn metrics_endpoint(
    config: &Config,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, AgentError> {
    let Some(addr) = config.metrics.listen else {
        return Ok(None);
    };
    let listener = metrics::http::bind(addr)
        .await
        .map_err(|source| AgentError::MetricsBind { addr, source })?;
    tracing::info!("serving metrics on http://{addr}/metrics");
    let limits = metrics::http::Limits::default();
    let bounds = Bounds {
        name: "metrics",
        max_connections: limits.max_connections,
        budget: None,
        drain_grace: metrics::http::DRAIN_GRACE,
    };
    let metrics = metrics.clone();
    let scrape = move |stream| metrics::http::connection(stream, metrics.clone(), limits);
    Ok(Some(tokio::spawn(control::serve(
        listener,
        bounds,
        scrape,
        stopped(stop),
    ))))
}

/// Binds the remote API when the config has `[remote]` and serves it, requests going to
/// `engine`, events read from `events`.
#[cfg(feature = "grpc")]
pub async fn remote_api(
    config: &Config,
    engine: &mpsc::Sender<Envelope>,
    events: watch::Receiver<crate::protocol::Event>,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, AgentError> {
    use crate::grpc::{listen, service::Service};
    let Some(remote) = config.remote.clone() else {
        return Ok(None);
    };
    let listener = listen::bind(&remote).await.map_err(AgentError::Remote)?;
    // Certificates are read now, so a bad file stops the agent before it reports ready.
    crate::peers::tls::server_config_h2(&remote.tls).map_err(AgentError::Tls)?;
    tracing::info!(listen = %remote.listen, clients = remote.clients.len(), "remote API (gRPC)");
    let service = Service::new(
        engine.clone(),
        events,
        remote.max_streams_per_client,
        remote.call_timeout,
    );
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = listen::serve(listener, &remote, service, stopped(stop)).await {
            tracing::error!("{e}");
        }
    })))
}

/// Without the remote API, `[remote]` is refused by the config's validation.
#[cfg(not(feature = "grpc"))]
pub async fn remote_api(
    _config: &Config,
    _engine: &mpsc::Sender<Envelope>,
    _events: watch::Receiver<crate::protocol::Event>,
    _stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, AgentError> {
    Ok(None)
}
