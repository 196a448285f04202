//! Checking arguments before they are sent: the HAProxy CLI splits on spaces and treats
//! `;`, `\`, `#`, quotes, `<<` and a leading `@` specially, so a value containing them
//! would be misread. Refused arguments fail with [`AdminError::InvalidArgument`].

use super::{AdminClient, AdminError, MAX_CHUNK_BYTES};
use crate::proxy::haproxy::reply;

impl AdminClient {
    pub(super) fn check_token(
        &self,
        command: &str,
        what: &'static str,
        value: &str,
    ) -> Result<(), AdminError> {
        check_token(value).map_err(|reason| self.invalid(command, what, value, reason))
    }

    pub(super) fn check_name(
        &self,
        command: &str,
        what: &'static str,
        value: &str,
    ) -> Result<(), AdminError> {
        check_name(value).map_err(|reason| self.invalid(command, what, value, reason))
    }

    pub(super) fn check_entry(
        &self,
        command: &str,
        map: &str,
        key: &str,
        value: &str,
    ) -> Result<(), AdminError> {
        self.check_token(command, "map", map)?;
        self.check_token(command, "key", key)?;
        self.check_token(command, "value", value)
    }

    pub(super) fn invalid(
        &self,
        command: &str,
        what: &'static str,
        value: &str,
        reason: &'static str,
    ) -> AdminError {
        AdminError::InvalidArgument {
            path: self.path.clone(),
            // The command line may embed the offending value; it is shown via `value`.
            command: command.split(' ').take(2).collect::<Vec<_>>().join(" "),
            what,
            value: reply::clip(value).to_owned(),
            reason,
        }
    }
}

/// Checks a map name, key or value: one CLI word that HAProxy takes literally.
fn check_token(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.len() > MAX_CHUNK_BYTES {
        return Err("is longer than 8 KiB");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character");
    }
    if value.contains([';', '\\', '#', '"', '\'']) {
        return Err("contains one of ; \\ # \" ' (interpreted by the HAProxy CLI)");
    }
    if value.contains("<<") {
        return Err("contains \"<<\" (the HAProxy CLI payload marker)");
    }
    if value.starts_with('@') {
        return Err("starts with '@' (a map version marker for the HAProxy CLI)");
    }
    Ok(())
}

/// Checks a backend or server name: HAProxy allows letters, digits and `-_.:`.
fn check_name(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err("may only contain letters, digits and - _ . :");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_the_cli_would_misread_are_refused() {
        for ok in [
            "a.example",
            "svc_a",
            "/etc/haproxy/routes.map",
            "x=1&y<2",
            "é",
        ] {
            assert_eq!(check_token(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "a b", "a\tb", "a\nb", "a;b", "a\\b", "a#b", "a\"b", "a'b", "a<<", "@1", "a\u{7f}",
        ] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert!(check_token(&"x".repeat(MAX_CHUNK_BYTES + 1)).is_err());
    }

    #[test]
    fn names_are_haproxy_identifiers() {
        assert_eq!(check_name("be_blue-1.a:b"), Ok(()));
        for bad in ["", "be/s1", "be blue", "be;x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn invalid_arguments_are_refused_before_connecting() {
        let client = AdminClient::new("/nonexistent/admin.sock");
        let err = client.set_map("/m.map", "a;b", "v").await.unwrap_err();
        assert!(
            matches!(&err, AdminError::InvalidArgument { what: "key", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/admin.sock"), "{err}");
        let entries = vec![("k".to_owned(), "v w".to_owned())];
        let err = client.replace_map("/m.map", &entries).await.unwrap_err();
        assert!(
            matches!(err, AdminError::InvalidArgument { what: "value", .. }),
            "{err}"
        );
        let long = vec![("k".to_owned(), "v".repeat(MAX_CHUNK_BYTES - 10))];
        let err = client.replace_map("/m.map", &long).await.unwrap_err();
        assert!(
            matches!(err, AdminError::EntryTooLong { index: 0, .. }),
            "{err}"
        );
    }
}
