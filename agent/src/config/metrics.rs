//! The `[metrics]` table: where the Prometheus endpoint listens. The endpoint has no
//! authentication, so it listens on loopback unless the config says `allow_remote = true`.

use std::net::SocketAddr;

use serde::Deserialize;

/// Address suggested for the endpoint (the packaged config uses it).
pub const SUGGESTED_METRICS_LISTEN: &str = "127.0.0.1:9713";

/// The validated `[metrics]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Address of the HTTP endpoint serving `GET /metrics`. Default: none (the endpoint is
    /// off; `cutover metrics` still works over the control socket).
    pub listen: Option<SocketAddr>,
    /// Whether `listen` may be a non-loopback address. Default false.
    pub allow_remote: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
}

/// Validates the table, adding every problem found to `problems`.
pub(super) fn validate(raw: RawMetrics, problems: &mut Vec<String>) -> Metrics {
    let listen = raw.listen.and_then(|text| match text.parse::<SocketAddr>() {
        Err(_) => {
            problems.push(format!(
                "metrics.listen: {text:?} is not an IP address and port (e.g. \"{SUGGESTED_METRICS_LISTEN}\")"
            ));
            None
        }
        Ok(addr) if addr.port() == 0 => {
            problems.push(format!("metrics.listen: {text:?} needs a port other than 0"));
            None
        }
        Ok(addr) if !addr.ip().is_loopback() && !raw.allow_remote => {
            problems.push(format!(
                "metrics.listen: {addr} is not a loopback address; the endpoint has no \
                 authentication, so set metrics.allow_remote = true to serve it beyond this host"
            ));
            None
        }
        Ok(addr) => Some(addr),
    });
    Metrics {
        listen,
        allow_remote: raw.allow_remote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Metrics, Vec<String>> {
        let raw: RawMetrics = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let m = validate(raw, &mut problems);
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn off_by_default() {
        assert_eq!(check("").unwrap(), Metrics::default());
    }

    #[test]
    fn loopback_addresses_are_accepted() {
        for addr in ["127.0.0.1:9713", "127.0.0.53:80", "[::1]:9713"] {
            let m = check(&format!("listen = {addr:?}")).unwrap();
            assert_eq!(m.listen, Some(addr.parse().unwrap()));
        }
    }

    #[test]
    fn remote_needs_allow_remote() {
        for addr in ["0.0.0.0:9713", "192.0.2.10:9713", "[::]:9713"] {
            let e = check(&format!("listen = {addr:?}")).unwrap_err();
            assert!(e[0].contains("not a loopback address"), "{e:?}");
            let m = check(&format!("listen = {addr:?}\nallow_remote = true")).unwrap();
            assert_eq!(m.listen, Some(addr.parse().unwrap()));
        }
    }

    #[test]
    fn packaged_example_serves_on_loopback() {
        let text = include_str!("../../../examples/cutover.toml");
        let path = std::path::Path::new("/etc/cutover/cutover.toml");
        let config = crate::config::Config::from_toml(path, text).unwrap();
        let expected: SocketAddr = SUGGESTED_METRICS_LISTEN.parse().unwrap();
        assert_eq!(config.metrics.listen, Some(expected));
        assert!(!config.metrics.allow_remote);
    }

    #[test]
    fn bad_addresses_are_named() {
        let e = check("listen = \"localhost:9713\"").unwrap_err();
        assert!(e[0].contains("is not an IP address and port"), "{e:?}");
        let e = check("listen = \"127.0.0.1:0\"").unwrap_err();
        assert!(e[0].contains("port other than 0"), "{e:?}");
        let e = check("listen = \"127.0.0.1:9713\"\nport = 1").unwrap_err();
        assert!(e[0].contains("unknown field `port`"), "{e:?}");
    }
}
