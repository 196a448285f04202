//! The trees the proxy's checker passed, remembered by their content: a switch back to a
//! colour that was checked a moment ago (every managed file as the checker would read it,
//! byte for byte the same) takes the checker's earlier verdict instead of running it again
//! (`nginx -T` costs tens of milliseconds on every Nginx switch). A verdict is kept for
//! [`CHECKED_FOR`], so an edited include or an upgraded proxy binary is checked again
//! within minutes (and a reload that would fail is still caught and undone by the
//! reload's own confirmation); a config reload forgets them all. Only refusals are never
//! remembered.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proxy::CheckReport;

/// Most verdicts kept (a flip goes between two trees).
pub const CHECKED_KEPT: usize = 4;
/// How long a verdict is used.
pub const CHECKED_FOR: Duration = Duration::from_secs(600);
/// Trees larger than this (all their files together, bytes) are not remembered: their
/// content would stay in memory.
pub const CHECKED_MAX_BYTES: usize = 1024 * 1024;

/// Every managed file's content as the checker reads it, by file name.
pub(super) type Tree = BTreeMap<String, Arc<str>>;

/// The verdicts kept, newest last.
#[derive(Debug, Default)]
pub(super) struct Checked {
    verdicts: Mutex<VecDeque<(Tree, CheckReport, Instant)>>,
}

impl Checked {
    /// The checker's verdict on `tree`, if it passed it within [`CHECKED_FOR`].
    pub(super) fn get(&self, tree: &Tree) -> Option<CheckReport> {
        let mut verdicts = self.verdicts.lock().ok()?;
        verdicts.retain(|(_, _, at)| at.elapsed() < CHECKED_FOR);
        verdicts
            .iter()
            .find(|(t, _, _)| same(t, tree))
            .map(|(_, report, _)| report.clone())
    }

    /// Remembers that the checker passed `tree` (unless it is too large).
    pub(super) fn put(&self, tree: Tree, report: &CheckReport) {
        if tree.values().map(|t| t.len()).sum::<usize>() > CHECKED_MAX_BYTES {
            return;
        }
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.retain(|(t, _, _)| !same(t, &tree));
            if verdicts.len() == CHECKED_KEPT {
                verdicts.pop_front();
            }
            verdicts.push_back((tree, report.clone(), Instant::now()));
        }
    }

    /// Forgets every verdict.
    pub(super) fn clear(&self) {
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.clear();
        }
    }
}

/// The same files with the same content.
fn same(a: &Tree, b: &Tree) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((n, x), (m, y))| n == m && (Arc::ptr_eq(x, y) || x == y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(services: &str) -> Tree {
        [("nginx", "events {}"), ("services", services)]
            .into_iter()
            .map(|(n, t)| (n.to_owned(), Arc::from(t)))
            .collect()
    }

    #[test]
    fn a_tree_is_known_by_its_content_and_only_the_newest_are_kept() {
        let checked = Checked::default();
        let report = CheckReport {
            warnings: vec!["w".into()],
            ..CheckReport::default()
        };
        assert!(checked.get(&tree("web web_blue")).is_none());
        checked.put(tree("web web_blue"), &report);
        assert_eq!(
            checked.get(&tree("web web_blue")).map(|r| r.warnings),
            Some(vec!["w".to_owned()])
        );
        assert!(checked.get(&tree("web web_green")).is_none());
        for i in 0..CHECKED_KEPT {
            checked.put(tree(&format!("web web_{i}")), &report);
        }
        assert!(
            checked.get(&tree("web web_blue")).is_none(),
            "the oldest went"
        );
        assert!(checked.get(&tree("web web_0")).is_some());
        checked.clear();
        assert!(checked.get(&tree("web web_0")).is_none());
        let big = "x".repeat(CHECKED_MAX_BYTES + 1);
        checked.put(tree(&big), &report);
        assert!(checked.get(&tree(&big)).is_none(), "too large to keep");
    }
}
