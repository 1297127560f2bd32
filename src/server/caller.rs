//! Who is calling: the caller's principal from `Authorization`, a trusted proxy's identity header,
//! the connection's earlier authentication, or `anonymous` where the configuration allows it.
//!
//! Refusals are plain HTTP as IIS gives them — `401` with one `WWW-Authenticate` challenge per
//! configured method for missing or bad credentials, `403` for a known caller outside the allow-list —
//! never SOAP faults, and each writes one audit event. Basic is accepted only over TLS or from a
//! trusted TLS-terminating proxy. An identity header from anyone but a trusted proxy is ignored and
//! the attempt logged.

use std::net::IpAddr;
use std::sync::Mutex;

use http::HeaderMap;

use crate::auth::basic;
use crate::config::{is_trusted, Settings};
use crate::engine::audit::{self, AuditEvent, AuditKind};

/// Per-connection authentication state (connection-based schemes such as NTLM authenticate the
/// connection, as IIS does, so later requests on it need not repeat the handshake).
#[derive(Debug, Default)]
pub struct ConnAuth {
    principal: Mutex<Option<String>>,
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

/// A caller that could not be identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated {
    /// Why (for the audit log; never contains a credential).
    pub reason: String,
    /// The user name the caller claimed, if any.
    pub claimed: Option<String>,
}

/// Identifies the caller of one request.
pub fn identify(
    settings: &Settings,
    tls: bool,
    peer: IpAddr,
    headers: &HeaderMap,
    conn: &ConnAuth,
) -> Result<String, Unauthenticated> {
    let auth = &settings.auth;
    let trusted = is_trusted(&settings.trusted_proxies, peer);
    if let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if !tls && !trusted {
                return Err(Unauthenticated {
                    reason: "Basic credentials over plain HTTP are refused".into(),
                    claimed: None,
                });
            }
            let Some(creds) = basic::parse(token) else {
                return Err(Unauthenticated {
                    reason: "malformed Basic credentials".into(),
                    claimed: None,
                });
            };
            return match basic::verify(&auth.basic, &creds) {
                Some(account) => Ok(account.principal.clone()),
                None => Err(Unauthenticated {
                    reason: "wrong user name or password".into(),
                    claimed: Some(creds.user),
                }),
            };
        }
        return Err(Unauthenticated {
            reason: format!(
                "authentication scheme '{}' is not enabled",
                crate::pfwssdk::wire::clip(scheme)
            ),
            claimed: None,
        });
    }
    if let Some(name) = &auth.proxy_identity_header {
        if let Some(v) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            if trusted {
                let v = v.trim();
                if !v.is_empty() {
                    return Ok(v.to_string());
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
        return Ok(p);
    }
    if auth.allow_anonymous {
        return Ok("anonymous".into());
    }
    Err(Unauthenticated {
        reason: "no credentials".into(),
        claimed: None,
    })
}

/// The `WWW-Authenticate` challenges for this listener.
pub fn challenges(settings: &Settings, tls: bool) -> Vec<String> {
    let mut out = Vec::new();
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
