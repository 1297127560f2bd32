//! Codes: `ValidatePin`, `ValidateStaticToken`, `ValidatePasscode*`, `ValidateOathCode*`, the
//! second step of an authentication or a check on its own.
//!
//! Every attempt goes through one gate (`Engine::verified`): the policy first, then the secret; a
//! refusal counts towards the lockout, a success clears the count, and each attempt writes an
//! audit event (never the secret). The `Master` generations are the same calls.

use std::time::Instant;

use subtle::ConstantTimeEq;

use super::users::s;
use super::{now_unix, CallContext, Engine};
use crate::pfwssdk::codes::{CallCode, ErrorCode};
use crate::pfwssdk::{Error, Operation, Request};
use crate::store::{TransactionKind, UserRecord};
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

/// The semantic calls of the code families (no `Debug`: they carry the secrets to check).
pub(crate) enum CodeCall {
    /// `ValidatePin`.
    Pin {
        username: Option<String>,
        pin: Option<String>,
    },
    /// `ValidateStaticToken`.
    StaticToken {
        username: Option<String>,
        token: Option<String>,
    },
    /// `ValidatePasscode`, `ValidatePasscodeMaster`: the code of a text message or a provider.
    Passcode {
        username: Option<String>,
        passcode: Option<String>,
    },
    /// `ValidateOathCode`, `ValidateOathCodeMaster`: an OATH code, or the code a pending
    /// authentication awaits.
    Oath {
        username: Option<String>,
        code: Option<String>,
        request_id: Option<String>,
    },
}

impl TryFrom<Request> for CodeCall {
    type Error = Request;

    /// The code families' classification; any other request is handed back.
    fn try_from(request: Request) -> Result<Self, Request> {
        use Request as R;
        Ok(match request {
            R::ValidatePin(r) => Self::Pin {
                username: r.username,
                pin: r.pin,
            },
            R::ValidateStaticToken(r) => Self::StaticToken {
                username: r.username,
                token: r.static_token,
            },
            R::ValidatePasscode(r) => Self::Passcode {
                username: r.username,
                passcode: r.passcode,
            },
            R::ValidatePasscodeMaster(r) => Self::Passcode {
                username: r.username,
                passcode: r.passcode,
            },
            R::ValidateOathCode(r) => Self::Oath {
                username: r.username,
                code: r.code,
                request_id: r.authentication_request_id,
            },
            R::ValidateOathCodeMaster(r) => Self::Oath {
                username: r.username,
                code: r.code,
                request_id: r.authentication_request_id,
            },
            other => return Err(other),
        })
    }
}

impl Engine {
    /// One code check: the `Error` to send (0 when the code is good).
    pub(super) async fn validate(&self, ctx: &CallContext, op: Operation, call: CodeCall) -> Error {
        match call {
            CodeCall::Pin { username, pin } => self.validate_pin(ctx, op, &username, &pin).await,
            CodeCall::StaticToken { username, token } => {
                self.validate_static_token(ctx, op, &username, &token).await
            }
            CodeCall::Passcode { username, passcode } => {
                self.validate_passcode(ctx, op, &username, &passcode).await
            }
            CodeCall::Oath {
                username,
                code,
                request_id,
            } => {
                self.validate_oath(ctx, op, &username, &code, &request_id)
                    .await
            }
        }
    }

    async fn validate_pin(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        pin: &Option<String>,
    ) -> Error {
        let pin = s(pin);
        let success = Some(CallCode::PinEntered);
        self.verified(ctx, op, username, None, success, |u| async move {
            let ok = u
                .pin_hash
                .as_deref()
                .is_some_and(|h| crate::store::secrets::verify_pin(&pin, h));
            if ok {
                Ok(())
            } else {
                Err(ErrorCode::IncorrectPin.error())
            }
        })
        .await
    }

    async fn validate_static_token(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        token: &Option<String>,
    ) -> Error {
        let given = s(token);
        self.verified(ctx, op, username, None, None, |u| async move {
            let ok = u.static_token.as_deref().is_some_and(|t| {
                !given.is_empty() && bool::from(t.as_bytes().ct_eq(given.as_bytes()))
            });
            if ok {
                Ok(())
            } else {
                Err(ErrorCode::Denied.error())
            }
        })
        .await
    }

    /// One attempt at a secret (`Validate*`): the policy first ([`Engine::standing_for_check`]:
    /// unknown, blocked, locked out and disabled users are refused before any secret is looked
    /// at), then `check` on the user; a refusal of the secret counts towards the lockout, a success
    /// clears the count. Every attempt writes an audit event (never the secret).
    async fn verified<F, Fut>(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        request_id: Option<&str>,
        success: Option<CallCode>,
        check: F,
    ) -> Error
    where
        F: FnOnce(UserRecord) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let started = Instant::now();
        let result = match self.standing_for_check(username.as_deref()).await {
            Err(e) => Err(e),
            Ok(user) => {
                let name = user.username.clone();
                let checked = check(user).await;
                match &checked {
                    Ok(()) => self.forget_failures(&name).await,
                    Err(e) if e.code != ErrorCode::StoreUnavailable.code() => {
                        self.count_failure(ctx, op.name(), &name).await
                    }
                    Err(_) => {}
                }
                checked
            }
        };
        let error = result.err().unwrap_or_else(Error::ok);
        let kind = if error.code == 0 {
            AuditKind::SecondFactorCompleted
        } else {
            AuditKind::SecondFactorFailed
        };
        audit::emit(
            kind,
            &AuditEvent {
                operation: op.name(),
                caller: &ctx.caller,
                username: &crate::core::username::for_log(username.as_deref().unwrap_or("")),
                call_result: if error.code == 0 {
                    success.map(CallCode::code)
                } else {
                    Some(0)
                },
                error: error.code,
                latency: started.elapsed(),
                request_id,
                ..AuditEvent::default()
            },
        );
        error
    }

    async fn validate_passcode(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        passcode: &Option<String>,
    ) -> Error {
        let given = s(passcode);
        let success = Some(CallCode::TextMessageAuthenticated);
        self.verified(ctx, op, username, None, success, |user| async move {
            let now = now_unix();
            let take = |kind| {
                self.store
                    .take_user_transaction(&user.username, kind, &ctx.caller, now)
            };
            let sms = take(TransactionKind::SmsPasscode)
                .await
                .map_err(|e| self.store_error(&e))?;
            let tx = match sms {
                Some(tx) => tx,
                None => {
                    // A code the provider sent and checks itself (Twilio Verify).
                    let provider = take(TransactionKind::ProviderCode)
                        .await
                        .map_err(|e| self.store_error(&e))?
                        .ok_or_else(|| {
                            ErrorCode::Denied
                                .with("Multi-Factor Authentication denied: no passcode is pending.")
                        })?;
                    return if !given.trim().is_empty()
                        && self.check_provider_code(&provider, given.trim()).await
                    {
                        Ok(())
                    } else {
                        Err(ErrorCode::Denied.error())
                    };
                }
            };
            let ok = tx.code_hash.as_deref().is_some_and(|h| {
                !given.trim().is_empty() && crate::store::secrets::verify_pin(given.trim(), h)
            });
            if ok {
                Ok(())
            } else {
                Err(ErrorCode::Denied.error())
            }
        })
        .await
    }

    async fn validate_oath(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        code: &Option<String>,
        request_id: &Option<String>,
    ) -> Error {
        let code = s(code);
        let id = request_id
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty());
        let success = Some(CallCode::OathCodeVerified);
        self.verified(ctx, op, username, request_id.as_deref(), success, |user| async move {
            let now = now_unix();
            if let Some(id) = id {
                // Only the user's own transaction, started by this caller, is taken: anyone
                // else's is left for its owner (issue #23, item 7).
                let tx = self
                    .store
                    .take_transaction(id, &user.username, &ctx.caller, now)
                    .await
                    .map_err(|e| self.store_error(&e))?;
                let Some(tx) = tx else {
                    return Err(ErrorCode::Denied.with(
                        "Multi-Factor Authentication denied: unknown or expired authenticationRequestId.",
                    ));
                };
                if tx.kind == TransactionKind::ProviderCode {
                    return if !code.trim().is_empty() && self.check_provider_code(&tx, code.trim()).await {
                        Ok(())
                    } else {
                        Err(ErrorCode::Denied.error())
                    };
                }
            }
            let secret = user
                .oath_secret
                .as_deref()
                .and_then(super::totp::base32_decode)
                .ok_or_else(|| ErrorCode::Denied.with("Multi-Factor Authentication denied: no OATH token."))?;
            let step = i64::from(user.oath_time_interval.max(1));
            let Some(t) = super::totp::verify(&secret, &code, now, step) else {
                return Err(ErrorCode::Denied.error());
            };
            // A code is good once, across every instance sharing the store.
            let fresh = self
                .store
                .mark_code_used(&user.username, &format!("oath:{t}"), now + 3 * step)
                .await
                .map_err(|e| self.store_error(&e))?;
            if !fresh {
                return Err(ErrorCode::Denied.with("Multi-Factor Authentication denied: the OATH code was already used."));
            }
            Ok(())
        })
        .await
    }
}
