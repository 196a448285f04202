//! The history journal: one JSON line per attempted change, appended (and fsynced once the
//! answer is out); read backwards from its end; and its repair after an interrupted write.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::bounds::{self, Admit};
use super::{
    suffixed, HistoryFilter, JournalEntry, Store, StoreError, HISTORY_TAIL_BYTES, JOURNAL_FILE,
    TORN_SUFFIX,
};
use crate::fsio::{write_atomic, WriteOptions};

impl Store {
    /// Cuts a torn or corrupt end off the journal: an incomplete last line (a write cut
    /// short) and the complete lines before it that are not JSON (zeroed or garbled blocks
    /// after a power loss). The cut bytes are kept in `history.jsonl.torn`.
    pub(super) fn repair_journal(&self) -> Result<Option<String>, StoreError> {
        let path = self.journal_path();
        let err = |source| StoreError::RepairJournal {
            path: path.clone(),
            source,
        };
        let mut f = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let len = f.metadata().map_err(err)?.len();
        let start = len.saturating_sub(HISTORY_TAIL_BYTES);
        f.seek(SeekFrom::Start(start)).map_err(err)?;
        let mut tail = Vec::new();
        (&mut f)
            .take(HISTORY_TAIL_BYTES)
            .read_to_end(&mut tail)
            .map_err(err)?;
        let keep = good_prefix(&tail, start > 0);
        if keep == tail.len() {
            return Ok(None);
        }
        let cut = &tail[keep..];
        write_atomic(
            &suffixed(&path, TORN_SUFFIX),
            cut,
            WriteOptions::no_previous(),
        )?;
        f.set_len(start + keep as u64).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(Some(format!(
            "journal {} ended in {} byte(s) that are not a complete entry (a write cut short); \
             removed them (kept in {}{})",
            path.display(),
            cut.len(),
            JOURNAL_FILE,
            TORN_SUFFIX
        )))
    }

    /// Generation of the newest journal entry.
    pub fn last_generation(&self) -> Option<u64> {
        self.history(&HistoryFilter::default(), usize::MAX)
            .ok()?
            .iter()
            .map(|e| e.generation)
            .max()
    }

    /// Journals `entry`: a refused request cut to its bounds, one identical to the
    /// refusal before it only counted (see `bounds`); the line is appended, not yet fsynced
    /// ([`sync_journal_at`] does, once the answer is out), the journal rotated first
    /// when the line would take it past its size. Whether a line was written (`false`: a
    /// repeated refusal, only counted).
    pub fn append(&self, entry: &JournalEntry) -> Result<bool, StoreError> {
        let entry = bounds::capped(entry.clone());
        let admitted = self
            .repeats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(&entry);
        match admitted {
            Admit::Counted => Ok(false),
            Admit::Write { summary } => {
                if let Some(summary) = summary {
                    self.append_line(&summary)?;
                }
                self.append_line(&entry).map(|()| true)
            }
        }
    }

    /// Appends one line to the journal. A write that fails part-way is cut off again, so
    /// the next entry starts on a line of its own.
    fn append_line(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let path = self.journal_path();
        let mut line = serde_json::to_vec(entry).expect("journal entry serializes");
        line.push(b'\n');
        bounds::rotate_if_full(&path, line.len() as u64, &self.journal_limits).map_err(
            |source| StoreError::Journal {
                path: path.clone(),
                source,
            },
        )?;
        crate::fsio::append_line(&path, &line, 0o640, false)
            .map_err(|source| StoreError::Journal { path, source })
    }

    /// The newest journal entries, oldest first: at most `limit`, only those `filter`
    /// passes, from the last [`HISTORY_TAIL_BYTES`] of the journal and of each rotated file.
    /// The journal is read backwards in chunks and parsed from its end, so the work is
    /// bounded by what is asked for, not by the journal's size. Lines that do not parse (a
    /// torn write) are skipped.
    pub fn history(&self, filter: &HistoryFilter, limit: usize) -> io::Result<Vec<JournalEntry>> {
        let journal = self.journal_path();
        let mut out = Vec::new();
        read_back(&journal, filter, limit, &mut out)?;
        for n in 1..=self.journal_limits.files {
            if out.len() >= limit {
                break;
            }
            read_back(&bounds::rotated(&journal, n), filter, limit, &mut out)?;
        }
        out.reverse();
        Ok(out)
    }
}

/// Bytes of the journal read at a time by [`read_back`].
const READ_CHUNK: u64 = 64 * 1024;

/// Adds the entries of the journal file at `path` to `out`, newest first, until `out`
/// holds `limit`; see [`Store::history`]. A missing file adds nothing.
fn read_back(
    path: &std::path::Path,
    filter: &HistoryFilter,
    limit: usize,
    out: &mut Vec<JournalEntry>,
) -> io::Result<()> {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let floor = len.saturating_sub(HISTORY_TAIL_BYTES);
    // Whether a line starts at the floor: at the file's start, or right after a newline.
    let whole_at_floor = floor == 0 || {
        let mut before = [0u8; 1];
        f.seek(SeekFrom::Start(floor - 1))?;
        f.read_exact(&mut before)?;
        before[0] == b'\n'
    };
    // `carry`: the start of the earliest line read so far, whose beginning is not yet.
    let mut carry: Vec<u8> = Vec::new();
    let mut end = len;
    while end > floor && out.len() < limit {
        let start = end.saturating_sub(READ_CHUNK).max(floor);
        let mut buf = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        // Before the first newline is a line that starts in an earlier chunk; at the
        // floor it is whole when a line starts there, else cut and dropped.
        let first = match buf.iter().position(|&b| b == b'\n') {
            _ if start == floor && whole_at_floor => 0,
            Some(i) => i + 1,
            None => buf.len(),
        };
        for line in buf[first..].split(|&b| b == b'\n').rev() {
            if out.len() == limit {
                break;
            }
            let Ok(entry) = serde_json::from_slice::<JournalEntry>(line) else {
                continue;
            };
            if filter.matches(&entry) {
                out.push(entry);
            }
        }
        buf.truncate(first);
        carry = buf;
        end = start;
    }
    Ok(())
}

/// Length of the part of a journal tail to keep: everything but an incomplete last line and
/// the complete lines before it that are not JSON at all (zeroed or garbled blocks). A line
/// that is JSON is kept even if this version cannot read it. `partial_first`: the tail
/// starts inside a line, which is left alone.
fn good_prefix(tail: &[u8], partial_first: bool) -> usize {
    let first = if partial_first {
        match tail.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => return tail.len(),
        }
    } else {
        0
    };
    let complete_end = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
        .max(first);
    let mut keep = complete_end;
    while keep > first {
        let line_start = tail[first..keep - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(first, |i| first + i + 1);
        let line = &tail[line_start..keep - 1];
        if line.trim_ascii().is_empty() || serde_json::from_slice::<serde_json::Value>(line).is_ok()
        {
            break;
        }
        keep = line_start;
    }
    keep
}

/// Whether the entry's request names `service` or its change moved it.
pub(super) fn mentions(e: &JournalEntry, service: &str) -> bool {
    e.request.get("service").and_then(|v| v.as_str()) == Some(service)
        || e.data
            .get("services")
            .and_then(|v| v.as_array())
            .is_some_and(|a| {
                a.iter()
                    .any(|c| c.get("service").and_then(|v| v.as_str()) == Some(service))
            })
}

#[cfg(test)]
mod tests {
    use super::super::tests::entry;
    use super::super::Outcome;
    use super::*;
    use crate::requester::{Reason, Requester};

    /// A journal as the agent wrote it before requesters and results were typed: one line
    /// of every kind it writes.
    const JOURNAL_V1: &str = include_str!("fixtures/history-v1.jsonl");

    #[test]
    fn a_journal_of_the_first_format_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.journal_path(), JOURNAL_V1).unwrap();
        let entries = store.history(&HistoryFilter::default(), 100).unwrap();
        let agent = || {
            Requester::Agent(Reason::Upkeep {
                uid: Some(0),
                gid: Some(0),
                pid: Some(812),
                names: Default::default(),
            })
        };
        let watch = || Requester::Agent(Reason::Watch);
        let expected = [
            (agent(), Outcome::Recovered),
            (agent(), Outcome::Ok),
            (
                Requester::local(Some(1000), Some(1000), Some(4242)),
                Outcome::Ok,
            ),
            (
                Requester::local(Some(3000), Some(3000), Some(5151)),
                Outcome::Error,
            ),
            (
                Requester::local(Some(1000), Some(1000), Some(4243)),
                Outcome::Error,
            ),
            (watch(), Outcome::Passed),
            (Requester::Agent(Reason::DesiredFile), Outcome::Ok),
            (watch(), Outcome::Held),
            (watch(), Outcome::Ok),
            (watch(), Outcome::RolledBack),
            (watch(), Outcome::RollbackFailed),
            (
                Requester::Agent(Reason::ClusterCommit {
                    coordinator: "lb1".into(),
                }),
                Outcome::Ok,
            ),
            (
                Requester::Agent(Reason::Converge { from: "lb2".into() }),
                Outcome::Ok,
            ),
            (
                Requester::Peer {
                    name: "ops-laptop".into(),
                },
                Outcome::Ok,
            ),
            (agent(), Outcome::Error),
            (agent(), Outcome::Ok),
        ];
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.requester.clone(), e.result))
            .collect();
        assert_eq!(got, expected);
        // The verb of a line without one is its request's `op` (`set` is `apply`).
        let verbs: Vec<&str> = entries.iter().map(JournalEntry::verb).collect();
        assert_eq!(
            verbs,
            [
                "recover",
                "config",
                "switch",
                "switch",
                "switch",
                "watch",
                "apply",
                "watch",
                "rollback",
                "watch",
                "watch",
                "switch",
                "apply",
                "canary",
                "reconcile",
                "reconcile"
            ]
        );
        assert!(entries
            .iter()
            .all(|e| e.reason.is_none() && e.asked_by.is_none()));
        // Each entry writes back the JSON it was read from.
        for (entry, line) in entries.iter().zip(JOURNAL_V1.lines()) {
            let written = serde_json::to_value(entry).unwrap();
            let read: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(written, read);
        }
        // The service filter reads requests and changes as before.
        let api = store
            .history(&HistoryFilter::service(Some("api")), 100)
            .unwrap();
        let gens: Vec<u64> = api.iter().map(|e| e.generation).collect();
        assert_eq!(gens, [1, 3, 4]);
        assert_eq!(store.last_generation(), Some(7));
    }

    #[test]
    fn verb_reason_and_who_asked_round_trip_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let alice = crate::requester::alice();
        let mut by_hand = entry(1, "web");
        by_hand.requester = alice.clone();
        by_hand.verb = Some("rollback".into());
        by_hand.reason = Some("CHG-1".parse().unwrap());
        by_hand.time_ms = 1_000;
        let mut carried = entry(2, "web");
        carried.requester = Requester::Agent(Reason::ClusterCommit {
            coordinator: "lb1".into(),
        });
        carried.asked_by = Some(alice.clone());
        carried.verb = Some("switch".into());
        carried.time_ms = 2_000;
        let mut other = entry(3, "api");
        other.requester = Requester::local(Some(2000), Some(2000), Some(1));
        other.time_ms = 3_000;
        // A line without a verb of its own: its request's `op` is the verb.
        other.request = serde_json::json!({"op": "switch", "service": "api", "colour": "green"});
        for e in [&by_hand, &carried, &other] {
            store.append(e).unwrap();
        }
        let line = fs::read_to_string(store.journal_path()).unwrap();
        let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        assert_eq!(first["requester"]["user"], "alice");
        assert_eq!(first["requester"]["group"], "ops");
        assert_eq!(first["verb"], "rollback");
        assert_eq!(first["reason"], "CHG-1");
        let all = store.history(&HistoryFilter::default(), 10).unwrap();
        assert_eq!(all, [by_hand.clone(), carried.clone(), other.clone()]);
        let gens = |f: HistoryFilter| {
            let got = store.history(&f, 10).unwrap();
            got.iter().map(|e| e.generation).collect::<Vec<_>>()
        };
        let user = |u: &str| HistoryFilter {
            user: Some(u.into()),
            ..HistoryFilter::default()
        };
        assert_eq!(
            gens(user("alice")),
            [1, 2],
            "the asker of a cluster change too"
        );
        assert_eq!(gens(user("1000")), [1, 2]);
        assert_eq!(gens(user("2000")), [3]);
        assert_eq!(
            gens(user("lb1")),
            Vec::<u64>::new(),
            "a coordinator is no user"
        );
        let verb = |v: &str| HistoryFilter {
            verb: Some(v.into()),
            ..HistoryFilter::default()
        };
        assert_eq!(gens(verb("rollback")), [1]);
        assert_eq!(gens(verb("switch")), [2, 3]);
        let window = HistoryFilter {
            since_ms: Some(2_000),
            until_ms: Some(3_000),
            ..HistoryFilter::default()
        };
        assert_eq!(gens(window), [2]);
        let both = HistoryFilter {
            service: Some("web".into()),
            user: Some("alice".into()),
            verb: Some("switch".into()),
            ..HistoryFilter::default()
        };
        assert_eq!(gens(both), [2]);
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
        use std::io::Write;
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.journal_path())
            .unwrap();
        f.write_all(b"{\"generation\": 6, \"ti").unwrap();
        let all = store.history(&HistoryFilter::default(), 100).unwrap();
        assert_eq!(
            all.iter().map(|e| e.generation).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let api = store
            .history(&HistoryFilter::service(Some("api")), 1)
            .unwrap();
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].generation, 4);
    }

    #[test]
    fn history_reads_backwards_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for g in 1..=40u64 {
            let mut e = entry(g, if g % 3 == 0 { "api" } else { "web" });
            // Lines longer than a read chunk, and short ones.
            e.message = "m".repeat(if g % 5 == 0 { 150_000 } else { 10 });
            store.append(&e).unwrap();
        }
        let gens = |v: Vec<JournalEntry>| v.iter().map(|e| e.generation).collect::<Vec<_>>();
        assert_eq!(
            gens(store.history(&HistoryFilter::default(), 3).unwrap()),
            [38, 39, 40]
        );
        assert_eq!(
            gens(
                store
                    .history(&HistoryFilter::service(Some("api")), 2)
                    .unwrap()
            ),
            [36, 39]
        );
        assert_eq!(
            store
                .history(&HistoryFilter::default(), 1000)
                .unwrap()
                .len(),
            40
        );
        assert_eq!(
            gens(store.history(&HistoryFilter::default(), 1000).unwrap())[..3],
            [1, 2, 3]
        );
        assert_eq!(store.last_generation(), Some(40));
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::super::tests::entry;
    use super::*;
    use crate::config::JournalLimits;

    #[test]
    fn history_reads_on_into_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())
            .unwrap()
            .with_journal_limits(JournalLimits {
                max_bytes: 64 * 1024,
                files: 2,
                ..JournalLimits::default()
            });
        let pad = "p".repeat(400);
        for gen in 1..=300 {
            store.append(&entry(gen, &pad)).unwrap();
        }
        assert!(bounds::rotated(&store.journal_path(), 1).exists());
        let got = store.history(&HistoryFilter::default(), 200).unwrap();
        assert_eq!(got.len(), 200);
        assert_eq!(got.first().unwrap().generation, 101);
        assert_eq!(got.last().unwrap().generation, 300);
    }
}

/// Fsyncs the journal at `path` ([`Store::journal_path`]; its data, nothing when there is
/// none yet). A free function, so the caller can run it off the agent's thread.
pub fn sync_journal_at(path: PathBuf) -> Result<(), StoreError> {
    match fs::File::open(&path) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|source| StoreError::Journal { path, source })
}

#[cfg(test)]
mod read_back_tests {
    use super::super::tests::entry;
    use super::*;

    /// The journal line of generation `gen` with a message of `pad` bytes (fixed time,
    /// so two lines of one `pad` have one length while `gen` keeps its number of digits).
    fn line(gen: u64, pad: usize) -> Vec<u8> {
        let mut e = entry(gen, "web");
        e.time_ms = 1_700_000_000_000;
        e.message = "m".repeat(pad);
        let mut line = serde_json::to_vec(&e).unwrap();
        line.push(b'\n');
        line
    }

    fn generations(store: &Store, limit: usize) -> Vec<u64> {
        let got = store.history(&HistoryFilter::default(), limit).unwrap();
        got.iter().map(|e| e.generation).collect()
    }

    #[test]
    fn every_line_is_read_whatever_byte_a_chunk_boundary_falls_on() {
        // Lines of one length, the newest longer by `shift`: over every shift the chunk
        // boundaries (counted from the end) fall once on every byte of a line, on its
        // newline and right after it included.
        let length = line(1000, 100).len();
        let count = 2 * READ_CHUNK as usize / length + 3;
        let want: Vec<u64> = (1000..1000 + count as u64).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for shift in 0..length {
            let mut journal = Vec::new();
            for &gen in &want[..count - 1] {
                journal.extend(line(gen, 100));
            }
            journal.extend(line(want[count - 1], 100 + shift));
            fs::write(store.journal_path(), &journal).unwrap();
            assert_eq!(generations(&store, usize::MAX), want, "shift {shift}");
            assert_eq!(generations(&store, 2), want[count - 2..], "shift {shift}");
        }
    }

    #[test]
    fn a_line_starting_where_the_tail_starts_is_read_one_cut_by_it_is_not() {
        // Lines 2..=65 fill exactly the tail `history` reads; line 1 lies before it.
        let big = 65_000;
        let body: usize = (2..65).map(|g| line(g, big).len()).sum();
        let last = HISTORY_TAIL_BYTES as usize - body - line(65, 0).len();
        let tail = |first_pad: usize| {
            let mut tail = line(2, big + first_pad);
            for gen in 3..65 {
                tail.extend(line(gen, big));
            }
            tail.extend(line(65, last));
            tail
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut journal = line(1, 10);
        journal.extend(tail(0));
        assert_eq!(
            journal.len() as u64 - line(1, 10).len() as u64,
            HISTORY_TAIL_BYTES
        );
        fs::write(store.journal_path(), &journal).unwrap();
        assert_eq!(generations(&store, 1000), (2..=65).collect::<Vec<_>>());
        // One byte longer: the tail starts one byte into line 2, which is left out.
        let mut journal = line(1, 10);
        journal.extend(tail(1));
        fs::write(store.journal_path(), &journal).unwrap();
        assert_eq!(generations(&store, 1000), (3..=65).collect::<Vec<_>>());
    }
}
