//! One-time bypasses (`OneTimeBypass`, `OneTimeBypass2`, `OneTimeBypass_2`): the user's next
//! authentication within the time given succeeds without a call. The older generation carries no
//! duration and gets [`DEFAULT_BYPASS_SECONDS`].

use std::time::Instant;

use super::users::s;
use super::{now_unix, CallContext, Engine};
use crate::pfwssdk::{Error, Operation, Request};
use crate::store::Bypass;

/// Seconds a one-time bypass lasts when the caller gives none (MFA Server's default was 300).
pub const DEFAULT_BYPASS_SECONDS: u32 = 300;

/// A bypass request, whatever its generation.
pub(crate) struct BypassCall {
    username: Option<String>,
    reason: Option<String>,
    /// 0: the default.
    seconds: u32,
    actor: Option<String>,
}

impl TryFrom<Request> for BypassCall {
    type Error = Request;

    /// The bypass family's classification; any other request is handed back.
    fn try_from(request: Request) -> Result<Self, Request> {
        Ok(match request {
            Request::OneTimeBypass(r) => Self {
                username: r.username,
                reason: r.reason,
                seconds: 0,
                actor: r.modify_username,
            },
            Request::OneTimeBypass2(r) => Self {
                username: r.username,
                reason: r.reason,
                seconds: r.bypass_seconds,
                actor: r.modify_username,
            },
            Request::OneTimeBypass_2(r) => Self {
                username: r.username,
                reason: r.reason,
                seconds: r.bypass_seconds,
                actor: r.modify_username,
            },
            other => return Err(other),
        })
    }
}

impl Engine {
    /// Grants the bypass and audits it: the `Error` to send.
    pub(super) async fn bypass(&self, ctx: &CallContext, op: Operation, call: BypassCall) -> Error {
        let BypassCall {
            username,
            reason,
            seconds,
            actor,
        } = call;
        let started = Instant::now();
        let seconds = if seconds == 0 {
            DEFAULT_BYPASS_SECONDS
        } else {
            seconds
        };
        let error = match self.load(&username).await {
            Ok(u) => {
                let b = Bypass {
                    username: u.username.clone(),
                    reason: s(&reason),
                    expires_at: now_unix() + i64::from(seconds),
                    created_by: s(&actor),
                };
                match self.store.add_bypass(&b).await {
                    Ok(()) => Error::ok(),
                    Err(e) => self.store_error(&e),
                }
            }
            Err(e) => e,
        };
        self.audit_change(ctx, op, &s(&username), actor.as_deref(), started, &error);
        error
    }
}
