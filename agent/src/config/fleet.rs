//! `[cluster] store = "etcd"`: the fleet store, where the desired routing of every host of a
//! site lives (`[cluster.etcd]`), with its documented defaults. The `fleet` module runs it;
//! the command line builds the same [`EtcdConfig`] from `--etcd` flags.

use std::path::PathBuf;
use std::time::Duration;

/// Default time to establish a connection to an etcd endpoint, milliseconds.
pub const DEFAULT_DIAL_TIMEOUT_MS: u64 = 2_000;
/// Default time one etcd request may take, milliseconds.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Default time-to-live of a host's (or a proposal's) lease, seconds: a host that stops
/// renewing it is gone from the membership after this long.
pub const DEFAULT_LEASE_TTL_S: u64 = 10;
/// Default time every live host has to vote on a proposal, milliseconds.
pub const DEFAULT_VOTE_TIMEOUT_MS: u64 = 5_000;
/// Default time a change waits for every live host to confirm it, milliseconds.
pub const DEFAULT_WAIT_MS: u64 = 5_000;
/// Default interval of the agent's check of what it applied against etcd, milliseconds.
pub const DEFAULT_CHECK_INTERVAL_MS: u64 = 30_000;
/// Most etcd endpoints one config names.
pub const MAX_ENDPOINTS: usize = 16;
/// Longest key prefix, bytes.
pub const MAX_PREFIX: usize = 128;

/// `[cluster]` with `store = "etcd"`: this host as a member of a fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// This host's name: its key under `<prefix>/hosts/` and its name in votes.
    pub node: String,
    /// Hosts that should be live; a missing one shows as down rather than absent.
    pub expect_hosts: Vec<String>,
    /// How to reach etcd, and the timings of the fleet protocol.
    pub etcd: EtcdConfig,
}

/// How to reach etcd and the timings of the fleet protocol (`[cluster.etcd]`, or the
/// command line's `--etcd` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    /// Client URLs, `http://host:port` or `https://host:port`; requests spread over them.
    pub endpoints: Vec<String>,
    /// Key prefix of the site, `/` and at least one more character, without a trailing `/`.
    pub prefix: String,
    /// TLS to etcd; required by `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// User name and the file holding the password, for etcd's authentication.
    pub auth: Option<EtcdAuth>,
    /// Time to establish a connection. Default [`DEFAULT_DIAL_TIMEOUT_MS`].
    pub dial_timeout: Duration,
    /// Time one request may take. Default [`DEFAULT_REQUEST_TIMEOUT_MS`].
    pub request_timeout: Duration,
    /// Time-to-live of leases, whole seconds. Default [`DEFAULT_LEASE_TTL_S`].
    pub lease_ttl: Duration,
    /// Time every live host has to vote. Default [`DEFAULT_VOTE_TIMEOUT_MS`].
    pub vote_timeout: Duration,
    /// Time a change waits for every live host to confirm it. Default [`DEFAULT_WAIT_MS`].
    pub wait: Duration,
    /// Interval of the check of what is applied against etcd. Default
    /// [`DEFAULT_CHECK_INTERVAL_MS`].
    pub check_interval: Duration,
}

/// TLS files for etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate(s) that sign etcd's server certificates.
    pub ca: PathBuf,
    /// Client certificate and key, when etcd asks for one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// etcd's user authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    /// The etcd user.
    pub user: String,
    /// A file whose first line is the password (kept out of the config file).
    pub password_file: PathBuf,
}

impl EtcdConfig {
    /// Endpoints and prefix with every timing at its default, no TLS, no authentication.
    pub fn new(endpoints: Vec<String>, prefix: String) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            prefix,
            tls: None,
            auth: None,
            dial_timeout: Duration::from_millis(DEFAULT_DIAL_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            lease_ttl: Duration::from_secs(DEFAULT_LEASE_TTL_S),
            vote_timeout: Duration::from_millis(DEFAULT_VOTE_TIMEOUT_MS),
            wait: Duration::from_millis(DEFAULT_WAIT_MS),
            check_interval: Duration::from_millis(DEFAULT_CHECK_INTERVAL_MS),
        }
    }

    /// What is wrong with the endpoints, prefix and TLS settings, one line each; the
    /// config file and the command line both check with this.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            out.push(format!(
                "endpoints: {} given, 1..={MAX_ENDPOINTS} expected",
                self.endpoints.len()
            ));
        }
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            let ok = rest.is_some_and(|r| {
                r.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|n| n > 0))
            });
            if !ok {
                out.push(format!(
                    "endpoints: {e:?} is not http://host:port or https://host:port"
                ));
            }
            if e.starts_with("https://") && self.tls.is_none() {
                out.push(format!("endpoints: {e:?} needs ca (TLS to etcd)"));
            }
        }
        let p = &self.prefix;
        let prefix_ok = p.len() >= 2
            && p.len() <= MAX_PREFIX
            && p.starts_with('/')
            && !p.ends_with('/')
            && !p.contains("//")
            && p.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            out.push(format!(
                "prefix: {p:?} must start with '/', not end with '/', have no empty segment \
                 and be 2..={MAX_PREFIX} printable characters"
            ));
        }
        out
    }
}
