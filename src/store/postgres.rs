//! The shared store backend: PostgreSQL through `tokio-postgres`, with a `deadpool` connection pool
//! and optional TLS (rustls), for several pfgate instances behind a load balancer (`docs/ha.md`).
//!
//! Instances agree only through the database; pfgate adds no consensus of its own. Each
//! at-most-once operation of [`Store`] is one statement whose effect decides it, even with any
//! number of instances racing:
//!
//! - consuming a bypass is one `DELETE ... WHERE username_key = $1 AND expires_at >= $2` (a second
//!   deleter waits for the first's row lock, then finds the row gone);
//! - taking a transaction is one `DELETE ... RETURNING`;
//! - accepting a one-time code is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`, which
//!   returns a row only to the instance that inserted (or revived an expired) digest;
//! - claiming a provider call is one `INSERT ... ON CONFLICT DO NOTHING RETURNING` against a
//!   unique index on pending calls: one instance inserts, the others read its request id and poll
//!   for its outcome.
//!
//! Nothing is cached in the process: every request reads the database, so a change made through
//! one instance is what the next request to any instance sees.
//!
//! Failures: every operation has a deadline ([`OP_TIMEOUT`]) and any database error becomes
//! [`StoreError::Unavailable`] (authentication then fails secure); the pool drops connections that
//! closed and opens new ones on demand, so service resumes by itself when the database returns.
//!
//! TLS: `sslmode=require` in the URL means TLS with the server's certificate verified (chain and
//! host name, against the system trust store or `store.tls_ca_file`) — libpq's `verify-full`, not
//! its unverified `require`. `sslmode=prefer` (silently plaintext when an attacker answers "no
//! TLS") is refused; without `sslmode`, a loopback or Unix-socket host gets plaintext and any other
//! host TLS.
//!
//! The schema has its own versioned migrations (`migrations/postgres/`), applied at start, each in
//! one transaction under an advisory lock so instances starting together apply each exactly once.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::Row;
use zeroize::Zeroizing;

use super::row::{
    self, kind_literal, open_field, parse_kind, seal_field, unix_now, username_key, Columns,
    RawUser, UserRow, Value, FIELD_OATH_SECRET, FIELD_STATIC_TOKEN,
};
use super::secrets::{self, SecretKey};
use super::{
    Bypass, CallClaim, CallKey, CallState, Cause, FailureCount, FailureRule, Store, StoreError,
    StoreResult, Transaction, TransactionKind, UserFilter, UserRecord, UserStanding, CLAIM_LAPSED,
};
use crate::pfwssdk::wire::WireEnum;

/// The schema migrations in order: migration `i` (0-based) brings the schema to version `i + 1`.
/// Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_inflight_calls.sql"),
    include_str!("migrations/postgres/0003_external_id.sql"),
    include_str!("migrations/postgres/0004_lockout.sql"),
    include_str!("migrations/postgres/0005_key_check.sql"),
];

/// The longest any store operation may take, pool wait and connecting included. Well below the
/// authentication deadline, so an unreachable database answers "store unavailable" in time rather
/// than "call timed out" (or nothing).
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening one connection may take (TCP, TLS, authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool unless `store.pool_size` says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Largest accepted `store.pool_size` (PostgreSQL's default `max_connections` is 100, shared by
/// every instance).
pub const MAX_POOL_SIZE: usize = 256;

/// How often (seconds) an instance deletes expired bypasses, transactions, used codes and ended
/// calls. Expired rows are never used meanwhile: every statement checks `expires_at` itself.
const PURGE_EVERY_SECS: i64 = 60;

/// `SELECT <all user columns> FROM users WHERE username_key = $1`.
static SELECT_USER: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE username_key = $1", row::select_users_sql()));
/// The user and its block, lock and bypass in one statement ([`row::select_standing_sql`]).
static SELECT_STANDING: LazyLock<String> =
    LazyLock::new(|| row::select_standing_sql(|n| format!("${n}")));
/// Inserts a user unless the key exists.
static INSERT_USER: LazyLock<String> = LazyLock::new(|| row::insert_user_sql(|n| format!("${n}")));
/// Replaces every column but the key and the username as first stored.
static UPDATE_USER: LazyLock<String> = LazyLock::new(|| row::update_user_sql(|n| format!("${n}")));
/// Counts a failed attempt ([`row::record_failure_sql`]); every parameter but the key is a BIGINT
/// (the casts give the `INSERT ... SELECT` list its types).
static RECORD_FAILURE: LazyLock<String> = LazyLock::new(|| {
    row::record_failure_sql(|n| match n {
        1 => "$1".to_string(),
        n => format!("${n}::BIGINT"),
    })
});

/// Where the database password comes from: never the configuration file (nor the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// An environment variable.
    Env(String),
    /// A file (one trailing line ending is ignored).
    File(PathBuf),
}

/// What connecting to PostgreSQL needs: the validated `[store]` keys (`pfgate.example.toml`).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database?sslmode=require` (libpq URL syntax, no password).
    pub url: String,
    /// The password, if the server asks for one.
    pub password: Option<PasswordSource>,
    /// The schema holding pfgate's tables (created if missing); the user's default `search_path`
    /// when `None`.
    pub schema: Option<String>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// PEM file of the CA certificates that may sign the server's certificate; the system trust
    /// store when `None`.
    pub tls_ca_file: Option<PathBuf>,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &redacted(&self.url))
            .field("password", &self.password)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// The URL with any password replaced, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "(not a URL)".to_string(),
    }
}

impl PostgresSettings {
    /// Settings for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            tls_ca_file: None,
        }
    }

    /// Every problem of these settings as `(key, reason)`, keys relative to `[store]`. Reads the CA
    /// file and the password source, so `pfgate check-config` shows what start-up would refuse.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(e) = self.client_config().and_then(|c| self.tls(&c).map(|_| ())) {
            let key = match e {
                SettingsError::Url(_) => "url",
                SettingsError::Schema(_) => "schema",
                SettingsError::Tls(_) => "tls_ca_file",
            };
            problems.push((key, e.to_string()));
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            problems.push((
                "pool_size",
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        if let Err(e) = self.read_password() {
            let key = match self.password {
                Some(PasswordSource::Env(_)) => "password_env",
                _ => "password_file",
            };
            problems.push((key, e));
        }
        problems
    }

    /// The connection settings the URL, the schema and pfgate's fixed choices describe (no
    /// password yet), with the effective TLS mode.
    fn client_config(&self) -> Result<tokio_postgres::Config, SettingsError> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(SettingsError::Url(
                "must be a postgres:// or postgresql:// URL".into(),
            ));
        }
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            SettingsError::Url(format!("not a valid PostgreSQL URL: {}", chain(&e)))
        })?;
        if config.get_password().is_some() {
            return Err(SettingsError::Url(
                "holds a password: give it with store.password_file or store.password_env \
                 instead, so the configuration file holds no secret"
                    .into(),
            ));
        }
        let explicit_mode = url_parameter(&self.url, "sslmode");
        match explicit_mode.as_deref() {
            Some("prefer") => {
                return Err(SettingsError::Url(
                    "sslmode=prefer falls back to plaintext whenever the other side says so; \
                     use sslmode=require (TLS, certificate verified) or sslmode=disable"
                        .into(),
                ))
            }
            Some(_) => {}
            None => {
                config.ssl_mode(if only_loopback(&config) {
                    SslMode::Disable
                } else {
                    SslMode::Require
                });
            }
        }
        if let Some(schema) = &self.schema {
            if !valid_identifier(schema) {
                return Err(SettingsError::Schema(format!(
                    "'{schema}' is not a plain identifier (lower-case letters, digits and _, \
                     not starting with a digit, at most 63 characters)"
                )));
            }
            let options = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} -c search_path={schema}"),
                _ => format!("-c search_path={schema}"),
            };
            config.options(options);
        }
        config
            .application_name("pfgate")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .tcp_user_timeout(Duration::from_secs(15));
        Ok(config)
    }

    /// The TLS connector for `config`'s mode: verified against the CA file or the system store.
    fn tls(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect, SettingsError> {
        if config.get_ssl_mode() == SslMode::Disable && self.tls_ca_file.is_some() {
            return Err(SettingsError::Tls(
                "a CA file is given but the URL says sslmode=disable".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SettingsError::Tls(format!("TLS configuration: {e}")))?;
        let client = match &self.tls_ca_file {
            Some(path) => builder
                .with_root_certificates(ca_roots(path)?)
                .with_no_client_auth(),
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| SettingsError::Tls(format!("the system trust store: {e}")))?
                    .with_no_client_auth()
            }
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(client))
    }

    /// The password from its source, if any, less one trailing line ending (as the providers'
    /// secrets are read).
    fn read_password(&self) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
        use crate::core::secret;
        let (mut bytes, _) = match &self.password {
            None => return Ok(None),
            Some(PasswordSource::Env(var)) => secret::from_env(var)?,
            Some(PasswordSource::File(path)) => secret::from_file(path, "database password")?,
        };
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Ok(Some(bytes))
    }

    /// `host:port/database (schema S)` for logs: never the password.
    fn target(&self, config: &tokio_postgres::Config) -> String {
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                // Unix-domain sockets exist in tokio-postgres on Unix only.
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().unwrap_or("(default database)");
        let tls = if config.get_ssl_mode() == SslMode::Disable {
            "plaintext"
        } else {
            "TLS"
        };
        match &self.schema {
            Some(s) => format!("{}:{port}/{db} schema {s}, {tls}", hosts.join(",")),
            None => format!("{}:{port}/{db}, {tls}", hosts.join(",")),
        }
    }
}

/// Why settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The URL is not a usable `postgres://` URL.
    #[error("{0}")]
    Url(String),
    /// The schema name is not a plain identifier.
    #[error("{0}")]
    Schema(String),
    /// The TLS settings or trust anchors are unusable.
    #[error("{0}")]
    Tls(String),
}

/// The value of `name` in the URL's query, if present.
fn url_parameter(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// True when every host is this machine: a Unix socket, `localhost` or a loopback address.
fn only_loopback(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            #[cfg(unix)]
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name.eq_ignore_ascii_case("localhost")
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
}

/// A schema name pfgate accepts: a plain, lower-case SQL identifier that needs no quoting.
fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// The trust anchors in a PEM file.
fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, SettingsError> {
    let bad = |m: String| SettingsError::Tls(format!("{}: {m}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate not usable as a trust anchor: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM CERTIFICATE found".into()));
    }
    Ok(roots)
}

/// An error with its causes, `a: b: c` (tokio-postgres puts the interesting part in the source).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Some errors repeat their source in their own text (deadpool's): say it once.
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A database error as the log shows it. Only the server's message and SQLSTATE are kept: its
/// DETAIL can quote row values (a sealed secret, a PIN hash), which do not belong in a log.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => chain(e),
    }
}

/// Maps a database error to the store's: data the server reports damaged is `Corrupt`, anything
/// else `Unavailable` ([`describe`] says what the log shows of it).
fn db_err(op: &str, e: tokio_postgres::Error) -> StoreError {
    let corrupt = e.as_db_error().is_some_and(|db| {
        matches!(
            *db.code(),
            SqlState::DATA_CORRUPTED | SqlState::INDEX_CORRUPTED
        )
    });
    if corrupt {
        StoreError::Corrupt(format!("{op}: {}", describe(&e)))
    } else {
        StoreError::unavailable_while(op.to_string(), Cause::Postgres(e))
    }
}

/// True for a unique-constraint violation.
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The error of writing a user row: [`StoreError::ExternalIdTaken`], naming the holder, when the
/// unique index on `external_id` refused it (also when another instance took the id a moment
/// before); otherwise as [`db_err`].
async fn user_write_err(
    client: &Object,
    op: &str,
    row: &UserRow<'_>,
    e: tokio_postgres::Error,
) -> StoreError {
    let on_external_id = is_unique_violation(&e)
        && e.as_db_error().and_then(|d| d.constraint()) == Some("users_external_id");
    match (&row.external_id, on_external_id) {
        (Some(external_id), true) => {
            let holder = client
                .query_opt(
                    "SELECT username FROM users WHERE external_id = $1",
                    &[external_id],
                )
                .await
                .ok()
                .flatten()
                .and_then(|r| r.try_get::<_, String>(0).ok())
                .unwrap_or_else(|| "another user".into());
            StoreError::ExternalIdTaken {
                external_id: external_id.clone(),
                holder,
            }
        }
        _ => db_err(op, e),
    }
}

/// `.ctx("what was being done")` on tokio-postgres results.
trait Context<T> {
    fn ctx(self, op: &str) -> StoreResult<T>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, op: &str) -> StoreResult<T> {
        self.map_err(|e| db_err(op, e))
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Text(t) => t.to_sql(ty, out),
            Value::OptText(t) => t.to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::OptInt(i) => i.to_sql(ty, out),
            Value::Flag(f) => f.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty) || <i64 as ToSql>::accepts(ty) || <bool as ToSql>::accepts(ty)
    }

    /// Checked per variant, so a value bound to a column of another type is an error, never bytes
    /// of one type read as another.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Text(t) => t.to_sql_checked(ty, out),
            Value::OptText(t) => t.to_sql_checked(ty, out),
            Value::Int(i) => i.to_sql_checked(ty, out),
            Value::OptInt(i) => i.to_sql_checked(ty, out),
            Value::Flag(f) => f.to_sql_checked(ty, out),
        }
    }
}

impl Columns for Row {
    type Error = tokio_postgres::Error;
    fn text(&self, index: usize) -> Result<String, Self::Error> {
        self.try_get(index)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, Self::Error> {
        self.try_get(index)
    }
    fn int(&self, index: usize) -> Result<i64, Self::Error> {
        self.try_get(index)
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error> {
        self.try_get(index)
    }
    fn flag(&self, index: usize) -> Result<bool, Self::Error> {
        self.try_get(index)
    }
}

/// Values as the parameter slice tokio-postgres takes.
fn as_params<'a>(values: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// The PostgreSQL store. Cheap to share behind an `Arc<dyn Store>`; the pool is its only state.
pub struct PostgresStore {
    pool: Pool,
    key: Arc<SecretKey>,
    target: String,
    migrations_applied: usize,
    /// Unix seconds of the last purge of expired rows started by this instance.
    last_purge: Arc<AtomicI64>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("migrations_applied", &self.migrations_applied)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The schema version this build writes and understands.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Connects, creates the schema if one is named and missing, and brings it up to date. A
    /// database whose schema is newer than this build is refused. Fails when the database cannot
    /// be reached now (a service manager restarts pfgate); once running, outages are survived.
    pub async fn connect(settings: &PostgresSettings, key: SecretKey) -> StoreResult<Self> {
        let refused =
            |e: SettingsError| StoreError::unavailable_while("store settings", Cause::Settings(e));
        let mut config = settings.client_config().map_err(refused)?;
        let tls = settings.tls(&config).map_err(refused)?;
        if let Some(password) = settings
            .read_password()
            .map_err(|e| StoreError::unavailable_while("database password", Cause::Password(e)))?
        {
            config.password(&password[..]);
        }
        let target = settings.target(&config);
        if config.get_ssl_mode() == SslMode::Disable && !only_loopback(&config) {
            tracing::warn!(target: "pfgate::store", database = %target,
                "the database connection is not encrypted (sslmode=disable to another host)");
        }
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // A connection whose socket closed is dropped when it comes back to the pool;
                // TCP keepalives and the user timeout close the ones a dead peer leaves open.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(OP_TIMEOUT))
            .build()
            .map_err(|e| {
                StoreError::unavailable_while("building the connection pool", Cause::PoolBuild(e))
            })?;
        let store = Self {
            pool,
            key: Arc::new(key),
            target: target.clone(),
            migrations_applied: 0,
            last_purge: Arc::new(AtomicI64::new(0)),
        };
        let what = format!("opening PostgreSQL database {target}");
        let applied = store
            .migrate(settings.schema.as_deref())
            .await
            .map_err(|e| row::prefix(&what, e))?;
        store.check_key().await?;
        tracing::info!(target: "pfgate::store", database = %target, migrations_applied = applied,
            "PostgreSQL store ready");
        Ok(Self {
            migrations_applied: applied,
            ..store
        })
    }

    /// How many migrations connecting applied (0 when the schema was current).
    pub fn migrations_applied(&self) -> usize {
        self.migrations_applied
    }

    /// Where the store is (host, database, schema, TLS); never the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Applies the migrations the schema lacks, each in its own transaction, under an advisory
    /// lock per schema (instances starting together wait for each other); returns how many.
    async fn migrate(&self, schema: Option<&str>) -> StoreResult<usize> {
        let mut client = self.client("connecting").await?;
        let lock = format!("pfgate schema migrations: {}", schema.unwrap_or(""));
        let mut applied = 0;
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            let what = format!("applying schema migration {version}");
            let tx = client.transaction().await.ctx(&what)?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])
                .await
                .ctx("waiting for the migration lock")?;
            if let Some(schema) = schema {
                // A validated identifier (PostgresSettings::client_config), quoted all the same.
                tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .await
                    .ctx("creating the schema")?;
            }
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    BIGINT PRIMARY KEY,
                     applied_at BIGINT NOT NULL
                 )",
            )
            .await
            .ctx("creating schema_migrations")?;
            let current: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                    &[],
                )
                .await
                .ctx("reading the schema version")?
                .get(0);
            if current > Self::SCHEMA_VERSION {
                return Err(StoreError::unavailable(Cause::SchemaTooNew {
                    found: current,
                    known: Self::SCHEMA_VERSION,
                }));
            }
            if current >= version {
                continue;
            }
            tx.batch_execute(sql).await.ctx(&what)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &unix_now()],
            )
            .await
            .ctx(&what)?;
            tx.commit().await.ctx(&what)?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Compares the database's key check value with this instance's key, writing it first if the
    /// database has none (and the key opens the secrets already sealed there, if any): a
    /// different key is [`StoreError::KeyMismatch`]. Instances connecting at once race on one
    /// `INSERT … ON CONFLICT DO NOTHING`; each then compares with the value that won.
    async fn check_key(&self) -> StoreResult<()> {
        self.run("check_key", async {
            let what = "checking the secrets key";
            let client = self.client(what).await?;
            let read = row::KEY_CHECK_SQL;
            if let Some(row) = client.query_opt(read, &[]).await.ctx(what)? {
                return compare_stored_key_check(&self.key, Some(row));
            }
            let sealed = sealed_rows(&client.query(row::KEY_PROOF_SQL, &[]).await.ctx(what)?)?;
            if !row::key_opens_any(&self.key, &sealed) {
                return Err(StoreError::KeyMismatch(
                    "the database has no key check value yet, and this key opens none of its \
                     secrets",
                ));
            }
            client
                .execute(
                    "INSERT INTO key_check (id, digest, created_at) VALUES (1, $1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&secrets::key_check(&self.key), &unix_now()],
                )
                .await
                .ctx(what)?;
            let row = client.query_one(read, &[]).await.ctx(what)?;
            compare_stored_key_check(&self.key, Some(row))
        })
        .await
    }

    /// A pooled connection (a new one if none is idle and the pool is not full).
    async fn client(&self, op: &str) -> StoreResult<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::unavailable_while(op.to_string(), Cause::Pool(e)))
    }

    /// Runs one operation within [`OP_TIMEOUT`].
    async fn run<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        tokio::time::timeout(OP_TIMEOUT, f)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::unavailable_while(
                    op,
                    Cause::Timeout(OP_TIMEOUT),
                ))
            })
    }

    /// Deletes expired rows, at most once per [`PURGE_EVERY_SECS`] per instance, in the
    /// background: the request that triggers it does not wait.
    fn maybe_purge(&self) {
        let now = unix_now();
        let last = self.last_purge.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY_SECS
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let purge = async {
                let client = pool.get().await.map_err(|e| chain(&e))?;
                // `now` is an integer: formatting it into the statement cannot inject anything.
                client
                    .batch_execute(&format!(
                        "DELETE FROM bypasses WHERE expires_at < {now};
                         DELETE FROM transactions WHERE expires_at < {now};
                         DELETE FROM used_codes WHERE expires_at < {now};
                         DELETE FROM inflight_calls WHERE outcome IS NOT NULL AND expires_at < {now};"
                    ))
                    .await
                    .map_err(|e| chain(&e))
            };
            if let Ok(Err(e)) = tokio::time::timeout(OP_TIMEOUT, purge).await {
                tracing::warn!(target: "pfgate::store", error = %e, "purging expired rows failed");
            }
        });
    }
}

/// The verdict on the key check value in `row` (of [`row::KEY_CHECK_SQL`]) for `key`; none
/// stored passes.
fn compare_stored_key_check(key: &SecretKey, row: Option<Row>) -> StoreResult<()> {
    match row {
        Some(r) => row::compare_key_check(
            key,
            &r.try_get::<_, String>(0)
                .ctx("reading the secrets key check")?,
        ),
        None => Ok(()),
    }
}

/// The users' sealed values in `rows` (of [`row::SEALED_ROWS_SQL`] or [`row::KEY_PROOF_SQL`]).
fn sealed_rows(rows: &[Row]) -> StoreResult<Vec<row::SealedRow>> {
    rows.iter()
        .map(|r| {
            Ok(row::SealedRow {
                username: r.try_get(0)?,
                username_key: r.try_get(1)?,
                oath_secret: r.try_get(2)?,
                static_token: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .ctx("reading sealed secrets")
}

/// True when a user with this key exists.
async fn user_exists(client: &Object, key: &str) -> StoreResult<bool> {
    client
        .query_opt("SELECT 1 FROM users WHERE username_key = $1", &[&key])
        .await
        .map(|row| row.is_some())
        .ctx("looking up a user")
}

/// A transaction from a `RETURNING` row with the columns `id, kind, code_hash, expires_at, target,
/// username` (the stored username; the key when the user is gone).
fn transaction_of(row: &Row, key: &str) -> StoreResult<Transaction> {
    let what = "reading a transaction";
    let kind: String = row.try_get("kind").ctx(what)?;
    let username: Option<String> = row.try_get("username").ctx(what)?;
    Ok(Transaction {
        id: row.try_get("id").ctx(what)?,
        username: username.unwrap_or_else(|| key.to_string()),
        kind: parse_kind(&kind).ok_or_else(|| {
            StoreError::Corrupt(format!("a transaction of user '{key}' has an unknown kind"))
        })?,
        code_hash: row.try_get("code_hash").ctx(what)?,
        expires_at: row.try_get("expires_at").ctx(what)?,
        target: row.try_get("target").ctx(what)?,
        started_by: row
            .try_get::<_, Option<String>>("started_by")
            .ctx(what)?
            .unwrap_or_default(),
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn health(&self) -> StoreResult<()> {
        self.run("health", async {
            let client = self.client("health check").await?;
            // The key check too: an instance still running after the key was rotated is not
            // ready (it would seal with the old key), and says why.
            let stored = client
                .query_opt(row::KEY_CHECK_SQL, &[])
                .await
                .ctx("health check")?;
            compare_stored_key_check(&self.key, stored)
        })
        .await
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let key = username_key(username);
        self.run("get_user", async {
            let what = "reading a user";
            let client = self.client(what).await?;
            let stmt = client.prepare_cached(&SELECT_USER).await.ctx(what)?;
            let row = client.query_opt(&stmt, &[&key]).await.ctx(what)?;
            match row {
                Some(r) => Ok(Some(RawUser::read(&r).ctx(what)?.into_record(&self.key)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn user_standing(&self, username: &str, now: i64) -> StoreResult<Option<UserStanding>> {
        let key = username_key(username);
        // The purge consume_bypass used to start on every authentication.
        self.maybe_purge();
        self.run("user_standing", async {
            let what = "reading a user's standing";
            let client = self.client(what).await?;
            let stmt = client.prepare_cached(&SELECT_STANDING).await.ctx(what)?;
            let Some(r) = client.query_opt(&stmt, &[&key]).await.ctx(what)? else {
                return Ok(None);
            };
            let raw = RawUser::read(&r).ctx(what)?;
            let ends = row::StandingEnds {
                blocked: r.try_get(row::STANDING_BLOCKED).ctx(what)?,
                lock_ends: r.try_get(row::STANDING_LOCK_ENDS).ctx(what)?,
                bypass_ends: r.try_get(row::STANDING_BYPASS_ENDS).ctx(what)?,
            };
            Ok(Some(ends.at(raw.into_record(&self.key)?, now)))
        })
        .await
    }

    async fn add_user(&self, user: &UserRecord) -> StoreResult<()> {
        self.run("add_user", async {
            let what = "adding a user";
            let row = UserRow::new(user, &self.key)?;
            let values = row.insert_values();
            let client = self.client(what).await?;
            let stmt = client.prepare_cached(&INSERT_USER).await.ctx(what)?;
            let added = match client.execute(&stmt, &as_params(&values)).await {
                Ok(n) => n,
                Err(e) => return Err(user_write_err(&client, what, &row, e).await),
            };
            if added == 0 {
                return Err(StoreError::Duplicate(user.username.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn update_user(&self, user: &UserRecord) -> StoreResult<()> {
        self.run("update_user", async {
            let what = "updating a user";
            let row = UserRow::new(user, &self.key)?;
            let values = row.update_values();
            let client = self.client(what).await?;
            let stmt = client.prepare_cached(&UPDATE_USER).await.ctx(what)?;
            let updated = match client.execute(&stmt, &as_params(&values)).await {
                Ok(n) => n,
                Err(e) => return Err(user_write_err(&client, what, &row, e).await),
            };
            if updated == 0 {
                return Err(StoreError::NotFound(user.username.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn rename_user(&self, old: &str, new: &str) -> StoreResult<()> {
        self.run("rename_user", async {
            let what = "renaming a user";
            let (old_key, new_key) = (username_key(old), username_key(new));
            let mut client = self.client(what).await?;
            let tx = client.transaction().await.ctx(what)?;
            let sealed = tx
                .query_opt(
                    "SELECT username, oath_secret, static_token FROM users \
                     WHERE username_key = $1 FOR UPDATE",
                    &[&old_key],
                )
                .await
                .ctx(what)?;
            let Some(sealed) = sealed else {
                return Err(StoreError::NotFound(old.to_string()));
            };
            let stored: String = sealed.try_get(0).ctx(what)?;
            let oath_secret: Option<String> = sealed.try_get(1).ctx(what)?;
            let static_token: Option<String> = sealed.try_get(2).ctx(what)?;
            if old_key == new_key {
                // Only the letter case changes: same key, same associated data.
                tx.execute(
                    "UPDATE users SET username = $2 WHERE username_key = $1",
                    &[&old_key, &new],
                )
                .await
                .ctx(what)?;
                return tx.commit().await.ctx(what);
            }
            let taken = tx
                .query_opt("SELECT 1 FROM users WHERE username_key = $1", &[&new_key])
                .await
                .ctx(what)?;
            if taken.is_some() {
                return Err(StoreError::Duplicate(new.to_string()));
            }
            // Re-seal under the new name: the associated data binds each value to its user.
            let reseal = |field: &str, value: Option<String>| -> StoreResult<Option<String>> {
                let plain = open_field(&self.key, &stored, &old_key, field, value.as_deref())?;
                seal_field(&self.key, &new_key, field, plain.as_deref())
            };
            let oath_secret = reseal(FIELD_OATH_SECRET, oath_secret)?;
            let static_token = reseal(FIELD_STATIC_TOKEN, static_token)?;
            // ON UPDATE CASCADE carries blocks, bypasses, transactions and used codes along.
            let renamed = tx
                .execute(
                    "UPDATE users SET username_key = $2, username = $3, oath_secret = $4, \
                     static_token = $5 WHERE username_key = $1",
                    &[&old_key, &new_key, &new, &oath_secret, &static_token],
                )
                .await;
            match renamed {
                // Another instance took the name between the check and the update.
                Err(e) if is_unique_violation(&e) => Err(StoreError::Duplicate(new.to_string())),
                Err(e) => Err(db_err(what, e)),
                Ok(_) => tx.commit().await.ctx(what),
            }
        })
        .await
    }

    async fn delete_user(&self, username: &str) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("delete_user", async {
            let what = "deleting a user";
            let client = self.client(what).await?;
            // ON DELETE CASCADE removes blocks, bypasses, transactions and used codes.
            let deleted = client
                .execute("DELETE FROM users WHERE username_key = $1", &[&key])
                .await
                .ctx(what)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn find_users(
        &self,
        filter: &UserFilter,
        limit: u32,
    ) -> StoreResult<(Vec<UserRecord>, bool)> {
        self.run("find_users", async {
            let what = "finding users";
            // COLLATE "C": the byte order SQLite uses, whatever the database's locale.
            let sql = format!(
                "{} WHERE ($1::TEXT IS NULL OR mode = $1) AND ($2::TEXT IS NULL OR pin_mode = $2) \
                 AND ($3::BOOLEAN IS NULL OR enabled = $3) ORDER BY username_key COLLATE \"C\"",
                row::select_users_sql()
            );
            let client = self.client(what).await?;
            let rows = client
                .query(
                    &sql,
                    &[
                        &filter.mode.map(WireEnum::as_str),
                        &filter.pin_mode.map(WireEnum::as_str),
                        &filter.enabled,
                    ],
                )
                .await
                .ctx(what)?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let mut found = Vec::new();
            for r in &rows {
                let raw = RawUser::read(r).ctx(what)?;
                if !raw.matches(filter) {
                    continue;
                }
                if limit != 0 && found.len() == limit {
                    return Ok((found, false));
                }
                found.push(raw.into_record(&self.key)?);
            }
            Ok((found, true))
        })
        .await
    }

    async fn block_user(&self, username: &str, reason: &str, actor: &str) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("block_user", async {
            let what = "blocking a user";
            let client = self.client(what).await?;
            let added = client
                .execute(
                    "INSERT INTO blocks (username_key, reason, actor, created_at) \
                     SELECT username_key, $2, $3, $4 FROM users WHERE username_key = $1 \
                     ON CONFLICT (username_key) DO NOTHING",
                    &[&key, &reason, &actor, &unix_now()],
                )
                .await
                .ctx(what)?;
            if added == 0 && !user_exists(&client, &key).await? {
                return Err(StoreError::NotFound(username.to_string()));
            }
            Ok(added > 0)
        })
        .await
    }

    async fn unblock_user(&self, username: &str) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("unblock_user", async {
            let what = "unblocking a user";
            let client = self.client(what).await?;
            let removed = client
                .execute("DELETE FROM blocks WHERE username_key = $1", &[&key])
                .await
                .ctx(what)?;
            Ok(removed > 0)
        })
        .await
    }

    async fn block_reason(&self, username: &str) -> StoreResult<Option<String>> {
        let key = username_key(username);
        self.run("block_reason", async {
            let what = "reading a block";
            let client = self.client(what).await?;
            let stmt = client
                .prepare_cached("SELECT reason FROM blocks WHERE username_key = $1")
                .await
                .ctx(what)?;
            let row = client.query_opt(&stmt, &[&key]).await.ctx(what)?;
            row.map(|r| r.try_get(0)).transpose().ctx(what)
        })
        .await
    }

    async fn add_bypass(&self, bypass: &Bypass) -> StoreResult<()> {
        let key = username_key(&bypass.username);
        self.run("add_bypass", async {
            let what = "granting a bypass";
            let client = self.client(what).await?;
            let added = client
                .execute(
                    "INSERT INTO bypasses (username_key, reason, expires_at, created_by) \
                     SELECT username_key, $2, $3, $4 FROM users WHERE username_key = $1 \
                     ON CONFLICT (username_key) DO UPDATE SET reason = EXCLUDED.reason, \
                     expires_at = EXCLUDED.expires_at, created_by = EXCLUDED.created_by",
                    &[&key, &bypass.reason, &bypass.expires_at, &bypass.created_by],
                )
                .await
                .ctx(what)?;
            if added == 0 {
                return Err(StoreError::NotFound(bypass.username.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn consume_bypass(&self, username: &str, now: i64) -> StoreResult<bool> {
        let key = username_key(username);
        self.maybe_purge();
        self.run("consume_bypass", async {
            let what = "consuming a bypass";
            let client = self.client(what).await?;
            // The single DELETE is the decision: of concurrent callers, on any instance, only one
            // removes the row (the others wait for its lock and then find it gone).
            let stmt = client
                .prepare_cached("DELETE FROM bypasses WHERE username_key = $1 AND expires_at >= $2")
                .await
                .ctx(what)?;
            let consumed = client.execute(&stmt, &[&key, &now]).await.ctx(what)?;
            Ok(consumed > 0)
        })
        .await
    }

    async fn put_transaction(&self, tx: &Transaction) -> StoreResult<()> {
        let key = username_key(&tx.username);
        self.run("put_transaction", async {
            let what = "recording a transaction";
            let client = self.client(what).await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO transactions \
                     (id, username_key, kind, code_hash, expires_at, target, started_by) \
                     SELECT $1, username_key, $3, $4, $5, $6, $7 FROM users \
                     WHERE username_key = $2",
                )
                .await
                .ctx(what)?;
            let inserted = client
                .execute(
                    &stmt,
                    &[
                        &tx.id,
                        &key,
                        &kind_literal(tx.kind),
                        &tx.code_hash,
                        &tx.expires_at,
                        &tx.target,
                        &tx.started_by,
                    ],
                )
                .await;
            match inserted {
                Ok(0) => Err(StoreError::NotFound(tx.username.clone())),
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::unavailable_while(
                    what,
                    Cause::DuplicateTransaction,
                )),
                Err(e) => Err(db_err(what, e)),
            }
        })
        .await
    }

    async fn take_transaction(
        &self,
        id: &str,
        username: &str,
        started_by: &str,
        now: i64,
    ) -> StoreResult<Option<Transaction>> {
        let owner = username_key(username);
        self.maybe_purge();
        self.run("take_transaction", async {
            let what = "taking a transaction";
            let client = self.client(what).await?;
            // The single DELETE ... RETURNING is the decision: at most one caller gets the row. An
            // expired one is deleted too, so it is never returned, whatever clock asks later. The
            // owner is in the WHERE: another user's or principal's attempt leaves it alone.
            let stmt = client
                .prepare_cached(
                    "WITH t AS (DELETE FROM transactions WHERE id = $1 \
                     AND username_key = $2 AND started_by = $3 \
                     RETURNING id, username_key, kind, code_hash, expires_at, target, started_by) \
                     SELECT t.*, u.username FROM t \
                     LEFT JOIN users u ON u.username_key = t.username_key",
                )
                .await
                .ctx(what)?;
            let found = client
                .query_opt(&stmt, &[&id, &owner, &started_by])
                .await
                .ctx(what)?;
            let Some(row) = found else {
                return Ok(None);
            };
            let key: String = row.try_get("username_key").ctx(what)?;
            let tx = transaction_of(&row, &key)?;
            Ok((tx.expires_at >= now).then_some(tx))
        })
        .await
    }

    async fn take_user_transaction(
        &self,
        username: &str,
        kind: TransactionKind,
        started_by: &str,
        now: i64,
    ) -> StoreResult<Option<Transaction>> {
        let key = username_key(username);
        self.run("take_user_transaction", async {
            let what = "taking a user's transaction";
            let client = self.client(what).await?;
            // One DELETE ... RETURNING of the newest matching row decides who gets it.
            let stmt = client
                .prepare_cached(
                    "WITH t AS (DELETE FROM transactions WHERE id = (SELECT id FROM transactions \
                     WHERE username_key = $1 AND kind = $2 AND expires_at >= $3 \
                     AND started_by = $4 ORDER BY expires_at DESC LIMIT 1) \
                     RETURNING id, username_key, kind, code_hash, expires_at, target, started_by) \
                     SELECT t.*, u.username FROM t \
                     LEFT JOIN users u ON u.username_key = t.username_key",
                )
                .await
                .ctx(what)?;
            let row = client
                .query_opt(&stmt, &[&key, &kind_literal(kind), &now, &started_by])
                .await
                .ctx(what)?;
            row.map(|r| transaction_of(&r, &key)).transpose()
        })
        .await
    }

    async fn record_failure(
        &self,
        username: &str,
        now: i64,
        rule: FailureRule,
    ) -> StoreResult<FailureCount> {
        let key = username_key(username);
        self.run("record_failure", async {
            let what = "counting a failed attempt";
            let client = self.client(what).await?;
            let stmt = client.prepare_cached(&RECORD_FAILURE).await.ctx(what)?;
            let threshold = i64::from(rule.threshold);
            let row = client
                .query_opt(
                    &stmt,
                    &[&key, &now, &threshold, &rule.window_secs, &rule.lock_secs],
                )
                .await
                .ctx(what)?
                .ok_or_else(|| StoreError::NotFound(username.to_string()))?;
            let failures: i64 = row.try_get(0).ctx(what)?;
            Ok(FailureCount {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                locked_until: row.try_get(1).ctx(what)?,
            })
        })
        .await
    }

    async fn locked_until(&self, username: &str, now: i64) -> StoreResult<Option<i64>> {
        let key = username_key(username);
        self.run("locked_until", async {
            let what = "reading a lockout";
            let client = self.client(what).await?;
            let stmt = client
                .prepare_cached(
                    "SELECT locked_until FROM auth_failures \
                     WHERE username_key = $1 AND locked_until > $2",
                )
                .await
                .ctx(what)?;
            let row = client.query_opt(&stmt, &[&key, &now]).await.ctx(what)?;
            row.map(|r| r.try_get(0)).transpose().ctx(what)
        })
        .await
    }

    async fn clear_failures(&self, username: &str, now: i64) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("clear_failures", async {
            let what = "clearing failed attempts";
            let client = self.client(what).await?;
            let row = client
                .query_opt(
                    "DELETE FROM auth_failures WHERE username_key = $1 RETURNING locked_until",
                    &[&key],
                )
                .await
                .ctx(what)?;
            let until: Option<i64> = match row {
                Some(r) => r.try_get(0).ctx(what)?,
                None => None,
            };
            Ok(until.is_some_and(|u| u > now))
        })
        .await
    }

    async fn mark_code_used(
        &self,
        username: &str,
        code: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let key = username_key(username);
        self.maybe_purge();
        self.run("mark_code_used", async {
            let what = "recording a used code";
            let digest = secrets::code_digest(&self.key, code);
            let client = self.client(what).await?;
            // The single upsert is the decision: a row comes back only to the caller that
            // inserted the digest, or revived one that had expired by the store's clock.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO used_codes (username_key, digest, expires_at) \
                     SELECT username_key, $2, $3 FROM users WHERE username_key = $1 \
                     ON CONFLICT (username_key, digest) DO UPDATE \
                     SET expires_at = EXCLUDED.expires_at WHERE used_codes.expires_at < $4 \
                     RETURNING 1",
                )
                .await
                .ctx(what)?;
            let accepted = client
                .query_opt(&stmt, &[&key, &digest, &expires_at, &unix_now()])
                .await
                .ctx(what)?
                .is_some();
            if !accepted && !user_exists(&client, &key).await? {
                return Err(StoreError::NotFound(username.to_string()));
            }
            Ok(accepted)
        })
        .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn claim_call(
        &self,
        key: &CallKey,
        request_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<CallClaim> {
        self.maybe_purge();
        self.run("claim_call", async {
            let what = "claiming a provider call";
            let call = row::call_key(&self.key, key);
            let client = self.client(what).await?;
            let insert = client
                .prepare_cached(
                    "INSERT INTO inflight_calls (request_id, call_key, outcome, expires_at) \
                     VALUES ($1, $2, NULL, $3) ON CONFLICT DO NOTHING RETURNING 1",
                )
                .await
                .ctx(what)?;
            let pending = client
                .prepare_cached(
                    "SELECT request_id, expires_at FROM inflight_calls \
                     WHERE call_key = $1 AND outcome IS NULL",
                )
                .await
                .ctx(what)?;
            // A few rounds cover the races: the pending call may end, or expire, between the
            // insert that lost and the read of who won.
            for _ in 0..4 {
                if client
                    .query_opt(&insert, &[&request_id, &call, &expires_at])
                    .await
                    .ctx(what)?
                    .is_some()
                {
                    return Ok(CallClaim::Placed);
                }
                let Some(row) = client.query_opt(&pending, &[&call]).await.ctx(what)? else {
                    continue;
                };
                let other: String = row.try_get(0).ctx(what)?;
                let other_expires: i64 = row.try_get(1).ctx(what)?;
                if other == request_id {
                    return Err(StoreError::unavailable_while(
                        what,
                        Cause::RequestIdReused {
                            request_id: request_id.to_string(),
                        },
                    ));
                }
                if other_expires >= now {
                    return Ok(CallClaim::Joined(other));
                }
                // Its lease lapsed (the owner died or lost the database): give it up; its
                // waiters read that and claim the call again.
                client
                    .execute(
                        "UPDATE inflight_calls SET outcome = $2, expires_at = $3 \
                         WHERE request_id = $1 AND outcome IS NULL",
                        &[&other, &CLAIM_LAPSED, &(now + row::EXPIRED_CALL_KEEP_SECS)],
                    )
                    .await
                    .ctx(what)?;
            }
            Err(StoreError::unavailable_while(what, Cause::ClaimContended))
        })
        .await
    }

    async fn finish_call(
        &self,
        request_id: &str,
        outcome: &str,
        keep_until: i64,
    ) -> StoreResult<()> {
        self.run("finish_call", async {
            let what = "recording a call's ending";
            let client = self.client(what).await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE inflight_calls SET outcome = $2, expires_at = $3 \
                     WHERE request_id = $1",
                )
                .await
                .ctx(what)?;
            client
                .execute(&stmt, &[&request_id, &outcome, &keep_until])
                .await
                .ctx(what)?;
            Ok(())
        })
        .await
    }

    async fn rotate_key(&self, new_key: SecretKey) -> StoreResult<usize> {
        // Not bounded by OP_TIMEOUT: an administrator's command over every user, not a request.
        let what = "rotating the secrets key";
        let mut client = self.client(what).await?;
        let tx = client.transaction().await.ctx(what)?;
        // The lock keeps a second rotation (or a first start writing the check) out meanwhile.
        tx.execute("LOCK TABLE users, key_check IN EXCLUSIVE MODE", &[])
            .await
            .ctx(what)?;
        // Checked again under the lock: another rotation may have run since this store opened.
        compare_stored_key_check(
            &self.key,
            tx.query_opt(row::KEY_CHECK_SQL, &[]).await.ctx(what)?,
        )?;
        let sealed = sealed_rows(&tx.query(row::SEALED_ROWS_SQL, &[]).await.ctx(what)?)?;
        let update = tx
            .prepare("UPDATE users SET oath_secret = $2, static_token = $3 WHERE username_key = $1")
            .await
            .ctx(what)?;
        for r in &sealed {
            let (oath_secret, static_token) = row::reseal_row(&self.key, &new_key, r)?;
            tx.execute(&update, &[&r.username_key, &oath_secret, &static_token])
                .await
                .ctx(what)?;
        }
        tx.batch_execute("DELETE FROM used_codes; DELETE FROM inflight_calls;")
            .await
            .ctx(what)?;
        tx.execute(
            &row::upsert_key_check_sql(|n| format!("${n}")),
            &[&secrets::key_check(&new_key), &unix_now()],
        )
        .await
        .ctx(what)?;
        tx.commit().await.ctx(what)?;
        Ok(sealed.len())
    }

    async fn renew_call(&self, request_id: &str, lease_until: i64) -> StoreResult<bool> {
        self.run("renew_call", async {
            let what = "renewing a call's lease";
            let client = self.client(what).await?;
            let stmt = client
                .prepare_cached(
                    "UPDATE inflight_calls SET expires_at = $2 \
                     WHERE request_id = $1 AND outcome IS NULL",
                )
                .await
                .ctx(what)?;
            let renewed = client
                .execute(&stmt, &[&request_id, &lease_until])
                .await
                .ctx(what)?;
            Ok(renewed > 0)
        })
        .await
    }

    async fn call_state(&self, request_id: &str) -> StoreResult<Option<CallState>> {
        self.run("call_state", async {
            let what = "reading a call's state";
            let client = self.client(what).await?;
            let stmt = client
                .prepare_cached(
                    "SELECT outcome, expires_at FROM inflight_calls WHERE request_id = $1",
                )
                .await
                .ctx(what)?;
            let row = client.query_opt(&stmt, &[&request_id]).await.ctx(what)?;
            let Some(row) = row else { return Ok(None) };
            let outcome: Option<String> = row.try_get(0).ctx(what)?;
            let expires_at: i64 = row.try_get(1).ctx(what)?;
            Ok(Some(row::call_state(outcome, expires_at)))
        })
        .await
    }
}

/// For pfgate's own tests (unit and integration): a database from `PFGATE_TEST_DATABASE_URL` and a
/// schema of the test's own, dropped when the test ends, so runs in parallel cannot collide.
#[doc(hidden)]
pub mod testing {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::{chain, unix_now, Cause, PostgresSettings, StoreError};

    /// The environment variable naming the test database (`.ci/run` sets it).
    pub const DATABASE_URL_VAR: &str = "PFGATE_TEST_DATABASE_URL";

    /// Schemas of runs that ended without cleaning up are dropped after this long (seconds).
    const STALE_AFTER_SECS: i64 = 6 * 3600;

    /// The test database's URL, or `None` after printing why `test` is skipped.
    pub fn database_url(test: &str) -> Option<String> {
        match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
            _ => {
                crate::core::test_skips::skip(
                    crate::core::test_skips::Needs::PostgreSql,
                    test,
                    "PFGATE_TEST_DATABASE_URL is not set",
                );
                None
            }
        }
    }

    /// A schema created for one test; dropped (with everything in it) on drop.
    #[derive(Debug)]
    pub struct TestSchema {
        url: String,
        name: String,
    }

    impl TestSchema {
        /// Creates `pfgate_test_<time>_<pid>_<n>` in the database at `url`, after dropping the
        /// schemas that crashed runs left behind.
        pub async fn create(url: &str) -> Result<Self, StoreError> {
            static N: AtomicU32 = AtomicU32::new(0);
            let now = unix_now();
            let name = format!(
                "pfgate_test_{now}_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let client = connect(url).await?;
            let stale = client
                .query(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pfgate\\_test\\_%'",
                    &[],
                )
                .await
                .map_err(|e| StoreError::unavailable(Cause::Postgres(e)))?;
            for row in stale {
                let old: String = row.get(0);
                let born = old
                    .split('_')
                    .nth(2)
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(now);
                if now - born > STALE_AFTER_SECS {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{old}\" CASCADE"))
                        .await;
                }
            }
            client
                .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
                .await
                .map_err(|e| StoreError::unavailable(Cause::Postgres(e)))?;
            Ok(Self {
                url: url.to_string(),
                name,
            })
        }

        /// The schema's name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Store settings for this schema (a small pool: tests run side by side).
        pub fn settings(&self) -> PostgresSettings {
            PostgresSettings {
                schema: Some(self.name.clone()),
                pool_size: 8,
                ..PostgresSettings::new(self.url.clone())
            }
        }
    }

    impl Drop for TestSchema {
        fn drop(&mut self) {
            // Drop runs inside or outside a runtime: a thread of its own can always block.
            let (url, name) = (self.url.clone(), self.name.clone());
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async {
                    let client = connect(&url).await.map_err(|e| e.to_string())?;
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .await
                        .map_err(|e| chain(&e))
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}: {dropped:?}", self.name);
            }
        }
    }

    /// One connection with pfgate's own connection settings (TLS included), outside the pool.
    pub async fn connect(url: &str) -> Result<tokio_postgres::Client, StoreError> {
        let settings = PostgresSettings::new(url);
        let config = settings
            .client_config()
            .map_err(|e| StoreError::unavailable(Cause::Settings(e)))?;
        let tls = settings
            .tls(&config)
            .map_err(|e| StoreError::unavailable(Cause::Settings(e)))?;
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| StoreError::unavailable(Cause::Postgres(e)))?;
        tokio::spawn(connection);
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{self, database_url, TestSchema};
    use super::*;
    use crate::store::suite;

    fn settings(url: &str) -> PostgresSettings {
        PostgresSettings::new(url)
    }

    fn problems(s: &PostgresSettings) -> Vec<(&'static str, String)> {
        s.validate()
    }

    #[test]
    fn tls_mode_follows_the_host_unless_the_url_says() {
        let mode = |url: &str| settings(url).client_config().unwrap().get_ssl_mode();
        assert_eq!(mode("postgres://pfgate@127.0.0.1/pfgate"), SslMode::Disable);
        assert_eq!(
            mode("postgres://pfgate@localhost:5433/pfgate"),
            SslMode::Disable
        );
        assert_eq!(mode("postgresql://pfgate@[::1]/pfgate"), SslMode::Disable);
        assert_eq!(
            mode("postgres://pfgate@db1.contoso.com/pfgate"),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://pfgate@127.0.0.1,db2.contoso.com/pfgate"),
            SslMode::Require,
            "one remote host is enough to need TLS"
        );
        assert_eq!(
            mode("postgres://pfgate@db1.contoso.com/pfgate?sslmode=disable"),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://pfgate@127.0.0.1/pfgate?sslmode=require"),
            SslMode::Require
        );
    }

    #[test]
    fn settings_problems_name_their_key() {
        let keys = |s: &PostgresSettings| -> Vec<&'static str> {
            problems(s).into_iter().map(|(k, _)| k).collect()
        };
        assert!(problems(&settings("postgres://pfgate@127.0.0.1/pfgate")).is_empty());
        assert_eq!(keys(&settings("mysql://x@127.0.0.1/db")), ["url"]);
        assert_eq!(
            keys(&settings("postgres://x@127.0.0.1:notaport/db")),
            ["url"]
        );
        let prefer = problems(&settings("postgres://x@db.contoso.com/db?sslmode=prefer"));
        assert!(prefer[0].1.contains("sslmode=require"), "{prefer:?}");
        let with_password = problems(&settings("postgres://x:hunter2@127.0.0.1/db"));
        assert_eq!(with_password.len(), 1);
        assert!(
            with_password[0].1.contains("password_file"),
            "{with_password:?}"
        );
        assert!(!with_password[0].1.contains("hunter2"), "{with_password:?}");
        let bad_schema = PostgresSettings {
            schema: Some("Pfgate; DROP TABLE users".into()),
            ..settings("postgres://x@127.0.0.1/db")
        };
        assert_eq!(keys(&bad_schema), ["schema"]);
        let no_pool = PostgresSettings {
            pool_size: 0,
            ..settings("postgres://x@127.0.0.1/db")
        };
        assert_eq!(keys(&no_pool), ["pool_size"]);
        let ca_without_tls = PostgresSettings {
            tls_ca_file: Some("/etc/ssl/certs/ssl-cert-snakeoil.pem".into()),
            ..settings("postgres://x@db.contoso.com/db?sslmode=disable")
        };
        assert_eq!(keys(&ca_without_tls), ["tls_ca_file"]);
        let missing_ca = PostgresSettings {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..settings("postgres://x@db.contoso.com/db")
        };
        assert_eq!(keys(&missing_ca), ["tls_ca_file"]);
        let missing_env = PostgresSettings {
            password: Some(PasswordSource::Env("PFGATE_TEST_SURELY_UNSET_VAR".into())),
            ..settings("postgres://x@127.0.0.1/db")
        };
        assert_eq!(keys(&missing_env), ["password_env"]);
        // Debug output never shows a URL's password.
        let debug = format!("{:?}", settings("postgres://x:hunter2@127.0.0.1/db"));
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_database_is_unavailable_in_time() {
        let started = std::time::Instant::now();
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let err = PostgresStore::connect(
            &settings("postgres://pfgate@127.0.0.1:1/pfgate"),
            suite::key(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:1/pfgate"), "{msg}");
        assert!(started.elapsed() < OP_TIMEOUT + CONNECT_TIMEOUT, "{msg}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_reconnect_and_keeps_no_secret_in_clear() {
        let Some(url) = database_url("postgres survives_reconnect") else {
            return;
        };
        let schema = TestSchema::create(&url).await.unwrap();
        let store = PostgresStore::connect(&schema.settings(), suite::key())
            .await
            .unwrap();
        assert_eq!(store.migrations_applied(), MIGRATIONS.len());
        assert!(store.target().contains(schema.name()), "{}", store.target());
        suite::check_secrets_round_trip(&store).await;
        suite::seed_persistent(&store).await;

        // Everything the tables hold, as text.
        let client = store.client("scan").await.unwrap();
        let mut raw = String::new();
        for table in [
            "users",
            "blocks",
            "bypasses",
            "transactions",
            "used_codes",
            "inflight_calls",
        ] {
            let rows = client
                .query(&format!("SELECT t::TEXT FROM {table} t"), &[])
                .await
                .unwrap();
            for r in rows {
                raw.push_str(&r.get::<_, String>(0));
            }
        }
        drop(client);
        assert!(
            raw.contains(suite::PERSIST_USER),
            "the scan does not see the data"
        );
        for secret in suite::PLAINTEXT_SECRETS {
            assert!(!raw.contains(secret), "a secret is stored in plaintext");
        }
        drop(store);

        let reopened = PostgresStore::connect(&schema.settings(), suite::key())
            .await
            .unwrap();
        assert_eq!(
            reopened.migrations_applied(),
            0,
            "reconnecting re-ran migrations"
        );
        suite::check_persistent(&reopened).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_starting_together_migrate_once() {
        let Some(url) = database_url("postgres instances_starting_together") else {
            return;
        };
        let schema = TestSchema::create(&url).await.unwrap();
        // The schema does not exist yet for these settings: the stores create it.
        let fresh = PostgresSettings {
            schema: Some(format!("{}_new", schema.name())),
            ..schema.settings()
        };
        let (a, b, c) = tokio::join!(
            PostgresStore::connect(&fresh, suite::key()),
            PostgresStore::connect(&fresh, suite::key()),
            PostgresStore::connect(&fresh, suite::key()),
        );
        let applied: usize = [a.unwrap(), b.unwrap(), c.unwrap()]
            .iter()
            .map(PostgresStore::migrations_applied)
            .sum();
        assert_eq!(applied, MIGRATIONS.len(), "each migration applied once");
        let client = testing::connect(&url).await.unwrap();
        client
            .batch_execute(&format!("DROP SCHEMA \"{}_new\" CASCADE", schema.name()))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_secrets_key_is_refused_at_connect() {
        let Some(url) = database_url("postgres another secrets key") else {
            return;
        };
        let schema = TestSchema::create(&url).await.unwrap();
        let settings = schema.settings();
        let open = |key: SecretKey| {
            let settings = settings.clone();
            async move {
                PostgresStore::connect(&settings, key)
                    .await
                    .map(|s| Arc::new(s) as Arc<dyn Store>)
            }
        };
        let forget = || {
            let (url, name) = (url.clone(), schema.name().to_string());
            async move {
                testing::connect(&url)
                    .await
                    .unwrap()
                    .batch_execute(&format!("DELETE FROM \"{name}\".key_check"))
                    .await
                    .unwrap();
            }
        };
        suite::check_key_check(&open, forget).await;
        suite::check_rotate_key(&open).await;
        // Instances starting together with different keys on a new schema: one key wins, every
        // instance with another is refused.
        let fresh = PostgresSettings {
            schema: Some(format!("{}_keys", schema.name())),
            ..schema.settings()
        };
        let key = |i: u8| SecretKey::from_bytes([i; secrets::KEY_LEN]);
        let (a0, b1, c0, d1) = tokio::join!(
            PostgresStore::connect(&fresh, key(0)),
            PostgresStore::connect(&fresh, key(1)),
            PostgresStore::connect(&fresh, key(0)),
            PostgresStore::connect(&fresh, key(1)),
        );
        let opened: Vec<u8> = [
            (0, a0.is_ok()),
            (1, b1.is_ok()),
            (0, c0.is_ok()),
            (1, d1.is_ok()),
        ]
        .into_iter()
        .filter_map(|(k, ok)| ok.then_some(k))
        .collect();
        assert_eq!(opened.len(), 2, "one key's two instances open");
        assert_eq!(opened[0], opened[1]);
        testing::connect(&url)
            .await
            .unwrap()
            .batch_execute(&format!("DROP SCHEMA \"{}_keys\" CASCADE", schema.name()))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn newer_schema_is_refused() {
        let Some(url) = database_url("postgres newer_schema_is_refused") else {
            return;
        };
        let schema = TestSchema::create(&url).await.unwrap();
        drop(
            PostgresStore::connect(&schema.settings(), suite::key())
                .await
                .unwrap(),
        );
        let client = testing::connect(&url).await.unwrap();
        client
            .batch_execute(&format!(
                "INSERT INTO \"{}\".schema_migrations (version, applied_at) VALUES (99, 0)",
                schema.name()
            ))
            .await
            .unwrap();
        let err = PostgresStore::connect(&schema.settings(), suite::key())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("version 99") && msg.contains("upgrade pfgate"),
            "{msg}"
        );
    }

    /// TLS to the local server, whose Debian certificate (`ssl-cert-snakeoil`) names `localhost`:
    /// trusted as the CA file it verifies; under another host name it is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_verifies_the_server_certificate() {
        let Some(url) = database_url("postgres tls_verifies_the_server_certificate") else {
            return;
        };
        let ca = PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem");
        let Some(rest) = url.strip_prefix("postgres://postgres@127.0.0.1:5432/") else {
            crate::core::test_skips::skip(
                crate::core::test_skips::Needs::Tools("the local PostgreSQL at 127.0.0.1:5432"),
                "postgres tls_verifies_the_server_certificate",
                "the test database is another server",
            );
            return;
        };
        if !ca.exists() {
            crate::core::test_skips::skip(
                crate::core::test_skips::Needs::Tools("ssl-cert (the snakeoil certificate)"),
                "postgres tls_verifies_the_server_certificate",
                &format!("{} is missing", ca.display()),
            );
            return;
        }
        let schema = TestSchema::create(&url).await.unwrap();
        let over_tls = |host: &str| PostgresSettings {
            url: format!("postgres://postgres@{host}:5432/{rest}?sslmode=require"),
            tls_ca_file: Some(ca.clone()),
            ..schema.settings()
        };
        let store = PostgresStore::connect(&over_tls("localhost"), suite::key())
            .await
            .unwrap();
        store.health().await.unwrap();
        assert!(store.target().ends_with(", TLS"), "{}", store.target());
        let client = store.client("ssl check").await.unwrap();
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "the session is not encrypted");
        // The certificate does not name 127.0.0.1.
        let err = PostgresStore::connect(&over_tls("127.0.0.1"), suite::key())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
