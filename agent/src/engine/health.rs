//! The periodic health poll: once per tick, one read of every server of every backend
//! ([`Proxy::server_table`]: one `show servers state` on HAProxy, whatever the number of
//! services; plus, while a colour drains towards maintenance, one `show stat` of its
//! backend for its sessions),
//! counted per service and colour for `status` and `cutover_servers`. It is not on the path
//! of a change: a switch never waits for it and never reads it.
//!
//! What it decides:
//! - a live colour with no server up (as the proxy reports it) is a fault in `status`
//!   (step `health`), logged and journaled when it starts and when it ends; a proxy that
//!   cannot report its servers (open-source Nginx) reports them as unknown, never a fault;
//! - the end of a drain, for a service with `drain_timeout_ms`: a drained colour goes to
//!   maintenance once its sessions reach 0 or the timeout passed since its drain began, and
//!   is put back there when a reload forgot it. A colour that takes traffic again leaves
//!   maintenance before the traffic moves (`drains`).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::Engine;
use crate::config::Config;
use crate::protocol::{Colour, ColourHealth, DrainPhase, DrainStatus, Fault, ServiceHealth, Step};
use crate::proxy::{Proxy, ProxyError, ServerSample};
use crate::store::{now_ms, Outcome};

/// What the poll last saw and what it tracks between polls.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// The last poll's counts, by service.
    services: BTreeMap<String, ServiceHealth>,
    /// Services whose live colour has no server up, since when (Unix ms), and the message.
    down: BTreeMap<String, (u64, String)>,
    /// Drains of services with `drain_timeout_ms`, by service and colour.
    drains: BTreeMap<(String, Colour), DrainTrack>,
}

/// One drain followed to its end.
#[derive(Debug, Clone)]
struct DrainTrack {
    started: Instant,
    since_ms: u64,
    /// When and why it ended in maintenance.
    ended: Option<(u64, String)>,
}

/// Counts `rows` (the proxy's table; `None` when it cannot report its servers) per
/// service and colour of `config`. A colour the table does not report is unknown, with the
/// configured servers counted as such.
pub(super) fn tally(
    config: &Config,
    rows: Option<&[ServerSample]>,
    polled_ms: u64,
) -> BTreeMap<String, ServiceHealth> {
    let mut out: BTreeMap<String, ServiceHealth> = BTreeMap::new();
    let mut by_backend: BTreeMap<&str, (&str, Colour)> = BTreeMap::new();
    for (name, s) in &config.services {
        let h = out.entry(name.clone()).or_default();
        h.polled_ms = polled_ms;
        h.known = rows.is_some();
        for (colour, spec) in &s.colours {
            by_backend.insert(&spec.backend, (name, *colour));
            if rows.is_none() {
                h.colour_mut(*colour).unknown = spec.servers.len() as u32;
            }
        }
    }
    for row in rows.unwrap_or_default() {
        if let Some((name, colour)) = by_backend.get(row.backend.as_str()) {
            let h = out.get_mut(*name).expect("tallied");
            h.colour_mut(*colour).add(row.state);
        }
    }
    out
}

impl<P: Proxy> Engine<P> {
    /// One health poll (see the module doc); bounded by [`super::TICK_TIMEOUT`].
    pub async fn poll_servers(&mut self) {
        // A proxy the tick found unreachable (or frozen) is not asked again: its servers
        // are unknown until it answers.
        let read = match self.reachable {
            true => tokio::time::timeout(super::TICK_TIMEOUT, self.proxy.server_table()).await,
            false => Ok(Err(ProxyError::Unreachable {
                source: "the proxy did not answer the last check".into(),
            })),
        };
        let rows = match read {
            Ok(Ok(rows)) => Some(rows),
            Ok(Err(ProxyError::Unsupported { .. })) => None,
            Ok(Err(e)) => {
                tracing::debug!("health poll: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("health poll: no answer within {:?}", super::TICK_TIMEOUT);
                None
            }
        };
        self.health.services = tally(&self.config, rows.as_deref(), now_ms());
        if rows.is_some() {
            self.judge_live_colours();
            self.end_drains().await;
        }
        self.metrics.servers(&self.health.services);
    }

    /// Records (and journals) the start and the end of a live colour with no server up.
    fn judge_live_colours(&mut self) {
        let mut down = BTreeMap::new();
        for (name, s) in &self.state.services {
            let Some(h) = self.health.services.get(name) else {
                continue;
            };
            let live = h.colour(s.live);
            if !h.known || live.up > 0 {
                continue;
            }
            let backend = &self.config.services[name].colours[&s.live].backend;
            let message = format!(
                "{name}: live colour {} ({backend}) has no server up ({})",
                s.live,
                live.summary()
            );
            let since = match self.health.down.get(name) {
                Some((since, _)) => *since,
                None => {
                    tracing::warn!(service = %name, "fault: {message}");
                    self.journal_agent(
                        "health",
                        Outcome::Error,
                        message.clone(),
                        json!({ "service": name, "colour": s.live, "servers": live }),
                    );
                    now_ms()
                }
            };
            down.insert(name.clone(), (since, message));
        }
        let before = std::mem::replace(&mut self.health.down, down);
        for (name, (since, message)) in before {
            if !self.health.down.contains_key(&name) && self.state.services.contains_key(&name) {
                let secs = now_ms().saturating_sub(since) as f64 / 1e3;
                let text = format!("{name}: a server of the live colour is up again after {secs:.1} s (the fault was: {message})");
                tracing::info!(service = %name, "{text}");
                self.journal_agent("health", Outcome::Ok, text, json!({ "service": name }));
            }
        }
    }

    /// Ends the drains whose sessions reached 0 or whose timeout passed, and puts ended
    /// ones back in maintenance when the proxy forgot it (a reload).
    async fn end_drains(&mut self) {
        let mut tracks = std::mem::take(&mut self.health.drains);
        tracks.retain(|(name, colour), _| {
            self.config
                .services
                .get(name)
                .is_some_and(|s| s.drain_timeout.is_some())
                && self
                    .state
                    .services
                    .get(name)
                    .is_some_and(|s| s.drained.contains(colour))
        });
        let mut rested = Vec::new();
        let mut counted = Vec::new();
        for (name, s) in &self.state.services {
            let Some(timeout) = self.config.services.get(name).and_then(|c| c.drain_timeout) else {
                continue;
            };
            for colour in &s.drained {
                let track = tracks
                    .entry((name.clone(), *colour))
                    .or_insert_with(|| DrainTrack {
                        started: Instant::now(),
                        since_ms: now_ms(),
                        ended: None,
                    });
                let Some(h) = self.health.services.get(name).map(|h| h.colour(*colour)) else {
                    continue;
                };
                let backend = &self.config.services[name].colours[colour].backend;
                let in_maint = h.maint == h.total();
                let reason = match &track.ended {
                    // Ended, and still (or again, after a reload) in maintenance.
                    Some(_) if in_maint => continue,
                    Some(_) => None,
                    None => Some({
                        let sessions = match self.proxy.backend_stats(backend).await {
                            Ok(stats) => stats.sessions,
                            Err(e) => {
                                tracing::debug!("sessions of {backend}: {e}");
                                continue;
                            }
                        };
                        counted.push((name.clone(), *colour, sessions));
                        if sessions == 0 {
                            "its sessions reached 0".to_owned()
                        } else if track.started.elapsed() >= timeout {
                            format!(
                                "drain_timeout_ms ({}) passed with {sessions} session(s) left",
                                timeout.as_millis()
                            )
                        } else {
                            continue;
                        }
                    }),
                };
                if let Err(e) = self.proxy.set_maint(backend, true).await {
                    tracing::warn!(service = %name, %colour, "ending the drain of {backend}: {e}");
                    continue;
                }
                rested.push((name.clone(), *colour));
                match reason {
                    Some(reason) => {
                        let secs = track.started.elapsed().as_secs_f64();
                        let text = format!(
                            "{name}: drain of {colour} ({backend}) ended after {secs:.1} s: {reason}; its servers are in maintenance"
                        );
                        tracing::info!(service = %name, %colour, "{text}");
                        self.journal_agent(
                            "drain",
                            Outcome::Ok,
                            text,
                            json!({ "service": name, "colour": colour, "reason": reason }),
                        );
                        track.ended = Some((now_ms(), reason));
                    }
                    None => tracing::info!(
                        service = %name, %colour,
                        "{backend} had left maintenance (a reload forgets it); its drain ended, so it is back in maintenance"
                    ),
                }
            }
        }
        self.health.drains = tracks;
        for (name, colour, sessions) in counted {
            if let Some(h) = self.health.services.get_mut(&name) {
                h.colour_mut(colour).sessions = Some(sessions);
            }
        }
        // What the poll counted before: every server of those colours is in maintenance now.
        for (name, colour) in rested {
            if let Some(h) = self.health.services.get_mut(&name) {
                let c = h.colour_mut(colour);
                *c = ColourHealth {
                    maint: c.total(),
                    sessions: c.sessions,
                    ..ColourHealth::default()
                };
            }
        }
    }

    /// The last poll's counts for `service`.
    pub(super) fn service_health(&self, service: &str) -> Option<&ServiceHealth> {
        self.health.services.get(service)
    }

    /// Where the drains of `service` stand (services with `drain_timeout_ms`).
    pub(super) fn drain_status(&self, service: &str) -> Vec<DrainStatus> {
        let Some(timeout) = self
            .config
            .services
            .get(service)
            .and_then(|s| s.drain_timeout)
        else {
            return Vec::new();
        };
        let Some(state) = self.state.services.get(service) else {
            return Vec::new();
        };
        state
            .drained
            .iter()
            .map(|colour| {
                match self.health.drains.get(&(service.to_owned(), *colour)) {
                    Some(DrainTrack {
                        ended: Some((at, reason)),
                        ..
                    }) => DrainStatus {
                        colour: *colour,
                        phase: DrainPhase::Maintenance,
                        since_ms: *at,
                        deadline_ms: None,
                        reason: Some(reason.clone()),
                    },
                    Some(track) => DrainStatus {
                        colour: *colour,
                        phase: DrainPhase::Draining,
                        since_ms: track.since_ms,
                        deadline_ms: Some(track.since_ms + timeout.as_millis() as u64),
                        reason: None,
                    },
                    // Not polled since the drain began.
                    None => DrainStatus {
                        colour: *colour,
                        phase: DrainPhase::Draining,
                        since_ms: now_ms(),
                        deadline_ms: None,
                        reason: None,
                    },
                }
            })
            .collect()
    }

    /// Whether cutover put the servers of `colour` of `service` in maintenance at the end
    /// of its drain: HAProxy does not check them there, so the gate counts them as up (they
    /// are checked again the moment they leave it).
    pub(super) fn drain_ended(&self, service: &str, colour: Colour) -> bool {
        self.health
            .drains
            .get(&(service.to_owned(), colour))
            .is_some_and(|t| t.ended.is_some())
    }

    /// The live colours with no server up, as one fault (step `health`); `None` when every
    /// live colour has a server up or its health is unknown.
    pub(super) fn health_fault(&self) -> Option<Fault> {
        let since_ms = self.health.down.values().map(|(s, _)| *s).min()?;
        let message: Vec<&str> = self.health.down.values().map(|(_, m)| m.as_str()).collect();
        Some(Fault {
            step: Step::Health,
            message: message.join("; "),
            since_ms,
            confirmed: true,
        })
    }
}
