//! Bounds of the history journal: what a refused request may record (each string cut to
//! [`MAX_REFUSED_FIELD`] bytes, lists to [`MAX_REFUSED_ITEMS`] items, the message to
//! [`MAX_REFUSED_MESSAGE`] bytes), identical refusals in a row counted instead of written,
//! and the rotation of the journal by size with its rotated files expiring by age
//! ([`JournalLimits`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{json, Value};

use super::{JournalEntry, Outcome};
use crate::config::JournalLimits;

/// Longest string of a refused request kept in the journal, bytes.
pub const MAX_REFUSED_FIELD: usize = 256;
/// Most items of a list (or keys of an object) of a refused request kept in the journal.
pub const MAX_REFUSED_ITEMS: usize = 16;
/// Longest message of a refused request kept in the journal, bytes.
pub const MAX_REFUSED_MESSAGE: usize = 512;
/// Longest run of identical refusals summed up in one journal line, milliseconds: a run
/// that goes on longer gets a line per this much time.
pub const REPEAT_WINDOW_MS: u64 = 60_000;
/// Most identical refusals summed up in one journal line.
pub const MAX_REPEATS: u64 = 100_000;

/// `s` cut to at most `max` bytes (on a character boundary), saying how much was cut.
fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("...(+{dropped} bytes)"));
    true
}

/// Cuts every string, list and object of `v` to the bounds above; `true` when anything was
/// cut. Nesting is bounded by the request decoder (serde_json's recursion limit).
fn cut_value(v: &mut Value) -> bool {
    match v {
        Value::String(s) => cut(s, MAX_REFUSED_FIELD),
        Value::Array(a) => {
            let mut cutting = a.len() > MAX_REFUSED_ITEMS;
            a.truncate(MAX_REFUSED_ITEMS);
            for item in a.iter_mut() {
                cutting |= cut_value(item);
            }
            cutting
        }
        Value::Object(o) => {
            let mut cutting = o.len() > MAX_REFUSED_ITEMS;
            while o.len() > MAX_REFUSED_ITEMS {
                let last = o.keys().next_back().cloned().expect("non-empty");
                o.remove(&last);
            }
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if k.len() > MAX_REFUSED_FIELD {
                    let mut short = k.clone();
                    cut(&mut short, MAX_REFUSED_FIELD);
                    let value = o.remove(&k).expect("key listed");
                    o.insert(short, value);
                    cutting = true;
                }
            }
            for item in o.values_mut() {
                cutting |= cut_value(item);
            }
            cutting
        }
        _ => false,
    }
}

/// A refused request as the journal may record it: its request and message cut to the
/// bounds above, `data.truncated` set when anything was cut.
pub fn capped(mut entry: JournalEntry) -> JournalEntry {
    if entry.result != Outcome::Error {
        return entry;
    }
    let cutting = cut_value(&mut entry.request) | cut(&mut entry.message, MAX_REFUSED_MESSAGE);
    if cutting {
        match &mut entry.data {
            Value::Object(o) => {
                o.insert("truncated".into(), Value::Bool(true));
            }
            other => *other = json!({ "truncated": true }),
        }
    }
    entry
}

/// The run of identical refusals the journal is counting instead of writing.
#[derive(Debug, Default)]
pub struct Repeats {
    /// The first refusal of the run, as written.
    first: Option<JournalEntry>,
    /// What makes a refusal identical: requester (its pid aside), request, message.
    key: Option<String>,
    /// Refusals of the run not written yet.
    count: u64,
}

/// What a refusal is compared by.
fn repeat_key(entry: &JournalEntry) -> String {
    let mut who = serde_json::to_value(&entry.requester).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut who {
        o.remove("pid");
    }
    json!([who, entry.request, entry.message]).to_string()
}

impl Repeats {
    /// Whether `entry` (capped) only adds to the current run: then it is not written.
    /// Otherwise returns the line summing up the run that ends (if any refusal of it was
    /// not written), and `entry` starts a new run when it is a refusal.
    pub fn admit(&mut self, entry: &JournalEntry) -> Admit {
        let key = (entry.result == Outcome::Error).then(|| repeat_key(entry));
        if let (Some(k), Some(first)) = (&key, &self.first) {
            let within = entry.time_ms.saturating_sub(first.time_ms) < REPEAT_WINDOW_MS;
            if self.key.as_ref() == Some(k) && within && self.count < MAX_REPEATS {
                self.count += 1;
                return Admit::Counted;
            }
        }
        let summary = self.summary(entry.time_ms);
        self.first = key.is_some().then(|| entry.clone());
        self.key = key;
        self.count = 0;
        Admit::Write {
            summary: summary.map(Box::new),
        }
    }

    /// The line that sums up the counted refusals, and the count starts again.
    fn summary(&mut self, now_ms: u64) -> Option<JournalEntry> {
        let first = self.first.as_ref()?;
        if self.count == 0 {
            return None;
        }
        let mut line = first.clone();
        line.message = format!(
            "the same refusal {} more time(s) over {} ms: {}",
            self.count,
            now_ms.saturating_sub(first.time_ms),
            first.message
        );
        if let Value::Object(o) = &mut line.data {
            o.insert("repeats".into(), json!(self.count));
        }
        line.time_ms = now_ms;
        self.count = 0;
        Some(line)
    }
}

/// What to do with one journal entry.
#[derive(Debug)]
pub enum Admit {
    /// Counted in a run of identical refusals; nothing to write.
    Counted,
    /// Write it, after the line summing up the run it ends, if any.
    Write {
        /// The summary of the run that ends (boxed: an entry is large beside `Counted`).
        summary: Option<Box<JournalEntry>>,
    },
}

/// The `n`th rotated journal beside `journal` (`history.jsonl.1` is the newest).
pub fn rotated(journal: &Path, n: u32) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates `journal` when adding `adding` bytes would take it past `limits.max_bytes`:
/// `history.jsonl.N` goes, each `.i` becomes `.i+1`, the journal becomes `.1`; then
/// rotated files older than `limits.max_age` are removed. `true` when it rotated.
pub fn rotate_if_full(journal: &Path, adding: u64, limits: &JournalLimits) -> io::Result<bool> {
    let len = match fs::metadata(journal) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len == 0 || len + adding <= limits.max_bytes {
        return Ok(false);
    }
    let _ = fs::remove_file(rotated(journal, limits.files));
    for i in (1..limits.files).rev() {
        match fs::rename(rotated(journal, i), rotated(journal, i + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    fs::rename(journal, rotated(journal, 1))?;
    if let Some(dir) = journal.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    expire(journal, limits);
    Ok(true)
}

/// Removes the rotated journals last written longer ago than `limits.max_age`.
fn expire(journal: &Path, limits: &JournalLimits) {
    let now = SystemTime::now();
    for i in 1..=limits.files {
        let path = rotated(journal, i);
        let old = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > limits.max_age);
        if old {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::entry;
    use std::time::Duration;

    fn refused(service: &str, time_ms: u64) -> JournalEntry {
        let mut e = entry(1, "web");
        e.result = Outcome::Error;
        e.request = json!({ "op": "switch", "service": service, "colour": "green" });
        e.message = format!("unknown service {service:?}");
        e.time_ms = time_ms;
        e.data = json!({ "step": "state" });
        e
    }

    #[test]
    fn a_refused_request_is_cut_to_its_bounds() {
        let long = "x".repeat(60_000);
        let e = capped(refused(&long, 0));
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.len() < 2 * 1024, "{} bytes", line.len());
        assert_eq!(e.data["truncated"], true);
        assert!(e.request["service"]
            .as_str()
            .unwrap()
            .ends_with("...(+59744 bytes)"));
        // An applied change is never cut.
        let mut ok = refused(&long, 0);
        ok.result = Outcome::Ok;
        assert_eq!(capped(ok.clone()), ok);
    }

    #[test]
    fn identical_refusals_are_counted_then_summed_up() {
        let mut r = Repeats::default();
        assert!(matches!(
            r.admit(&refused("a", 0)),
            Admit::Write { summary: None }
        ));
        for t in 1..=5 {
            assert!(matches!(r.admit(&refused("a", t)), Admit::Counted));
        }
        // A different refusal ends the run: the summary comes first.
        match r.admit(&refused("b", 10)) {
            Admit::Write {
                summary: Some(line),
            } => {
                assert_eq!(line.data["repeats"], 5);
                assert!(line.message.starts_with("the same refusal 5 more time(s)"));
            }
            a => panic!("{a:?}"),
        }
        // A run longer than the window gets a line per window.
        assert!(matches!(r.admit(&refused("b", 20)), Admit::Counted));
        assert!(matches!(
            r.admit(&refused("b", 10 + REPEAT_WINDOW_MS)),
            Admit::Write { summary: Some(_) }
        ));
    }

    #[test]
    fn the_journal_rotates_by_size_and_keeps_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("history.jsonl");
        let limits = JournalLimits {
            max_bytes: 100,
            files: 2,
            max_age: Duration::from_secs(3600),
        };
        assert!(!rotate_if_full(&journal, 10, &limits).unwrap());
        for round in 0..4 {
            fs::write(&journal, format!("{round}").repeat(95)).unwrap();
            assert!(rotate_if_full(&journal, 10, &limits).unwrap());
        }
        assert!(!journal.exists());
        assert!(fs::read_to_string(rotated(&journal, 1))
            .unwrap()
            .starts_with('3'));
        assert!(fs::read_to_string(rotated(&journal, 2))
            .unwrap()
            .starts_with('2'));
        assert!(!rotated(&journal, 3).exists());
        // Expired by age.
        let none = JournalLimits {
            max_age: Duration::ZERO,
            ..limits
        };
        fs::write(&journal, "4".repeat(95)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(rotate_if_full(&journal, 10, &none).unwrap());
        assert!(!rotated(&journal, 2).exists());
    }
}
