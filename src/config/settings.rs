//! The validated configuration: the types everything downstream is built from, their defaults and
//! demo mode. Nothing here holds a raw string from the file that still needs checking.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::net::IpNet;

use super::file::NtlmAccountSection;
use super::ProviderSettings;

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
    /// With `path`: several serving processes share the file (`store.shared_file`), so each claims
    /// its provider calls in the database; otherwise the serving process owns the file.
    pub shared_file: bool,
    /// PostgreSQL, instead of SQLite.
    pub postgres: Option<crate::store::postgres::PostgresSettings>,
    /// Secrets key.
    pub key: KeySource,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: None,
            shared_file: false,
            postgres: None,
            key: KeySource::Ephemeral,
        }
    }
}

/// Validated `[auth.kerberos]`, with the acceptor built from it at start-up.
///
/// The acceptor lives here, behind an `Arc` every clone of the settings shares, because it is
/// process-wide by nature (MIT krb5 reads the keytab from the process environment, see
/// `docs/kerberos.md`) and must be built once, at start-up, by [`crate::server::app::build_engine`]: the
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

pub use crate::engine::options::{EngineSettings, Lockout, UnknownUsers};

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
    pub primary_auth: Option<crate::engine::primary::LdapSettings>,
    /// Named providers; empty only in demo mode (the scripted provider of the users file), refused
    /// otherwise ([`Settings::serve_problems`]).
    pub providers: Vec<(String, ProviderSettings)>,
    /// Routes over the named providers.
    pub routes: Vec<crate::providers::router::RouteSettings>,
    /// Circuit breaker settings.
    pub breaker: crate::providers::router::BreakerSettings,
    /// The hash-chained audit trail, if configured.
    pub audit: Option<crate::telemetry::audit_trail::AuditTrailSettings>,
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
    /// What stops this configuration from serving, beyond what [`super::validate`] checks: a configuration
    /// without providers (outside demo mode) is refused by `serve`, a reload and `check-config`
    /// ([`super::NO_PROVIDER`]), while the commands that only use the store (`users import`, `users
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

/// Why a configuration without providers is refused (by `check-config` and at start), and what to
/// configure. The scripted provider approves from a users file's outcomes; as a silent default it
/// approved every known user of a real deployment, so it runs only in demo mode, in the test double,
/// or where a route names it.
pub const NO_PROVIDER: &str = "no provider is configured, so nobody can be reached for a second \
     factor: add a [providers.NAME] section (kind = \"webhook\", \"duo\", \"twilio-verify\" or \
     \"oidc\") and a [[routes]] entry with providers = [\"NAME\"] (docs/providers.md). \
     `pfgate serve --demo` and `pfgate mock` run with the scripted demo provider; a test setup that \
     wants it names it explicitly: [providers.demo] kind = \"scripted\" and a route to \"demo\"";
