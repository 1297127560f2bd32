//! Every `CallResult` and `Error` code pfgate sends, with its description, in one table.
//!
//! Codes and texts come from PROTOCOL.md §4 (published MFA Server/Azure MFA result codes). Where no
//! public code exists pfgate had to choose one; those are marked *pfgate-chosen* and sit outside the
//! number ranges MFA Server is known to use, so a caller can tell them apart.

use super::{CallResult, Error};

/// `CallResult` codes (PROTOCOL.md §4.1).
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
    /// 21 — Mobile app authenticated.
    MobileAppAuthenticated,
    /// 23 — OATH code verified.
    OathCodeVerified,
    /// 100 — Invalid phone number.
    InvalidPhoneNumber,
    /// 108 — User hung up the phone.
    UserHungUp,
    /// 117 — Unable to place call (provider failure).
    UnableToPlaceCall,
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
            CallCode::MobileAppAuthenticated => (21, "Mobile App Authenticated"),
            CallCode::OathCodeVerified => (23, "OATH Code Verified"),
            CallCode::InvalidPhoneNumber => (100, "Invalid Phone Number"),
            CallCode::UserHungUp => (108, "User Hung Up the Phone"),
            CallCode::UnableToPlaceCall => (117, "Unable to Place Call"),
        }
    }

    /// As a wire `CallResult`.
    pub fn call_result(self) -> CallResult {
        CallResult::new(self.code(), self.description())
    }
}

/// `Error` codes (PROTOCOL.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 10 — USER_NOT_FOUND.
    UserNotFound,
    /// 12 — "Multi-Factor Authentication denied." (beside a `callResult` naming the cause).
    Denied,
    /// 501 — *pfgate-chosen*: the operation exists in the contract but pfgate does not implement it.
    /// Answered as `false` + this error (never a fault), so callers take their normal error path.
    NotSupported,
}

impl ErrorCode {
    /// Numeric code.
    pub fn code(self) -> i32 {
        match self {
            ErrorCode::UserNotFound => 10,
            ErrorCode::Denied => 12,
            ErrorCode::NotSupported => 501,
        }
    }

    /// The error with its standard description.
    pub fn error(self) -> Error {
        match self {
            ErrorCode::UserNotFound => Error::new(self.code(), "USER_NOT_FOUND"),
            ErrorCode::Denied => Error::new(self.code(), "Multi-Factor Authentication denied."),
            ErrorCode::NotSupported => Error::new(self.code(), "Not supported by pfgate."),
        }
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
