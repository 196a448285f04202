//! Who may do what: the peer-credential allowlists of `[agent]` for the control socket, and
//! the one access check every request passes ([`Policy::check`]).
//!
//! The socket's mode (0660 by default) and group decide who can connect at all. On top of
//! that, each request is checked against the peer credentials the kernel reported for the
//! connection (`SO_PEERCRED`: uid, primary gid, pid), before the engine sees it:
//!
//! - root (uid 0) and the agent's own uid may do everything;
//! - a mutating command ([`needs_mutate`]: everything that changes routing, here or across
//!   the cluster) needs the uid in `allow_uids` or a group in `allow_gids`;
//! - a read-only command (`status`, `map_show`, `history`, `metrics`, `cluster_status`)
//!   needs that, or the uid in `read_uids` or a group in `read_gids`;
//! - an empty pair of lists means "whoever can open the socket": no `allow_*` lists, anyone
//!   who can connect may mutate; no `read_*` lists, anyone who can connect may read.
//!
//! The config's lists take numbers or names; names are resolved to numbers when the config
//! is validated, so the check compares numbers. A group matches when it is the peer's
//! primary gid or one of the groups the user database lists for the peer's uid (looked up
//! when the connection opens). Every refusal is
//! journaled with the uid and pid and answered with an error naming them. The lists apply
//! to the unix socket ([`Requester::Local`]); the agent's own requests (cluster
//! coordination, the desired-state file) are its own ([`Requester::Agent`]).
//!
//! Certificate holders (the remote API, [`Requester::Remote`], and the JSON-lines peer
//! listener, [`Requester::Peer`]) are judged by [`Remote`]: a listed peer of `[cluster]`
//! keeps the peer's role for cluster traffic (everything); any other certificate needs a
//! [`Role`] in `[[remote.clients]]` for one of its identities (SAN DNS names and URIs):
//! `read` for the queries, `operate` for the routing verbs, `admin` for `apply`
//! ([`role_needed`]). A refusal names the identity, the role it has and the role needed.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{Command, Request};
use crate::requester::{Identity, Reason, Requester};

/// The allowlists, as validated from the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Uids that may run mutating (and read-only) commands.
    pub allow_uids: BTreeSet<u32>,
    /// Gids whose members may run mutating (and read-only) commands.
    pub allow_gids: BTreeSet<u32>,
    /// Uids that may run read-only commands.
    pub read_uids: BTreeSet<u32>,
    /// Gids whose members may run read-only commands.
    pub read_gids: BTreeSet<u32>,
    /// Roles of certificate holders.
    pub remote: Remote,
}

/// What a certificate holder may do, least to most.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `status`, `history`, `map show`, `metrics`, the remote API's `Watch`.
    Read,
    /// `read`, and the routing verbs (switch, canary, promote, abort, rollback, drain,
    /// undrain) and their dry runs.
    Operate,
    /// `operate`, and `apply` (a declaration of any number of services).
    Admin,
}

impl Role {
    /// The role as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }
}

/// The roles of certificate holders: `[[remote.clients]]`, and the peers of `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// Identity to role.
    pub clients: BTreeMap<Identity, Role>,
    /// The node names of the listed peers (`[[cluster.peers]]`).
    pub peers: BTreeSet<String>,
}

impl Remote {
    /// The highest role any of `names` has; none when no name is listed.
    pub fn role_of<'a>(&self, names: impl IntoIterator<Item = &'a Identity>) -> Option<Role> {
        names
            .into_iter()
            .filter_map(|n| self.clients.get(n).copied())
            .max()
    }

    /// Whether a certificate holder with `names` may run `command`: the rule that refuses
    /// it, naming the identity, its role and the role needed.
    fn check(&self, names: &[Identity], command: &Command) -> Result<(), String> {
        let need = role_needed(command);
        let shown = || match names.first() {
            Some(first) => first.to_string(),
            None => "a certificate without DNS or URI names".to_owned(),
        };
        match self.role_of(names) {
            Some(role) if role >= need => Ok(()),
            Some(role) => Err(format!(
                "{} has role {} and {} needs role {}",
                shown(),
                role.as_str(),
                command.verb(),
                need.as_str()
            )),
            None => Err(format!(
                "{} has no role ([[remote.clients]] lists none of its identities) and {} \
                 needs role {}",
                shown(),
                command.verb(),
                need.as_str()
            )),
        }
    }
}

/// The role a certificate holder needs for `command`: `read` for the queries, `operate`
/// for a routing change (dry run included), `admin` for `apply`, a config reload and a
/// step of a cluster change (which only peers may send anyway); a `cluster` command needs
/// what its change needs.
pub fn role_needed(command: &Command) -> Role {
    match command {
        Command::Status
        | Command::ClusterStatus
        | Command::MapShow { .. }
        | Command::History { .. }
        | Command::Metrics => Role::Read,
        Command::Change(m) if matches!(m.request, Request::Set { .. }) => Role::Admin,
        Command::Change(_) => Role::Operate,
        Command::Cluster { command } => role_needed(command),
        Command::ReloadConfig
        | Command::Report { .. }
        | Command::Prepare { .. }
        | Command::Ready { .. }
        | Command::Commit { .. }
        | Command::AbortTxn { .. } => Role::Admin,
    }
}

/// A refused request: who, what, and which lists would have let it through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{who} may not {verb}: {rule}")]
pub struct Denied {
    /// Who asked, as in messages: `uid 1000 (gid 1000, pid 4242)`.
    pub who: String,
    /// The verb refused.
    pub verb: &'static str,
    /// The rule that refuses it.
    pub rule: String,
}

impl Policy {
    /// Problems with the lists as configured.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let restricts_reads = !self.read_uids.is_empty() || !self.read_gids.is_empty();
        let restricts_mutations = !self.allow_uids.is_empty() || !self.allow_gids.is_empty();
        if restricts_reads && !restricts_mutations {
            out.push(
                "agent.read_uids/read_gids: restricting readers while allow_uids and allow_gids \
                 are empty would let everyone who can open the socket switch traffic but not \
                 read; set allow_uids or allow_gids too"
                    .to_owned(),
            );
        }
        out
    }

    /// Whether a check may need the peer's groups from the user database.
    pub fn needs_groups(&self) -> bool {
        !self.allow_gids.is_empty() || !self.read_gids.is_empty()
    }

    /// Whether `who` may run `command`; `agent_uid` is the agent's own effective uid. A
    /// local peer is judged by the lists; a certificate holder on the TLS listener was
    /// admitted by its certificate, and the agent trusts itself.
    pub fn check(&self, who: &Requester, command: &Command, agent_uid: u32) -> Result<(), Denied> {
        match who {
            Requester::Local {
                uid, gid, groups, ..
            } => {
                let local = Local {
                    uid: *uid,
                    gid: *gid,
                    groups,
                };
                self.check_local(&local, needs_mutate(command), agent_uid)
                    .map_err(|rule| self.denied(who, command, rule.to_owned()))
            }
            Requester::Peer { name } if self.remote.peers.contains(name) => Ok(()),
            Requester::Peer { name } => self
                .remote
                .check(&[Identity::Dns(name.clone())], command)
                .map_err(|rule| self.denied(who, command, rule)),
            Requester::Remote { names } => self
                .remote
                .check(names, command)
                .map_err(|rule| self.denied(who, command, rule)),
            Requester::Agent(_) => Ok(()),
        }
    }

    fn denied(&self, who: &Requester, command: &Command, rule: String) -> Denied {
        Denied {
            who: who.to_string(),
            verb: command.verb(),
            rule,
        }
    }

    /// [`Policy::check`] for a peer of the unix socket: the rule that refuses it, if any.
    fn check_local(
        &self,
        peer: &Local<'_>,
        mutation: bool,
        agent_uid: u32,
    ) -> Result<(), &'static str> {
        let Some(uid) = peer.uid else {
            return if self.is_open(mutation) {
                Ok(())
            } else {
                Err("the peer's credentials are unknown")
            };
        };
        if uid == 0 || uid == agent_uid || self.is_open(mutation) {
            return Ok(());
        }
        let in_groups = |gids: &BTreeSet<u32>| {
            peer.gid.is_some_and(|g| gids.contains(&g))
                || peer.groups.iter().any(|g| gids.contains(g))
        };
        let may_mutate = self.allow_uids.contains(&uid) || in_groups(&self.allow_gids);
        if may_mutate {
            return Ok(());
        }
        if mutation {
            return Err(
                "changing routing is allowed to root, the agent's own user and agent.allow_uids / allow_gids",
            );
        }
        if self.read_uids.contains(&uid) || in_groups(&self.read_gids) {
            return Ok(());
        }
        Err(
            "reading is allowed to root, the agent's own user and agent.allow_uids / allow_gids / read_uids / read_gids",
        )
    }

    /// Whether a command of this kind is open to whoever can open the socket.
    fn is_open(&self, mutation: bool) -> bool {
        let mutate_open = self.allow_uids.is_empty() && self.allow_gids.is_empty();
        let read_open = self.read_uids.is_empty() && self.read_gids.is_empty();
        mutate_open || (!mutation && read_open)
    }
}

/// The credentials of a peer of the unix socket that the lists judge.
struct Local<'a> {
    uid: Option<u32>,
    gid: Option<u32>,
    groups: &'a [u32],
}

/// A step of a cluster change from someone other than a peer or this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("only peer agents (over the TLS listener) may send this command")]
pub struct NotAPeer;

/// Who may send a step of a cluster change (`report`, `prepare`, `ready`, `commit`,
/// `abort_txn`): a peer agent over the TLS listener, named by its certificate
/// (`Some(name)`), or this agent's own coordinator (`None`); nobody on the control socket.
pub fn cluster_step_sender(who: &Requester) -> Result<Option<&str>, NotAPeer> {
    match who {
        Requester::Peer { name } => Ok(Some(name)),
        Requester::Agent(Reason::Coordinator) => Ok(None),
        Requester::Local { .. } | Requester::Remote { .. } | Requester::Agent(_) => Err(NotAPeer),
    }
}

/// Whether a command needs the mutating permission: it changes routing here
/// ([`Command::is_mutation`]: switch, rollback, canary, promote, abort, drain, undrain,
/// apply), across the cluster (`cluster`), or is a step of a cluster change that only peers
/// send (`prepare`, `commit`, ...; refused on the socket anyway), or puts a new config in
/// force (`reload_config`). Everything else only reads,
/// `history --cluster` included.
pub fn needs_mutate(command: &Command) -> bool {
    command.is_mutation()
        || command.is_peer_only()
        || matches!(command, Command::ReloadConfig)
        || matches!(command, Command::Cluster { command } if command.is_mutation())
}

/// Groups the user database lists for `uid` (its primary group included); empty when the
/// uid has no entry. Blocking (NSS): call it off the async threads.
pub fn user_groups(uid: u32) -> Vec<u32> {
    use nix::unistd::{getgrouplist, User};
    let Ok(Some(user)) = User::from_uid(uid.into()) else {
        return vec![];
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return vec![];
    };
    getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Colour, Request};

    const AGENT: u32 = 999;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Requester {
        Requester::Local {
            uid: Some(uid),
            gid: Some(gid),
            pid: Some(4242),
            groups: groups.to_vec(),
            names: Default::default(),
        }
    }

    fn switch() -> Command {
        Command::change(
            Request::Switch {
                service: "web".into(),
                colour: Colour::Green,
            },
            false,
            false,
        )
    }

    fn policy(
        allow_uids: &[u32],
        allow_gids: &[u32],
        read_uids: &[u32],
        read_gids: &[u32],
    ) -> Policy {
        let set = |v: &[u32]| v.iter().copied().collect();
        Policy {
            allow_uids: set(allow_uids),
            allow_gids: set(allow_gids),
            read_uids: set(read_uids),
            read_gids: set(read_gids),
            remote: Remote {
                clients: BTreeMap::new(),
                peers: BTreeSet::from(["lb2".to_owned()]),
            },
        }
    }

    #[test]
    fn empty_lists_leave_it_to_the_socket_mode() {
        let p = Policy::default();
        assert!(p.problems().is_empty());
        assert!(p.check(&peer(1000, 1000, &[]), &switch(), AGENT).is_ok());
        assert!(p.check(&Requester::default(), &switch(), AGENT).is_ok());
    }

    #[test]
    fn mutations_need_the_allow_lists_reads_the_wider_ones() {
        let p = policy(&[1000], &[50], &[2000], &[60]);
        let ok = |who: Requester, cmd: Command| p.check(&who, &cmd, AGENT).is_ok();
        // Always: root and the agent's own user.
        assert!(ok(peer(0, 0, &[]), switch()));
        assert!(ok(peer(AGENT, AGENT, &[]), switch()));
        // Mutators, by uid, primary gid or a group of the user database.
        assert!(ok(peer(1000, 1000, &[]), switch()));
        assert!(ok(peer(1001, 50, &[]), switch()));
        assert!(ok(peer(1002, 1002, &[1002, 50]), switch()));
        assert!(ok(peer(1000, 1000, &[]), Command::Status));
        // Readers may read and nothing else.
        assert!(ok(peer(2000, 2000, &[]), Command::Status));
        assert!(ok(peer(2001, 60, &[]), Command::Status));
        assert!(!ok(peer(2000, 2000, &[]), switch()));
        assert!(!ok(peer(2001, 2001, &[60]), switch()));
        // Anyone else: nothing, and unknown credentials: nothing.
        assert!(!ok(peer(3000, 3000, &[]), Command::Status));
        assert!(!ok(Requester::default(), Command::Status));
        let e = p
            .check(&peer(3000, 3001, &[]), &switch(), AGENT)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "uid 3000 (gid 3001, pid 4242) may not switch: changing routing is allowed to root, \
             the agent's own user and agent.allow_uids / allow_gids"
        );
    }

    #[test]
    fn restricted_mutations_leave_reads_open_without_read_lists() {
        let p = policy(&[1000], &[], &[], &[]);
        assert!(p
            .check(&peer(3000, 3000, &[]), &Command::Status, AGENT)
            .is_ok());
        assert!(p.check(&peer(3000, 3000, &[]), &switch(), AGENT).is_err());
    }

    #[test]
    fn cluster_changes_and_peer_steps_need_the_mutating_permission() {
        let p = policy(&[1000], &[], &[2000], &[]);
        let reader = peer(2000, 2000, &[]);
        let cluster = Command::Cluster {
            command: Box::new(switch()),
        };
        let commit = Command::Commit {
            txn: "t".into(),
            cluster_generation: 1,
        };
        assert!(p.check(&reader, &cluster, AGENT).is_err());
        assert!(p.check(&reader, &commit, AGENT).is_err());
        assert!(p.check(&reader, &Command::ClusterStatus, AGENT).is_ok());
        assert!(p.check(&reader, &Command::Metrics, AGENT).is_ok());
        let drain = Command::change(
            Request::Drain {
                service: "web".into(),
                colour: Colour::Blue,
            },
            false,
            true,
        );
        assert!(p.check(&reader, &drain, AGENT).is_err(), "a dry run too");
    }

    #[test]
    fn steps_of_a_cluster_change_come_from_peers_or_the_own_coordinator() {
        let peer = Requester::Peer { name: "lb2".into() };
        assert_eq!(cluster_step_sender(&peer), Ok(Some("lb2")));
        let own = Requester::Agent(Reason::Coordinator);
        assert_eq!(cluster_step_sender(&own), Ok(None));
        for who in [
            peer_root(),
            Requester::default(),
            Requester::agent(),
            Requester::Agent(Reason::Watch),
        ] {
            assert_eq!(cluster_step_sender(&who), Err(NotAPeer), "{who}");
        }
    }

    fn peer_root() -> Requester {
        peer(0, 0, &[])
    }

    #[test]
    fn certificate_holders_and_the_agent_are_not_judged_by_the_lists() {
        let p = policy(&[1000], &[], &[2000], &[]);
        let commit = Command::Commit {
            txn: "t".into(),
            cluster_generation: 1,
        };
        for who in [
            Requester::Peer { name: "lb2".into() },
            Requester::Agent(Reason::Coordinator),
            Requester::agent(),
        ] {
            assert!(p.check(&who, &switch(), AGENT).is_ok(), "{who}");
            assert!(p.check(&who, &commit, AGENT).is_ok(), "{who}");
        }
    }

    #[test]
    fn certificate_holders_need_a_role_for_what_they_ask() {
        let mut p = policy(&[], &[], &[], &[]);
        let dns = |n: &str| Identity::Dns(n.into());
        p.remote.clients = BTreeMap::from([
            (dns("viewer"), Role::Read),
            (dns("deployer"), Role::Operate),
            (Identity::Uri("spiffe://example/admin".into()), Role::Admin),
        ]);
        let apply = Command::change(
            Request::Set {
                services: BTreeMap::new(),
            },
            false,
            false,
        );
        let remote = |names: Vec<Identity>| Requester::Remote { names };
        let ok = |who: &Requester, cmd: &Command| p.check(who, cmd, AGENT).is_ok();
        let viewer = remote(vec![dns("viewer")]);
        assert!(ok(&viewer, &Command::Status));
        let e = p.check(&viewer, &switch(), AGENT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "remote client dns:viewer may not switch: dns:viewer has role read and switch \
             needs role operate"
        );
        let deployer = remote(vec![dns("other"), dns("deployer")]);
        assert!(ok(&deployer, &switch()), "the highest role of its names");
        assert!(!ok(&deployer, &apply));
        let admin = remote(vec![Identity::Uri("spiffe://example/admin".into())]);
        assert!(ok(&admin, &apply));
        let stranger = remote(vec![dns("stranger")]);
        let e = p.check(&stranger, &Command::Status, AGENT).unwrap_err();
        assert!(
            e.rule.contains("dns:stranger has no role") && e.rule.contains("needs role read"),
            "{e}"
        );
        // On the JSON-lines listener: a listed peer keeps its role; another name needs one.
        assert!(ok(&Requester::Peer { name: "lb2".into() }, &apply));
        assert!(ok(
            &Requester::Peer {
                name: "viewer".into()
            },
            &Command::Status
        ));
        assert!(!ok(
            &Requester::Peer {
                name: "viewer".into()
            },
            &switch()
        ));
        assert!(!ok(
            &Requester::Peer { name: "ci".into() },
            &Command::Status
        ));
        // A cluster change needs what its change needs.
        let cluster = Command::Cluster {
            command: Box::new(switch()),
        };
        assert_eq!(role_needed(&cluster), Role::Operate);
        assert_eq!(role_needed(&Command::Metrics), Role::Read);
    }

    #[test]
    fn read_lists_without_allow_lists_are_a_config_problem() {
        assert_eq!(policy(&[], &[], &[5], &[]).problems().len(), 1);
    }
}
