//! The votes on a proposal: the proposal stored under the proposer's lease, every live
//! host's vote gathered from a watch, and what they add up to (each host's answer, the
//! refusals, the records the change leads to).

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, WatchOptions};
use serde_json::json;
use tokio::time::Instant;

use super::etcd::{etcd_error, parse, puts, read_hosts, to_json, FleetError, Key, Keys};
use crate::config::EtcdConfig;
use crate::protocol::{HostOutcome, Proposal, ServiceState, Vote};

/// Stores the proposal and gathers the live hosts' votes: all of them, or until one says
/// no, or `vote_timeout`.
pub async fn collect(
    client: &mut Client,
    config: &EtcdConfig,
    keys: &Keys,
    proposal: &Proposal,
    lease: i64,
    mut live: BTreeSet<String>,
) -> Result<Votes, FleetError> {
    let err = etcd_error(config);
    // Watch before the proposal exists, so that no vote can come before the watch.
    let mut watch = client
        .watch(
            keys.votes(&proposal.id),
            Some(WatchOptions::new().with_prefix()),
        )
        .await
        .map_err(&err)?;
    let key = keys.proposal(&proposal.id);
    let stored = client
        .txn(
            Txn::new()
                .when(vec![Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(
                    key,
                    to_json(proposal),
                    Some(PutOptions::new().with_lease(lease)),
                )]),
        )
        .await
        .map_err(&err)?;
    if !stored.succeeded() {
        return Err(FleetError::BadRecord {
            key: keys.proposal(&proposal.id),
            reason: "a proposal with this id exists already".into(),
        });
    }
    let deadline = Instant::now() + config.vote_timeout;
    let mut votes: BTreeMap<String, Result<Vote, String>> = BTreeMap::new();
    // Until every live host voted, or one said no.
    while !live.iter().all(|h| votes.contains_key(h))
        && votes.values().all(|v| v.as_ref().is_ok_and(|v| v.ok))
    {
        let message = tokio::time::timeout_at(deadline, watch.message()).await;
        match message {
            Err(_elapsed) => {
                // A host whose lease expired meanwhile is no longer live.
                let now: BTreeSet<String> = read_hosts(client, config, keys)
                    .await?
                    .into_keys()
                    .collect();
                live.retain(|h| now.contains(h) || votes.contains_key(h));
                break;
            }
            Ok(Err(e)) => return Err(err(e)),
            Ok(Ok(None)) => return Err(FleetError::WatchEnded("the votes' watch closed".into())),
            Ok(Ok(Some(response))) => {
                for (key, kv) in puts(keys, &response) {
                    if let Key::Vote(_, host) = key {
                        let vote = parse::<Vote>(kv.key(), kv.value())
                            .map_err(|e| e.to_string())
                            .and_then(|v| {
                                if v.node == host {
                                    Ok(v)
                                } else {
                                    Err(format!("a vote of {} under the key of {host}", v.node))
                                }
                            });
                        votes.insert(host, vote);
                    }
                }
            }
        }
    }
    drop(watch);
    Ok(Votes { live, votes })
}

/// The votes gathered, and the hosts live when the vote ended.
pub struct Votes {
    /// The hosts live when the vote ended.
    pub live: BTreeSet<String>,
    /// Each host's vote, or why it could not be read.
    pub votes: BTreeMap<String, Result<Vote, String>>,
}

impl Votes {
    /// Each live host's answer, for the reply.
    pub fn hosts(&self) -> BTreeMap<String, HostOutcome> {
        self.live
            .iter()
            .map(|h| {
                let outcome = match self.votes.get(h) {
                    Some(Ok(v)) if v.ok => HostOutcome {
                        ok: true,
                        data: Some(json!({ "summary": v.summary, "services": v.services })),
                        error: None,
                    },
                    Some(Ok(v)) => HostOutcome {
                        ok: false,
                        data: None,
                        error: v.error.clone(),
                    },
                    Some(Err(e)) => HostOutcome {
                        ok: false,
                        data: None,
                        error: Some(e.clone()),
                    },
                    None => HostOutcome {
                        ok: false,
                        data: None,
                        error: Some("did not vote in time".into()),
                    },
                };
                (h.clone(), outcome)
            })
            .collect()
    }

    /// `host: why` for every live host that did not vote yes.
    pub fn refusals(&self) -> Vec<String> {
        self.hosts()
            .into_iter()
            .filter(|(_, o)| !o.ok)
            .map(|(h, o)| format!("{h}: {}", o.error.unwrap_or_default()))
            .collect()
    }

    /// The records the change leads to: the union of the votes, refused where two hosts
    /// work the same service out differently.
    pub fn merged(&self) -> Result<BTreeMap<String, ServiceState>, String> {
        let mut out: BTreeMap<String, (String, ServiceState)> = BTreeMap::new();
        for (host, vote) in &self.votes {
            let Ok(vote) = vote else { continue };
            for (service, record) in &vote.services {
                match out.get(service) {
                    Some((other, r)) if r != record => {
                        return Err(format!(
                            "hosts disagree on {service}: {other} would serve {r}, {host} {record}"
                        ))
                    }
                    Some(_) => {}
                    None => {
                        out.insert(service.clone(), (host.clone(), record.clone()));
                    }
                }
            }
        }
        Ok(out.into_iter().map(|(s, (_, r))| (s, r)).collect())
    }
}
