//! The authentication families: eleven generations of `PfAuthUser`, nine of `CombinedAuthUser` and
//! `PrimaryAuthUser`, as three semantic calls.
//!
//! A request becomes an [`AuthCall`] (owning what the decision reads), the engine decides once
//! ([`Engine::authenticate`] in [`super::auth`], the LDAP bind here), and the decision is shaped
//! into the response type of the generation that asked. Generations differ only in which inputs
//! they carry (an application name, a number and a mode) and whether the response carries the
//! `authenticationRequestId`.

use super::auth::{AuthDecision, AuthInput};
use super::{CallContext, Engine};
use crate::pfwssdk::codes::ErrorCode;
use crate::pfwssdk::{Error, Mode3, Operation, Request, Response};

/// What an authentication request asks, whatever its generation.
#[derive(Default)]
pub(crate) struct AuthRequest {
    username: Option<String>,
    require_user_match: bool,
    application_name: Option<String>,
    initiating_ip: Option<String>,
    /// The number the request gives (`PfAuthUser_5`, `PfAuthUserMaster_4`).
    phone: Option<(String, String, String)>,
    /// The mode the request gives; `None` when it was left out.
    mode: Option<Mode3>,
}

impl AuthRequest {
    /// The decision's input for operation `op`.
    fn input(&self, op: Operation) -> AuthInput<'_> {
        AuthInput {
            operation: op.name(),
            username: self.username.as_deref(),
            require_user_match: self.require_user_match,
            application_name: self.application_name.as_deref(),
            initiating_ip: self.initiating_ip.as_deref(),
            phone: self
                .phone
                .as_ref()
                .map(|(cc, n, e)| (cc.as_str(), n.as_str(), e.as_str())),
            mode: self.mode,
        }
    }
}

/// The semantic calls of the authentication families (no `Debug`: they carry passwords).
pub(crate) enum AuthCall {
    /// `PfAuthUser*`: the second factor.
    SecondFactor(AuthRequest),
    /// `PrimaryAuthUser`: the policy, then the LDAP bind.
    Primary {
        username: Option<String>,
        password: Option<String>,
    },
    /// `CombinedAuthUser*`: the LDAP bind, then the second factor.
    Combined {
        request: AuthRequest,
        password: Option<String>,
    },
}

/// The [`AuthRequest`] of request `$r`, with `$app` as its application name (the older
/// generations carry none).
macro_rules! auth_request {
    ($r:ident, $app:expr) => {
        AuthRequest {
            username: $r.username,
            require_user_match: $r.require_user_match,
            application_name: $app,
            initiating_ip: $r.initiating_ip_address,
            ..AuthRequest::default()
        }
    };
}

/// `PfAuthUser_5`/`PfAuthUserMaster_4`: with the number and the mode the request carries.
macro_rules! with_phone {
    ($r:ident) => {
        AuthCall::SecondFactor(AuthRequest {
            phone: Some((
                $r.country_code.unwrap_or_default(),
                $r.phone_number.unwrap_or_default(),
                $r.extension.unwrap_or_default(),
            )),
            mode: $r.mode,
            ..auth_request!($r, $r.application_name)
        })
    };
}

/// `CombinedAuthUser*`: the request and its password.
macro_rules! combined {
    ($r:ident, $app:expr) => {
        AuthCall::Combined {
            password: $r.password,
            request: auth_request!($r, $app),
        }
    };
}

impl TryFrom<Request> for AuthCall {
    type Error = Request;

    /// The authentication families' classification; any other request is handed back.
    fn try_from(request: Request) -> Result<Self, Request> {
        use AuthCall::SecondFactor as Second;
        use Request as R;
        Ok(match request {
            R::PfAuthUser(r) => Second(auth_request!(r, None)),
            R::PfAuthUser2(r) => Second(auth_request!(r, None)),
            R::PfAuthUser3(r) => Second(auth_request!(r, r.application_name)),
            R::PfAuthUser_3(r) => Second(auth_request!(r, r.application_name)),
            R::PfAuthUser_4(r) => Second(auth_request!(r, r.application_name)),
            R::PfAuthUserMaster(r) => Second(auth_request!(r, None)),
            R::PfAuthUserMaster2(r) => Second(auth_request!(r, r.application_name)),
            R::PfAuthUserMaster_2(r) => Second(auth_request!(r, r.application_name)),
            R::PfAuthUserMaster_3(r) => Second(auth_request!(r, r.application_name)),
            R::PfAuthUser_5(r) => with_phone!(r),
            R::PfAuthUserMaster_4(r) => with_phone!(r),
            R::PrimaryAuthUser(r) => AuthCall::Primary {
                username: r.username,
                password: r.password,
            },
            R::CombinedAuthUser(r) => combined!(r, None),
            R::CombinedAuthUser2(r) => combined!(r, None),
            R::CombinedAuthUser3(r) => combined!(r, r.application_name),
            R::CombinedAuthUser_3(r) => combined!(r, r.application_name),
            R::CombinedAuthUser_4(r) => combined!(r, r.application_name),
            R::CombinedAuthUserMaster(r) => combined!(r, None),
            R::CombinedAuthUserMaster2(r) => combined!(r, r.application_name),
            R::CombinedAuthUserMaster_2(r) => combined!(r, r.application_name),
            R::CombinedAuthUserMaster_3(r) => combined!(r, r.application_name),
            other => return Err(other),
        })
    }
}

/// A `PfAuthUser*` decision as the response of `op`.
fn second_factor_response(op: Operation, d: AuthDecision) -> Response {
    respond!(op,
        [PfAuthUser, PfAuthUser2, PfAuthUser3, PfAuthUser_3,
         PfAuthUserMaster, PfAuthUserMaster2, PfAuthUserMaster_2] => |r| {
            r.result = d.success;
            r.call_result = d.call_result;
            r.error = d.error;
        },
        [PfAuthUser_4, PfAuthUser_5, PfAuthUserMaster_3, PfAuthUserMaster_4] => |r| {
            r.result = d.success;
            r.call_result = d.call_result;
            r.authentication_request_id = d.request_id;
            r.error = d.error;
        },
    )
}

/// Fills `CombinedAuthUser*` response `$r` from `$outcome`: the primary refusal, or the second
/// factor's decision after a primary success.
macro_rules! fill_combined {
    ($r:ident, $outcome:expr) => {
        match $outcome {
            Err(primary_error) => $r.error = primary_error,
            Ok(d) => {
                $r.result = d.success;
                $r.primary_auth_succeeded = true;
                $r.pf_auth_succeeded = d.success;
                $r.call_result = d.call_result;
                $r.error = d.error;
            }
        }
    };
}

/// A `CombinedAuthUser*` outcome (the primary refusal, or the second factor's decision) as the
/// response of `op`.
fn combined_response(op: Operation, outcome: Result<AuthDecision, Error>) -> Response {
    respond!(op,
        [CombinedAuthUser, CombinedAuthUser2, CombinedAuthUser3, CombinedAuthUser_3,
         CombinedAuthUserMaster, CombinedAuthUserMaster2, CombinedAuthUserMaster_2] => |r| {
            fill_combined!(r, outcome);
        },
        [CombinedAuthUser_4, CombinedAuthUserMaster_3] => |r| {
            let id = outcome.as_ref().ok().and_then(|d| d.request_id.clone());
            fill_combined!(r, outcome);
            r.authentication_request_id = id;
        },
    )
}

impl Engine {
    /// One authentication call, decided once and shaped for `op`.
    pub(super) async fn authentication(
        &self,
        ctx: &CallContext,
        op: Operation,
        call: AuthCall,
    ) -> Response {
        match call {
            AuthCall::SecondFactor(request) => {
                second_factor_response(op, self.authenticate(ctx, request.input(op)).await)
            }
            AuthCall::Primary { username, password } => {
                // Boxed: inline, the bind's state would size this future, which every waiting
                // second-factor call holds (BENCHMARKS.md, "10,000 waiting callers").
                let (ok, error) =
                    Box::pin(self.primary_auth_user(username.as_deref(), password.as_deref()))
                        .await;
                Response::status(op, ok, error)
            }
            AuthCall::Combined { request, password } => {
                let (primary_ok, primary_error) = self
                    .primary_auth(request.username.as_deref(), password.as_deref())
                    .await;
                let outcome = if primary_ok {
                    Ok(self.authenticate(ctx, request.input(op)).await)
                } else {
                    Err(primary_error)
                };
                combined_response(op, outcome)
            }
        }
    }

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
}
