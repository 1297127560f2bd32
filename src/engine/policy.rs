//! "May this user authenticate now?" — one decision for every operation that can answer an
//! authentication success: every `PfAuthUser*` and `CombinedAuthUser*`, `PrimaryAuthUser`,
//! `ValidatePin`, `ValidateOathCode(Master)`, `ValidatePasscode(Master)` and
//! `ValidateStaticToken`.
//!
//! Before this module the block, disabled and unknown-user rules lived in `PfAuthUser*` only, and a
//! blocked user's right PIN, OATH code or static token still answered `true` (issue #17, item 1).
//! Now each of those operations asks [`Engine::standing`] first and goes on only with
//! [`Standing::Active`] (or the caller-decided passes of `PfAuthUser*`).
//!
//! The order, first match wins (`docs/engine.md`, "The policy"):
//! 1. a username that is not a valid name (control or invisible characters, too long) — refused
//!    with `Error` 504 naming the character ([`crate::core::username`]);
//! 2. the store cannot be asked — fail secure (CallResult 152 / `Error` 503);
//! 3. a user the store does not hold — `unknown_users = "deny"`: `USER_NOT_FOUND`; `"caller"`:
//!    the caller's `requireUserMatch` decides ([`Standing::Unknown`]);
//! 4. blocked (`BlockUser`) — CallResult 14;
//! 5. locked out after repeated failures — CallResult 105 "Account Locked";
//! 6. disabled — its disabled behaviour: `fail` is CallResult 151, `succeed` a pass without a
//!    second factor for `PfAuthUser*` only (the `Validate*` operations check a secret and refuse a
//!    disabled user whatever the behaviour);
//! 7. otherwise the user may authenticate.
//!
//! Blocked and locked come before disabled on purpose: a block is an administrator's explicit
//! "no", and must not be undone by a disabled behaviour of "succeed" (MFA Server's order put the
//! disabled check first; pfgate fails secure instead).

use super::options::UnknownUsers;
use super::{now_unix, CallContext, Engine};
use crate::core::username::UsernameError;
use crate::pfwssdk::codes::{CallCode, ErrorCode};
use crate::pfwssdk::{AuthResult, Error};
use crate::store::{FailureRule, StoreError, UserRecord, UserStanding};
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

/// Where a user stands, for one authentication.
#[derive(Debug)]
pub(crate) enum Standing {
    /// Known, enabled, not blocked, not locked: may authenticate. With whether a bypass seemed
    /// valid when the standing was read ([`UserStanding::bypass`]).
    Active(Box<UserStanding>),
    /// Not in the store, and `unknown_users = "caller"`: the caller's flag decides. The name is
    /// canonical (possibly empty).
    Unknown(String),
    /// Disabled with disabled behaviour "succeed": `PfAuthUser*` passes without a second factor.
    DisabledPass,
    /// May not authenticate now.
    Refused(Refusal),
}

/// Why a user may not authenticate now.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The username is not a valid name.
    InvalidName(UsernameError),
    /// Not in the store (or no name given) under `unknown_users = "deny"`.
    Unknown,
    /// Blocked by an administrator.
    Blocked,
    /// Locked out by repeated failures until this time (Unix seconds).
    LockedOut(i64),
    /// Disabled, disabled behaviour "fail".
    Disabled,
    /// The store could not be asked.
    Store(StoreError),
}

impl Refusal {
    /// The `CallResult` of a refused `PfAuthUser*`, if the refusal has one.
    pub(crate) fn call_code(&self) -> Option<CallCode> {
        match self {
            Refusal::InvalidName(_) | Refusal::Unknown => None,
            Refusal::Blocked => Some(CallCode::UserBlocked),
            Refusal::LockedOut(_) => Some(CallCode::AccountLocked),
            Refusal::Disabled => Some(CallCode::UserDisabled),
            Refusal::Store(_) => Some(CallCode::StoreUnavailable),
        }
    }

    /// The `Error` of the refusal, for every operation.
    pub(crate) fn error(&self) -> Error {
        match self {
            Refusal::InvalidName(e) => ErrorCode::InvalidInput.with(e.to_string()),
            Refusal::Unknown => ErrorCode::UserNotFound.error(),
            Refusal::Blocked => {
                ErrorCode::Denied.with("Multi-Factor Authentication denied: the user is blocked.")
            }
            Refusal::LockedOut(until) => ErrorCode::Denied.with(format!(
                "Multi-Factor Authentication denied: the user is locked out after too many \
                 failed attempts, for {} s more; UnblockUser clears it.",
                (until - now_unix()).max(1)
            )),
            Refusal::Disabled => {
                ErrorCode::Denied.with("Multi-Factor Authentication denied: the user is disabled.")
            }
            Refusal::Store(_) => ErrorCode::StoreUnavailable.error(),
        }
    }

    /// [`Refusal::error`], logging a store failure (the operation fails secure because of it).
    fn logged_error(&self) -> Error {
        if let Refusal::Store(e) = self {
            tracing::error!(target: "pfgate::engine", error = %e, "store failure: the check fails secure");
        }
        self.error()
    }
}

impl Engine {
    /// The one decision: may the user named `raw` authenticate now? See the module documentation
    /// for the order.
    pub(crate) async fn standing(&self, raw: Option<&str>) -> Standing {
        let name = crate::core::username::canonical(raw.unwrap_or(""));
        self.standing_of(name.as_deref()).await
    }

    /// [`Engine::standing`] of a name already put in canonical form (or refused by
    /// [`canonical`](crate::core::username::canonical)): for a caller that needs the canonical
    /// form for its own use too (the audit event), so that one request canonicalises once.
    pub(crate) async fn standing_of(&self, name: Result<&str, &UsernameError>) -> Standing {
        let name = match name {
            Ok(n) => n,
            Err(e) => return Standing::Refused(Refusal::InvalidName(e.clone())),
        };
        // One read: the user, its block, its lock and whether a bypass exists.
        let standing = if name.is_empty() {
            None
        } else {
            match self.store.user_standing(name, now_unix()).await {
                Ok(s) => s,
                Err(e) => return Standing::Refused(Refusal::Store(e)),
            }
        };
        let Some(standing) = standing else {
            return match self.settings.unknown_users {
                UnknownUsers::Deny => Standing::Refused(Refusal::Unknown),
                UnknownUsers::Caller => Standing::Unknown(name.to_string()),
            };
        };
        if standing.blocked {
            return Standing::Refused(Refusal::Blocked);
        }
        if let Some(until) = standing.locked_until {
            return Standing::Refused(Refusal::LockedOut(until));
        }
        if !standing.user.enabled {
            return match standing.user.disabled_behavior {
                AuthResult::Succeed => Standing::DisabledPass,
                AuthResult::Fail => Standing::Refused(Refusal::Disabled),
            };
        }
        Standing::Active(Box::new(standing))
    }

    /// [`Engine::standing`] for the operations that check a secret (`Validate*`): the user, or the
    /// `Error` to answer. Unknown users are `USER_NOT_FOUND` whatever `unknown_users` says (there is
    /// no secret to check), and a disabled user is refused whatever its disabled behaviour.
    pub(crate) async fn standing_for_check(&self, raw: Option<&str>) -> Result<UserRecord, Error> {
        match self.standing(raw).await {
            Standing::Active(standing) => Ok(standing.user),
            Standing::Unknown(_) => Err(ErrorCode::UserNotFound.error()),
            Standing::DisabledPass => Err(Refusal::Disabled.error()),
            Standing::Refused(r) => Err(r.logged_error()),
        }
    }

    /// [`Engine::standing`] for `PrimaryAuthUser`, which answers "is this the user's password?"
    /// with no second factor: `Ok` when the directory may be asked, else the `Error` to answer.
    ///
    /// A refused user (blocked, locked out, disabled with behaviour `fail`, unknown under
    /// `unknown_users = "deny"`, an invalid name, no store) is refused before the directory is
    /// asked, so a right password never answers `true` for them and their passwords cannot be
    /// tried through pfgate. Under `"caller"` an unknown user is left to the directory (the
    /// operation has no `requireUserMatch` to decide with), and a disabled user with behaviour
    /// `succeed` still needs the right password: the behaviour waives the second factor, not this.
    pub(crate) async fn standing_for_password(&self, raw: Option<&str>) -> Result<(), Error> {
        match self.standing(raw).await {
            Standing::Active(_) | Standing::Unknown(_) | Standing::DisabledPass => Ok(()),
            Standing::Refused(r) => Err(r.logged_error()),
        }
    }

    /// The store's form of the lockout settings.
    fn failure_rule(&self) -> FailureRule {
        let l = self.settings.lockout;
        FailureRule {
            threshold: l.threshold,
            window_secs: l.window.as_secs() as i64,
            lock_secs: l.duration.as_secs() as i64,
        }
    }

    /// Counts a failed attempt of `user`; when it locks the user, writes a `user_locked_out` audit
    /// event. A store that cannot count is logged: the attempt was refused anyway.
    pub(crate) async fn count_failure(&self, ctx: &CallContext, operation: &str, user: &str) {
        let rule = self.failure_rule();
        match self.store.record_failure(user, now_unix(), rule).await {
            Ok(count) if count.failures == rule.threshold => {
                let reason = format!(
                    "{} failed attempts within {} s: locked for {} s",
                    count.failures, rule.window_secs, rule.lock_secs
                );
                audit::emit(
                    AuditKind::UserLockedOut,
                    &AuditEvent {
                        operation,
                        caller: &ctx.caller,
                        username: user,
                        call_result: Some(CallCode::AccountLocked.code()),
                        error: ErrorCode::Denied.code(),
                        reason: Some(&reason),
                        ..AuditEvent::default()
                    },
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(target: "pfgate::engine", error = %e, "could not count a failed attempt")
            }
        }
    }

    /// Forgets `user`'s failed attempts after a success.
    pub(crate) async fn forget_failures(&self, user: &str) {
        if let Err(e) = self.store.clear_failures(user, now_unix()).await {
            tracing::warn!(target: "pfgate::engine", error = %e, "could not clear failed attempts after a success");
        }
    }
}
