//! Who asked: the transport a request came by and the identity it carries. Access decisions
//! ([`crate::access`]: the allowlists, and who may send a step of a cluster change) and the
//! metrics' rollback reason `match` on [`Requester`]; nothing compares names.
//!
//! In the journal a requester is the object `{"uid", "gid", "pid", "via"}` that journals have
//! always held, so journals written by earlier versions still load, with `user` and `group`
//! added where the ids have names ([`Names`], resolved when the request came, so a uid
//! renamed or reused later does not rewrite the past):
//!
//! | requester                                  | `via`             | ids                  |
//! |--------------------------------------------|-------------------|----------------------|
//! | [`Requester::Local`]                       | `socket`          | the peer credentials |
//! | [`Requester::Peer`]                        | `tls:<name>`      | null                 |
//! | [`Requester::Remote`]                      | `grpc:<names>`    | null                 |
//! | [`Reason::Upkeep`]                         | `agent`           | the agent's own      |
//! | [`Reason::Watch`]                          | `watch`           | null                 |
//! | [`Reason::DesiredFile`]                    | `desired-file`    | null                 |
//! | [`Reason::Coordinator`]                    | `cluster-local`   | null                 |
//! | [`Reason::ClusterCommit`]                  | `cluster:<node>`  | null                 |
//! | [`Reason::Converge`]                       | `converge:<node>` | null                 |
//! | [`Reason::Fleet`]                          | `fleet:<by>`      | null                 |
//!
//! A new kind of requester gets a new `via` spelling here and nowhere else; a `via` this
//! version does not know does not parse (the journal line is skipped when read).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who asked for a request, and over which transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// A connection on the local unix control socket, named by the peer credentials the
    /// kernel reported for it (`SO_PEERCRED`; `None` where it reported none). Judged by the
    /// allowlists of [`crate::access`].
    Local {
        /// The peer's uid.
        uid: Option<u32>,
        /// The peer's primary gid.
        gid: Option<u32>,
        /// The peer's pid.
        pid: Option<i32>,
        /// Groups the user database lists for `uid` (besides `gid`), for the access check;
        /// not journaled.
        groups: Vec<u32>,
        /// The names of `uid` and `gid`.
        names: Names,
    },
    /// A connection on the cluster's mutual-TLS listener: a peer agent or a remote client,
    /// named by its verified certificate. A listed peer is admitted by that certificate;
    /// any other name is judged by the roles of `[[remote.clients]]`.
    Peer {
        /// The node name the certificate carries (`unknown` when it carries none).
        name: String,
    },
    /// A call of the remote API (gRPC over mutual TLS), named by the identities its verified
    /// client certificate carries. Judged by the roles of `[[remote.clients]]`.
    Remote {
        /// The certificate's SAN DNS names and URIs, in its order (at most
        /// [`MAX_IDENTITIES`]).
        names: Vec<Identity>,
    },
    /// The agent itself; trusted.
    Agent(Reason),
}

/// Why the agent asks by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Its own upkeep: start-up repair, reconcile, a config it loads or refuses, a render.
    /// Journaled with the agent process's own ids.
    Upkeep {
        /// The agent's effective uid.
        uid: Option<u32>,
        /// The agent's effective gid.
        gid: Option<u32>,
        /// The agent's pid.
        pid: Option<i32>,
        /// The names of `uid` and `gid`.
        names: Names,
    },
    /// The post-switch watch rolling back a change that failed it.
    Watch,
    /// The desired-state file (`agent.desired_state`) changed.
    DesiredFile,
    /// This agent's cluster coordinator, sending a step of a cluster change to its own node.
    Coordinator,
    /// A cluster change committed here, as prepared for the coordinator `coordinator`.
    ClusterCommit {
        /// The node that coordinated the change.
        coordinator: String,
    },
    /// Convergence: adopting the cluster routing a peer reported.
    Converge {
        /// The peer whose report was adopted.
        from: String,
    },
    /// The fleet store: carrying out a change committed in etcd.
    Fleet {
        /// Who committed the change there (a node or a client's name).
        by: String,
    },
}

/// The user and group names of a requester's uid and gid, as the user database had them
/// when the request came; `None` where it has none (or they were not looked up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// The name of the uid.
    pub user: Option<String>,
    /// The name of the gid.
    pub group: Option<String>,
}

impl Names {
    /// Looks up the names of `uid` and `gid` in the user database (which may go to NSS:
    /// call it off the async threads).
    pub fn resolve(uid: Option<u32>, gid: Option<u32>) -> Names {
        use nix::unistd::{Gid, Group, Uid, User};
        Names {
            user: uid
                .and_then(|u| User::from_uid(Uid::from_raw(u)).ok().flatten())
                .map(|u| u.name),
            group: gid
                .and_then(|g| Group::from_gid(Gid::from_raw(g)).ok().flatten())
                .map(|g| g.name),
        }
    }
}

/// Most identities of one certificate a [`Requester::Remote`] keeps.
pub const MAX_IDENTITIES: usize = 16;

/// A name a verified client certificate carries, as `[[remote.clients]] identity` spells
/// it: `dns:<name>` (a SAN DNS name) or `uri:<uri>` (a SAN URI, e.g. a SPIFFE ID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// A subjectAltName DNS name.
    Dns(String),
    /// A subjectAltName URI.
    Uri(String),
}

/// A spelling of an identity that is neither `dns:<name>` nor `uri:<uri>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not dns:<name> or uri:<uri>")]
pub struct BadIdentity(pub String);

impl std::str::FromStr for Identity {
    type Err = BadIdentity;

    fn from_str(s: &str) -> Result<Identity, BadIdentity> {
        let ok = |v: &str| !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c.is_control());
        match s.split_once(':') {
            Some(("dns", name)) if ok(name) => Ok(Identity::Dns(name.to_owned())),
            Some(("uri", uri)) if ok(uri) => Ok(Identity::Uri(uri.to_owned())),
            _ => Err(BadIdentity(s.to_owned())),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Dns(name) => write!(f, "dns:{name}"),
            Identity::Uri(uri) => write!(f, "uri:{uri}"),
        }
    }
}

/// `via` of [`Requester::Local`].
const SOCKET: &str = "socket";
/// `via` prefix of [`Requester::Peer`].
const TLS_PREFIX: &str = "tls:";
/// `via` prefix of [`Requester::Remote`]; its names follow, separated by spaces.
const GRPC_PREFIX: &str = "grpc:";
/// `via` of [`Reason::Upkeep`].
const UPKEEP: &str = "agent";
/// `via` of [`Reason::Watch`].
const WATCH: &str = "watch";
/// `via` of [`Reason::DesiredFile`].
const DESIRED_FILE: &str = "desired-file";
/// `via` of [`Reason::Coordinator`].
const COORDINATOR: &str = "cluster-local";
/// `via` prefix of [`Reason::ClusterCommit`].
const CLUSTER_PREFIX: &str = "cluster:";
/// `via` prefix of [`Reason::Converge`].
const CONVERGE_PREFIX: &str = "converge:";
/// `via` prefix of [`Reason::Fleet`].
const FLEET_PREFIX: &str = "fleet:";

impl Requester {
    /// The agent's own upkeep, with this process's ids and their names (looked up once).
    pub fn agent() -> Requester {
        static NAMES: std::sync::OnceLock<Names> = std::sync::OnceLock::new();
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        Requester::Agent(Reason::Upkeep {
            uid: Some(uid),
            gid: Some(gid),
            pid: Some(std::process::id() as i32),
            names: NAMES
                .get_or_init(|| Names::resolve(Some(uid), Some(gid)))
                .clone(),
        })
    }

    /// A local peer with these credentials, no supplementary groups and no names.
    pub fn local(uid: Option<u32>, gid: Option<u32>, pid: Option<i32>) -> Requester {
        Requester::Local {
            uid,
            gid,
            pid,
            groups: vec![],
            names: Names::default(),
        }
    }

    /// Whether `who` names this requester: its user name or uid, a certificate identity
    /// (`dns:<name>`, `uri:<uri>`), or a peer's or the fleet proposer's name.
    pub fn is(&self, who: &str) -> bool {
        let r = self.record();
        let user = r.user.as_deref() == Some(who) || r.uid.is_some_and(|u| u.to_string() == who);
        user || match self {
            Requester::Peer { name } => name == who,
            Requester::Remote { names } => names.iter().any(|n| n.to_string() == who),
            Requester::Agent(Reason::Fleet { by }) => by == who,
            _ => false,
        }
    }

    /// How the request arrived, as the journal spells it: `socket`, `agent`, `watch`,
    /// `desired-file`, `tls:<name>`...
    pub fn via(&self) -> String {
        self.record().via
    }

    /// The names of the requester's ids, where it has ids and they have names.
    pub fn names(&self) -> Names {
        let r = self.record();
        Names {
            user: r.user,
            group: r.group,
        }
    }

    /// The user id and process id the kernel reported, where there are any.
    pub fn uid_pid(&self) -> (Option<u32>, Option<i32>) {
        let r = self.record();
        (r.uid, r.pid)
    }

    /// The journal's form.
    fn record(&self) -> Record {
        let named = |uid, gid, pid, names: &Names, via: String| Record {
            uid,
            gid,
            pid,
            user: names.user.clone(),
            group: names.group.clone(),
            via,
        };
        let none = |via: String| named(None, None, None, &Names::default(), via);
        match self {
            Requester::Local {
                uid,
                gid,
                pid,
                names,
                ..
            } => named(*uid, *gid, *pid, names, SOCKET.into()),
            Requester::Peer { name } => none(format!("{TLS_PREFIX}{name}")),
            Requester::Remote { names } => none(format!("{GRPC_PREFIX}{}", spaced(names))),
            Requester::Agent(reason) => match reason {
                Reason::Upkeep {
                    uid,
                    gid,
                    pid,
                    names,
                } => named(*uid, *gid, *pid, names, UPKEEP.into()),
                Reason::Watch => none(WATCH.into()),
                Reason::DesiredFile => none(DESIRED_FILE.into()),
                Reason::Coordinator => none(COORDINATOR.into()),
                Reason::ClusterCommit { coordinator } => {
                    none(format!("{CLUSTER_PREFIX}{coordinator}"))
                }
                Reason::Converge { from } => none(format!("{CONVERGE_PREFIX}{from}")),
                Reason::Fleet { by } => none(format!("{FLEET_PREFIX}{by}")),
            },
        }
    }
}

/// The least trusted requester: a local connection whose credentials the kernel did not
/// report.
impl Default for Requester {
    fn default() -> Requester {
        Requester::local(None, None, None)
    }
}

/// `uid 1000 (gid 1000, pid 4242)` for a local peer, `peer lb2` for a certificate holder,
/// `the agent (watch)` for the agent itself: for messages.
impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
        match self {
            Requester::Local { uid, gid, pid, .. } => write!(
                f,
                "uid {} (gid {}, pid {})",
                opt(uid.map(|v| v.to_string())),
                opt(gid.map(|v| v.to_string())),
                opt(pid.map(|v| v.to_string()))
            ),
            Requester::Peer { name } => write!(f, "peer {name}"),
            Requester::Remote { names } if names.is_empty() => {
                write!(f, "remote client (a certificate without names)")
            }
            Requester::Remote { names } => write!(f, "remote client {}", spaced(names)),
            Requester::Agent(_) => write!(f, "the agent ({})", self.record().via),
        }
    }
}

/// Identities separated by spaces (neither spelling holds one).
fn spaced(names: &[Identity]) -> String {
    names
        .iter()
        .map(Identity::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `via` this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown requester via {0:?}")]
pub struct UnknownVia(String);

/// The requester as journaled. `user` and `group` are written only where there are names,
/// so a line of an earlier version writes back as it was read.
#[derive(Serialize, Deserialize)]
struct Record {
    uid: Option<u32>,
    gid: Option<u32>,
    pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    via: String,
}

impl TryFrom<Record> for Requester {
    type Error = UnknownVia;

    fn try_from(r: Record) -> Result<Requester, UnknownVia> {
        let Record {
            uid,
            gid,
            pid,
            user,
            group,
            via,
        } = r;
        let names = Names { user, group };
        let agent = Requester::Agent;
        let requester = match via.as_str() {
            SOCKET => Requester::Local {
                uid,
                gid,
                pid,
                groups: vec![],
                names,
            },
            UPKEEP => agent(Reason::Upkeep {
                uid,
                gid,
                pid,
                names,
            }),
            WATCH => agent(Reason::Watch),
            DESIRED_FILE => agent(Reason::DesiredFile),
            COORDINATOR => agent(Reason::Coordinator),
            v => {
                if let Some(name) = v.strip_prefix(TLS_PREFIX) {
                    Requester::Peer { name: name.into() }
                } else if let Some(names) = v.strip_prefix(GRPC_PREFIX) {
                    let names = names.split(' ').filter(|n| !n.is_empty()).map(str::parse);
                    Requester::Remote {
                        names: names
                            .collect::<Result<_, _>>()
                            .map_err(|_| UnknownVia(via.clone()))?,
                    }
                } else if let Some(c) = v.strip_prefix(CLUSTER_PREFIX) {
                    agent(Reason::ClusterCommit {
                        coordinator: c.into(),
                    })
                } else if let Some(from) = v.strip_prefix(CONVERGE_PREFIX) {
                    agent(Reason::Converge { from: from.into() })
                } else if let Some(by) = v.strip_prefix(FLEET_PREFIX) {
                    agent(Reason::Fleet { by: by.into() })
                } else {
                    return Err(UnknownVia(via));
                }
            }
        };
        Ok(requester)
    }
}

impl Serialize for Requester {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.record().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Requester {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Requester, D::Error> {
        Requester::try_from(Record::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A named local requester for the unit tests of the layers that journal one.
#[cfg(test)]
pub(crate) fn alice() -> Requester {
    Requester::Local {
        uid: Some(1000),
        gid: Some(100),
        pid: Some(4242),
        groups: vec![],
        names: Names {
            user: Some("alice".into()),
            group: Some("ops".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_requester_keeps_its_journal_form() {
        let cases = [
            (
                Requester::local(Some(1000), Some(100), Some(4242)),
                json!({"uid": 1000, "gid": 100, "pid": 4242, "via": "socket"}),
            ),
            (
                Requester::default(),
                json!({"uid": null, "gid": null, "pid": null, "via": "socket"}),
            ),
            (
                Requester::Peer { name: "lb2".into() },
                json!({"uid": null, "gid": null, "pid": null, "via": "tls:lb2"}),
            ),
            (
                Requester::Agent(Reason::Upkeep {
                    uid: Some(0),
                    gid: Some(0),
                    pid: Some(7),
                    names: Names::default(),
                }),
                json!({"uid": 0, "gid": 0, "pid": 7, "via": "agent"}),
            ),
            (
                alice(),
                json!({"uid": 1000, "gid": 100, "pid": 4242, "user": "alice",
                       "group": "ops", "via": "socket"}),
            ),
            (
                Requester::Agent(Reason::Watch),
                json!({"uid": null, "gid": null, "pid": null, "via": "watch"}),
            ),
            (
                Requester::Agent(Reason::DesiredFile),
                json!({"uid": null, "gid": null, "pid": null, "via": "desired-file"}),
            ),
            (
                Requester::Agent(Reason::Coordinator),
                json!({"uid": null, "gid": null, "pid": null, "via": "cluster-local"}),
            ),
            (
                Requester::Agent(Reason::ClusterCommit {
                    coordinator: "lb1".into(),
                }),
                json!({"uid": null, "gid": null, "pid": null, "via": "cluster:lb1"}),
            ),
            (
                Requester::Remote {
                    names: vec![
                        Identity::Dns("ci.example".into()),
                        Identity::Uri("spiffe://example/ci".into()),
                    ],
                },
                json!({"uid": null, "gid": null, "pid": null,
                       "via": "grpc:dns:ci.example uri:spiffe://example/ci"}),
            ),
            (
                Requester::Agent(Reason::Converge { from: "lb3".into() }),
                json!({"uid": null, "gid": null, "pid": null, "via": "converge:lb3"}),
            ),
        ];
        for (requester, journaled) in cases {
            assert_eq!(serde_json::to_value(&requester).unwrap(), journaled);
            let back: Requester = serde_json::from_value(journaled).unwrap();
            assert_eq!(back, requester);
        }
    }

    #[test]
    fn groups_are_not_journaled_and_unknown_vias_do_not_parse() {
        let who = Requester::Local {
            uid: Some(1),
            gid: Some(2),
            pid: Some(3),
            groups: vec![50],
            names: Names::default(),
        };
        let line = serde_json::to_string(&who).unwrap();
        assert_eq!(line, r#"{"uid":1,"gid":2,"pid":3,"via":"socket"}"#);
        let e = serde_json::from_str::<Requester>(r#"{"via":"carrier-pigeon"}"#).unwrap_err();
        assert!(e.to_string().contains("carrier-pigeon"), "{e}");
    }

    #[test]
    fn names_resolve_and_match() {
        // uid and gid 0 are root on every system this runs on.
        let names = Names::resolve(Some(0), Some(0));
        assert_eq!(names.user.as_deref(), Some("root"));
        assert_eq!(names.group.as_deref(), Some("root"));
        let who = Requester::Local {
            uid: Some(0),
            gid: Some(0),
            pid: Some(1),
            groups: vec![],
            names,
        };
        assert!(who.is("root") && who.is("0"));
        assert!(!who.is("alice") && !who.is("1"));
        let remote = Requester::Remote {
            names: vec![Identity::Dns("ci.example".into())],
        };
        assert!(remote.is("dns:ci.example") && !remote.is("ci"));
        assert!(Requester::Peer { name: "lb2".into() }.is("lb2"));
    }

    #[test]
    fn messages_name_the_requester() {
        assert_eq!(
            Requester::local(Some(3000), Some(3001), Some(4242)).to_string(),
            "uid 3000 (gid 3001, pid 4242)"
        );
        assert_eq!(
            Requester::default().to_string(),
            "uid unknown (gid unknown, pid unknown)"
        );
        assert_eq!(
            Requester::Peer { name: "lb2".into() }.to_string(),
            "peer lb2"
        );
        assert_eq!(
            Requester::Agent(Reason::Watch).to_string(),
            "the agent (watch)"
        );
    }
}
