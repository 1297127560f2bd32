//! Every `CallResult` and `Error` code pfgate sends, with its description, in one table.
//!
//! Codes and texts come from docs/protocol.md §6 (published MFA Server/Azure MFA result codes). Where no
//! public code exists pfgate had to choose one; those are marked *pfgate-chosen* and sit outside the
//! number ranges MFA Server is known to use, so a caller can tell them apart.

use super::{CallResult, Error};

/// `CallResult` codes (docs/protocol.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCode {
    /// 1 — PIN entered (PIN mode success).
    PinEntered,
    /// 2 — No PIN entered: the success of a voice call in standard mode (`#` pressed).
    NoPinEntered,
    /// 4 — No phone input, timed out.
    NoPhoneInputTimedOut,
    /// 7 — Bypassed auth (one-time bypass consumed).
    BypassedAuth,
    /// 10 — Call disconnected.
    CallDisconnected,
    /// 11 — Call timed out: the call was not answered, or the authentication deadline passed.
    CallTimedOut,
    /// 14 — User is blocked.
    UserBlocked,
    /// 19 — Text message authenticated (two-way SMS success).
    TextMessageAuthenticated,
    /// 20 — Text message sent: a one-way passcode is on its way; complete with `ValidatePasscode`.
    TextMessageSent,
    /// 21 — Mobile app authenticated.
    MobileAppAuthenticated,
    /// 22 — OATH code pending: the caller must complete with `ValidateOathCode`.
    OathCodePending,
    /// 23 — OATH code verified.
    OathCodeVerified,
    /// 100 — Invalid phone number.
    InvalidPhoneNumber,
    /// 105 — Account locked: too many failed attempts (PIN, OATH code, passcode, static token)
    /// within the lockout window; refused until the lock ends or `UnblockUser` clears it.
    AccountLocked,
    /// 107 — Invalid phone number format.
    InvalidPhoneNumberFormat,
    /// 108 — User hung up the phone.
    UserHungUp,
    /// 112 — Fraud code entered: the person reported the request as not theirs (the OIDC
    /// step-up's "This wasn't me").
    FraudCodeEntered,
    /// 117 — Unable to place call (provider failure).
    UnableToPlaceCall,
    /// 150 — *pfgate-chosen*: the person explicitly denied (app "Deny"). MFA Server's number for
    /// "Mobile App Denied" is not public.
    Denied,
    /// 151 — *pfgate-chosen*: the user is disabled and its disabled behaviour is `fail`.
    UserDisabled,
    /// 152 — *pfgate-chosen*: the user store was unavailable; pfgate failed secure.
    StoreUnavailable,
}

impl CallCode {
    /// Numeric code.
    pub fn code(self) -> i32 {
        self.entry().0
    }

    /// Description as MFA Server sends it.
    pub fn description(self) -> &'static str {
        self.entry().1
    }

    fn entry(self) -> (i32, &'static str) {
        match self {
            CallCode::PinEntered => (1, "PIN Entered"),
            CallCode::NoPinEntered => (2, "No PIN Entered"),
            CallCode::NoPhoneInputTimedOut => (4, "No Phone Input - Timed Out"),
            CallCode::BypassedAuth => (7, "Bypassed Auth"),
            CallCode::CallDisconnected => (10, "Call Disconnected"),
            CallCode::CallTimedOut => (11, "Call Timed Out"),
            CallCode::UserBlocked => (14, "User is Blocked"),
            CallCode::TextMessageAuthenticated => (19, "Text Message Authenticated"),
            CallCode::TextMessageSent => (20, "Text Message Sent"),
            CallCode::MobileAppAuthenticated => (21, "Mobile App Authenticated"),
            CallCode::OathCodePending => (22, "OATH Code Pending"),
            CallCode::OathCodeVerified => (23, "OATH Code Verified"),
            CallCode::InvalidPhoneNumber => (100, "Invalid Phone Number"),
            CallCode::AccountLocked => (105, "Account Locked"),
            CallCode::InvalidPhoneNumberFormat => (107, "Invalid Phone Number Format"),
            CallCode::UserHungUp => (108, "User Hung Up the Phone"),
            CallCode::FraudCodeEntered => (112, "Fraud Code Entered"),
            CallCode::UnableToPlaceCall => (117, "Unable to Place Call"),
            CallCode::Denied => (150, "Authentication Denied"),
            CallCode::UserDisabled => (151, "User is Disabled"),
            CallCode::StoreUnavailable => (152, "User Store Unavailable"),
        }
    }

    /// As a wire `CallResult`.
    pub fn call_result(self) -> CallResult {
        CallResult::new(self.code(), self.description())
    }
}

/// `Error` codes (docs/protocol.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 10 — USER_NOT_FOUND.
    UserNotFound,
    /// 12 — "Multi-Factor Authentication denied." (beside a `callResult` naming the cause; also a
    /// wrong OATH code, passcode or static token).
    Denied,
    /// 101 — DUPLICATE_USERNAME.
    DuplicateUsername,
    /// 109 — PIN_TOO_SHORT.
    PinTooShort,
    /// 110 — PIN_TOO_WEAK (also: a PIN with characters other than digits).
    PinTooWeak,
    /// 125 — INCORRECT_USER_PIN.
    IncorrectPin,
    /// 133 — USER_NOT_CURRENTLY_BLOCKED (`UserIsBlocked` of a user who is not blocked).
    UserNotCurrentlyBlocked,
    /// 136 — USER_NOT_BLOCKED (`UnblockUser` of a user who is not blocked).
    UserNotBlocked,
    /// 501 — *pfgate-chosen*: the operation exists in the contract but pfgate does not implement it.
    /// Answered as `false` + this error (never a fault), so callers take their normal error path.
    NotSupported,
    /// 502 — *pfgate-chosen*: `CombinedAuthUser*`/`PrimaryAuthUser` without a configured LDAP bind.
    PrimaryAuthNotConfigured,
    /// 503 — *pfgate-chosen*: the user store is unavailable; the operation failed secure.
    StoreUnavailable,
    /// 504 — *pfgate-chosen*: a required input is missing or invalid (e.g. an empty username).
    InvalidInput,
    /// 505 — *pfgate-chosen*: the LDAP directory for primary authentication could not be reached;
    /// the operation failed secure.
    PrimaryAuthUnavailable,
}

impl ErrorCode {
    /// Numeric code.
    pub fn code(self) -> i32 {
        match self {
            ErrorCode::UserNotFound => 10,
            ErrorCode::Denied => 12,
            ErrorCode::DuplicateUsername => 101,
            ErrorCode::PinTooShort => 109,
            ErrorCode::PinTooWeak => 110,
            ErrorCode::IncorrectPin => 125,
            ErrorCode::UserNotCurrentlyBlocked => 133,
            ErrorCode::UserNotBlocked => 136,
            ErrorCode::NotSupported => 501,
            ErrorCode::PrimaryAuthNotConfigured => 502,
            ErrorCode::StoreUnavailable => 503,
            ErrorCode::InvalidInput => 504,
            ErrorCode::PrimaryAuthUnavailable => 505,
        }
    }

    /// The error with its standard description.
    pub fn error(self) -> Error {
        let text = match self {
            ErrorCode::UserNotFound => "USER_NOT_FOUND",
            ErrorCode::Denied => "Multi-Factor Authentication denied.",
            ErrorCode::DuplicateUsername => "DUPLICATE_USERNAME",
            ErrorCode::PinTooShort => "PIN_TOO_SHORT",
            ErrorCode::PinTooWeak => "PIN_TOO_WEAK",
            ErrorCode::IncorrectPin => "INCORRECT_USER_PIN",
            ErrorCode::UserNotCurrentlyBlocked => "USER_NOT_CURRENTLY_BLOCKED",
            ErrorCode::UserNotBlocked => "USER_NOT_BLOCKED",
            ErrorCode::NotSupported => "Not supported by pfgate.",
            ErrorCode::PrimaryAuthNotConfigured => {
                "Primary authentication is not configured in pfgate (no LDAP bind)."
            }
            ErrorCode::StoreUnavailable => {
                "The user store is unavailable; pfgate failed secure. Try again later."
            }
            ErrorCode::InvalidInput => "A required input is missing or invalid.",
            ErrorCode::PrimaryAuthUnavailable => {
                "The directory for primary authentication is unavailable; pfgate failed secure."
            }
        };
        Error::new(self.code(), text)
    }

    /// The error with a more specific description.
    pub fn with(self, description: impl Into<String>) -> Error {
        Error::new(self.code(), description)
    }

    /// The "not supported" error naming the operation, so an administrator reading a caller's log
    /// knows exactly which call needs attention.
    pub fn not_supported(operation: &str) -> Error {
        Error::new(
            ErrorCode::NotSupported.code(),
            format!("The operation {operation} is not supported by pfgate."),
        )
    }
}
