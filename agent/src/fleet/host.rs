//! The engine's side of the fleet store, run on the engine task: a host's vote on a
//! proposal (everything up to the apply, worked out from the fleet's records rather than
//! whatever this host serves), and carrying a committed fleet state through the normal
//! pipeline of a change.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use crate::engine::{ApplyError, Engine, Queued};
use crate::protocol::{
    Desired, FleetChange, Proposal, ReasonText, Request, ServiceState, Step, Terms, Vote,
};
use crate::proxy::Proxy;
use crate::requester::{Reason, Requester};

/// What the fleet task asks of the engine task.
#[derive(Debug)]
pub enum Call {
    /// Vote on a proposal.
    Vote {
        /// The proposal.
        proposal: Box<Proposal>,
        /// Where the vote goes.
        reply: oneshot::Sender<Vote>,
    },
    /// Serve the fleet's records at `generation`, unless this host already applied them.
    Apply {
        /// The fleet generation.
        generation: u64,
        /// Who committed it, and who asked them.
        origin: Origin,
        /// Every service's record.
        services: BTreeMap<String, ServiceState>,
        /// `Ok(true)` when something changed, `Ok(false)` when it already served them.
        reply: oneshot::Sender<Result<bool, ApplyError>>,
    },
    /// Journal records of the store that were refused (nothing was applied).
    Refused {
        /// Why.
        message: String,
    },
}

/// Where a committed fleet change came from, for the journal of every host that applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Who committed it (a node name, a client's `--etcd-name`; `etcd` when unknown).
    pub by: String,
    /// The verb asked for (the host applies the records it leads to).
    pub verb: Option<String>,
    /// Why, as the requester said.
    pub reason: Option<ReasonText>,
    /// Who asked the proposer.
    pub asked_by: Option<Requester>,
}

impl Origin {
    /// The origin of the change `last` (none: records written by something else).
    pub fn of(last: Option<&FleetChange>) -> Origin {
        match last {
            Some(c) => Origin {
                by: c.by.clone(),
                verb: Some(c.request.verb().to_owned()),
                reason: c.reason.clone(),
                asked_by: c.asked_by.clone(),
            },
            None => Origin {
                by: "etcd".to_owned(),
                verb: None,
                reason: None,
                asked_by: None,
            },
        }
    }
}

/// Answers one call of the fleet task as host `node`.
pub async fn answer<P: Proxy>(engine: &mut Engine<P>, node: &str, call: Call) {
    match call {
        Call::Vote { proposal, reply } => {
            let _ = reply.send(vote(engine, node, &proposal).await);
        }
        Call::Apply {
            generation,
            origin,
            services,
            reply,
        } => {
            let _ = reply.send(apply(engine, generation, origin, &services).await);
        }
        Call::Refused { message } => {
            let who = Requester::Agent(Reason::Fleet { by: "etcd".into() });
            let request = serde_json::json!({ "op": "fleet" });
            engine.journal_refusal(request, &who, "fleet", None, Step::Request, message);
        }
    }
}

/// This host's vote on `proposal`: the request worked out on the fleet's records (for the
/// services this host serves), then planned like a dry run: render, stage, the proxy's
/// checker and the pre-switch gate. A request for a service this host does not serve is
/// no business of its own: it votes yes and changes nothing.
pub async fn vote<P: Proxy>(engine: &Engine<P>, node: &str, proposal: &Proposal) -> Vote {
    let state = engine.state();
    let serves: Vec<String> = state.services.keys().cloned().collect();
    let yes = |services, summary: String| Vote {
        node: node.to_owned(),
        ok: true,
        error: None,
        step: None,
        serves: serves.clone(),
        services,
        summary,
    };
    let request = match &proposal.request {
        Request::Set { services } => Request::Set {
            services: services
                .iter()
                .filter(|(name, _)| state.services.contains_key(*name))
                .map(|(n, d)| (n.clone(), d.clone()))
                .collect(),
        },
        other => other.clone(),
    };
    match &request {
        Request::Set { services } if services.is_empty() => {
            return yes(BTreeMap::new(), "serves none of these services".into())
        }
        Request::Set { .. } => {}
        r => {
            let service = r.service().unwrap_or_default();
            if !state.services.contains_key(service) {
                return yes(BTreeMap::new(), format!("does not serve {service}"));
            }
        }
    }
    let mut base = state.clone();
    for (name, record) in &proposal.base {
        if let Some(s) = base.services.get_mut(name) {
            *s = record.clone();
        }
    }
    match engine
        .plan_from(&base, &request, proposal.force, None)
        .await
    {
        Ok((plan, next)) => {
            let changed: BTreeMap<String, ServiceState> = next
                .services
                .into_iter()
                .filter(|(name, s)| base.services.get(name) != Some(s))
                .collect();
            let files = plan.files.len();
            let summary = match (changed.is_empty(), plan.validated_by_proxy) {
                (true, _) => "changes nothing here".to_owned(),
                (false, true) => format!("{files} file(s), validated by the proxy"),
                (false, false) => format!("{files} file(s)"),
            };
            yes(changed, summary)
        }
        Err(e) => Vote {
            node: node.to_owned(),
            ok: false,
            error: Some(e.to_string()),
            step: Some(e.step),
            serves,
            services: BTreeMap::new(),
            summary: String::new(),
        },
    }
}

/// Serves the fleet's records at `generation` through the normal pipeline (forced: the
/// gate passed when the hosts voted), then records the generation as applied. Nothing
/// happens when this host already applied these records at this generation, even if it
/// changed locally since (`--local`): the next fleet generation brings it back.
pub async fn apply<P: Proxy>(
    engine: &mut Engine<P>,
    generation: u64,
    origin: Origin,
    services: &BTreeMap<String, ServiceState>,
) -> Result<bool, ApplyError> {
    let state = engine.state();
    let mine: BTreeMap<String, Desired> = services
        .iter()
        .filter(|(name, _)| state.services.contains_key(*name))
        .map(|(n, s)| (n.clone(), Desired::exactly(s)))
        .collect();
    // What this host applied from the fleet last: a local change since (`--local`) stays
    // until the next fleet generation, and shows as diverged meanwhile.
    let applied = mine
        .iter()
        .all(|(n, d)| state.cluster_routing.get(n) == Some(&Desired::routing(d.live, d.canary)));
    if state.cluster_generation == generation && applied {
        return Ok(false);
    }
    let who = Requester::Agent(Reason::Fleet { by: origin.by });
    if !mine.is_empty() {
        let queued = Queued {
            terms: Terms {
                reason: origin.reason,
                if_generation: None,
            },
            asked_by: origin.asked_by,
            verb: origin.verb,
            ..Queued::new(Request::Set { services: mine }, who, true)
        };
        engine.apply_queued(queued).await?;
    }
    engine.mark_cluster(generation).await?;
    Ok(true)
}
