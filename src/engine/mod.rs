//! MFA Server semantics behind the SDK: who the user is, whether to call, and what to answer.
//!
//! The engine speaks only typed requests and responses ([`crate::pfwssdk`]); it knows nothing of
//! SOAP or HTTP, and reaches people only through a [`Provider`] and data only through a [`Store`].
//! It fails secure: a store that does not answer, a provider that fails, a deadline that passes all
//! end in "not authenticated" with a code naming the cause. An operation pfgate does not implement
//! answers `false` with `Error` 501 naming it (never a fault, so callers take their error path).
//!
//! The 105 wire operations are generations of about twenty-five semantic calls (`GetUserSettings`,
//! `GetUserSettings2`, `GetUserSettings_3`, `GetUserSettingsMaster_2` … all "read the user's
//! settings"). Each family module turns its requests into one call type (`TryFrom<Request>`, the
//! request handed back when it is not theirs), decides once, and shapes that one decision into the
//! response type of the generation that asked with `respond!`, one mapping per response type:
//!
//! - [`authenticate`]: `PfAuthUser*`, `PrimaryAuthUser`, `CombinedAuthUser*`; the second-factor
//!   decision itself (in-flight sharing, deadline) is [`auth`];
//! - [`users`]: look up, add, delete, rename, find, block and unblock users;
//! - [`settings`]: read and change a user's settings, PIN rules, customer defaults, features;
//! - [`bypass`]: one-time bypasses; [`codes`]: `Validate*` (PIN, static token, passcode, OATH);
//! - [`policy`]: "may this user authenticate now?", the one decision every operation that can
//!   answer an authentication success asks (unknown, blocked, locked out, disabled):
//!   `PfAuthUser*` and `Validate*` first, `PrimaryAuthUser` before the LDAP bind,
//!   `CombinedAuthUser*` after it;
//! - [`phone`]: phone-number normalisation; [`totp`]: OATH codes; [`audit`]: the audit events;
//! - [`directory`]: users files (`fixtures/demo.toml`), the seed of demo mode and the test double.

/// The response of operation `$op`, built from its response type's default by the `fill` of the
/// group that names `$op`: one mapping per response type, so a family's decision is shaped into
/// every generation (`_2`, `Master`, `Master_2` …) in one table. An operation no group names
/// answers "not supported" (the family's classification and its table disagree: a bug, never a
/// panic).
macro_rules! respond {
    ($op:expr, $( [$($variant:ident),+ $(,)?] => |$r:ident| $fill:block ),+ $(,)?) => {
        match $op {
            $($(
                $crate::pfwssdk::Operation::$variant => {
                    #[allow(unused_mut)]
                    let mut $r = $crate::pfwssdk::response::$variant::default();
                    $fill
                    $crate::pfwssdk::Response::$variant($r)
                }
            )+)+
            other => $crate::engine::unshaped(other),
        }
    };
}

pub mod auth;
pub mod authenticate;
pub mod bypass;
pub mod codes;
pub mod primary;
// Phone numbers live in the leaf `core`; engine's own users keep reaching them here.
pub use crate::core::phone;
pub mod options;
pub mod policy;
pub mod settings;
pub mod totp;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;

use rand::RngCore;

use crate::pfwssdk::codes::ErrorCode;
use crate::pfwssdk::{response as rs, Error, Operation, Request, Response};
use crate::providers::Provider;
use crate::store::Store;
use auth::Inflight;
use options::EngineSettings;

/// Who is calling, as far as the transport knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The caller's address (the forwarded one when the peer is a trusted proxy).
    pub caller_ip: IpAddr,
    /// Authenticated caller identity, or `anonymous`.
    pub caller: String,
    /// An outcome scripted for the provider call this request causes (the test double's matched
    /// rule), handed on in [`crate::providers::AuthAttempt::scripted`]; `None` on the gateway.
    pub scripted: Option<crate::store::directory::Outcome>,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn Store>,
    provider: Arc<dyn Provider>,
    settings: EngineSettings,
    inflight: Arc<Inflight>,
    primary: Option<Arc<primary::PrimaryAuth>>,
}

/// A new `authenticationRequestId`: 32 upper-case hex characters from the OS RNG.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    upper_hex(&b)
}

/// `bytes` as upper-case hex, two characters a byte. A table lookup, not one `format!("{:02X}")`
/// per byte: it runs on every authentication, and the sixteen formatter calls were ~4.5 % of a
/// `PfAuthUser_5`'s instructions (issue #21).
fn upper_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &x in bytes {
        out.push(char::from(HEX[usize::from(x >> 4)]));
        out.push(char::from(HEX[usize::from(x & 0x0F)]));
    }
    out
}

/// A six-digit one-time passcode from the OS RNG, uniformly distributed.
pub fn new_passcode() -> String {
    use rand::Rng;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

pub use crate::core::clock::now_unix;

impl Engine {
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
        primary: Option<Arc<primary::PrimaryAuth>>,
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
    pub fn with_primary(mut self, primary: Option<Arc<primary::PrimaryAuth>>) -> Self {
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

    /// Answers one request: an authentication in one boxed future of its own, everything else in
    /// another.
    ///
    /// Not an `async fn`: one would keep the request (three copies of the largest operation's
    /// parameters) and the room for every family's state beside the authentication for as long as
    /// a caller waits for a person. Choosing the family first and boxing only that family's
    /// future keeps a waiting caller's state to the authentication's (BENCHMARKS.md, "10,000
    /// waiting callers: the allocator and the waiting state"; `future_sizes` guards it).
    ///
    /// The context is moved into the box too, so that the caller keeps nothing but the box while
    /// it waits.
    pub fn handle(
        &self,
        ctx: CallContext,
        request: Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
        let op = request.operation();
        match authenticate::AuthCall::try_from(request) {
            Ok(call) => Box::pin(async move { self.authentication(&ctx, op, call).await }),
            Err(other) => Box::pin(async move { self.other_operation(&ctx, op, other).await }),
        }
    }

    /// The operations that are not an authentication: the health checks here, the rest through
    /// [`Engine::directory`].
    async fn other_operation(
        &self,
        ctx: &CallContext,
        op: Operation,
        request: Request,
    ) -> Response {
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
                Response::status(op, ok, error)
            }
            // The meaning of this string is not public (docs/protocol.md Q11); pfgate answers "true" or
            // "false" for the same health check as TestMasterConnection.
            Request::TestMasterConnection_2(_) => {
                let ok = self.healthy().await;
                Response::status(op, ok, Error::ok())
            }
            other => self.directory(ctx, op, other).await,
        }
    }

    /// The directory and validation families, each given the request in turn; what none takes
    /// is not supported by pfgate.
    async fn directory(&self, ctx: &CallContext, op: Operation, request: Request) -> Response {
        let request = match users::UserCall::try_from(request) {
            Ok(call) => return self.users(ctx, op, call).await,
            Err(other) => other,
        };
        let request = match settings::SettingsCall::try_from(request) {
            Ok(call) => return self.settings_call(ctx, op, call).await,
            Err(other) => other,
        };
        let request = match bypass::BypassCall::try_from(request) {
            Ok(call) => return status(op, self.bypass(ctx, op, call).await),
            Err(other) => other,
        };
        match codes::CodeCall::try_from(request) {
            Ok(call) => status(op, self.validate(ctx, op, call).await),
            Err(_) => Response::failure(op, ErrorCode::not_supported(op.name())),
        }
    }
}

/// The response of an operation whose answer is its `Error`: `true` exactly when the code is 0.
fn status(op: Operation, error: Error) -> Response {
    Response::status(op, error.code == 0, error)
}

/// What `respond!` answers for an operation its table does not name: "not supported", logged as
/// the bug it is (a family took a request its response table cannot shape).
fn unshaped(op: Operation) -> Response {
    tracing::error!(target: "pfgate::engine", operation = op.name(), "no response shape for this operation");
    Response::failure(op, ErrorCode::not_supported(op.name()))
}

/// An engine on an in-memory store with an empty scripted directory, and a call context from
/// `caller` on 127.0.0.1: the set-up of the engine's own unit tests.
#[cfg(test)]
pub(crate) async fn scripted_engine_for_tests(caller: &str) -> (Engine, CallContext) {
    let key = crate::store::secrets::SecretKey::generate();
    let store: Arc<dyn Store> = Arc::new(
        crate::store::sqlite::SqliteStore::in_memory(key)
            .await
            .expect("in-memory store"),
    );
    let directory =
        crate::store::directory::Directory::from_toml(caller, "").expect("empty directory");
    let provider =
        Arc::new(crate::providers::scripted::ScriptedProvider::from_directory(&directory));
    let settings = crate::config::Settings::demo(([127, 0, 0, 1], 0).into());
    let engine = Engine::new(store, provider, settings.engine.clone());
    let ctx = CallContext {
        caller_ip: [127, 0, 0, 1].into(),
        caller: caller.into(),
        scripted: None,
    };
    (engine, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfwssdk::soap::xml::{parse, XmlLimits};
    use crate::pfwssdk::NAMESPACE;

    /// The table lookup writes what `format!("{:02X}")` wrote, for every byte value, and a request
    /// id is still 32 upper-case hex characters (callers and tests parse it).
    #[test]
    fn request_ids_keep_their_format() {
        let all: Vec<u8> = (0..=255u8).collect();
        let expected: String = all.iter().map(|x| format!("{x:02X}")).collect();
        assert_eq!(upper_hex(&all), expected);
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
    }

    /// True when one of the families takes `request` (the health checks are `handle`'s own).
    fn claimed(request: Request) -> bool {
        let Err(request) = authenticate::AuthCall::try_from(request) else {
            return true;
        };
        let Err(request) = users::UserCall::try_from(request) else {
            return true;
        };
        let Err(request) = settings::SettingsCall::try_from(request) else {
            return true;
        };
        let Err(request) = bypass::BypassCall::try_from(request) else {
            return true;
        };
        codes::CodeCall::try_from(request).is_ok()
    }

    /// A family's classification and its response table agree: every operation a family takes
    /// is shaped (never `respond!`'s "not supported" fallback), and only the operations no family
    /// takes answer Error 501.
    #[tokio::test]
    async fn every_operation_a_family_takes_has_a_response_shape() {
        let (engine, ctx) = scripted_engine_for_tests("shapes").await;
        let health = [
            Operation::TestSecurity,
            Operation::TestMasterConnection,
            Operation::TestMasterConnection_2,
        ];
        let mut taken = 0;
        for &op in Operation::ALL {
            let xml = format!(r#"<{name} xmlns="{NAMESPACE}"/>"#, name = op.name());
            let element = parse(xml.as_bytes(), XmlLimits::default()).expect("empty request");
            let request = Request::decode(op, &element).expect("defaults decode");
            let family = claimed(request.clone());
            let response = engine.handle(ctx.clone(), request).await;
            assert_eq!(response.operation(), op);
            let (_, error, _) = response.outcome();
            let not_supported = error == Some(ErrorCode::NotSupported.code());
            assert_eq!(not_supported, !family && !health.contains(&op), "{op:?}");
            taken += usize::from(family);
        }
        assert!(taken >= 60, "{taken} operations taken by the families");
    }
}
