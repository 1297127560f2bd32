//! What became of one request, as types: the answer, the SDK operation it carried, and a
//! [`Handled`] that the access log, the metrics and the test double's journal all read. The short
//! text the access log has always written (`true`, `false/error=N/call=M`, `fault`, `forbidden` …)
//! is [`Handled`]'s `Display`, so no caller formats or parses an outcome string.

use std::borrow::Cow;
use std::fmt;

use super::HttpResponse;
use crate::auth::policy;
use crate::gateway::caller::{NotSignedIn, RefusalStatus};
use crate::telemetry::metrics::Outcome;
use crate::telemetry::metrics::RefusalReason;

/// A request answered by the gateway: the response, the operation (when one was decoded) and how
/// it was handled. Every stage that can end a request returns one.
#[derive(Debug)]
pub struct Routed {
    /// The HTTP answer.
    pub response: HttpResponse,
    /// The SDK operation, once the request got as far as decoding one.
    pub operation: Option<&'static str>,
    /// What was done with it.
    pub handled: Handled,
}

impl Routed {
    /// An answer that carried no SDK operation.
    pub(crate) fn without_operation(response: HttpResponse, handled: Handled) -> Self {
        Self {
            response,
            operation: None,
            handled,
        }
    }
}

/// How a request was handled. `Display` is the access log's short outcome.
#[derive(Debug)]
pub enum Handled {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`, ready.
    Readyz,
    /// `GET /readyz`, the store does not answer.
    NotReady,
    /// A path that is not the SDK endpoint.
    NotFound,
    /// The body is (or was announced) over the limit.
    TooLarge,
    /// The caller could not be identified; the reason is the identification's (never a secret).
    Unauthenticated(NotSignedIn),
    /// The caller was identified but refused by the authorization policy (the [`Refusal`] is
    /// audited where it is decided).
    Forbidden,
    /// One of the ASMX pages (`?wsdl`, `?disco`, the help page).
    Page(crate::pfwssdk::help::AsmxPage),
    /// Neither GET, HEAD nor POST.
    MethodNotAllowed,
    /// A POST whose headers do not announce SOAP.
    UnsupportedMediaType,
    /// The body did not arrive within `limits.body_timeout`.
    BodyTimeout,
    /// The body could not be read.
    BodyError,
    /// The envelope was refused with a SOAP fault.
    Fault,
    /// The engine answered the operation.
    Answered(SdkOutcome),
}

/// The result and codes of an SDK response: only those, never a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkOutcome {
    /// The operation's boolean result, when it has one.
    pub result: Option<bool>,
    /// Its error code, when it has one.
    pub error: Option<i32>,
    /// Its call result, when it has one.
    pub call: Option<i32>,
}

impl SdkOutcome {
    /// The outcome of an engine's response.
    pub fn of(response: &crate::pfwssdk::Response) -> Self {
        let (result, error, call) = response.outcome();
        Self {
            result,
            error,
            call,
        }
    }

    /// True when there is nothing to say beyond success (`true`).
    fn is_plain_true(&self) -> bool {
        self.result != Some(false) && self.error.unwrap_or(0) == 0 && self.call.is_none()
    }
}

impl fmt::Display for SdkOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.result == Some(false) {
            "false"
        } else {
            "true"
        })?;
        if let Some(e) = self.error.filter(|e| *e != 0) {
            write!(f, "/error={e}")?;
        }
        if let Some(c) = self.call {
            write!(f, "/call={c}")?;
        }
        Ok(())
    }
}

impl Handled {
    /// The short outcome, borrowed when it is constant (most requests: no allocation on the hot
    /// path of a plain `true`).
    pub fn text(&self) -> Cow<'static, str> {
        use crate::pfwssdk::help::AsmxPage;
        Cow::Borrowed(match self {
            Handled::Healthz => "healthz",
            Handled::Readyz => "readyz",
            Handled::NotReady => "not-ready",
            Handled::NotFound => "not-found",
            Handled::TooLarge => "too-large",
            Handled::Unauthenticated(reason) => {
                return Cow::Owned(format!("unauthenticated: {reason}"))
            }
            Handled::Forbidden => "forbidden",
            Handled::Page(AsmxPage::Wsdl) => "wsdl",
            Handled::Page(AsmxPage::Disco) => "disco",
            Handled::Page(AsmxPage::Help) => "help-page",
            Handled::MethodNotAllowed => "method-not-allowed",
            Handled::UnsupportedMediaType => "unsupported-media-type",
            Handled::BodyTimeout => "body-timeout",
            Handled::BodyError => "body-error",
            Handled::Fault => "fault",
            Handled::Answered(o) if o.is_plain_true() => "true",
            Handled::Answered(o) => return Cow::Owned(o.to_string()),
        })
    }
}

impl Handled {
    /// The `outcome` label of `pfgate_requests_total`.
    pub fn metric_outcome(&self) -> Outcome {
        match self {
            Handled::Healthz | Handled::Readyz | Handled::Page(_) => Outcome::True,
            Handled::NotReady => Outcome::Unavailable,
            Handled::NotFound => Outcome::NotFound,
            Handled::Unauthenticated(reason) => match reason.status() {
                RefusalStatus::Unauthorized => Outcome::Unauthenticated,
                RefusalStatus::BadRequest | RefusalStatus::TooManyAttempts { .. } => {
                    Outcome::Rejected
                }
                RefusalStatus::Busy => Outcome::Unavailable,
            },
            Handled::Forbidden => Outcome::Forbidden,
            Handled::TooLarge
            | Handled::MethodNotAllowed
            | Handled::UnsupportedMediaType
            | Handled::BodyTimeout
            | Handled::BodyError => Outcome::Rejected,
            Handled::Fault => Outcome::Fault,
            Handled::Answered(a) if a.result == Some(false) => Outcome::False,
            Handled::Answered(_) => Outcome::True,
        }
    }

    /// The `operation` label: the SDK operation, or what the request was (`wsdl`, `disco`,
    /// `help_page`, `probe` for `/healthz` and `/readyz`, else `none`).
    pub fn operation_label(&self, operation: Option<&'static str>) -> &'static str {
        use crate::pfwssdk::help::AsmxPage;
        match (operation, self) {
            (Some(op), _) => op,
            (None, Handled::Page(AsmxPage::Wsdl)) => "wsdl",
            (None, Handled::Page(AsmxPage::Disco)) => "disco",
            (None, Handled::Page(AsmxPage::Help)) => "help_page",
            (None, Handled::Healthz | Handled::Readyz | Handled::NotReady) => "probe",
            (None, _) => "none",
        }
    }
}

impl fmt::Display for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Why an identified caller was refused by the authorization policy (`auth.principals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The principal is not in the allow-list at all (refused before its request is read).
    NotAllowed,
    /// The principal may not call this operation.
    Operation(policy::Refusal),
}

impl Refusal {
    /// The `reason` label of `pfgate_caller_refusals_total`.
    pub fn metric_label(&self) -> RefusalReason {
        match self {
            Refusal::NotAllowed => RefusalReason::NotAllowed,
            Refusal::Operation(_) => RefusalReason::OperationNotAllowed,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAllowed => f.write_str("not in the allow-list"),
            Refusal::Operation(policy::Refusal::NotListed) => {
                f.write_str("not in the allow-list (NotListed)")
            }
            Refusal::Operation(policy::Refusal::GroupNotAllowed(group)) => {
                write!(
                    f,
                    "operation group not allowed (GroupNotAllowed({group:?}))"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_answer() {
        use crate::auth::refusal::SignInRefusal;
        let answered = |result, error, call| {
            Handled::Answered(SdkOutcome {
                result,
                error,
                call,
            })
        };
        for (handled, text, outcome) in [
            (answered(Some(true), None, None), "true", Outcome::True),
            (answered(None, Some(0), None), "true", Outcome::True),
            (
                answered(Some(false), Some(503), None),
                "false/error=503",
                Outcome::False,
            ),
            (
                answered(Some(false), Some(0), Some(5)),
                "false/call=5",
                Outcome::False,
            ),
            (
                answered(Some(true), None, Some(2)),
                "true/call=2",
                Outcome::True,
            ),
            (Handled::Fault, "fault", Outcome::Fault),
            (
                Handled::Unauthenticated(NotSignedIn::Refused(SignInRefusal::WrongPassword)),
                "unauthenticated: wrong user name or password",
                Outcome::Unauthenticated,
            ),
            (
                Handled::Unauthenticated(NotSignedIn::Refused(
                    SignInRefusal::DuplicateAuthorization,
                )),
                "unauthenticated: duplicate Authorization headers",
                Outcome::Rejected,
            ),
            (
                Handled::Unauthenticated(NotSignedIn::Refused(SignInRefusal::PasswordChecksBusy)),
                "unauthenticated: password checks busy",
                Outcome::Unavailable,
            ),
            (Handled::TooLarge, "too-large", Outcome::Rejected),
            (Handled::NotReady, "not-ready", Outcome::Unavailable),
            (Handled::Forbidden, "forbidden", Outcome::Forbidden),
            (Handled::NotFound, "not-found", Outcome::NotFound),
        ] {
            assert_eq!(handled.to_string(), text);
            assert_eq!(handled.metric_outcome(), outcome, "{text}");
        }
    }

    #[test]
    fn pseudo_operations_name_what_the_request_was() {
        use crate::pfwssdk::help::AsmxPage;
        for (handled, label) in [
            (Handled::Page(AsmxPage::Wsdl), "wsdl"),
            (Handled::Page(AsmxPage::Disco), "disco"),
            (Handled::Page(AsmxPage::Help), "help_page"),
            (Handled::Healthz, "probe"),
            (Handled::Readyz, "probe"),
            (Handled::NotReady, "probe"),
            (Handled::NotFound, "none"),
            (Handled::TooLarge, "none"),
        ] {
            assert_eq!(handled.operation_label(None), label, "{handled}");
        }
        assert_eq!(
            Handled::Forbidden.operation_label(Some("PfAuthUser_5")),
            "PfAuthUser_5"
        );
    }

    #[test]
    fn outcomes_read_as_the_access_log_always_wrote_them() {
        let sdk = |result, error, call| {
            Handled::Answered(SdkOutcome {
                result,
                error,
                call,
            })
            .to_string()
        };
        assert_eq!(sdk(Some(true), None, None), "true");
        assert_eq!(sdk(None, Some(0), None), "true");
        assert_eq!(sdk(Some(false), Some(3), Some(5)), "false/error=3/call=5");
        assert_eq!(sdk(Some(true), None, Some(1)), "true/call=1");
        assert_eq!(
            Handled::Unauthenticated(NotSignedIn::Refused(
                crate::auth::refusal::SignInRefusal::NoCredentials
            ))
            .to_string(),
            "unauthenticated: no credentials"
        );
        assert_eq!(
            Handled::Page(crate::pfwssdk::help::AsmxPage::Help).to_string(),
            "help-page"
        );
        assert_eq!(Handled::Forbidden.to_string(), "forbidden");
    }

    #[test]
    fn policy_refusals_have_a_label_and_a_reason() {
        let op = Refusal::Operation(policy::Refusal::GroupNotAllowed(
            policy::OperationGroup::Administration,
        ));
        assert_eq!(op.metric_label(), RefusalReason::OperationNotAllowed);
        assert!(op.to_string().contains("GroupNotAllowed(Administration)"));
        assert_eq!(
            Refusal::NotAllowed.metric_label(),
            RefusalReason::NotAllowed
        );
        assert_eq!(Refusal::NotAllowed.to_string(), "not in the allow-list");
    }
}
