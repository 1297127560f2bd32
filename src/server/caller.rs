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
use std::sync::Mutex;

use base64::Engine as _;
use http::HeaderMap;

use crate::auth::basic;
use crate::auth::ntlm::{
    NtlmAcceptor, NtlmAccountMap, NtlmServerConfig, NtlmState, NtlmStep, ReplayCache,
};
use crate::auth::spnego::{NegotiateReject, NegotiateState, NegotiateStep};
#[cfg(feature = "kerberos")]
use crate::auth::{
    kerberos::{KerberosContext, KerberosOutcome},
    spnego::{mechanism_of, Mechanism},
};
use crate::config::{is_trusted, Settings};
use crate::engine::audit::{self, AuditEvent, AuditKind};

/// Per-connection authentication state (connection-based schemes such as NTLM authenticate the
/// connection, as IIS does, so later requests on it need not repeat the handshake).
#[derive(Debug, Default)]
pub struct ConnAuth {
    principal: Mutex<Option<String>>,
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
    }
}

/// A caller that could not be identified (yet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unauthenticated {
    /// Why (for the audit log; never contains a credential).
    pub reason: String,
    /// The user name the caller claimed, if any.
    pub claimed: Option<String>,
    /// The one challenge to answer with instead of the full list (the next leg of a handshake).
    pub challenge: Option<String>,
    /// True when this 401 is a handshake step, not a refusal (not audited as a failure).
    pub in_progress: bool,
}

/// An identified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// The principal.
    pub principal: String,
    /// A `WWW-Authenticate` value to send on the successful response (Negotiate's final token).
    pub final_token: Option<String>,
}

/// Identifies the caller of one request.
pub fn identify(
    settings: &Settings,
    ntlm: Option<&NtlmRuntime>,
    tls: bool,
    peer: IpAddr,
    headers: &HeaderMap,
    conn: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    identify_principal(settings, ntlm, tls, peer, headers, conn)
}

fn ok(principal: String) -> Result<Identified, Unauthenticated> {
    Ok(Identified {
        principal,
        final_token: None,
    })
}

fn refused(reason: impl Into<String>) -> Unauthenticated {
    Unauthenticated {
        reason: reason.into(),
        ..Unauthenticated::default()
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
        return Err(refused("malformed Windows authentication token"));
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
                Err(e) => return Err(refused(format!("Negotiate refused: {e}"))),
            };
            let Some(acceptor) = k.acceptor() else {
                return Err(refused(
                    "Kerberos is configured but its acceptor was not built at start-up",
                ));
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
/// [`identify`] is synchronous — its caller in `server::http` does not await it — so the call
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
            Err(Unauthenticated {
                reason: "Kerberos handshake in progress".into(),
                challenge: Some(format!("Negotiate {}", b64(&token))),
                in_progress: true,
                ..Unauthenticated::default()
            })
        }
        // The error text is GSS-API's (principal names, "Request is a replay"…), never the token.
        Err(e) => Err(refused(format!("Kerberos refused: {e}"))),
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
        return Err(refused(
            "the client offered NTLM, which is not enabled (no [auth.ntlm])",
        ));
    };
    let acceptor = NtlmAcceptor::new(&runtime.config, &runtime.accounts, &runtime.replay);
    if negotiate {
        let state = std::mem::take(&mut *lock(&conn.negotiate));
        match state.step(&acceptor, &bytes) {
            NegotiateStep::Continue { token, state } => {
                *lock(&conn.negotiate) = state;
                Err(Unauthenticated {
                    reason: "Negotiate handshake in progress".into(),
                    challenge: Some(format!("Negotiate {}", b64(&token))),
                    in_progress: true,
                    ..Unauthenticated::default()
                })
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
                    reason: "Kerberos is not supported; NTLM is offered".into(),
                    challenge: Some("NTLM".into()),
                    ..Unauthenticated::default()
                })
            }
            NegotiateStep::Rejected(r) => Err(refused(format!("Negotiate refused: {r:?}"))),
        }
    } else {
        let state = std::mem::take(&mut *lock(&conn.ntlm));
        match acceptor.step(state, &bytes) {
            NtlmStep::Challenge { token, state } => {
                *lock(&conn.ntlm) = state;
                Err(Unauthenticated {
                    reason: "NTLM handshake in progress".into(),
                    challenge: Some(format!("NTLM {}", b64(&token))),
                    in_progress: true,
                    ..Unauthenticated::default()
                })
            }
            NtlmStep::Authenticated { principal, .. } => {
                let p = principal.to_string();
                conn.set_principal(&p);
                ok(p)
            }
            NtlmStep::Rejected(r) => Err(refused(format!("NTLM refused: {r:?}"))),
        }
    }
}

fn identify_principal(
    settings: &Settings,
    ntlm: Option<&NtlmRuntime>,
    tls: bool,
    peer: IpAddr,
    headers: &HeaderMap,
    conn: &ConnAuth,
) -> Result<Identified, Unauthenticated> {
    let auth = &settings.auth;
    let trusted = is_trusted(&settings.trusted_proxies, peer);
    if let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if !tls && !trusted {
                return Err(refused("Basic credentials over plain HTTP are refused"));
            }
            let Some(creds) = basic::parse(token) else {
                return Err(refused("malformed Basic credentials"));
            };
            return match basic::verify(&auth.basic, &creds) {
                Some(account) => ok(account.principal.clone()),
                None => Err(Unauthenticated {
                    reason: "wrong user name or password".into(),
                    claimed: Some(creds.user),
                    ..Unauthenticated::default()
                }),
            };
        }
        let negotiate = scheme.eq_ignore_ascii_case("negotiate");
        let enabled = if negotiate {
            ntlm.is_some() || kerberos_configured(settings)
        } else {
            scheme.eq_ignore_ascii_case("ntlm") && ntlm.is_some()
        };
        if enabled {
            return windows_auth(settings, ntlm, negotiate, token, conn);
        }
        return Err(refused(format!(
            "authentication scheme '{}' is not enabled",
            crate::pfwssdk::wire::clip(scheme)
        )));
    }
    if let Some(name) = &auth.proxy_identity_header {
        if let Some(v) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            if trusted {
                let v = v.trim();
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
    Err(refused("no credentials"))
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

/// The metrics label of a refusal, from its reason (the texts written in this module).
pub fn refusal_reason(reason: &str) -> crate::metrics::RefusalReason {
    use crate::metrics::RefusalReason as R;
    match reason {
        "no credentials" => R::NoCredentials,
        "wrong user name or password" => R::WrongPassword,
        "Basic credentials over plain HTTP are refused" => R::BasicOverPlainHttp,
        "Kerberos is not supported; NTLM is offered" => R::KerberosNotSupported,
        r if r.starts_with("malformed ") => R::MalformedCredentials,
        r if r.starts_with("authentication scheme ")
            || r.starts_with("the client offered NTLM") =>
        {
            R::SchemeNotEnabled
        }
        r if r.starts_with("NTLM refused") || r.starts_with("Negotiate refused") => R::NtlmRefused,
        r if r.starts_with("Kerberos") => R::KerberosRefused,
        _ => R::Other,
    }
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
    use crate::metrics::RefusalReason as R;

    #[test]
    fn every_refusal_text_has_its_metrics_label() {
        for (text, label) in [
            ("no credentials", R::NoCredentials),
            ("wrong user name or password", R::WrongPassword),
            (
                "Basic credentials over plain HTTP are refused",
                R::BasicOverPlainHttp,
            ),
            ("malformed Basic credentials", R::MalformedCredentials),
            (
                "malformed Windows authentication token",
                R::MalformedCredentials,
            ),
            (
                "authentication scheme 'Bearer' is not enabled",
                R::SchemeNotEnabled,
            ),
            (
                "the client offered NTLM, which is not enabled (no [auth.ntlm])",
                R::SchemeNotEnabled,
            ),
            ("NTLM refused: WrongPassword", R::NtlmRefused),
            ("Negotiate refused: Replay", R::NtlmRefused),
            ("Kerberos refused: Request is a replay", R::KerberosRefused),
            (
                "Kerberos is not supported; NTLM is offered",
                R::KerberosNotSupported,
            ),
            ("something new", R::Other),
        ] {
            assert_eq!(refusal_reason(text), label, "{text}");
        }
    }
}
