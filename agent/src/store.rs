//! Persistence: the state file and the history journal in the state directory.
//!
//! The record of a change is one line in `state.log`: the whole state after it, appended
//! and fsynced ([`Store::commit`]) before the caller gets an answer; that fsync is the only
//! one a change waits for. `state.json` is the checkpoint the log starts from, written with
//! [`write_atomic`] (which keeps the version before it as `state.json.prev`) once the
//! answer is out ([`Store::save`]), which empties the log. The state is the checkpoint, or
//! the log's last complete line when that is newer ([`Store::load`]); a state file that does
//! not parse (a torn or corrupt write, a power loss) is reported and the previous version is
//! used. `history.jsonl` holds one JSON line per attempted change (applied or refused),
//! written before the caller gets an answer and fsynced right after
//! ([`sync_journal_at`]); a line that does not parse is skipped when read. The journal
//! is bounded (`bounds`): refused requests are cut and identical ones counted, and it
//! rotates by size into `history.jsonl.1` ... (read by `history` too), rotated files
//! expiring by age.
//!
//! [`Store::recover`] runs once when the agent (or `cutover render`) starts, under the
//! directory lock ([`Store::lock`]): it cuts a torn or corrupt end off the journal, falls
//! back to `state.json.prev` when `state.json` is unusable (giving the recovered state a
//! new generation, since serving it again is a change), notices a change whose journal
//! line was lost, and removes temporary files of interrupted writes. It says what it did;
//! the engine puts that in `status` and the journal.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::JournalLimits;
use crate::fsio::{self, previous_path, write_atomic, FsError, WriteOptions};
use crate::protocol::ReasonText;
use crate::requester::Requester;
use crate::state::State;

pub mod bounds;
mod journal;

pub use self::journal::sync_journal_at;

/// Lock file inside the state directory: held (`flock`, exclusive) by the one process that
/// may write the state, the journal and the managed files.
pub const LOCK_FILE: &str = "agent.lock";
/// Where an unusable state file is kept for inspection when the previous version is used.
pub const CORRUPT_SUFFIX: &str = ".corrupt";
/// Where the torn or corrupt end cut off the journal is kept for inspection.
pub const TORN_SUFFIX: &str = ".torn";

/// State file name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// State log file name inside the state directory: the states committed since the last
/// checkpoint (`state.json`), one JSON line each.
pub const STATE_LOG: &str = "state.log";
/// Journal file name inside the state directory.
pub const JOURNAL_FILE: &str = "history.jsonl";
/// How much of the journal's end `history` reads at most, in bytes.
pub const HISTORY_TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// What went wrong with the state directory, by operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating the state directory.
    #[error("creating state directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the state file (or keeping an unusable one aside).
    #[error("saving state: {0}")]
    Save(#[from] FsError),
    /// Both the state file and its previous version are unusable.
    #[error("state file {path} is unreadable ({reason}) and so is its previous version")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Why the state file is unusable.
        reason: Unusable,
    },
    /// Appending a journal line.
    #[error("appending to journal {path}: {source}")]
    Journal {
        /// The journal.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Appending to the state log.
    #[error("appending to the state log {path}: {source}")]
    Log {
        /// The state log.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Cutting a torn end off the journal.
    #[error("repairing journal {path}: {source}")]
    RepairJournal {
        /// The journal.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Taking the directory's lock.
    #[error("locking {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error("{path} is locked by another running cutover agent (or `cutover render`)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

/// What became of an attempted change, or of a post-switch watch, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied (or, for the agent's own work, done).
    Ok,
    /// Refused or failed; nothing changed.
    Error,
    /// A repair made when the agent started (see [`Store::recover`]).
    Recovered,
    /// The post-switch watch saw the new colour healthy.
    Passed,
    /// The post-switch watch saw no traffic and holds the change for a person to decide.
    Held,
    /// The post-switch watch rolled the change back.
    RolledBack,
    /// The post-switch watch wanted a rollback and the rollback failed.
    RollbackFailed,
}

impl Outcome {
    /// The journal's spelling: `ok`, `error`, `recovered`, `passed`, `held`,
    /// `rolled_back`, `rollback_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Recovered => "recovered",
            Outcome::Passed => "passed",
            Outcome::Held => "held",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackFailed => "rollback_failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// State generation after the change (before it, for a refused one).
    pub generation: u64,
    /// Unix time, milliseconds.
    pub time_ms: u64,
    /// Who asked.
    pub requester: Requester,
    /// The request as received.
    pub request: serde_json::Value,
    /// What became of it.
    pub result: Outcome,
    /// Human summary (what changed, or the error).
    pub message: String,
    /// Details: services changed, mechanisms, timings, failed step.
    #[serde(default)]
    pub data: serde_json::Value,
    /// The verb asked for (`switch`, `rollback`..., `apply`), where the request carried
    /// here says less (a fleet change is carried as the declared state it leads to).
    /// Absent from lines of earlier versions and where the request's `op` says it; read it
    /// with [`JournalEntry::verb`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// Why, as the requester said (`--reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonText>,
    /// Who asked for a change that came to this host through a cluster (static peers or
    /// the fleet store), where `requester` names the agent that carried it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<Requester>,
}

impl JournalEntry {
    /// An entry with no verb, reason or cluster requester of its own.
    pub fn new(
        generation: u64,
        requester: Requester,
        request: serde_json::Value,
        result: Outcome,
        message: String,
        data: serde_json::Value,
    ) -> JournalEntry {
        JournalEntry {
            generation,
            time_ms: now_ms(),
            requester,
            request,
            result,
            message,
            data,
            verb: None,
            reason: None,
            asked_by: None,
        }
    }

    /// The verb: the one recorded, else the request's `op` (`set` is the verb `apply`;
    /// what the agent did by itself is its `op`: `watch`, `reconcile`, `config`...).
    pub fn verb(&self) -> &str {
        if let Some(v) = &self.verb {
            return v;
        }
        match self.request.get("op").and_then(|v| v.as_str()) {
            Some("set") => "apply",
            Some(op) => op,
            None => "",
        }
    }
}

/// Which journal entries `history` returns (every one by default); see
/// [`HistoryFilter::matches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// About this service (the request names it, or the change moved it).
    pub service: Option<String>,
    /// Asked for by this user name or uid, certificate identity or peer: the requester,
    /// or whoever asked for the cluster change.
    pub user: Option<String>,
    /// Of this verb ([`JournalEntry::verb`]).
    pub verb: Option<String>,
    /// At or after this Unix time, in milliseconds.
    pub since_ms: Option<u64>,
    /// Before this Unix time, in milliseconds.
    pub until_ms: Option<u64>,
}

impl HistoryFilter {
    /// Only entries about `service`.
    pub fn service(service: Option<&str>) -> HistoryFilter {
        HistoryFilter {
            service: service.map(str::to_owned),
            ..HistoryFilter::default()
        }
    }

    /// Whether `e` passes every part of the filter.
    pub fn matches(&self, e: &JournalEntry) -> bool {
        self.service
            .as_deref()
            .is_none_or(|s| journal::mentions(e, s))
            && self
                .user
                .as_deref()
                .is_none_or(|u| e.requester.is(u) || e.asked_by.as_ref().is_some_and(|a| a.is(u)))
            && self.verb.as_deref().is_none_or(|v| e.verb() == v)
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
            && self.until_ms.is_none_or(|t| e.time_ms < t)
    }
}

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// It cannot be read.
    #[error(transparent)]
    Read(FsError),
    /// It is not a state (a torn or corrupt write).
    #[error(transparent)]
    Parse(serde_json::Error),
    /// It is gone while its previous version is there: not a first start.
    #[error("the file is missing but its previous version exists")]
    MissingBesidePrevious,
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The state; `None` when there is none yet.
    pub state: Option<State>,
    /// Set when the state file was unusable and the previous version was used.
    pub recovered_from: Option<Unusable>,
}

/// What [`Store::recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The state to use: `None` when there is none yet.
    pub state: Option<State>,
    /// One line per repair made, for `status` and the journal.
    pub notes: Vec<String>,
}

/// The exclusive lock on a state directory; released when dropped (or when the process
/// dies, however it dies).
#[derive(Debug)]
pub struct StoreLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// How far the journal may grow.
    journal_limits: JournalLimits,
    /// The run of identical refusals being counted (shared by the clones).
    repeats: Arc<Mutex<bounds::Repeats>>,
}

impl Store {
    /// Opens (and creates, mode 0750) the state directory.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Store {
            dir: dir.to_owned(),
            journal_limits: JournalLimits::default(),
            repeats: Arc::default(),
        })
    }

    /// The same directory with the journal bounded by `limits`.
    pub fn with_journal_limits(mut self, limits: JournalLimits) -> Store {
        self.journal_limits = limits;
        self
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The journal.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// The state log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(STATE_LOG)
    }

    /// Makes `state` the durable state with one fsync: a line appended to the state log. A
    /// write that fails part-way is cut off again, and the state on disk stays what it was.
    pub fn commit(&self, state: &State) -> Result<(), StoreError> {
        let path = self.log_path();
        let mut line = serde_json::to_vec(state).expect("state serializes");
        line.push(b'\n');
        fsio::append_line(&path, &line, 0o640, true)
            .map_err(|source| StoreError::Log { path, source })
    }

    /// Bytes in the state log (0 when there is none).
    pub fn log_len(&self) -> u64 {
        fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// The newest complete state in the log: its last line that parses (a line cut short
    /// by a crash does not).
    fn logged(&self) -> Option<State> {
        let bytes = fsio::read_optional(&self.log_path()).ok()??;
        bytes
            .split(|b| *b == b'\n')
            .rev()
            .find_map(|line| serde_json::from_slice::<State>(line).ok())
    }

    /// Loads the state: `None` when there is none yet. A corrupt file falls back to the
    /// previous version; both corrupt is an error (the agent refuses to guess).
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let path = self.state_path();
        let parse = |p: &Path| -> Result<Option<State>, Unusable> {
            match fsio::read_optional(p) {
                Ok(None) => Ok(None),
                Ok(Some(bytes)) => serde_json::from_slice::<State>(&bytes)
                    .map(Some)
                    .map_err(Unusable::Parse),
                Err(e) => Err(Unusable::Read(e)),
            }
        };
        let current = match parse(&path) {
            // A missing state file beside an existing previous version is not a first start:
            // starting from the initial colours would move traffic nobody asked to move.
            Ok(None) if previous_path(&path).exists() => Err(Unusable::MissingBesidePrevious),
            other => other,
        };
        let logged = self.logged();
        let mut loaded = match current {
            Ok(state) => Loaded {
                state,
                recovered_from: None,
            },
            Err(reason) => match (parse(&previous_path(&path)), &logged) {
                (Ok(Some(prev)), _) => Loaded {
                    state: Some(prev),
                    recovered_from: Some(reason),
                },
                // The log alone (below).
                (_, Some(_)) => Loaded {
                    state: None,
                    recovered_from: Some(reason),
                },
                _ => return Err(StoreError::Corrupt { path, reason }),
            },
        };
        // Changes committed since the checkpoint.
        if let Some(logged) = logged {
            let checkpoint = loaded.state.as_ref().map(|s| s.generation);
            if checkpoint.is_none_or(|g| logged.generation > g) {
                loaded.state = Some(logged);
            }
        }
        Ok(loaded)
    }

    /// Writes the state atomically as the checkpoint, then empties the state log. The
    /// replaced file becomes `state.json.prev` only if it is a usable state: an unusable one
    /// is kept as `state.json.corrupt` instead, so the last good previous version is never
    /// overwritten by garbage.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        self.checkpoint(state)?;
        // The checkpoint is durable: the log's lines are all in it (a truncation a power
        // loss undoes leaves lines no newer than the checkpoint, which loading ignores).
        if self.log_len() > 0 {
            let path = self.log_path();
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
                .map_err(|source| StoreError::Log { path, source })?;
        }
        Ok(())
    }

    fn checkpoint(&self, state: &State) -> Result<(), StoreError> {
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        bytes.push(b'\n');
        let current = fsio::read_optional(&path)?;
        let usable = current
            .as_deref()
            .is_none_or(|b| serde_json::from_slice::<State>(b).is_ok());
        if !usable {
            let corrupt = suffixed(&path, CORRUPT_SUFFIX);
            let keep = current.as_deref().unwrap_or_default();
            write_atomic(&corrupt, keep, WriteOptions::no_previous())?;
        }
        let opts = WriteOptions {
            keep_previous: usable,
            ..WriteOptions::default()
        };
        write_atomic(&path, &bytes, opts)?;
        Ok(())
    }

    /// Takes the directory's exclusive lock, or fails at once if another process holds it.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        use nix::fcntl::{Flock, FlockArg};
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(&path)
            .map_err(|source| StoreError::Lock {
                path: path.clone(),
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StoreLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StoreError::Locked { path }),
            Err((_, errno)) => Err(StoreError::Lock {
                path,
                source: io::Error::from(errno),
            }),
        }
    }

    /// Repairs what an interrupted run (a crash, a kill, a power loss) can leave behind and
    /// loads the state; see the module doc. Call it once, under [`Store::lock`], before
    /// anything else reads or writes the directory.
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let mut notes = Vec::new();
        let removed = fsio::remove_leftovers(&self.state_path());
        if removed > 0 {
            notes.push(format!(
                "removed {removed} temporary file(s) of an interrupted write of {}",
                self.state_path().display()
            ));
        }
        if let Some(note) = self.repair_journal()? {
            notes.push(note);
        }
        let journaled = self.last_generation();
        let loaded = self.load()?;
        let mut state = loaded.state;
        if let (Some(reason), Some(s)) = (loaded.recovered_from, state.as_mut()) {
            let used = s.generation;
            s.generation = used.max(journaled.unwrap_or(0)) + 1;
            self.save(s)?;
            notes.push(format!(
                "state file {} was unusable ({reason}); fell back to its previous version \
                 and the state log (generation {used}), now generation {}; the unusable file \
                 is kept as {}{}",
                self.state_path().display(),
                s.generation,
                STATE_FILE,
                CORRUPT_SUFFIX
            ));
        } else if let Some(s) = &state {
            if self.log_len() > 0 {
                // Start from a checkpoint and an empty log: a line cut short by a crash
                // would otherwise prefix the next one.
                self.save(s)?;
            }
            if s.generation > journaled.unwrap_or(0) {
                notes.push(format!(
                    "state generation {} has no journal line (the journal ends at {}): the \
                     change was applied but the agent stopped before journaling it",
                    s.generation,
                    journaled.map_or("no entry".to_owned(), |g| format!("generation {g}"))
                ));
            }
        }
        Ok(Recovered { state, notes })
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Now as Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
