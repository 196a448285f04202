//! The engine: owns the desired state, the managed files and the one path by which a
//! change reaches the proxy (see LIFECYCLE.md beside this file). It is driven by one task
//! at a time (the agent's engine task), so there is exactly one writer per map.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::config::{Config, FileKind, FileSpec};
use crate::mapfile::{self, MapDiff, MapEntries, MapSyntax};
use crate::metrics::{Metrics, RollbackReason};
use crate::protocol::MapView;
use crate::proxy::{Epoch, Proxy};
use crate::render::Renderer;
use crate::requester::{Reason, Requester};
use crate::state::{Change, Request, State};
use crate::store::{now_ms, JournalEntry, Outcome, Store};

mod batch;
mod plan;
pub mod reconcile;
mod safety;
mod transition;
mod validate;

pub use batch::Queued;
pub use plan::Plan;

pub use safety::{until, GateReport, Phase, WatchPhase};
pub use transition::{Applied, FileOutcome, LineChanges, PlannedFile};
pub use validate::{is_percent, staged_path};

/// Maps of at most this many bytes (about a thousand entries) are compared with the running
/// proxy on every reconcile tick; larger ones at start and whenever the epoch moves.
pub const SMALL_MAP_BYTES: usize = 64 * 1024;

/// The step of a change that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The peer may not run the command (see [`crate::access`]).
    Access,
    Request,
    Gate,
    Render,
    Validate,
    Commit,
    Apply,
    Confirm,
    Persist,
    Proxy,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).expect("step serializes");
        f.write_str(s.as_str().expect("string"))
    }
}

/// A change that did not happen, with the step that refused it and why. Whatever the
/// step, the proxy serves what it served before and the files on disk equal it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {message}")]
pub struct ApplyError {
    pub step: Step,
    pub message: String,
}

impl ApplyError {
    pub fn new(step: Step, message: impl fmt::Display) -> ApplyError {
        ApplyError {
            step,
            message: message.to_string(),
        }
    }
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generation: u64,
    pub proxy: ProxyStatus,
    pub services: Vec<ServiceStatus>,
    pub files: Vec<FileStatus>,
    /// What is wrong now: the fault's error while there is one, else the error of the last
    /// change if it failed (cleared by the next change that succeeds).
    pub last_error: Option<String>,
    /// A condition that keeps the files or the proxy from matching the desired state (the
    /// proxy unreachable, a reconcile failing), while it lasts.
    pub fault: Option<Fault>,
    /// What the agent repaired when it started (an unusable state file, a torn journal,
    /// leftovers of interrupted writes), in its own words.
    pub recovered: Vec<String>,
    /// The watched desired-state file and why its content was refused, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DesiredStatus {
    pub path: String,
    pub error: Option<String>,
}

/// A fault the periodic check keeps seeing; cleared by the first reconcile that succeeds.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// The step that fails: `proxy` when the proxy cannot be reached.
    pub step: Step,
    /// The latest error.
    pub message: String,
    /// When it was first seen, Unix milliseconds.
    pub since_ms: u64,
    /// Whether it has lasted [`reconcile::FAULT_GRACE`]: only then is it shown and
    /// journaled (a shorter failure is a blip, such as HAProxy's master re-executing
    /// itself for a reload).
    #[serde(skip)]
    pub confirmed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    pub kind: &'static str,
    pub reachable: bool,
    pub epoch: Option<Epoch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub live: String,
    pub previous: Option<String>,
    pub backend: String,
    pub routes: usize,
    /// Canary colour and share, when one runs.
    pub canary: Option<crate::state::Canary>,
    /// Colours whose servers are drained.
    pub drained: Vec<String>,
    /// The safety phase (watch, rollback), when there is one.
    pub phase: Option<Phase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub name: String,
    pub path: String,
    pub kind: FileKind,
}

pub struct Engine<P: Proxy> {
    config: Arc<Config>,
    renderer: Renderer,
    proxy: P,
    store: Store,
    state: State,
    /// Rendered content of the files that do not use the state, by file name; rendered
    /// again only when the config changes.
    /// Shared with `files` when equal, so a change that leaves such a file alone (a flip
    /// with a million routes in a static map) compares a pointer, not the content.
    static_files: BTreeMap<String, Arc<str>>,
    /// Content of every managed file as committed on disk, by file name: what the proxy
    /// serves.
    files: BTreeMap<String, Arc<str>>,
    /// The proxy's epoch as last verified against the desired state; a different one
    /// means somebody reloaded it. `None`: compare everything on the next tick.
    epoch: Option<Epoch>,
    /// The proxy's epoch as last read, verified or not (to say why a tick reconciles).
    seen_epoch: Option<Epoch>,
    /// Error of the last change, if it failed; see [`Snapshot::last_error`].
    change_error: Option<String>,
    fault: Option<Fault>,
    /// How long a failing check lasts before it is a fault; [`reconcile::FAULT_GRACE`].
    fault_grace: Duration,
    /// Repairs made at start; see [`Snapshot::recovered`].
    recovered: Vec<String>,
    /// Whether the proxy answered the last time it was asked.
    reachable: bool,
    /// Post-switch watches in progress, by service.
    watches: BTreeMap<String, safety::ActiveWatch>,
    /// Latest safety phase by service.
    phases: BTreeMap<String, Phase>,
    /// The desired-state file the agent reconciles, when configured.
    desired_file: Option<crate::desired::Watcher>,
    metrics: Metrics,
}

impl<P: Proxy> Engine<P> {
    /// Builds the engine from a validated config: loads templates, recovers the state
    /// directory from an interrupted run ([`Store::recover`]), loads the saved state
    /// (aligned with the configured services), removes leftovers of interrupted writes
    /// beside the managed files and reads those files from disk. Every repair is logged,
    /// journaled and shown in `status`. The proxy is not contacted. The caller holds the
    /// store's lock.
    pub fn new(config: Arc<Config>, proxy: P, store: Store) -> Result<Engine<P>, ApplyError> {
        let renderer = Renderer::new(&config).map_err(|e| ApplyError::new(Step::Render, e))?;
        let recovered = store
            .recover()
            .map_err(|e| ApplyError::new(Step::Persist, e))?;
        let mut notes = recovered.notes;
        for f in &config.files {
            let removed = crate::fsio::remove_leftovers(&f.path);
            if removed > 0 {
                notes.push(format!(
                    "removed {removed} temporary or staged file(s) of an interrupted write of {}",
                    f.path.display()
                ));
            }
        }
        let state = recovered.state.unwrap_or_default();
        let (state, aligned) = state.align_services(&config.initial_colours());
        let mut engine = Engine {
            static_files: BTreeMap::new(),
            files: BTreeMap::new(),
            config,
            renderer,
            proxy,
            store,
            state,
            epoch: None,
            seen_epoch: None,
            change_error: None,
            fault: None,
            fault_grace: reconcile::FAULT_GRACE,
            recovered: Vec::new(),
            reachable: false,
            watches: BTreeMap::new(),
            phases: BTreeMap::new(),
            desired_file: None,
            metrics: Metrics::new(),
        };
        engine.watch_desired_file();
        if !aligned.is_empty() {
            let names: Vec<&str> = aligned
                .services
                .iter()
                .map(|c| c.service.as_str())
                .collect();
            engine.journal_agent(
                "config",
                Outcome::Ok,
                format!(
                    "generation {}: services added or removed by the config: {}",
                    aligned.generation,
                    names.join(", ")
                ),
                json!({ "services": aligned.services }),
            );
        }
        for note in notes {
            tracing::warn!("recovered: {note}");
            engine.journal_agent(
                "recover",
                Outcome::Recovered,
                note.clone(),
                serde_json::Value::Null,
            );
            engine.recovered.push(note);
        }
        engine.static_files = engine.render_static()?;
        engine.read_files_from_disk()?;
        engine.metrics.state(&engine.state);
        Ok(engine)
    }

    /// Journals a request refused before it reached the engine (the access check), with
    /// who sent it.
    pub fn journal_refusal(
        &self,
        request: serde_json::Value,
        requester: &Requester,
        step: Step,
        message: String,
    ) {
        let entry = JournalEntry {
            generation: self.state.generation,
            time_ms: now_ms(),
            requester: requester.clone(),
            request,
            result: Outcome::Error,
            message,
            data: json!({ "step": step }),
        };
        if let Err(e) = self.store.append(&entry) {
            tracing::error!(error = %e, "cannot write the journal");
        }
    }

    /// Journals something the agent did or saw by itself ([`Reason::Upkeep`]), with the request
    /// `{"op": op}` (`recover`, `reconcile`).
    pub(crate) fn journal_agent(
        &self,
        op: &str,
        result: Outcome,
        message: String,
        data: serde_json::Value,
    ) {
        let entry = JournalEntry {
            generation: self.state.generation,
            time_ms: now_ms(),
            requester: Requester::agent(),
            request: json!({ "op": op }),
            result,
            message,
            data,
        };
        if let Err(e) = self.store.append(&entry) {
            tracing::error!(error = %e, "cannot write the journal");
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn proxy(&self) -> &P {
        &self.proxy
    }

    /// Whether the proxy answered the last time it was asked.
    pub fn reachable(&self) -> bool {
        self.reachable
    }

    /// What is wrong now; see [`Snapshot::last_error`].
    pub fn last_error(&self) -> Option<&str> {
        self.confirmed_fault()
            .map(|f| f.message.as_str())
            .or(self.change_error.as_deref())
    }

    /// Marks the current routing as committed across the cluster at `generation`, and
    /// persists it.
    pub async fn mark_cluster(&mut self, generation: u64) -> Result<(), ApplyError> {
        let mut next = self.state.clone();
        next.cluster_generation = generation;
        next.cluster_routing = next.routing();
        self.store
            .save(&next)
            .map_err(|e| ApplyError::new(Step::Persist, e))?;
        self.state = next;
        Ok(())
    }

    /// The metrics this engine updates (clones share the values).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How the proxy's map files are written.
    pub fn syntax(&self) -> MapSyntax {
        self.config.proxy.kind.map_syntax()
    }

    pub(super) fn has_percent_map(&self) -> bool {
        self.config
            .files
            .iter()
            .any(|f| f.values == crate::config::ValueCheck::Percent)
    }

    /// Carries `next` to the files and the proxy, then persists it; on a persist failure
    /// the proxy and files are brought back to the current state.
    pub(super) async fn commit_state(
        &mut self,
        next: State,
        change: Change,
    ) -> Result<Applied, ApplyError> {
        let mut applied = self.transition(&next).await.inspect_err(|e| {
            self.change_error = Some(e.to_string());
        })?;
        let t = Instant::now();
        if let Err(e) = self.store.save(&next) {
            let err = ApplyError::new(Step::Persist, e);
            let undo = self.state.clone();
            self.metrics.rollback(RollbackReason::PersistFailed);
            if let Err(undo_err) = self.transition(&undo).await {
                tracing::error!(error = %undo_err, "cannot undo a change whose state could not be saved");
            }
            self.change_error = Some(err.to_string());
            return Err(err);
        }
        applied.timings_ms.insert("persist", ms(t));
        self.state = next;
        self.change_error = None;
        self.metrics.state(&self.state);
        applied.change = change;
        Ok(applied)
    }

    /// The status snapshot.
    pub async fn snapshot(&self) -> Snapshot {
        let epoch = self.proxy.epoch().await.ok();
        Snapshot {
            generation: self.state.generation,
            proxy: ProxyStatus {
                kind: self.proxy.name(),
                reachable: epoch.is_some(),
                epoch,
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
            fault: self.confirmed_fault().cloned(),
            recovered: self.recovered.clone(),
            desired_state: self.desired_file.as_ref().map(|w| DesiredStatus {
                path: w.path().display().to_string(),
                error: w.error.clone(),
            }),
        }
    }

    /// Starts (or stops) watching the configured desired-state file.
    fn watch_desired_file(&mut self) {
        let agent = &self.config.agent;
        let same = self.desired_file.as_ref().map(|w| w.path()) == agent.desired_state.as_deref();
        if !same {
            self.desired_file = agent
                .desired_state
                .clone()
                .map(|p| crate::desired::Watcher::new(p, agent.desired_debounce));
        }
    }

    /// Applies the desired-state file when it has new, stable content.
    pub async fn poll_desired_file(&mut self) {
        let Some(services) = self.desired_file.as_mut().and_then(|w| w.poll()) else {
            return;
        };
        let who = Requester::Agent(Reason::DesiredFile);
        let req = Request::Set { services };
        if let Err(e) = self.apply(&req, &who, false).await {
            if let Some(w) = self.desired_file.as_mut() {
                w.error = Some(format!("refused at {e}; the last good state stays live"));
            }
        }
    }

    fn confirmed_fault(&self) -> Option<&Fault> {
        self.fault.as_ref().filter(|f| f.confirmed)
    }

    /// Entries of map `name`: desired, live, or the diff from live to desired.
    pub async fn map_show(
        &self,
        name: &str,
        view: MapView,
    ) -> Result<serde_json::Value, ApplyError> {
        let spec = self.map_spec(name)?;
        let desired = || -> Result<MapEntries, ApplyError> {
            self.syntax()
                .parse(&self.files[&spec.name])
                .map_err(|e| ApplyError::new(Step::Render, e))
        };
        let live = || async {
            self.proxy
                .read_map(&spec.path)
                .await
                .map_err(|e| ApplyError::new(Step::Proxy, e))
        };
        Ok(match view {
            MapView::Desired => json!({ "entries": desired()? }),
            MapView::Live => json!({ "entries": live().await? }),
            MapView::Diff => {
                let d = MapDiff::between(&live().await?, &desired()?);
                json!({ "added": d.added, "changed": d.changed, "removed": d.removed })
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
                    format!("unknown map {name:?} (maps: {})", names()),
                )
            })
    }

    /// History entries, oldest first.
    pub fn history(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, ApplyError> {
        // A service no longer configured may still have history; a name that no service
        // could ever have is a mistake worth saying so.
        if let Some(name) = service {
            if !self.config.services.contains_key(name) && mapfile::check_name(name).is_err() {
                return Err(ApplyError::new(
                    Step::Request,
                    format!("unknown service {name:?}"),
                ));
            }
        }
        self.store
            .history(service, limit)
            .map_err(|e| ApplyError::new(Step::Persist, e))
    }

    /// Replaces the config (SIGHUP). The new config must render, validate and apply; if
    /// anything fails the old config stays in force and nothing changes.
    pub async fn replace_config(&mut self, config: Arc<Config>) -> Result<Applied, ApplyError> {
        let renderer = Renderer::new(&config).map_err(|e| ApplyError::new(Step::Render, e))?;
        let old_config = std::mem::replace(&mut self.config, config);
        let old_renderer = std::mem::replace(&mut self.renderer, renderer);
        let old_static = std::mem::take(&mut self.static_files);
        let old_files = self.files.clone();
        let result = async {
            self.static_files = self.render_static()?;
            self.read_files_from_disk()?;
            let (next, change) = self.state.align_services(&self.config.initial_colours());
            self.commit_state(next, change).await
        }
        .await;
        if result.is_err() {
            self.config = old_config;
            self.renderer = old_renderer;
            self.static_files = old_static;
            self.files = old_files;
        } else {
            self.watch_desired_file();
        }
        match &result {
            Ok(a) => self.journal_agent(
                "config",
                Outcome::Ok,
                format!("new config in force: {}", a.summary()),
                json!({ "services": a.change.services, "files": a.files }),
            ),
            Err(e) => self.journal_agent(
                "config",
                Outcome::Error,
                format!("new config refused, the old one stays in force: {e}"),
                json!({ "step": e.step }),
            ),
        }
        result
    }

    fn render_static(&self) -> Result<BTreeMap<String, Arc<str>>, ApplyError> {
        let paths = crate::render::live_paths(&self.config);
        let mut out = BTreeMap::new();
        for f in self.config.files.iter().filter(|f| !f.uses_state) {
            let text = self
                .renderer
                .render(f, &self.state, &paths)
                .map_err(|e| ApplyError::new(Step::Render, e))?;
            out.insert(f.name.clone(), Arc::from(text));
        }
        Ok(out)
    }

    fn read_files_from_disk(&mut self) -> Result<(), ApplyError> {
        self.files.clear();
        for f in &self.config.files {
            let bytes = crate::fsio::read_optional(&f.path)
                .map_err(|e| ApplyError::new(Step::Commit, e))?
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let text = match self.static_files.get(&f.name) {
                Some(rendered) if **rendered == *text => rendered.clone(),
                _ => Arc::from(text),
            };
            self.files.insert(f.name.clone(), text);
        }
        Ok(())
    }
}

/// Timing helper: milliseconds since `t`.
fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Bound of one proxy call made during a reconcile tick.
pub const TICK_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;
