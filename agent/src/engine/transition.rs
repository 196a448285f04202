//! Carrying planned files (see `files`) to the proxy: commit -> apply -> confirm ->
//! settle. Any failure puts back the previous files and runtime content.
//!
//! Commit stages every new file under a temporary name first, so a full disk or a
//! read-only directory refuses the change before anything moves. On the reload path the
//! staged files are then fsynced and renamed into place before the reload. On the runtime
//! path the runtime API takes the change first, then the staged files are renamed into
//! place (a reader, a reload or a restart after a crash of the agent finds each file old
//! or new in full); their fsync, and the directories', wait until the change is answered
//! ([`Engine::flush`](super::Engine::flush)): the one fsync an answer waits for is the
//! state log's line (see `store`), and a change whose line did not make it is undone by
//! the next start, which renders the files from the state it finds. Each replaced file is
//! kept as its previous version (a hard link) before the rename.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::error::{ApplyError, ErrorKind};
use super::files::{Pending, Prepared};
use super::{ms, Engine};
use crate::fsio::{self, write_atomic, Replaced, Staged, WriteOptions};
use crate::mapfile::MapDiff;
use crate::metrics::RollbackReason;
use crate::protocol::Change;
use crate::protocol::FileKind;
use crate::protocol::Step;
use crate::proxy::{MapEdit, MapMechanism, Proxy, ReloadReport};

/// What one change did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The state change the request made (the whole batch's for a shared transition).
    pub change: Change,
    /// Files that changed, in config order.
    pub files: Vec<FileOutcome>,
    /// Whether the proxy's own checker ran on a staged tree.
    pub validated_by_proxy: bool,
    /// Set when the change needed a reload.
    pub reload: Option<ReloadReport>,
    /// Requests this one transition carried (requests queued while a reload ran, or during
    /// the minimum gap, share the next one); 1 when the request went alone.
    pub batched: usize,
    /// Milliseconds per step, in order: `gate` (pre-switch gates), `undrain` (colours that
    /// take traffic again), `render`, `validate`, `commit` (new files written, fsynced and
    /// renamed into place; on the runtime path renamed after `apply`, fsynced once the
    /// change is answered), `apply`, `confirm`, `persist` (the state log's line, the one
    /// fsync the answer waits for), `drain` (colours that lost their traffic).
    pub timings_ms: BTreeMap<&'static str, f64>,
    /// What the pre-switch gate found, per colour the change moved traffic towards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<crate::protocol::GateReport>,
    /// Warnings of the proxy's checker (the change passed it), and things that went wrong
    /// after traffic moved (e.g. a drain that failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One managed file a change wrote, and how it reached the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct FileOutcome {
    /// The file's name in the config (`[[files]] name`).
    pub name: String,
    /// Where it is written.
    pub path: PathBuf,
    /// A map or a config file.
    pub kind: FileKind,
    /// How a map reached the proxy; `None` for config files (reloaded).
    pub mechanism: Option<MapMechanism>,
    /// Map keys added, changed or removed.
    pub edits: usize,
}

impl Applied {
    pub(super) fn nothing(change: Change) -> Applied {
        Applied {
            change,
            files: vec![],
            validated_by_proxy: false,
            reload: None,
            batched: 1,
            timings_ms: BTreeMap::new(),
            gates: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        if self.change.services.is_empty() && self.files.is_empty() {
            return "nothing to change".into();
        }
        let services: Vec<String> = self
            .change
            .services
            .iter()
            .map(|c| {
                let f = c.from.as_ref().map_or("-".into(), |s| s.to_string());
                let t = c.to.as_ref().map_or("-".into(), |s| s.to_string());
                format!("{} {f} -> {t}", c.service)
            })
            .collect();
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| match f.mechanism {
                Some(m) => format!("{} ({} edits, {})", f.name, f.edits, mechanism_name(m)),
                None => format!("{} (reload)", f.name),
            })
            .collect();
        let mut out = format!(
            "generation {}: {}{}",
            self.change.generation,
            if services.is_empty() {
                "files repaired".to_owned()
            } else {
                services.join(", ")
            },
            if files.is_empty() {
                String::new()
            } else {
                format!("; {}", files.join(", "))
            }
        );
        if let Some(r) = &self.reload {
            if let (Some(serving), Some(stopped)) = (r.serving, r.old_stopped) {
                out.push_str(&format!(
                    "; new config serving after {:.1} ms, previous workers stopped accepting after {:.1} ms",
                    serving.as_secs_f64() * 1e3,
                    stopped.as_secs_f64() * 1e3
                ));
            }
        }
        if self.batched > 1 {
            out.push_str(&format!(" (one change for {} requests)", self.batched));
        }
        for c in &self.change.services {
            if let Some(colour) = c.canary_undrained() {
                out.push_str(&format!(
                    "\nnote: {colour} of {} was drained; the canary takes it out of drain",
                    c.service
                ));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("\nwarning: {w}"));
        }
        out
    }
}

fn mechanism_name(m: MapMechanism) -> &'static str {
    match m {
        MapMechanism::Unchanged => "unchanged",
        MapMechanism::PerKey => "runtime per key",
        MapMechanism::Transaction => "runtime transaction",
    }
}

impl<P: Proxy> Engine<P> {
    /// Carries prepared files to the proxy as generation `generation`: commit, apply
    /// (runtime or reload), confirm, settle. On error, files and proxy are as before.
    pub(super) async fn transition(
        &mut self,
        prepared: Prepared<'_>,
        generation: u64,
    ) -> Result<Applied, ApplyError> {
        let Prepared {
            pending,
            validated_by_proxy,
            warnings,
            structural,
            mut timings,
        } = prepared;
        if pending.is_empty() {
            return Ok(Applied {
                timings_ms: timings,
                ..Applied::nothing(Change {
                    generation,
                    services: vec![],
                })
            });
        }

        let t = Instant::now();
        let staged = stage(&pending)?;
        let outcome = if structural {
            // Nothing has moved if this fails: the files are back as they were.
            let replaced = publish(sync_staged(staged).await?, &pending)?;
            self.unflushed.replaced(replaced);
            timings.insert("commit", ms(t));
            let t = Instant::now();
            let outcome = self.apply_reload(&pending, generation).await;
            timings.insert("apply", ms(t));
            outcome
        } else {
            // The runtime takes the change, then the files follow it (a failed apply leaves
            // them alone); they become durable once the change is answered.
            let t = Instant::now();
            let outcome = self.apply_runtime(&pending, generation).await;
            timings.insert("apply", ms(t));
            let t = Instant::now();
            let outcome = outcome.and_then(|applied| {
                self.unflushed.replaced(publish(staged, &pending)?);
                Ok(applied)
            });
            timings.insert("commit", ms(t));
            for p in &pending {
                self.unflushed.file(&p.spec.path);
            }
            outcome
        };
        let (files, reload) = match outcome {
            Ok(v) => v,
            Err(e) => {
                self.metrics.rollback(RollbackReason::ApplyFailed);
                self.undo(&pending, structural).await;
                // What the proxy serves is uncertain now: compare everything on the next tick.
                self.epoch = None;
                return Err(e);
            }
        };

        let t = Instant::now();
        if let Err(e) = self.confirm(&pending, structural).await {
            self.metrics.rollback(RollbackReason::ConfirmFailed);
            self.undo(&pending, structural).await;
            self.epoch = None;
            return Err(e);
        }
        timings.insert("confirm", ms(t));

        for p in &pending {
            self.unflushed.dir(fsio::dir_of(&p.spec.path));
        }
        for p in &pending {
            self.files.insert(p.spec.name.clone(), p.new.clone());
        }
        // The proxy's epoch as of this change is read once the answer is out.
        self.unflushed.epoch();
        Ok(Applied {
            change: Change {
                generation,
                services: vec![],
            },
            files,
            validated_by_proxy,
            reload,
            batched: 1,
            timings_ms: timings,
            gates: Vec::new(),
            warnings,
        })
    }

    /// Updates the changed maps at runtime, the last recording `generation` where the proxy
    /// keeps one at runtime (Nginx's Lua dict): their live content read in one go, then
    /// carried in one go where the proxy can (see [`Proxy::update_maps`]).
    async fn apply_runtime(
        &self,
        pending: &[Pending<'_>],
        generation: u64,
    ) -> Result<(Vec<FileOutcome>, Option<ReloadReport>), ApplyError> {
        let paths: Vec<&Path> = pending.iter().map(|p| p.spec.path.as_path()).collect();
        let live = self
            .proxy
            .read_maps(&paths)
            .await
            .map_err(|e| ApplyError::caused(Step::Apply, ErrorKind::Proxy, e))?;
        let edits: Vec<MapEdit<'_>> = pending
            .iter()
            .zip(&live)
            .map(|(p, from)| MapEdit {
                path: &p.spec.path,
                from,
                to: p.entries.as_ref().expect("runtime apply is for maps"),
            })
            .collect();
        let updates = self
            .proxy
            .update_maps(&edits, generation)
            .await
            .map_err(|(i, e)| {
                ApplyError::caused(Step::Apply, ErrorKind::Proxy, e)
                    .context(format!("map {}", pending[i].spec.name))
            })?;
        let out = pending
            .iter()
            .zip(updates)
            .map(|(p, update)| FileOutcome {
                name: p.spec.name.clone(),
                path: p.spec.path.clone(),
                kind: p.spec.kind,
                mechanism: Some(update.mechanism),
                edits: update.edits,
            })
            .collect();
        Ok((out, None))
    }

    async fn apply_reload(
        &self,
        pending: &[Pending<'_>],
        generation: u64,
    ) -> Result<(Vec<FileOutcome>, Option<ReloadReport>), ApplyError> {
        let report = self.proxy.reload(generation).await;
        self.metrics.proxy_reload(report.is_ok());
        let report = report.map_err(|e| ApplyError::caused(Step::Apply, ErrorKind::Proxy, e))?;
        let files = pending
            .iter()
            .map(|p| FileOutcome {
                name: p.spec.name.clone(),
                path: p.spec.path.clone(),
                kind: p.spec.kind,
                mechanism: None,
                edits: p.entries.as_ref().map_or(0, |e| {
                    MapDiff::between(&self.syntax().parse(&p.old).unwrap_or_default(), e).len()
                }),
            })
            .collect();
        Ok((files, Some(report)))
    }

    /// Reads back every map the change touched (all maps after a reload), in one go, and
    /// compares.
    async fn confirm(&self, pending: &[Pending<'_>], structural: bool) -> Result<(), ApplyError> {
        if !self.proxy.has_runtime_maps() {
            return Ok(());
        }
        let touched: BTreeMap<&str, &Pending<'_>> =
            pending.iter().map(|p| (p.spec.name.as_str(), p)).collect();
        let mut specs = Vec::new();
        let mut expected = Vec::new();
        for spec in self.config.files.iter().filter(|f| f.kind == FileKind::Map) {
            expected.push(match touched.get(spec.name.as_str()) {
                Some(p) => p.entries.clone().expect("maps are parsed"),
                None if structural => self
                    .syntax()
                    .parse(&self.files[&spec.name])
                    .unwrap_or_default(),
                None => continue,
            });
            specs.push(spec);
        }
        let paths: Vec<&Path> = specs.iter().map(|s| s.path.as_path()).collect();
        let live = self
            .proxy
            .read_maps(&paths)
            .await
            .map_err(|e| ApplyError::caused(Step::Confirm, ErrorKind::Proxy, e))?;
        for ((spec, live), expected) in specs.iter().zip(&live).zip(&expected) {
            if live != expected {
                let d = MapDiff::between(live, expected);
                return Err(ApplyError::new(
                    Step::Confirm,
                    ErrorKind::Mismatch,
                    format!(
                        "map {} reads back different from what was applied ({} added, {} changed, {} removed missing)",
                        spec.name,
                        d.added.len(),
                        d.changed.len(),
                        d.removed.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Puts back the previous files and what the proxy served (best effort; every failure
    /// is logged and leaves the error of the change as the caller's answer).
    async fn undo(&self, pending: &[Pending<'_>], structural: bool) {
        restore_files(pending);
        if structural {
            let reload = self.proxy.reload(self.state.generation).await;
            self.metrics.proxy_reload(reload.is_ok());
            if let Err(e) = reload {
                tracing::error!(error = %e, "undo: reload of the restored files failed");
            }
            return;
        }
        for p in pending {
            let Ok(old) = self.syntax().parse(&p.old) else {
                continue;
            };
            match self.proxy.read_map(&p.spec.path).await {
                Ok(live) if live != old => {
                    if let Err(e) = self.proxy.update_map(&p.spec.path, &live, &old).await {
                        tracing::error!(error = %e, "undo: cannot restore map {}", p.spec.name);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "undo: cannot read map {}", p.spec.name),
            }
        }
    }
}

/// Writes every pending file under a temporary name beside it: a full disk or a read-only
/// directory is refused here, before anything moves.
fn stage(pending: &[Pending<'_>]) -> Result<Vec<Staged>, ApplyError> {
    pending
        .iter()
        .map(|p| {
            fsio::stage(&p.spec.path, p.new.as_bytes(), fsio::DEFAULT_MODE)
                .map_err(|e| ApplyError::caused(Step::Commit, ErrorKind::Io, e))
        })
        .collect()
}

/// Fsyncs the staged files, on the blocking pool.
async fn sync_staged(staged: Vec<Staged>) -> Result<Vec<Staged>, ApplyError> {
    tokio::task::spawn_blocking(move || staged.iter().try_for_each(Staged::sync).map(|()| staged))
        .await
        .map_err(|e| {
            ApplyError::caused(Step::Commit, ErrorKind::Io, e).context("fsync task failed")
        })?
        .map_err(|e| ApplyError::caused(Step::Commit, ErrorKind::Io, e))
}

/// Puts the staged files in place, each keeping the file it replaces (see
/// [`Staged::replace`]); returns the replaced files still to be made `<name>.prev`. On a
/// failure the files already placed get their previous content back.
fn publish(staged: Vec<Staged>, pending: &[Pending<'_>]) -> Result<Vec<Replaced>, ApplyError> {
    let mut replaced = Vec::new();
    for (i, (s, p)) in staged.into_iter().zip(pending).enumerate() {
        match s.replace(p.old.as_bytes()) {
            Ok(r) => replaced.extend(r),
            Err(e) => {
                for r in replaced {
                    if let Err(e) = r.keep() {
                        tracing::warn!("{e}");
                    }
                }
                restore_files(&pending[..i]);
                return Err(ApplyError::caused(Step::Commit, ErrorKind::Io, e));
            }
        }
    }
    Ok(replaced)
}

/// Puts the previous content of the pending files back (unchanged files are left alone);
/// failures are logged, the caller reports the error that made it undo.
fn restore_files(pending: &[Pending<'_>]) {
    for p in pending {
        // No previous version: `.prev` already holds what was before.
        if let Err(e) = write_atomic(&p.spec.path, p.old.as_bytes(), WriteOptions::no_previous()) {
            tracing::error!(error = %e, "cannot restore {}", p.spec.path.display());
        }
    }
}
