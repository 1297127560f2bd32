//! MFA Server semantics behind the SDK: who the user is, whether to call, and what to answer.
//!
//! The engine speaks only typed requests and responses ([`crate::pfwssdk`]); it knows nothing of
//! SOAP or HTTP, and reaches people only through a [`Provider`] and data only through a [`Store`].
//! It fails secure: a store that does not answer, a provider that fails, a deadline that passes all
//! end in "not authenticated" with a code naming the cause. An operation pfgate does not implement
//! answers `false` with `Error` 501 naming it (never a fault, so callers take their error path).
//!
//! - [`policy`]: "may this user authenticate now?", the one decision every operation that can
//!   answer an authentication success asks (unknown, blocked, locked out, disabled):
//!   `PfAuthUser*` and `Validate*` first, `PrimaryAuthUser` before the LDAP bind,
//!   `CombinedAuthUser*` after it;
//! - [`auth`]: the second-factor decision (in-flight sharing, deadline);
//! - [`admin`]: directory operations (add, change, find, block, bypass …);
//! - [`phone`]: phone-number normalisation; [`totp`]: OATH codes; [`audit`]: the audit events;
//! - [`directory`]: users files (`fixtures/demo.toml`), the seed of demo mode and the test double.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod directory;
pub mod phone;
pub mod policy;
pub mod totp;

use std::net::IpAddr;
use std::sync::Arc;

use rand::RngCore;

use crate::config::EngineSettings;
use crate::pfwssdk::codes::ErrorCode;
use crate::pfwssdk::{response as rs, Error, Operation, Request, Response};
use crate::providers::Provider;
use crate::store::Store;
use auth::{AuthInput, Inflight};

/// Who is calling, as far as the transport knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The caller's address (the forwarded one when the peer is a trusted proxy).
    pub caller_ip: IpAddr,
    /// Authenticated caller identity, or `anonymous`.
    pub caller: String,
    /// An outcome scripted for the provider call this request causes (the test double's matched
    /// rule), handed on in [`crate::providers::AuthAttempt::scripted`]; `None` on the gateway.
    pub scripted: Option<directory::Outcome>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    settings: EngineSettings,
    inflight: Arc<Inflight>,
    primary: Option<Arc<crate::primary::PrimaryAuth>>,
}

/// A new `authenticationRequestId`: 32 upper-case hex characters from the OS RNG.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// A six-digit one-time passcode from the OS RNG, uniformly distributed.
pub fn new_passcode() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The [`AuthInput`] of authentication request `$r` of operation `$op`, with `$app` as its
/// application name (the older operations carry none).
macro_rules! auth_input {
    ($r:ident, $op:ident, $app:expr) => {
        AuthInput {
            operation: stringify!($op),
            username: $r.username.as_deref(),
            require_user_match: $r.require_user_match,
            application_name: $app,
            initiating_ip: $r.initiating_ip_address.as_deref(),
            ..AuthInput::default()
        }
    };
}

/// `PfAuthUser*`: the second-factor decision for `$input` (by default [`auth_input!`]) as the
/// response of `$op`, with its `authenticationRequestId` for the operations that carry one.
macro_rules! auth_response {
    (@answer $self:ident, $ctx:ident, $op:ident, $input:expr, with_id) => {{
        let d = $self.authenticate($ctx, $input).await;
        Response::$op(rs::$op {
            result: d.success,
            call_result: d.call_result,
            authentication_request_id: d.request_id,
            error: d.error,
        })
    }};
    ($self:ident, $ctx:ident, $r:ident, $op:ident, with_id) => {
        auth_response!(@answer $self, $ctx, $op,
            auth_input!($r, $op, $r.application_name.as_deref()), with_id)
    };
    ($self:ident, $ctx:ident, $r:ident, $op:ident, $app:expr) => {{
        let d = $self.authenticate($ctx, auth_input!($r, $op, $app)).await;
        Response::$op(rs::$op {
            result: d.success,
            call_result: d.call_result,
            error: d.error,
        })
    }};
}

/// `PfAuthUser_5`/`PfAuthUserMaster_4`: with the number and the mode the request carries.
macro_rules! auth_with_phone {
    ($self:ident, $ctx:ident, $r:ident, $op:ident) => {
        auth_response!(@answer $self, $ctx, $op, AuthInput {
            phone: Some((
                $r.country_code.as_deref().unwrap_or(""),
                $r.phone_number.as_deref().unwrap_or(""),
                $r.extension.as_deref().unwrap_or(""),
            )),
            mode: $r.mode,
            ..auth_input!($r, $op, $r.application_name.as_deref())
        }, with_id)
    };
}

/// `CombinedAuthUser*`: primary authentication by LDAP bind, then the second factor.
macro_rules! combined {
    ($self:ident, $ctx:ident, $r:ident, $op:ident, $app:expr $(, $with_id:ident)?) => {{
        let (primary_ok, primary_error) = $self
            .primary_auth($r.username.as_deref(), $r.password.as_deref())
            .await;
        if !primary_ok {
            let mut resp = rs::$op::default();
            resp.error = primary_error;
            Response::$op(resp)
        } else {
            let d = $self.authenticate($ctx, auth_input!($r, $op, $app)).await;
            let mut resp = rs::$op::default();
            resp.result = d.success;
            resp.primary_auth_succeeded = true;
            resp.pf_auth_succeeded = d.success;
            resp.call_result = d.call_result;
            resp.error = d.error;
            $( let _ = stringify!($with_id); resp.authentication_request_id = d.request_id; )?
            Response::$op(resp)
        }
    }};
}

impl Engine {
    /// Primary authentication: `(succeeded, error)`. Without an LDAP bind configured it answers
    /// Error 502; a directory that cannot be reached fails secure with Error 505.
    ///
    /// Boxed (like `authenticate`): an LDAP bind's state is large, and inline it would size every
    /// request's future, the waiting authentications' included.
    fn primary_auth<'a>(
        &'a self,
        username: Option<&'a str>,
        password: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = (bool, Error)> + Send + 'a>> {
        Box::pin(self.primary_auth_inline(username, password))
    }

    /// `PrimaryAuthUser`: the policy ([`Engine::standing_for_password`]), then the LDAP bind.
    /// Before the policy was asked here, a blocked, locked-out or disabled user's right password
    /// answered `true` (issue #17, item 1 follow-up). Without `[primary_auth]` the answer is Error
    /// 502 whoever the user is.
    async fn primary_auth_user(
        &self,
        username: Option<&str>,
        password: Option<&str>,
    ) -> (bool, Error) {
        if self.primary.is_none() {
            return (false, ErrorCode::PrimaryAuthNotConfigured.error());
        }
        if let Err(refused) = self.standing_for_password(username).await {
            return (false, refused);
        }
        self.primary_auth(username, password).await
    }

    async fn primary_auth_inline(
        &self,
        username: Option<&str>,
        password: Option<&str>,
    ) -> (bool, Error) {
        let Some(primary) = &self.primary else {
            return (false, ErrorCode::PrimaryAuthNotConfigured.error());
        };
        let user = username.map(str::trim).unwrap_or("");
        match primary.verify(user, password.unwrap_or("")).await {
            Ok(true) => (true, Error::ok()),
            Ok(false) => (
                false,
                ErrorCode::Denied
                    .with("Primary authentication failed: wrong user name or password."),
            ),
            Err(e) => {
                tracing::error!(target: "pfgate::engine", error = %e, "LDAP primary authentication unavailable");
                (false, ErrorCode::PrimaryAuthUnavailable.error())
            }
        }
    }

    /// An engine over `store`, reaching people through `provider`.
    pub fn new(
        store: Arc<dyn Store>,
        provider: Arc<dyn Provider>,
        settings: EngineSettings,
    ) -> Self {
        Self {
            store,
            provider,
            settings,
            inflight: Arc::new(Inflight::default()),
            primary: None,
        }
    }

    /// A new engine over the same store and the same calls in flight, with a new provider and
    /// settings: what a configuration reload swaps in. Callers already waiting keep waiting for
    /// their call (placed through the old provider); new authentications use the new one.
    pub fn reconfigured(
        &self,
        provider: Arc<dyn Provider>,
        settings: EngineSettings,
        primary: Option<Arc<crate::primary::PrimaryAuth>>,
    ) -> Self {
        Self {
            store: self.store.clone(),
            provider,
            settings,
            inflight: self.inflight.clone(),
            primary,
        }
    }

    /// The provider (kept across a reload when its configuration did not change, so circuit
    /// breakers keep their state).
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// Ends every authentication still waiting, now and later, with CallResult 11 "Call Timed
    /// Out": the last step of a stop whose grace period has run out.
    pub fn abandon_waits(&self) {
        self.inflight.abandon();
    }

    /// Enables primary authentication (`CombinedAuthUser*`, `PrimaryAuthUser`) by LDAP bind.
    pub fn with_primary(mut self, primary: Option<Arc<crate::primary::PrimaryAuth>>) -> Self {
        self.primary = primary;
        self
    }

    /// The engine's settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Authentications in flight now (for metrics and tests).
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// True when the store answers: what `/readyz` reports. Providers are left out on purpose —
    /// a provider outage is handled by routing and fail mode, and taking every instance out of a
    /// load balancer because Duo is down would only turn a degraded service into none.
    pub async fn ready(&self) -> bool {
        self.store.health().await.is_ok()
    }

    /// True when the store and the provider answer (`TestMasterConnection`).
    pub async fn healthy(&self) -> bool {
        self.store.health().await.is_ok() && self.provider.healthy().await
    }

    /// Answers one request.
    pub async fn handle(&self, ctx: &CallContext, request: Request) -> Response {
        match request {
            Request::TestSecurity(_) => Response::TestSecurity(rs::TestSecurity {
                result: Some("secure".into()),
            }),
            Request::TestMasterConnection(_) => {
                let ok = self.healthy().await;
                let error = if ok {
                    Error::ok()
                } else {
                    ErrorCode::StoreUnavailable.error()
                };
                Response::status(Operation::TestMasterConnection, ok, error)
            }
            // The meaning of this string is not public (docs/protocol.md Q11); pfgate answers "true" or
            // "false" for the same health check as TestMasterConnection.
            Request::TestMasterConnection_2(_) => {
                let ok = self.healthy().await;
                Response::status(Operation::TestMasterConnection_2, ok, Error::ok())
            }
            Request::PfAuthUser(r) => auth_response!(self, ctx, r, PfAuthUser, None),
            Request::PfAuthUser2(r) => auth_response!(self, ctx, r, PfAuthUser2, None),
            Request::PfAuthUser3(r) => {
                auth_response!(self, ctx, r, PfAuthUser3, r.application_name.as_deref())
            }
            Request::PfAuthUser_3(r) => {
                auth_response!(self, ctx, r, PfAuthUser_3, r.application_name.as_deref())
            }
            Request::PfAuthUser_4(r) => auth_response!(self, ctx, r, PfAuthUser_4, with_id),
            Request::PfAuthUserMaster(r) => auth_response!(self, ctx, r, PfAuthUserMaster, None),
            Request::PfAuthUserMaster2(r) => {
                auth_response!(
                    self,
                    ctx,
                    r,
                    PfAuthUserMaster2,
                    r.application_name.as_deref()
                )
            }
            Request::PfAuthUserMaster_2(r) => {
                auth_response!(
                    self,
                    ctx,
                    r,
                    PfAuthUserMaster_2,
                    r.application_name.as_deref()
                )
            }
            Request::PfAuthUserMaster_3(r) => {
                auth_response!(self, ctx, r, PfAuthUserMaster_3, with_id)
            }
            Request::PfAuthUser_5(r) => auth_with_phone!(self, ctx, r, PfAuthUser_5),
            Request::PfAuthUserMaster_4(r) => auth_with_phone!(self, ctx, r, PfAuthUserMaster_4),
            Request::PrimaryAuthUser(r) => {
                let (ok, error) = self
                    .primary_auth_user(r.username.as_deref(), r.password.as_deref())
                    .await;
                Response::status(Operation::PrimaryAuthUser, ok, error)
            }
            Request::CombinedAuthUser(r) => combined!(self, ctx, r, CombinedAuthUser, None),
            Request::CombinedAuthUser2(r) => combined!(self, ctx, r, CombinedAuthUser2, None),
            Request::CombinedAuthUser3(r) => {
                combined!(
                    self,
                    ctx,
                    r,
                    CombinedAuthUser3,
                    r.application_name.as_deref()
                )
            }
            Request::CombinedAuthUser_3(r) => {
                combined!(
                    self,
                    ctx,
                    r,
                    CombinedAuthUser_3,
                    r.application_name.as_deref()
                )
            }
            Request::CombinedAuthUser_4(r) => {
                combined!(
                    self,
                    ctx,
                    r,
                    CombinedAuthUser_4,
                    r.application_name.as_deref(),
                    with_id
                )
            }
            Request::CombinedAuthUserMaster(r) => {
                combined!(self, ctx, r, CombinedAuthUserMaster, None)
            }
            Request::CombinedAuthUserMaster2(r) => {
                combined!(
                    self,
                    ctx,
                    r,
                    CombinedAuthUserMaster2,
                    r.application_name.as_deref()
                )
            }
            Request::CombinedAuthUserMaster_2(r) => {
                combined!(
                    self,
                    ctx,
                    r,
                    CombinedAuthUserMaster_2,
                    r.application_name.as_deref()
                )
            }
            Request::CombinedAuthUserMaster_3(r) => {
                combined!(
                    self,
                    ctx,
                    r,
                    CombinedAuthUserMaster_3,
                    r.application_name.as_deref(),
                    with_id
                )
            }
            // Boxed: the administrative operations' future is the largest of all (about twice an
            // authentication's), and without the box every waiting authentication would carry
            // that size for its whole wait (BENCHMARKS.md, "Thousands of people on the phone").
            other => match Box::pin(self.admin(ctx, other)).await {
                Ok(response) => response,
                Err(op) => Response::failure(op, ErrorCode::not_supported(op.name())),
            },
        }
    }
}
