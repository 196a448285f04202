//! What the user database said of the control socket's peers, kept for [`TTL`]: a burst of
//! requests from one user looks it up once, and each of them goes to the engine without a
//! hop through the blocking pool (which also kept the requests of one client in the order
//! it sent them: lookups that finish out of order reorder their connections).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::requester::Names;

/// How long a lookup is taken as the user database's answer: a change of a user's groups
/// or names reaches the access check and the journal within this time (5 seconds).
pub const TTL: Duration = Duration::from_secs(5);

/// Most peers remembered at once; past it, what expired is dropped, or else everything.
const MAX_PEERS: usize = 64;

/// A peer as the lookup saw it: uid, primary gid, and whether its groups were looked up.
pub type Peer = (Option<u32>, Option<u32>, bool);

/// The recent lookups, shared by the connections of one listener.
#[derive(Debug, Clone, Default)]
pub struct Lookups(Arc<Mutex<HashMap<Peer, Found>>>);

#[derive(Debug, Clone)]
struct Found {
    at: Instant,
    groups: Vec<u32>,
    names: Names,
}

impl Lookups {
    /// The groups and names found for `peer` within [`TTL`], if any.
    pub fn recent(&self, peer: Peer) -> Option<(Vec<u32>, Names)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let found = map.get(&peer).filter(|f| f.at.elapsed() < TTL)?;
        Some((found.groups.clone(), found.names.clone()))
    }

    /// Remembers what the user database answered for `peer`.
    pub fn found(&self, peer: Peer, groups: Vec<u32>, names: Names) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_PEERS {
            map.retain(|_, f| f.at.elapsed() < TTL);
            if map.len() >= MAX_PEERS {
                map.clear();
            }
        }
        let at = Instant::now();
        map.insert(peer, Found { at, groups, names });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_is_kept_per_peer_and_bounded() {
        let lookups = Lookups::default();
        let names = Names {
            user: Some("ops".into()),
            group: None,
        };
        assert_eq!(lookups.recent((Some(1), Some(1), true)), None);
        lookups.found((Some(1), Some(1), true), vec![4, 27], names.clone());
        assert_eq!(
            lookups.recent((Some(1), Some(1), true)),
            Some((vec![4, 27], names))
        );
        // Without groups looked up, it is another peer.
        assert_eq!(lookups.recent((Some(1), Some(1), false)), None);
        for uid in 0..(MAX_PEERS as u32 + 10) {
            lookups.found((Some(uid + 100), None, false), vec![], Names::default());
        }
        assert!(lookups.0.lock().unwrap().len() <= MAX_PEERS);
    }
}
