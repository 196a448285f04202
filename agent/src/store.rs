//! Persistence: the state file and the history journal in the state directory.
//!
//! `state.json` is written with [`write_atomic`], which keeps the version before it as
//! `state.json.prev`; a state file that does not parse (a torn or corrupt write) is reported
//! and the previous version is used. `history.jsonl` holds one JSON line per attempted
//! change (applied or refused), appended and fsynced before the caller gets an answer; a
//! torn last line is skipped when read.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsio::{self, previous_path, write_atomic, FsError, WriteOptions};
use crate::state::State;

/// State file name inside the state directory.
pub const STATE_FILE: &str = "state.json";
/// Journal file name inside the state directory.
pub const JOURNAL_FILE: &str = "history.jsonl";
/// How much of the journal's end `history` reads at most, in bytes.
pub const HISTORY_TAIL_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("saving state: {0}")]
    Save(#[from] FsError),
    #[error("state file {path} is unreadable ({reason}) and so is its previous version")]
    Corrupt { path: PathBuf, reason: String },
    #[error("appending to journal {path}: {source}")]
    Journal { path: PathBuf, source: io::Error },
}

/// Who asked for a change, from the control socket's peer credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
    /// `socket`, `agent` (startup repair, reconcile) or `peer`.
    pub via: String,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// State generation after the change (before it, for a refused one).
    pub generation: u64,
    /// Unix time, milliseconds.
    pub time_ms: u64,
    pub requester: Requester,
    /// The request as received.
    pub request: serde_json::Value,
    /// `ok` or `error`.
    pub result: String,
    /// Human summary (what changed, or the error).
    pub message: String,
    /// Details: services changed, mechanisms, timings, failed step.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    pub state: Option<State>,
    /// Set when the state file was unusable and the previous version was used.
    pub recovered_from: Option<String>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
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
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Loads the state: `None` when there is none yet. A corrupt file falls back to the
    /// previous version; both corrupt is an error (the agent refuses to guess).
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let path = self.state_path();
        let parse = |p: &Path| -> Result<Option<State>, String> {
            match fsio::read_optional(p) {
                Ok(None) => Ok(None),
                Ok(Some(bytes)) => serde_json::from_slice::<State>(&bytes)
                    .map(Some)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        match parse(&path) {
            Ok(state) => Ok(Loaded {
                state,
                recovered_from: None,
            }),
            Err(reason) => match parse(&previous_path(&path)) {
                Ok(Some(prev)) => Ok(Loaded {
                    state: Some(prev),
                    recovered_from: Some(reason),
                }),
                _ => Err(StoreError::Corrupt { path, reason }),
            },
        }
    }

    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        bytes.push(b'\n');
        write_atomic(&self.state_path(), &bytes, WriteOptions::default())?;
        Ok(())
    }

    /// Appends one line to the journal and fsyncs it.
    pub fn append(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let path = self.journal_path();
        let err = |source| StoreError::Journal {
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(entry).expect("journal entry serializes");
        line.push(b'\n');
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .map_err(err)?;
        f.write_all(&line).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// The newest journal entries, oldest first: at most `limit`, only those about
    /// `service` when given. Lines that do not parse (a torn write) are skipped.
    pub fn history(&self, service: Option<&str>, limit: usize) -> io::Result<Vec<JournalEntry>> {
        let mut f = match fs::File::open(self.journal_path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let start = len.saturating_sub(HISTORY_TAIL_BYTES);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.take(HISTORY_TAIL_BYTES).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut lines = text.lines();
        if start > 0 {
            lines.next(); // partial first line
        }
        let mut out: Vec<JournalEntry> = lines
            .filter_map(|l| serde_json::from_str::<JournalEntry>(l).ok())
            .filter(|e| service.is_none_or(|s| mentions(e, s)))
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }
}

fn mentions(e: &JournalEntry, service: &str) -> bool {
    e.request.get("service").and_then(|v| v.as_str()) == Some(service)
        || e.data
            .get("services")
            .and_then(|v| v.as_array())
            .is_some_and(|a| {
                a.iter()
                    .any(|c| c.get("service").and_then(|v| v.as_str()) == Some(service))
            })
}

/// Now as Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Colour;

    fn entry(gen: u64, service: &str) -> JournalEntry {
        JournalEntry {
            generation: gen,
            time_ms: now_ms(),
            requester: Requester::default(),
            request: serde_json::json!({"cmd": "switch", "service": service}),
            result: "ok".into(),
            message: String::new(),
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn state_round_trip_and_corrupt_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.load().unwrap().state.is_none());
        let s1 = State::new([("web", Colour::Blue)]);
        store.save(&s1).unwrap();
        let mut s2 = s1.clone();
        s2.generation = 5;
        store.save(&s2).unwrap();
        assert_eq!(store.load().unwrap().state.unwrap(), s2);
        // A torn write of the current file: the previous version is used and reported.
        fs::write(store.state_path(), b"{\"generation\": 5, \"serv").unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.state.unwrap(), s1);
        assert!(loaded.recovered_from.is_some());
        fs::write(previous_path(&store.state_path()), b"garbage").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn journal_tail_and_filter_skip_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for g in 1..=5 {
            store
                .append(&entry(g, if g % 2 == 0 { "api" } else { "web" }))
                .unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.journal_path())
            .unwrap();
        f.write_all(b"{\"generation\": 6, \"ti").unwrap();
        let all = store.history(None, 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.generation).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let api = store.history(Some("api"), 1).unwrap();
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].generation, 4);
    }
}
