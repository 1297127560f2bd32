//! Providers: who actually reaches the person. The engine asks one question — "verify this person
//! now, before this deadline" — and gets a [`Verdict`]. Providers know nothing of SOAP.
//!
//! The contract is modelled on MIM's own custom phone provider (`InitiateCall` → Pending / Success /
//! Failed, `GetFailureMessage`; docs/protocol.md §7.3): one call per attempt, a terminal verdict, and a
//! failure reason for the audit log. The engine owns the deadline and cancels the future when it
//! passes, so a provider never has to.

// What a person is shown of caller-supplied text (step-up pages, delivered messages, pushes).
pub(crate) mod display;
// Secrets, base URLs, HTTP clients and settings problems, shared by every provider (and the
// PostgreSQL store's password).
pub(crate) mod common;
pub mod duo;
mod error;
pub mod oidc;
pub mod router;
pub mod scripted;
mod settings;
pub mod twilio;
pub mod webhook;

pub use common::BuildError;
pub use error::{ProviderError, ProviderErrorKind};
pub use settings::{BuildContext, ProviderConfig, ProviderSettings, ScriptedSettings};

use std::net::IpAddr;

use async_trait::async_trait;

use crate::core::phone::E164;
use crate::pfwssdk::Mode3;

/// One authentication to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// The `authenticationRequestId` the caller will get.
    pub request_id: String,
    /// Username as stored (for user-oriented providers such as Duo).
    pub username: String,
    /// The user's group (routing), empty when unknown.
    pub user_group: String,
    /// The authenticated principal that called pfgate (routing), `anonymous` when none.
    pub caller: String,
    /// The number to call or text.
    pub phone: E164,
    /// Voice call, SMS, app or OATH.
    pub mode: Mode3,
    /// The caller's application name (`MIM`, …), for the prompt or push text.
    pub application_name: String,
    /// The IP address of the person authenticating, as the caller reported it.
    pub initiating_ip: String,
    /// The caller (the system that called pfgate).
    pub caller_ip: IpAddr,
    /// The user's stored external id (the identity provider's `oid`/`sub`, normalised), `None`
    /// for a user without one or unknown to the store: the OIDC step-up provider with
    /// `match = "external_id"` compares the signed-in identity with it, since an `oid` never
    /// equals a username.
    pub external_id: Option<String>,
    /// The outcome decided for this attempt before it was made, when the request came through a
    /// layer that scripts answers (the test double's matched rule); the engine carries it from the
    /// call to the attempt ([`crate::engine::CallContext::scripted`]). Only the scripted providers
    /// read it: the double's rule reaches the call its request causes, and no other.
    pub scripted: Option<crate::store::directory::Outcome>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The person approved.
    Approved,
    /// Nobody answered.
    NotAnswered,
    /// The person hung up.
    HungUp,
    /// The person explicitly denied (app "Deny", wrong reply).
    Denied,
    /// The provider could not place the call or send the message (the person was not asked): its
    /// kind decides nothing about the answer (CallResult 150/… as before) but is what code reads;
    /// its text is for the audit log.
    Failed(ProviderError),
    /// Every provider failed and the route's `fail_mode = "safe"` lets the request through. Only the
    /// router produces this; the engine answers success and writes a `fail_open` audit event.
    FailedOpen(String),
    /// The person approved in an app or a browser rather than on a call or with a code (the OIDC
    /// step-up's verified sign-in): CallResult 21 "Mobile App Authenticated" whatever the mode.
    AppApproved,
    /// The person reported the request as not theirs ("This wasn't me"): CallResult 112 "Fraud
    /// Code Entered", the code MFA Server answers when a fraud alert is raised on a call.
    FraudReported,
    /// Refused once the person was reached (a link delivered, a code sent): what came back could
    /// not be accepted — a failed code exchange, a forged or mismatched callback, a state or token
    /// problem, an answer that belongs to another verification. Answered as a denial (CallResult
    /// 150), **never** a failure: the router neither fails over (that would ask the person twice,
    /// or let a link holder pick the weaker provider) nor fails open (that would turn a bogus
    /// callback into a `true`). Only [`Blame::Provider`] counts toward the provider's breaker.
    Refused(Refusal),
    /// The provider let the person through without asking them: Duo's preauth `allow`, a bypass
    /// decided on Duo's side (an administrator's bypass status, or a policy such as "allow users
    /// not enrolled"). CallResult 7 "Bypassed Auth", as MFA Server reported a bypass, with its
    /// own `provider_bypass` audit event; the reason is for that event. Only a provider whose
    /// settings allow it produces this (Duo's `allow_bypass`).
    Bypassed(String),
}

impl Verdict {
    /// A failure of `kind` described by `detail` (shorthand for `Failed(ProviderError::new(…))`).
    pub fn failed(kind: ProviderErrorKind, detail: impl Into<String>) -> Self {
        Self::Failed(ProviderError::new(kind, detail))
    }

    /// The `verdict` label of `pfgate_provider_calls_total` for this verdict: a refusal counts as
    /// the breaker counts it ([`router::counts_against_provider`]).
    pub fn metric_label(&self) -> crate::telemetry::metrics::VerdictLabel {
        use crate::telemetry::metrics::VerdictLabel;
        match self {
            Verdict::Approved | Verdict::AppApproved | Verdict::Bypassed(_) => {
                VerdictLabel::Approved
            }
            Verdict::NotAnswered => VerdictLabel::NotAnswered,
            Verdict::HungUp => VerdictLabel::HungUp,
            // "This wasn't me" is a refusal by the person, as a denial is.
            Verdict::Denied | Verdict::FraudReported => VerdictLabel::Denied,
            Verdict::Failed(_) | Verdict::FailedOpen(_) => VerdictLabel::Failed,
            Verdict::Refused(_) if router::counts_against_provider(self) => VerdictLabel::Failed,
            Verdict::Refused(_) => VerdictLabel::Denied,
        }
    }
}

/// Why an answer was refused ([`Verdict::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// For the log and the audit event; never a token or a code.
    pub reason: String,
    /// Whose doing it was: decides whether it counts toward the provider's circuit breaker.
    pub blame: Blame,
}

impl Refusal {
    /// Refused because of what a caller, a link holder or a browser sent.
    pub fn caller(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            blame: Blame::Caller,
        }
    }

    /// Refused because the provider itself failed after the person was reached.
    pub fn provider(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            blame: Blame::Provider,
        }
    }
}

/// Whose doing a [`Refusal`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// Something a caller, a link holder or a browser sent (a bogus code, a forged callback, a
    /// missing cookie, too many sends for one user). Never counts toward the breaker: whoever can
    /// send it could otherwise open the breaker for everyone.
    Caller,
    /// The provider failed after the person was reached (its token endpoint unreachable, timed out
    /// or answering 5xx, a token its own keys do not verify). Counts toward its breaker, and is
    /// still a denial for this authentication.
    Provider,
}

/// A provider of second-factor verification.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Short name for logs and audit (`scripted`, `duo`, …).
    fn name(&self) -> &str;
    /// The configured provider called `name` inside this one (the router's members); `None` for a
    /// single provider. A reload uses it to keep a provider that must not be built twice (the
    /// OIDC step-up provider owns a listening port and its pending step-ups).
    fn member(&self, name: &str) -> Option<std::sync::Arc<dyn Provider>> {
        let _ = name;
        None
    }
    /// Performs the attempt. The engine drops the future at the deadline.
    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict;
    /// Delivers a one-time passcode by one-way text message (MFA Server's SMS "one-way OTP" mode);
    /// the caller completes with `ValidatePasscode`. `Approved` means sent. Providers that cannot
    /// send codes keep this default, and the engine then fails the authentication.
    async fn send_code(&self, attempt: &AuthAttempt, code: &str) -> Verdict {
        let _ = (attempt, code);
        Verdict::Failed(ProviderError::new(
            ProviderErrorKind::Unsupported,
            format!("provider {} cannot send one-time passcodes", self.name()),
        ))
    }

    /// Starts a verification whose code the provider generates, sends (SMS or voice, by
    /// `attempt.mode`) and later checks itself (Twilio Verify). `None` means this provider does not
    /// work that way (the default) and the engine calls [`Provider::authenticate`] instead; otherwise
    /// the name of the provider that sent the code (the router's member) and `Approved` when sent.
    async fn start_verification(&self, attempt: &AuthAttempt) -> Option<(String, Verdict)> {
        let _ = attempt;
        None
    }

    /// True for a provider whose authentications are code flows ([`Provider::start_verification`]
    /// answers `Some`): the router must know it without asking when the provider's circuit is
    /// open, since codes never fail open.
    fn sends_codes(&self) -> bool {
        false
    }

    /// Checks a code against a verification this provider (`provider`, as returned by
    /// [`Provider::start_verification`]) started for `attempt.phone`: `Approved` when right,
    /// `Denied` when wrong or expired, `Failed` when the provider could not be asked.
    async fn check_verification(
        &self,
        provider: &str,
        attempt: &AuthAttempt,
        code: &str,
    ) -> Verdict {
        let _ = (attempt, code);
        Verdict::Failed(ProviderError::new(
            ProviderErrorKind::Unsupported,
            format!("provider {provider} does not check codes"),
        ))
    }

    /// True when the provider can take calls (readiness).
    async fn healthy(&self) -> bool {
        true
    }
    /// Per-route health for the admin listener's `/readyz`; only the router has routes, so every
    /// other provider keeps this default and is reported as the one provider of one route.
    async fn route_health(&self) -> Option<Vec<router::RouteHealth>> {
        None
    }
}
