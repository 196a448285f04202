//! The per-service difference between two states, and applying it.

use std::collections::BTreeSet;

use super::{ServiceChange, State};

/// The per-service differences between two states, in service-name order.
pub fn diff(old: &State, new: &State) -> Vec<ServiceChange> {
    let names: BTreeSet<&String> = old.services.keys().chain(new.services.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (o, n) = (old.services.get(name), new.services.get(name));
            (o != n).then(|| ServiceChange {
                service: name.clone(),
                from: o.cloned(),
                to: n.cloned(),
            })
        })
        .collect()
}

/// Applies a diff produced by [`diff`] to `state`.
pub fn apply_diff(state: &State, changes: &[ServiceChange]) -> State {
    let mut next = state.clone();
    for c in changes {
        match &c.to {
            None => {
                next.services.remove(&c.service);
            }
            Some(to) => {
                next.services.insert(c.service.clone(), to.clone());
            }
        }
    }
    next
}
