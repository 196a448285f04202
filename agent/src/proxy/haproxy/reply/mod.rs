//! Pure parsers of the text HAProxy answers on its admin socket and master CLI (no I/O).
//!
//! Formats are those of HAProxy 2.6; where 2.7+ differs (the `reload` reply), both are
//! understood. Every parser either returns typed data or a [`ReplyError`] carrying the reply.
//!
//! One file per family of replies: `maps` (`show map`, `prepare map`), `servers`
//! (`show backend`, `show servers state`, `show stat`) and `proc` (the master's `show
//! proc` and `reload`), `info` (`show info`); the error and the helpers all of them share are here.

mod info;
mod maps;
mod proc;
mod servers;

use thiserror::Error;

pub use self::info::{parse_show_info, ProcessInfo};
pub use self::maps::{
    parse_map_entries, parse_map_line, parse_map_list, parse_prepared_version, MapInfo, MapLine,
};
pub use self::proc::{
    is_reload_busy, parse_reload_verdict, parse_show_proc, ProcEntry, ProcEpoch, ProcTable,
};
pub use self::servers::{parse_backend_stat, parse_backends, parse_servers_state, ServerState};

/// Longest piece of a reply kept inside an error, in bytes. Error replies of HAProxy are one
/// or two lines; anything longer is an unexpected reply and is cut here so errors stay small.
pub const MAX_REPLY_IN_ERROR: usize = 2048;

/// A reply that does not say what the caller needed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// HAProxy answered with its own error text (e.g. `Key not found.`).
    #[error("HAProxy refused it: {reply}")]
    Refused {
        /// HAProxy's text, trimmed.
        reply: String,
    },
    /// Zero bytes: HAProxy dropped the command (e.g. its payload exceeded `tune.bufsize`).
    #[error("HAProxy sent an empty reply (command or payload dropped)")]
    Empty,
    /// A reply that is neither the expected format nor a recognisable error.
    #[error("unexpected reply ({what}): {reply:?}")]
    Unexpected {
        /// What was being parsed, e.g. `show map list`.
        what: &'static str,
        /// The reply (cut to [`MAX_REPLY_IN_ERROR`] bytes).
        reply: String,
    },
}

impl ReplyError {
    fn unexpected(what: &'static str, reply: &str) -> Self {
        ReplyError::Unexpected {
            what,
            reply: clip(reply).to_owned(),
        }
    }

    fn refused(reply: &str) -> Self {
        ReplyError::Refused {
            reply: clip(reply.trim()).to_owned(),
        }
    }
}

/// `reply` cut to at most [`MAX_REPLY_IN_ERROR`] bytes, on a character boundary.
pub fn clip(reply: &str) -> &str {
    if reply.len() <= MAX_REPLY_IN_ERROR {
        return reply;
    }
    let mut end = MAX_REPLY_IN_ERROR;
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    &reply[..end]
}

/// True when HAProxy says a command did not fit its buffer: "The command is too big for
/// the buffer size" (3.0, and 3.2 with upstream fix ebb801d7c) or "The command line is too
/// big for the buffer size". The command was not executed. (2.6 answers nothing instead.)
pub fn is_too_big(reply: &str) -> bool {
    reply.contains("too big for the buffer size")
}

/// Checks the reply of a mutating command (`set map`, `add map`, `del map`, `commit map`,
/// `clear map`, `set weight`, `set server ... state`): success is exactly `"\n"`.
pub fn check_mutation(reply: &str) -> Result<(), ReplyError> {
    match reply {
        "\n" => Ok(()),
        "" => Err(ReplyError::Empty),
        text if text.trim().is_empty() => Err(ReplyError::unexpected("mutation", text)),
        text => Err(ReplyError::refused(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_success_is_a_single_newline() {
        assert_eq!(check_mutation("\n"), Ok(()));
        assert_eq!(check_mutation(""), Err(ReplyError::Empty));
        assert_eq!(
            check_mutation("Key not found.\n\n"),
            Err(ReplyError::Refused {
                reply: "Key not found.".into()
            })
        );
        assert!(matches!(
            check_mutation("\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
        let unknown = "Unknown command, but maybe one of the following ones is a better match:\n  add map ...\n\n";
        assert!(
            matches!(check_mutation(unknown), Err(ReplyError::Refused { reply }) if reply.starts_with("Unknown command"))
        );
    }

    #[test]
    fn too_big_in_both_wordings() {
        assert!(is_too_big("The command is too big for the buffer size. Please change tune.bufsize in the configuration to use a bigger command.\n\n"));
        assert!(is_too_big(
            "The command line is too big for the buffer size.\n"
        ));
        assert!(!is_too_big("\n"));
        assert!(!is_too_big("Key not found.\n"));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let long = "é".repeat(MAX_REPLY_IN_ERROR);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_REPLY_IN_ERROR);
        assert!(clipped.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }
}
