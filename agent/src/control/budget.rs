//! Who may hold how many connections of one server: a cap on all of them, and for the
//! control socket a budget per uid with slots kept free for the administrators, so that
//! one user who may open the socket cannot take every slot and lock root out.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Who is on a connection, as the kernel reports it when it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerId {
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

/// The per-user part of a server's bounds (the control socket's; peers and scrapers have
/// none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBudget {
    /// Most connections one uid may hold at once (administrators excepted).
    pub per_uid: usize,
    /// Connections only administrators may take: the last `reserved` of the cap.
    pub reserved: usize,
    /// Administrators besides uid 0 and the agent's own uid: these uids...
    pub admin_uids: BTreeSet<u32>,
    /// ...and the users whose primary group is one of these gids.
    pub admin_gids: BTreeSet<u32>,
}

impl PeerBudget {
    /// Whether `peer` is an administrator: uid 0, the agent's own uid, or listed.
    pub fn is_admin(&self, peer: PeerId) -> bool {
        peer.uid == 0
            || peer.uid == nix::unistd::geteuid().as_raw()
            || self.admin_uids.contains(&peer.uid)
            || self.admin_gids.contains(&peer.gid)
    }
}

/// Why a connection was refused, in words for its peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every slot is taken.
    #[error("too many {name} connections (at most {max}); try again")]
    Full {
        /// The server (`control`, `peer`, `metrics`).
        name: &'static str,
        /// Its cap.
        max: usize,
    },
    /// The peer's uid holds its whole budget.
    #[error("too many {name} connections from uid {uid} (at most {per_uid} per user); try again")]
    PerUid {
        /// The server.
        name: &'static str,
        /// The peer's uid.
        uid: u32,
        /// The budget of one uid.
        per_uid: usize,
    },
    /// Only the reserved slots are left, and the peer is not an administrator.
    #[error(
        "too many {name} connections ({open} open; the last {reserved} are kept for root and the admins); try again"
    )]
    Reserved {
        /// The server.
        name: &'static str,
        /// Connections open now.
        open: usize,
        /// Slots kept for administrators.
        reserved: usize,
    },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// The open connections of one server, counted against its bounds.
#[derive(Debug, Clone)]
pub struct Ledger {
    name: &'static str,
    max: usize,
    budget: Option<PeerBudget>,
    counts: Arc<Mutex<Counts>>,
}

/// A slot held by one connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Ticket {
    counts: Arc<Mutex<Counts>>,
    uid: Option<u32>,
}

impl Ledger {
    /// A ledger of `max` connections for the server `name`, with an optional per-user
    /// budget.
    pub fn new(name: &'static str, max: usize, budget: Option<PeerBudget>) -> Ledger {
        Ledger {
            name,
            max,
            budget,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for a connection of `peer` (`None`: a peer the listener cannot name).
    pub fn admit(&self, peer: Option<PeerId>) -> Result<Ticket, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let name = self.name;
        if counts.total >= self.max {
            return Err(Refusal::Full {
                name,
                max: self.max,
            });
        }
        let mut uid = None;
        if let (Some(budget), Some(peer)) = (&self.budget, peer) {
            if !budget.is_admin(peer) {
                let mine = counts.by_uid.get(&peer.uid).copied().unwrap_or(0);
                if mine >= budget.per_uid {
                    return Err(Refusal::PerUid {
                        name,
                        uid: peer.uid,
                        per_uid: budget.per_uid,
                    });
                }
                if counts.total + budget.reserved >= self.max {
                    return Err(Refusal::Reserved {
                        name,
                        open: counts.total,
                        reserved: budget.reserved,
                    });
                }
            }
            *counts.by_uid.entry(peer.uid).or_default() += 1;
            uid = Some(peer.uid);
        }
        counts.total += 1;
        Ok(Ticket {
            counts: self.counts.clone(),
            uid,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(uid) = self.uid {
            if let Some(n) = counts.by_uid.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    counts.by_uid.remove(&uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> PeerBudget {
        PeerBudget {
            per_uid: 2,
            reserved: 1,
            admin_uids: BTreeSet::new(),
            admin_gids: [50].into(),
        }
    }

    // Uids that are neither root nor the test's own.
    fn user(uid: u32) -> Option<PeerId> {
        Some(PeerId {
            uid: 60_000 + uid,
            gid: 60_000,
        })
    }

    #[test]
    fn one_user_cannot_take_every_slot() {
        let ledger = Ledger::new("control", 4, Some(budget()));
        let a1 = ledger.admit(user(1)).unwrap();
        let _a2 = ledger.admit(user(1)).unwrap();
        assert_eq!(
            ledger.admit(user(1)).unwrap_err().to_string(),
            "too many control connections from uid 60001 (at most 2 per user); try again"
        );
        let _b = ledger.admit(user(2)).unwrap();
        // One slot left, kept for administrators.
        assert!(matches!(
            ledger.admit(user(3)),
            Err(Refusal::Reserved { open: 3, .. })
        ));
        let root = ledger.admit(Some(PeerId { uid: 0, gid: 0 })).unwrap();
        assert!(matches!(
            ledger.admit(Some(PeerId { uid: 1, gid: 50 })),
            Err(Refusal::Full { max: 4, .. })
        ));
        drop(root);
        // The admin group counts as administrators.
        let _admin = ledger.admit(Some(PeerId { uid: 1, gid: 50 })).unwrap();
        drop(a1);
        assert!(matches!(
            ledger.admit(user(1)),
            Err(Refusal::Reserved { .. })
        ));
    }

    #[test]
    fn slots_come_back_when_tickets_drop() {
        let ledger = Ledger::new("peer", 1, None);
        let t = ledger.admit(None).unwrap();
        assert_eq!(
            ledger.admit(None).unwrap_err().to_string(),
            "too many peer connections (at most 1); try again"
        );
        drop(t);
        assert!(ledger.admit(None).is_ok());
    }
}
