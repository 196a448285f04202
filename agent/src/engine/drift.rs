//! Drift the periodic check finds without waiting for a reload: a managed file changed or
//! removed on disk behind the agent's back (rewritten at once, so a reload made later reads
//! the desired file again), and a drained colour whose servers were put back to ready by
//! hand (drained again). Each is logged, counted (`cutover_drift_repairs_total`), journaled
//! by the tick and shown in `status` (`last_drift`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::{ApplyError, ErrorKind};
use super::Engine;
use crate::protocol::{Colour, DriftStatus, FileKind, Step};
use crate::proxy::Proxy;
use crate::store::now_ms;

/// What a file looked like on disk when it last matched: compared first, so an unchanged
/// file is not read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified_ns: i128,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            len: m.len(),
            modified_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            inode: m.ino(),
        })
    }
}

/// A short digest of `bytes` for the journal (FNV-1a, 64 bits).
fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl<P: Proxy> Engine<P> {
    /// Compares every managed file on disk with what the agent wrote; rewrites those that
    /// differ or are gone. Returns one line per file rewritten.
    pub(super) fn repair_files_on_disk(&mut self) -> Result<Vec<String>, ApplyError> {
        let mut fixes = Vec::new();
        let specs: Vec<_> = self.config.files.clone();
        for spec in &specs {
            let Some(want) = self.files.get(&spec.name).cloned() else {
                continue;
            };
            let stamp = Stamp::of(&spec.path);
            if stamp.is_some() && self.disk_stamps.get(&spec.name) == stamp.as_ref() {
                continue;
            }
            let found = crate::fsio::read_optional(&spec.path)
                .map_err(|e| ApplyError::caused(Step::Commit, ErrorKind::Io, e))?;
            if found.as_deref() != Some(want.as_bytes()) {
                let what = match &found {
                    None => "was removed".to_owned(),
                    Some(b) => format!(
                        "was changed on disk ({} bytes, digest {}; the desired file has {} bytes, digest {})",
                        b.len(),
                        digest(b),
                        want.len(),
                        digest(want.as_bytes())
                    ),
                };
                crate::fsio::write_atomic(
                    &spec.path,
                    want.as_bytes(),
                    crate::fsio::WriteOptions::default(),
                )
                .map_err(|e| {
                    ApplyError::caused(Step::Commit, ErrorKind::Io, e)
                        .context(format!("rewriting {}", spec.path.display()))
                })?;
                if spec.kind == FileKind::Config || !self.proxy.has_runtime_maps() {
                    self.reload_owed = true;
                }
                fixes.push(format!(
                    "file {} ({}) {what}; rewritten",
                    spec.name,
                    spec.path.display()
                ));
            }
            match Stamp::of(&spec.path) {
                Some(s) => self.disk_stamps.insert(spec.name.clone(), s),
                None => self.disk_stamps.remove(&spec.name),
            };
        }
        Ok(fixes)
    }

    /// Drains again the servers of every drained colour that were put back to ready
    /// behind the agent's back. Returns one line per colour drained again.
    pub(super) async fn repair_drains(&mut self) -> Result<Vec<String>, ApplyError> {
        let mut drained: BTreeMap<String, (Colour, String)> = BTreeMap::new();
        for (name, s) in &self.state.services {
            let Some(service) = self.config.services.get(name) else {
                continue;
            };
            for colour in &s.drained {
                let backend = service.colours[colour].backend.clone();
                drained.insert(format!("{name}/{colour}"), (*colour, backend));
            }
        }
        let mut fixes = Vec::new();
        for (what, (_, backend)) in drained {
            let Ok(servers) = self.proxy.servers(&backend).await else {
                // A proxy that cannot report server states (Nginx) has its drains in the
                // rendered config, which the file check covers.
                continue;
            };
            let ready: Vec<&str> = servers
                .iter()
                .filter(|s| !s.drain && !s.maint)
                .map(|s| s.name.as_str())
                .collect();
            if ready.is_empty() {
                continue;
            }
            let names = ready.join(", ");
            self.proxy.set_drain(&backend, true).await.map_err(|e| {
                ApplyError::caused(Step::Apply, ErrorKind::Proxy, e)
                    .context(format!("draining servers of {backend} again"))
            })?;
            fixes.push(format!(
                "{what} is drained but {backend} had {names} ready (undrained behind the agent's back); drained again"
            ));
        }
        Ok(fixes)
    }

    /// Records the drift a check repaired, for `status`.
    pub(super) fn note_drift(&mut self, fixes: &[String]) {
        if !fixes.is_empty() {
            self.last_drift = Some(DriftStatus {
                message: fixes.join("; "),
                time_ms: now_ms(),
            });
        }
    }
}
