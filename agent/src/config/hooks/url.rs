//! The address of a webhook: `http://` or `https://`, a host name or IP address, an
//! optional port, a path and query; no credentials, no fragment.

use std::fmt;

use super::MAX_URL_LEN;

/// An `http://` or `https://` address a webhook posts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl {
    /// Whether the connection is TLS (`https`).
    pub tls: bool,
    /// The host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// The port: given, or 80/443 by scheme.
    pub port: u16,
    /// The path and query, starting with `/` (`/` when the URL has none).
    pub path: String,
}

impl HookUrl {
    /// Parses `text`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<HookUrl, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("longer than {MAX_URL_LEN} bytes"));
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("contains {c:?}"));
        }
        let (tls, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        if text.contains('#') {
            return Err("has a fragment (#)".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err("has credentials before the host; use secret_file to sign".into());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or("has an unclosed [")?;
                addr.parse::<std::net::Ipv6Addr>()
                    .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
                (addr, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        {
            return Err(format!("host {host:?} is not a host name or IP address"));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("port {p:?} is not 1-65535")),
            },
        };
        Ok(HookUrl {
            tls,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

impl fmt::Display for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]:{}{}", self.host, self.port, self.path),
            false => write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |t: &str| HookUrl::parse(t).unwrap().to_string();
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(ok("https://h.test/a/b"), "https://h.test:443/a/b");
        assert_eq!(ok("http://h.test?q=1"), "http://h.test:80/?q=1");
        assert_eq!(ok("http://[::1]:9/x"), "http://[::1]:9/x");
        for (bad, why) in [
            ("h.test/x", "must start with"),
            ("http://", "has no host"),
            ("http://u:p@h.test/", "credentials"),
            ("http://h.test:0/", "port \"0\""),
            ("http://h.test:99999/", "port \"99999\""),
            ("http://h test/", "contains ' '"),
            ("http://h.test/#f", "fragment"),
            ("http://[::1/", "unclosed"),
            ("http://h_x.test/", "not a host name"),
        ] {
            let e = HookUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(HookUrl::parse(&format!("http://h.test/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }
}
