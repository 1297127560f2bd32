//! Why a caller's sign-in was refused, as a type: decided once where the refusal happens (the
//! caller identification and the acceptors' own rejections, [`RejectReason`], [`NegotiateReject`],
//! [`KerberosError`]), then written to the audit log through `Display` and counted through
//! [`SignInRefusal::metric_label`]. Nothing downstream reads the text back.
//!
//! The `Display` texts are the audit trail's wording; they never contain a credential (a token, a
//! password, an `Authorization` value): only registered scheme names, configured header names and
//! the acceptors' typed reasons.

use super::ntlm::RejectReason;
use super::spnego::{NegotiateReject, SpnegoError};
use crate::telemetry::metrics::RefusalReason;

#[cfg(feature = "kerberos")]
use super::kerberos::KerberosError;

/// Why a caller's sign-in was refused (a 401, or 400/429/503 for the cases that say so).
#[derive(Debug, thiserror::Error)]
pub enum SignInRefusal {
    /// No `Authorization` header, no identity header from a trusted proxy, no earlier sign-in on
    /// the connection, and anonymous access off.
    #[error("no credentials")]
    NoCredentials,
    /// Two `Authorization` headers: ambiguous, answered 400.
    #[error("duplicate Authorization headers")]
    DuplicateAuthorization,
    /// A trusted proxy sent its identity header twice: ambiguous, answered 400.
    #[error("duplicate {header} headers from a trusted proxy")]
    DuplicateIdentityHeader {
        /// The configured header's name.
        header: String,
    },
    /// Credentials that do not decode.
    #[error("malformed {0}")]
    Malformed(Malformed),
    /// A registered authentication scheme this server does not offer.
    #[error("authentication scheme '{0}' is not enabled")]
    SchemeNotEnabled(&'static str),
    /// A first word that is no registered scheme: not named, since it may be the credential.
    #[error("authentication scheme not recognised (not named: it may be a credential)")]
    SchemeNotRecognised,
    /// NTLM (raw or inside Negotiate) without `[auth.ntlm]`.
    #[error("the client offered NTLM, which is not enabled (no [auth.ntlm])")]
    NtlmNotEnabled,
    /// Basic over plain HTTP from a peer that is not a trusted TLS-terminating proxy.
    #[error("Basic credentials over plain HTTP are refused")]
    BasicOverPlainHttp,
    /// The source address used up its failed sign-ins; answered 429 without checking.
    #[error("too many failed sign-ins from this address")]
    TooManyFailedSignIns {
        /// When the address may try again.
        retry_after: std::time::Duration,
    },
    /// Every password thread is busy; answered 503.
    #[error("password checks busy")]
    PasswordChecksBusy,
    /// Basic with a wrong user name or password.
    #[error("wrong user name or password")]
    WrongPassword,
    /// The NTLM acceptor refused the raw NTLM exchange.
    #[error("NTLM refused: {0:?}")]
    Ntlm(RejectReason),
    /// The Negotiate (SPNEGO) acceptor refused the exchange.
    #[error("Negotiate refused: {0:?}")]
    Negotiate(NegotiateReject),
    /// A Negotiate token whose mechanism could not be read.
    #[error("Negotiate refused: {0}")]
    NegotiateToken(SpnegoError),
    /// A Kerberos token where only NTLM is offered: the client is told to use NTLM.
    #[error("Kerberos is not supported; NTLM is offered")]
    KerberosNotSupported,
    /// `[auth.kerberos]` is configured but its acceptor was not built (a start-up bug).
    #[error("Kerberos is configured but its acceptor was not built at start-up")]
    KerberosNotBuilt,
    /// GSS-API refused the Kerberos token (its text names principals, never the token).
    #[cfg(feature = "kerberos")]
    #[error("Kerberos refused: {0}")]
    Kerberos(KerberosError),
}

/// Which credentials did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The `Authorization` value is not visible ASCII.
    #[error("credentials (not visible ASCII)")]
    NotVisibleAscii,
    /// `Basic` whose value is not base64 of `user:password` in UTF-8.
    #[error("Basic credentials")]
    Basic,
    /// `NTLM` or `Negotiate` whose token is not base64.
    #[error("Windows authentication token")]
    WindowsToken,
}

impl SignInRefusal {
    /// The `reason` label of `pfgate_caller_refusals_total` this refusal counts under.
    pub fn metric_label(&self) -> RefusalReason {
        match self {
            SignInRefusal::NoCredentials => RefusalReason::NoCredentials,
            // A locked-out address keeps counting as failed passwords, as it did before the lock.
            SignInRefusal::WrongPassword | SignInRefusal::TooManyFailedSignIns { .. } => {
                RefusalReason::WrongPassword
            }
            SignInRefusal::BasicOverPlainHttp => RefusalReason::BasicOverPlainHttp,
            SignInRefusal::Malformed(_) => RefusalReason::MalformedCredentials,
            SignInRefusal::SchemeNotEnabled(_)
            | SignInRefusal::SchemeNotRecognised
            | SignInRefusal::NtlmNotEnabled => RefusalReason::SchemeNotEnabled,
            SignInRefusal::Ntlm(_)
            | SignInRefusal::Negotiate(_)
            | SignInRefusal::NegotiateToken(_) => RefusalReason::NtlmRefused,
            SignInRefusal::KerberosNotSupported => RefusalReason::KerberosNotSupported,
            SignInRefusal::KerberosNotBuilt => RefusalReason::KerberosRefused,
            #[cfg(feature = "kerberos")]
            SignInRefusal::Kerberos(_) => RefusalReason::KerberosRefused,
            SignInRefusal::DuplicateAuthorization
            | SignInRefusal::DuplicateIdentityHeader { .. }
            | SignInRefusal::PasswordChecksBusy => RefusalReason::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefusalReason as R;

    /// Each refusal keeps the audit text it had when it was a string, and its metrics label.
    #[test]
    fn every_refusal_has_its_text_and_metrics_label() {
        for (refusal, text, label) in [
            (
                SignInRefusal::NoCredentials,
                "no credentials",
                R::NoCredentials,
            ),
            (
                SignInRefusal::WrongPassword,
                "wrong user name or password",
                R::WrongPassword,
            ),
            (
                SignInRefusal::TooManyFailedSignIns {
                    retry_after: std::time::Duration::from_secs(5),
                },
                "too many failed sign-ins from this address",
                R::WrongPassword,
            ),
            (
                SignInRefusal::BasicOverPlainHttp,
                "Basic credentials over plain HTTP are refused",
                R::BasicOverPlainHttp,
            ),
            (
                SignInRefusal::Malformed(Malformed::Basic),
                "malformed Basic credentials",
                R::MalformedCredentials,
            ),
            (
                SignInRefusal::Malformed(Malformed::WindowsToken),
                "malformed Windows authentication token",
                R::MalformedCredentials,
            ),
            (
                SignInRefusal::Malformed(Malformed::NotVisibleAscii),
                "malformed credentials (not visible ASCII)",
                R::MalformedCredentials,
            ),
            (
                SignInRefusal::SchemeNotEnabled("Bearer"),
                "authentication scheme 'Bearer' is not enabled",
                R::SchemeNotEnabled,
            ),
            (
                SignInRefusal::NtlmNotEnabled,
                "the client offered NTLM, which is not enabled (no [auth.ntlm])",
                R::SchemeNotEnabled,
            ),
            (
                SignInRefusal::SchemeNotRecognised,
                "authentication scheme not recognised (not named: it may be a credential)",
                R::SchemeNotEnabled,
            ),
            (
                SignInRefusal::Ntlm(RejectReason::WrongPassword),
                "NTLM refused: WrongPassword",
                R::NtlmRefused,
            ),
            (
                SignInRefusal::Negotiate(NegotiateReject::Ntlm(RejectReason::Replay)),
                "Negotiate refused: Ntlm(Replay)",
                R::NtlmRefused,
            ),
            (
                SignInRefusal::NegotiateToken(SpnegoError::NotSpnego),
                "Negotiate refused: GSS-API token for a mechanism other than SPNEGO",
                R::NtlmRefused,
            ),
            (
                SignInRefusal::KerberosNotSupported,
                "Kerberos is not supported; NTLM is offered",
                R::KerberosNotSupported,
            ),
            (
                SignInRefusal::KerberosNotBuilt,
                "Kerberos is configured but its acceptor was not built at start-up",
                R::KerberosRefused,
            ),
            (
                SignInRefusal::DuplicateAuthorization,
                "duplicate Authorization headers",
                R::Other,
            ),
            (
                SignInRefusal::DuplicateIdentityHeader {
                    header: "X-Forwarded-User".into(),
                },
                "duplicate X-Forwarded-User headers from a trusted proxy",
                R::Other,
            ),
            (
                SignInRefusal::PasswordChecksBusy,
                "password checks busy",
                R::Other,
            ),
        ] {
            assert_eq!(refusal.to_string(), text);
            assert_eq!(refusal.metric_label(), label, "{text}");
        }
    }

    #[cfg(feature = "kerberos")]
    #[test]
    fn kerberos_refusals_keep_the_acceptors_text() {
        let r = SignInRefusal::Kerberos(KerberosError::Anonymous);
        assert_eq!(
            r.to_string(),
            "Kerberos refused: anonymous Kerberos is refused"
        );
        assert_eq!(r.metric_label(), R::KerberosRefused);
    }
}
