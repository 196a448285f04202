//! The count of Nginx reloads, which Nginx itself does not keep: per master, the times its
//! accepting workers were replaced as a whole (a reload starts new workers for the new
//! config and tells every old one to finish; a crashed worker is replaced alone).
//!
//! The agent observes the workers after each reload it confirms and at each epoch read
//! (every reconcile interval), so its own reloads all count; two reloads by others within
//! one interval count as one.

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
}
