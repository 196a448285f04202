//! The state file and the recovery of the state directory after an interrupted run.

use super::*;
use crate::protocol::Colour;
use std::io::Write;

pub(super) fn entry(gen: u64, service: &str) -> JournalEntry {
    JournalEntry::new(
        gen,
        Requester::default(),
        serde_json::json!({"cmd": "switch", "service": service}),
        Outcome::Ok,
        String::new(),
        serde_json::Value::Null,
    )
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

fn saved(store: &Store, generations: &[u64]) -> State {
    let mut s = State::new([("web", Colour::Blue)]);
    for &g in generations {
        s.generation = g;
        store.save(&s).unwrap();
        store.append(&entry(g, "web")).unwrap();
    }
    s
}

#[test]
fn recover_falls_back_to_the_previous_state_with_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    saved(&store, &[1, 2]);
    // Power loss: the newest state file is cut short.
    fs::write(
        store.state_path(),
        b"{\"format\": 1, \"generation\": 2, \"serv",
    )
    .unwrap();
    let rec = store.recover().unwrap();
    let state = rec.state.unwrap();
    assert_eq!(state.generation, 3, "never reuses a journaled generation");
    assert_eq!(rec.notes.len(), 1, "{:?}", rec.notes);
    assert!(
        rec.notes[0].contains("fell back to its previous version and the state log (generation 1)")
    );
    assert_eq!(store.load().unwrap().state.unwrap(), state);
    // The good previous version survived; the unusable file is kept aside.
    let prev: State =
        serde_json::from_slice(&fs::read(previous_path(&store.state_path())).unwrap()).unwrap();
    assert_eq!(prev.generation, 1);
    let corrupt = dir.path().join("state.json.corrupt");
    assert!(fs::read_to_string(corrupt).unwrap().contains("\"serv"));
    // A second start finds nothing to repair but the journal gap of the recovery itself.
    assert!(store.recover().unwrap().notes[0].contains("has no journal line"));
}

#[test]
fn recover_refuses_to_guess_when_both_versions_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    saved(&store, &[1, 2]);
    fs::remove_file(store.state_path()).unwrap();
    // Missing with a previous version beside it: not a first start.
    let rec = store.recover().unwrap();
    assert_eq!(rec.state.unwrap().generation, 3);
    fs::write(store.state_path(), b"").unwrap();
    fs::write(previous_path(&store.state_path()), b"\0\0\0").unwrap();
    assert!(matches!(store.recover(), Err(StoreError::Corrupt { .. })));
}

#[test]
fn recover_cuts_a_torn_or_zeroed_journal_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    saved(&store, &[1, 2]);
    let good = fs::read(store.journal_path()).unwrap();
    for junk in [
        &b"{\"generation\": 3, \"ti"[..],
        b"\0\0\0\0\n\0\0",
        b"garbage\n",
    ] {
        let mut f = OpenOptions::new()
            .append(true)
            .open(store.journal_path())
            .unwrap();
        f.write_all(junk).unwrap();
        let rec = store.recover().unwrap();
        assert_eq!(rec.notes.len(), 1, "{:?}", rec.notes);
        assert!(rec.notes[0].contains(&format!("{} byte(s)", junk.len())));
        assert_eq!(fs::read(store.journal_path()).unwrap(), good);
        assert_eq!(
            fs::read(dir.path().join("history.jsonl.torn")).unwrap(),
            junk
        );
    }
    // The next entry starts on a line of its own.
    store.append(&entry(3, "web")).unwrap();
    assert_eq!(
        store.history(&HistoryFilter::default(), 10).unwrap().len(),
        3
    );
    assert!(store.recover().unwrap().notes.is_empty());
}

#[test]
fn recover_notices_a_change_that_was_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut s = saved(&store, &[1]);
    s.generation = 2;
    store.save(&s).unwrap();
    let rec = store.recover().unwrap();
    assert_eq!(rec.state.unwrap().generation, 2);
    assert!(
        rec.notes[0].contains("generation 2 has no journal line"),
        "{:?}",
        rec.notes
    );
}

#[test]
fn lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let held = store.lock().unwrap();
    assert!(matches!(store.lock(), Err(StoreError::Locked { .. })));
    drop(held);
    store.lock().unwrap();
}

#[test]
fn committed_states_load_from_the_log_until_a_checkpoint_folds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut s = State::new([("web", Colour::Blue)]);
    s.generation = 1;
    store.save(&s).unwrap();
    for g in 2..=4 {
        s.generation = g;
        store.commit(&s).unwrap();
    }
    // The checkpoint is older; the log's last line is the state.
    assert_eq!(store.load().unwrap().state.unwrap().generation, 4);
    let checkpoint: State = serde_json::from_slice(&fs::read(store.state_path()).unwrap()).unwrap();
    assert_eq!(checkpoint.generation, 1);
    // A line cut short by a crash does not count; the one before it does.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(store.log_path())
        .unwrap();
    f.write_all(b"{\"generation\": 5, \"serv").unwrap();
    assert_eq!(store.load().unwrap().state.unwrap().generation, 4);
    // Recovery folds the log into the checkpoint and starts a clean log.
    let rec = store.recover().unwrap();
    assert_eq!(rec.state.unwrap().generation, 4);
    assert_eq!(store.log_len(), 0);
    let checkpoint: State = serde_json::from_slice(&fs::read(store.state_path()).unwrap()).unwrap();
    assert_eq!(checkpoint.generation, 4);
    // A log line older than the checkpoint (a truncation a power loss undid) is ignored.
    let mut old = checkpoint.clone();
    old.generation = 3;
    old.services.get_mut("web").unwrap().live = Colour::Green;
    store.commit(&old).unwrap();
    assert_eq!(store.load().unwrap().state.unwrap(), checkpoint);
}

#[test]
fn a_torn_checkpoint_falls_back_to_its_previous_version_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut s = State::new([("web", Colour::Blue)]);
    store.save(&s).unwrap();
    s.generation = 2;
    store.save(&s).unwrap();
    s.generation = 3;
    store.commit(&s).unwrap();
    fs::write(store.state_path(), b"{\"generation\": 2, \"serv").unwrap();
    let loaded = store.load().unwrap();
    assert!(loaded.recovered_from.is_some());
    assert_eq!(loaded.state.unwrap().generation, 3);
}
