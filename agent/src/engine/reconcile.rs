//! Reconciliation: making the files on disk and what the proxy serves equal to the desired
//! state when they drifted (at start, after a reload made behind the agent's back, after
//! a hand-typed runtime command, when the proxy comes back).
//!
//! Faults: a check that fails (the proxy unreachable, a map that cannot be read or
//! repaired, a file that cannot be written) forgets the epoch, so every later tick is a
//! full reconcile until one succeeds. A check that keeps failing for [`FAULT_GRACE`]
//! becomes the engine's [`Fault`], shown in `status` and journaled once; the reconcile
//! that finally succeeds clears it and journals the recovery. Every repair a reconcile
//! makes is journaled too.

use std::time::Duration;

use serde_json::json;

use super::error::{ApplyError, ErrorKind};
use super::{Engine, SMALL_MAP_BYTES};
use crate::config::ValueCheck;
use crate::mapfile::MapDiff;
use crate::protocol::Fault;
use crate::protocol::FileKind;
use crate::protocol::Step;
use crate::proxy::Proxy;
use crate::store::{now_ms, Outcome};

/// How long a check may keep failing before it is a fault. HAProxy 2.6's master refuses
/// connections while it re-executes itself for a reload (longer with large maps to load);
/// that is not worth an alarm.
pub const FAULT_GRACE: Duration = Duration::from_secs(3);

impl<P: Proxy> Engine<P> {
    /// Brings files and runtime to the desired state; returns one line per fix made. A
    /// failure becomes the engine's fault (see the module doc).
    pub async fn reconcile(&mut self, why: &str) -> Result<Vec<String>, ApplyError> {
        match self.reconcile_inner(why).await {
            Ok(fixes) => {
                self.healthy(why, &fixes);
                Ok(fixes)
            }
            Err(e) => {
                self.faulty(e.step, format!("reconcile ({why}): {e}"));
                Err(e)
            }
        }
    }

    async fn reconcile_inner(&mut self, why: &str) -> Result<Vec<String>, ApplyError> {
        let mut fixes = Vec::new();
        self.read_files_from_disk()?;
        if self.store.load().ok().and_then(|l| l.state).as_ref() != Some(&self.state) {
            self.store
                .save(&self.state)
                .map_err(|e| ApplyError::caused(Step::Persist, ErrorKind::Io, e))?;
        }
        let state = self.state.clone();
        let applied = self.carry_files(&state).await?;
        for f in &applied.files {
            fixes.push(format!(
                "file {} ({}) differed from the desired state and was rewritten",
                f.name,
                f.path.display()
            ));
        }
        if self.proxy.has_runtime_maps() {
            let touched: Vec<&str> = applied.files.iter().map(|f| f.name.as_str()).collect();
            let maps: Vec<_> = self
                .config
                .files
                .iter()
                .filter(|f| f.kind == FileKind::Map && !touched.contains(&f.name.as_str()))
                .map(|f| f.name.clone())
                .collect();
            for name in maps {
                if let Some(fix) = self.repair_map(&name).await? {
                    fixes.push(fix);
                }
            }
        }
        let owed = std::mem::take(&mut self.reload_owed);
        if let Some(fix) = self.reload_if_serving_another_generation(&applied).await? {
            fixes.push(fix);
        } else if owed && applied.reload.is_none() {
            // The proxy reloaded since a file it reads whole was repaired on disk: it may
            // have loaded the drifted version.
            self.proxy
                .reload(self.state.generation)
                .await
                .map_err(|e| {
                    self.reload_owed = true;
                    ApplyError::caused(Step::Apply, ErrorKind::Proxy, e)
                })?;
            fixes.push(
                "the proxy reloaded after a file it reads was changed on disk; reloaded it from the repaired files"
                    .into(),
            );
        }
        // Drains are runtime state: a reload forgets them.
        let state = self.state.clone();
        self.sync_drains(None, &state).await?;
        if let Ok(epoch) = self.proxy.epoch().await {
            self.epoch = Some(epoch);
            self.reachable = true;
        }
        self.metrics.drift_repaired(fixes.len());
        for f in &fixes {
            tracing::info!(reason = why, "repaired: {f}");
        }
        Ok(fixes)
    }

    /// A check succeeded: journal its repairs, and the end of a fault.
    fn healthy(&mut self, why: &str, fixes: &[String]) {
        self.note_drift(fixes);
        if !fixes.is_empty() {
            self.journal_agent(
                "reconcile",
                Outcome::Ok,
                format!("{why}: repaired {}", fixes.join("; ")),
                json!({ "why": why, "fixes": fixes }),
            );
        }
        if let Some(f) = self.fault.take() {
            let secs = now_ms().saturating_sub(f.since_ms) as f64 / 1e3;
            if !f.confirmed {
                tracing::info!("check passes again after {secs:.1} s: {}", f.message);
                return;
            }
            let message = format!(
                "recovered after {secs:.1} s: files and {} match the desired state again (the fault was: {})",
                self.proxy.name(),
                f.message
            );
            tracing::info!("{message}");
            self.journal_agent(
                "reconcile",
                Outcome::Ok,
                message,
                json!({ "why": why, "fault": f }),
            );
        }
    }

    /// A check failed: the epoch is forgotten, so the next tick compares everything, and
    /// the failure is recorded. It becomes a fault (shown, journaled) once it has lasted
    /// [`FAULT_GRACE`], or at once when it follows a fault with another step.
    fn faulty(&mut self, step: Step, message: String) {
        self.epoch = None;
        let now = now_ms();
        let (since_ms, was_confirmed) = match &self.fault {
            Some(f) if f.step == step => (f.since_ms, f.confirmed),
            Some(f) if f.confirmed => (now, true),
            _ => {
                tracing::info!(%step, "check failed: {message}");
                (now, false)
            }
        };
        let due = now.saturating_sub(since_ms) >= self.fault_grace.as_millis() as u64;
        let confirmed = was_confirmed || due;
        if confirmed && !(was_confirmed && self.fault.as_ref().is_some_and(|f| f.step == step)) {
            tracing::warn!(%step, "fault: {message}");
            self.journal_agent(
                "reconcile",
                Outcome::Error,
                message.clone(),
                json!({ "step": step }),
            );
        }
        self.fault = Some(Fault {
            step,
            message,
            since_ms,
            confirmed,
        });
    }

    /// A proxy that says which generation it serves (Nginx) and serves another one than the
    /// files on disk were rendered for has not loaded them (a reload lost, or a start from
    /// older files): it is reloaded. Not after a reload the transition just made. Nginx's
    /// Lua runtime, whose dict was re-seeded by a restart, only records the generation.
    async fn reload_if_serving_another_generation(
        &mut self,
        applied: &crate::engine::Applied,
    ) -> Result<Option<String>, ApplyError> {
        if applied.reload.is_some() {
            return Ok(None);
        }
        let Ok(Some(served)) = self.proxy.epoch().await.map(|e| e.generation) else {
            return Ok(None);
        };
        let want = self.state.generation;
        if served == want {
            return Ok(None);
        }
        // A proxy that keeps its maps at runtime had them compared and repaired above:
        // only the generation it records is left to bring up to date.
        if self.proxy.has_runtime_maps()
            && self
                .proxy
                .mark_generation(want)
                .await
                .map_err(|e| ApplyError::caused(Step::Apply, ErrorKind::Proxy, e))?
        {
            return Ok(Some(format!(
                "the proxy recorded generation {served} while its maps are of generation {want}; recorded {want}"
            )));
        }
        self.proxy
            .reload(want)
            .await
            .map_err(|e| ApplyError::caused(Step::Apply, ErrorKind::Proxy, e))?;
        Ok(Some(format!(
            "the proxy served generation {served} while its files are of generation {want}; reloaded"
        )))
    }

    /// Makes the running map `name` equal to its file; `Some(what was done)` when it
    /// differed.
    async fn repair_map(&mut self, name: &str) -> Result<Option<String>, ApplyError> {
        let spec = self.config.file(name).expect("configured map").clone();
        let desired = self.syntax().parse(&self.files[name]).map_err(|e| {
            ApplyError::caused(Step::Render, ErrorKind::Template, e)
                .context(format!("map {name} on disk"))
        })?;
        let live = self
            .proxy
            .read_map(&spec.path)
            .await
            .map_err(|e| ApplyError::caused(Step::Proxy, ErrorKind::Proxy, e))?;
        if live == desired {
            return Ok(None);
        }
        let d = MapDiff::between(&live, &desired);
        let update = self
            .proxy
            .update_map(&spec.path, &live, &desired)
            .await
            .map_err(|e| {
                ApplyError::caused(Step::Apply, ErrorKind::Proxy, e)
                    .context(format!("repairing map {name}"))
            })?;
        Ok(Some(format!(
            "map {name}: the running proxy had {} extra, {} changed and {} missing entries; fixed by {:?} ({} edits)",
            d.removed.len(),
            d.changed.len(),
            d.added.len(),
            update.mechanism,
            update.edits
        )))
    }

    /// One periodic check: reconciles in full when the proxy's epoch moved (a reload by
    /// anybody, or the proxy coming back), else compares the small maps with the running
    /// proxy. Returns the fixes made.
    pub async fn tick(&mut self) -> Vec<String> {
        // Files first, proxy or not: whatever reloads the proxy next must read the desired
        // files.
        let mut fixes = match self.repair_files_on_disk() {
            Ok(fixes) => fixes,
            Err(e) => {
                self.faulty(e.step, format!("drift check: {e}"));
                return vec![];
            }
        };
        if !fixes.is_empty() {
            self.metrics.drift_repaired(fixes.len());
            for f in &fixes {
                tracing::warn!("repaired: {f}");
            }
            self.note_drift(&fixes);
            self.journal_agent(
                "reconcile",
                Outcome::Ok,
                format!("files on disk: repaired {}", fixes.join("; ")),
                json!({ "why": "files on disk", "fixes": fixes }),
            );
        }
        let epoch = self.proxy.epoch().await;
        self.metrics.proxy_up(epoch.is_ok());
        let epoch = match epoch {
            Ok(e) => e,
            Err(e) => {
                self.reachable = false;
                self.faulty(Step::Proxy, format!("proxy unreachable: {e}"));
                return fixes;
            }
        };
        let seen = self.seen_epoch.replace(epoch.clone());
        if self.epoch.as_ref() != Some(&epoch) {
            let why = match seen {
                None => "proxy reachable",
                Some(s) if s.master_pid != epoch.master_pid => "proxy restarted",
                Some(s) if s != epoch => "proxy reloaded",
                Some(_) => "check after a failure",
            };
            tracing::info!(
                reloads = epoch.reloads,
                master = epoch.master_pid,
                "{why}: checking it against the desired state"
            );
            if why == "proxy reloaded" {
                if let Some(failure) = self.proxy.last_reload_failure().await {
                    tracing::warn!(%failure, "a reload the agent did not ask for failed");
                }
            }
            fixes.extend(self.reconcile(why).await.unwrap_or_default());
            return fixes;
        }
        match self.check_runtime().await {
            Ok(runtime) => {
                self.healthy("drift check", &runtime);
                fixes.extend(runtime);
                fixes
            }
            Err(e) => {
                self.faulty(e.step, format!("drift check: {e}"));
                fixes
            }
        }
    }

    /// Drains undone by hand, then the small maps, against the running proxy.
    async fn check_runtime(&mut self) -> Result<Vec<String>, ApplyError> {
        let mut fixes = self.repair_drains().await?;
        self.metrics.drift_repaired(fixes.len());
        for f in &fixes {
            tracing::warn!("repaired: {f}");
        }
        fixes.extend(self.check_small_maps().await?);
        Ok(fixes)
    }

    async fn check_small_maps(&mut self) -> Result<Vec<String>, ApplyError> {
        if !self.proxy.has_runtime_maps() {
            return Ok(vec![]);
        }
        let small: Vec<String> = self
            .config
            .files
            .iter()
            .filter(|f| f.kind == FileKind::Map && self.files[&f.name].len() <= SMALL_MAP_BYTES)
            .map(|f| f.name.clone())
            .collect();
        let mut fixes = Vec::new();
        for name in small {
            if let Some(fix) = self.repair_map(&name).await? {
                tracing::info!("repaired: {fix}");
                self.metrics.drift_repaired(1);
                fixes.push(fix);
            }
        }
        Ok(fixes)
    }

    /// Renders, validates and writes the managed files without touching the running
    /// proxy: for a first start, before the proxy has files to read.
    pub async fn write_files(&mut self) -> Result<Vec<String>, ApplyError> {
        let state = self.state.clone();
        let paths = crate::render::live_paths(&self.config);
        let rendered = self.render_all(&state, &paths, true)?;
        let main_rendered = self
            .config
            .files
            .iter()
            .any(|f| f.path == self.config.proxy.config);
        let report = match main_rendered {
            true => Some(self.validate_staged(&state, None).await?),
            false => None,
        };
        // Every map is checked before any file is written; backends against the staged
        // config just checked, or the live config file.
        let defined = match report.and_then(|r| r.backends) {
            Some(b) => Some((b, format!("the checked {} config", self.proxy.name()))),
            None => self
                .proxy
                .config_backends(&self.config.proxy.config)
                .map(|b| {
                    (
                        b,
                        format!(
                            "{} config {}",
                            self.proxy.name(),
                            self.config.proxy.config.display()
                        ),
                    )
                }),
        };
        for f in self.config.files.iter().filter(|f| f.kind == FileKind::Map) {
            let entries = super::files::parse_rendered(f, self.syntax(), &rendered[&f.name])?;
            if let (ValueCheck::Backends, Some((known, whose))) = (f.values, &defined) {
                super::validate::check_backends(&f.name, &entries, known, whose)?;
            }
        }
        let mut written = Vec::new();
        for f in &self.config.files {
            let text = &rendered[&f.name];
            let changed = crate::fsio::write_atomic(
                &f.path,
                text.as_bytes(),
                crate::fsio::WriteOptions::default(),
            )
            .map_err(|e| ApplyError::caused(Step::Commit, ErrorKind::Io, e))?;
            if changed {
                written.push(f.path.display().to_string());
            }
            self.files.insert(f.name.clone(), text.clone());
        }
        self.store
            .save(&self.state)
            .map_err(|e| ApplyError::caused(Step::Persist, ErrorKind::Io, e))?;
        self.journal_agent(
            "render",
            Outcome::Ok,
            format!(
                "generation {}: wrote {} file(s) without contacting the proxy",
                self.state.generation,
                written.len()
            ),
            json!({ "written": written }),
        );
        Ok(written)
    }
}
