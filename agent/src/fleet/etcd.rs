//! The fleet store's side of etcd: the key layout under a site's prefix, the connection
//! (endpoints, TLS, user, timeouts), and typed reads of the records, each bounded and
//! checked. Nothing here knows about proxies or the engine.

use std::collections::BTreeMap;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, Identity, KeyValue, TlsOptions, Txn, TxnOp,
    WatchResponse,
};
use serde::de::DeserializeOwned;

use crate::config::EtcdConfig;
use crate::mapfile::check_name;
use crate::protocol::fleet::MAX_RECORD_BYTES;
use crate::protocol::{FleetChange, PeerReport, ServiceState};

/// Most hosts, services or records of one kind read from etcd at once.
pub const MAX_RECORDS: i64 = 10_000;

/// Why the fleet store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// etcd did not answer, or refused (credentials, permissions, a timeout).
    #[error("etcd at {endpoints}: {}", explain(source))]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What the client said.
        source: etcd_client::Error,
    },
    /// A TLS or password file could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A record under the prefix is not what cutover writes there; nothing is applied.
    #[error("refusing the record at {key}: {reason}")]
    BadRecord {
        /// Its key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another change committed between the read and the commit.
    #[error(
        "the fleet changed meanwhile ({by} committed generation {generation} at etcd \
         revision {revision}); nothing changed, try again"
    )]
    Conflict {
        /// Who committed the other change.
        by: String,
        /// Its generation.
        generation: u64,
        /// etcd's revision of that commit.
        revision: i64,
    },
    /// The lease that keeps this host's (or the proposer's) keys alive expired.
    #[error("the lease of {0} expired")]
    LeaseLost(String),
    /// The watch ended or was cancelled by etcd.
    #[error("the watch ended: {0}")]
    WatchEnded(String),
}

/// A client error in an operator's words: unreachable, credentials refused, or as etcd
/// said it.
fn explain(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) if s.message().contains("authentication failed") => {
            format!("credentials refused ({})", s.message())
        }
        E::GRpcStatus(s) => match s.code() {
            tonic::Code::Unauthenticated => format!("credentials refused ({})", s.message()),
            tonic::Code::PermissionDenied => format!("permission denied ({})", s.message()),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                format!("cannot be reached ({})", s.message())
            }
            _ => format!("{} ({})", s.message(), s.code()),
        },
        E::TransportError(t) => format!("cannot be reached ({t})"),
        other => other.to_string(),
    }
}

/// Wraps a client error with the endpoints it concerns.
pub fn etcd_error(config: &EtcdConfig) -> impl Fn(etcd_client::Error) -> FleetError + '_ {
    move |source| FleetError::Etcd {
        endpoints: config.endpoints.join(","),
        source,
    }
}

/// The keys of one site (see [`crate::protocol::fleet`] for what each holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `<prefix>/`: every key of the site starts with it, and no key of another site does.
    root: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `generation`.
    Generation,
    /// `services/<name>`.
    Service(String),
    /// `log/<generation>`.
    Log,
    /// `proposals/<id>`.
    Proposal(String),
    /// `votes/<id>/<host>`.
    Vote(String, String),
    /// `hosts/<host>`.
    Host(String),
    /// Anything else: not cutover's.
    Other,
}

impl Keys {
    /// The keys under `prefix` (validated by [`EtcdConfig::problems`]).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            root: format!("{prefix}/"),
        }
    }

    /// `<prefix>/`, for a watch or a range over the whole site.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The key of the latest committed change.
    pub fn generation(&self) -> String {
        format!("{}generation", self.root)
    }

    /// The directory of the services' records.
    pub fn services(&self) -> String {
        format!("{}services/", self.root)
    }

    /// The record of one service.
    pub fn service(&self, name: &str) -> String {
        format!("{}services/{name}", self.root)
    }

    /// The directory of the change log.
    pub fn log(&self) -> String {
        format!("{}log/", self.root)
    }

    /// The log entry of one generation (zero-padded, so keys sort by generation).
    pub fn log_entry(&self, generation: u64) -> String {
        format!("{}log/{generation:020}", self.root)
    }

    /// The directory of proposals.
    pub fn proposals(&self) -> String {
        format!("{}proposals/", self.root)
    }

    /// One proposal.
    pub fn proposal(&self, id: &str) -> String {
        format!("{}proposals/{id}", self.root)
    }

    /// The votes on one proposal.
    pub fn votes(&self, id: &str) -> String {
        format!("{}votes/{id}/", self.root)
    }

    /// One host's vote on one proposal.
    pub fn vote(&self, id: &str, host: &str) -> String {
        format!("{}votes/{id}/{host}", self.root)
    }

    /// The directory of live hosts.
    pub fn hosts(&self) -> String {
        format!("{}hosts/", self.root)
    }

    /// One host's record.
    pub fn host(&self, node: &str) -> String {
        format!("{}hosts/{node}", self.root)
    }

    /// What `key` is; [`Key::Other`] for a key outside the prefix or the layout.
    pub fn classify(&self, key: &[u8]) -> Key {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(&self.root))
        else {
            return Key::Other;
        };
        let named = |n: &str| check_name(n).is_ok();
        match rest.split_once('/') {
            None if rest == "generation" => Key::Generation,
            Some(("services", n)) if named(n) => Key::Service(n.to_owned()),
            Some(("log", _)) => Key::Log,
            Some(("proposals", id)) if named(id) => Key::Proposal(id.to_owned()),
            Some(("votes", tail)) => match tail.split_once('/') {
                Some((id, host)) if named(id) && named(host) => {
                    Key::Vote(id.to_owned(), host.to_owned())
                }
                _ => Key::Other,
            },
            Some(("hosts", n)) if named(n) => Key::Host(n.to_owned()),
            _ => Key::Other,
        }
    }
}

/// Connects to one endpoint of `config` that answers a read of the site, trying them in
/// turn from `start` (modulo their number); returns the client and the endpoint's index.
///
/// One endpoint per connection: a member that dies fails the connection's requests at
/// once (the caller reconnects to the next one) instead of stalling them behind a balancer
/// that keeps trying it, and agents that start at different indexes spread their watches
/// over the members.
pub async fn connect(config: &EtcdConfig, start: usize) -> Result<(Client, usize), FleetError> {
    let options = options(config)?;
    let keys = Keys::new(&config.prefix);
    let n = config.endpoints.len().max(1);
    let mut last = None;
    for k in 0..n {
        let i = (start + k) % n;
        let Some(endpoint) = config.endpoints.get(i) else {
            break;
        };
        let error = |source| FleetError::Etcd {
            endpoints: endpoint.clone(),
            source,
        };
        let attempt = async {
            let mut client = Client::connect([endpoint], Some(options.clone()))
                .await
                .map_err(error)?;
            client
                .get(keys.generation(), Some(GetOptions::new().with_count_only()))
                .await
                .map_err(error)?;
            Ok::<_, FleetError>(client)
        };
        match attempt.await {
            Ok(client) => return Ok((client, i)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| FleetError::WatchEnded("no etcd endpoint configured".into())))
}

/// The connection options `config` says: timeouts, TLS, user.
fn options(config: &EtcdConfig) -> Result<ConnectOptions, FleetError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| FleetError::File {
            path: path.to_owned(),
            source,
        })
    };
    let mut options = ConnectOptions::new()
        .with_connect_timeout(config.dial_timeout)
        .with_timeout(config.request_timeout)
        .with_keep_alive(config.request_timeout, config.request_timeout)
        .with_require_leader(true);
    if let Some(tls) = &config.tls {
        let mut t =
            TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)?));
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(t);
    }
    if let Some(auth) = &config.auth {
        let text = read(&auth.password_file)?;
        let password = String::from_utf8_lossy(&text)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        options = options.with_user(auth.user.clone(), password);
    }
    Ok(options)
}

/// Where a client that has no reason to prefer one endpoint starts: varies per call, so
/// that clients spread over the members.
pub fn any_start() -> usize {
    (crate::store::now_ms() % 1024) as usize
}

/// Connects and reads the site's generation once: proves that etcd answers and accepts the
/// credentials (on at least one endpoint).
pub async fn probe(config: &EtcdConfig) -> Result<(), FleetError> {
    connect(config, 0).await.map(|_| ())
}

/// A record's JSON.
pub fn to_json<T: serde::Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// The keys put in a watch's `response`, classified under `keys`, with their values.
pub fn puts<'a>(
    keys: &'a Keys,
    response: &'a WatchResponse,
) -> impl Iterator<Item = (Key, &'a KeyValue)> + 'a {
    response
        .events()
        .iter()
        .filter(|e| e.event_type() == EventType::Put)
        .filter_map(|e| e.kv())
        .map(|kv| (keys.classify(kv.key()), kv))
}

/// Parses one record, refusing one larger than [`MAX_RECORD_BYTES`] or not of type `T`.
pub fn parse<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, FleetError> {
    let bad = |reason: String| FleetError::BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    if value.len() > MAX_RECORD_BYTES {
        return Err(bad(format!(
            "{} bytes, more than {MAX_RECORD_BYTES}",
            value.len()
        )));
    }
    serde_json::from_slice(value).map_err(|e| bad(e.to_string()))
}

/// The desired state of the fleet at one etcd revision.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    /// etcd's revision the read saw.
    pub revision: i64,
    /// The latest committed change (none before the first), with the revision it was
    /// written at.
    pub last: Option<(FleetChange, i64)>,
    /// Every service's record.
    pub services: BTreeMap<String, ServiceState>,
}

impl Desired {
    /// The fleet generation (0 before the first change).
    pub fn generation(&self) -> u64 {
        self.last.as_ref().map_or(0, |(c, _)| c.generation)
    }

    /// etcd's revision of the generation key (0 before the first change): what a commit
    /// compares.
    pub fn generation_revision(&self) -> i64 {
        self.last.as_ref().map_or(0, |(_, r)| *r)
    }
}

/// Reads the generation and every service's record in one transaction (one revision).
/// Any record that does not parse refuses the whole read.
pub async fn read_desired(
    client: &mut Client,
    config: &EtcdConfig,
    keys: &Keys,
) -> Result<Desired, FleetError> {
    let txn = Txn::new().and_then(vec![
        TxnOp::get(keys.generation(), None),
        TxnOp::get(
            keys.services(),
            Some(GetOptions::new().with_prefix().with_limit(MAX_RECORDS)),
        ),
    ]);
    let response = client.txn(txn).await.map_err(etcd_error(config))?;
    let revision = response.header().map_or(0, |h| h.revision());
    let mut gets = response.op_responses().into_iter().filter_map(|r| match r {
        etcd_client::TxnOpResponse::Get(g) => Some(g),
        _ => None,
    });
    let (Some(generation), Some(services)) = (gets.next(), gets.next()) else {
        return Err(FleetError::WatchEnded(
            "etcd answered a read without its ranges".into(),
        ));
    };
    let last = match generation.kvs().first() {
        Some(kv) => Some((parse(kv.key(), kv.value())?, kv.mod_revision())),
        None => None,
    };
    let mut out = BTreeMap::new();
    for kv in services.kvs() {
        match keys.classify(kv.key()) {
            Key::Service(name) => {
                let record: ServiceState = parse(kv.key(), kv.value())?;
                check_record(kv.key(), &name, &record)?;
                out.insert(name, record);
            }
            _ => {
                return Err(FleetError::BadRecord {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    reason: "not a service name".into(),
                })
            }
        }
    }
    Ok(Desired {
        revision,
        last,
        services: out,
    })
}

/// Refuses a service record that breaks the state's rules (previous or drained equal to a
/// colour that takes traffic, a canary share outside 1..=99).
fn check_record(key: &[u8], name: &str, s: &ServiceState) -> Result<(), FleetError> {
    s.check().map_err(|broken| FleetError::BadRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: format!("service {name}: {broken}"),
    })
}

/// The records of the live hosts (their keys exist while their leases do). A record that
/// does not parse shows as an error in its place rather than hiding the host.
pub async fn read_hosts(
    client: &mut Client,
    config: &EtcdConfig,
    keys: &Keys,
) -> Result<BTreeMap<String, Result<PeerReport, String>>, FleetError> {
    let response = client
        .get(
            keys.hosts(),
            Some(GetOptions::new().with_prefix().with_limit(MAX_RECORDS)),
        )
        .await
        .map_err(etcd_error(config))?;
    let mut out = BTreeMap::new();
    for kv in response.kvs() {
        if let Key::Host(name) = keys.classify(kv.key()) {
            let record = parse::<PeerReport>(kv.key(), kv.value()).map_err(|e| e.to_string());
            out.insert(name, record);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_site_never_match_another() {
        let keys = Keys::new("/cutover/a");
        assert_eq!(keys.classify(b"/cutover/a/generation"), Key::Generation);
        assert_eq!(
            keys.classify(b"/cutover/a/services/web"),
            Key::Service("web".into())
        );
        assert_eq!(
            keys.classify(b"/cutover/a/votes/p1/lb2"),
            Key::Vote("p1".into(), "lb2".into())
        );
        assert_eq!(keys.classify(b"/cutover/ab/generation"), Key::Other);
        assert_eq!(keys.classify(b"/cutover/a/services/bad name"), Key::Other);
        assert_eq!(keys.classify(b"/cutover/a/unknown"), Key::Other);
        assert!(keys.log_entry(12) < keys.log_entry(100));
    }

    #[test]
    fn records_that_break_the_rules_are_refused() {
        let mut s = ServiceState::live_on(crate::protocol::Colour::Blue);
        s.previous = Some(crate::protocol::Colour::Blue);
        assert!(check_record(b"k", "web", &s).is_err());
        let oversized = vec![b' '; MAX_RECORD_BYTES + 1];
        assert!(parse::<ServiceState>(b"k", &oversized).is_err());
        let garbage = parse::<ServiceState>(b"/p/services/web", br#"{"live":"purple"}"#);
        assert!(garbage.unwrap_err().to_string().contains("/p/services/web"));
    }
}
