//! Why a provider could not verify the person ([`Verdict::Failed`](super::Verdict::Failed)): a
//! kind the code can decide on (failover, logs) and the text for the audit log and the log line.
//!
//! The kind replaces reading the text back: a router, a metric or a test asks
//! [`ProviderError::kind`] or [`ProviderError::is_timeout`], never `reason.contains(…)`. The text
//! ([`Display`](std::fmt::Display)) is exactly the reason pfgate always logged.

use std::fmt;

/// What kind of failure a [`ProviderError`] is. Every kind means "the person was not asked": each
/// lets the router fail over and counts toward the provider's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// The service could not be reached: connect, DNS or TLS failure, a request broken off.
    Unreachable,
    /// The service did not answer within the request timeout.
    Timeout,
    /// The service answered with an HTTP error status (a 5xx, a refused key).
    HttpStatus,
    /// The answer could not be read or trusted: malformed, oversized, unsigned or wrongly
    /// signed, a state or result pfgate does not know.
    BadAnswer,
    /// The service said it could not do it: a push that could not be delivered, a webhook's
    /// `error` state, a link that could not be delivered.
    Rejected,
    /// This provider cannot do what was asked (send one-time codes, check codes, this mode).
    Unsupported,
    /// pfgate itself could not go on with this provider: no randomness, too many pending
    /// step-ups, a username the template maps to nothing.
    Local,
    /// The router found no provider to ask: no route matches, no provider of that name, every
    /// provider failed.
    Routing,
    /// The engine's deadline passed before the provider answered.
    Deadline,
    /// The test double was told to fail.
    Scripted,
    /// Another pfgate instance recorded the failure in the shared store; only its text travels.
    Relayed,
}

impl ProviderErrorKind {
    /// The kind as a fixed lower-case word, for a log field or a metric label (bounded
    /// cardinality, never the provider's text).
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::HttpStatus => "http_status",
            Self::BadAnswer => "bad_answer",
            Self::Rejected => "rejected",
            Self::Unsupported => "unsupported",
            Self::Local => "local",
            Self::Routing => "routing",
            Self::Deadline => "deadline",
            Self::Scripted => "scripted",
            Self::Relayed => "relayed",
        }
    }
}

/// A provider failure: its [`ProviderErrorKind`] and the detail for the audit log (no secret, no
/// code, no token — providers clip and scrub what a service sent before it gets here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    kind: ProviderErrorKind,
    detail: String,
}

impl ProviderError {
    /// A failure of `kind` described by `detail`.
    pub fn new(kind: ProviderErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ProviderErrorKind {
        self.kind
    }

    /// The text for the audit log (also what `Display` writes).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The service did not answer in time (the request timeout or the engine's deadline).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            ProviderErrorKind::Timeout | ProviderErrorKind::Deadline
        )
    }

    /// The kind's label ([`ProviderErrorKind::metric_label`]).
    pub fn metric_label(&self) -> &'static str {
        self.kind.metric_label()
    }

    /// The same failure with `context: ` before its text (the router naming the provider).
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            detail: format!("{context}: {}", self.detail),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ProviderError {}
