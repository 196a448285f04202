//! Why a change did not happen: the step of the flow that refused it, a kind that callers
//! branch on, a context for humans and the underlying error kept as the source.
//!
//! The text a client reads (`{step}: {context}: {source}`) is the whole story in one line,
//! as a reply or a journal line needs it; [`std::error::Error::source`] keeps the
//! underlying error (a state refusal, a proxy error, an I/O error) for callers that inspect
//! it.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::protocol::Step;

/// What went wrong, for callers that act on it; the [`Step`] says where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The requester may not run the command.
    Denied,
    /// The desired state refuses the request (unknown service, nothing to roll back, a
    /// canary on the live colour...); the source is the [`crate::state::StateError`].
    Refused,
    /// The request names something the config does not have (a map, a service).
    Unknown,
    /// A canary needs a map of canary shares and the config has none.
    NoShareMap,
    /// The colour traffic would move to is not ready (servers down, probes failing).
    NotReady,
    /// A template does not render, or renders an invalid file.
    Template,
    /// The proxy's own checker refuses the staged config.
    ProxyCheck,
    /// A map value names something that does not exist, or is not what its file allows.
    BadValue,
    /// A file could not be read or written.
    Io,
    /// The proxy could not be reached, refused the change or failed to apply it.
    Proxy,
    /// What the proxy serves differs from what was applied.
    Mismatch,
    /// A cluster transaction is unknown here, or conflicts with another one.
    Cluster,
    /// The state moved on since the generation the request expected (`if_generation`).
    Stale,
}

/// The underlying error of an [`ApplyError`], shared so the error can be cloned to every
/// request of a batch.
type Source = Arc<dyn std::error::Error + Send + Sync>;

/// A change that did not happen. Whatever the step, the proxy serves what it served before
/// and the files on disk equal it.
#[derive(Debug, Clone)]
pub struct ApplyError {
    /// Where in the flow the change stopped.
    pub step: Step,
    /// What went wrong.
    pub kind: ErrorKind,
    /// What was being done, for humans (may be empty when the source says it all).
    context: String,
    source: Option<Source>,
}

impl ApplyError {
    /// An error the engine itself states, without an underlying error.
    pub fn new(step: Step, kind: ErrorKind, context: impl Into<String>) -> ApplyError {
        ApplyError {
            step,
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// An error caused by `source`, which says what happened.
    pub fn caused<E>(step: Step, kind: ErrorKind, source: E) -> ApplyError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        ApplyError {
            step,
            kind,
            context: String::new(),
            source: Some(Arc::new(source)),
        }
    }

    /// Adds what was being done in front of the current context.
    pub fn context(mut self, context: impl fmt::Display) -> ApplyError {
        self.context = if self.context.is_empty() {
            context.to_string()
        } else {
            format!("{context}: {}", self.context)
        };
        self
    }

    /// The text after the step: the context and the source.
    pub fn message(&self) -> String {
        match (&self.source, self.context.is_empty()) {
            (None, _) => self.context.clone(),
            (Some(s), true) => s.to_string(),
            (Some(s), false) => format!("{}: {s}", self.context),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.message())
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk full")]
    struct Full;

    #[test]
    fn text_is_step_context_and_source() {
        let e = ApplyError::caused(Step::Commit, ErrorKind::Io, Full).context("map services");
        assert_eq!(e.to_string(), "commit: map services: disk full");
        assert_eq!(e.kind, ErrorKind::Io);
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
        let plain = ApplyError::new(Step::Gate, ErrorKind::NotReady, "green of web is not ready");
        assert_eq!(plain.to_string(), "gate: green of web is not ready");
        assert!(std::error::Error::source(&plain).is_none());
        let bare = ApplyError::caused(Step::Apply, ErrorKind::Proxy, Full);
        assert_eq!(bare.message(), "disk full");
    }

    #[test]
    fn step_names_match_their_json() {
        for step in [Step::Access, Step::Request, Step::Persist, Step::Proxy] {
            let json = serde_json::to_value(step).unwrap();
            assert_eq!(json, step.as_str());
        }
    }
}
