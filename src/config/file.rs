//! The configuration file as written: one serde struct per TOML section, nothing validated yet.
//!
//! Unknown keys are errors in every section (`deny_unknown_fields`): a typo must not silently fall
//! back to a default in an authentication component. [`super::validate`] turns these into
//! [`super::Settings`].

use std::path::PathBuf;

use serde::Deserialize;

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
    /// With `path`: `true` lets several pfgate processes on this host serve from the one SQLite
    /// file (each claims its provider calls in the database, at about half the throughput).
    /// Default `false`: the serving process owns the file (an exclusive lock on `<path>.lock`; a
    /// second one is refused at start) and keeps the calls in flight in memory. PostgreSQL (`url`)
    /// is the supported way to run several instances.
    pub shared_file: Option<bool>,
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
