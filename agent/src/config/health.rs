//! The `[services.health]` table of a service: how the proxy itself checks the servers of
//! both colours (HAProxy's active checks: `check`, `inter`, `rise`, `fall` and an optional
//! HTTP check; Nginx's passive checks: `max_fails`, `fail_timeout`), and `drain_timeout_ms`,
//! the end of a drain. The templates render them; the agent reads the result back
//! (`engine::health`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ProxyKind;

/// Default time between two checks of one server (HAProxy `inter`), milliseconds.
pub const DEFAULT_INTER_MS: u64 = 2_000;
/// Default consecutive passed checks that bring a server up (HAProxy `rise`).
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failed checks that take a server down (HAProxy `fall`).
pub const DEFAULT_FALL: u32 = 3;
/// Default status an HTTP check expects (HAProxy `http-check expect status`).
pub const DEFAULT_CHECK_STATUS: u16 = 200;
/// Default failed attempts within `fail_timeout_s` that take a server out (Nginx
/// `max_fails`).
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// Default window of `max_fails`, and how long a failed server stays out (Nginx
/// `fail_timeout`), seconds.
pub const DEFAULT_FAIL_TIMEOUT_S: u64 = 10;
/// Longest `drain_timeout_ms`: a week, in milliseconds.
pub const MAX_DRAIN_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;

/// Health checks of one service's servers (`[services.health]`), both colours alike. With
/// `kind = "haproxy"` every rendered `server` line gets `check inter .. rise .. fall ..`,
/// and the backend an HTTP check when `http_path` is set; with `kind = "nginx"` every
/// `server` line gets `max_fails=.. fail_timeout=..` (open-source Nginx has passive checks
/// only). A field of the other proxy is refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// HAProxy: time between two checks of a server, milliseconds (100 to 3,600,000).
    /// Default [`DEFAULT_INTER_MS`].
    pub inter_ms: Option<u64>,
    /// HAProxy: passed checks in a row that bring a server up (1 to 100). Default
    /// [`DEFAULT_RISE`].
    pub rise: Option<u32>,
    /// HAProxy: failed checks in a row that take a server down (1 to 100). Default
    /// [`DEFAULT_FALL`].
    pub fall: Option<u32>,
    /// HAProxy: the path of an HTTP check (`option httpchk GET <path>`); a TCP connect
    /// check when unset.
    pub http_path: Option<String>,
    /// HAProxy: the status the HTTP check expects. Default [`DEFAULT_CHECK_STATUS`]; only
    /// with `http_path`.
    pub expect_status: Option<u16>,
    /// Nginx: failed attempts within `fail_timeout_s` that take a server out (0 to 100;
    /// 0 turns the accounting off). Default [`DEFAULT_MAX_FAILS`].
    pub max_fails: Option<u32>,
    /// Nginx: the window of `max_fails` and how long a failed server stays out, seconds
    /// (1 to 3600; Nginx takes whole seconds). Default [`DEFAULT_FAIL_TIMEOUT_S`].
    pub fail_timeout_s: Option<u64>,
}

/// The health checks as the templates see them (`service.health`): every value resolved,
/// the other proxy's left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HealthChecks {
    /// HAProxy's active checks.
    Haproxy {
        /// Milliseconds between two checks.
        inter_ms: u64,
        /// Passed checks that bring a server up.
        rise: u32,
        /// Failed checks that take a server down.
        fall: u32,
        /// The HTTP check's path; a TCP check when `None`.
        http_path: Option<String>,
        /// The status the HTTP check expects.
        expect_status: u16,
    },
    /// Nginx's passive checks.
    Nginx {
        /// Failed attempts within `fail_timeout_s` that take a server out.
        max_fails: u32,
        /// Seconds.
        fail_timeout_s: u64,
    },
}

impl HealthConfig {
    /// The checks for `kind`, or every problem (`at` names the table).
    pub fn resolve(&self, kind: ProxyKind, at: &str) -> Result<HealthChecks, Vec<String>> {
        let mut p = Vec::new();
        let mut other = |field: &str, set: bool, proxy: &str, why: &str| {
            if set {
                p.push(format!(
                    "{at}.{field}: applies to kind = \"{proxy}\" only; {why}"
                ));
            }
        };
        let checks = match kind {
            ProxyKind::Haproxy => {
                let why = "HAProxy checks actively (inter_ms, rise, fall, http_path)";
                other("max_fails", self.max_fails.is_some(), "nginx", why);
                other(
                    "fail_timeout_s",
                    self.fail_timeout_s.is_some(),
                    "nginx",
                    why,
                );
                let inter_ms = self.inter_ms.unwrap_or(DEFAULT_INTER_MS);
                let rise = self.rise.unwrap_or(DEFAULT_RISE);
                let fall = self.fall.unwrap_or(DEFAULT_FALL);
                let expect_status = self.expect_status.unwrap_or(DEFAULT_CHECK_STATUS);
                if !(100..=3_600_000).contains(&inter_ms) {
                    p.push(format!(
                        "{at}.inter_ms: {inter_ms} is outside 100..=3600000"
                    ));
                }
                for (field, n) in [("rise", rise), ("fall", fall)] {
                    if !(1..=100).contains(&n) {
                        p.push(format!("{at}.{field}: {n} is outside 1..=100"));
                    }
                }
                if let Some(path) = &self.http_path {
                    if !path.starts_with('/')
                        || path.len() > 256
                        || path
                            .chars()
                            .any(|c| !c.is_ascii_graphic() || "#;\\\"'".contains(c))
                    {
                        p.push(format!(
                            "{at}.http_path: {path:?} must start with '/', be at most 256 bytes of \
                             printable ASCII, without spaces, '#', ';', '\\' or quotes"
                        ));
                    }
                } else if self.expect_status.is_some() {
                    p.push(format!(
                        "{at}.expect_status: needs http_path (without it the check is a TCP connect)"
                    ));
                }
                if !(100..=599).contains(&expect_status) {
                    p.push(format!(
                        "{at}.expect_status: {expect_status} is not an HTTP status"
                    ));
                }
                HealthChecks::Haproxy {
                    inter_ms,
                    rise,
                    fall,
                    http_path: self.http_path.clone(),
                    expect_status,
                }
            }
            ProxyKind::Nginx => {
                let why = "open-source Nginx has passive checks only (max_fails, fail_timeout_s)";
                other("inter_ms", self.inter_ms.is_some(), "haproxy", why);
                other("rise", self.rise.is_some(), "haproxy", why);
                other("fall", self.fall.is_some(), "haproxy", why);
                other("http_path", self.http_path.is_some(), "haproxy", why);
                other(
                    "expect_status",
                    self.expect_status.is_some(),
                    "haproxy",
                    why,
                );
                let max_fails = self.max_fails.unwrap_or(DEFAULT_MAX_FAILS);
                let fail_timeout_s = self.fail_timeout_s.unwrap_or(DEFAULT_FAIL_TIMEOUT_S);
                if max_fails > 100 {
                    p.push(format!("{at}.max_fails: {max_fails} is outside 0..=100"));
                }
                if !(1..=3600).contains(&fail_timeout_s) {
                    p.push(format!(
                        "{at}.fail_timeout_s: {fail_timeout_s} is outside 1..=3600"
                    ));
                }
                HealthChecks::Nginx {
                    max_fails,
                    fail_timeout_s,
                }
            }
        };
        if p.is_empty() {
            Ok(checks)
        } else {
            Err(p)
        }
    }
}

/// `drain_timeout_ms` of a service, checked for `kind`: how long a drained colour may keep
/// its sessions before its servers go to maintenance.
pub fn drain_timeout(ms: u64, kind: ProxyKind, at: &str) -> Result<Duration, String> {
    if kind == ProxyKind::Nginx {
        return Err(format!(
            "{at}.drain_timeout_ms: applies to kind = \"haproxy\" only; Nginx has no runtime \
             server state: a drained colour's servers are already down in the rendered config, \
             and worker_shutdown_timeout bounds the requests the previous workers finish"
        ));
    }
    if ms > MAX_DRAIN_TIMEOUT_MS {
        return Err(format!(
            "{at}.drain_timeout_ms: {ms} is outside 0..={MAX_DRAIN_TIMEOUT_MS}"
        ));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> HealthConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn haproxy_defaults_and_bounds() {
        let h = parse("http_path = \"/healthz\"");
        assert_eq!(
            h.resolve(ProxyKind::Haproxy, "h").unwrap(),
            HealthChecks::Haproxy {
                inter_ms: DEFAULT_INTER_MS,
                rise: DEFAULT_RISE,
                fall: DEFAULT_FALL,
                http_path: Some("/healthz".into()),
                expect_status: 200,
            }
        );
        let bad = parse("inter_ms = 5\nrise = 0\nhttp_path = \"/a b\"\nexpect_status = 700");
        let p = bad.resolve(ProxyKind::Haproxy, "s.health").unwrap_err();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("s.health.inter_ms: 5 is outside"), "{p:?}");
        assert!(p.iter().any(|m| m.contains("http_path")), "{p:?}");
        let p = parse("expect_status = 204")
            .resolve(ProxyKind::Haproxy, "h")
            .unwrap_err();
        assert!(p[0].contains("needs http_path"), "{p:?}");
    }

    #[test]
    fn each_proxy_refuses_the_other_ones_fields() {
        let p = parse("max_fails = 2")
            .resolve(ProxyKind::Haproxy, "h")
            .unwrap_err();
        assert!(
            p[0].starts_with("h.max_fails: applies to kind = \"nginx\" only"),
            "{p:?}"
        );
        let p = parse("rise = 2\nhttp_path = \"/\"")
            .resolve(ProxyKind::Nginx, "h")
            .unwrap_err();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(
            parse("max_fails = 3\nfail_timeout_s = 5")
                .resolve(ProxyKind::Nginx, "h")
                .unwrap(),
            HealthChecks::Nginx {
                max_fails: 3,
                fail_timeout_s: 5
            }
        );
        assert!(parse("fail_timeout_s = 0")
            .resolve(ProxyKind::Nginx, "h")
            .is_err());
        assert!(toml::from_str::<HealthConfig>("check = true").is_err());
    }

    #[test]
    fn drain_timeout_is_haproxy_only_and_bounded() {
        assert_eq!(
            drain_timeout(30_000, ProxyKind::Haproxy, "s"),
            Ok(Duration::from_secs(30))
        );
        assert!(drain_timeout(MAX_DRAIN_TIMEOUT_MS + 1, ProxyKind::Haproxy, "s").is_err());
        let e = drain_timeout(1000, ProxyKind::Nginx, "s").unwrap_err();
        assert!(
            e.starts_with("s.drain_timeout_ms: applies to kind = \"haproxy\""),
            "{e}"
        );
    }
}
