//! Primary authentication: checking a username and password with an LDAP simple bind.
//!
//! PfWsSdk's `CombinedAuthUser*` operations first check the user's directory password and only
//! then run the second factor; MFA Server did the first step with an LDAP or Active Directory
//! bind. This module owns that first step and nothing else: it turns a username into a bind DN
//! (through a configured template), binds once as that DN with the given password, unbinds, and
//! answers *accepted*, *rejected* or *could not tell*. The engine decides what a rejection means
//! for the SOAP response; configuration parsing lives in `config`.
//!
//! The security rules live here because they are easy to get wrong and must hold for every caller:
//!
//! - An **empty password is never sent**. An LDAP simple bind with a DN and an empty password is
//!   an "unauthenticated bind" (RFC 4513 §5.1.2) that many servers, Active Directory among them,
//!   answer with *success*. [`PrimaryAuth::verify`] returns `Ok(false)` for it without opening a
//!   connection. An empty (or all-whitespace) username is refused the same way.
//! - The **username cannot change the DN**. It is escaped per RFC 4514 before it is put into the
//!   template, so `alice,ou=admins` names the entry `uid=alice\,ou=admins,…`, never another
//!   subtree. Only the template that is exactly `{username}` (an Active Directory UPN
//!   `alice@corp.example` or `CORP\alice` bind) passes the username verbatim, and then refuses
//!   control characters.
//! - The **password never leaves this module** except inside the bind request: no error, log line
//!   or `Debug` output contains it.
//! - A password must **not cross the network in clear**: `ldap://` without StartTLS is accepted
//!   only towards a loopback host, and TLS (`ldaps://` or StartTLS) requires an explicit CA file,
//!   so the directory is authenticated by a certificate the operator chose, not by whatever the
//!   system store trusts.
//! - Every check is **bounded** by the configured timeout, connection and TLS handshake included.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The placeholder a bind DN template must contain.
pub const USERNAME_PLACEHOLDER: &str = "{username}";

/// LDAP result code `invalidCredentials` (RFC 4511 §4.1.9): wrong password or unknown DN.
pub const LDAP_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `noSuchObject`: a few servers answer a bind to a missing DN with it.
pub const LDAP_NO_SUCH_OBJECT: u32 = 32;
/// LDAP result code `invalidDNSyntax`: the username did not form a DN the server accepts.
pub const LDAP_INVALID_DN_SYNTAX: u32 = 34;

/// The longest server diagnostic message kept in an error.
const MAX_DIAGNOSTIC_CHARS: usize = 200;

/// Where and how to bind. Built by the configuration layer; checked by [`LdapSettings::validate`]
/// (and again by [`PrimaryAuth::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapSettings {
    /// `ldap://host[:port]` or `ldaps://host[:port]`. No bind credentials, path or query.
    pub url: String,
    /// The bind DN with `{username}` where the (RFC 4514-escaped) username goes, e.g.
    /// `uid={username},ou=people,dc=example,dc=org`; or exactly `{username}` to bind with the
    /// username as given (Active Directory UPN `alice@corp.example` or `CORP\alice`).
    pub bind_dn_template: String,
    /// Upgrade an `ldap://` connection with the StartTLS extended operation before binding.
    pub start_tls: bool,
    /// PEM file with the CA certificate(s) that authenticate the directory server; required for
    /// `ldaps://` and StartTLS, not allowed otherwise.
    pub ca_file: Option<PathBuf>,
    /// Upper bound for one whole check: connect, TLS, bind and unbind.
    pub timeout: Duration,
}

impl LdapSettings {
    /// Checks the settings without touching the network or the file system.
    ///
    /// Rejects: a template without `{username}` or with control characters; a URL that is not
    /// `ldap://` or `ldaps://` with a host (and nothing but an optional port and `/`); StartTLS
    /// on `ldaps://`; plain `ldap://` without StartTLS to a host that is not loopback (the password
    /// would cross the network in clear); TLS without `ca_file`, or `ca_file` without TLS; a zero
    /// timeout. The message names the setting and says how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    /// [`validate`](Self::validate), returning the parsed URL and whether TLS is used.
    fn check(&self) -> Result<(url::Url, bool), String> {
        if !self.bind_dn_template.contains(USERNAME_PLACEHOLDER) {
            return Err(format!(
                "ldap bind_dn_template {:?} must contain {USERNAME_PLACEHOLDER} (for example \
                 \"uid={{username}},ou=people,dc=example,dc=org\", or \"{{username}}\" for \
                 Active Directory UPN binds)",
                self.bind_dn_template
            ));
        }
        if self.bind_dn_template.chars().any(char::is_control) {
            return Err("ldap bind_dn_template must not contain control characters".into());
        }
        if self.timeout.is_zero() {
            return Err("ldap timeout must be greater than zero".into());
        }
        let url = url::Url::parse(&self.url)
            .map_err(|e| format!("ldap url {:?} is not a valid URL: {e}", self.url))?;
        let ldaps = match url.scheme() {
            "ldap" => false,
            "ldaps" => true,
            other => {
                return Err(format!(
                    "ldap url {:?} has scheme {other:?}; use ldap:// or ldaps://",
                    self.url
                ))
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "ldap url {:?} must not contain credentials; pfgate binds as the user",
                self.url
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain("")) | None => {
                return Err(format!("ldap url {:?} must name a host", self.url))
            }
            Some(host) => host,
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "ldap url {:?} must be only scheme://host[:port]; a base DN, attributes or \
                 filter in the URL are not used",
                self.url
            ));
        }
        if ldaps && self.start_tls {
            return Err(format!(
                "ldap start_tls applies to ldap:// URLs; {:?} is ldaps:// (TLS from the first \
                 byte), so turn start_tls off",
                self.url
            ));
        }
        let tls = ldaps || self.start_tls;
        if !tls && !is_loopback(&host) {
            return Err(format!(
                "ldap url {:?} is plain ldap:// without start_tls: users' passwords would cross \
                 the network in clear text; use ldaps:// or set start_tls = true (plain ldap:// \
                 is allowed only to a loopback host such as 127.0.0.1)",
                self.url
            ));
        }
        match (&self.ca_file, tls) {
            (None, true) => Err(format!(
                "ldap ca_file is required with {}: the PEM file of the CA that issued the \
                 directory server's certificate",
                if ldaps { "ldaps://" } else { "start_tls" }
            )),
            (Some(path), false) => Err(format!(
                "ldap ca_file {} is set but the connection to {:?} does not use TLS; use \
                 ldaps:// or start_tls = true, or remove ca_file",
                path.display(),
                self.url
            )),
            _ => Ok((url, tls)),
        }
    }
}

/// True for `localhost` and loopback IP addresses. (`ldap:` is not a "special" URL scheme, so
/// the `url` crate leaves an IPv4 host as a domain string; parse it here.)
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// Why a check could not decide. Never contains the password; may contain the URL, the bind DN
/// (so the username) and the server's diagnostic text.
#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
    /// The settings are unusable (see [`LdapSettings::validate`]).
    #[error("invalid LDAP settings: {0}")]
    Config(String),
    /// The CA file could not be read or held no certificate.
    #[error("LDAP ca_file {path}: {reason}")]
    CaFile {
        /// The configured file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The whole check took longer than the configured timeout.
    #[error("LDAP server {url} did not complete the bind within {timeout:?}")]
    Timeout {
        /// The server.
        url: String,
        /// The configured bound.
        timeout: Duration,
    },
    /// No connection: refused, unreachable, reset, name not resolved, or StartTLS refused.
    #[error("cannot connect to LDAP server {url}: {reason}")]
    Connect {
        /// The server.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake failed (for example a certificate not issued by `ca_file`, or a name
    /// mismatch).
    #[error("TLS with LDAP server {url} failed: {reason}")]
    Tls {
        /// The server.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered the bind with a result other than success or a credentials
    /// rejection, e.g. 53 unwillingToPerform (account disabled, or policy) or 13
    /// confidentialityRequired.
    #[error("LDAP server {url} answered the bind of {dn:?} with result {code}: {message}")]
    Server {
        /// The server.
        url: String,
        /// The DN that was bound.
        dn: String,
        /// The LDAP result code (RFC 4511 §4.1.9).
        code: u32,
        /// The server's diagnostic message (truncated, control characters removed).
        message: String,
    },
    /// The connection failed during the bind (reset, protocol error).
    #[error("LDAP bind of {dn:?} at {url} failed: {reason}")]
    Protocol {
        /// The server.
        url: String,
        /// The DN that was bound.
        dn: String,
        /// What went wrong.
        reason: String,
    },
}

/// Checks usernames and passwords with LDAP simple binds. Cheap to share (`Arc`) between
/// requests; each [`verify`](Self::verify) uses its own connection.
pub struct PrimaryAuth {
    settings: LdapSettings,
    /// Client TLS configuration when `ldaps://` or StartTLS is used.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for PrimaryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrimaryAuth")
            .field("settings", &self.settings)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PrimaryAuth {
    /// Validates `settings` and, for TLS, loads the CA file into a rustls client configuration
    /// (aws-lc-rs provider, safe default protocol versions). No network access.
    pub fn new(settings: LdapSettings) -> Result<Self, PrimaryError> {
        let (_, tls) = settings.check().map_err(PrimaryError::Config)?;
        let tls = match (tls, &settings.ca_file) {
            (true, Some(path)) => Some(Arc::new(client_config(path)?)),
            _ => None,
        };
        Ok(Self { settings, tls })
    }

    /// The settings this checker was built with.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// The DN [`verify`](Self::verify) binds as for `username`, or `None` when the username is
    /// refused without asking the server (empty or all whitespace; control characters with the
    /// verbatim `{username}` template).
    pub fn bind_dn(&self, username: &str) -> Option<String> {
        if username.trim().is_empty() {
            return None;
        }
        if self.settings.bind_dn_template == USERNAME_PLACEHOLDER {
            if username.chars().any(char::is_control) {
                return None;
            }
            return Some(username.to_owned());
        }
        Some(
            self.settings
                .bind_dn_template
                .replace(USERNAME_PLACEHOLDER, &escape_dn_value(username)),
        )
    }

    /// Checks `password` for `username` with one simple bind, then unbinds.
    ///
    /// - `Ok(true)`: the server accepted the bind.
    /// - `Ok(false)`: the server rejected the credentials (result 49 invalidCredentials, or 32/34
    ///   when the username names no valid entry), or the password or username is empty, or the
    ///   username is refused by [`bind_dn`](Self::bind_dn). The last three never contact the
    ///   server.
    /// - `Err`: connection, TLS, timeout, protocol trouble or any other bind result; the caller
    ///   cannot tell whether the password is right.
    ///
    /// The whole operation is bounded by [`LdapSettings::timeout`].
    pub async fn verify(&self, username: &str, password: &str) -> Result<bool, PrimaryError> {
        // RFC 4513 §5.1.2: a bind with a DN and an empty password is an unauthenticated bind
        // that servers may answer with success. Never send one.
        if password.is_empty() {
            return Ok(false);
        }
        let Some(dn) = self.bind_dn(username) else {
            return Ok(false);
        };
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.bind(&dn, password)).await {
            Ok(result) => result,
            Err(_) => Err(PrimaryError::Timeout {
                url: self.settings.url.clone(),
                timeout,
            }),
        }
    }

    /// Connect (and TLS), bind, unbind. Unbounded: [`verify`](Self::verify) adds the timeout.
    async fn bind(&self, dn: &str, password: &str) -> Result<bool, PrimaryError> {
        let url = &self.settings.url;
        // No ldap3 connection timeout: verify()'s single timeout bounds everything, so a slow
        // server is always reported as PrimaryError::Timeout.
        let mut conn_settings = LdapConnSettings::new().set_starttls(self.settings.start_tls);
        if let Some(config) = &self.tls {
            conn_settings = conn_settings.set_config(Arc::clone(config));
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, url)
            .await
            .map_err(|e| connect_error(&self.settings, e))?;
        // The connection is driven by its own task; abort it however this function ends
        // (including the caller's timeout dropping this future), so no socket outlives the check.
        let driver = AbortOnDrop(tokio::spawn(conn.drive()));

        let result = ldap.simple_bind(dn, password).await;
        // Best effort: the answer is already decided; the driver is aborted right after.
        let _ = ldap.unbind().await;
        drop(driver);

        let result = result.map_err(|e| PrimaryError::Protocol {
            url: url.clone(),
            dn: dn.to_owned(),
            reason: e.to_string(),
        })?;
        match result.rc {
            0 => Ok(true),
            LDAP_INVALID_CREDENTIALS | LDAP_NO_SUCH_OBJECT | LDAP_INVALID_DN_SYNTAX => Ok(false),
            code => Err(PrimaryError::Server {
                url: url.clone(),
                dn: dn.to_owned(),
                code,
                message: diagnostic(&result.text),
            }),
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds the rustls client configuration that trusts exactly the certificates in `path`.
fn client_config(path: &Path) -> Result<rustls::ClientConfig, PrimaryError> {
    let ca_error = |reason: String| PrimaryError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("certificate not usable as a trust anchor: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no PEM CERTIFICATE found".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Classifies an error from opening the connection (TCP, StartTLS, TLS handshake).
fn connect_error(settings: &LdapSettings, e: LdapError) -> PrimaryError {
    let url = settings.url.clone();
    match &e {
        LdapError::Io { source }
            if source
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            PrimaryError::Tls {
                url,
                reason: e.to_string(),
            }
        }
        LdapError::Rustls { .. } | LdapError::DNSName { .. } => PrimaryError::Tls {
            url,
            reason: e.to_string(),
        },
        LdapError::Timeout { .. } => PrimaryError::Timeout {
            url,
            timeout: settings.timeout,
        },
        LdapError::LdapResult { result } => PrimaryError::Connect {
            url,
            reason: format!(
                "StartTLS refused with result {}: {}",
                result.rc,
                diagnostic(&result.text)
            ),
        },
        _ => PrimaryError::Connect {
            url,
            reason: e.to_string(),
        },
    }
}

/// A server diagnostic message made safe to log: control characters dropped, length bounded.
fn diagnostic(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DIAGNOSTIC_CHARS)
        .collect();
    if text.chars().filter(|c| !c.is_control()).count() > MAX_DIAGNOSTIC_CHARS {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(no diagnostic message)");
    }
    out
}

/// Escapes `value` for use as an attribute value in a DN string (RFC 4514 §2.4): `"` `+` `,` `;`
/// `<` `=` `>` `\` anywhere, `#` or space at the start, space at the end, each get a backslash;
/// NUL becomes `\00`. Everything else, including non-ASCII, is kept.
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '\0' => out.push_str("\\00"),
            '"' | '+' | ',' | ';' | '<' | '=' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn settings(url: &str, template: &str) -> LdapSettings {
        LdapSettings {
            url: url.into(),
            bind_dn_template: template.into(),
            start_tls: false,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    const PEOPLE: &str = "uid={username},ou=people,dc=example,dc=org";

    #[test]
    fn escape_dn_value_covers_rfc4514_specials() {
        assert_eq!(escape_dn_value("alice"), "alice");
        assert_eq!(escape_dn_value("alice,ou=admins"), "alice\\,ou\\=admins");
        assert_eq!(
            escape_dn_value("a+b\"c;d<e>f\\g"),
            "a\\+b\\\"c\\;d\\<e\\>f\\\\g"
        );
        assert_eq!(escape_dn_value("#x#"), "\\#x#");
        assert_eq!(escape_dn_value(" x y "), "\\ x y\\ ");
        assert_eq!(escape_dn_value(" "), "\\ ");
        assert_eq!(escape_dn_value("a\0b"), "a\\00b");
        assert_eq!(escape_dn_value("*)(uid=*"), "*)(uid\\=*");
        assert_eq!(escape_dn_value("jürgen ß"), "jürgen ß");
        assert_eq!(escape_dn_value(""), "");
    }

    #[test]
    fn bind_dn_escapes_into_template() {
        let auth = PrimaryAuth::new(settings("ldap://127.0.0.1:389", PEOPLE)).unwrap();
        assert_eq!(
            auth.bind_dn("alice").unwrap(),
            "uid=alice,ou=people,dc=example,dc=org"
        );
        assert_eq!(
            auth.bind_dn("alice,ou=admins").unwrap(),
            "uid=alice\\,ou\\=admins,ou=people,dc=example,dc=org"
        );
        assert_eq!(auth.bind_dn(""), None);
        assert_eq!(auth.bind_dn("  \t"), None);
    }

    #[test]
    fn bind_dn_verbatim_for_upn_template() {
        let auth = PrimaryAuth::new(settings("ldap://localhost", "{username}")).unwrap();
        assert_eq!(
            auth.bind_dn("alice@corp.example").unwrap(),
            "alice@corp.example"
        );
        assert_eq!(auth.bind_dn("CORP\\alice").unwrap(), "CORP\\alice");
        assert_eq!(auth.bind_dn("alice\n"), None);
        assert_eq!(auth.bind_dn("al\0ice"), None);
        assert_eq!(auth.bind_dn("al\u{7f}ice"), None);
    }

    #[test]
    fn validate_accepts_good_settings() {
        settings("ldap://127.0.0.1:3890", PEOPLE)
            .validate()
            .unwrap();
        settings("ldap://localhost/", "{username}")
            .validate()
            .unwrap();
        settings("ldap://[::1]:389", PEOPLE).validate().unwrap();
        let mut s = settings("ldaps://dc1.corp.example", "{username}");
        s.ca_file = Some("/etc/pfgate/ldap-ca.pem".into());
        s.validate().unwrap();
        s.url = "ldap://dc1.corp.example:389".into();
        s.start_tls = true;
        s.validate().unwrap();
    }

    #[test]
    fn validate_rejects_bad_settings() {
        let err = |s: LdapSettings| s.validate().unwrap_err();
        assert!(err(settings("ldap://127.0.0.1", "uid=alice,dc=x")).contains("{username}"));
        assert!(err(settings("ldap://127.0.0.1", "uid={user}")).contains("{username}"));
        assert!(err(settings("ldap://127.0.0.1", "uid={username}\n")).contains("control"));
        assert!(err(settings("http://127.0.0.1", PEOPLE)).contains("ldap://"));
        assert!(err(settings("ldapi://%2Frun%2Fslapd", PEOPLE)).contains("scheme"));
        assert!(err(settings("127.0.0.1:389", PEOPLE)).contains("ldap"));
        assert!(err(settings("ldap://u:p@127.0.0.1", PEOPLE)).contains("credentials"));
        assert!(err(settings("ldap://127.0.0.1/dc=x??sub", PEOPLE)).contains("scheme://host"));
        let clear = err(settings("ldap://dc1.corp.example", PEOPLE));
        assert!(clear.contains("clear text"), "{clear}");
        assert!(clear.contains("start_tls"), "{clear}");
        assert!(err(settings("ldap://10.0.0.5", PEOPLE)).contains("clear text"));
        let mut s = settings("ldaps://dc1.corp.example", PEOPLE);
        assert!(err(s.clone()).contains("ca_file is required"));
        s.ca_file = Some("/ca.pem".into());
        s.start_tls = true;
        assert!(err(s).contains("start_tls"));
        let mut s = settings("ldap://dc1.corp.example", PEOPLE);
        s.start_tls = true;
        assert!(err(s).contains("ca_file is required"));
        let mut s = settings("ldap://127.0.0.1", PEOPLE);
        s.ca_file = Some("/ca.pem".into());
        assert!(err(s).contains("does not use TLS"));
        let mut s = settings("ldap://127.0.0.1", PEOPLE);
        s.timeout = Duration::ZERO;
        assert!(err(s).contains("timeout"));
    }

    #[test]
    fn new_reports_config_and_ca_file_errors() {
        let e = PrimaryAuth::new(settings("ldap://dc1.corp.example", PEOPLE)).unwrap_err();
        assert!(matches!(e, PrimaryError::Config(_)), "{e}");
        let mut s = settings("ldaps://127.0.0.1", PEOPLE);
        s.ca_file = Some("/nonexistent/pfgate-ldap-ca.pem".into());
        let e = PrimaryAuth::new(s).unwrap_err();
        assert!(matches!(e, PrimaryError::CaFile { .. }), "{e}");
    }

    #[test]
    fn diagnostic_is_bounded_and_clean() {
        assert_eq!(diagnostic(""), "(no diagnostic message)");
        assert_eq!(diagnostic("a\nb\u{1b}[0m"), "ab[0m");
        let long = "x".repeat(1000);
        assert_eq!(diagnostic(&long).chars().count(), MAX_DIAGNOSTIC_CHARS + 1);
    }

    #[tokio::test]
    async fn empty_password_or_username_is_false_without_network() {
        // Port 9 on a loopback address nothing listens on: any connection attempt would be an
        // Err, so Ok(false) proves none was made. (The integration tests prove it with a
        // listener that counts connections.)
        let auth = PrimaryAuth::new(settings("ldap://127.0.0.1:9", PEOPLE)).unwrap();
        assert!(!auth.verify("alice", "").await.unwrap());
        assert!(!auth.verify("", "secret").await.unwrap());
        assert!(!auth.verify(" ", "secret").await.unwrap());
        assert!(auth.verify("alice", "secret").await.is_err());
    }
}
