//! Plans: what a change would do (state change, gates, files and how each would reach the
//! proxy, server drains), described from the same admission and the same planned files as
//! a real change, stopped before anything is written. Nothing live changes and nothing is
//! journaled.

use std::collections::BTreeMap;

use super::admit::Admitted;
use super::files::Prepared;
use super::Engine;
use crate::mapfile::MapDiff;
use crate::protocol::Colour;
use crate::protocol::{LineChanges, Plan, PlannedFile};
use crate::proxy::{MapMechanism, Proxy};
use crate::state::State;

/// Most map entries a plan lists per kind of edit (the counts are always complete).
pub const PLAN_MAX_ENTRIES: usize = 100;

/// The lines of `old` not in `new` and of `new` not in `old` (as multisets).
fn line_changes(old: &str, new: &str) -> LineChanges {
    fn count(t: &str) -> BTreeMap<&str, isize> {
        let mut m: BTreeMap<&str, isize> = BTreeMap::new();
        for l in t.lines() {
            *m.entry(l).or_default() += 1;
        }
        m
    }
    let (o, n) = (count(old), count(new));
    let mut c = LineChanges::default();
    for (line, k) in &o {
        let gone = k - n.get(line).copied().unwrap_or(0);
        if gone > 0 {
            c.removed += gone as usize;
            if c.first_removed.len() < 20 {
                c.first_removed.push((*line).to_owned());
            }
        }
    }
    for (line, k) in &n {
        let came = k - o.get(line).copied().unwrap_or(0);
        if came > 0 {
            c.added += came as usize;
            if c.first_added.len() < 20 {
                c.first_added.push((*line).to_owned());
            }
        }
    }
    c
}

impl<P: Proxy> Engine<P> {
    /// Describes an admitted change whose files were planned: nothing has been written.
    pub(super) fn describe(&self, admitted: Admitted, prepared: Option<Prepared<'_>>) -> Plan {
        let Some(prepared) = prepared else {
            return Plan {
                generation: self.state.generation,
                services: vec![],
                gates: vec![],
                files: vec![],
                validated_by_proxy: false,
                servers: vec![],
            };
        };
        let files = prepared
            .pending
            .iter()
            .map(|p| {
                let (added, changed, removed) = match &p.entries {
                    Some(new) => {
                        let old = self.syntax().parse(&p.old).unwrap_or_default();
                        let d = MapDiff::between(&old, new);
                        (d.added, d.changed, d.removed)
                    }
                    None => (vec![], vec![], vec![]),
                };
                let edits = added.len() + changed.len() + removed.len();
                let mechanism = if prepared.structural {
                    "reload"
                } else {
                    match self.proxy.map_mechanism(edits) {
                        MapMechanism::PerKey => "runtime per key",
                        MapMechanism::Transaction => "runtime transaction",
                        MapMechanism::Unchanged => "unchanged",
                    }
                };
                PlannedFile {
                    name: p.spec.name.clone(),
                    path: p.spec.path.clone(),
                    kind: p.spec.kind,
                    mechanism: mechanism.into(),
                    added: added.into_iter().take(PLAN_MAX_ENTRIES).collect(),
                    changed: changed.into_iter().take(PLAN_MAX_ENTRIES).collect(),
                    removed: removed.into_iter().take(PLAN_MAX_ENTRIES).collect(),
                    edits,
                    lines: line_changes(&p.old, &p.new),
                }
            })
            .collect();
        Plan {
            generation: admitted.next.generation,
            services: crate::state::diff(&self.state, &admitted.next),
            servers: self.drain_changes(&admitted.next),
            gates: admitted.gates,
            files,
            validated_by_proxy: prepared.validated_by_proxy,
        }
    }

    /// The server drains and undrains that `next` would make, as `drain <backend>` and
    /// `undrain <backend>`.
    fn drain_changes(&self, next: &State) -> Vec<String> {
        let mut servers = Vec::new();
        for (name, s) in &next.services {
            let before = &self.state.services[name];
            for colour in Colour::ALL {
                let (had, want) = (
                    before.drained.contains(&colour),
                    s.drained.contains(&colour),
                );
                if had != want {
                    let backend = &self.config.services[name].colours[&colour].backend;
                    servers.push(format!(
                        "{} {backend}",
                        if want { "drain" } else { "undrain" }
                    ));
                }
            }
        }
        servers
    }
}
