//! Configuration: the TOML file model, its defaults, and validation into [`Settings`].
//!
//! Every problem is reported as `file:key: reason` and all of them are gathered before giving up, so
//! an administrator fixes a file in one pass (`pfgate check-config FILE`). After validation nothing
//! downstream sees raw strings.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::net::IpNet;

/// The whole configuration file. Unknown keys are errors: a typo must not silently fall back to a
/// default in an authentication component.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`
    #[serde(default)]
    pub server: ServerSection,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[engine]`
    #[serde(default)]
    pub engine: EngineSection,
    /// `[directory]`
    #[serde(default)]
    pub directory: DirectorySection,
    /// `[auth]`
    #[serde(default)]
    pub auth: AuthSection,
    /// `[store]`
    #[serde(default)]
    pub store: StoreSection,
    /// `[primary_auth]`
    pub primary_auth: Option<PrimaryAuthSection>,
    /// `[providers.NAME]`: each with `kind = "webhook" | "duo" | "scripted"` and its settings.
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, toml::Table>,
    /// `[[routes]]`: which providers serve which authentications, in order.
    #[serde(default)]
    pub routes: Vec<crate::providers::router::RouteSettings>,
    /// `[breaker]`: circuit breaker per provider.
    #[serde(default)]
    pub breaker: BreakerSection,
    /// `[audit]`: the hash-chained audit trail file.
    pub audit: Option<AuditSection>,
    /// `[admin]`: the admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default)]
    pub admin: AdminSection,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `false` switches the admin listener off (default `true`).
    pub enabled: Option<bool>,
    /// Address (default `127.0.0.1:9473`).
    pub listen: Option<String>,
    /// A file holding a bearer token every admin request except `/healthz` must send; required
    /// when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
}

/// The admin listener's address when `[admin] listen` is not given.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9473);

/// The admin listener as configured.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AdminSettings {
    /// Where to listen; `None`: no admin listener.
    pub listen: Option<SocketAddr>,
    /// True when the address was configured: then a bind failure stops the start. The default
    /// address only warns, so a second instance on one host (or a port already taken) still serves
    /// authentications.
    pub required: bool,
    /// The bearer token, if configured.
    pub token: Option<String>,
}

impl AdminSettings {
    /// On at the default address, not required (`pfgate serve` without `[admin]`, demo mode).
    pub fn default_on() -> Self {
        Self {
            listen: Some(DEFAULT_ADMIN_LISTEN),
            required: false,
            token: None,
        }
    }
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("required", &self.required)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[audit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The trail file (JSON lines, hash-chained); relative paths: to the configuration file.
    pub file: PathBuf,
    /// Rotate when the file would grow past this many bytes (default 64 MiB; 0 = never).
    pub max_bytes: Option<u64>,
    /// Rotated files kept; older ones are deleted (default 16; 0 = keep every file, for a site
    /// that ships rotated files elsewhere and deletes them itself).
    pub keep_files: Option<usize>,
    /// Most bytes the rotated files may take together; the oldest are deleted past it (default 0 =
    /// no bound beyond `keep_files`).
    pub max_total_bytes: Option<u64>,
}

/// `[breaker]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    /// Consecutive failures that open a provider's breaker (default 5).
    pub failure_threshold: Option<u32>,
    /// Seconds it stays open before one probe (default 30).
    pub cooldown_secs: Option<u64>,
}

/// One configured provider: defined with the providers (one enum arm per kind).
pub use crate::providers::ProviderSettings;

/// `[primary_auth]`: the LDAP bind `CombinedAuthUser*` and `PrimaryAuthUser` use.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryAuthSection {
    /// `ldaps://dc1.contoso.com` or `ldap://…` with `start_tls` (plain only on loopback).
    pub ldap_url: String,
    /// Bind DN with `{username}`: `uid={username},ou=people,dc=contoso,dc=com`, or `{username}` for
    /// Active Directory UPN / `DOMAIN\user` binds.
    pub bind_dn_template: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// CA certificates (PEM) that sign the directory's certificate.
    pub ca_file: Option<PathBuf>,
    /// Seconds for the whole bind (default 10).
    pub timeout_secs: Option<u64>,
}

/// `[store]`: where the directory and authentication state live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// SQLite database file. Without it (and without `url`) the store is in memory and nothing
    /// survives a restart.
    pub path: Option<PathBuf>,
    /// PostgreSQL instead of SQLite, for several instances sharing one store (`docs/ha.md`):
    /// `postgres://pfgate@db.contoso.com:5432/pfgate?sslmode=require`. Not with `path`.
    pub url: Option<String>,
    /// With `url`: the schema holding pfgate's tables (created if missing).
    pub schema: Option<String>,
    /// With `url`: connections in the pool (default 16).
    pub pool_size: Option<usize>,
    /// With `url`: file holding the database password (the URL must not hold one).
    pub password_file: Option<PathBuf>,
    /// With `url`: environment variable holding the database password.
    pub password_env: Option<String>,
    /// With `url`: CA certificates (PEM) that sign the database's certificate, instead of the
    /// system trust store.
    pub tls_ca_file: Option<PathBuf>,
    /// File holding the 32-byte key that encrypts OATH secrets and static tokens (raw, hex or base64).
    pub secrets_key_file: Option<PathBuf>,
    /// Environment variable holding that key (hex or base64), instead of a file.
    pub secrets_key_env: Option<String>,
}

/// Where the secrets key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A key file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A random key for this process only (in-memory stores).
    Ephemeral,
}

/// Validated store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// SQLite file, or `None` for memory (when `postgres` is `None` too).
    pub path: Option<PathBuf>,
    /// PostgreSQL, instead of SQLite.
    pub postgres: Option<crate::store::postgres::PostgresSettings>,
    /// Secrets key.
    pub key: KeySource,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: None,
            postgres: None,
            key: KeySource::Ephemeral,
        }
    }
}

/// `[server]`: listeners and TLS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// TLS listener address, e.g. `0.0.0.0:443`.
    pub listen: Option<String>,
    /// PEM certificate chain for the TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    pub tls_key: Option<PathBuf>,
    /// Plain-HTTP listener (for use behind IIS/ARR or another TLS-terminating proxy).
    pub plain_listen: Option<String>,
    /// Allow the plain listener on a non-loopback address.
    #[serde(default)]
    pub plain_allow_non_loopback: bool,
    /// Peers (IP or CIDR) whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// `[limits]`: what a single caller may cost.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body in bytes (default 1 MiB).
    pub max_body_bytes: Option<u64>,
    /// Deepest XML nesting (default 64).
    pub max_xml_depth: Option<usize>,
    /// Most XML elements in one request (default 20 000).
    pub max_xml_elements: Option<usize>,
    /// Seconds a client has to send the request headers (default 10).
    pub header_timeout_secs: Option<u64>,
    /// Seconds a client has to send the request body (default 30).
    pub body_timeout_secs: Option<u64>,
    /// Seconds for the TLS handshake (default 10).
    pub tls_handshake_timeout_secs: Option<u64>,
    /// Most concurrent connections (default 10 000); further ones wait in the listen backlog.
    pub max_connections: Option<usize>,
    /// Seconds `SIGTERM` waits for authentications in flight before answering the rest with
    /// CallResult 11 "Call Timed Out" (default 30; 0 answers them at once).
    pub shutdown_grace_secs: Option<u64>,
    /// Threads that check Basic passwords (argon2id, ~19 MiB each), off the async workers
    /// (default 2).
    pub password_check_threads: Option<usize>,
    /// Password checks that may wait for a thread; past this a Basic sign-in gets 503 with
    /// `Retry-After` (default 64).
    pub password_check_queue: Option<usize>,
    /// Failed sign-ins from one source address within `failed_sign_in_window_secs` after which
    /// its Basic sign-ins get 429 with `Retry-After`, unchecked (default 10).
    pub failed_sign_ins_per_address: Option<u32>,
    /// The window of `failed_sign_ins_per_address`, in seconds (default 60).
    pub failed_sign_in_window_secs: Option<u64>,
    /// Connections one address may hold before signing in; more are served one request each
    /// (default 64).
    pub max_unauthenticated_connections_per_address: Option<usize>,
    /// Seconds a connection that has not signed in may stay idle (default 5).
    pub unauthenticated_idle_secs: Option<u64>,
    /// Share of `max_connections`, in percent, that connections which have not signed in cannot
    /// take; trusted proxies and signed-in callers can (default 10).
    pub reserved_connections_percent: Option<u8>,
    /// Refusals of unauthenticated callers audited one by one per source address and minute;
    /// the rest of that minute is one summary record with the count (default 20).
    pub audited_refusals_per_source_per_minute: Option<u32>,
}

/// `[engine]`: authentication behaviour.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Deadline of one authentication in seconds (default 60; must stay under the callers' 100 s).
    pub auth_timeout_secs: Option<u64>,
    /// Country code for phone numbers sent without one (MIM's `DefaultCountryCode`), default `1`.
    pub default_country_code: Option<String>,
    /// `"deny"` (default) or `"caller"`: what an authentication for a user the store does not hold
    /// gets (`docs/engine.md`, "Unknown users").
    pub unknown_users: Option<String>,
    /// Failed attempts (wrong PIN, OATH code, passcode or static token) that lock a user (default 5).
    pub lockout_threshold: Option<u32>,
    /// Seconds within which failures are counted towards the threshold (default 900).
    pub lockout_window_secs: Option<u64>,
    /// Seconds a locked user stays locked, unless `UnblockUser` clears it first (default 900).
    pub lockout_secs: Option<u64>,
    /// `true`: call a known user only at a number the store holds for that user (primary or backup),
    /// refusing any other number a caller gives in `PfAuthUser_5`/`PfAuthUserMaster_4` (default
    /// `false`; `docs/security.md`, "Decisions").
    pub call_only_stored_numbers: Option<bool>,
}

/// `[directory]`: where users come from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// A users file in the format of `fixtures/demo.toml`. Without it the embedded demo directory is
    /// used only in demo mode; otherwise the directory is empty.
    pub users_file: Option<PathBuf>,
}

/// `[auth]`: who may call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Accept callers without authenticating them (they become principal `anonymous`). Only safe
    /// behind a proxy that authenticates; logged loudly.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Header carrying the authenticated user from a trusted proxy (IIS/ARR), e.g.
    /// `X-Forwarded-User`. Believed only from `server.trusted_proxies`.
    pub proxy_identity_header: Option<String>,
    /// Basic accounts.
    #[serde(default)]
    pub basic: Vec<crate::auth::basic::BasicAccount>,
    /// The allow-list: principals and the operation groups each may call.
    #[serde(default)]
    pub principals: Vec<crate::auth::policy::PrincipalRule>,
    /// CA certificates (PEM) that client certificates must chain to; enables mutual TLS.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse the TLS handshake without a client certificate (otherwise it is optional).
    #[serde(default)]
    pub client_cert_required: bool,
    /// One-to-one mapping of client certificates to principals.
    #[serde(default)]
    pub certificate_map: Vec<crate::auth::client_cert::CertificateMapping>,
    /// Windows Integrated authentication (NTLM, Negotiate wrapping NTLM).
    pub ntlm: Option<NtlmSection>,
    /// Kerberos through Negotiate. Parsed in every build so that a binary built without the
    /// `kerberos` feature can refuse the section by name instead of calling it an unknown key.
    pub kerberos: Option<KerberosSection>,
}

/// `[auth.kerberos]`: the keytab Kerberos service tickets are decrypted with (feature `kerberos`,
/// `docs/kerberos.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KerberosSection {
    /// The keytab holding the service principal's keys (`ktpass` or `ktutil`).
    pub keytab: PathBuf,
    /// `HTTP/mfa.contoso.com@CONTOSO.COM`: only tickets for this principal are accepted. Without
    /// it a ticket for any principal in the keytab is.
    pub service_principal: Option<String>,
}

/// Validated `[auth.kerberos]`, with the acceptor built from it at start-up.
///
/// The acceptor lives here, behind an `Arc` every clone of the settings shares, because it is
/// process-wide by nature (MIT krb5 reads the keytab from the process environment, see
/// `docs/kerberos.md`) and must be built once, at start-up, by [`crate::app::build_engine`]: the
/// request path only reads it.
#[cfg(feature = "kerberos")]
#[derive(Debug, Clone)]
pub struct KerberosAuthSettings {
    /// The keytab (absolute, or relative to the configuration file's directory when read from a
    /// file).
    pub keytab: PathBuf,
    /// The service principal tickets must be for, if set.
    pub service_principal: Option<String>,
    acceptor: std::sync::Arc<
        std::sync::OnceLock<std::sync::Arc<crate::auth::kerberos::KerberosAcceptor>>,
    >,
}

#[cfg(feature = "kerberos")]
impl KerberosAuthSettings {
    /// Settings whose acceptor is not built yet.
    pub fn new(keytab: PathBuf, service_principal: Option<String>) -> Self {
        Self {
            keytab,
            service_principal,
            acceptor: std::sync::Arc::default(),
        }
    }

    /// What [`crate::auth::kerberos::KerberosAcceptor::new`] takes.
    pub fn acceptor_settings(&self) -> crate::auth::kerberos::KerberosSettings {
        crate::auth::kerberos::KerberosSettings {
            keytab: self.keytab.clone(),
            service_principal: self.service_principal.clone(),
        }
    }

    /// The acceptor, once [`KerberosAuthSettings::install`] has run.
    pub fn acceptor(&self) -> Option<&std::sync::Arc<crate::auth::kerberos::KerberosAcceptor>> {
        self.acceptor.get()
    }

    /// Builds the acceptor unless it is built already (settings cloned for a second server share
    /// it). Sets `KRB5_KTNAME` if unset: call at start-up only.
    pub fn install(&self) -> Result<(), crate::auth::kerberos::KerberosError> {
        if self.acceptor.get().is_none() {
            let built = crate::auth::kerberos::KerberosAcceptor::new(&self.acceptor_settings())?;
            // Another clone may have won the race; either acceptor is the same keytab and SPN.
            let _ = self.acceptor.set(std::sync::Arc::new(built));
        }
        Ok(())
    }
}

/// Settings compare by what was configured; the built acceptor is derived from that.
#[cfg(feature = "kerberos")]
impl PartialEq for KerberosAuthSettings {
    fn eq(&self, other: &Self) -> bool {
        self.keytab == other.keytab && self.service_principal == other.service_principal
    }
}

#[cfg(feature = "kerberos")]
impl Eq for KerberosAuthSettings {}

/// `[auth.ntlm]`: how pfgate presents itself in NTLM challenges, and the accounts it verifies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtlmSection {
    /// NetBIOS domain name (`CONTOSO`).
    pub netbios_domain: String,
    /// NetBIOS computer name (default `PFGATE`).
    pub netbios_computer: Option<String>,
    /// DNS domain name (`contoso.com`).
    pub dns_domain: Option<String>,
    /// DNS name of this host (`mfa.contoso.com`).
    pub dns_computer: Option<String>,
    /// Accounts (MIM's service account…).
    #[serde(default)]
    pub accounts: Vec<NtlmAccountSection>,
}

/// One NTLM account: `DOMAIN\user` and where its password or NT hash is read from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NtlmAccountSection {
    /// `DOMAIN\user` (the domain may be `*` for any).
    pub principal: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (one line).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the NT hash (32 hex characters).
    pub nt_hash_env: Option<String>,
    /// File holding the NT hash.
    pub nt_hash_file: Option<PathBuf>,
}

/// Validated NTLM settings; secrets are read at start, not kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmSettings {
    /// NetBIOS domain.
    pub netbios_domain: String,
    /// NetBIOS computer.
    pub netbios_computer: String,
    /// DNS domain.
    pub dns_domain: String,
    /// DNS computer.
    pub dns_computer: String,
    /// Accounts.
    pub accounts: Vec<NtlmAccountSection>,
}

/// Reads an account's NT hash from its configured source.
pub fn ntlm_account_hash(a: &NtlmAccountSection) -> Result<[u8; 16], String> {
    let text = |env: &Option<String>, file: &Option<PathBuf>| -> Option<Result<String, String>> {
        if let Some(v) = env {
            return Some(
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set")),
            );
        }
        file.as_ref().map(|f| {
            std::fs::read_to_string(f)
                .map(|t| t.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", f.display()))
        })
    };
    if let Some(h) = text(&a.nt_hash_env, &a.nt_hash_file) {
        let h = h?;
        let h = h.trim();
        if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the NT hash must be 32 hexadecimal characters".into());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    match text(&a.password_env, &a.password_file) {
        Some(p) => {
            let p = p?;
            if p.is_empty() {
                return Err("the password is empty".into());
            }
            Ok(crate::auth::ntlm::nt_hash_of_password(&p))
        }
        None => Err("give one of password_env, password_file, nt_hash_env, nt_hash_file".into()),
    }
}

/// Validated caller-authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSettings {
    /// Anonymous callers accepted as principal `anonymous`.
    pub allow_anonymous: bool,
    /// Identity header from trusted proxies (lower-cased name).
    pub proxy_identity_header: Option<String>,
    /// Basic accounts.
    pub basic: Vec<crate::auth::basic::BasicAccount>,
    /// The allow-list.
    pub policy: crate::auth::policy::Policy,
    /// Client CA file (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// Client certificate required at the handshake.
    pub client_cert_required: bool,
    /// Certificate → principal mapping.
    pub certificate_map: Vec<crate::auth::client_cert::CertificateMapping>,
    /// NTLM / Negotiate.
    pub ntlm: Option<NtlmSettings>,
    /// Kerberos through Negotiate.
    #[cfg(feature = "kerberos")]
    pub kerberos: Option<KerberosAuthSettings>,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A self-signed certificate generated in memory at start (demo mode).
    SelfSigned,
}

/// Validated limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest body.
    pub max_body_bytes: u64,
    /// Deepest nesting.
    pub max_xml_depth: usize,
    /// Most elements.
    pub max_xml_elements: usize,
    /// Header read timeout.
    pub header_timeout: Duration,
    /// Body read timeout.
    pub body_timeout: Duration,
    /// TLS handshake timeout.
    pub tls_handshake_timeout: Duration,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// How long a stop waits for authentications in flight before answering them "timed out".
    pub shutdown_grace: Duration,
    /// Threads that check Basic passwords.
    pub password_check_threads: usize,
    /// Password checks that may wait for a thread.
    pub password_check_queue: usize,
    /// Failed sign-ins per source address and window before 429.
    pub failed_sign_ins_per_address: u32,
    /// The window of `failed_sign_ins_per_address`.
    pub failed_sign_in_window: Duration,
    /// Connections one address may hold before signing in.
    pub max_unauthenticated_per_address: usize,
    /// Idle time allowed to a connection that has not signed in.
    pub unauthenticated_idle: Duration,
    /// Percent of `max_connections` kept for signed-in callers and trusted proxies.
    pub reserved_connections_percent: u8,
    /// Refusals audited one by one per source address and minute.
    pub audited_refusals_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_xml_depth: 64,
            max_xml_elements: 20_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
            password_check_threads: 2,
            password_check_queue: 64,
            failed_sign_ins_per_address: 10,
            failed_sign_in_window: Duration::from_secs(60),
            max_unauthenticated_per_address: 64,
            unauthenticated_idle: Duration::from_secs(5),
            reserved_connections_percent: 10,
            audited_refusals_per_minute: 20,
        }
    }
}

/// Validated engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Deadline of one authentication.
    pub auth_timeout: Duration,
    /// Default country code (digits only).
    pub default_country_code: String,
    /// What an authentication for a user the store does not hold gets.
    pub unknown_users: UnknownUsers,
    /// When repeated failures lock a user.
    pub lockout: Lockout,
    /// Call a known user only at a number the store holds for that user.
    pub call_only_stored_numbers: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            auth_timeout: Duration::from_secs(60),
            default_country_code: "1".into(),
            unknown_users: UnknownUsers::Deny,
            lockout: Lockout::default(),
            call_only_stored_numbers: false,
        }
    }
}

/// `[engine] unknown_users`: the answer for a user the store does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownUsers {
    /// Refused with `USER_NOT_FOUND`, whatever the caller sends: a gateway must not pass people it
    /// does not know (the default).
    Deny,
    /// MFA Server's "user match" option, decided by the caller: `requireUserMatch=true` refuses,
    /// `false` passes without a call (CallResult 7), and `PfAuthUser_5` calls the number given.
    /// Demo mode and the test double answer this way, as MFA Server did; a site sets it only when
    /// its callers rely on unknown users passing and it accepts that any caller can decide so.
    Caller,
}

impl UnknownUsers {
    /// The configuration literal.
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownUsers::Deny => "deny",
            UnknownUsers::Caller => "caller",
        }
    }
}

/// `[engine] lockout_*`: failures within `window` that lock a user for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures that lock.
    pub threshold: u32,
    /// How long failures count.
    pub window: Duration,
    /// How long the lock lasts.
    pub duration: Duration,
}

impl Default for Lockout {
    /// 5 failures within 15 minutes lock for 15 minutes: at most 20 guesses an hour per user, so a
    /// six-digit TOTP code (3 valid at a time) is found with a chance of about 6 in 100,000 an hour,
    /// and every lock is audited; a real user who mistypes is not stopped for long.
    fn default() -> Self {
        Self {
            threshold: 5,
            window: Duration::from_secs(900),
            duration: Duration::from_secs(900),
        }
    }
}

/// Where the user directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorySource {
    /// The embedded `fixtures/demo.toml`.
    EmbeddedDemo,
    /// A users file.
    File(PathBuf),
    /// No users.
    Empty,
}

/// The validated configuration everything else is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// TLS listener.
    pub tls_listen: Option<SocketAddr>,
    /// TLS certificate source.
    pub tls: TlsSource,
    /// Plain-HTTP listener.
    pub plain_listen: Option<SocketAddr>,
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpNet>,
    /// Limits.
    pub limits: Limits,
    /// Engine.
    pub engine: EngineSettings,
    /// Directory.
    pub directory: DirectorySource,
    /// Callers are not authenticated.
    pub allow_anonymous: bool,
    /// Caller authentication and authorization.
    pub auth: AuthSettings,
    /// Demo mode (self-signed certificate, embedded data, no authentication).
    pub demo: bool,
    /// Store.
    pub store: StoreSettings,
    /// LDAP primary authentication, if configured.
    pub primary_auth: Option<crate::primary::LdapSettings>,
    /// Named providers; empty only in demo mode (the scripted provider of the users file), refused
    /// otherwise ([`Settings::serve_problems`]).
    pub providers: Vec<(String, ProviderSettings)>,
    /// Routes over the named providers.
    pub routes: Vec<crate::providers::router::RouteSettings>,
    /// Circuit breaker settings.
    pub breaker: crate::providers::router::BreakerSettings,
    /// The hash-chained audit trail, if configured.
    pub audit: Option<crate::audit_trail::AuditTrailSettings>,
    /// The admin listener (off in [`Settings::demo`]; `pfgate serve` turns it on).
    pub admin: AdminSettings,
}

/// The demo listener when `--listen` is not given.
pub const DEMO_LISTEN: &str = "127.0.0.1:8443";

impl Settings {
    /// Demo mode: TLS on `listen` with a self-signed certificate, embedded demo users, anonymous
    /// callers. Needs no file and no external service.
    pub fn demo(listen: SocketAddr) -> Self {
        Self {
            tls_listen: Some(listen),
            tls: TlsSource::SelfSigned,
            plain_listen: None,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            // A double of MFA Server answers unknown users as MFA Server did.
            engine: EngineSettings {
                unknown_users: UnknownUsers::Caller,
                ..EngineSettings::default()
            },
            directory: DirectorySource::EmbeddedDemo,
            allow_anonymous: true,
            auth: AuthSettings {
                allow_anonymous: true,
                policy: crate::auth::policy::Policy::open(),
                ..AuthSettings::default()
            },
            demo: true,
            store: StoreSettings::default(),
            primary_auth: None,
            providers: Vec::new(),
            routes: Vec::new(),
            breaker: crate::providers::router::BreakerSettings::default(),
            audit: None,
            admin: AdminSettings::default(),
        }
    }
}

impl Settings {
    /// What stops this configuration from serving, beyond what [`validate`] checks: a configuration
    /// without providers (outside demo mode) is refused by `serve`, a reload and `check-config`
    /// ([`NO_PROVIDER`]), while the commands that only use the store (`users import`, `users
    /// export`) still accept it, so users can be loaded before a provider is chosen. As `(key,
    /// reason)`.
    pub fn serve_problems(&self) -> Vec<(&'static str, &'static str)> {
        if self.providers.is_empty() && !self.demo {
            vec![("providers", NO_PROVIDER)]
        } else {
            Vec::new()
        }
    }

    /// What is allowed but loosens a secure default, said at start, at every reload and by
    /// `pfgate check-config` (on standard error, after "OK"). Demo mode says nothing: it is a double.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.demo && self.engine.unknown_users == UnknownUsers::Caller {
            out.push(
                "engine.unknown_users = \"caller\": a user the store does not hold passes without \
                 a second factor whenever the caller sends requireUserMatch=false (MFA Server's \
                 behaviour); any caller in the authentication group decides this"
                    .to_string(),
            );
        }
        // Demo mode has no routes of its own; a configured provider list does.
        if !self.providers.is_empty() {
            out.extend(crate::providers::router::fail_open_warnings(&self.routes));
        }
        out
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file.
    pub file: PathBuf,
    /// Dotted key (`server.listen`), or empty for the whole file.
    pub key: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// All problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let file = parse_file(path)?;
    // A site `pfgate init` wrote is not usable until its placeholders are filled: list exactly
    // those (the other problems they cause would only hide them).
    let unfilled = crate::init::placeholders(path);
    if !unfilled.is_empty() {
        return Err(ConfigErrors(unfilled));
    }
    validate(path, file)
}

/// Reads a configuration file and validates only its `[store]`: for the commands that touch only
/// the store (`users import`, `users export`), which must work from a file holding nothing else
/// (docs/migration.md, step 1). The other sections must still parse (unknown keys are errors).
pub fn load_store(path: &Path) -> Result<StoreSettings, ConfigErrors> {
    let file = parse_file(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &Path| resolve_against(base, p);
    let mut problems = Vec::new();
    let mut problem = |key: &str, reason: String| {
        problems.push(ConfigProblem {
            file: path.to_path_buf(),
            key: key.to_string(),
            reason,
        })
    };
    let store = store_settings(&file.store, &resolve, &mut problem);
    if problems.is_empty() {
        Ok(store)
    } else {
        Err(ConfigErrors(problems))
    }
}

/// Reads and parses (without validating) a configuration file.
fn parse_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let problem = |key: &str, reason: String| ConfigProblem {
        file: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![problem("", format!("cannot read the file: {e}"))]))?;
    toml::from_str(&text).map_err(|e| {
        ConfigErrors(vec![problem(
            "",
            format!("not valid configuration TOML: {}", e.to_string().trim()),
        )])
    })
}

/// `p` as given when absolute, else relative to `base` (the configuration file's directory).
fn resolve_against(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Validates a parsed file.
pub fn validate(path: &Path, file: FileConfig) -> Result<Settings, ConfigErrors> {
    let mut problems = Vec::new();
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problem = |key: &str, reason: String| {
        problems.push(ConfigProblem {
            file: path.to_path_buf(),
            key: key.to_string(),
            reason,
        })
    };
    let resolve = |p: &Path| resolve_against(base, p);

    let parse_addr = |key: &str, v: &Option<String>, problem: &mut dyn FnMut(&str, String)| {
        v.as_ref().and_then(|s| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problem(
                    key,
                    format!("'{s}' is not an address:port such as 0.0.0.0:443"),
                );
                None
            }
        })
    };
    let tls_listen = parse_addr("server.listen", &file.server.listen, &mut problem);
    let plain_listen = parse_addr(
        "server.plain_listen",
        &file.server.plain_listen,
        &mut problem,
    );

    let mut tls = TlsSource::SelfSigned;
    if tls_listen.is_some() {
        match (&file.server.tls_cert, &file.server.tls_key) {
            (Some(cert), Some(key)) => {
                let (cert, key) = (resolve(cert), resolve(key));
                for (k, p) in [("server.tls_cert", &cert), ("server.tls_key", &key)] {
                    if !p.is_file() {
                        problem(k, format!("the file {} does not exist", p.display()));
                    }
                }
                tls = TlsSource::Files { cert, key };
            }
            _ => problem(
                "server.tls_cert",
                "server.listen needs server.tls_cert and server.tls_key (PEM files); \
                 `pfgate serve --demo` runs with a generated certificate instead"
                    .into(),
            ),
        }
    }
    if tls_listen.is_none() && plain_listen.is_none() {
        problem(
            "server.listen",
            "no listener: set server.listen (TLS) and/or server.plain_listen".into(),
        );
    }
    if let Some(addr) = plain_listen {
        if !addr.ip().is_loopback() && !file.server.plain_allow_non_loopback {
            problem(
                "server.plain_listen",
                format!(
                    "{addr} is not a loopback address; plain HTTP carries credentials in clear, so \
                     set server.plain_allow_non_loopback = true only if a TLS proxy sits in front"
                ),
            );
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, s) in file.server.trusted_proxies.iter().enumerate() {
        match s.parse::<IpNet>() {
            Ok(n) => trusted_proxies.push(n),
            Err(e) => problem(&format!("server.trusted_proxies[{i}]"), e),
        }
    }

    let d = Limits::default();
    let l = &file.limits;
    let secs =
        |v: Option<u64>, def: Duration, key: &str, problem: &mut dyn FnMut(&str, String)| match v {
            Some(0) => {
                problem(key, "must be at least 1 second".into());
                def
            }
            Some(s) if s > 3600 => {
                problem(key, "must be at most 3600 seconds".into());
                def
            }
            Some(s) => Duration::from_secs(s),
            None => def,
        };
    let limits = Limits {
        max_body_bytes: match l.max_body_bytes {
            Some(b) if !(1024..=64 * 1024 * 1024).contains(&b) => {
                problem(
                    "limits.max_body_bytes",
                    "must be between 1024 and 67108864".into(),
                );
                d.max_body_bytes
            }
            Some(b) => b,
            None => d.max_body_bytes,
        },
        max_xml_depth: match l.max_xml_depth {
            Some(v) if !(8..=1024).contains(&v) => {
                problem("limits.max_xml_depth", "must be between 8 and 1024".into());
                d.max_xml_depth
            }
            Some(v) => v,
            None => d.max_xml_depth,
        },
        max_xml_elements: match l.max_xml_elements {
            Some(v) if !(100..=1_000_000).contains(&v) => {
                problem(
                    "limits.max_xml_elements",
                    "must be between 100 and 1000000".into(),
                );
                d.max_xml_elements
            }
            Some(v) => v,
            None => d.max_xml_elements,
        },
        header_timeout: secs(
            l.header_timeout_secs,
            d.header_timeout,
            "limits.header_timeout_secs",
            &mut problem,
        ),
        body_timeout: secs(
            l.body_timeout_secs,
            d.body_timeout,
            "limits.body_timeout_secs",
            &mut problem,
        ),
        tls_handshake_timeout: secs(
            l.tls_handshake_timeout_secs,
            d.tls_handshake_timeout,
            "limits.tls_handshake_timeout_secs",
            &mut problem,
        ),
        max_connections: match l.max_connections {
            Some(0) => {
                problem("limits.max_connections", "must be at least 1".into());
                d.max_connections
            }
            Some(v) => v,
            None => d.max_connections,
        },
        shutdown_grace: match l.shutdown_grace_secs {
            Some(v) if v > 3600 => {
                problem(
                    "limits.shutdown_grace_secs",
                    format!("{v} is out of range: it must be 0..=3600"),
                );
                d.shutdown_grace
            }
            Some(v) => Duration::from_secs(v),
            None => d.shutdown_grace,
        },
        password_check_threads: in_range(
            l.password_check_threads,
            d.password_check_threads,
            1..=64,
            "limits.password_check_threads",
            &mut problem,
        ),
        password_check_queue: in_range(
            l.password_check_queue,
            d.password_check_queue,
            1..=100_000,
            "limits.password_check_queue",
            &mut problem,
        ),
        failed_sign_ins_per_address: in_range(
            l.failed_sign_ins_per_address,
            d.failed_sign_ins_per_address,
            1..=1_000_000,
            "limits.failed_sign_ins_per_address",
            &mut problem,
        ),
        failed_sign_in_window: secs(
            l.failed_sign_in_window_secs,
            d.failed_sign_in_window,
            "limits.failed_sign_in_window_secs",
            &mut problem,
        ),
        max_unauthenticated_per_address: in_range(
            l.max_unauthenticated_connections_per_address,
            d.max_unauthenticated_per_address,
            1..=1_000_000,
            "limits.max_unauthenticated_connections_per_address",
            &mut problem,
        ),
        unauthenticated_idle: secs(
            l.unauthenticated_idle_secs,
            d.unauthenticated_idle,
            "limits.unauthenticated_idle_secs",
            &mut problem,
        ),
        reserved_connections_percent: in_range(
            l.reserved_connections_percent,
            d.reserved_connections_percent,
            0..=90,
            "limits.reserved_connections_percent",
            &mut problem,
        ),
        audited_refusals_per_minute: in_range(
            l.audited_refusals_per_source_per_minute,
            d.audited_refusals_per_minute,
            1..=1_000_000,
            "limits.audited_refusals_per_source_per_minute",
            &mut problem,
        ),
    };

    let de = EngineSettings::default();
    let engine = EngineSettings {
        auth_timeout: match file.engine.auth_timeout_secs {
            Some(s) if s == 0 || s >= 100 => {
                problem(
                    "engine.auth_timeout_secs",
                    format!("{s} is out of range: it must be 1..=99, below the 100 s HTTP timeout of .NET callers"),
                );
                de.auth_timeout
            }
            Some(s) => Duration::from_secs(s),
            None => de.auth_timeout,
        },
        default_country_code: match &file.engine.default_country_code {
            Some(c) if c.is_empty() || c.len() > 3 || !c.bytes().all(|b| b.is_ascii_digit()) => {
                problem(
                    "engine.default_country_code",
                    format!("'{c}' is not a country calling code (1 to 3 digits, e.g. 1 or 44)"),
                );
                de.default_country_code
            }
            Some(c) => c.clone(),
            None => de.default_country_code,
        },
        unknown_users: match file.engine.unknown_users.as_deref() {
            None | Some("deny") => UnknownUsers::Deny,
            Some("caller") => UnknownUsers::Caller,
            Some(other) => {
                problem(
                    "engine.unknown_users",
                    format!("'{other}' is not \"deny\" or \"caller\""),
                );
                de.unknown_users
            }
        },
        lockout: Lockout {
            threshold: match file.engine.lockout_threshold {
                Some(t) if !(1..=100).contains(&t) => {
                    problem(
                        "engine.lockout_threshold",
                        format!("{t} is out of range: it must be 1..=100"),
                    );
                    de.lockout.threshold
                }
                Some(t) => t,
                None => de.lockout.threshold,
            },
            window: lockout_secs(
                file.engine.lockout_window_secs,
                de.lockout.window,
                "engine.lockout_window_secs",
                &mut problem,
            ),
            duration: lockout_secs(
                file.engine.lockout_secs,
                de.lockout.duration,
                "engine.lockout_secs",
                &mut problem,
            ),
        },
        call_only_stored_numbers: file.engine.call_only_stored_numbers.unwrap_or(false),
    };

    let directory = match &file.directory.users_file {
        Some(p) => {
            let p = resolve(p);
            if !p.is_file() {
                problem(
                    "directory.users_file",
                    format!("the file {} does not exist", p.display()),
                );
            } else if let Err(e) = crate::engine::directory::Directory::from_file(&p) {
                problem("directory.users_file", e.to_string());
            }
            DirectorySource::File(p)
        }
        None => DirectorySource::Empty,
    };

    let store = store_settings(&file.store, &resolve, &mut problem);

    let primary_auth = file.primary_auth.as_ref().map(|p| {
        let settings = crate::primary::LdapSettings {
            url: p.ldap_url.clone(),
            bind_dn_template: p.bind_dn_template.clone(),
            start_tls: p.start_tls,
            ca_file: p.ca_file.as_deref().map(resolve),
            timeout: Duration::from_secs(p.timeout_secs.unwrap_or(10)),
        };
        if let Err(e) = settings.validate() {
            problem("primary_auth", e);
        }
        settings
    });

    let mut providers = Vec::new();
    for (name, table) in &file.providers {
        let key = format!("providers.{name}");
        match ProviderSettings::parse(table.clone(), base) {
            Ok(p) => {
                for (k, reason) in p.validate() {
                    problem(&format!("{key}.{k}"), reason);
                }
                providers.push((name.clone(), p));
            }
            Err(reason) => problem(&key, reason.trim().to_string()),
        }
    }
    let names: Vec<&str> = providers.iter().map(|(n, _)| n.as_str()).collect();
    for (i, r) in file.routes.iter().enumerate() {
        for (k, reason) in r.validate(&names) {
            problem(&format!("routes[{i}].{k}"), reason);
        }
    }
    if !providers.is_empty() && file.routes.is_empty() {
        problem(
            "routes",
            "providers are configured but no [[routes]] entry sends authentications to them".into(),
        );
    }
    if providers.is_empty() && !file.routes.is_empty() {
        problem(
            "routes",
            "routes name providers, but no [providers.NAME] is configured".into(),
        );
    }
    let audit = file
        .audit
        .as_ref()
        .map(|a| crate::audit_trail::AuditTrailSettings {
            file: resolve(&a.file),
            max_bytes: a.max_bytes.unwrap_or(crate::audit_trail::DEFAULT_MAX_BYTES),
            keep_files: a
                .keep_files
                .unwrap_or(crate::audit_trail::DEFAULT_KEEP_FILES),
            max_total_bytes: a.max_total_bytes.unwrap_or(0),
        });
    let breaker = {
        let d = crate::providers::router::BreakerSettings::default();
        crate::providers::router::BreakerSettings {
            failure_threshold: file
                .breaker
                .failure_threshold
                .filter(|t| *t > 0)
                .unwrap_or(d.failure_threshold),
            cooldown: file
                .breaker
                .cooldown_secs
                .map(Duration::from_secs)
                .unwrap_or(d.cooldown),
        }
    };

    let auth = {
        let a = &file.auth;
        let methods = !a.basic.is_empty()
            || a.proxy_identity_header.is_some()
            || !a.certificate_map.is_empty()
            || a.ntlm.as_ref().is_some_and(|n| !n.accounts.is_empty())
            || a.kerberos.is_some();
        #[cfg(not(feature = "kerberos"))]
        if a.kerberos.is_some() {
            problem(
                "auth.kerberos",
                "this pfgate was built without Kerberos support: build it with `cargo build \
                 --release --features kerberos` (docs/kerberos.md), or remove [auth.kerberos]"
                    .into(),
            );
        }
        #[cfg(feature = "kerberos")]
        let kerberos = a.kerberos.as_ref().map(|k| {
            let keytab = resolve(&k.keytab);
            if let Err(e) = std::fs::File::open(&keytab) {
                problem(
                    "auth.kerberos.keytab",
                    format!("cannot read {}: {e}", keytab.display()),
                );
            }
            if let Some(spn) = &k.service_principal {
                if let Some(reason) = service_principal_problem(spn) {
                    problem("auth.kerberos.service_principal", reason);
                }
            }
            KerberosAuthSettings::new(keytab, k.service_principal.clone())
        });
        let ntlm = a.ntlm.as_ref().map(|n| {
            if n.netbios_domain.trim().is_empty() {
                problem("auth.ntlm.netbios_domain", "must not be empty".into());
            }
            let accounts: Vec<NtlmAccountSection> = n
                .accounts
                .iter()
                .map(|acc| NtlmAccountSection {
                    password_file: acc.password_file.as_deref().map(resolve),
                    nt_hash_file: acc.nt_hash_file.as_deref().map(resolve),
                    ..acc.clone()
                })
                .collect();
            for (i, acc) in accounts.iter().enumerate() {
                if !acc.principal.contains('\\') {
                    problem(
                        &format!("auth.ntlm.accounts[{i}].principal"),
                        "must be DOMAIN\\user".into(),
                    );
                }
                if let Err(e) = ntlm_account_hash(acc) {
                    problem(&format!("auth.ntlm.accounts[{i}]"), e);
                }
            }
            NtlmSettings {
                netbios_domain: n.netbios_domain.to_ascii_uppercase(),
                netbios_computer: n
                    .netbios_computer
                    .clone()
                    .unwrap_or_else(|| "PFGATE".into()),
                dns_domain: n.dns_domain.clone().unwrap_or_default(),
                dns_computer: n.dns_computer.clone().unwrap_or_default(),
                accounts,
            }
        });
        if let Some(ca) = &a.client_ca_file {
            if !resolve(ca).is_file() {
                problem(
                    "auth.client_ca_file",
                    format!("the file {} does not exist", resolve(ca).display()),
                );
            }
        }
        if !a.certificate_map.is_empty() && a.client_ca_file.is_none() {
            problem(
                "auth.certificate_map",
                "certificate mapping needs auth.client_ca_file (the CA client certificates chain to)".into(),
            );
        }
        if a.client_cert_required && a.client_ca_file.is_none() {
            problem(
                "auth.client_cert_required",
                "needs auth.client_ca_file".into(),
            );
        }
        for (i, m) in a.certificate_map.iter().enumerate() {
            if let Some(reason) = m.validate() {
                problem(&format!("auth.certificate_map[{i}]"), reason);
            }
        }
        if !a.allow_anonymous && !methods {
            problem(
                "auth",
                "no caller authentication is configured: add [auth.ntlm] with \
                 [[auth.ntlm.accounts]] (Windows authentication, what MIM's service account \
                 uses), client certificates ([[auth.certificate_map]] with auth.client_ca_file), \
                 [[auth.basic]] accounts, or auth.proxy_identity_header (with \
                 server.trusted_proxies); or set auth.allow_anonymous = true to accept \
                 unauthenticated callers (only behind a proxy that authenticates them)"
                    .into(),
            );
        }
        if methods && a.principals.is_empty() {
            problem(
                "auth.principals",
                "callers can authenticate but none is allowed: list them in [[auth.principals]] \
                 with the operation groups each may call"
                    .into(),
            );
        }
        for (i, b) in a.basic.iter().enumerate() {
            if !b.password_hash.starts_with("$argon2") {
                problem(
                    &format!("auth.basic[{i}].password_hash"),
                    "must be an argon2 PHC string; make one with `pfgate hash-password`".into(),
                );
            }
            if b.principal.trim().is_empty() {
                problem(
                    &format!("auth.basic[{i}].principal"),
                    "must not be empty".into(),
                );
            }
        }
        if let Some(h) = &a.proxy_identity_header {
            if file.server.trusted_proxies.is_empty() {
                problem(
                    "auth.proxy_identity_header",
                    "an identity header needs server.trusted_proxies: from anyone else it is ignored".into(),
                );
            }
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                problem(
                    "auth.proxy_identity_header",
                    format!("'{h}' is not a header name"),
                );
            }
        }
        let policy = if a.principals.is_empty() && a.allow_anonymous {
            crate::auth::policy::Policy::open()
        } else {
            crate::auth::policy::Policy::new(a.principals.clone())
        };
        AuthSettings {
            allow_anonymous: a.allow_anonymous,
            proxy_identity_header: a
                .proxy_identity_header
                .as_ref()
                .map(|h| h.to_ascii_lowercase()),
            basic: a.basic.clone(),
            policy,
            client_ca_file: a.client_ca_file.as_deref().map(resolve),
            client_cert_required: a.client_cert_required,
            certificate_map: a.certificate_map.clone(),
            ntlm,
            #[cfg(feature = "kerberos")]
            kerberos,
        }
    };

    let admin = admin_settings(&file.admin, &resolve, &mut problem);

    if !problems.is_empty() {
        return Err(ConfigErrors(problems));
    }
    Ok(Settings {
        tls_listen,
        tls,
        plain_listen,
        trusted_proxies,
        limits,
        engine,
        directory,
        allow_anonymous: file.auth.allow_anonymous,
        auth,
        demo: false,
        store,
        primary_auth,
        providers,
        routes: file.routes,
        breaker,
        audit,
        admin,
    })
}

/// Why a configuration without providers is refused (by `check-config` and at start), and what to
/// configure. The scripted provider approves from a users file's outcomes; as a silent default it
/// approved every known user of a real deployment, so it runs only in demo mode, in the test double,
/// or where a route names it.
pub const NO_PROVIDER: &str = "no provider is configured, so nobody can be reached for a second \
     factor: add a [providers.NAME] section (kind = \"webhook\", \"duo\", \"twilio-verify\" or \
     \"oidc\") and a [[routes]] entry with providers = [\"NAME\"] (docs/providers.md). \
     `pfgate serve --demo` and `pfgate mock` run with the scripted demo provider; a test setup that \
     wants it names it explicitly: [providers.demo] kind = \"scripted\" and a route to \"demo\"";

/// A lockout duration: 1 second to 1 day.
fn lockout_secs(
    v: Option<u64>,
    default: Duration,
    key: &str,
    problem: &mut dyn FnMut(&str, String),
) -> Duration {
    match v {
        Some(s) if !(1..=86_400).contains(&s) => {
            problem(
                key,
                format!("{s} is out of range: it must be 1..=86400 seconds"),
            );
            default
        }
        Some(s) => Duration::from_secs(s),
        None => default,
    }
}

/// `[admin]`: on by default on loopback; off the loopback only with a bearer token, because
/// metrics and readiness name providers, routes and traffic (no user data, but a map of the
/// service for anyone who can reach it).
fn admin_settings(
    a: &AdminSection,
    resolve: &dyn Fn(&Path) -> PathBuf,
    problem: &mut dyn FnMut(&str, String),
) -> AdminSettings {
    if a.enabled == Some(false) {
        return AdminSettings::default();
    }
    let listen = match &a.listen {
        None => DEFAULT_ADMIN_LISTEN,
        Some(s) => match s.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                problem(
                    "admin.listen",
                    format!("'{s}' is not an address:port such as 127.0.0.1:9473"),
                );
                return AdminSettings::default();
            }
        },
    };
    let token = match &a.token_file {
        None => None,
        Some(p) => match std::fs::read_to_string(resolve(p)) {
            Ok(t) if t.trim().len() >= 16 => Some(t.trim().to_string()),
            Ok(_) => {
                problem(
                    "admin.token_file",
                    "the token must be at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
                );
                None
            }
            Err(e) => {
                problem(
                    "admin.token_file",
                    format!("cannot read {}: {e}", resolve(p).display()),
                );
                None
            }
        },
    };
    if !listen.ip().is_loopback() && token.is_none() && a.token_file.is_none() {
        problem(
            "admin.listen",
            format!(
                "{listen} is not a loopback address: set admin.token_file (a bearer token every \
                 request must send) or listen on 127.0.0.1"
            ),
        );
    }
    AdminSettings {
        listen: Some(listen),
        required: a.listen.is_some(),
        token,
    }
}

/// Why `spn` is not a usable `[auth.kerberos] service_principal`, if it is not. The realm is
/// required: pfgate needs no `krb5.conf`, so there may be no default realm to complete it with.
#[cfg(feature = "kerberos")]
fn service_principal_problem(spn: &str) -> Option<String> {
    let example = "e.g. HTTP/mfa.contoso.com@CONTOSO.COM";
    if spn.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Some(format!("'{spn}' contains whitespace ({example})"));
    }
    match spn.rsplit_once('@') {
        Some((name, realm)) if name.contains('/') && !realm.is_empty() => None,
        _ => Some(format!("'{spn}' is not SERVICE/host@REALM ({example})")),
    }
}

/// Validated `[store]`: the SQLite file or PostgreSQL database and the secrets key. Shared by
/// `serve` and the commands that touch only the store ([`load_store`]).
fn store_settings(
    section: &StoreSection,
    resolve: &dyn Fn(&Path) -> PathBuf,
    problem: &mut dyn FnMut(&str, String),
) -> StoreSettings {
    let path = section.path.as_deref().map(resolve);
    let postgres = store_postgres(section, &resolve, problem);
    let key = match (&section.secrets_key_file, &section.secrets_key_env) {
        (Some(_), Some(_)) => {
            problem(
                "store.secrets_key_env",
                "give either store.secrets_key_file or store.secrets_key_env, not both".into(),
            );
            KeySource::Ephemeral
        }
        (Some(f), None) => {
            let f = resolve(f);
            if let Err(e) = crate::store::secrets::SecretKey::from_file_quiet(&f) {
                problem("store.secrets_key_file", e.to_string());
            }
            KeySource::File(f)
        }
        (None, Some(var)) => {
            if let Err(e) = crate::store::secrets::SecretKey::from_env(var) {
                problem("store.secrets_key_env", e.to_string());
            }
            KeySource::Env(var.clone())
        }
        (None, None) => {
            if path.is_some() || postgres.is_some() {
                problem(
                    "store.secrets_key_file",
                    "a store file or database needs a secrets key (store.secrets_key_file or \
                     store.secrets_key_env) so OATH secrets and static tokens stay encrypted \
                     across restarts (every instance sharing a database needs the same one); \
                     create one readable only by its owner with \
                     `(umask 077; head -c 32 /dev/urandom > secrets.key)`"
                        .into(),
                );
            }
            KeySource::Ephemeral
        }
    };
    StoreSettings {
        path,
        postgres,
        key,
    }
}

/// The PostgreSQL settings of `[store]`, if `url` is given; problems are reported by key.
fn store_postgres(
    section: &StoreSection,
    resolve: &dyn Fn(&Path) -> PathBuf,
    problem: &mut dyn FnMut(&str, String),
) -> Option<crate::store::postgres::PostgresSettings> {
    use crate::store::postgres::{PasswordSource, PostgresSettings, DEFAULT_POOL_SIZE};
    let Some(url) = &section.url else {
        for (key, set) in [
            ("schema", section.schema.is_some()),
            ("pool_size", section.pool_size.is_some()),
            ("password_file", section.password_file.is_some()),
            ("password_env", section.password_env.is_some()),
            ("tls_ca_file", section.tls_ca_file.is_some()),
        ] {
            if set {
                problem(
                    &format!("store.{key}"),
                    "only for a PostgreSQL store: set store.url".into(),
                );
            }
        }
        return None;
    };
    if section.path.is_some() {
        problem(
            "store.url",
            "give either store.path (SQLite) or store.url (PostgreSQL), not both".into(),
        );
    }
    let password = match (&section.password_file, &section.password_env) {
        (Some(_), Some(_)) => {
            problem(
                "store.password_env",
                "give either store.password_file or store.password_env, not both".into(),
            );
            None
        }
        (Some(f), None) => Some(PasswordSource::File(resolve(f))),
        (None, Some(v)) => Some(PasswordSource::Env(v.clone())),
        (None, None) => None,
    };
    let settings = PostgresSettings {
        url: url.clone(),
        password,
        schema: section.schema.clone(),
        pool_size: section.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
        tls_ca_file: section.tls_ca_file.as_deref().map(resolve),
    };
    for (key, reason) in settings.validate() {
        problem(&format!("store.{key}"), reason);
    }
    Some(settings)
}

/// True when `ip` is inside one of `nets`.
pub fn is_trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// `value` if it lies in `range`, else the problem is reported and `default` kept.
fn in_range<T>(
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
    key: &str,
    problem: &mut dyn FnMut(&str, String),
) -> T
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    match value {
        Some(v) if !range.contains(&v) => {
            problem(
                key,
                format!(
                    "{v} is out of range: it must be {}..={}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Some(v) => v,
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of the problems a `[store]` section (and a minimal rest) produces.
    /// A provider named explicitly, so a configuration under test has one.
    const SCRIPTED: &str =
        "[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n";

    fn store_problems(store: &str) -> Result<Settings, Vec<String>> {
        let text = format!("[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n{SCRIPTED}[store]\n{store}");
        let file: FileConfig = toml::from_str(&text).unwrap();
        validate(Path::new("/etc/pfgate/pfgate.toml"), file)
            .map_err(|e| e.0.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn transport_limits_and_audit_retention_are_read_and_range_checked() {
        let parse = |text: &str| {
            let text = format!(
                "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n{text}"
            );
            let file: FileConfig = toml::from_str(&text).unwrap();
            validate(Path::new("/etc/pfgate/pfgate.toml"), file)
                .map_err(|e| e.0.into_iter().map(|p| p.key).collect::<Vec<_>>())
        };
        let d = parse("").unwrap();
        assert_eq!(d.limits.password_check_threads, 2);
        assert_eq!(d.limits.failed_sign_ins_per_address, 10);
        assert_eq!(d.limits.reserved_connections_percent, 10);
        let s = parse(
            "[limits]\npassword_check_threads = 4\npassword_check_queue = 8\n\
             failed_sign_ins_per_address = 5\nfailed_sign_in_window_secs = 900\n\
             max_unauthenticated_connections_per_address = 16\nunauthenticated_idle_secs = 2\n\
             reserved_connections_percent = 20\naudited_refusals_per_source_per_minute = 3\n\
             [audit]\nfile = \"a.jsonl\"\nkeep_files = 0\nmax_total_bytes = 1000000\n",
        )
        .unwrap();
        let l = &s.limits;
        assert_eq!(
            (
                l.password_check_threads,
                l.password_check_queue,
                l.failed_sign_ins_per_address
            ),
            (4, 8, 5)
        );
        assert_eq!(l.failed_sign_in_window, Duration::from_secs(900));
        assert_eq!(l.unauthenticated_idle, Duration::from_secs(2));
        assert_eq!(
            (
                l.max_unauthenticated_per_address,
                l.reserved_connections_percent,
                l.audited_refusals_per_minute
            ),
            (16, 20, 3)
        );
        let audit = s.audit.unwrap();
        assert_eq!((audit.keep_files, audit.max_total_bytes), (0, 1_000_000));
        let bad = parse(
            "[limits]\npassword_check_threads = 0\nreserved_connections_percent = 95\n\
             unauthenticated_idle_secs = 0\n",
        )
        .unwrap_err();
        assert_eq!(
            bad,
            [
                "limits.password_check_threads",
                "limits.unauthenticated_idle_secs",
                "limits.reserved_connections_percent"
            ]
        );
    }

    #[test]
    fn store_url_selects_postgres_and_its_keys_are_checked() {
        // A key from the environment (hex) so validation can read one.
        std::env::set_var("PFGATE_CONFIG_TEST_KEY", "42".repeat(32));
        let key = "secrets_key_env = \"PFGATE_CONFIG_TEST_KEY\"\n";
        let settings = store_problems(&format!(
            "url = \"postgres://pfgate@db.contoso.com/pfgate?sslmode=require\"\nschema = \"pfgate\"\n\
             pool_size = 4\npassword_file = \"db.password\"\n{key}"
        ))
        .unwrap_err();
        // The password file does not exist: that is the one problem, named by its key.
        assert_eq!(settings, ["store.password_file"]);
        let ok = store_problems(&format!(
            "url = \"postgres://pfgate@127.0.0.1/pfgate\"\nschema = \"pfgate\"\npool_size = 4\n{key}"
        ))
        .unwrap();
        let pg = ok.store.postgres.unwrap();
        assert_eq!((pg.schema.as_deref(), pg.pool_size), (Some("pfgate"), 4));
        assert_eq!(ok.store.path, None);

        for (store, expected) in [
            (
                format!("url = \"postgres://p@127.0.0.1/p\"\npath = \"p.db\"\n{key}"),
                vec!["store.url"],
            ),
            (
                "url = \"postgres://p@127.0.0.1/p\"\n".to_string(),
                vec!["store.secrets_key_file"],
            ),
            (
                format!("schema = \"pfgate\"\ntls_ca_file = \"ca.pem\"\n{key}"),
                vec!["store.schema", "store.tls_ca_file"],
            ),
            (
                format!("url = \"postgres://p:secret@127.0.0.1/p\"\n{key}"),
                vec!["store.url"],
            ),
            (
                format!("url = \"postgres://p@db.contoso.com/p?sslmode=prefer\"\n{key}"),
                vec!["store.url"],
            ),
            (
                format!("url = \"postgres://p@127.0.0.1/p\"\nschema = \"Bad-Name\"\npool_size = 0\n{key}"),
                vec!["store.schema", "store.pool_size"],
            ),
            (
                format!("url = \"postgres://p@127.0.0.1/p\"\npassword_env = \"A\"\npassword_file = \"b\"\n{key}"),
                vec!["store.password_env"],
            ),
        ] {
            assert_eq!(store_problems(&store).unwrap_err(), expected, "{store}");
        }
    }

    /// `match` of an oidc provider: its default follows the claim, a bad value or `oid` matched
    /// against usernames is a problem line naming `providers.NAME.match` and saying what to do.
    #[test]
    fn oidc_match_is_validated_and_defaults_by_claim() {
        use crate::providers::oidc::IdentityMatch;
        let load = |extra: &str| {
            let text = format!(
                "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
                 [providers.entra]\nkind = \"oidc\"\nissuer = \"http://127.0.0.1:9/op\"\n\
                 client_id = \"c\"\npublic_url = \"http://127.0.0.1:8444\"\n\
                 listen = \"127.0.0.1:8444\"\n{extra}\n\
                 [providers.entra.webhook]\nurl = \"http://127.0.0.1:9/hook\"\n\
                 [[routes]]\nproviders = [\"entra\"]\n"
            );
            let file: FileConfig = toml::from_str(&text).unwrap();
            validate(Path::new("/etc/pfgate/pfgate.toml"), file).map_err(|e| {
                e.0.into_iter()
                    .map(|p| format!("{}: {}", p.key, p.reason))
                    .collect::<Vec<_>>()
            })
        };
        let matching = |extra: &str| {
            let settings = load(extra).unwrap();
            let ProviderSettings::Oidc(o) = &settings.providers[0].1 else {
                panic!("an oidc provider")
            };
            o.identity_match().unwrap()
        };
        assert_eq!(matching(""), IdentityMatch::Username);
        assert_eq!(
            matching("username_claim = \"upn\""),
            IdentityMatch::Username
        );
        assert_eq!(
            matching("username_claim = \"oid\""),
            IdentityMatch::ExternalId
        );
        assert_eq!(
            matching("username_claim = \"sub\""),
            IdentityMatch::ExternalId
        );
        assert_eq!(
            matching("username_claim = \"email\"\nmatch = \"external_id\""),
            IdentityMatch::ExternalId
        );
        assert_eq!(
            matching("username_claim = \"sub\"\nmatch = \"username\""),
            IdentityMatch::Username
        );
        let problems = load("match = \"upn\"").unwrap_err();
        assert_eq!(
            problems,
            ["providers.entra.match: 'upn' is not \"username\" or \"external_id\""]
        );
        let problems = load("username_claim = \"oid\"\nmatch = \"username\"").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("providers.entra.match: username_claim = \"oid\" is an object id")
                && problems[0].contains("match = \"external_id\""),
            "{problems:?}"
        );
    }

    #[test]
    fn example_file_uses_only_known_keys() {
        let text = include_str!("../pfgate.example.toml");
        let parsed: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(parsed.engine.auth_timeout_secs, Some(60));
        assert_eq!(
            parsed.limits.max_body_bytes,
            Some(Limits::default().max_body_bytes)
        );
        assert!(
            !parsed.auth.allow_anonymous,
            "the example must not open the door by default"
        );
    }

    fn engine_problems(text: &str) -> Result<Settings, Vec<String>> {
        let file: FileConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        validate(Path::new("/nonexistent/pfgate.toml"), file).map_err(|e| {
            e.0.iter()
                .map(|p| format!("{}: {}", p.key, p.reason))
                .collect()
        })
    }

    /// Without a provider the configuration cannot serve, saying what to configure (issue #17,
    /// item 4); a provider named explicitly, even the scripted one, can; demo mode has its own.
    #[test]
    fn a_configuration_without_providers_cannot_serve() {
        let base = "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n";
        let problems = engine_problems(base).unwrap().serve_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "providers");
        assert!(
            problems[0].1.starts_with("no provider is configured"),
            "{problems:?}"
        );
        assert!(problems[0].1.contains("[[routes]]"), "{problems:?}");
        let named = engine_problems(&format!("{base}{SCRIPTED}")).unwrap();
        assert!(named.serve_problems().is_empty());
        assert!(Settings::demo(([127, 0, 0, 1], 0).into())
            .serve_problems()
            .is_empty());
    }

    /// The engine's new settings: secure defaults, the documented literals, ranges checked.
    #[test]
    fn engine_policy_settings_default_secure_and_are_checked() {
        let base = format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n{SCRIPTED}"
        );
        let d = engine_problems(&base).unwrap().engine;
        assert_eq!(d.unknown_users, UnknownUsers::Deny);
        assert_eq!(
            (
                d.lockout.threshold,
                d.lockout.window.as_secs(),
                d.lockout.duration.as_secs()
            ),
            (5, 900, 900)
        );
        assert!(!d.call_only_stored_numbers);
        let set = engine_problems(&format!(
            "{base}[engine]\nunknown_users = \"caller\"\nlockout_threshold = 3\n\
             lockout_window_secs = 60\nlockout_secs = 120\ncall_only_stored_numbers = true\n"
        ))
        .unwrap()
        .engine;
        assert_eq!(set.unknown_users, UnknownUsers::Caller);
        assert_eq!(
            (
                set.lockout.threshold,
                set.lockout.window.as_secs(),
                set.lockout.duration.as_secs()
            ),
            (3, 60, 120)
        );
        assert!(set.call_only_stored_numbers);
        let bad = engine_problems(&format!(
            "{base}[engine]\nunknown_users = \"allow\"\nlockout_threshold = 0\nlockout_secs = 0\n"
        ))
        .unwrap_err();
        let keys: Vec<&str> = bad
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "engine.unknown_users",
                "engine.lockout_threshold",
                "engine.lockout_secs"
            ]
        );
        // Demo mode is a double of MFA Server: unknown users as the caller says.
        assert_eq!(
            Settings::demo(([127, 0, 0, 1], 0).into())
                .engine
                .unknown_users,
            UnknownUsers::Caller
        );
    }

    /// Problems of an `[auth]` section with `[auth.kerberos]` and an allow-list, as `key: reason`.
    fn kerberos_problems(section: &str) -> Result<Settings, Vec<String>> {
        let text = format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n{SCRIPTED}{section}\n\
             [[auth.principals]]\nname = \"svc-mim@CONTOSO.COM\"\nallow = [\"authentication\"]\n"
        );
        let file: FileConfig = toml::from_str(&text).map_err(|e| vec![e.to_string()])?;
        validate(Path::new("/nonexistent/pfgate.toml"), file).map_err(|e| {
            e.0.iter()
                .map(|p| format!("{}: {}", p.key, p.reason))
                .collect()
        })
    }

    #[cfg(not(feature = "kerberos"))]
    #[test]
    fn kerberos_section_is_refused_by_name_without_the_feature() {
        let problems = kerberos_problems(
            "[auth.kerberos]\nkeytab = \"/etc/pfgate/pfgate.keytab\"\n\
             service_principal = \"HTTP/mfa.contoso.com@CONTOSO.COM\"",
        )
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("auth.kerberos: this pfgate was built without Kerberos"),
            "{problems:?}"
        );
        assert!(problems[0].contains("--features kerberos"), "{problems:?}");
    }

    #[cfg(feature = "kerberos")]
    #[test]
    fn kerberos_section_is_checked_with_the_feature() {
        let keytab =
            std::env::temp_dir().join(format!("pfgate-config-{}.keytab", std::process::id()));
        let _ = std::fs::write(&keytab, b"\x05\x02");
        let ok = kerberos_problems(&format!(
            "[auth.kerberos]\nkeytab = {:?}\nservice_principal = \"HTTP/mfa.contoso.com@CONTOSO.COM\"",
            keytab.display().to_string()
        ));
        let settings = match ok {
            Ok(s) => s,
            Err(p) => panic!("{p:?}"),
        };
        let k = settings
            .auth
            .kerberos
            .as_ref()
            .map(|k| k.acceptor_settings());
        assert_eq!(
            k.map(|k| (k.keytab, k.service_principal)),
            Some((
                keytab.clone(),
                Some("HTTP/mfa.contoso.com@CONTOSO.COM".into())
            ))
        );
        // Validation only reads the settings: the acceptor is built at start-up.
        assert!(settings
            .auth
            .kerberos
            .is_some_and(|k| k.acceptor().is_none()));
        let _ = std::fs::remove_file(&keytab);

        let problems = kerberos_problems(
            "[auth.kerberos]\nkeytab = \"missing.keytab\"\nservice_principal = \"HTTP/mfa.contoso.com\"",
        )
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("auth.kerberos.keytab: cannot read /nonexistent/missing.keytab"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with(
                "auth.kerberos.service_principal: 'HTTP/mfa.contoso.com' is not SERVICE/host@REALM"
            ),
            "{problems:?}"
        );
    }
}
