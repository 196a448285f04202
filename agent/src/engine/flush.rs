//! What a change leaves to do once its answer is out: the proxy's epoch as of the change
//! (the one the periodic check compares against), the files it replaced made `<name>.prev`,
//! the fsync of the files the runtime path renamed into place and of their directories,
//! the journal's fsync, a state the log does not hold yet (the fleet generation a host marked), and now and then a checkpoint
//! of the state log into `state.json`. The agent's task calls [`Engine::flush`] after every
//! request or event it handled, so nothing waits here for long; a change never waits for
//! more than the state log's one fsync. The fsyncs of files, directories and the journal
//! run on the blocking pool: the agent's one thread is free meanwhile to write out the
//! answers just given, which is what makes "once the answer is out" true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Engine;
use crate::fsio::Replaced;
use crate::proxy::Proxy;

/// The state log is folded into `state.json` once it holds this many bytes (a few hundred
/// changes of a handful of services).
pub const CHECKPOINT_BYTES: u64 = 64 * 1024;

/// The durability work the last changes left for [`Engine::flush`].
#[derive(Debug, Default)]
pub(super) struct Unflushed {
    /// Files renamed into place whose content is not fsynced yet.
    files: BTreeSet<PathBuf>,
    /// Directories with renames not fsynced yet.
    dirs: BTreeSet<PathBuf>,
    /// Files a change replaced, to be made `<name>.prev`, in the order they were replaced.
    replaced: Vec<Replaced>,
    /// The state changed without a line in the state log.
    state: bool,
    /// Journal lines were written since the last fsync (set from `&self` methods).
    journal: AtomicBool,
    /// A change reached the proxy: its epoch (which a change may move: Nginx's Lua dict
    /// keeps the generation) is to be read again, as the one verified.
    epoch: bool,
}

impl Unflushed {
    /// A file renamed into place before its content was fsynced.
    pub(super) fn file(&mut self, path: &Path) {
        self.files.insert(path.to_owned());
    }

    /// Files a change replaced (see [`crate::fsio::Staged::replace`]).
    pub(super) fn replaced(&mut self, replaced: Vec<Replaced>) {
        self.replaced.extend(replaced);
    }

    /// A directory with a rename not fsynced yet.
    pub(super) fn dir(&mut self, dir: &Path) {
        self.dirs.insert(dir.to_owned());
    }

    /// A state change the state log does not hold yet.
    pub(super) fn state(&mut self) {
        self.state = true;
    }

    /// A change that reached the proxy.
    pub(super) fn epoch(&mut self) {
        self.epoch = true;
    }

    /// A journal line written.
    pub(super) fn journal(&self) {
        self.journal.store(true, Ordering::Relaxed);
    }
}

impl<P: Proxy> Engine<P> {
    /// Makes durable what the changes answered since the last call left: files, then
    /// directories, the state (a line in the state log), the journal, and a checkpoint when
    /// the log is long. Failures are logged: the changes they concern are answered and in
    /// the state log already, and the next start renders the files from it.
    pub async fn flush(&mut self) {
        let Unflushed {
            files,
            dirs,
            replaced,
            state,
            journal,
            epoch,
        } = std::mem::take(&mut self.unflushed);
        if epoch {
            if let Ok(epoch) = self.proxy.epoch().await {
                self.epoch = Some(epoch);
            }
        }
        let journal = journal.into_inner().then(|| self.store.journal_path());
        if !files.is_empty() || !dirs.is_empty() || !replaced.is_empty() || journal.is_some() {
            let synced =
                tokio::task::spawn_blocking(move || sync(replaced, &files, &dirs, journal)).await;
            if let Err(e) = synced {
                tracing::error!(error = %e, "the fsync task failed");
            }
        }
        if state {
            if let Err(e) = self.store.commit(&self.state) {
                tracing::error!(error = %e, "cannot save the state");
                self.unflushed.state();
            }
        }
        if self.store.log_len() >= CHECKPOINT_BYTES {
            if let Err(e) = self.store.save(&self.state) {
                tracing::warn!(error = %e, "cannot checkpoint the state log");
            }
        }
    }
}

/// Makes the `replaced` files `<name>.prev`, fsyncs `files`, then `dirs`, then the journal
/// at `journal`; failures are logged.
fn sync(
    replaced: Vec<Replaced>,
    files: &BTreeSet<PathBuf>,
    dirs: &BTreeSet<PathBuf>,
    journal: Option<PathBuf>,
) {
    for r in replaced {
        if let Err(e) = r.keep() {
            tracing::warn!("{e}");
        }
    }
    for path in files {
        if let Err(e) = crate::fsio::sync_file(path) {
            tracing::warn!("{e}");
        }
    }
    for dir in dirs {
        if let Err(e) = crate::fsio::sync_dir(dir) {
            tracing::warn!("{e}");
        }
    }
    if let Some(path) = journal {
        if let Err(e) = crate::store::sync_journal_at(path) {
            tracing::error!(error = %e, "cannot fsync the journal");
        }
    }
}
