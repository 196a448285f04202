//! Map files: the token rules for keys and values, parsing rendered map text into entries,
//! and writing entries back as text.
//!
//! A map is treated as a dictionary (exact-match `map()` lookups): one value per key,
//! duplicate keys refused. Keys and values are single tokens of printable ASCII without
//! whitespace, `#`, `;`, `\`, quotes or control characters, because the HAProxy CLI splits
//! on spaces and treats `;` and `\` specially, and both proxies treat `#` as a comment.
//!
//! Each proxy writes a line its own way ([`MapSyntax`]): HAProxy `key value`, Nginx
//! `key value;` (the lines of a `map` block, pulled in with `include`). Nginx also gives
//! some keys and values a meaning of their own, which are refused so that every entry is
//! the plain string match it looks like: the keys `default`, `include`, `hostnames` and
//! `volatile` are parameters of the block, a key starting with `~` is a regular expression,
//! a value containing `$` names a variable, and `{` / `}` delimit blocks.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Longest key or value accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Entries of one map, by key.
pub type MapEntries = BTreeMap<String, String>;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is the empty string.
    #[error("is empty")]
    Empty,
    /// The token is longer than [`MAX_TOKEN_LEN`]; holds its length in bytes.
    #[error("is {0} bytes long (at most {MAX_TOKEN_LEN})")]
    TooLong(usize),
    /// The token holds a character the proxies would split on or read specially; holds the
    /// character as shown to people (`' '`, `a NUL byte`, `U+00E9`) and its byte offset.
    #[error("contains {0} at byte {1}; only printable ASCII without whitespace, '#', ';', '\\' or quotes is allowed")]
    BadChar(String, usize),
    /// The token is valid text but means something else to the proxy (an Nginx `map`
    /// parameter, a regular expression, a variable); holds the explanation.
    #[error("{0}")]
    Reserved(String),
}

/// How a proxy writes one map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapSyntax {
    /// `key value`, one per line (HAProxy map files).
    Haproxy,
    /// `key value;`, one per line (lines of an Nginx `map` block).
    Nginx,
}

/// Words that are parameters of an Nginx `map` block, not keys.
const NGINX_MAP_WORDS: &[&str] = &["default", "include", "hostnames", "volatile"];

impl MapSyntax {
    /// Checks that `s` can be a key of a map in this syntax.
    pub fn check_key(self, s: &str) -> Result<(), TokenError> {
        check_token(s)?;
        if self == MapSyntax::Nginx {
            if NGINX_MAP_WORDS.contains(&s) {
                return Err(TokenError::Reserved(format!(
                    "is a parameter of an nginx map block ({}), not a key",
                    NGINX_MAP_WORDS.join(", ")
                )));
            }
            if s.starts_with('~') {
                return Err(TokenError::Reserved(
                    "starts with '~', which makes it a regular expression in an nginx map".into(),
                ));
            }
            nginx_braces(s)?;
        }
        Ok(())
    }

    /// Checks that `s` can be a value of a map in this syntax.
    pub fn check_value(self, s: &str) -> Result<(), TokenError> {
        check_token(s)?;
        if self == MapSyntax::Nginx {
            if let Some(i) = s.find('$') {
                return Err(TokenError::Reserved(format!(
                    "contains '$' at byte {i}, which names a variable in an nginx map value"
                )));
            }
            nginx_braces(s)?;
        }
        Ok(())
    }

    /// Parses map text: one entry per line; blank lines and lines starting with `#` are
    /// skipped. Line numbers in errors start at 1.
    pub fn parse(self, text: &str) -> Result<MapEntries, MapError> {
        parse_lines(text, self)
    }

    /// Writes entries as map text, one line each, in key order.
    pub fn to_text(self, entries: &MapEntries) -> String {
        let end = match self {
            MapSyntax::Haproxy => "",
            MapSyntax::Nginx => ";",
        };
        let mut s = String::with_capacity(entries.len() * 32);
        for (k, v) in entries {
            let _ = writeln!(s, "{k} {v}{end}");
        }
        s
    }
}

fn nginx_braces(s: &str) -> Result<(), TokenError> {
    match s.find(['{', '}']) {
        Some(i) => Err(TokenError::Reserved(format!(
            "contains a brace at byte {i}, which nginx reads as a block delimiter"
        ))),
        None => Ok(()),
    }
}

/// Checks that `s` can be a map key or value.
pub fn check_token(s: &str) -> Result<(), TokenError> {
    if s.is_empty() {
        return Err(TokenError::Empty);
    }
    if s.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(s.len()));
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii_graphic() || matches!(c, '#' | ';' | '\\' | '"' | '\''))
    {
        let shown = match c {
            ' ' => "a space".to_owned(),
            '\t' => "a tab".to_owned(),
            '\n' => "a newline".to_owned(),
            '\r' => "a carriage return".to_owned(),
            '\0' => "a NUL byte".to_owned(),
            c if c.is_control() || !c.is_ascii() => format!("U+{:04X}", c as u32),
            c => format!("{c:?}"),
        };
        return Err(TokenError::BadChar(shown, i));
    }
    Ok(())
}

/// Checks that `s` is a name: 1 to 64 of `[A-Za-z0-9_.-]`, as used for services, backends,
/// servers and file names in templates.
pub fn check_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() || s.len() > 64 {
        return Err(NameError::Length(s.to_owned()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(NameError::Char(s.to_owned(), c));
    }
    Ok(())
}

/// A string that is not a name (see [`check_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than 64 characters.
    #[error("{0:?} must be 1 to 64 characters")]
    Length(String),
    /// It contains a character names do not use.
    #[error("{0:?} contains {1:?}; names use only letters, digits, '_', '.' and '-'")]
    Char(String, char),
}

/// A map line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The key is not a valid token for this syntax.
    #[error("line {line}: key {reason}")]
    BadKey {
        /// Line number, from 1.
        line: usize,
        /// Why the key was refused.
        reason: TokenError,
    },
    /// The value is not a valid token for this syntax.
    #[error("line {line}: value {reason}")]
    BadValue {
        /// Line number, from 1.
        line: usize,
        /// Why the value was refused.
        reason: TokenError,
    },
    /// The line has a key and nothing after it.
    #[error("line {line}: key {key:?} has no value")]
    MissingValue {
        /// Line number, from 1.
        line: usize,
        /// The key (empty for a line that is only `;`).
        key: String,
    },
    /// The line has more than two fields.
    #[error("line {line}: more than one value for key {key:?}")]
    ExtraField {
        /// Line number, from 1.
        line: usize,
        /// The line's key.
        key: String,
    },
    /// An Nginx entry without its closing `;`.
    #[error("line {line}: entry for key {key:?} does not end with ';'")]
    Unterminated {
        /// Line number, from 1.
        line: usize,
        /// The line's first field.
        key: String,
    },
    /// A key that an earlier line already has: a map holds one value per key.
    #[error("line {line}: key {key:?} already appears on line {first}")]
    Duplicate {
        /// Line number of the repeat, from 1.
        line: usize,
        /// Line number of the first occurrence, from 1.
        first: usize,
        /// The repeated key.
        key: String,
    },
}

fn parse_lines(text: &str, syntax: MapSyntax) -> Result<MapEntries, MapError> {
    let mut out = MapEntries::new();
    let mut first_line: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if syntax == MapSyntax::Nginx {
            trimmed = match trimmed.strip_suffix(';') {
                Some(t) => t.trim_end(),
                None => {
                    return Err(MapError::Unterminated {
                        line,
                        key: trimmed.split_ascii_whitespace().next().unwrap_or("").into(),
                    })
                }
            };
        }
        let mut fields = trimmed.split_ascii_whitespace();
        let key = fields.next().ok_or_else(|| MapError::MissingValue {
            line,
            key: String::new(),
        })?;
        syntax
            .check_key(key)
            .map_err(|reason| MapError::BadKey { line, reason })?;
        let value = fields.next().ok_or_else(|| MapError::MissingValue {
            line,
            key: key.to_owned(),
        })?;
        syntax
            .check_value(value)
            .map_err(|reason| MapError::BadValue { line, reason })?;
        if fields.next().is_some() {
            return Err(MapError::ExtraField {
                line,
                key: key.to_owned(),
            });
        }
        if let Some(&first) = first_line.get(key) {
            return Err(MapError::Duplicate {
                line,
                first,
                key: key.to_owned(),
            });
        }
        first_line.insert(key, line);
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// The per-key edits that turn `from` into `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapDiff {
    /// Keys to add, with their value.
    pub added: Vec<(String, String)>,
    /// Keys whose value changes, with the new value.
    pub changed: Vec<(String, String)>,
    /// Keys to remove.
    pub removed: Vec<String>,
}

impl MapDiff {
    /// The edits from `from` to `to`, each list in key order; empty when they are equal.
    pub fn between(from: &MapEntries, to: &MapEntries) -> MapDiff {
        let mut d = MapDiff::default();
        for (k, v) in to {
            match from.get(k) {
                None => d.added.push((k.clone(), v.clone())),
                Some(old) if old != v => d.changed.push((k.clone(), v.clone())),
                Some(_) => {}
            }
        }
        d.removed = from
            .keys()
            .filter(|k| !to.contains_key(*k))
            .cloned()
            .collect();
        d
    }

    /// Number of per-key edits.
    pub fn len(&self) -> usize {
        self.added.len() + self.changed.len() + self.removed.len()
    }

    /// Whether there is nothing to edit: `from` and `to` hold the same entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(check_token("www.example.com").is_ok());
        assert!(check_token("/api/v1").is_ok());
        for bad in [
            "", "a b", "a\tb", "a\nb", "#a", "a;b", "a\\b", "a\"b", "é", "a\0",
        ] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            check_token(&"x".repeat(MAX_TOKEN_LEN + 1)),
            Err(TokenError::TooLong(_))
        ));
        assert_eq!(
            check_token("a b").unwrap_err().to_string(),
            "contains a space at byte 1; only printable ASCII without whitespace, '#', ';', '\\' or quotes is allowed"
        );
    }

    #[test]
    fn names() {
        assert!(check_name("web_blue-1.x").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    fn parse(text: &str) -> Result<MapEntries, MapError> {
        MapSyntax::Haproxy.parse(text)
    }

    #[test]
    fn parse_and_print() {
        let m = parse("# comment\n\na.example svc_a\n  b.example   svc_b  \n").unwrap();
        assert_eq!(m.len(), 2);
        let text = MapSyntax::Haproxy.to_text(&m);
        assert_eq!(text, "a.example svc_a\nb.example svc_b\n");
        assert_eq!(parse(&text).unwrap(), m);
    }

    #[test]
    fn nginx_lines_end_with_a_semicolon() {
        let n = MapSyntax::Nginx;
        let m = n
            .parse("# c\na.example svc_a;\n b.example  svc_b ;\n")
            .unwrap();
        assert_eq!(n.to_text(&m), "a.example svc_a;\nb.example svc_b;\n");
        assert_eq!(n.parse(&n.to_text(&m)).unwrap(), m);
        assert!(matches!(
            n.parse("a.example svc_a\n"),
            Err(MapError::Unterminated { line: 1, .. })
        ));
        // HAProxy would read the ';' as part of the value: refused there.
        assert!(matches!(
            parse("a.example svc_a;\n"),
            Err(MapError::BadValue { line: 1, .. })
        ));
    }

    #[test]
    fn nginx_refuses_what_a_map_block_reads_differently() {
        let n = MapSyntax::Nginx;
        for key in ["default", "include", "hostnames", "volatile", "~^a", "a{b"] {
            assert!(n.check_key(key).is_err(), "{key}");
            assert!(MapSyntax::Haproxy.check_key(key).is_ok(), "{key}");
        }
        assert!(n.check_value("$host").is_err());
        assert!(n.check_value("a}").is_err());
        assert!(n.check_key("www.example.com").is_ok());
        assert!(n.check_value("web_blue").is_ok());
        let e = n.parse("default web;\n").unwrap_err().to_string();
        assert!(e.contains("parameter of an nginx map block"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_line() {
        assert_eq!(
            parse("a x\nb\n").unwrap_err(),
            MapError::MissingValue {
                line: 2,
                key: "b".into()
            }
        );
        assert!(matches!(
            parse("a x\na y\n").unwrap_err(),
            MapError::Duplicate {
                line: 2,
                first: 1,
                ..
            }
        ));
        assert!(matches!(
            parse("a x y\n").unwrap_err(),
            MapError::ExtraField { line: 1, .. }
        ));
        assert!(matches!(
            parse("a;b x\n").unwrap_err(),
            MapError::BadKey { line: 1, .. }
        ));
    }

    #[test]
    fn diff_counts() {
        let a = parse("k1 v1\nk2 v2\nk3 v3\n").unwrap();
        let b = parse("k1 v1\nk2 vX\nk4 v4\n").unwrap();
        let d = MapDiff::between(&a, &b);
        assert_eq!(d.added, vec![("k4".into(), "v4".into())]);
        assert_eq!(d.changed, vec![("k2".into(), "vX".into())]);
        assert_eq!(d.removed, vec!["k3".to_owned()]);
        assert_eq!(d.len(), 3);
        assert!(MapDiff::between(&a, &a).is_empty());
    }
}
