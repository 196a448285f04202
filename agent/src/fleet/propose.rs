//! Proposing a change to the fleet: the one path of a cluster change in etcd mode, run by an
//! agent (`--cluster`) or by the command line alone (`--etcd`).
//!
//! 1. Read the fleet's records and the live hosts (their keys exist while their leases do).
//! 2. Store the proposal under a lease of the proposer's: if the proposer dies, the
//!    proposal expires with it and nothing changes.
//! 3. Every live host votes (everything up to the apply, as `--dry-run` does) under its own
//!    lease. One no, or a live host that does not vote within `vote_timeout`, refuses the
//!    change; a host whose lease expires meanwhile is no longer live and not waited for.
//! 4. Commit with one transaction that compares the generation's revision it read, the
//!    proposal and every vote: two concurrent changes never both win, and the loser is told
//!    who won. A change with `if_generation` is refused at step 1 unless the fleet is at
//!    that generation, and the commit's comparison keeps it so until the end.
//! 5. Wait until every voter reports the new generation applied, or `wait`; name the hosts
//!    that lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp, WatchOptions};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::etcd::{
    etcd_error, parse, puts, read_desired, read_hosts, to_json, Desired, FleetError, Key, Keys,
};
use super::lease::Lease;
use super::votes::{self, Votes};
use crate::config::EtcdConfig;
use crate::protocol::{
    ClusterOutcome, FleetChange, HostOutcome, PeerReport, Proposal, Reply, Request, ServiceState,
    StaleGeneration, Terms,
};
use crate::requester::Requester;
use crate::store::now_ms;

/// Log entries kept in etcd; a commit deletes the entry this many generations older.
pub const LOG_KEPT: u64 = 1_000;

/// One change proposed to the fleet.
pub struct Change {
    /// What to change.
    pub request: Request,
    /// Skip the pre-switch gate.
    pub force: bool,
    /// Votes only: every host checks it, nothing is committed.
    pub dry_run: bool,
    /// Who proposes it (a node name, or the command line's `--etcd-name`).
    pub by: String,
    /// Why, and the fleet generation it expects.
    pub terms: Terms,
    /// Who asked the proposer (an agent's requester), recorded with the commit.
    pub asked_by: Option<Requester>,
}

/// Proposes `change` to the fleet under `config` and answers as a cluster change does
/// (`ClusterOutcome` data, one entry per host).
pub async fn propose(client: &Client, config: &EtcdConfig, change: Change) -> Reply {
    match run(client, config, &change).await {
        Ok(reply) => reply,
        Err(e) => Reply::error(e.to_string(), Value::Null),
    }
}

async fn run(client: &Client, config: &EtcdConfig, change: &Change) -> Result<Reply, FleetError> {
    let mut client = client.clone();
    let keys = Keys::new(&config.prefix);
    // The records, the live hosts and the proposer's lease, all at once.
    let (mut records, mut members) = (client.clone(), client.clone());
    let (base, hosts, lease) = tokio::try_join!(
        read_desired(&mut records, config, &keys),
        read_hosts(&mut members, config, &keys),
        Lease::grant(&client, config),
    )?;
    if let Err(stale) = StaleGeneration::check(
        "fleet generation",
        change.terms.if_generation,
        base.generation(),
    ) {
        lease.revoke().await;
        return Ok(Reply::error(
            format!("fleet change refused, nothing changed anywhere: {stale}"),
            Value::Null,
        ));
    }
    let live: BTreeSet<String> = hosts.into_keys().collect();
    if live.is_empty() {
        lease.revoke().await;
        return Ok(Reply::error(
            format!("no host of {} is live: nothing changed", config.prefix),
            Value::Null,
        ));
    }
    let id = proposal_id(&change.by);
    let proposal = Proposal {
        id: id.clone(),
        by: change.by.clone(),
        at_ms: now_ms(),
        request: change.request.clone(),
        force: change.force,
        base_generation: base.generation(),
        base: base.services.clone(),
    };
    let votes = votes::collect(&mut client, config, &keys, &proposal, lease.id, live).await;
    let decided = match votes {
        Ok(votes) => decide(&mut client, config, &keys, change, &proposal, &base, votes).await,
        Err(e) => Err(e),
    };
    match decided {
        Ok(Decided::Committed { generation, votes }) => {
            // The commit deleted the proposal and its votes; the lease goes meanwhile.
            let (confirmed, ()) = tokio::join!(
                confirm(&mut client, config, &keys, &votes.live, generation),
                lease.revoke()
            );
            Ok(committed(
                config,
                &proposal,
                generation,
                &votes,
                &confirmed?,
            ))
        }
        Ok(Decided::Answer(reply)) => {
            withdraw(&mut client, &keys, &id, lease).await;
            Ok(reply)
        }
        Err(e) => {
            withdraw(&mut client, &keys, &id, lease).await;
            Err(e)
        }
    }
}

/// Takes back a proposal that was not committed: the proposal, then its votes (a vote is
/// only written while its proposal exists), then the proposer's lease.
async fn withdraw(client: &mut Client, keys: &Keys, id: &str, lease: Lease) {
    let _ = client.delete(keys.proposal(id), None).await;
    let _ = client
        .delete(keys.votes(id), Some(DeleteOptions::new().with_prefix()))
        .await;
    lease.revoke().await;
}

/// What [`decide`] came to.
enum Decided {
    /// The answer: refused, a dry run, or nothing to change.
    Answer(Reply),
    /// Committed as fleet generation `generation`; the hosts are applying it.
    Committed {
        /// The fleet generation committed.
        generation: u64,
        /// The votes it was committed on.
        votes: Votes,
    },
}

/// `<by>.<ms>.<pid>.<n>`: unique per proposing process, and a valid key segment (the
/// proposal is stored only if its key is new, so two proposers can never share votes).
fn proposal_id(by: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let by: String = by.chars().take(32).collect();
    format!(
        "{by}.{}.{}.{}",
        now_ms(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Commits the change if every live host voted yes (and it is not a dry run).
async fn decide(
    client: &mut Client,
    config: &EtcdConfig,
    keys: &Keys,
    change: &Change,
    proposal: &Proposal,
    base: &Desired,
    votes: Votes,
) -> Result<Decided, FleetError> {
    let outcome =
        |phase, generation, hosts, missed| outcome(&proposal.id, phase, generation, hosts, missed);
    let refusals = votes.refusals();
    if !refusals.is_empty() {
        return Ok(Decided::Answer(Reply::error(
            format!(
                "fleet change refused, nothing changed anywhere: {}",
                refusals.join("; ")
            ),
            outcome("prepare", None, votes.hosts(), None),
        )));
    }
    let services = match votes.merged() {
        Ok(s) => s,
        Err(why) => {
            return Ok(Decided::Answer(Reply::error(
                format!("fleet change refused, nothing changed anywhere: {why}"),
                outcome("prepare", None, votes.hosts(), None),
            )))
        }
    };
    if change.request.service().is_some_and(|s| {
        !votes
            .votes
            .values()
            .flatten()
            .any(|v| v.serves.iter().any(|x| x == s))
    }) {
        return Ok(Decided::Answer(Reply::error(
            format!(
                "no live host serves {}: nothing changed",
                change.request.service().unwrap_or_default()
            ),
            outcome("prepare", None, votes.hosts(), None),
        )));
    }
    if change.dry_run {
        return Ok(Decided::Answer(Reply::ok(
            format!(
                "dry run: all {} live hosts would take it; nothing changed",
                votes.live.len()
            ),
            outcome("prepare", None, votes.hosts(), None),
        )));
    }
    if services.is_empty() {
        return Ok(Decided::Answer(Reply::ok(
            format!(
                "nothing to change on any of the {} live hosts (generation {})",
                votes.live.len(),
                base.generation()
            ),
            outcome("prepare", None, votes.hosts(), None),
        )));
    }
    let generation = base.generation() + 1;
    let record = FleetChange {
        generation,
        id: proposal.id.clone(),
        by: change.by.clone(),
        at_ms: now_ms(),
        request: change.request.clone(),
        force: change.force,
        voters: votes.votes.keys().cloned().collect(),
        services: services.keys().cloned().collect(),
        reason: change.terms.reason.clone(),
        asked_by: change.asked_by.clone(),
    };
    commit(
        client, config, keys, proposal, base, &votes, &services, &record,
    )
    .await?;
    Ok(Decided::Committed { generation, votes })
}

/// The answer to a change committed as `generation`: every voter that `confirmed` it, and
/// those that did not within the wait.
fn committed(
    config: &EtcdConfig,
    proposal: &Proposal,
    generation: u64,
    votes: &Votes,
    confirmed: &BTreeMap<String, PeerReport>,
) -> Reply {
    let lagging: Vec<String> = votes
        .live
        .iter()
        .filter(|h| !confirmed.contains_key(*h))
        .cloned()
        .collect();
    let hosts = votes
        .live
        .iter()
        .map(|h| {
            let o = match confirmed.get(h) {
                Some(r) => HostOutcome {
                    ok: true,
                    data: Some(json!({
                        "generation": r.generation,
                        "cluster_generation": r.cluster_generation,
                        "digest": r.digest,
                    })),
                    error: None,
                },
                None => HostOutcome {
                    ok: false,
                    data: None,
                    error: Some(format!(
                        "not confirmed within {} ms",
                        config.wait.as_millis()
                    )),
                },
            };
            (h.clone(), o)
        })
        .collect();
    let data = outcome(
        &proposal.id,
        "commit",
        Some(generation),
        hosts,
        Some(lagging.clone()),
    );
    if lagging.is_empty() {
        Reply::ok(
            format!(
                "fleet generation {generation} committed and applied on all {} live hosts",
                votes.live.len()
            ),
            data,
        )
    } else {
        Reply::error(
            format!(
                "fleet generation {generation} committed; not confirmed within {} ms by {} \
                 (they apply it when they can)",
                config.wait.as_millis(),
                lagging.join(", ")
            ),
            data,
        )
    }
}

/// The data of a cluster change's answer (`ClusterOutcome`).
fn outcome(
    id: &str,
    phase: &str,
    generation: Option<u64>,
    hosts: BTreeMap<String, HostOutcome>,
    missed: Option<Vec<String>>,
) -> Value {
    serde_json::to_value(ClusterOutcome {
        txn: id.to_owned(),
        phase: phase.into(),
        cluster_generation: generation,
        hosts,
        missed,
    })
    .unwrap_or_default()
}

/// The commit: one transaction, only if the generation is still the one the proposal
/// built on and the proposal and every vote still exist.
#[allow(clippy::too_many_arguments)]
async fn commit(
    client: &mut Client,
    config: &EtcdConfig,
    keys: &Keys,
    proposal: &Proposal,
    base: &Desired,
    votes: &Votes,
    services: &BTreeMap<String, ServiceState>,
    record: &FleetChange,
) -> Result<(), FleetError> {
    let mut when = vec![
        Compare::mod_revision(
            keys.generation(),
            CompareOp::Equal,
            base.generation_revision(),
        ),
        Compare::create_revision(keys.proposal(&proposal.id), CompareOp::Greater, 0),
    ];
    for host in votes.votes.keys() {
        when.push(Compare::create_revision(
            keys.vote(&proposal.id, host),
            CompareOp::Greater,
            0,
        ));
    }
    let mut then: Vec<TxnOp> = services
        .iter()
        .map(|(name, s)| TxnOp::put(keys.service(name), to_json(s), None))
        .collect();
    then.push(TxnOp::put(keys.generation(), to_json(record), None));
    then.push(TxnOp::put(
        keys.log_entry(record.generation),
        to_json(record),
        None,
    ));
    if record.generation > LOG_KEPT {
        then.push(TxnOp::delete(
            keys.log_entry(record.generation - LOG_KEPT),
            None,
        ));
    }
    then.push(TxnOp::delete(keys.proposal(&proposal.id), None));
    then.push(TxnOp::delete(
        keys.votes(&proposal.id),
        Some(DeleteOptions::new().with_prefix()),
    ));
    let txn = Txn::new()
        .when(when)
        .and_then(then)
        .or_else(vec![TxnOp::get(keys.generation(), None)]);
    let response = client.txn(txn).await.map_err(etcd_error(config))?;
    if response.succeeded() {
        return Ok(());
    }
    let current = response.op_responses().into_iter().find_map(|r| match r {
        etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
            (
                parse::<FleetChange>(kv.key(), kv.value()).ok(),
                kv.mod_revision(),
            )
        }),
        _ => None,
    });
    match current {
        Some((Some(c), revision)) if revision != base.generation_revision() => {
            Err(FleetError::Conflict {
                by: c.by,
                generation: c.generation,
                revision,
            })
        }
        _ => Err(FleetError::LeaseLost(format!(
            "proposal {} or a vote on it (nothing changed)",
            proposal.id
        ))),
    }
}

/// Waits until every host of `live` reports `generation` applied, or `config.wait`.
/// Returns the reports of those that did.
async fn confirm(
    client: &mut Client,
    config: &EtcdConfig,
    keys: &Keys,
    live: &BTreeSet<String>,
    generation: u64,
) -> Result<BTreeMap<String, PeerReport>, FleetError> {
    let err = etcd_error(config);
    // A watch from now, then a read: a report put before the watch is in the read, one
    // after it comes on the watch. Not a watch from the commit's revision: etcd serves a
    // watch that starts in the past ("unsynced") from a loop that runs every 100 ms, and
    // the reports that came meanwhile would wait for it (measured: +80 ms per change).
    let mut watch = client
        .watch(keys.hosts(), Some(WatchOptions::new().with_prefix()))
        .await
        .map_err(&err)?;
    let mut confirmed = BTreeMap::new();
    let take = |confirmed: &mut BTreeMap<String, PeerReport>, host: String, r: PeerReport| {
        if live.contains(&host) && r.cluster_generation >= generation {
            confirmed.insert(host, r);
        }
    };
    for (host, report) in read_hosts(client, config, keys).await? {
        if let Ok(r) = report {
            take(&mut confirmed, host, r);
        }
    }
    let deadline = Instant::now() + config.wait;
    while !live.iter().all(|h| confirmed.contains_key(h)) {
        match tokio::time::timeout_at(deadline, watch.message()).await {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(err(e)),
            Ok(Ok(Some(response))) => {
                for (key, kv) in puts(keys, &response) {
                    if let (Key::Host(host), Ok(r)) =
                        (key, parse::<PeerReport>(kv.key(), kv.value()))
                    {
                        take(&mut confirmed, host, r);
                    }
                }
            }
        }
    }
    drop(watch);
    Ok(confirmed)
}
