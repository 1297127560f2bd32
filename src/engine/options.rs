//! What `[engine]` in the configuration sets: the deadline, the answer for unknown users and the
//! lockout. Defined with the engine that obeys them; the configuration only reads and checks them.

use std::time::Duration;

/// Validated engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Deadline of one authentication.
    pub auth_timeout: Duration,
    /// Default country code (digits only).
    pub default_country_code: String,
    /// What an authentication for a user the store does not hold gets.
    pub unknown_users: UnknownUsers,
    /// When repeated failures lock a user.
    pub lockout: Lockout,
    /// Call a known user only at a number the store holds for that user.
    pub call_only_stored_numbers: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(60),
            default_country_code: "1".into(),
            unknown_users: UnknownUsers::Deny,
            lockout: Lockout::default(),
            call_only_stored_numbers: false,
        }
    }
}

/// `[engine] unknown_users`: the answer for a user the store does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownUsers {
    /// Refused with `USER_NOT_FOUND`, whatever the caller sends: a gateway must not pass people it
    /// does not know (the default).
    Deny,
    /// MFA Server's "user match" option, decided by the caller: `requireUserMatch=true` refuses,
    /// `false` passes without a call (CallResult 7), and `PfAuthUser_5` calls the number given.
    /// Demo mode and the test double answer this way, as MFA Server did; a site sets it only when
    /// its callers rely on unknown users passing and it accepts that any caller can decide so.
    Caller,
}

impl UnknownUsers {
    /// The configuration literal.
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownUsers::Deny => "deny",
            UnknownUsers::Caller => "caller",
        }
    }
}

/// `[engine] lockout_*`: failures within `window` that lock a user for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures that lock.
    pub threshold: u32,
    /// How long failures count.
    pub window: Duration,
    /// How long the lock lasts.
    pub duration: Duration,
}

impl Default for Lockout {
    /// 5 failures within 15 minutes lock for 15 minutes: at most 20 guesses an hour per user, so a
    /// six-digit TOTP code (3 valid at a time) is found with a chance of about 6 in 100,000 an hour,
    /// and every lock is audited; a real user who mistypes is not stopped for long.
    fn default() -> Self {
        Self {
            threshold: 5,
            window: Duration::from_secs(900),
            duration: Duration::from_secs(900),
        }
    }
}
