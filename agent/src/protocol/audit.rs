//! What a requester says along with a routing change besides the change itself
//! ([`Terms`]): why it asks (`reason`, journaled on every host the change reaches) and the
//! generation it expects the state to be at (`if_generation`, refused when the state moved
//! on). Both travel on the wire as flat fields of the change (`{"cmd": "switch", ...,
//! "reason": "CHG-1234", "if_generation": 41}`), in the peers' `prepare` and in the fleet
//! store's proposal; both are absent by default, so older requests and records still parse.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest `reason`, in bytes.
pub const MAX_REASON_BYTES: usize = 256;

/// Why a change was asked for (a ticket, a sentence): 1 to [`MAX_REASON_BYTES`] bytes of
/// printable text, no control characters (a newline included). Checked when it is made, so
/// a reason held anywhere is a valid one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReasonText(String);

/// A `reason` that is not one: empty, too long, or with control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReason {
    /// Nothing but white space.
    #[error("reason is empty")]
    Empty,
    /// Longer than [`MAX_REASON_BYTES`].
    #[error("reason is {0} bytes long, more than {MAX_REASON_BYTES}")]
    TooLong(usize),
    /// A control character (newline, tab, escape...) at a byte offset.
    #[error("reason holds a control character (U+{code:04X}) at byte {at}: only printable text")]
    Control {
        /// The character's code point.
        code: u32,
        /// Its byte offset in the reason.
        at: usize,
    },
}

impl TryFrom<String> for ReasonText {
    type Error = BadReason;

    fn try_from(s: String) -> Result<ReasonText, BadReason> {
        if s.len() > MAX_REASON_BYTES {
            return Err(BadReason::TooLong(s.len()));
        }
        if let Some((at, c)) = s.char_indices().find(|(_, c)| c.is_control()) {
            return Err(BadReason::Control { code: c as u32, at });
        }
        if s.trim().is_empty() {
            return Err(BadReason::Empty);
        }
        Ok(ReasonText(s))
    }
}

impl std::str::FromStr for ReasonText {
    type Err = BadReason;

    fn from_str(s: &str) -> Result<ReasonText, BadReason> {
        ReasonText::try_from(s.to_owned())
    }
}

impl From<ReasonText> for String {
    fn from(r: ReasonText) -> String {
        r.0
    }
}

impl ReasonText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReasonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The terms of a routing change: why, and on which generation. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// Why the change is asked for; journaled with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonText>,
    /// Refuse the change unless the state is at this generation: the local state's
    /// `generation` for a change on one host, the cluster generation for a cluster change
    /// (`--cluster`), the fleet generation for a fleet change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_generation: Option<u64>,
}

impl Terms {
    /// The wire fields of the terms.
    pub const FIELDS: [&'static str; 2] = ["reason", "if_generation"];

    /// The terms with only a reason (a change the agent carries for someone else, whose
    /// generation was checked where it was asked).
    pub fn reason_only(&self) -> Terms {
        Terms {
            reason: self.reason.clone(),
            if_generation: None,
        }
    }
}

/// A change refused because the state is no longer at the generation the requester read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {what} is at generation {actual}, not {expected} (if_generation): it changed since \
     it was read; read it again and decide anew"
)]
pub struct StaleGeneration {
    /// Which generation: `state` (one host), `cluster generation`, `fleet generation`.
    pub what: &'static str,
    /// The generation the requester expected.
    pub expected: u64,
    /// The generation the state is at.
    pub actual: u64,
}

impl StaleGeneration {
    /// `Err` when `expected` is given and is not `actual`.
    pub fn check(what: &'static str, expected: Option<u64>, actual: u64) -> Result<(), Self> {
        match expected {
            Some(expected) if expected != actual => Err(StaleGeneration {
                what,
                expected,
                actual,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_bounded_printable_text() {
        let ok: ReasonText = "CHG-1234: roll out 2.3 (é ✓)".parse().unwrap();
        assert_eq!(ok.as_str(), "CHG-1234: roll out 2.3 (é ✓)");
        assert!("x".repeat(MAX_REASON_BYTES).parse::<ReasonText>().is_ok());
        assert_eq!(
            "x".repeat(MAX_REASON_BYTES + 1).parse::<ReasonText>(),
            Err(BadReason::TooLong(MAX_REASON_BYTES + 1))
        );
        assert_eq!(
            "two\nlines".parse::<ReasonText>(),
            Err(BadReason::Control { code: 10, at: 3 })
        );
        assert!("\u{1b}[31mred".parse::<ReasonText>().is_err());
        assert_eq!("  ".parse::<ReasonText>(), Err(BadReason::Empty));
        let e = serde_json::from_str::<Terms>(r#"{"reason":"a\tb"}"#).unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
    }

    #[test]
    fn a_stale_generation_names_both() {
        assert!(StaleGeneration::check("state", None, 7).is_ok());
        assert!(StaleGeneration::check("state", Some(7), 7).is_ok());
        let e = StaleGeneration::check("state", Some(6), 7).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the state is at generation 7, not 6 (if_generation): it changed since it was \
             read; read it again and decide anew"
        );
    }
}
