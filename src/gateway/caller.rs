//! Who is calling: the caller's principal from `Authorization`, a trusted proxy's identity header,
//! the connection's earlier authentication, or `anonymous` where the configuration allows it.
//!
//! Refusals are plain HTTP as IIS gives them — `401` with one `WWW-Authenticate` challenge per
//! configured method for missing or bad credentials, `403` for a known caller outside the allow-list —
//! never SOAP faults, and each writes one audit event. Basic is accepted only over TLS or from a
//! trusted TLS-terminating proxy. An identity header from anyone but a trusted proxy is ignored and
//! the attempt logged.
//!
//! `Negotiate` carries NTLM or Kerberos. With `[auth.kerberos]` (feature `kerberos`) a token
//! whose client prefers Kerberos 5 — a SPNEGO `NegTokenInit` listing a Kerberos OID before NTLMSSP,
//! or a bare Kerberos AP-REQ as IIS also accepts — goes whole to the GSS-API acceptor
//! ([`crate::auth::kerberos`]); the caller is then the ticket's client, `user@REALM`. Everything
//! else stays on pfgate's own NTLM verifier. Tokens are never logged.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderMap;

use super::guard::{CheckError, GuestSlot};
use super::{AppState, ConnInfo};
use crate::auth::basic;
use crate::auth::ntlm::{
    NtlmAcceptor, NtlmAccountMap, NtlmServerConfig, NtlmState, NtlmStep, ReplayCache,
};
use crate::auth::refusal::{Malformed, SignInRefusal};
use crate::auth::spnego::{NegotiateReject, NegotiateState, NegotiateStep};
#[cfg(feature = "kerberos")]
use crate::auth::{
    kerberos::{KerberosContext, KerberosOutcome},
    spnego::{mechanism_of, Mechanism},
};
use crate::config::{is_trusted, Settings};
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

/// Per-connection authentication state (connection-based schemes such as NTLM authenticate the
/// connection, as IIS does, so later requests on it need not repeat the handshake).
#[derive(Debug, Default)]
pub struct ConnAuth {
    principal: Mutex<Option<String>>,
    /// A request on this connection signed in (by any scheme, Basic included).
    signed_in: AtomicBool,
    /// While the connection has not signed in: its place among the guests
    /// ([`super::guard::Connections`]), given back at the first sign-in.
    guest: Mutex<Option<GuestSlot>>,
    /// Some request on this connection is in the middle of an NTLM/Negotiate/Kerberos handshake.
    handshaking: AtomicBool,
    /// Admitted past the guests' share: must sign in on its first request.
    probation: AtomicBool,
    /// Requests being answered on this connection.
    active: std::sync::atomic::AtomicUsize,
    /// When the last request ended (or the connection was accepted).
    last_active: Mutex<Option<std::time::Instant>>,
    ntlm: Mutex<NtlmState>,
    negotiate: Mutex<NegotiateState>,
    /// A Kerberos handshake that needs another leg (a SPNEGO counter-proposal was sent). Almost
    /// never used: Kerberos clients send a complete AP-REQ in their first token.
    #[cfg(feature = "kerberos")]
    kerberos: Mutex<Option<KerberosContext>>,
}

/// The process-wide NTLM acceptor parts: how pfgate names itself, the accounts, and the cache that
/// makes every AUTHENTICATE message single-use.
#[derive(Debug)]
pub struct NtlmRuntime {
    config: NtlmServerConfig,
    accounts: NtlmAccountMap,
    replay: ReplayCache,
}

impl NtlmRuntime {
    /// Reads the accounts' secrets.
    pub fn new(settings: &crate::config::NtlmSettings) -> Result<Self, String> {
        let config = NtlmServerConfig::new(
            settings.netbios_domain.clone(),
            settings.netbios_computer.clone(),
            settings.dns_domain.clone(),
            settings.dns_computer.clone(),
        );
        let mut accounts = NtlmAccountMap::new();
        for a in &settings.accounts {
            let hash =
                crate::config::ntlm_account_hash(a).map_err(|e| format!("{}: {e}", a.principal))?;
            let (domain, user) = a
                .principal
                .split_once('\\')
                .unwrap_or(("*", a.principal.as_str()));
            accounts.insert_nt_hash(domain, user, hash);
        }
        let replay = ReplayCache::for_config(&config);
        Ok(Self {
            config,
            accounts,
            replay,
        })
    }
}

impl ConnAuth {
    /// The principal this connection authenticated as, if any.
    pub fn principal(&self) -> Option<String> {
        self.principal.lock().ok().and_then(|p| p.clone())
    }

    /// Records the connection's principal.
    pub fn set_principal(&self, p: &str) {
        if let Ok(mut g) = self.principal.lock() {
            *g = Some(p.to_string());
        }
        self.mark_signed_in();
    }

    /// A connection that has not signed in yet, counted as a guest through `slot`; on
    /// `probation`, it must sign in on its first request.
    pub fn guest(slot: GuestSlot, probation: bool) -> Self {
        Self {
            guest: Mutex::new(Some(slot)),
            probation: AtomicBool::new(probation),
            last_active: Mutex::new(Some(std::time::Instant::now())),
            ..Self::default()
        }
    }

    /// True while the connection counts as a guest (it has not signed in).
    pub fn is_guest(&self) -> bool {
        lock(&self.guest).is_some()
    }

    /// True when this connection's next answer must be its last: admitted on probation, and
    /// neither signed in nor in a sign-in handshake.
    pub fn must_close(&self) -> bool {
        self.probation.load(Ordering::SeqCst) && !self.signed_in() && !self.handshaking()
    }

    /// A request started on this connection.
    pub fn request_started(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    /// A request on this connection was answered.
    pub fn request_ended(&self) {
        *lock(&self.last_active) = Some(std::time::Instant::now());
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// How long the connection has had no request in progress (`None` while one is).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        lock(&self.last_active).map(|t| t.elapsed())
    }

    /// Records that a request on this connection signed in: it stops counting as a guest.
    pub fn mark_signed_in(&self) {
        self.signed_in.store(true, Ordering::SeqCst);
        if let Some(slot) = lock(&self.guest).take() {
            slot.release();
        }
    }

    /// True once any request on this connection signed in.
    pub fn signed_in(&self) -> bool {
        self.signed_in.load(Ordering::SeqCst)
    }

    /// True while a handshake (NTLM, Negotiate) on this connection waits for its next leg.
    pub fn handshaking(&self) -> bool {
        self.handshaking.load(Ordering::SeqCst)
    }
}

/// What answer a refusal gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefusalStatus {
    /// 401 with the challenges.
    #[default]
    Unauthorized,
    /// 400: the request is ambiguous (two `Authorization` or identity headers).
    BadRequest,
    /// 429 with `Retry-After`: too many failed sign-ins from the source address.
    TooManyAttempts {
        /// When the address may try again.
        retry_after: Duration,
    },
    /// 503 with `Retry-After`: the password checks are all busy.
    Busy,
}

/// A caller that could not be identified (yet).
#[derive(Debug)]
pub struct Unauthenticated {
    /// Why: a refusal, or a handshake step. `Display` is the audit log's and access log's text
    /// (never a credential).
    pub reason: NotSignedIn,
    /// The user name the caller claimed, if any.
    pub claimed: Option<String>,
    /// The one challenge to answer with instead of the full list (the next leg of a handshake).
    pub challenge: Option<String>,
}

/// Why a request's caller is not signed in.
#[derive(Debug, thiserror::Error)]
pub enum NotSignedIn {
    /// A leg of a multi-leg handshake: answered 401 with the next token. Not a refusal: neither
    /// audited nor counted as one.
    #[error("{0} handshake in progress")]
    InProgress(Handshake),
    /// Refused.
    #[error(transparent)]
    Refused(SignInRefusal),
}

/// A handshake that takes more than one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Handshake {
    /// Raw NTLM (`Authorization: NTLM`).
    #[error("NTLM")]
    Ntlm,
    /// NTLM inside SPNEGO (`Authorization: Negotiate`).
    #[error("Negotiate")]
    Negotiate,
    /// Kerberos (a SPNEGO counter-proposal was sent).
    #[error("Kerberos")]
    #[cfg_attr(not(feature = "kerberos"), allow(dead_code))]
    Kerberos,
}

impl Unauthenticated {
    /// True when this 401 is a handshake step, not a refusal (not audited as a failure).
    pub fn in_progress(&self) -> bool {
        matches!(self.reason, NotSignedIn::InProgress(_))
    }

    /// The refusal, unless this is a handshake step.
    pub fn refusal(&self) -> Option<&SignInRefusal> {
        match &self.reason {
            NotSignedIn::Refused(r) => Some(r),
            NotSignedIn::InProgress(_) => None,
        }
    }

    /// The answer ([`NotSignedIn::status`]).
    pub fn status(&self) -> RefusalStatus {
        self.reason.status()
    }
}

impl NotSignedIn {
    /// The answer, decided by the reason: duplicate credentials are a bad request, a locked-out
    /// address and busy password checks say when to come back, anything else is a 401.
    pub fn status(&self) -> RefusalStatus {
        match self {
            NotSignedIn::Refused(
                SignInRefusal::DuplicateAuthorization
                | SignInRefusal::DuplicateIdentityHeader { .. },
            ) => RefusalStatus::BadRequest,
            NotSignedIn::Refused(SignInRefusal::TooManyFailedSignIns { retry_after }) => {
                RefusalStatus::TooManyAttempts {
                    retry_after: *retry_after,
                }
            }
            NotSignedIn::Refused(SignInRefusal::PasswordChecksBusy) => RefusalStatus::Busy,
            _ => RefusalStatus::Unauthorized,
        }
    }
}

/// An identified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// The principal.
    pub principal: String,
    /// A `WWW-Authenticate` value to send on the successful response (Negotiate's final token).
    pub final_token: Option<String>,
}

/// Identifies the caller of one request. `source` is the caller's address (the peer, or the
/// address a trusted proxy forwarded), which failed sign-ins are counted against.
pub async fn identify(
    state: &AppState,
    conn: &ConnInfo,
    source: IpAddr,
    headers: &HeaderMap,
    auth: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    let result = identify_principal(state, conn, source, headers, auth).await;
    match &result {
        Ok(_) => auth.mark_signed_in(),
        Err(u) => auth.handshaking.store(u.in_progress(), Ordering::SeqCst),
    }
    result
}
fn ok(principal: String) -> Result<Identified, Unauthenticated> {
    Ok(Identified {
        principal,
        final_token: None,
    })
}

fn refused(reason: SignInRefusal) -> Unauthenticated {
    Unauthenticated {
        reason: NotSignedIn::Refused(reason),
        claimed: None,
        challenge: None,
    }
}

/// A handshake step: 401 with `challenge` (the next token) as the only challenge.
fn next_leg(handshake: Handshake, challenge: String) -> Unauthenticated {
    Unauthenticated {
        reason: NotSignedIn::InProgress(handshake),
        claimed: None,
        challenge: Some(challenge),
    }
}

fn lock<T: Default>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn b64(t: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(t)
}

/// True when `Negotiate` may carry Kerberos here (`[auth.kerberos]` configured).
fn kerberos_configured(settings: &Settings) -> bool {
    #[cfg(feature = "kerberos")]
    {
        settings.auth.kerberos.is_some()
    }
    #[cfg(not(feature = "kerberos"))]
    {
        let _ = settings;
        false
    }
}

/// One leg of NTLM (`Authorization: NTLM …`) or Negotiate (`Authorization: Negotiate …`): Kerberos
/// tokens to the Kerberos acceptor (when configured), the rest to the NTLM verifier.
fn windows_auth(
    settings: &Settings,
    ntlm: Option<&NtlmRuntime>,
    negotiate: bool,
    token: &str,
    conn: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return Err(refused(SignInRefusal::Malformed(Malformed::WindowsToken)));
    };
    #[cfg(feature = "kerberos")]
    if negotiate {
        if let Some(k) = &settings.auth.kerberos {
            let pending = lock(&conn.kerberos).take();
            let continuing = match mechanism_of(&bytes) {
                Ok(Mechanism::Kerberos) => false,
                Ok(Mechanism::Continuation) if pending.is_some() => true,
                Ok(Mechanism::Ntlm | Mechanism::Continuation) => {
                    return ntlm_auth(ntlm, negotiate, bytes, conn);
                }
                Err(e) => return Err(refused(SignInRefusal::NegotiateToken(e))),
            };
            let Some(acceptor) = k.acceptor() else {
                return Err(refused(SignInRefusal::KerberosNotBuilt));
            };
            // A Kerberos token ends whatever NTLM exchange the connection had started.
            *lock(&conn.negotiate) = NegotiateState::default();
            let context = match pending {
                Some(c) if continuing => c,
                _ => acceptor.context(),
            };
            return kerberos_auth(context, bytes, conn);
        }
    }
    let _ = settings;
    ntlm_auth(ntlm, negotiate, bytes, conn)
}

/// Runs a blocking GSS-API call (keytab and replay-cache file I/O; the KDC is never contacted)
/// from the request path.
///
/// [`identify`] is synchronous — its caller in `gateway` does not await it — so the call
/// cannot be handed to `spawn_blocking` and awaited. `block_in_place` is the synchronous
/// equivalent: it tells the multi-threaded runtime (the one `pfgate serve` runs) that this
/// worker blocks, and the runtime moves the worker's other tasks elsewhere meanwhile. A
/// current-thread runtime does not allow that, so there (tests, embedding) the call runs inline.
#[cfg(feature = "kerberos")]
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One Kerberos leg on `context`: the caller is the ticket's client, `user@REALM`, and the
/// acceptor's final token (the AP-REP, for mutual authentication) goes back on the response.
#[cfg(feature = "kerberos")]
fn kerberos_auth(
    mut context: KerberosContext,
    token: Vec<u8>,
    conn: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    let (context, result) = blocking(move || {
        let r = context.step(&token);
        (context, r)
    });
    match result {
        Ok(KerberosOutcome::Authenticated {
            principal,
            response_token,
        }) => {
            conn.set_principal(&principal);
            Ok(Identified {
                principal,
                final_token: response_token.map(|t| format!("Negotiate {}", b64(&t))),
            })
        }
        Ok(KerberosOutcome::Continue { token }) => {
            *lock(&conn.kerberos) = Some(context);
            Err(next_leg(
                Handshake::Kerberos,
                format!("Negotiate {}", b64(&token)),
            ))
        }
        // The error text is GSS-API's (principal names, "Request is a replay"…), never the token.
        Err(e) => Err(refused(SignInRefusal::Kerberos(e))),
    }
}

/// One NTLM leg, raw (`NTLM`) or inside SPNEGO (`Negotiate`).
fn ntlm_auth(
    runtime: Option<&NtlmRuntime>,
    negotiate: bool,
    bytes: Vec<u8>,
    conn: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    let Some(runtime) = runtime else {
        return Err(refused(SignInRefusal::NtlmNotEnabled));
    };
    let acceptor = NtlmAcceptor::new(&runtime.config, &runtime.accounts, &runtime.replay);
    if negotiate {
        let state = std::mem::take(&mut *lock(&conn.negotiate));
        match state.step(&acceptor, &bytes) {
            NegotiateStep::Continue { token, state } => {
                *lock(&conn.negotiate) = state;
                Err(next_leg(
                    Handshake::Negotiate,
                    format!("Negotiate {}", b64(&token)),
                ))
            }
            NegotiateStep::Authenticated { principal, token } => {
                let p = principal.to_string();
                conn.set_principal(&p);
                Ok(Identified {
                    principal: p,
                    final_token: token.map(|t| format!("Negotiate {}", b64(&t))),
                })
            }
            NegotiateStep::Rejected(NegotiateReject::KerberosNotSupported) => {
                Err(Unauthenticated {
                    challenge: Some("NTLM".into()),
                    ..refused(SignInRefusal::KerberosNotSupported)
                })
            }
            NegotiateStep::Rejected(r) => Err(refused(SignInRefusal::Negotiate(r))),
        }
    } else {
        let state = std::mem::take(&mut *lock(&conn.ntlm));
        match acceptor.step(state, &bytes) {
            NtlmStep::Challenge { token, state } => {
                *lock(&conn.ntlm) = state;
                Err(next_leg(Handshake::Ntlm, format!("NTLM {}", b64(&token))))
            }
            NtlmStep::Authenticated { principal, .. } => {
                let p = principal.to_string();
                conn.set_principal(&p);
                ok(p)
            }
            NtlmStep::Rejected(r) => Err(refused(SignInRefusal::Ntlm(r))),
        }
    }
}

/// The authentication schemes pfgate names in its log and audit trail: the IANA registry's. Any
/// other first word of an `Authorization` value is not named at all, since it may be the
/// credential itself (`Basic<TAB>base64`, a bare token).
const KNOWN_SCHEMES: [&str; 11] = [
    "Basic",
    "Bearer",
    "Digest",
    "HOBA",
    "Mutual",
    "Negotiate",
    "NTLM",
    "PrivateToken",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "vapid",
];

/// The registered name of the scheme `value` starts with (the word before the first space), or
/// `None`: the only part of an `Authorization` value that is ever written anywhere.
pub fn scheme_name(value: &str) -> Option<&'static str> {
    let word = value.split(' ').next().unwrap_or("");
    KNOWN_SCHEMES
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(word))
}

async fn identify_principal(
    state: &AppState,
    conn_info: &ConnInfo,
    source: IpAddr,
    headers: &HeaderMap,
    conn: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    let settings = &state.settings;
    let ntlm = state.ntlm.as_ref();
    let peer = conn_info.peer.ip();
    let auth = &settings.auth;
    let trusted = is_trusted(&settings.trusted_proxies, peer);
    // An identity header the proxy sent twice is ambiguous whichever credential follows.
    if let Some(name) = auth.proxy_identity_header.as_deref().filter(|_| trusted) {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(refused(SignInRefusal::DuplicateIdentityHeader {
                header: name.to_string(),
            }));
        }
    }
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    if let Some(value) = values.next() {
        if values.next().is_some() {
            return Err(refused(SignInRefusal::DuplicateAuthorization));
        }
        let Ok(value) = value.to_str() else {
            return Err(refused(SignInRefusal::Malformed(
                Malformed::NotVisibleAscii,
            )));
        };
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        let name = scheme_name(value);
        if name == Some("Basic") {
            return basic_sign_in(state, conn_info.tls || trusted, source, token).await;
        }
        let negotiate = name == Some("Negotiate");
        let enabled = if negotiate {
            ntlm.is_some() || kerberos_configured(settings)
        } else {
            name == Some("NTLM") && ntlm.is_some()
        };
        if enabled {
            return windows_auth(settings, ntlm, negotiate, token, conn);
        }
        let _ = scheme;
        return Err(refused(match name {
            Some(n) => SignInRefusal::SchemeNotEnabled(n),
            None => SignInRefusal::SchemeNotRecognised,
        }));
    }
    if let Some(name) = &auth.proxy_identity_header {
        if let Some(v) = headers.get(name.as_str()) {
            if trusted {
                let v = v.to_str().map(str::trim).unwrap_or("");
                if !v.is_empty() {
                    return ok(v.to_string());
                }
            } else {
                tracing::warn!(
                    target: "pfgate::auth",
                    peer = %peer,
                    header = %name,
                    "identity header from a peer that is not a trusted proxy: ignored"
                );
            }
        }
    }
    if let Some(p) = conn.principal() {
        return ok(p);
    }
    if auth.allow_anonymous {
        return ok("anonymous".into());
    }
    Err(refused(SignInRefusal::NoCredentials))
}

/// Basic (`Authorization: Basic …`), accepted over TLS or from a trusted proxy (`secure`): refused
/// unchecked while `source` has used up its failed sign-ins; otherwise checked on a password
/// thread, and a failure counted against `source`.
async fn basic_sign_in(
    state: &AppState,
    secure: bool,
    source: IpAddr,
    token: &str,
) -> Result<Identified, Unauthenticated> {
    if !secure {
        return Err(refused(SignInRefusal::BasicOverPlainHttp));
    }
    let limits = &state.settings.limits;
    if let Some(retry_after) = state.guard.sign_ins.blocked(source, limits) {
        return Err(refused(SignInRefusal::TooManyFailedSignIns { retry_after }));
    }
    let Some(creds) = basic::parse(token) else {
        return Err(refused(SignInRefusal::Malformed(Malformed::Basic)));
    };
    let claimed = creds.user.clone();
    let priority = state.guard.sign_ins.priority(source, limits);
    match state
        .guard
        .passwords
        .verify(&state.settings.auth.basic, creds, priority)
        .await
    {
        Ok(Some(principal)) => ok(principal),
        Ok(None) => {
            state.guard.sign_ins.failed(source, limits);
            Err(Unauthenticated {
                claimed: Some(claimed),
                ..refused(SignInRefusal::WrongPassword)
            })
        }
        Err(CheckError::Busy) => Err(refused(SignInRefusal::PasswordChecksBusy)),
    }
}

/// The `WWW-Authenticate` challenges for this listener.
pub fn challenges(settings: &Settings, tls: bool) -> Vec<String> {
    let mut out = Vec::new();
    // As IIS with Windows Authentication: Negotiate first, then NTLM.
    if settings.auth.ntlm.is_some() || kerberos_configured(settings) {
        out.push("Negotiate".to_string());
    }
    if settings.auth.ntlm.is_some() {
        out.push("NTLM".to_string());
    }
    if !settings.auth.basic.is_empty() && tls {
        out.push("Basic realm=\"pfgate\", charset=\"UTF-8\"".to_string());
    }
    out
}

/// Writes the audit event of a refused caller.
pub fn audit_refusal(kind: AuditKind, caller: &str, operation: &str, reason: &str) {
    audit::emit(
        kind,
        &AuditEvent {
            operation,
            caller,
            reason: Some(reason),
            ..AuditEvent::default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_scheme_names_are_ever_named() {
        assert_eq!(scheme_name("Basic dXNlcjpwdw=="), Some("Basic"));
        assert_eq!(scheme_name("negotiate TlRMTVNT"), Some("Negotiate"));
        assert_eq!(scheme_name("bearer abc"), Some("Bearer"));
        for value in [
            "Basic\tdXNlcjpwdw==",
            "BasicdXNlcjpwdw==",
            "dXNlcjpwdw==",
            "eyJhbGciOi.x.y Basic",
            "",
        ] {
            assert_eq!(scheme_name(value), None, "{value}");
        }
    }

    #[test]
    fn the_reason_decides_the_answer() {
        let retry_after = Duration::from_secs(7);
        for (reason, status) in [
            (SignInRefusal::NoCredentials, RefusalStatus::Unauthorized),
            (
                SignInRefusal::DuplicateAuthorization,
                RefusalStatus::BadRequest,
            ),
            (
                SignInRefusal::DuplicateIdentityHeader {
                    header: "X-Forwarded-User".into(),
                },
                RefusalStatus::BadRequest,
            ),
            (
                SignInRefusal::TooManyFailedSignIns { retry_after },
                RefusalStatus::TooManyAttempts { retry_after },
            ),
            (SignInRefusal::PasswordChecksBusy, RefusalStatus::Busy),
        ] {
            let u = refused(reason);
            assert_eq!(u.status(), status, "{}", u.reason);
            assert!(!u.in_progress());
        }
        let leg = next_leg(Handshake::Ntlm, "NTLM abc".into());
        assert!(leg.in_progress() && leg.refusal().is_none());
        assert_eq!(leg.status(), RefusalStatus::Unauthorized);
        assert_eq!(leg.reason.to_string(), "NTLM handshake in progress");
        assert_eq!(
            next_leg(Handshake::Negotiate, String::new())
                .reason
                .to_string(),
            "Negotiate handshake in progress"
        );
        assert_eq!(
            next_leg(Handshake::Kerberos, String::new())
                .reason
                .to_string(),
            "Kerberos handshake in progress"
        );
    }
}
