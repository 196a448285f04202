//! The engine: owns the desired state, the managed files and the one path by which a
//! change reaches the proxy (see LIFECYCLE.md beside this file). It is driven by one task
//! at a time (the agent's engine task), so there is exactly one writer per map.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::Config;
use crate::mapfile::MapSyntax;
use crate::metrics::Metrics;
use crate::protocol::{Epoch, Fault, Phase, Request, Step};
use crate::proxy::Proxy;
use crate::render::Renderer;
use crate::requester::{Reason, Requester};
use crate::state::State;
use crate::store::{Outcome, Store};

mod admit;
mod change;
mod checked;
mod drains;
mod drift;
mod error;
mod files;
mod flush;
mod health;
mod plan;
mod query;
pub mod reconcile;
mod record;
mod transition;
mod validate;
mod watch;

pub use change::Queued;
pub use error::{ApplyError, ErrorKind};
pub use flush::CHECKPOINT_BYTES;
pub use transition::{Applied, FileOutcome};
pub use validate::{check_backends, is_percent, staged_path};
pub use watch::until;

/// Maps of at most this many bytes (about a thousand entries) are compared with the running
/// proxy on every reconcile tick; larger ones at start and whenever the epoch moves.
pub const SMALL_MAP_BYTES: usize = 64 * 1024;

/// The desired state of one host and everything that carries it to the proxy: the config,
/// the templates, the proxy, the store, the content of the managed files as the proxy
/// reads them, and the post-switch watches. One task drives it, so there is one writer per
/// map.
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
    watches: BTreeMap<String, watch::ActiveWatch>,
    /// Latest safety phase by service.
    phases: BTreeMap<String, Phase>,
    /// The desired-state file the agent reconciles, when configured.
    desired_file: Option<crate::desired::Watcher>,
    /// What the changes answered so far left to make durable ([`Engine::flush`]).
    unflushed: flush::Unflushed,
    /// The trees the proxy's checker passed lately.
    checked: checked::Checked,
    /// Why the last config reload was refused; see [`Snapshot::config_error`].
    config_error: Option<crate::protocol::ConfigRefusal>,
    /// How each managed file looked when it last matched; see `drift`.
    disk_stamps: BTreeMap<String, drift::Stamp>,
    /// The latest drift repaired; see [`Snapshot::last_drift`].
    last_drift: Option<crate::protocol::DriftStatus>,
    /// A file the proxy reads whole on reload (a config, or any file of a proxy without
    /// runtime maps) was repaired on disk: a reload behind the agent's back may have loaded
    /// the drifted version, so the next reconcile after the proxy's epoch moves reloads it.
    reload_owed: bool,
    /// The servers as the periodic poll last saw them, and the drains it ends.
    health: health::Health,
    metrics: Metrics,
    /// Told of every journal line as it is written; see [`Engine::set_journal_tap`].
    tap: Option<JournalTap>,
}

/// What the engine calls with every journal line it writes, on its own task: it must
/// return at once (hand the line to a queue, never wait for one).
pub type JournalTap = Box<dyn Fn(&crate::store::JournalEntry) + Send + Sync>;

impl<P: Proxy> Engine<P> {
    /// Builds the engine from a validated config: loads templates, recovers the state
    /// directory from an interrupted run ([`Store::recover`]), loads the saved state
    /// (aligned with the configured services), removes leftovers of interrupted writes
    /// beside the managed files and reads those files from disk. Every repair is logged,
    /// journaled and shown in `status`. The proxy is not contacted. The caller holds the
    /// store's lock.
    pub fn new(config: Arc<Config>, proxy: P, store: Store) -> Result<Engine<P>, ApplyError> {
        let renderer = Renderer::new(&config)
            .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e))?;
        let recovered = store
            .recover()
            .map_err(|e| ApplyError::caused(Step::Persist, ErrorKind::Io, e))?;
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
            unflushed: flush::Unflushed::default(),
            checked: checked::Checked::default(),
            config_error: None,
            disk_stamps: BTreeMap::new(),
            last_drift: None,
            reload_owed: false,
            health: health::Health::default(),
            metrics: Metrics::new(),
            tap: None,
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

    /// The config in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The desired state, as last persisted.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The proxy this engine drives.
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

    /// Marks the current routing as committed across the cluster at `generation` (saved by
    /// the next [`Engine::flush`]).
    pub async fn mark_cluster(&mut self, generation: u64) -> Result<(), ApplyError> {
        self.state.cluster_generation = generation;
        self.state.cluster_routing = self.state.routing();
        // Saved once the answer is out: a host that loses the mark in a crash serves the
        // same records again (a change of nothing) and marks them then.
        self.unflushed.state();
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

    /// Replaces the config (SIGHUP). The new config must render, validate and apply; if
    /// anything fails the old config stays in force and nothing changes.
    pub async fn replace_config(&mut self, config: Arc<Config>) -> Result<Applied, ApplyError> {
        let renderer = Renderer::new(&config)
            .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e))?;
        let old_config = std::mem::replace(&mut self.config, config);
        // Templates, paths or the proxy's settings may differ: every tree is checked anew.
        self.checked.clear();
        let old_renderer = std::mem::replace(&mut self.renderer, renderer);
        let old_static = std::mem::take(&mut self.static_files);
        let old_files = self.files.clone();
        let result = async {
            self.static_files = self.render_static()?;
            self.read_files_from_disk()?;
            let (next, change) = self.state.align_services(&self.config.initial_colours());
            let config = self.config.clone();
            let prepared = match self.prepare(&config, &next).await {
                Ok(prepared) => prepared,
                Err(e) => return Err(self.failed(e)),
            };
            self.commit(prepared, next, change).await
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

    /// Records the outcome of a config reload for `status`: `None` once a config is put in
    /// force, else why the last one was refused.
    pub fn set_config_error(&mut self, refusal: Option<crate::protocol::ConfigRefusal>) {
        self.config_error = refusal;
    }

    fn render_static(&self) -> Result<BTreeMap<String, Arc<str>>, ApplyError> {
        let paths = crate::render::live_paths(&self.config);
        let mut out = BTreeMap::new();
        for f in self.config.files.iter().filter(|f| !f.uses_state) {
            let text = self
                .renderer
                .render(f, &self.state, &paths)
                .map_err(|e| ApplyError::caused(Step::Render, ErrorKind::Template, e))?;
            out.insert(f.name.clone(), Arc::from(text));
        }
        Ok(out)
    }

    fn read_files_from_disk(&mut self) -> Result<(), ApplyError> {
        self.files.clear();
        for f in &self.config.files {
            let bytes = crate::fsio::read_optional(&f.path)
                .map_err(|e| ApplyError::caused(Step::Commit, ErrorKind::Io, e))?
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
pub(crate) mod tests;
