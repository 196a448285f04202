//! What the engine answers without changing anything: the status snapshot, this host's
//! report to its peers or the fleet store, the entries of a managed map (desired, live, or
//! their difference) and the history journal.

use super::error::{ApplyError, ErrorKind};
use super::Engine;
use crate::config::FileSpec;
use crate::mapfile::{self, MapDiff, MapEntries};
use crate::protocol::peer::digest;
use crate::protocol::FileKind;
use crate::protocol::PeerReport;
use crate::protocol::Step;
use crate::protocol::{DesiredStatus, Fault, FileStatus, ProxyStatus, ServiceStatus, Snapshot};
use crate::protocol::{MapShown, MapView};
use crate::proxy::Proxy;
use crate::store::{now_ms, HistoryFilter, JournalEntry};

impl<P: Proxy> Engine<P> {
    /// What this host tells its peers, or the fleet store, about itself as `node`.
    pub fn report(&self, node: &str) -> PeerReport {
        let services = self.state.routing();
        PeerReport {
            node: node.to_owned(),
            time_ms: now_ms(),
            generation: self.state.generation,
            cluster_generation: self.state.cluster_generation,
            digest: digest(&services),
            cluster_digest: digest(&self.state.cluster_routing),
            services,
            cluster_routing: self.state.cluster_routing.clone(),
            proxy_reachable: self.reachable(),
            last_error: self.last_error().map(str::to_owned),
            held: None,
        }
    }

    /// The routing state and the watches' phases now, for the remote API's `Watch`.
    pub fn event(&self) -> crate::protocol::Event {
        crate::protocol::Event {
            generation: self.state.generation,
            services: self.state.routing(),
            watches: self.phases().clone(),
            proxy_reachable: self.reachable(),
            last_error: self.last_error().map(str::to_owned),
        }
    }

    /// The status snapshot.
    pub async fn snapshot(&self) -> Snapshot {
        let epoch = self.proxy.epoch().await.ok();
        let (version, warnings) = self.proxy.version_report();
        Snapshot {
            generation: self.state.generation,
            proxy: ProxyStatus {
                kind: self.proxy.name().into(),
                reachable: epoch.is_some(),
                epoch,
                version,
                warnings,
            },
            services: self
                .state
                .services
                .iter()
                .map(|(name, s)| {
                    let svc = &self.config.services[name];
                    ServiceStatus {
                        name: name.clone(),
                        live: s.live.to_string(),
                        previous: s.previous.map(|c| c.to_string()),
                        backend: svc.colours[&s.live].backend.clone(),
                        routes: svc.routes.len(),
                        canary: s.canary,
                        drained: s.drained.iter().map(|c| c.to_string()).collect(),
                        phase: self.phases.get(name).cloned(),
                        health: self.service_health(name).cloned(),
                        drains: self.drain_status(name),
                    }
                })
                .collect(),
            files: self
                .config
                .files
                .iter()
                .map(|f| FileStatus {
                    name: f.name.clone(),
                    path: f.path.display().to_string(),
                    kind: f.kind,
                })
                .collect(),
            last_error: self.last_error().map(str::to_owned),
            // A reconcile's fault first; else a live colour with no server up.
            fault: self
                .confirmed_fault()
                .cloned()
                .or_else(|| self.health_fault()),
            recovered: self.recovered.clone(),
            desired_state: self.desired_file.as_ref().map(|w| DesiredStatus {
                path: w.path().display().to_string(),
                error: w.error.clone(),
            }),
            // The agent adds the fleet store's health; the engine does not know it.
            fleet: None,
            config_error: self.config_error.clone(),
            last_drift: self.last_drift.clone(),
        }
    }

    /// Sets the health gauges from what `status` shows: the fault, the refusal of the
    /// desired-state file, the watches' phases. The agent calls it after each event.
    pub fn publish_health(&self) {
        let desired_error = self
            .desired_file
            .as_ref()
            .is_some_and(|w| w.error.is_some());
        self.metrics.health(
            self.confirmed_fault().is_some(),
            desired_error,
            &self.phases,
        );
    }

    pub(super) fn confirmed_fault(&self) -> Option<&Fault> {
        self.fault.as_ref().filter(|f| f.confirmed)
    }

    /// Entries of map `name`: desired, live, or the diff from live to desired.
    pub async fn map_show(&self, name: &str, view: MapView) -> Result<MapShown, ApplyError> {
        let spec = self.map_spec(name)?;
        let desired = || -> Result<MapEntries, ApplyError> {
            self.syntax()
                .parse(&self.files[&spec.name])
                .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e))
        };
        let live = || async {
            self.proxy
                .read_map(&spec.path)
                .await
                .map_err(|e| ApplyError::caused(Step::Proxy, ErrorKind::Proxy, e))
        };
        Ok(match view {
            MapView::Desired => MapShown::Entries {
                entries: desired()?,
            },
            MapView::Live => MapShown::Entries {
                entries: live().await?,
            },
            MapView::Diff => {
                let d = MapDiff::between(&live().await?, &desired()?);
                MapShown::Diff {
                    added: d.added,
                    changed: d.changed,
                    removed: d.removed,
                }
            }
        })
    }

    fn map_spec(&self, name: &str) -> Result<&FileSpec, ApplyError> {
        let names = || {
            self.config
                .files
                .iter()
                .filter(|f| f.kind == FileKind::Map)
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.config
            .file(name)
            .filter(|f| f.kind == FileKind::Map)
            .ok_or_else(|| {
                ApplyError::new(
                    Step::Request,
                    ErrorKind::Unknown,
                    format!("unknown map {name:?} (maps: {})", names()),
                )
            })
    }

    /// History entries that `filter` passes, oldest first (at most `limit`).
    pub fn history(
        &self,
        filter: &HistoryFilter,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, ApplyError> {
        // A service no longer configured may still have history; a name that no service
        // could ever have is a mistake worth saying so.
        if let Some(name) = &filter.service {
            if !self.config.services.contains_key(name) && mapfile::check_name(name).is_err() {
                return Err(ApplyError::new(
                    Step::Request,
                    ErrorKind::Unknown,
                    format!("unknown service {name:?}"),
                ));
            }
        }
        self.store
            .history(filter, limit)
            .map_err(|e| ApplyError::caused(Step::Persist, ErrorKind::Io, e))
    }
}
