//! The count of Nginx reloads, which Nginx itself does not keep: per master, the times its
//! accepting workers were replaced as a whole (a reload starts new workers for the new
//! config and tells every old one to finish; a crashed worker is replaced alone).
//!
//! The agent counts each reload it confirms ([`ReloadCount::reloaded`]) and observes the
//! workers at each epoch read (every reconcile interval, [`ReloadCount::observe`]), so its
//! own reloads all count; two reloads by others within one interval count as one.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// What was seen last: the master, its reloads so far, its accepting workers.
#[derive(Debug, Default)]
pub struct ReloadCount(Mutex<Seen>);

#[derive(Debug, Default)]
struct Seen {
    master: u32,
    reloads: u64,
    workers: BTreeSet<u32>,
}

impl ReloadCount {
    /// Records the accepting `workers` of `master` and returns its reloads so far: one more
    /// when none of the workers seen last accepts any longer; 0 for a master not seen
    /// before (a start or a restart).
    pub fn observe(&self, master: u32, workers: &BTreeSet<u32>) -> u64 {
        let mut seen = self.0.lock().expect("not poisoned");
        if seen.master != master {
            *seen = Seen {
                master,
                reloads: 0,
                workers: workers.clone(),
            };
            return 0;
        }
        let replaced =
            !seen.workers.is_empty() && !workers.is_empty() && seen.workers.is_disjoint(workers);
        if replaced {
            seen.reloads += 1;
        }
        if !workers.is_empty() {
            seen.workers = workers.clone();
        }
        seen.reloads
    }

    /// Records a reload of `master` the agent confirmed, whose new workers are `workers`
    /// less `previous` (the workers told to finish: one may still have been accepting
    /// when the new ones were listed), and returns its reloads so far.
    pub fn reloaded(&self, master: u32, workers: &BTreeSet<u32>, previous: &BTreeSet<u32>) -> u64 {
        let mut seen = self.0.lock().expect("not poisoned");
        if seen.master != master {
            *seen = Seen {
                master,
                ..Seen::default()
            };
        }
        seen.reloads += 1;
        seen.workers = workers.difference(previous).copied().collect();
        seen.reloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pids: &[u32]) -> BTreeSet<u32> {
        pids.iter().copied().collect()
    }

    #[test]
    fn a_reload_replaces_every_worker_a_crash_one_and_a_restart_starts_again() {
        let count = ReloadCount::default();
        assert_eq!(count.observe(10, &set(&[11, 12])), 0);
        assert_eq!(count.observe(10, &set(&[11, 12])), 0, "nothing happened");
        assert_eq!(count.observe(10, &set(&[11, 13])), 0, "a crashed worker");
        assert_eq!(count.observe(10, &set(&[21, 22])), 1, "a reload");
        assert_eq!(count.observe(10, &set(&[])), 1, "no worker seen: unchanged");
        assert_eq!(count.observe(10, &set(&[31, 32])), 2, "another reload");
        assert_eq!(count.observe(40, &set(&[41, 42])), 0, "a new master");
    }

    #[test]
    fn a_confirmed_reload_counts_even_when_an_old_worker_was_listed_with_the_new() {
        let count = ReloadCount::default();
        assert_eq!(count.observe(10, &set(&[11, 12])), 0);
        // Listed as the new workers came up, while 12 was still accepting.
        assert_eq!(count.reloaded(10, &set(&[12, 21, 22]), &set(&[11, 12])), 1);
        assert_eq!(count.observe(10, &set(&[21, 22])), 1, "the same reload");
        assert_eq!(count.reloaded(10, &set(&[21, 31, 32]), &set(&[21, 22])), 2);
        assert_eq!(count.observe(10, &set(&[41, 42])), 3, "a reload by another");
    }
}
