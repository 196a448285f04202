//! The RPCs of the remote API: each message becomes the protocol's command
//! ([`super::convert`]) and goes to the engine task with the caller's identities, as a
//! request of the control socket does; the reply comes back unchanged. A refusal by the
//! access check is `PERMISSION_DENIED` (its message names the identity and the role
//! needed); a message that names no valid command is `INVALID_ARGUMENT`.
//!
//! Bounds: each identity has at most `max_streams_per_client` calls open at once (unary
//! and streams together; one more is `RESOURCE_EXHAUSTED`). Nothing here waits on a
//! client while holding the engine: the engine answers into a oneshot and publishes its
//! state into a `watch` channel, which never blocks it. A `Watch` stream whose reader does
//! not take an event within the call timeout is closed.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Request, Response, Status};

use super::convert::{self, Invalid};
use super::pb;
use super::pb::cutover_server::Cutover;
use crate::control::Envelope;
use crate::protocol::{Command, Event, Reply};
use crate::requester::{Identity, Requester};

/// Events a `Watch` stream buffers before it waits for its reader.
const WATCH_BUFFER: usize = 4;

/// The identities of a connection's verified client certificate (its SAN DNS names and
/// URIs), as the listener found them; every request of the connection carries them.
#[derive(Debug, Clone)]
pub struct ClientNames(pub Arc<Vec<Identity>>);

/// The open calls of each identity, bounded.
#[derive(Debug, Clone)]
struct Slots {
    max: usize,
    open: Arc<Mutex<HashMap<Arc<Vec<Identity>>, usize>>>,
}

/// One open call; the slot is free again when it drops.
struct Slot {
    slots: Slots,
    names: Arc<Vec<Identity>>,
}

impl Slots {
    fn take(&self, names: &Arc<Vec<Identity>>) -> Result<Slot, Status> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(names.clone()).or_default();
        if *count >= self.max {
            let who = Requester::Remote {
                names: names.to_vec(),
            };
            return Err(Status::resource_exhausted(format!(
                "{who} has {} calls open, the most one client may (remote.max_streams_per_client); \
                 close one and try again",
                self.max
            )));
        }
        *count += 1;
        Ok(Slot {
            slots: self.clone(),
            names: names.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.names) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.names);
            }
        }
    }
}

/// The `Cutover` service: requests go to the engine task, events come from it.
#[derive(Clone)]
pub struct Service {
    engine: mpsc::Sender<Envelope>,
    events: watch::Receiver<Event>,
    slots: Slots,
    /// Longest a `Watch` stream waits for its reader to take an event.
    stall: Duration,
}

impl Service {
    /// A service sending requests to `engine` and streaming `events`, with at most
    /// `max_calls` open calls per identity; a `Watch` reader that takes no event for
    /// `stall` loses its stream.
    pub fn new(
        engine: mpsc::Sender<Envelope>,
        events: watch::Receiver<Event>,
        max_calls: usize,
        stall: Duration,
    ) -> Service {
        Service {
            engine,
            events,
            slots: Slots {
                max: max_calls,
                open: Arc::default(),
            },
            stall,
        }
    }

    /// Who sent `request` (the listener put the certificate's identities on its
    /// connection), and a slot for its call.
    fn caller<T>(&self, request: &Request<T>) -> Result<(Requester, Slot), Status> {
        let names = request
            .extensions()
            .get::<ClientNames>()
            .map(|n| n.0.clone())
            .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?;
        let slot = self.slots.take(&names)?;
        let who = Requester::Remote {
            names: names.to_vec(),
        };
        Ok((who, slot))
    }

    /// Hands `command` to the engine task for `who` and waits for its reply.
    async fn ask(&self, who: Requester, command: Command) -> Result<Reply, Status> {
        let (tx, rx) = oneshot::channel();
        let envelope = Envelope {
            command,
            requester: who,
            reply: tx,
        };
        self.engine
            .send(envelope)
            .await
            .map_err(|_| Status::unavailable("the agent is shutting down"))?;
        let reply = rx
            .await
            .map_err(|_| Status::unavailable("the agent dropped the request"))?;
        if reply.status == crate::protocol::Status::Error && reply.data["step"] == "access" {
            return Err(Status::permission_denied(reply.message));
        }
        Ok(reply)
    }

    /// Serves one unary call: `command` is the message as the protocol's command.
    async fn call<T>(
        &self,
        request: Request<T>,
        command: impl FnOnce(T) -> Result<Command, Invalid>,
    ) -> Result<Response<pb::Reply>, Status> {
        let (who, _slot) = self.caller(&request)?;
        let command =
            command(request.into_inner()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let reply = self.ask(who, command).await?;
        Ok(Response::new(convert::reply(&reply)))
    }

    /// A routing change through its own RPC.
    async fn change(&self, request: Request<pb::Change>) -> Result<Response<pb::Reply>, Status> {
        self.call(request, convert::change).await
    }
}

/// Wraps a verb's own message as the routing change it is.
fn wrap<T>(request: Request<T>, variant: fn(T) -> pb::change::Change) -> Request<pb::Change> {
    request.map(|r| pb::Change {
        change: Some(variant(r)),
    })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Cutover for Service {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.call(request, |r| Ok(convert::status(r))).await
    }

    async fn switch(
        &self,
        request: Request<pb::SwitchRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Switch)).await
    }

    async fn canary(
        &self,
        request: Request<pb::CanaryRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Canary)).await
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Promote))
            .await
    }

    async fn abort(
        &self,
        request: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Abort)).await
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Rollback))
            .await
    }

    async fn drain(
        &self,
        request: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Drain)).await
    }

    async fn undrain(
        &self,
        request: Request<pb::UndrainRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Undrain))
            .await
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.change(wrap(request, pb::change::Change::Apply)).await
    }

    async fn plan(&self, request: Request<pb::Change>) -> Result<Response<pb::Reply>, Status> {
        self.call(request, convert::plan).await
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.call(request, convert::history).await
    }

    async fn map_show(
        &self,
        request: Request<pb::MapShowRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.call(request, convert::map_show).await
    }

    async fn metrics(
        &self,
        request: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.call(request, |_| Ok(Command::Metrics)).await
    }

    async fn reload_config(
        &self,
        request: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::Reply>, Status> {
        self.call(request, |_| Ok(Command::ReloadConfig)).await
    }

    type WatchStream = EventStream;

    /// Authorized as `status` is (role `read`, journaled when refused); then the current
    /// state, and the state again after every change of it.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let (who, slot) = self.caller(&request)?;
        self.ask(who, Command::Status).await?;
        let mut events = self.events.clone();
        events.mark_changed();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let stall = self.stall;
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    changed = events.changed() => if changed.is_err() { return },
                }
                let event = convert::event(&events.borrow_and_update());
                match tokio::time::timeout(stall, tx.send(Ok(event))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!("remote API: a Watch reader took no event for {stall:?}; closing its stream");
                        return;
                    }
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
