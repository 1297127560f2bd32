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
//! SQLite calls block, so writes run on [`tokio::task::spawn_blocking`] with the one connection
//! behind a mutex; the reads of an authentication run on the caller's thread when that mutex is
//! free (a WAL read never waits for the disk's sync), and in memory everything does. OATH secrets
//! and static tokens are sealed with [`secrets::seal`] before
//! they reach SQLite and opened after they leave it, bound to the user by the associated data; a
//! row that does not open is reported as [`StoreError::Corrupt`] naming the user and the field.

use std::fmt;
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{
    params, params_from_iter, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior,
};

use super::row::{
    self, kind_literal, open_field, parse_kind, prefix, seal_field, unix_now, username_key,
    Columns, RawUser, UserRow, Value, FIELD_OATH_SECRET, FIELD_STATIC_TOKEN,
};
use super::secrets::{self, SecretKey};
use super::{
    Bypass, CallClaim, CallKey, CallState, Cause, FailureCount, FailureRule, Store, StoreError,
    StoreResult, TaskEnd, Transaction, TransactionKind, UserFilter, UserRecord, UserStanding,
    CLAIM_LAPSED,
};
use crate::pfwssdk::wire::WireEnum;

/// The schema migrations in order: migration `i` (0-based) brings the schema to version `i + 1`.
/// Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/0001_init.sql"),
    include_str!("migrations/sqlite/0002_transaction_target.sql"),
    include_str!("migrations/sqlite/0003_inflight_calls.sql"),
    include_str!("migrations/sqlite/0004_external_id.sql"),
    include_str!("migrations/sqlite/0005_lockout.sql"),
    include_str!("migrations/sqlite/0006_key_check.sql"),
];

/// How long a statement waits for another process's lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `SELECT <all user columns> FROM users`.
static SELECT_USERS: LazyLock<String> = LazyLock::new(row::select_users_sql);

/// `SELECT <all user columns> FROM users WHERE username_key = ?1`.
static SELECT_USER: LazyLock<String> =
    LazyLock::new(|| format!("{} WHERE username_key = ?1", row::select_users_sql()));

/// The user, its block and the stored ends of its lock and bypass in one statement
/// ([`row::select_standing_sql`]; the time is compared by [`row::StandingEnds::at`]).
static SELECT_STANDING: LazyLock<String> =
    LazyLock::new(|| row::select_standing_sql(|n| format!("?{n}")));

/// Inserts a user unless the key exists (`?1`… in [`USER_COLUMNS`](row::USER_COLUMNS) order).
static INSERT_USER: LazyLock<String> = LazyLock::new(|| row::insert_user_sql(|n| format!("?{n}")));

/// Replaces every column but the key and the username as first stored.
static UPDATE_USER: LazyLock<String> = LazyLock::new(|| row::update_user_sql(|n| format!("?{n}")));

/// Counts a failed attempt ([`row::record_failure_sql`]).
static RECORD_FAILURE: LazyLock<String> =
    LazyLock::new(|| row::record_failure_sql(|n| format!("?{n}")));

/// Who else may use a database file, decided when it is opened.
///
/// Claiming every provider call in the database, in case another process serves from the same
/// file, cost about half a file store's throughput (BENCHMARKS.md); a process that knows it serves
/// alone can keep the calls in flight in memory, as the in-memory store does. The lock file next to
/// the database (`<file>.lock`) makes that knowledge true rather than assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse {
    /// One serving process owns the file (the default for `pfgate serve`): an exclusive lock on the
    /// lock file, held for the store's lifetime; calls in flight are shared in this process only.
    /// Opening is refused while any other process holds the lock.
    Owned,
    /// Several serving processes share the file (`store.shared_file = true`): a shared lock, so an
    /// owning process is refused while they run and they are refused while it runs; calls in
    /// flight are claimed in the database.
    Shared,
    /// No lock: commands that serve nothing (`pfgate users`), which must work beside a running
    /// server, and tests opening one file twice in a process. Calls are claimed in the database.
    Unlocked,
}

/// The embedded SQLite store. Cheap to share behind an `Arc<dyn Store>`.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    key: Arc<SecretKey>,
    path: Option<PathBuf>,
    migrations_applied: usize,
    /// Whether other processes may serve from the file ([`Store::is_shared`]).
    shared: bool,
    /// The lock file, held (and so locked) as long as the store lives; `None` unlocked or in memory.
    _lock: Option<File>,
    /// The standings read since the last write ([`Standings`]).
    standings: Arc<Mutex<Standings>>,
}

/// The standings a store has read since the database last changed, by username key (`None`: no
/// such user), so that an authentication of a user read before costs a lookup instead of
/// SQLite's statement and its thirty columns (about a fifth of a `PfAuthUser_5`; issue #21).
///
/// Sound because every change is seen before a read answers from it:
/// - this process's own: every use of the connection but a read ([`SqliteStore::run`], so every
///   write) empties it first, under the connection's lock; it is filled under the same lock;
/// - another connection's, to a file (`pfgate users` beside a running server, which opens it
///   without a lock): each read first asks SQLite's `PRAGMA data_version`, which changes when
///   another connection commits, and empties it when it did. An in-memory database has no other
///   connection, so it skips the question.
///
/// What depends on the time (a lock still running, a bypass still valid) is decided at each read
/// from the stored ends ([`row::StandingEnds::at`]), never cached. The secrets stay as stored (sealed)
/// and are opened at each read, as without it.
struct Standings {
    by_key: std::collections::HashMap<String, Option<RawStanding>>,
    /// Whether other connections can write the database (a file).
    outside_writers: bool,
    /// The file's `data_version` when the standings kept were read.
    data_version: Option<i64>,
}

impl Standings {
    /// The most standings kept: at the bound the map starts again empty, so memory stays bounded
    /// whatever names callers send.
    const MAX: usize = 4096;
}

/// A user's row as stored (secrets sealed) and what [`row::select_standing_sql`] reads beside it.
#[derive(Clone)]
struct RawStanding {
    user: RawUser,
    ends: row::StandingEnds,
}

impl RawStanding {
    /// The standing at `now`, the secrets opened.
    fn at(self, now: i64, key: &SecretKey) -> StoreResult<UserStanding> {
        Ok(self.ends.at(self.user.into_record(key)?, now))
    }
}

/// Reads the standing of the user with `key` from the database.
fn read_standing(conn: &Connection, key: &str) -> StoreResult<Option<RawStanding>> {
    let what = "reading a user's standing";
    conn.prepare_cached(&SELECT_STANDING)
        .ctx(what)?
        .query_row([key], |r| {
            Ok(RawStanding {
                user: RawUser::read(r)?,
                ends: row::StandingEnds {
                    blocked: r.get(row::STANDING_BLOCKED)?,
                    lock_ends: r.get(row::STANDING_LOCK_ENDS)?,
                    bypass_ends: r.get(row::STANDING_BYPASS_ENDS)?,
                },
            })
        })
        .optional()
        .ctx(what)
}

/// [`read_standing`] through the store's [`Standings`]. Called with the connection's lock held.
fn cached_standing(
    conn: &Connection,
    standings: &Mutex<Standings>,
    key: String,
) -> StoreResult<Option<RawStanding>> {
    let mut standings = standings.lock().unwrap_or_else(PoisonError::into_inner);
    if standings.outside_writers {
        let version = data_version(conn)?;
        if standings.data_version != Some(version) {
            standings.by_key.clear();
            standings.data_version = Some(version);
        }
    }
    if let Some(known) = standings.by_key.get(&key) {
        return Ok(known.clone());
    }
    let read = read_standing(conn, &key)?;
    if standings.by_key.len() >= Standings::MAX {
        standings.by_key.clear();
    }
    standings.by_key.insert(key, read.clone());
    Ok(read)
}

/// SQLite's count of other connections' commits to the database, as this connection sees it.
fn data_version(conn: &Connection) -> StoreResult<i64> {
    let what = "reading the database's data_version";
    conn.prepare_cached("PRAGMA data_version")
        .ctx(what)?
        .query_row([], |r| r.get(0))
        .ctx(what)
}

/// Forgets every standing read so far: called, with the connection's lock held, before any use
/// of the connection that may write.
fn forget_standings(standings: &Mutex<Standings>) {
    standings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .by_key
        .clear();
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("migrations_applied", &self.migrations_applied)
            .finish_non_exhaustive()
    }
}

/// Creates the database file owner-only before SQLite opens it, so that SQLite, which gives its
/// WAL and shared-memory files the database file's permissions, creates those owner-only too;
/// warns about any of the three that group or others can read (issue #23, item 11). A file that
/// cannot be created here is left to `Connection::open`, which reports the problem.
fn owner_only_files(path: &Path) {
    let _ = crate::core::at_rest::create_owner_only(path);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        crate::core::at_rest::warn_if_exposed(Path::new(&file), "SQLite database file");
    }
}

impl SqliteStore {
    /// The schema version this build writes and understands.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens (creating if needed) the database file at `path` in WAL mode and brings its schema up
    /// to date, without a lock ([`FileUse::Unlocked`]). A database whose schema is newer than this
    /// build is refused.
    pub async fn open(path: impl AsRef<Path>, key: SecretKey) -> StoreResult<Self> {
        Self::open_as(path, key, FileUse::Unlocked).await
    }

    /// [`SqliteStore::open`], locking the file as `how` says; a lock held by another process in a
    /// conflicting way refuses the open ([`Cause::FileInUse`]) rather than waiting.
    pub async fn open_as(
        path: impl AsRef<Path>,
        key: SecretKey,
        how: FileUse,
    ) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking_as(&path, key, how))
            .await
            .map_err(|_| {
                StoreError::unavailable_while(
                    "opening the SQLite database",
                    Cause::Task(TaskEnd::Failed),
                )
            })?
    }

    /// [`SqliteStore::open`] for blocking context (no runtime needed).
    pub fn open_blocking(path: &Path, key: SecretKey) -> StoreResult<Self> {
        Self::open_blocking_as(path, key, FileUse::Unlocked)
    }

    /// [`SqliteStore::open_as`] for blocking context (no runtime needed).
    pub fn open_blocking_as(path: &Path, key: SecretKey, how: FileUse) -> StoreResult<Self> {
        let what = format!("opening SQLite database {}", path.display());
        // Locked before SQLite touches the file, so a refused process changes nothing in it.
        let lock = lock_file(path, how).map_err(|e| prefix(&what, e))?;
        owner_only_files(path);
        let conn = Connection::open(path).ctx(&what)?;
        configure(&conn, true).map_err(|e| prefix(&what, e))?;
        let mut store = Self::with_connection(conn, key, Some(path.to_path_buf()))
            .map_err(|e| prefix(&what, e))?;
        store.shared = how != FileUse::Owned;
        store._lock = lock;
        Ok(store)
    }

    /// A fresh database in memory (demo and tests): gone with the store.
    pub async fn in_memory(key: SecretKey) -> StoreResult<Self> {
        tokio::task::spawn_blocking(move || Self::in_memory_blocking(key))
            .await
            .map_err(|_| {
                StoreError::unavailable_while(
                    "opening an in-memory SQLite database",
                    Cause::Task(TaskEnd::Failed),
                )
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
        check_key(&mut conn, &key)?;
        let standings = Arc::new(Mutex::new(Standings {
            by_key: std::collections::HashMap::new(),
            outside_writers: path.is_some(),
            data_version: None,
        }));
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            key: Arc::new(key),
            path,
            migrations_applied,
            shared: false,
            _lock: None,
            standings,
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

    /// Runs the read-only `f` on this thread when the connection is free, else as [`Self::run`].
    ///
    /// A read of a WAL database (files are always WAL: [`configure`]) neither waits for a writer
    /// nor syncs, so like every statement of the in-memory store it takes microseconds; the
    /// hand-off to the blocking pool (two thread switches) cost more than the read and held the
    /// file store's PfAuthUser_5 rate at about half the in-memory store's (BENCHMARKS.md). When
    /// a write holds the connection (its commit may wait milliseconds for the disk) the read goes
    /// to the pool as before, so no runtime thread waits behind a disk.
    async fn read<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &SecretKey) -> StoreResult<T> + Send + 'static,
    {
        match self.read_if_free(op, f) {
            Ok(done) => done,
            Err(f) => self.run(op, f).await,
        }
    }

    /// `f` on this thread if the connection's lock is free at once; `f` back if not.
    fn read_if_free<T, F>(&self, op: &'static str, f: F) -> Result<StoreResult<T>, F>
    where
        F: FnOnce(&mut Connection, &SecretKey) -> StoreResult<T>,
    {
        let mut conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            // As in `run`: a panic under the lock left no transaction open.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(f),
        };
        let key = &self.key;
        Ok(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn, key)))
                .unwrap_or_else(|_| {
                    Err(StoreError::unavailable_while(
                        op,
                        Cause::Task(TaskEnd::Panicked),
                    ))
                }),
        )
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &SecretKey) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let key = Arc::clone(&self.key);
        let standings = self.standings.clone();
        if self.path().is_none() {
            // In memory there is no disk to wait for: a statement takes microseconds, less than the
            // hand-off to the blocking pool would (which dominated an authentication's cost on
            // one core). A panic still ends as `Unavailable`, as on the pool.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                // Before `f`, so that even a write that panics half-way leaves nothing read
                // before it.
                forget_standings(&standings);
                f(&mut conn, &key)
            }))
            .unwrap_or_else(|_| {
                Err(StoreError::unavailable_while(
                    op,
                    Cause::Task(TaskEnd::Panicked),
                ))
            });
        }
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (an open
            // transaction rolls back when dropped), so a poisoned lock is still usable.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            forget_standings(&standings);
            f(&mut conn, &key)
        })
        .await
        .map_err(|e| {
            let how = if e.is_panic() {
                TaskEnd::Panicked
            } else {
                TaskEnd::Cancelled
            };
            StoreError::unavailable_while(op, Cause::Task(how))
        })?
    }
}

/// The lock file of the database at `path`: `<path>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut file = path.as_os_str().to_owned();
    file.push(".lock");
    PathBuf::from(file)
}

/// Takes the lock `how` asks for on [`lock_path`] (created owner-only if missing), without
/// waiting: a running owner must refuse a second start, not hang it. The owner writes its process
/// id into the file so that the refusal can name it; the lock itself, not the text, is what
/// counts (the system drops it when the process ends, however it ends).
fn lock_file(path: &Path, how: FileUse) -> StoreResult<Option<File>> {
    if how == FileUse::Unlocked {
        return Ok(None);
    }
    let lock = lock_path(path);
    let failed = |e: std::io::Error| {
        StoreError::unavailable_while(format!("locking {}", lock.display()), Cause::LockFile(e))
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&lock).map_err(failed)?;
    let taken = match how {
        FileUse::Owned => file.try_lock(),
        _ => file.try_lock_shared(),
    };
    match taken {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            // Best effort: the text only names the owner in the refusal.
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let owner = if owner.is_empty() || owner.len() > 20 {
                "pfgate processes sharing it (store.shared_file = true)".to_string()
            } else {
                format!("pfgate process {owner}")
            };
            return Err(StoreError::unavailable(Cause::FileInUse { lock, owner }));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
    }
    // A sharer empties the file, so that an owner refused later does not name a process id left
    // by an owner long gone.
    let wrote = file.set_len(0).and_then(|()| file.rewind());
    let wrote = match how {
        FileUse::Owned => wrote.and_then(|()| writeln!(file, "{}", std::process::id())),
        _ => wrote,
    };
    wrote.map_err(failed)?;
    Ok(Some(file))
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
        return Err(StoreError::unavailable(Cause::NoForeignKeys));
    }
    if file {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx("enabling WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::unavailable(Cause::WalRefused {
                journal_mode: mode,
            }));
        }
    }
    Ok(())
}

/// Runs `f` with `PRAGMA synchronous = NORMAL`, for the rows of provider calls in flight: they
/// matter only while the processes that wrote them run, so their commits need not wait for the
/// disk. Waiting twice per authentication (claim and ending) cut a file store's throughput about
/// fivefold (BENCHMARKS.md); a claim lost in a power cut loses nothing, since every waiter's own
/// deadline ends its wait. Other processes see the rows at once all the same (through the WAL
/// index, not the disk). The setting belongs to the connection and is put back before anything else
/// uses it (the connection is behind the store's mutex), so every other write keeps its durability.
///
/// Why NORMAL and not OFF: in WAL mode NORMAL already skips the `fsync` on commit, but still syncs
/// at checkpoints. An automatic checkpoint can run inside one of these commits; under OFF it would
/// reset the WAL without syncing the database file, and a power cut then could corrupt the whole
/// store, user directory included. Under NORMAL the database stays consistent (SQLite's own
/// guarantee for WAL); only the latest claim rows may be lost.
fn unsynced<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    const NORMAL: i64 = 1;
    let before: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .ctx("reading the synchronous setting")?;
    if before <= NORMAL {
        return f(conn);
    }
    conn.pragma_update(None, "synchronous", NORMAL)
        .ctx("relaxing the synchronous setting")?;
    let result = f(conn);
    conn.pragma_update(None, "synchronous", before)
        .ctx("restoring the synchronous setting")?;
    result
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
            return Err(StoreError::unavailable(Cause::SchemaTooNew {
                found: current,
                known: SqliteStore::SCHEMA_VERSION,
            }));
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

/// Compares the database's key check value with `key`'s, writing it first if the database has
/// none (and `key` opens the secrets already sealed there, if any): a different key is
/// [`StoreError::KeyMismatch`]. One IMMEDIATE transaction, so two processes opening a new file at
/// once cannot each write their own.
fn check_key(conn: &mut Connection, key: &SecretKey) -> StoreResult<()> {
    let what = "checking the secrets key";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(what)?;
    let stored = stored_key_check(&tx)?;
    if let Some(stored) = stored {
        return row::compare_key_check(key, &stored);
    }
    let sealed = sealed_rows(&tx, row::KEY_PROOF_SQL)?;
    if !row::key_opens_any(key, &sealed) {
        return Err(StoreError::KeyMismatch(
            "the database has no key check value yet, and this key opens none of its secrets",
        ));
    }
    tx.execute(
        "INSERT INTO key_check (id, digest, created_at) VALUES (1, ?1, ?2)",
        params![secrets::key_check(key), unix_now()],
    )
    .ctx(what)?;
    tx.commit().ctx(what)
}

/// The database's key check value, if it has one.
fn stored_key_check(conn: &Connection) -> StoreResult<Option<String>> {
    conn.query_row(row::KEY_CHECK_SQL, [], |r| r.get(0))
        .optional()
        .ctx("reading the secrets key check")
}

/// The users' sealed values that `sql` ([`row::SEALED_ROWS_SQL`], [`row::KEY_PROOF_SQL`]) selects.
fn sealed_rows(conn: &Connection, sql: &str) -> StoreResult<Vec<row::SealedRow>> {
    let what = "reading sealed secrets";
    conn.prepare(sql)
        .ctx(what)?
        .query_map([], |r| {
            Ok(row::SealedRow {
                username: r.get(0)?,
                username_key: r.get(1)?,
                oath_secret: r.get(2)?,
                static_token: r.get(3)?,
            })
        })
        .ctx(what)?
        .collect::<Result<Vec<_>, _>>()
        .ctx(what)
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
        _ => StoreError::unavailable_while(op.to_string(), Cause::Sqlite(e)),
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

/// The error of writing a user row: [`StoreError::ExternalIdTaken`], naming the holder, when the
/// unique index on `external_id` refused it; otherwise as [`db_err`].
fn user_write_err(
    conn: &Connection,
    op: &str,
    row: &UserRow<'_>,
    e: rusqlite::Error,
) -> StoreError {
    let on_external_id = e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
        && e.to_string().contains("users.external_id");
    match (&row.external_id, on_external_id) {
        (Some(external_id), true) => {
            let holder = conn
                .query_row(
                    "SELECT username FROM users WHERE external_id = ?1",
                    [external_id],
                    |r| r.get::<_, String>(0),
                )
                .ok()
                .unwrap_or_else(|| "another user".into());
            StoreError::ExternalIdTaken {
                external_id: external_id.clone(),
                holder,
            }
        }
        _ => db_err(op, e),
    }
}

fn user_exists(conn: &Connection, key: &str) -> StoreResult<bool> {
    conn.query_row("SELECT 1 FROM users WHERE username_key = ?1", [key], |_| {
        Ok(())
    })
    .optional()
    .map(|found| found.is_some())
    .ctx("looking up a user")
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef;
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Text(t) | Value::OptText(Some(t)) => ValueRef::Text(t.as_bytes()),
            Value::Int(i) | Value::OptInt(Some(i)) => ValueRef::Integer(i),
            Value::Flag(f) => ValueRef::Integer(i64::from(f)),
            Value::OptText(None) | Value::OptInt(None) => ValueRef::Null,
        }))
    }
}

impl Columns for Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, index: usize) -> rusqlite::Result<String> {
        self.get(index)
    }
    fn opt_text(&self, index: usize) -> rusqlite::Result<Option<String>> {
        self.get(index)
    }
    fn int(&self, index: usize) -> rusqlite::Result<i64> {
        self.get(index)
    }
    fn opt_int(&self, index: usize) -> rusqlite::Result<Option<i64>> {
        self.get(index)
    }
    fn flag(&self, index: usize) -> rusqlite::Result<bool> {
        self.get(index)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        // The key check too: an instance still running after the key was rotated is not ready
        // (it would seal with the old key), and says why.
        self.run("health", |conn, key| {
            stored_key_check(conn)?.map_or(Ok(()), |s| row::compare_key_check(key, &s))
        })
        .await
    }

    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let key = username_key(username);
        self.read("get_user", move |conn, secrets_key| {
            // The hot statements of an authentication are prepared once per connection (rusqlite's
            // statement cache), not parsed again on every call.
            let raw = conn
                .prepare_cached(&SELECT_USER)
                .ctx("reading a user")?
                .query_row([&key], |r| RawUser::read(r))
                .optional()
                .ctx("reading a user")?;
            raw.map(|r| r.into_record(secrets_key)).transpose()
        })
        .await
    }

    async fn user_standing(&self, username: &str, now: i64) -> StoreResult<Option<UserStanding>> {
        let key = username_key(username);
        let standings = self.standings.clone();
        // A file shared with other serving processes changes at each call (every call is
        // claimed in it), so kept standings would be forgotten before their next use.
        let keep = !self.shared;
        self.read("user_standing", move |conn, secrets_key| {
            let raw = if keep {
                cached_standing(conn, &standings, key)?
            } else {
                read_standing(conn, &key)?
            };
            raw.map(|r| r.at(now, secrets_key)).transpose()
        })
        .await
    }

    async fn add_user(&self, user: &UserRecord) -> StoreResult<()> {
        let user = user.clone();
        self.run("add_user", move |conn, key| {
            let row = UserRow::new(&user, key)?;
            let added = conn
                .execute(&INSERT_USER, params_from_iter(row.insert_values()))
                .map_err(|e| user_write_err(conn, "adding a user", &row, e))?;
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
                .execute(&UPDATE_USER, params_from_iter(row.update_values()))
                .map_err(|e| user_write_err(conn, "updating a user", &row, e))?;
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
                let raw = RawUser::read(row).ctx(what)?;
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
                "INSERT INTO transactions \
                 (id, username_key, kind, code_hash, expires_at, target, started_by) \
                 SELECT ?1, username_key, ?3, ?4, ?5, ?6, ?7 FROM users WHERE username_key = ?2",
                params![
                    t.id,
                    username_key(&t.username),
                    kind_literal(t.kind),
                    t.code_hash,
                    t.expires_at,
                    t.target,
                    t.started_by
                ],
            );
            match result {
                Ok(0) => Err(StoreError::NotFound(t.username)),
                Ok(_) => Ok(()),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Err(StoreError::unavailable_while(
                        "recording a transaction",
                        Cause::DuplicateTransaction,
                    ))
                }
                Err(e) => Err(db_err("recording a transaction", e)),
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
        let id = id.to_owned();
        let owner = username_key(username);
        let started_by = started_by.to_owned();
        self.run("take_transaction", move |conn, _| {
            let what = "taking a transaction";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            // The single DELETE ... RETURNING is the decision: at most one caller gets the row.
            // The owner is in the WHERE: another user's or principal's attempt leaves it alone.
            let taken: Option<(String, String, Option<String>, i64, Option<String>)> = tx
                .query_row(
                    "DELETE FROM transactions WHERE id = ?1 AND expires_at >= ?2 \
                     AND username_key = ?3 AND started_by = ?4 \
                     RETURNING username_key, kind, code_hash, expires_at, target",
                    params![id, now, owner, started_by],
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
                        started_by,
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
        started_by: &str,
        now: i64,
    ) -> StoreResult<Option<Transaction>> {
        let key = username_key(username);
        let kind_text = kind_literal(kind);
        let started_by = started_by.to_owned();
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
                     AND started_by = ?4 ORDER BY expires_at DESC LIMIT 1) \
                     RETURNING id, code_hash, expires_at, target",
                    params![key, kind_text, now, started_by],
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
                        started_by,
                    })
                }
            };
            tx.commit().ctx(what)?;
            Ok(result)
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
        let name = username.to_owned();
        self.run("record_failure", move |conn, _| {
            let what = "counting a failed attempt";
            let counted: Option<(i64, Option<i64>)> = conn
                .prepare_cached(&RECORD_FAILURE)
                .ctx(what)?
                .query_row(
                    params![
                        key,
                        now,
                        i64::from(rule.threshold),
                        rule.window_secs,
                        rule.lock_secs
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .ctx(what)?;
            let (failures, locked_until) = counted.ok_or(StoreError::NotFound(name))?;
            Ok(FailureCount {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                locked_until,
            })
        })
        .await
    }

    async fn locked_until(&self, username: &str, now: i64) -> StoreResult<Option<i64>> {
        let key = username_key(username);
        self.run("locked_until", move |conn, _| {
            let what = "reading a lockout";
            conn.prepare_cached(
                "SELECT locked_until FROM auth_failures \
                 WHERE username_key = ?1 AND locked_until > ?2",
            )
            .ctx(what)?
            .query_row(params![key, now], |r| r.get(0))
            .optional()
            .ctx(what)
        })
        .await
    }

    async fn clear_failures(&self, username: &str, now: i64) -> StoreResult<bool> {
        let key = username_key(username);
        self.run("clear_failures", move |conn, _| {
            let what = "clearing failed attempts";
            let cleared: Option<Option<i64>> = conn
                .prepare_cached(
                    "DELETE FROM auth_failures WHERE username_key = ?1 RETURNING locked_until",
                )
                .ctx(what)?
                .query_row([&key], |r| r.get(0))
                .optional()
                .ctx(what)?;
            Ok(cleared.flatten().is_some_and(|until| until > now))
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

    fn is_shared(&self) -> bool {
        // Other processes can serve from the file unless this one holds its exclusive lock; nobody
        // else sees an in-memory database.
        self.shared
    }

    async fn claim_call(
        &self,
        key: &CallKey,
        request_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<CallClaim> {
        let (key, id) = (key.clone(), request_id.to_owned());
        self.run("claim_call", move |conn, secrets_key| {
            let what = "claiming a provider call";
            let call = row::call_key(secrets_key, &key);
            unsynced(conn, |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .ctx(what)?;
                // A claim whose lease lapsed (its owner died or lost the database) is given up:
                // its waiters read that and claim the call again.
                tx.prepare_cached(
                    "UPDATE inflight_calls SET outcome = ?3, expires_at = ?4 \
                 WHERE call_key = ?1 AND outcome IS NULL AND expires_at < ?2",
                )
                .ctx(what)?
                .execute(params![
                    call,
                    now,
                    CLAIM_LAPSED,
                    now + row::EXPIRED_CALL_KEEP_SECS
                ])
                .ctx(what)?;
                tx.prepare_cached(
                    "DELETE FROM inflight_calls WHERE outcome IS NOT NULL AND expires_at < ?1",
                )
                .ctx("purging ended calls")?
                .execute([now])
                .ctx("purging ended calls")?;
                // The partial unique index decides: one pending row per user and number.
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO inflight_calls (request_id, call_key, outcome, expires_at) \
                     VALUES (?1, ?2, NULL, ?3) ON CONFLICT DO NOTHING",
                    )
                    .ctx(what)?
                    .execute(params![id, call, expires_at])
                    .ctx(what)?;
                let claim = if inserted > 0 {
                    CallClaim::Placed
                } else {
                    let pending: Option<String> = tx
                        .prepare_cached(
                            "SELECT request_id FROM inflight_calls \
                         WHERE call_key = ?1 AND outcome IS NULL",
                        )
                        .ctx(what)?
                        .query_row([&call], |r| r.get(0))
                        .optional()
                        .ctx(what)?;
                    match pending {
                        Some(other) => CallClaim::Joined(other),
                        None => {
                            return Err(StoreError::unavailable_while(
                                what,
                                Cause::RequestIdReused {
                                    request_id: id.to_string(),
                                },
                            ))
                        }
                    }
                };
                tx.commit().ctx(what)?;
                Ok(claim)
            })
        })
        .await
    }

    async fn finish_call(
        &self,
        request_id: &str,
        outcome: &str,
        keep_until: i64,
    ) -> StoreResult<()> {
        let (id, outcome) = (request_id.to_owned(), outcome.to_owned());
        self.run("finish_call", move |conn, _| {
            unsynced(conn, |conn| {
                conn.prepare_cached(
                    "UPDATE inflight_calls SET outcome = ?2, expires_at = ?3 WHERE request_id = ?1",
                )
                .ctx("recording a call's ending")?
                .execute(params![id, outcome, keep_until])
                .ctx("recording a call's ending")?;
                Ok(())
            })
        })
        .await
    }

    async fn rotate_key(&self, new_key: SecretKey) -> StoreResult<usize> {
        self.run("rotate_key", move |conn, old_key| {
            let what = "rotating the secrets key";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(what)?;
            // Checked again in the transaction: another rotation may have run since this store
            // opened.
            if let Some(stored) = stored_key_check(&tx)? {
                row::compare_key_check(old_key, &stored)?;
            }
            let sealed = sealed_rows(&tx, row::SEALED_ROWS_SQL)?;
            for r in &sealed {
                let (oath_secret, static_token) = row::reseal_row(old_key, &new_key, r)?;
                tx.execute(
                    "UPDATE users SET oath_secret = ?2, static_token = ?3 WHERE username_key = ?1",
                    params![r.username_key, oath_secret, static_token],
                )
                .ctx(what)?;
            }
            tx.execute_batch("DELETE FROM used_codes; DELETE FROM inflight_calls;")
                .ctx(what)?;
            tx.execute(
                &row::upsert_key_check_sql(|n| format!("?{n}")),
                params![secrets::key_check(&new_key), unix_now()],
            )
            .ctx(what)?;
            tx.commit().ctx(what)?;
            Ok(sealed.len())
        })
        .await
    }

    async fn renew_call(&self, request_id: &str, lease_until: i64) -> StoreResult<bool> {
        let id = request_id.to_owned();
        self.run("renew_call", move |conn, _| {
            let what = "renewing a call's lease";
            unsynced(conn, |conn| {
                let renewed = conn
                    .prepare_cached(
                        "UPDATE inflight_calls SET expires_at = ?2 \
                         WHERE request_id = ?1 AND outcome IS NULL",
                    )
                    .ctx(what)?
                    .execute(params![id, lease_until])
                    .ctx(what)?;
                Ok(renewed > 0)
            })
        })
        .await
    }

    async fn call_state(&self, request_id: &str) -> StoreResult<Option<CallState>> {
        let id = request_id.to_owned();
        self.run("call_state", move |conn, _| {
            let what = "reading a call's state";
            let found: Option<(Option<String>, i64)> = conn
                .prepare_cached(
                    "SELECT outcome, expires_at FROM inflight_calls WHERE request_id = ?1",
                )
                .ctx(what)?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .ctx(what)?;
            Ok(found.map(|(outcome, expires_at)| row::call_state(outcome, expires_at)))
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::suite;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn key() -> SecretKey {
        SecretKey::from_bytes([0x42; secrets::KEY_LEN])
    }

    /// A unique database path in the temp dir; removes the file and its WAL companions on drop.
    pub(crate) struct TempDb(pub(crate) PathBuf);

    impl TempDb {
        pub(crate) fn new(name: &str) -> Self {
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
            ["", "-wal", "-shm", "-journal", ".lock"]
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
    async fn in_memory_is_private_to_the_process() {
        let store = SqliteStore::in_memory(key()).await.unwrap();
        assert_eq!(store.migrations_applied(), MIGRATIONS.len());
        assert!(store.path().is_none());
        assert!(!store.is_shared());
    }

    /// How many standings the store keeps.
    fn kept(store: &SqliteStore) -> usize {
        store.standings.lock().unwrap().by_key.len()
    }

    /// The in-memory store answers a standing read before from memory, and forgets every
    /// standing at a write (`suite::check_user_standing` checks the answers themselves, at the
    /// boundaries of a lock and a bypass, on this store too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_in_memory_store_keeps_standings_until_a_write() {
        let store = SqliteStore::in_memory(key()).await.unwrap();
        let name = "kept@contoso.com";
        store.add_user(&UserRecord::new(name)).await.unwrap();
        assert_eq!(kept(&store), 0);
        let first = store.user_standing(name, 100).await.unwrap();
        assert!(first.is_some());
        assert_eq!(kept(&store), 1);
        let again = store.user_standing("KEPT@contoso.com", 100).await.unwrap();
        assert_eq!(again, first, "the same answer, from memory");
        assert_eq!(kept(&store), 1);

        assert!(store.block_user(name, "fraud", "helpdesk").await.unwrap());
        assert_eq!(kept(&store), 0, "a write forgets every standing");
        let blocked = store.user_standing(name, 100).await.unwrap().unwrap();
        assert!(blocked.blocked);
        // A read through `run` (as when the connection was busy) forgets them too: harmless.
        assert!(store.delete_user(name).await.unwrap());
        assert_eq!(store.user_standing(name, 100).await.unwrap(), None);
        assert_eq!(kept(&store), 1, "an unknown user is kept too");
        store.add_user(&UserRecord::new(name)).await.unwrap();
        assert!(store.user_standing(name, 100).await.unwrap().is_some());
    }

    /// A file store owned by a running server sees at its next read what another connection
    /// (`pfgate users block …` beside it, which opens the file without a lock) committed:
    /// `PRAGMA data_version` changed, so the standings kept are forgotten.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_store_sees_another_connections_write_at_the_next_read() {
        let db = TempDb::new("standings-file");
        let server = SqliteStore::open_as(&db.0, key(), FileUse::Owned)
            .await
            .unwrap();
        let name = "watched@contoso.com";
        server.add_user(&UserRecord::new(name)).await.unwrap();
        let standing = || async { server.user_standing(name, 100).await.unwrap() };
        assert!(!standing().await.unwrap().blocked);
        assert!(!standing().await.unwrap().blocked);
        assert_eq!(kept(&server), 1, "kept while nothing changed");

        let cli = SqliteStore::open(&db.0, key()).await.unwrap();
        assert!(cli.block_user(name, "fraud", "helpdesk").await.unwrap());
        assert!(
            standing().await.unwrap().blocked,
            "the block is seen at once"
        );
        assert!(cli.unblock_user(name).await.unwrap());
        assert!(!standing().await.unwrap().blocked);
        cli.add_bypass(&Bypass {
            username: name.into(),
            reason: "travel".into(),
            expires_at: 200,
            created_by: "helpdesk".into(),
        })
        .await
        .unwrap();
        assert!(standing().await.unwrap().bypass);
        for at in [95, 96, 97, 98, 99] {
            cli.record_failure(
                name,
                at,
                FailureRule {
                    threshold: 5,
                    window_secs: 60,
                    lock_secs: 30,
                },
            )
            .await
            .unwrap();
        }
        assert_eq!(standing().await.unwrap().locked_until, Some(129));
        assert!(cli.delete_user(name).await.unwrap());
        assert_eq!(standing().await, None, "the deletion is seen at once");
    }

    /// Names callers send cannot grow the standings kept past their bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_standings_kept_are_bounded() {
        let store = SqliteStore::in_memory(key()).await.unwrap();
        for i in 0..Standings::MAX + 10 {
            let name = format!("nobody-{i}@contoso.com");
            assert_eq!(store.user_standing(&name, 100).await.unwrap(), None);
            assert!(kept(&store) <= Standings::MAX);
        }
        assert_eq!(kept(&store), 10, "started again empty at the bound");
    }

    /// A read runs on the caller's thread while the connection is free and goes to the blocking
    /// pool, still answering, while something else (a write waiting on the disk) holds it.
    // The lock is held across the await on purpose: it stands for a write holding the connection.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_runs_at_once_only_when_the_connection_is_free() {
        let db = TempDb::new("read-if-free");
        let store = Arc::new(SqliteStore::open(&db.0, key()).await.unwrap());
        let caller = std::thread::current().id();
        let free = store.read_if_free("test", move |_, _| Ok(std::thread::current().id()));
        assert_eq!(free.ok().map(|r| r.unwrap()), Some(caller));

        let conn = Arc::clone(&store.conn);
        let held = conn.lock().unwrap();
        let busy = store.read_if_free("test", |_, _| Ok(()));
        assert!(
            busy.is_err(),
            "a held connection must send the read to the pool"
        );
        let reader = {
            let store = store.clone();
            tokio::spawn(async move { store.get_user("nobody").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!reader.is_finished(), "the read waits for the connection");
        drop(held);
        assert!(reader.await.unwrap().unwrap().is_none());
    }

    fn in_use(e: StoreError) -> (PathBuf, String) {
        match e {
            StoreError::Unavailable(u) => match u.cause {
                Cause::FileInUse { lock, owner } => (lock, owner),
                other => panic!("not in use: {other}"),
            },
            other => panic!("not in use: {other}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_owned_file_is_locked_and_keeps_calls_in_process() {
        let db = TempDb::new("owned");
        let lock = lock_path(&db.0);
        let owner = SqliteStore::open_as(&db.0, key(), FileUse::Owned)
            .await
            .unwrap();
        assert!(!owner.is_shared(), "nobody else serves from an owned file");
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), pid);
        for how in [FileUse::Owned, FileUse::Shared] {
            let e = SqliteStore::open_as(&db.0, key(), how).await.unwrap_err();
            assert_eq!(in_use(e), (lock.clone(), format!("pfgate process {pid}")));
        }
        // Commands that serve nothing open it beside the owner.
        let visitor = SqliteStore::open(&db.0, key()).await.unwrap();
        assert!(visitor.is_shared());
        drop(owner);
        let again = SqliteStore::open_as(&db.0, key(), FileUse::Owned).await;
        assert!(again.is_ok(), "the lock goes with the store");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_file_is_shared_and_refuses_an_owner() {
        let db = TempDb::new("shared");
        let lock = lock_path(&db.0);
        // An owner long gone left its process id behind.
        std::fs::write(&lock, "999999\n").unwrap();
        let a = SqliteStore::open_as(&db.0, key(), FileUse::Shared)
            .await
            .unwrap();
        let b = SqliteStore::open_as(&db.0, key(), FileUse::Shared)
            .await
            .unwrap();
        assert!(a.is_shared() && b.is_shared());
        let e = SqliteStore::open_as(&db.0, key(), FileUse::Owned)
            .await
            .unwrap_err();
        let (held, owner) = in_use(e);
        assert_eq!(held, lock);
        assert!(owner.contains("sharing it"), "{owner}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite_in_file_secrets_not_in_plaintext_and_reopen() {
        let db = TempDb::new("suite");
        let store = Arc::new(SqliteStore::open(&db.0, key()).await.unwrap());
        assert_eq!(store.migrations_applied(), MIGRATIONS.len());
        assert!(store.is_shared(), "other processes can open the file");
        suite::check_secrets_round_trip(store.as_ref()).await;
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
    async fn call_claims_leave_the_synchronous_setting_as_it_was() {
        let db = TempDb::new("sync");
        let store = SqliteStore::open(&db.0, key()).await.unwrap();
        let synchronous = |store: &SqliteStore| -> i64 {
            let conn = store.conn.lock().unwrap();
            conn.pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap()
        };
        let before = synchronous(&store);
        assert_ne!(before, 0, "a file store must sync its other writes");
        let id = "A1000000000000000000000000000001";
        let call = |phone| CallKey::new("sync@contoso.com", phone, "caller", "app", "");
        let claim = store
            .claim_call(&call("+14255550100"), id, 100, 160)
            .await
            .unwrap();
        assert_eq!(claim, CallClaim::Placed);
        assert_eq!(synchronous(&store), before);
        assert!(store.renew_call(id, 170).await.unwrap());
        assert_eq!(synchronous(&store), before);
        store.finish_call(id, "approved", 160).await.unwrap();
        assert_eq!(synchronous(&store), before);
        // A failing claim (a request id used twice) restores it too.
        assert!(store
            .claim_call(&call("+14255550199"), id, 100, 160)
            .await
            .is_err());
        assert_eq!(synchronous(&store), before);
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

        // Another key is refused at open (the key check), with nothing of the secrets in the
        // message.
        let err = SqliteStore::open(&db.0, SecretKey::from_bytes([7; secrets::KEY_LEN]))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::KeyMismatch(_)), "{msg}");
        assert!(
            !msg.contains("ALICEOATHSECRET") && !msg.contains("alice-static"),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_secrets_key_is_refused_at_open() {
        let db = TempDb::new("keycheck");
        let path = db.0.clone();
        let open = |key: SecretKey| {
            let path = path.clone();
            async move {
                SqliteStore::open(&path, key)
                    .await
                    .map(|s| Arc::new(s) as Arc<dyn Store>)
            }
        };
        let forget = || {
            let path = path.clone();
            async move {
                Connection::open(&path)
                    .unwrap()
                    .execute("DELETE FROM key_check", [])
                    .unwrap();
            }
        };
        suite::check_key_check(&open, forget).await;
        suite::check_rotate_key(&open).await;
        // The check value is a digest, not the key.
        let stored: String = Connection::open(&db.0)
            .unwrap()
            .query_row("SELECT digest FROM key_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, secrets::key_check(&suite::key()));
        assert!(!stored.contains(&"42".repeat(secrets::KEY_LEN)));
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
}
