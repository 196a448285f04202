//! The pre-switch gate of one colour of one service: enough of its servers up in the
//! proxy, the health probe answered where one is configured, and the pre-warm passed where
//! the service has one. Reads the proxy and the servers; changes nothing.

use super::{check_servers, probe};
use crate::config::GateConfig;
use crate::config::Service;
use crate::protocol::Colour;
use crate::protocol::GateReport;
use crate::proxy::{Proxy, ProxyError};

/// A colour that may not take traffic yet, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{colour} of {service} is not ready: {why} (--force skips the gate)")]
pub struct NotReady {
    /// The service whose traffic would move.
    pub service: String,
    /// The colour it would move to.
    pub colour: Colour,
    /// What failed: servers down, probes failing, the pre-warm's failures.
    pub why: String,
}

/// Runs the gate of `colour` of the service `name` (configured as `service`). `rested`:
/// the agent put the colour's servers in maintenance at the end of its drain; HAProxy does
/// not check servers there, so those count as up (they leave maintenance before traffic
/// moves and are checked at once; the probes and the pre-warm still go to them). With
/// `force` nothing is checked and the report says so.
pub async fn check<P: Proxy>(
    proxy: &P,
    name: &str,
    service: &Service,
    colour: Colour,
    rested: bool,
    force: bool,
) -> Result<GateReport, NotReady> {
    let backend = service.colours[&colour].backend.clone();
    let mut report = GateReport {
        service: name.to_owned(),
        colour: Some(colour),
        backend: Some(backend.clone()),
        forced: force,
        ..GateReport::default()
    };
    if force {
        return Ok(report);
    }
    let gate = &service.gate;
    let fail = |why: String| NotReady {
        service: name.to_owned(),
        colour,
        why,
    };
    let servers = match proxy.servers(&backend).await {
        Ok(mut servers) => {
            if rested {
                for s in servers.iter_mut().filter(|s| s.maint) {
                    (s.maint, s.up) = (false, true);
                }
            }
            report.up = check_servers(&backend, &servers, gate).map_err(|e| fail(e.to_string()))?;
            servers
        }
        Err(ProxyError::Unsupported { .. }) => Vec::new(),
        Err(e) => return Err(fail(format!("reading server states: {e}"))),
    };
    // Probes and pre-warm go to the configured servers, or those the proxy reports.
    let configured = &service.colours[&colour].servers;
    let targets: Vec<(String, String)> = if configured.is_empty() {
        servers
            .iter()
            .filter(|s| !s.maint)
            .map(|s| (s.name.clone(), s.address.clone()))
            .collect()
    } else {
        configured
            .iter()
            .map(|s| (s.name.clone(), s.address.clone()))
            .collect()
    };
    if let Some(path) = &gate.health_path {
        report.probed = probe_all(&targets, path, gate, fail).await?;
    }
    if let Some(prewarm) = &service.prewarm {
        let addresses: Vec<String> = targets.iter().map(|(_, a)| a.clone()).collect();
        if addresses.is_empty() {
            return Err(fail(format!("no servers of {backend} to pre-warm")));
        }
        let r = super::prewarm::run(prewarm, &addresses).await;
        if r.failure_percent() > prewarm.max_failure_percent {
            let kinds: Vec<String> = r
                .failures
                .iter()
                .map(|(k, n)| format!("{n}x {k}"))
                .collect();
            return Err(fail(format!(
                "pre-warm: {} of {} requests failed ({:.1}%, at most {}% allowed): {}",
                r.failed,
                r.sent,
                r.failure_percent(),
                prewarm.max_failure_percent,
                kinds.join(", ")
            )));
        }
        report.prewarm = Some(r);
    }
    Ok(report)
}

/// Probes every target; the names of the healthy ones, or (through `fail`) why too few
/// are.
async fn probe_all(
    targets: &[(String, String)],
    path: &str,
    gate: &GateConfig,
    fail: impl Fn(String) -> NotReady,
) -> Result<Vec<String>, NotReady> {
    if targets.is_empty() {
        return Err(fail("no servers to probe".into()));
    }
    let probes = targets.iter().map(|(name, addr)| async move {
        let result = probe::probe(addr, path, gate.expect_status, gate.probe_timeout()).await;
        (name.clone(), addr.clone(), result)
    });
    let results = futures_util::future::join_all(probes).await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(name, addr, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{name} (http://{addr}{path}): {e}"))
        })
        .collect();
    let healthy = results.len() - failed.len();
    if healthy < gate.min_up
        || (healthy as f64 * 100.0 / results.len() as f64) < gate.min_up_percent
    {
        return Err(fail(format!(
            "{healthy} of {} servers pass the health probe: {}",
            results.len(),
            failed.join("; ")
        )));
    }
    Ok(results
        .into_iter()
        .filter(|(_, _, r)| r.is_ok())
        .map(|(n, _, _)| n)
        .collect())
}
