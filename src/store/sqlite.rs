//! The embedded store backend: SQLite through `rusqlite`, in a file (WAL mode) or in memory.
//!
//! This module owns the SQLite schema (versioned migrations in `migrations/sqlite/`, applied at open,
//! one transaction each), the mapping between [`UserRecord`] and its row, and the atomic statements
//! behind the at-most-once operations of [`Store`]:
//!
//! - consuming a bypass is one `DELETE ... WHERE username_key = ? AND expires_at >= ?`;
//! - taking a transaction is one `DELETE ... RETURNING` with the expiry in its `WHERE`;
//! - accepting a one-time code is one `INSERT ... ON CONFLICT DO NOTHING`;
//!
//! each decided by the rows it touched, so they stay correct with several pfgate processes on one
//! database file. Expired bypasses, transactions and used codes are purged on the way.
//!
//! SQLite calls block, so every operation runs on [`tokio::task::spawn_blocking`] with the one
//! connection behind a mutex. OATH secrets and static tokens are sealed with [`secrets::seal`] before
//! they reach SQLite and opened after they leave it, bound to the user by the associated data; a
//! row that does not open is reported as [`StoreError::Corrupt`] naming the user and the field.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};

use super::secrets::{self, SecretKey};
use super::{
    Bypass, Phone, Store, StoreError, StoreResult, TextFilter, Transaction, TransactionKind,
    UserFilter, UserRecord,
};
use crate::pfwssdk::wire::WireEnum;

/// The store test suite shared by all backends (declared here because `store/mod.rs` belongs to
/// the trait; a later backend includes the same file the same way).
#[cfg(test)]
#[path = "suite.rs"]
pub(crate) mod suite;

/// The schema migrations in order: migration `i` (0-based) brings the schema to version `i + 1`.
/// Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_transaction_target.sql"),
];

/// How long a statement waits for another process's lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Field names in the associated data of sealed values.
const FIELD_OATH_SECRET: &str = "oath_secret";
const FIELD_STATIC_TOKEN: &str = "static_token";

/// The `users` columns, in the order of the schema.
const USER_COLUMNS: &[&str] = &[
    "username_key",
    "username",
    "first_name",
    "last_name",
    "email",
    "user_group",
    "phone_country_code",
    "phone_number",
    "phone_extension",
    "backup_country_code",
    "backup_number",
    "backup_extension",
    "mode",
    "pin_mode",
    "sms_direction",
    "sms_mode",
    "phone_app_mode",
    "enabled",
    "disabled_behavior",
    "pin_hash",
    "pin_change_required",
    "pin_changed_at",
    "oath_secret",
    "oath_serial",
    "oath_time_interval",
    "static_token",
    "voice_call_language",
    "sms_text_language",
    "phone_app_language",
    "oath_token_language",
];

/// `SELECT <all user columns> FROM users`.
static SELECT_USERS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM users", USER_COLUMNS.join(", ")));

/// Inserts a user unless the key exists (named parameters `:<column>`).
static INSERT_USER: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = USER_COLUMNS.iter().map(|c| format!(":{c}")).collect();
    format!(
        "INSERT INTO users ({}) VALUES ({}) ON CONFLICT (username_key) DO NOTHING",
        USER_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

/// Replaces every column but the key and the username as first stored.
static UPDATE_USER: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = USER_COLUMNS
        .iter()
        .filter(|c| !matches!(**c, "username_key" | "username"))
        .map(|c| format!("{c} = :{c}"))
        .collect();
    format!(
        "UPDATE users SET {} WHERE username_key = :username_key",
        sets.join(", ")
    )
});

/// The embedded SQLite store. Cheap to share behind an `Arc<dyn Store>`.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    key: Arc<SecretKey>,
    path: Option<PathBuf>,
    migrations_applied: usize,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("migrations_applied", &self.migrations_applied)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this build writes and understands.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens (creating if needed) the database file at `path` in WAL mode and brings its schema up
    /// to date. A database whose schema is newer than this build is refused.
    pub async fn open(path: impl AsRef<Path>, key: SecretKey) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, key))
            .await
            .map_err(|_| {
                StoreError::Unavailable("opening the SQLite database: task failed".into())
            })?
    }

    /// [`SqliteStore::open`] for blocking context (no runtime needed).
    pub fn open_blocking(path: &Path, key: SecretKey) -> StoreResult<Self> {
        let what = format!("opening SQLite database {}", path.display());
        let conn = Connection::open(path).ctx(&what)?;
        configure(&conn, true).map_err(|e| prefix(&what, e))?;
        Self::with_connection(conn, key, Some(path.to_path_buf())).map_err(|e| prefix(&what, e))
    }

    /// A fresh database in memory (demo and tests): gone with the store.
    pub async fn in_memory(key: SecretKey) -> StoreResult<Self> {
        tokio::task::spawn_blocking(move || Self::in_memory_blocking(key))
            .await
            .map_err(|_| {
                StoreError::Unavailable("opening an in-memory SQLite database: task failed".into())
            })?
    }

    /// [`SqliteStore::in_memory`] for blocking context (no runtime needed).
    pub fn in_memory_blocking(key: SecretKey) -> StoreResult<Self> {
        let what = "opening an in-memory SQLite database";
        let conn = Connection::open_in_memory().ctx(what)?;
        configure(&conn, false).map_err(|e| prefix(what, e))?;
        Self::with_connection(conn, key, None).map_err(|e| prefix(what, e))
    }

    fn with_connection(
        mut conn: Connection,
        key: SecretKey,
        path: Option<PathBuf>,
    ) -> StoreResult<Self> {
        let migrations_applied = migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            key: Arc::new(key),
            path,
            migrations_applied,
        })
    }

    /// The database file, or `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// How many migrations opening this store applied (0 when the schema was current).
    pub fn migrations_applied(&self) -> usize {
        self.migrations_applied
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &SecretKey) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let key = Arc::clone(&self.key);
        if self.path().is_none() {
            // In memory there is no disk to wait for: a statement takes microseconds, less than the
            // hand-off to the blocking pool would (which dominated an authentication's cost on
            // one core). A panic still ends as `Unavailable`, as on the pool.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut conn, &key)
            }))
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "{op}: the store task panicked"
                )))
            });
        }
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (an open
            // transaction rolls back when dropped), so a poisoned lock is still usable.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn, &key)
        })
        .await
        .map_err(|e| {
            let how = if e.is_panic() {
                "panicked"
            } else {
                "was cancelled"
            };
            StoreError::Unavailable(format!("{op}: the store task {how}"))
        })?
    }
}

/// Connection settings: lock wait, foreign keys (they carry renames and deletes to attached rows),
/// and WAL for files (readers do not block the writer).
fn configure(conn: &Connection, file: bool) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting busy_timeout")?;
    conn.pragma_update(None, "foreign_keys", true)
        .ctx("enabling foreign keys")?;
    let fk: bool = conn
        .pragma_query_value(None, "foreign_keys", |r| r.get(0))
        .ctx("reading foreign_keys")?;
    if !fk {
        return Err(StoreError::Unavailable(
            "this SQLite build does not enforce foreign keys".into(),
        ));
    }
    if file {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx("enabling WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "the database refused WAL mode (journal_mode is '{mode}')"
            )));
        }
    }
    Ok(())
}

/// Applies the migrations the database lacks, each in its own transaction; returns how many.
fn migrate(conn: &mut Connection) -> StoreResult<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )
    .ctx("creating schema_migrations")?;
    let mut applied = 0;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        // IMMEDIATE: two processes opening a new file at once apply each migration once.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a migration")?;
        let current = schema_version(&tx)?;
        if current > SqliteStore::SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "the database schema is version {current}, newer than version {} that this pfgate \
                 knows; upgrade pfgate or use a database written by this version",
                SqliteStore::SCHEMA_VERSION
            )));
        }
        if current >= version {
            continue;
        }
        let what = format!("applying schema migration {version}");
        tx.execute_batch(sql).ctx(&what)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![version, unix_now()],
        )
        .ctx(&what)?;
        tx.commit().ctx(&what)?;
        applied += 1;
    }
    Ok(applied)
}

fn schema_version(conn: &Connection) -> StoreResult<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
    .ctx("reading the schema version")
}

/// Maps a SQLite error to the store's: a damaged file is `Corrupt`, anything else `Unavailable`.
/// rusqlite's messages carry SQLite's text and never bound parameter values.
fn db_err(op: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("{op}: {e}"))
        }
        _ => StoreError::Unavailable(format!("{op}: {e}")),
    }
}

/// Adds context to a store error.
fn prefix(what: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{what}: {m}")),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{what}: {m}")),
        other => other,
    }
}

/// `.ctx("what was being done")` on rusqlite results.
trait Context<T> {
    fn ctx(self, op: &str) -> StoreResult<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, op: &str) -> StoreResult<T> {
        self.map_err(|e| db_err(op, e))
    }
}

/// Unix seconds now (0 if the clock is before 1970).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The lookup key of a username: lower case.
fn username_key(username: &str) -> String {
    username.to_lowercase()
}

fn user_exists(conn: &Connection, key: &str) -> StoreResult<bool> {
    conn.query_row("SELECT 1 FROM users WHERE username_key = ?1", [key], |_| {
        Ok(())
    })
    .optional()
    .map(|found| found.is_some())
    .ctx("looking up a user")
}

fn seal_field(
    key: &SecretKey,
    username_key: &str,
    field: &str,
    value: Option<&str>,
) -> StoreResult<Option<String>> {
    value
        .map(|plain| {
            secrets::seal(key, plain, &secrets::aad(field, username_key)).map_err(|e| {
                StoreError::Unavailable(format!("storing {field} of user '{username_key}': {e}"))
            })
        })
        .transpose()
}

fn open_field(
    key: &SecretKey,
    username: &str,
    username_key: &str,
    field: &str,
    sealed: Option<&str>,
) -> StoreResult<Option<String>> {
    sealed
        .map(|s| {
            secrets::open(key, s, &secrets::aad(field, username_key)).map_err(|e| {
                StoreError::Corrupt(format!(
                    "user '{username}': {field} does not decrypt with the configured secrets key \
                     ({e})"
                ))
            })
        })
        .transpose()
}

/// The values of one `users` row for writing.
struct UserRow<'a> {
    user: &'a UserRecord,
    username_key: String,
    oath_secret: Option<String>,
    static_token: Option<String>,
    mode: &'static str,
    pin_mode: &'static str,
    sms_direction: &'static str,
    sms_mode: &'static str,
    phone_app_mode: &'static str,
    disabled_behavior: &'static str,
}

impl<'a> UserRow<'a> {
    fn new(user: &'a UserRecord, key: &SecretKey) -> StoreResult<Self> {
        let username_key = username_key(&user.username);
        let oath_secret = seal_field(
            key,
            &username_key,
            FIELD_OATH_SECRET,
            user.oath_secret.as_deref(),
        )?;
        let static_token = seal_field(
            key,
            &username_key,
            FIELD_STATIC_TOKEN,
            user.static_token.as_deref(),
        )?;
        Ok(Self {
            user,
            username_key,
            oath_secret,
            static_token,
            mode: user.mode.as_str(),
            pin_mode: user.pin_mode.as_str(),
            sms_direction: user.sms_direction.as_str(),
            sms_mode: user.sms_mode.as_str(),
            phone_app_mode: user.phone_app_mode.as_str(),
            disabled_behavior: user.disabled_behavior.as_str(),
        })
    }

    /// Named parameters for [`INSERT_USER`] (`with_username`) or [`UPDATE_USER`].
    fn params(&self, with_username: bool) -> Vec<(&'static str, &dyn ToSql)> {
        let u = self.user;
        let mut p: Vec<(&'static str, &dyn ToSql)> = vec![
            (":username_key", &self.username_key),
            (":first_name", &u.first_name),
            (":last_name", &u.last_name),
            (":email", &u.email),
            (":user_group", &u.user_group),
            (":phone_country_code", &u.phone.country_code),
            (":phone_number", &u.phone.number),
            (":phone_extension", &u.phone.extension),
            (":backup_country_code", &u.backup_phone.country_code),
            (":backup_number", &u.backup_phone.number),
            (":backup_extension", &u.backup_phone.extension),
            (":mode", &self.mode),
            (":pin_mode", &self.pin_mode),
            (":sms_direction", &self.sms_direction),
            (":sms_mode", &self.sms_mode),
            (":phone_app_mode", &self.phone_app_mode),
            (":enabled", &u.enabled),
            (":disabled_behavior", &self.disabled_behavior),
            (":pin_hash", &u.pin_hash),
            (":pin_change_required", &u.pin_change_required),
            (":pin_changed_at", &u.pin_changed_at),
            (":oath_secret", &self.oath_secret),
            (":oath_serial", &u.oath_serial),
            (":oath_time_interval", &u.oath_time_interval),
            (":static_token", &self.static_token),
            (":voice_call_language", &u.voice_call_language),
            (":sms_text_language", &u.sms_text_language),
            (":phone_app_language", &u.phone_app_language),
            (":oath_token_language", &u.oath_token_language),
        ];
        if with_username {
            p.push((":username", &u.username));
        }
        p
    }
}

/// One `users` row as read, before enums are parsed and secrets opened.
struct RawUser {
    username_key: String,
    username: String,
    first_name: String,
    last_name: String,
    email: String,
    user_group: String,
    phone: Phone,
    backup_phone: Phone,
    mode: String,
    pin_mode: String,
    sms_direction: String,
    sms_mode: String,
    phone_app_mode: String,
    enabled: bool,
    disabled_behavior: String,
    pin_hash: Option<String>,
    pin_change_required: bool,
    pin_changed_at: Option<i64>,
    oath_secret: Option<String>,
    oath_serial: String,
    oath_time_interval: i64,
    static_token: Option<String>,
    voice_call_language: String,
    sms_text_language: String,
    phone_app_language: String,
    oath_token_language: String,
}

impl RawUser {
    /// Reads a row selected with [`SELECT_USERS`].
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            username_key: r.get("username_key")?,
            username: r.get("username")?,
            first_name: r.get("first_name")?,
            last_name: r.get("last_name")?,
            email: r.get("email")?,
            user_group: r.get("user_group")?,
            phone: Phone {
                country_code: r.get("phone_country_code")?,
                number: r.get("phone_number")?,
                extension: r.get("phone_extension")?,
            },
            backup_phone: Phone {
                country_code: r.get("backup_country_code")?,
                number: r.get("backup_number")?,
                extension: r.get("backup_extension")?,
            },
            mode: r.get("mode")?,
            pin_mode: r.get("pin_mode")?,
            sms_direction: r.get("sms_direction")?,
            sms_mode: r.get("sms_mode")?,
            phone_app_mode: r.get("phone_app_mode")?,
            enabled: r.get("enabled")?,
            disabled_behavior: r.get("disabled_behavior")?,
            pin_hash: r.get("pin_hash")?,
            pin_change_required: r.get("pin_change_required")?,
            pin_changed_at: r.get("pin_changed_at")?,
            oath_secret: r.get("oath_secret")?,
            oath_serial: r.get("oath_serial")?,
            oath_time_interval: r.get("oath_time_interval")?,
            static_token: r.get("static_token")?,
            voice_call_language: r.get("voice_call_language")?,
            sms_text_language: r.get("sms_text_language")?,
            phone_app_language: r.get("phone_app_language")?,
            oath_token_language: r.get("oath_token_language")?,
        })
    }

    /// True when the row passes the text and phone filters (the enum and enabled filters are in
    /// the SQL).
    fn matches(&self, f: &UserFilter) -> bool {
        text_matches(&f.username, &self.username)
            && text_matches(&f.first_name, &self.first_name)
            && text_matches(&f.last_name, &self.last_name)
            && text_matches(&f.email, &self.email)
            && text_matches(&f.user_group, &self.user_group)
            && phone_matches(&f.phone, &self.phone, &self.backup_phone)
    }

    fn into_record(self, key: &SecretKey) -> StoreResult<UserRecord> {
        let user = self.username.as_str();
        let oath_secret = open_field(
            key,
            user,
            &self.username_key,
            FIELD_OATH_SECRET,
            self.oath_secret.as_deref(),
        )?;
        let static_token = open_field(
            key,
            user,
            &self.username_key,
            FIELD_STATIC_TOKEN,
            self.static_token.as_deref(),
        )?;
        let oath_time_interval = i32::try_from(self.oath_time_interval).map_err(|_| {
            StoreError::Corrupt(format!("user '{user}': oath_time_interval is out of range"))
        })?;
        Ok(UserRecord {
            mode: parse_enum(user, "mode", &self.mode)?,
            pin_mode: parse_enum(user, "pin_mode", &self.pin_mode)?,
            sms_direction: parse_enum(user, "sms_direction", &self.sms_direction)?,
            sms_mode: parse_enum(user, "sms_mode", &self.sms_mode)?,
            phone_app_mode: parse_enum(user, "phone_app_mode", &self.phone_app_mode)?,
            disabled_behavior: parse_enum(user, "disabled_behavior", &self.disabled_behavior)?,
            username: self.username,
            first_name: self.first_name,
            last_name: self.last_name,
            email: self.email,
            user_group: self.user_group,
            phone: self.phone,
            backup_phone: self.backup_phone,
            enabled: self.enabled,
            pin_hash: self.pin_hash,
            pin_change_required: self.pin_change_required,
            pin_changed_at: self.pin_changed_at,
            oath_secret,
            oath_serial: self.oath_serial,
            oath_time_interval,
            static_token,
            voice_call_language: self.voice_call_language,
            sms_text_language: self.sms_text_language,
            phone_app_language: self.phone_app_language,
            oath_token_language: self.oath_token_language,
        })
    }
}

fn parse_enum<E: WireEnum>(user: &str, column: &str, literal: &str) -> StoreResult<E> {
    E::from_literal(literal).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "user '{user}': {column} is not a valid {} value",
            E::NAME
        ))
    })
}

/// `FindUsers` text matching: `*` is any run of characters, everything else (`?`, `%`, `_`)
/// literal; an empty pattern matches everything.
fn text_matches(filter: &TextFilter, value: &str) -> bool {
    if filter.pattern.is_empty() {
        return true;
    }
    if filter.case_sensitive {
        let p: Vec<char> = filter.pattern.chars().collect();
        let t: Vec<char> = value.chars().collect();
        wildcard(&p, &t)
    } else {
        let p: Vec<char> = filter.pattern.to_lowercase().chars().collect();
        let t: Vec<char> = value.to_lowercase().chars().collect();
        wildcard(&p, &t)
    }
}

/// Phone matching: the pattern's digits and `*` against the digits of the primary or the backup
/// national number; an empty pattern matches everything.
fn phone_matches(pattern: &str, phone: &Phone, backup: &Phone) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let p: Vec<char> = pattern
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '*')
        .collect();
    let digits =
        |number: &str| -> Vec<char> { number.chars().filter(char::is_ascii_digit).collect() };
    wildcard(&p, &digits(&phone.number)) || wildcard(&p, &digits(&backup.number))
}

/// Glob matching with `*` as the only wildcard (linear backtracking to the last `*`).
fn wildcard(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn kind_literal(kind: TransactionKind) -> &'static str {
    match kind {
        TransactionKind::OathCode => "oath_code",
        TransactionKind::SmsPasscode => "sms_passcode",
        TransactionKind::ProviderCode => "provider_code",
    }
}

fn parse_kind(literal: &str) -> Option<TransactionKind> {
    match literal {
        "oath_code" => Some(TransactionKind::OathCode),
        "sms_passcode" => Some(TransactionKind::SmsPasscode),
        "provider_code" => Some(TransactionKind::ProviderCode),
        _ => None,
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        self.run("health", |conn, _| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .ctx("health check")
        })
        .await
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let key = username_key(username);
        self.run("get_user", move |conn, secrets_key| {
            // The hot statements of an authentication are prepared once per connection (rusqlite's
            // statement cache), not parsed again on every call.
            let sql = format!("{} WHERE username_key = ?1", *SELECT_USERS);
            let raw = conn
                .prepare_cached(&sql)
                .ctx("reading a user")?
                .query_row([&key], RawUser::from_row)
                .optional()
                .ctx("reading a user")?;
            raw.map(|r| r.into_record(secrets_key)).transpose()
        })
        .await
    }

    async fn add_user(&self, user: &UserRecord) -> StoreResult<()> {
        let user = user.clone();
        self.run("add_user", move |conn, key| {
            let row = UserRow::new(&user, key)?;
            let added = conn
                .execute(&INSERT_USER, row.params(true).as_slice())
                .ctx("adding a user")?;
            if added == 0 {
                return Err(StoreError::Duplicate(user.username.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn update_user(&self, user: &UserRecord) -> StoreResult<()> {
        let user = user.clone();
        self.run("update_user", move |conn, key| {
            let row = UserRow::new(&user, key)?;
            let updated = conn
                .execute(&UPDATE_USER, row.params(false).as_slice())
                .ctx("updating a user")?;
            if updated == 0 {
                return Err(StoreError::NotFound(user.username.clone()));
            }
            Ok(())
        })
        .await
    }

    async fn rename_user(&self, old: &str, new: &str) -> StoreResult<()> {
        let (old, new) = (old.to_owned(), new.to_owned());
        self.run("rename_user", move |conn, key| {
            let what = "renaming a user";
            let (old_key, new_key) = (username_key(&old), username_key(&new));
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            let sealed: Option<(String, Option<String>, Option<String>)> = tx
                .query_row(
                    "SELECT username, oath_secret, static_token FROM users WHERE username_key = ?1",
                    [&old_key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .ctx(what)?;
            let Some((stored, oath_secret, static_token)) = sealed else {
                return Err(StoreError::NotFound(old));
            };
            if old_key == new_key {
                // Only the letter case changes: same key, same associated data.
                tx.execute(
                    "UPDATE users SET username = ?2 WHERE username_key = ?1",
                    params![old_key, new],
                )
                .ctx(what)?;
                return tx.commit().ctx(what);
            }
            if user_exists(&tx, &new_key)? {
                return Err(StoreError::Duplicate(new));
            }
            // Re-seal under the new name: the associated data binds each value to its user.
            let reseal = |field: &str, value: Option<String>| -> StoreResult<Option<String>> {
                let plain = open_field(key, &stored, &old_key, field, value.as_deref())?;
                seal_field(key, &new_key, field, plain.as_deref())
            };
            let oath_secret = reseal(FIELD_OATH_SECRET, oath_secret)?;
            let static_token = reseal(FIELD_STATIC_TOKEN, static_token)?;
            // ON UPDATE CASCADE carries blocks, bypasses, transactions and used codes along.
            tx.execute(
                "UPDATE users SET username_key = ?2, username = ?3, oath_secret = ?4, \
                 static_token = ?5 WHERE username_key = ?1",
                params![old_key, new_key, new, oath_secret, static_token],
            )
            .ctx(what)?;
            tx.commit().ctx(what)
        })
        .await
    }

    async fn delete_user(&self, username: &str) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("delete_user", move |conn, _| {
            // ON DELETE CASCADE removes blocks, bypasses, transactions and used codes.
            let deleted = conn
                .execute("DELETE FROM users WHERE username_key = ?1", [&key])
                .ctx("deleting a user")?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn find_users(
        &self,
        filter: &UserFilter,
        limit: u32,
    ) -> StoreResult<(Vec<UserRecord>, bool)> {
        let filter = filter.clone();
        self.run("find_users", move |conn, key| {
            let what = "finding users";
            let sql = format!(
                "{} WHERE (?1 IS NULL OR mode = ?1) AND (?2 IS NULL OR pin_mode = ?2) \
                 AND (?3 IS NULL OR enabled = ?3) ORDER BY username_key",
                *SELECT_USERS
            );
            let mut stmt = conn.prepare(&sql).ctx(what)?;
            let mut rows = stmt
                .query(params![
                    filter.mode.map(WireEnum::as_str),
                    filter.pin_mode.map(WireEnum::as_str),
                    filter.enabled,
                ])
                .ctx(what)?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let mut found = Vec::new();
            while let Some(row) = rows.next().ctx(what)? {
                let raw = RawUser::from_row(row).ctx(what)?;
                if !raw.matches(&filter) {
                    continue;
                }
                if limit != 0 && found.len() == limit {
                    return Ok((found, false));
                }
                found.push(raw.into_record(key)?);
            }
            Ok((found, true))
        })
        .await
    }

    async fn block_user(&self, username: &str, reason: &str, actor: &str) -> StoreResult<bool> {
        let (name, reason, actor) = (username.to_owned(), reason.to_owned(), actor.to_owned());
        self.run("block_user", move |conn, _| {
            let what = "blocking a user";
            let key = username_key(&name);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            let added = tx
                .execute(
                    "INSERT INTO blocks (username_key, reason, actor, created_at) \
                     SELECT username_key, ?2, ?3, ?4 FROM users WHERE username_key = ?1 \
                     ON CONFLICT (username_key) DO NOTHING",
                    params![key, reason, actor, unix_now()],
                )
                .ctx(what)?;
            if added == 0 && !user_exists(&tx, &key)? {
                return Err(StoreError::NotFound(name));
            }
            tx.commit().ctx(what)?;
            Ok(added > 0)
        })
        .await
    }

    async fn unblock_user(&self, username: &str) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("unblock_user", move |conn, _| {
            let removed = conn
                .execute("DELETE FROM blocks WHERE username_key = ?1", [&key])
                .ctx("unblocking a user")?;
            Ok(removed > 0)
        })
        .await
    }

    async fn block_reason(&self, username: &str) -> StoreResult<Option<String>> {
        let key = username_key(username);
        self.run("block_reason", move |conn, _| {
            conn.prepare_cached("SELECT reason FROM blocks WHERE username_key = ?1")
                .ctx("reading a block")?
                .query_row([&key], |r| r.get(0))
                .optional()
                .ctx("reading a block")
        })
        .await
    }

    async fn add_bypass(&self, bypass: &Bypass) -> StoreResult<()> {
        let bypass = bypass.clone();
        self.run("add_bypass", move |conn, _| {
            let added = conn
                .execute(
                    "INSERT INTO bypasses (username_key, reason, expires_at, created_by) \
                     SELECT username_key, ?2, ?3, ?4 FROM users WHERE username_key = ?1 \
                     ON CONFLICT (username_key) DO UPDATE SET reason = excluded.reason, \
                     expires_at = excluded.expires_at, created_by = excluded.created_by",
                    params![
                        username_key(&bypass.username),
                        bypass.reason,
                        bypass.expires_at,
                        bypass.created_by
                    ],
                )
                .ctx("granting a bypass")?;
            if added == 0 {
                return Err(StoreError::NotFound(bypass.username));
            }
            Ok(())
        })
        .await
    }

    async fn consume_bypass(&self, username: &str, now: i64) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("consume_bypass", move |conn, _| {
            let what = "consuming a bypass";
            // The single DELETE is the decision: of concurrent callers only one removes the row.
            let consumed = conn
                .prepare_cached("DELETE FROM bypasses WHERE username_key = ?1 AND expires_at >= ?2")
                .ctx(what)?
                .execute(params![key, now])
                .ctx(what)?;
            conn.prepare_cached("DELETE FROM bypasses WHERE expires_at < ?1")
                .ctx("purging expired bypasses")?
                .execute([now])
                .ctx("purging expired bypasses")?;
            Ok(consumed > 0)
        })
        .await
    }

    async fn put_transaction(&self, tx: &Transaction) -> StoreResult<()> {
        let t = tx.clone();
        self.run("put_transaction", move |conn, _| {
            let result = conn.execute(
                "INSERT INTO transactions (id, username_key, kind, code_hash, expires_at, target) \
                 SELECT ?1, username_key, ?3, ?4, ?5, ?6 FROM users WHERE username_key = ?2",
                params![
                    t.id,
                    username_key(&t.username),
                    kind_literal(t.kind),
                    t.code_hash,
                    t.expires_at,
                    t.target
                ],
            );
            match result {
                Ok(0) => Err(StoreError::NotFound(t.username)),
                Ok(_) => Ok(()),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Err(StoreError::Unavailable(
                        "recording a transaction: a transaction with this id exists already".into(),
                    ))
                }
                Err(e) => Err(db_err("recording a transaction", e)),
            }
        })
        .await
    }

    async fn take_transaction(&self, id: &str, now: i64) -> StoreResult<Option<Transaction>> {
        let id = id.to_owned();
        self.run("take_transaction", move |conn, _| {
            let what = "taking a transaction";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            // The single DELETE ... RETURNING is the decision: at most one caller gets the row.
            let taken: Option<(String, String, Option<String>, i64, Option<String>)> = tx
                .query_row(
                    "DELETE FROM transactions WHERE id = ?1 AND expires_at >= ?2 \
                     RETURNING username_key, kind, code_hash, expires_at, target",
                    params![id, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .ctx(what)?;
            tx.execute("DELETE FROM transactions WHERE expires_at < ?1", [now])
                .ctx("purging expired transactions")?;
            let result = match taken {
                None => None,
                Some((key, kind, code_hash, expires_at, target)) => {
                    let username: Option<String> = tx
                        .query_row(
                            "SELECT username FROM users WHERE username_key = ?1",
                            [&key],
                            |r| r.get(0),
                        )
                        .optional()
                        .ctx(what)?;
                    let kind = parse_kind(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "a transaction of user '{key}' has an unknown kind"
                        ))
                    })?;
                    Some(Transaction {
                        id,
                        username: username.unwrap_or(key),
                        kind,
                        code_hash,
                        expires_at,
                        target,
                    })
                }
            };
            tx.commit().ctx(what)?;
            Ok(result)
        })
        .await
    }

    async fn take_user_transaction(
        &self,
        username: &str,
        kind: TransactionKind,
        now: i64,
    ) -> StoreResult<Option<Transaction>> {
        let key = username_key(username);
        let kind_text = kind_literal(kind);
        self.run("take_user_transaction", move |conn, _| {
            let what = "taking a user's transaction";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            // One DELETE ... RETURNING of the newest matching row decides who gets it.
            let taken: Option<(String, Option<String>, i64, Option<String>)> = tx
                .query_row(
                    "DELETE FROM transactions WHERE id = (SELECT id FROM transactions \
                     WHERE username_key = ?1 AND kind = ?2 AND expires_at >= ?3 \
                     ORDER BY expires_at DESC LIMIT 1) \
                     RETURNING id, code_hash, expires_at, target",
                    params![key, kind_text, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .ctx(what)?;
            let result = match taken {
                None => None,
                Some((id, code_hash, expires_at, target)) => {
                    let username: Option<String> = tx
                        .query_row(
                            "SELECT username FROM users WHERE username_key = ?1",
                            [&key],
                            |r| r.get(0),
                        )
                        .optional()
                        .ctx(what)?;
                    Some(Transaction {
                        id,
                        username: username.unwrap_or_else(|| key.clone()),
                        kind,
                        code_hash,
                        expires_at,
                        target,
                    })
                }
            };
            tx.commit().ctx(what)?;
            Ok(result)
        })
        .await
    }

    async fn mark_code_used(
        &self,
        username: &str,
        code: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let name = username.to_owned();
        let code = zeroize::Zeroizing::new(code.to_owned());
        self.run("mark_code_used", move |conn, secrets_key| {
            let what = "recording a used code";
            let key = username_key(&name);
            let digest = secrets::code_digest(secrets_key, &code);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            tx.execute("DELETE FROM used_codes WHERE expires_at < ?1", [unix_now()])
                .ctx("purging expired used codes")?;
            // The single INSERT ... ON CONFLICT DO NOTHING is the decision.
            let inserted = tx
                .execute(
                    "INSERT INTO used_codes (username_key, digest, expires_at) \
                     SELECT username_key, ?2, ?3 FROM users WHERE username_key = ?1 \
                     ON CONFLICT (username_key, digest) DO NOTHING",
                    params![key, digest, expires_at],
                )
                .ctx(what)?;
            if inserted == 0 && !user_exists(&tx, &key)? {
                return Err(StoreError::NotFound(name));
            }
            tx.commit().ctx(what)?;
            Ok(inserted > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn key() -> SecretKey {
        SecretKey::from_bytes([0x42; secrets::KEY_LEN])
    }

    /// A unique database path in the temp dir; removes the file and its WAL companions on drop.
    struct TempDb(PathBuf);

    impl TempDb {
        fn new(name: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "pfgate-store-{}-{}-{}-{name}.db",
                std::process::id(),
                unix_now(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let db = Self(path);
            db.remove();
            db
        }

        fn files(&self) -> Vec<PathBuf> {
            ["", "-wal", "-shm", "-journal"]
                .iter()
                .map(|suffix| PathBuf::from(format!("{}{suffix}", self.0.display())))
                .collect()
        }

        fn remove(&self) {
            for f in self.files() {
                let _ = std::fs::remove_file(f);
            }
        }

        /// All bytes of the database and its WAL files.
        fn raw_bytes(&self) -> Vec<u8> {
            self.files()
                .iter()
                .filter_map(|f| std::fs::read(f).ok())
                .flatten()
                .collect()
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            self.remove();
        }
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite_in_memory() {
        let store = SqliteStore::in_memory(key()).await.unwrap();
        assert_eq!(store.migrations_applied(), MIGRATIONS.len());
        assert!(store.path().is_none());
        suite::run_all(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite_in_file_secrets_not_in_plaintext_and_reopen() {
        let db = TempDb::new("suite");
        let store = Arc::new(SqliteStore::open(&db.0, key()).await.unwrap());
        assert_eq!(store.migrations_applied(), MIGRATIONS.len());
        suite::run_all(store.clone()).await;
        suite::seed_persistent(store.as_ref()).await;

        let raw = db.raw_bytes();
        // The scan sees the data (usernames are stored in clear) ...
        assert!(
            contains(&raw, suite::PERSIST_USER),
            "the scan does not see the database"
        );
        // ... but no secret.
        for secret in suite::PLAINTEXT_SECRETS {
            assert!(!contains(&raw, secret), "a secret is stored in plaintext");
        }
        let applied_at: Vec<(i64, i64)> = {
            let c = Connection::open(&db.0).unwrap();
            let mut stmt = c
                .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
                .unwrap();
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows
        };
        assert_eq!(applied_at.len(), MIGRATIONS.len());
        drop(store);

        let reopened = SqliteStore::open(&db.0, key()).await.unwrap();
        assert_eq!(
            reopened.migrations_applied(),
            0,
            "reopening re-ran migrations"
        );
        suite::check_persistent(&reopened).await;
        let c = Connection::open(&db.0).unwrap();
        let rows: Vec<(i64, i64)> = c
            .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, applied_at);
        let journal: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(journal.to_lowercase(), "wal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn newer_schema_is_refused() {
        let db = TempDb::new("newer");
        drop(SqliteStore::open(&db.0, key()).await.unwrap());
        Connection::open(&db.0)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
                [],
            )
            .unwrap();
        let err = SqliteStore::open(&db.0, key()).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
        assert!(msg.contains("version 99"), "{msg}");
        assert!(msg.contains("upgrade pfgate"), "{msg}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn not_a_database_is_refused() {
        let db = TempDb::new("garbage");
        std::fs::write(&db.0, vec![0x5a; 8192]).unwrap();
        let err = SqliteStore::open(&db.0, key()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(_) | StoreError::Unavailable(_)),
            "{err}"
        );
        assert!(
            err.to_string().contains(&db.0.display().to_string()),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moved_or_foreign_secrets_are_corrupt_not_leaked() {
        let db = TempDb::new("corrupt");
        let store = SqliteStore::open(&db.0, key()).await.unwrap();
        let mut alice = UserRecord::new("Alice@contoso.com");
        alice.oath_secret = Some("ALICEOATHSECRETAAAA".into());
        alice.static_token = Some("alice-static-1111".into());
        store.add_user(&alice).await.unwrap();
        let mut bob = UserRecord::new("bob@contoso.com");
        bob.oath_secret = Some("BOBOATHSECRETBBBB".into());
        store.add_user(&bob).await.unwrap();

        // Copy Alice's sealed secret into Bob's row: it must not open as Bob's.
        Connection::open(&db.0)
            .unwrap()
            .execute(
                "UPDATE users SET oath_secret = \
                 (SELECT oath_secret FROM users WHERE username_key = 'alice@contoso.com') \
                 WHERE username_key = 'bob@contoso.com'",
                [],
            )
            .unwrap();
        let err = store.get_user("bob@contoso.com").await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{msg}");
        assert!(
            msg.contains("bob@contoso.com") && msg.contains("oath_secret"),
            "{msg}"
        );
        assert!(!msg.contains("SECRET"), "{msg}");
        // A corrupt row fails a search that reaches it rather than being skipped.
        let all = UserFilter::default();
        assert!(matches!(
            store.find_users(&all, 0).await,
            Err(StoreError::Corrupt(_))
        ));
        // Renaming cannot launder it either.
        assert!(matches!(
            store
                .rename_user("bob@contoso.com", "robert@contoso.com")
                .await,
            Err(StoreError::Corrupt(_))
        ));
        // Alice still reads fine.
        assert_eq!(
            store.get_user("alice@contoso.com").await.unwrap(),
            Some(alice.clone())
        );
        drop(store);

        // Another key opens nothing.
        let other = SqliteStore::open(&db.0, SecretKey::from_bytes([7; secrets::KEY_LEN]))
            .await
            .unwrap();
        let err = other.get_user("alice@contoso.com").await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{msg}");
        assert!(msg.contains("Alice@contoso.com"), "{msg}");
        assert!(
            !msg.contains("ALICEOATHSECRET") && !msg.contains("alice-static"),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn used_codes_are_stored_as_keyed_digests() {
        let db = TempDb::new("digest");
        let store = SqliteStore::open(&db.0, key()).await.unwrap();
        store.add_user(&UserRecord::new("carol")).await.unwrap();
        assert!(store
            .mark_code_used("carol", "987654", unix_now() + 300)
            .await
            .unwrap());
        let c = Connection::open(&db.0).unwrap();
        let digest: String = c
            .query_row("SELECT digest FROM used_codes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(digest, secrets::code_digest(&key(), "987654"));
        assert!(!contains(&db.raw_bytes(), "987654"));
    }

    #[test]
    fn wildcard_matching() {
        let m = |p: &str, t: &str, cs: bool| {
            text_matches(
                &TextFilter {
                    pattern: p.into(),
                    case_sensitive: cs,
                },
                t,
            )
        };
        assert!(m("", "anything", true));
        assert!(m("*", "", true));
        assert!(m("a*c", "abbbc", true));
        assert!(m("a*c", "ac", true));
        assert!(!m("a*c", "acb", true));
        assert!(m("*b*", "abc", true));
        assert!(m("**", "x", true));
        assert!(m("a%_?", "a%_?", true));
        assert!(!m("a%", "ab", true));
        assert!(!m("a_", "ab", true));
        assert!(!m("a?", "ab", true));
        assert!(m("ÄB*", "äbc", false));
        assert!(!m("ÄB*", "äbc", true));
        assert!(m("*issi*", "mississippi", true));
        assert!(!m("abc", "abcd", true));
        let phone = |p: &str, n: &str| {
            phone_matches(
                p,
                &Phone {
                    number: n.into(),
                    ..Phone::default()
                },
                &Phone::default(),
            )
        };
        assert!(phone("425*", "(425) 555-0100"));
        assert!(phone("425-555-0100", "4255550100"));
        assert!(!phone("425*", "206 555 0100"));
        assert!(phone("*", ""));
        assert!(phone("", "1"));
    }
}
