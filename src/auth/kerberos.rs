//! Kerberos through `Negotiate` (feature `kerberos`): an acceptor on the system's GSS-API (MIT
//! krb5 through [`libgssapi`]) with a keytab.
//!
//! When MIM (or any Windows client with `UseDefaultCredentials`) can get a service ticket for
//! pfgate's SPN (`HTTP/mfa.contoso.com`), it sends `Authorization: Negotiate <SPNEGO NegTokenInit
//! carrying a Kerberos AP-REQ>`. [`super::spnego`] verifies only NTLM and answers such a token
//! with `NegotiateReject::KerberosNotSupported`; this module verifies it instead:
//!
//! * credentials are acquired once, at construction, for the SPNEGO and Kerberos 5 mechanisms, so
//!   GSS-API itself unwraps a `NegTokenInit` (including Windows' `1.2.840.48018.1.2.2` Kerberos
//!   OID) as well as a bare Kerberos GSS token;
//! * a completed context is accepted only if the negotiated mechanism is Kerberos 5 (not, say,
//!   NTLM through an installed `gss-ntlmssp`) and it is not anonymous;
//! * the caller is the ticket's client principal, `user@REALM`, exactly as GSS-API displays it
//!   (UTF-8 required, never lossily converted, so two principals cannot map to one string);
//! * the ticket, the authenticator, clock skew (5 minutes by default) and replays are checked by
//!   MIT krb5. Its replay cache is a file (`$KRB5RCACHEDIR`, default `/var/tmp`), so it also
//!   catches a token replayed to another pfgate process on the same host.
//!
//! # The keytab and the environment
//!
//! The safe `libgssapi` 0.11 API has no `gss_acquire_cred_from` (no way to name a keytab per
//! credential), and pfgate forbids `unsafe`. MIT krb5 reads the acceptor keytab from
//! `KRB5_KTNAME` when the credential is acquired and keeps the keytab handle in the credential,
//! so [`KerberosAcceptor::new`] does this, once:
//!
//! * `KRB5_KTNAME` unset: it is set to `FILE:<absolute keytab path>` for the process;
//! * already set to that keytab: nothing changes;
//! * set to anything else: [`KerberosError::KeytabConflict`] (one process, one keytab).
//!
//! Construct the acceptor at start-up, before threads that might call `getenv` (C code reading
//! the environment while another thread changes it is a data race), or set
//! `KRB5_KTNAME=FILE:/path/to/pfgate.keytab` in the service's environment, in which case nothing
//! is ever written. The keytab file itself is read on every accept, so replacing it (key
//! rollover) needs no restart.
//!
//! # Threads
//!
//! [`KerberosAcceptor`] is `Send + Sync`: share one (in an `Arc`) across connections; MIT's
//! credentials lock internally. GSS-API calls block (file I/O on the keytab and replay cache), so
//! call [`KerberosAcceptor::accept`] from `tokio::task::spawn_blocking`. A [`KerberosContext`]
//! (one handshake in progress) is `Send` but not `Sync`: keep it with its connection.
//!
//! # Use
//!
//! ```no_run
//! use pfgate::auth::kerberos::{KerberosAcceptor, KerberosOutcome, KerberosSettings};
//!
//! let acceptor = KerberosAcceptor::new(&KerberosSettings {
//!     keytab: "/etc/pfgate/pfgate.keytab".into(),
//!     service_principal: Some("HTTP/mfa.contoso.com@CONTOSO.COM".into()),
//! })?;
//! let token: &[u8] = b"..."; // base64-decoded from `Authorization: Negotiate <base64>`
//! match acceptor.accept(token) {
//!     Ok(KerberosOutcome::Authenticated { principal, response_token }) => {
//!         // serve as `principal` (e.g. "svc-mim@CONTOSO.COM"); if `response_token` is Some,
//!         // send `WWW-Authenticate: Negotiate <base64>` with the response (mutual auth).
//!     }
//!     Ok(KerberosOutcome::Continue { token }) => {
//!         // a multi-leg SPNEGO exchange: use `acceptor.context()` kept with the connection.
//!     }
//!     Err(e) => { /* 401 and log `e` */ }
//! }
//! # Ok::<(), pfgate::auth::kerberos::KerberosError>(())
//! ```

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use libgssapi::context::{CtxFlags, SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{OidSet, GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL};

/// The environment variable MIT krb5 reads the acceptor keytab from.
pub const KTNAME_ENV: &str = "KRB5_KTNAME";

/// Where the keys come from and which service principal to accept tickets for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosSettings {
    /// The keytab holding the service principal's keys (from `ktpass` or `ktutil`).
    pub keytab: PathBuf,
    /// `HTTP/host@REALM`. `None` accepts a ticket for any principal in the keytab.
    pub service_principal: Option<String>,
}

/// What a token achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KerberosOutcome {
    /// The client is `principal` (`user@REALM`). `response_token`, when present, goes back in
    /// `WWW-Authenticate: Negotiate <base64>` on the successful response (mutual authentication).
    Authenticated {
        /// The ticket's client principal as GSS-API displays it, `user@REALM`.
        principal: String,
        /// The final SPNEGO / AP-REP token for the client, if GSS-API produced one.
        response_token: Option<Vec<u8>>,
    },
    /// The handshake needs another leg: answer 401 with `WWW-Authenticate: Negotiate
    /// <base64(token)>` and feed the client's next token to the same [`KerberosContext`].
    Continue {
        /// The token for the client.
        token: Vec<u8>,
    },
}

/// Why the acceptor could not be built or a token was refused. Messages never contain key
/// material or the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KerberosError {
    /// The keytab cannot be opened.
    #[error("keytab {}: {source}", path.display())]
    Keytab {
        /// The configured path.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// `KRB5_KTNAME` already names another keytab in this process.
    #[error(
        "{KTNAME_ENV} is already {existing:?} in this process, not {wanted:?}: a process uses one \
         keytab (unset {KTNAME_ENV} or point it at the configured keytab)"
    )]
    KeytabConflict {
        /// The value found.
        existing: String,
        /// The value pfgate needs.
        wanted: String,
    },
    /// The configured service principal is not a usable Kerberos name.
    #[error("service principal {principal:?}: {reason}")]
    ServicePrincipal {
        /// The configured name.
        principal: String,
        /// Why it cannot be used.
        reason: GssProblem,
    },
    /// GSS-API found no usable acceptor key (wrong principal, empty keytab, unreadable keytab).
    #[error("no Kerberos acceptor credentials from keytab {}: {reason}", keytab.display())]
    Credentials {
        /// The configured keytab.
        keytab: PathBuf,
        /// GSS-API's explanation.
        reason: GssProblem,
    },
    /// An empty `Negotiate` token.
    #[error("empty Negotiate token")]
    EmptyToken,
    /// GSS-API refused the token (bad ticket, wrong service, tampered, expired, replayed, clock
    /// skew, not a GSS token at all).
    #[error("Kerberos token refused: {0}")]
    Refused(GssProblem),
    /// The client completed a mechanism other than Kerberos 5.
    #[error("the client negotiated mechanism {0}, not Kerberos 5")]
    NotKerberos(String),
    /// An anonymous Kerberos context (`WELLKNOWN/ANONYMOUS`) is not a caller.
    #[error("anonymous Kerberos is refused")]
    Anonymous,
    /// The client's principal name is not UTF-8.
    #[error("the client principal is not UTF-8")]
    PrincipalNotUtf8,
    /// A token fed to a context that already completed or failed.
    #[error("this Negotiate handshake already finished; start a new context")]
    ContextFinished,
}

/// What GSS-API (or pfgate's check before it) found wrong with a service principal, the
/// acceptor's credentials or a client's token.
#[derive(Debug, thiserror::Error)]
pub enum GssProblem {
    /// GSS-API's own error (its text, whitespace collapsed).
    #[error("{}", gss_text(.0))]
    Gss(libgssapi::error::Error),
    /// The service principal is empty.
    #[error("empty")]
    Empty,
    /// The service principal contains whitespace or NUL.
    #[error("contains whitespace or NUL")]
    WhitespaceOrNul,
    /// GSS-API acquired credentials, but none for Kerberos 5.
    #[error("GSS-API acquired no Kerberos 5 credential")]
    NoKerberosCredential,
    /// GSS-API asked for another leg without a token to send.
    #[error("GSS-API wants another leg but gave no token")]
    NoContinuationToken,
}

/// The process's Kerberos acceptor: credentials from the keytab, shared by all connections.
pub struct KerberosAcceptor {
    cred: Cred,
    keytab: PathBuf,
    service_principal: Option<String>,
}

impl fmt::Debug for KerberosAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KerberosAcceptor")
            .field("keytab", &self.keytab)
            .field("service_principal", &self.service_principal)
            .finish_non_exhaustive()
    }
}

impl KerberosAcceptor {
    /// Checks the settings, points `KRB5_KTNAME` at the keytab if it is unset (see the module
    /// docs), and acquires acceptor credentials for SPNEGO and Kerberos 5. Fails if the keytab
    /// cannot be read or holds no key for `service_principal` (or no key at all).
    pub fn new(settings: &KerberosSettings) -> Result<Self, KerberosError> {
        if let Some(p) = &settings.service_principal {
            check_principal_text(p)?;
        }
        std::fs::File::open(&settings.keytab).map_err(|source| KerberosError::Keytab {
            path: settings.keytab.clone(),
            source,
        })?;
        let keytab =
            std::path::absolute(&settings.keytab).map_err(|source| KerberosError::Keytab {
                path: settings.keytab.clone(),
                source,
            })?;
        ensure_ktname(&keytab)?;

        let name = match &settings.service_principal {
            None => None,
            Some(p) => Some(
                Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
                    .and_then(|n| n.canonicalize(Some(GSS_MECH_KRB5)))
                    .map_err(|e| KerberosError::ServicePrincipal {
                        principal: p.clone(),
                        reason: GssProblem::Gss(e),
                    })?,
            ),
        };
        let credentials = |reason: GssProblem| KerberosError::Credentials {
            keytab: keytab.clone(),
            reason,
        };
        let mut mechs = OidSet::new();
        mechs
            .add(GSS_MECH_SPNEGO)
            .map_err(|e| credentials(GssProblem::Gss(e)))?;
        mechs
            .add(GSS_MECH_KRB5)
            .map_err(|e| credentials(GssProblem::Gss(e)))?;
        let cred = Cred::acquire(name.as_ref(), None, CredUsage::Accept, Some(&mechs))
            .map_err(|e| credentials(GssProblem::Gss(e)))?;
        // gss_acquire_cred succeeds if any one mechanism did; Kerberos must be among them.
        let has_krb5 = cred
            .mechanisms()
            .and_then(|m| m.contains(GSS_MECH_KRB5))
            .map_err(|e| credentials(GssProblem::Gss(e)))?;
        if !has_krb5 {
            return Err(credentials(GssProblem::NoKerberosCredential));
        }
        Ok(KerberosAcceptor {
            cred,
            keytab,
            service_principal: settings.service_principal.clone(),
        })
    }

    /// Verifies a one-leg `Negotiate` token (SPNEGO `NegTokenInit` with a Kerberos token, or a
    /// bare Kerberos GSS token). This is the usual case: a Kerberos client's first token is
    /// complete. If the result is [`KerberosOutcome::Continue`] the context is lost with this
    /// call; a server that wants multi-leg SPNEGO keeps a [`KerberosAcceptor::context`] per
    /// connection instead. Blocks (file I/O): call from `spawn_blocking`.
    pub fn accept(&self, token: &[u8]) -> Result<KerberosOutcome, KerberosError> {
        self.context().step(token)
    }

    /// A new handshake, for a server that keeps state per connection.
    pub fn context(&self) -> KerberosContext {
        KerberosContext {
            ctx: Some(ServerCtx::new(Some(self.cred.clone()))),
        }
    }

    /// The keytab in use (absolute).
    pub fn keytab(&self) -> &Path {
        &self.keytab
    }

    /// The configured service principal, if any.
    pub fn service_principal(&self) -> Option<&str> {
        self.service_principal.as_deref()
    }
}

/// One `Negotiate` handshake in progress. `Send`, not `Sync`: keep it with its connection.
#[derive(Debug)]
pub struct KerberosContext {
    /// `None` once the handshake completed or failed.
    ctx: Option<ServerCtx>,
}

impl KerberosContext {
    /// Feeds the client's next token. After `Authenticated` or an error the context is finished
    /// and further tokens give [`KerberosError::ContextFinished`]. Blocks (file I/O).
    pub fn step(&mut self, token: &[u8]) -> Result<KerberosOutcome, KerberosError> {
        let Some(mut ctx) = self.ctx.take() else {
            return Err(KerberosError::ContextFinished);
        };
        if token.is_empty() {
            return Err(KerberosError::EmptyToken);
        }
        let out = ctx
            .step(token, None)
            .map_err(|e| KerberosError::Refused(GssProblem::Gss(e)))?;
        let out = out.filter(|b| !b.is_empty()).map(|b| b.to_vec());
        if !ctx.is_complete() {
            let token = out.ok_or(KerberosError::Refused(GssProblem::NoContinuationToken))?;
            self.ctx = Some(ctx);
            return Ok(KerberosOutcome::Continue { token });
        }
        let info = ctx
            .info()
            .map_err(|e| KerberosError::Refused(GssProblem::Gss(e)))?;
        if info.mechanism != GSS_MECH_KRB5 {
            return Err(KerberosError::NotKerberos(info.mechanism.to_string()));
        }
        if info.flags.contains(CtxFlags::GSS_C_ANON_FLAG) {
            return Err(KerberosError::Anonymous);
        }
        let name = info
            .source_name
            .display_name()
            .map_err(|e| KerberosError::Refused(GssProblem::Gss(e)))?;
        let principal =
            String::from_utf8(name.to_vec()).map_err(|_| KerberosError::PrincipalNotUtf8)?;
        Ok(KerberosOutcome::Authenticated {
            principal,
            response_token: out,
        })
    }
}

fn check_principal_text(p: &str) -> Result<(), KerberosError> {
    let bad = |reason: GssProblem| KerberosError::ServicePrincipal {
        principal: p.to_string(),
        reason,
    };
    if p.trim().is_empty() {
        return Err(bad(GssProblem::Empty));
    }
    if p.contains('\0') || p.chars().any(char::is_whitespace) {
        return Err(bad(GssProblem::WhitespaceOrNul));
    }
    Ok(())
}

/// Points `KRB5_KTNAME` at `keytab` if unset; accepts it already pointing there.
fn ensure_ktname(keytab: &Path) -> Result<(), KerberosError> {
    let mut wanted = OsString::from("FILE:");
    wanted.push(keytab.as_os_str());
    match std::env::var_os(KTNAME_ENV) {
        None => {
            // The one write to the environment; see the module docs.
            std::env::set_var(KTNAME_ENV, &wanted);
            Ok(())
        }
        Some(v) if v == wanted || v == keytab.as_os_str() => Ok(()),
        Some(v) => Err(KerberosError::KeytabConflict {
            existing: v.to_string_lossy().into_owned(),
            wanted: wanted.to_string_lossy().into_owned(),
        }),
    }
}

/// GSS-API's major and minor status text, on one line.
fn gss_text(e: &libgssapi::error::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    // These run inside the unit-test binary with other tests in parallel, so each stops before
    // `ensure_ktname` writes the environment. Real tickets are in tests/integration/kerberos.rs.
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn acceptor_is_shareable_and_context_movable() {
        assert_send_sync::<KerberosAcceptor>();
        assert_send::<KerberosContext>();
    }

    #[test]
    fn rejects_missing_keytab() {
        let err = KerberosAcceptor::new(&KerberosSettings {
            keytab: "/nonexistent/pfgate-test.keytab".into(),
            service_principal: None,
        })
        .unwrap_err();
        assert!(matches!(err, KerberosError::Keytab { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/pfgate-test.keytab"));
    }

    #[test]
    fn rejects_blank_service_principal() {
        for p in ["", "  ", "HTTP/host @R", "HTTP/h\0@R"] {
            let err = KerberosAcceptor::new(&KerberosSettings {
                keytab: "/nonexistent".into(),
                service_principal: Some(p.into()),
            })
            .unwrap_err();
            assert!(
                matches!(err, KerberosError::ServicePrincipal { .. }),
                "{p:?}: {err:?}"
            );
        }
    }
}
