//! What the fleet store answers without changing anything: `status --cluster` (one row per
//! live host, read from their records, and per service whether every host serves what the
//! fleet's records say) and `history --cluster` (the log of committed changes).

use std::collections::BTreeMap;

use etcd_client::{Client, GetOptions, SortOrder, SortTarget};

use super::etcd::{etcd_error, parse, read_desired, read_hosts, FleetError, Keys};
use crate::config::EtcdConfig;
use crate::protocol::{ClusterStatus, Desired, FleetChange, HostRow, ServiceAgreement};
use crate::store::now_ms;

/// The fleet's view: every live host (and every expected host that is not), and per
/// service what the records say and what each host serves. Returns a one-line summary
/// with it.
pub async fn status(
    client: &Client,
    config: &EtcdConfig,
    expect_hosts: &[String],
) -> Result<(String, ClusterStatus), FleetError> {
    let mut client = client.clone();
    let keys = Keys::new(&config.prefix);
    let desired = read_desired(&mut client, config, &keys).await?;
    let hosts = read_hosts(&mut client, config, &keys).await?;
    let now = now_ms();
    let mut rows = Vec::new();
    let mut serving = BTreeMap::new();
    for (node, record) in &hosts {
        match record {
            Ok(r) => {
                rows.push(HostRow::Seen {
                    node: node.clone(),
                    reachable: true,
                    age_ms: now.saturating_sub(r.time_ms),
                    generation: r.generation,
                    cluster_generation: r.cluster_generation,
                    digest: r.digest.clone(),
                    proxy_reachable: r.proxy_reachable,
                    last_error: r.last_error.clone(),
                    held: None,
                });
                serving.insert(node.clone(), r.services.clone());
            }
            Err(e) => rows.push(HostRow::Seen {
                node: node.clone(),
                reachable: true,
                age_ms: 0,
                generation: 0,
                cluster_generation: 0,
                digest: String::new(),
                proxy_reachable: false,
                last_error: Some(e.clone()),
                held: None,
            }),
        }
    }
    for node in expect_hosts {
        if !hosts.contains_key(node) {
            rows.push(HostRow::Unseen {
                node: node.clone(),
                reachable: false,
                age_ms: None,
            });
        }
    }
    let view = |d: &Desired| match d.canary {
        Some(c) => format!("{}+canary {} {}%", d.live, c.colour, c.percent),
        None => d.live.to_string(),
    };
    let mut services = BTreeMap::new();
    for (name, record) in &desired.services {
        let wanted = view(&Desired::routing(record.live, record.canary));
        let mut views = BTreeMap::from([("etcd".to_owned(), wanted.clone())]);
        for (node, routing) in &serving {
            if let Some(d) = routing.get(name) {
                views.insert(node.clone(), view(d));
            }
        }
        let agree = views.values().all(|v| *v == wanted);
        services.insert(
            name.clone(),
            ServiceAgreement {
                agree,
                hosts: views,
            },
        );
    }
    let lagging = hosts
        .values()
        .flatten()
        .filter(|r| r.cluster_generation < desired.generation())
        .count();
    let summary = format!(
        "fleet {}: generation {} (etcd revision {}), {} live host(s), {} behind, {} expected missing",
        config.prefix,
        desired.generation(),
        desired.revision,
        hosts.len(),
        lagging,
        expect_hosts.iter().filter(|h| !hosts.contains_key(*h)).count()
    );
    Ok((
        summary,
        ClusterStatus {
            hosts: rows,
            services,
        },
    ))
}

/// The latest `limit` committed changes, newest first; those of `service` only when given.
pub async fn history(
    client: &Client,
    config: &EtcdConfig,
    service: Option<&str>,
    limit: usize,
) -> Result<Vec<FleetChange>, FleetError> {
    let mut client = client.clone();
    let keys = Keys::new(&config.prefix);
    let options = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, SortOrder::Descend)
        .with_limit(super::etcd::MAX_RECORDS);
    let response = client
        .get(keys.log(), Some(options))
        .await
        .map_err(etcd_error(config))?;
    let mut out = Vec::new();
    for kv in response.kvs() {
        let change: FleetChange = parse(kv.key(), kv.value())?;
        if service.is_none_or(|s| change.services.iter().any(|x| x == s)) {
            out.push(change);
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
