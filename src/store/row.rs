//! The rows of the store, independent of the backend: how a [`UserRecord`] becomes the values of a
//! `users` row and back, the SQL text that is the same in every dialect but for its placeholders,
//! and the `FindUsers` matching done in Rust after the SQL has applied the enum filters.
//!
//! SQLite and PostgreSQL share one schema shape (`migrations/*/0001_init.sql`), so the mapping
//! lives here once: a second backend that wrote its own would sooner or later disagree on an enum
//! literal or on which key a sealed secret is bound to, and a secret sealed by one instance would
//! not open on the other. Each backend only says how it reads a column ([`Columns`]) and writes
//! a [`Value`].

use super::secrets::{self, SecretKey};
use super::{
    CallKey, CallState, Cause, Phone, StoreError, StoreResult, TextFilter, TransactionKind,
    UserFilter, UserRecord, UserStanding, CLAIM_LAPSED,
};
use crate::pfwssdk::wire::WireEnum;

/// Field names in the associated data of sealed values.
pub(super) const FIELD_OATH_SECRET: &str = "oath_secret";
pub(super) const FIELD_STATIC_TOKEN: &str = "static_token";

/// The `users` columns, in the order of the schema.
pub(super) const USER_COLUMNS: &[&str] = &[
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
    "external_id",
];

/// `SELECT <all user columns> FROM users`.
pub(super) fn select_users_sql() -> String {
    format!("SELECT {} FROM users", USER_COLUMNS.join(", "))
}

/// The user's row and, in the same statement, what the policy reads beside it
/// ([`Store::user_standing`](super::Store::user_standing)): the [`USER_COLUMNS`] in order, then
/// whether a block exists and the stored ends of the user's latest lock and latest bypass
/// ([`STANDING_BLOCKED`], [`STANDING_LOCK_ENDS`], [`STANDING_BYPASS_ENDS`]). The time is not in
/// the statement: [`StandingEnds::at`] compares it, for both backends, so a reader may also keep
/// the row and decide at each read (the SQLite store's standings). `placeholder(1)` is the key.
pub(super) fn select_standing_sql(placeholder: impl Fn(usize) -> String) -> String {
    let key = placeholder(1);
    format!(
        "SELECT {}, \
         EXISTS (SELECT 1 FROM blocks WHERE blocks.username_key = users.username_key), \
         (SELECT MAX(auth_failures.locked_until) FROM auth_failures \
          WHERE auth_failures.username_key = users.username_key), \
         (SELECT MAX(bypasses.expires_at) FROM bypasses \
          WHERE bypasses.username_key = users.username_key) \
         FROM users WHERE users.username_key = {key}",
        USER_COLUMNS.join(", ")
    )
}

/// The column of [`select_standing_sql`] saying whether the user is blocked.
pub(super) const STANDING_BLOCKED: usize = USER_COLUMNS.len();
/// The column of [`select_standing_sql`] with the end of the latest lock, or NULL.
pub(super) const STANDING_LOCK_ENDS: usize = USER_COLUMNS.len() + 1;
/// The column of [`select_standing_sql`] with the end of the latest bypass, or NULL.
pub(super) const STANDING_BYPASS_ENDS: usize = USER_COLUMNS.len() + 2;

/// What [`select_standing_sql`] reads beside the user's row.
#[derive(Debug, Clone, Copy)]
pub(super) struct StandingEnds {
    /// A block exists.
    pub(super) blocked: bool,
    /// The end of the latest lock (Unix seconds).
    pub(super) lock_ends: Option<i64>,
    /// The end of the latest bypass (Unix seconds).
    pub(super) bypass_ends: Option<i64>,
}

impl StandingEnds {
    /// The standing of `user` at `now`: a lock runs while its end is after now; a bypass is valid
    /// until its end, included. The one place either backend decides it.
    pub(super) fn at(self, user: UserRecord, now: i64) -> UserStanding {
        UserStanding {
            user,
            blocked: self.blocked,
            locked_until: self.lock_ends.filter(|&end| end > now),
            bypass: self.bypass_ends.is_some_and(|end| end >= now),
        }
    }
}

/// Inserts a user unless the key exists; `placeholder(n)` is the dialect's n-th (1-based)
/// parameter. The values are [`UserRow::insert_values`].
pub(super) fn insert_user_sql(placeholder: impl Fn(usize) -> String) -> String {
    let placeholders: Vec<String> = (1..=USER_COLUMNS.len()).map(placeholder).collect();
    format!(
        "INSERT INTO users ({}) VALUES ({}) ON CONFLICT (username_key) DO NOTHING",
        USER_COLUMNS.join(", "),
        placeholders.join(", ")
    )
}

/// Replaces every column but the key and the username as first stored; the values are
/// [`UserRow::update_values`] (the key first).
pub(super) fn update_user_sql(placeholder: impl Fn(usize) -> String) -> String {
    let sets: Vec<String> = updated_columns()
        .enumerate()
        .map(|(i, c)| format!("{c} = {}", placeholder(i + 2)))
        .collect();
    format!(
        "UPDATE users SET {} WHERE username_key = {}",
        sets.join(", "),
        placeholder(1)
    )
}

/// The columns an update writes, in [`USER_COLUMNS`] order.
fn updated_columns() -> impl Iterator<Item = &'static str> {
    USER_COLUMNS
        .iter()
        .copied()
        .filter(|c| !matches!(*c, "username_key" | "username"))
}

/// One value to bind, whatever the backend; each backend converts it to its own parameter type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value<'a> {
    /// `TEXT NOT NULL`.
    Text(&'a str),
    /// Nullable `TEXT`.
    OptText(Option<&'a str>),
    /// An integer column.
    Int(i64),
    /// A nullable integer column.
    OptInt(Option<i64>),
    /// A flag (`INTEGER` 0/1 in SQLite, `BOOLEAN` in PostgreSQL).
    Flag(bool),
}

/// How a backend reads the columns of one row selected with [`select_users_sql`] or
/// [`select_standing_sql`], by index ([`user_column`]: the position in [`USER_COLUMNS`], found
/// when compiling). Why not by name: both drivers find a name by comparing it with every column's
/// name, 31 columns for each of 31 reads — in a profile of `PfAuthUser_5` that was about a tenth of
/// the server's CPU.
pub(super) trait Columns {
    /// The backend's error for a missing column or a wrong type.
    type Error;
    /// A `TEXT NOT NULL` column.
    fn text(&self, index: usize) -> Result<String, Self::Error>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, index: usize) -> Result<Option<String>, Self::Error>;
    /// An integer column.
    fn int(&self, index: usize) -> Result<i64, Self::Error>;
    /// A nullable integer column.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, Self::Error>;
    /// A flag column.
    fn flag(&self, index: usize) -> Result<bool, Self::Error>;
}

/// The position of `name` in [`USER_COLUMNS`]; evaluated when compiling (`const { … }`), so a
/// name that is not a user column fails the build.
pub(super) const fn user_column(name: &str) -> usize {
    let mut i = 0;
    while i < USER_COLUMNS.len() {
        let (a, b) = (USER_COLUMNS[i].as_bytes(), name.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("not a user column")
}

/// `col!("name")`: the index of a user column, as a constant ([`user_column`]).
macro_rules! col {
    ($name:literal) => {
        const { user_column($name) }
    };
}

/// Unix seconds now (0 if the clock is before 1970).
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How long the outcome of a claim that expired without an ending stays readable (seconds).
pub(super) const EXPIRED_CALL_KEEP_SECS: i64 = 60;

/// The key of a provider call in flight: a keyed digest of everything that makes a retry
/// ([`CallKey`]), so the store never holds the number of a call (nor learns it from the key).
pub(super) fn call_key(key: &SecretKey, call: &CallKey) -> String {
    secrets::code_digest(key, &call.encoded())
}

/// `SELECT username, username_key, oath_secret, static_token` of the users with sealed values.
macro_rules! sealed_rows {
    () => {
        "SELECT username, username_key, oath_secret, static_token FROM users \
         WHERE oath_secret IS NOT NULL OR static_token IS NOT NULL ORDER BY username_key"
    };
}

/// Every user's sealed values, for re-sealing them under a new key.
pub(super) const SEALED_ROWS_SQL: &str = sealed_rows!();

/// Up to 16 users' sealed values, that a key is tried on before it writes the first key check of
/// a database that has none ([`key_opens_any`]: one opening is enough).
pub(super) const KEY_PROOF_SQL: &str = concat!(sealed_rows!(), " LIMIT 16");

/// Writes (or replaces) the key check value: `digest`, `created_at` as parameters 1 and 2 (`?1`
/// and `$1` alike are numbered, so the caller substitutes its placeholder style).
pub(super) fn upsert_key_check_sql(placeholder: impl Fn(usize) -> String) -> String {
    format!(
        "INSERT INTO key_check (id, digest, created_at) VALUES (1, {}, {}) \
         ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, created_at = excluded.created_at",
        placeholder(1),
        placeholder(2)
    )
}

/// The statement behind [`Store::record_failure`](super::Store::record_failure), with the
/// placeholders `p(n)` of the backend (1 key, 2 now, 3 threshold, 4 window, 5 lock; all integers).
///
/// One `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`: the database serialises concurrent
/// writers of one row, so failures counted by several instances add up. In the `DO UPDATE` every
/// expression reads the row as it was: the count restarts (at 1) when the window has passed or an
/// earlier lock has ended, and reaching the threshold sets a lock from now. The `SELECT ... FROM
/// users` inserts nothing for a user the store does not hold.
pub(super) fn record_failure_sql(p: impl Fn(usize) -> String) -> String {
    let (key, now, threshold, window, lock) = (p(1), p(2), p(3), p(4), p(5));
    let restart = format!(
        "(auth_failures.window_start + {window} <= {now} OR \
         (auth_failures.locked_until IS NOT NULL AND auth_failures.locked_until <= {now}))"
    );
    let count = format!("(CASE WHEN {restart} THEN 1 ELSE auth_failures.failures + 1 END)");
    format!(
        "INSERT INTO auth_failures (username_key, failures, window_start, locked_until) \
         SELECT username_key, 1, {now}, CASE WHEN 1 >= {threshold} THEN {now} + {lock} END \
         FROM users WHERE username_key = {key} \
         ON CONFLICT (username_key) DO UPDATE SET \
         failures = {count}, \
         window_start = CASE WHEN {restart} THEN {now} ELSE auth_failures.window_start END, \
         locked_until = CASE WHEN {count} >= {threshold} THEN {now} + {lock} \
         WHEN {restart} THEN NULL ELSE auth_failures.locked_until END \
         RETURNING failures, locked_until"
    )
}

/// A user's sealed values opened with `old` and sealed again with `new` (OATH secret, static
/// token); a value that does not open under `old` is [`StoreError::Corrupt`] and stops the
/// rotation.
pub(super) fn reseal_row(
    old: &SecretKey,
    new: &SecretKey,
    r: &SealedRow,
) -> StoreResult<(Option<String>, Option<String>)> {
    let reseal = |field: &str, sealed: &Option<String>| -> StoreResult<Option<String>> {
        let plain = zeroize::Zeroizing::new(open_field(
            old,
            &r.username,
            &r.username_key,
            field,
            sealed.as_deref(),
        )?);
        seal_field(new, &r.username_key, field, plain.as_deref())
    };
    Ok((
        reseal(FIELD_OATH_SECRET, &r.oath_secret)?,
        reseal(FIELD_STATIC_TOKEN, &r.static_token)?,
    ))
}

/// Reads the key check value.
pub(super) const KEY_CHECK_SQL: &str = "SELECT digest FROM key_check WHERE id = 1";

/// One user's sealed values, for [`key_opens_any`].
pub(super) struct SealedRow {
    pub(super) username: String,
    pub(super) username_key: String,
    pub(super) oath_secret: Option<String>,
    pub(super) static_token: Option<String>,
}

/// Whether `key` may write the first key check of a database that has none: it must open at least
/// one of the sealed values already there (none there: any key may). Guards a database written by
/// a version before the check, whose first instance after the upgrade could have the wrong key.
pub(super) fn key_opens_any(key: &SecretKey, rows: &[SealedRow]) -> bool {
    rows.is_empty()
        || rows.iter().any(|r| {
            [
                (FIELD_OATH_SECRET, &r.oath_secret),
                (FIELD_STATIC_TOKEN, &r.static_token),
            ]
            .iter()
            .any(|(field, sealed)| {
                sealed.is_some()
                    && open_field(key, &r.username, &r.username_key, field, sealed.as_deref())
                        .is_ok()
            })
        })
}

/// The verdict on a database's key check value `stored` (`None`: absent) for `key`.
pub(super) fn compare_key_check(key: &SecretKey, stored: &str) -> StoreResult<()> {
    if stored == secrets::key_check(key) {
        Ok(())
    } else {
        Err(StoreError::KeyMismatch("its key check value differs"))
    }
}

/// A claim row's state: its outcome column (`NULL` while pending) and its `expires_at` (the lease
/// while pending).
pub(super) fn call_state(outcome: Option<String>, expires_at: i64) -> CallState {
    match outcome {
        None => CallState::Pending {
            lease_until: expires_at,
        },
        Some(o) if o == CLAIM_LAPSED => CallState::Lapsed,
        Some(o) => CallState::Done(o),
    }
}

/// The lookup key of a username: lower case ([`crate::core::username::key`], the one rule every keyed
/// lookup shares).
pub(super) fn username_key(username: &str) -> String {
    crate::core::username::key(username)
}

/// Adds context to a store error.
pub(super) fn prefix(what: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(u) => StoreError::Unavailable(u.doing(what.to_string())),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{what}: {m}")),
        other => other,
    }
}

/// Seals a secret field for the row of `username_key` (the key and field are the associated data).
pub(super) fn seal_field(
    key: &SecretKey,
    username_key: &str,
    field: &str,
    value: Option<&str>,
) -> StoreResult<Option<String>> {
    value
        .map(|plain| {
            secrets::seal(key, plain, &secrets::aad(field, username_key)).map_err(|e| {
                StoreError::unavailable_while(
                    format!("storing {field} of user '{username_key}'"),
                    Cause::Secrets(e),
                )
            })
        })
        .transpose()
}

/// Opens a sealed field; a value that does not open is [`StoreError::Corrupt`] naming the user.
pub(super) fn open_field(
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
pub(super) struct UserRow<'a> {
    pub(super) user: &'a UserRecord,
    pub(super) username_key: String,
    pub(super) oath_secret: Option<String>,
    pub(super) static_token: Option<String>,
    /// [`UserRecord::external_id`] normalised (the unique index compares stored bytes).
    pub(super) external_id: Option<String>,
    pub(super) mode: &'static str,
    pub(super) pin_mode: &'static str,
    pub(super) sms_direction: &'static str,
    pub(super) sms_mode: &'static str,
    pub(super) phone_app_mode: &'static str,
    pub(super) disabled_behavior: &'static str,
}

impl<'a> UserRow<'a> {
    /// Seals the secrets of `user` and takes the literals of its enums.
    pub(super) fn new(user: &'a UserRecord, key: &SecretKey) -> StoreResult<Self> {
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
            external_id: user
                .external_id
                .as_deref()
                .and_then(super::normalize_external_id),
            mode: user.mode.as_str(),
            pin_mode: user.pin_mode.as_str(),
            sms_direction: user.sms_direction.as_str(),
            sms_mode: user.sms_mode.as_str(),
            phone_app_mode: user.phone_app_mode.as_str(),
            disabled_behavior: user.disabled_behavior.as_str(),
        })
    }

    /// The values for [`insert_user_sql`], in [`USER_COLUMNS`] order.
    pub(super) fn insert_values(&self) -> Vec<Value<'_>> {
        self.columns().into_iter().map(|(_, v)| v).collect()
    }

    /// The values for [`update_user_sql`]: the key, then the updated columns.
    pub(super) fn update_values(&self) -> Vec<Value<'_>> {
        self.columns()
            .into_iter()
            .filter(|(c, _)| *c != "username")
            .map(|(_, v)| v)
            .collect()
    }

    /// Every column with its value, in [`USER_COLUMNS`] order (a unit test holds the two together).
    fn columns(&self) -> [(&'static str, Value<'_>); 31] {
        let u = self.user;
        [
            ("username_key", Value::Text(&self.username_key)),
            ("username", Value::Text(&u.username)),
            ("first_name", Value::Text(&u.first_name)),
            ("last_name", Value::Text(&u.last_name)),
            ("email", Value::Text(&u.email)),
            ("user_group", Value::Text(&u.user_group)),
            ("phone_country_code", Value::Text(&u.phone.country_code)),
            ("phone_number", Value::Text(&u.phone.number)),
            ("phone_extension", Value::Text(&u.phone.extension)),
            (
                "backup_country_code",
                Value::Text(&u.backup_phone.country_code),
            ),
            ("backup_number", Value::Text(&u.backup_phone.number)),
            ("backup_extension", Value::Text(&u.backup_phone.extension)),
            ("mode", Value::Text(self.mode)),
            ("pin_mode", Value::Text(self.pin_mode)),
            ("sms_direction", Value::Text(self.sms_direction)),
            ("sms_mode", Value::Text(self.sms_mode)),
            ("phone_app_mode", Value::Text(self.phone_app_mode)),
            ("enabled", Value::Flag(u.enabled)),
            ("disabled_behavior", Value::Text(self.disabled_behavior)),
            ("pin_hash", Value::OptText(u.pin_hash.as_deref())),
            ("pin_change_required", Value::Flag(u.pin_change_required)),
            ("pin_changed_at", Value::OptInt(u.pin_changed_at)),
            ("oath_secret", Value::OptText(self.oath_secret.as_deref())),
            ("oath_serial", Value::Text(&u.oath_serial)),
            (
                "oath_time_interval",
                Value::Int(i64::from(u.oath_time_interval)),
            ),
            ("static_token", Value::OptText(self.static_token.as_deref())),
            ("voice_call_language", Value::Text(&u.voice_call_language)),
            ("sms_text_language", Value::Text(&u.sms_text_language)),
            ("phone_app_language", Value::Text(&u.phone_app_language)),
            ("oath_token_language", Value::Text(&u.oath_token_language)),
            ("external_id", Value::OptText(self.external_id.as_deref())),
        ]
    }
}

/// One `users` row as read, before enums are parsed and secrets opened.
#[derive(Clone)]
pub(super) struct RawUser {
    pub(super) username_key: String,
    pub(super) username: String,
    pub(super) first_name: String,
    pub(super) last_name: String,
    pub(super) email: String,
    pub(super) user_group: String,
    pub(super) phone: Phone,
    pub(super) backup_phone: Phone,
    pub(super) mode: String,
    pub(super) pin_mode: String,
    pub(super) sms_direction: String,
    pub(super) sms_mode: String,
    pub(super) phone_app_mode: String,
    pub(super) enabled: bool,
    pub(super) disabled_behavior: String,
    pub(super) pin_hash: Option<String>,
    pub(super) pin_change_required: bool,
    pub(super) pin_changed_at: Option<i64>,
    pub(super) oath_secret: Option<String>,
    pub(super) oath_serial: String,
    pub(super) oath_time_interval: i64,
    pub(super) static_token: Option<String>,
    pub(super) voice_call_language: String,
    pub(super) sms_text_language: String,
    pub(super) phone_app_language: String,
    pub(super) oath_token_language: String,
    pub(super) external_id: Option<String>,
}

impl RawUser {
    /// Reads a row selected with [`select_users_sql`].
    pub(super) fn read<R: Columns>(r: &R) -> Result<Self, R::Error> {
        Ok(Self {
            username_key: r.text(col!("username_key"))?,
            username: r.text(col!("username"))?,
            first_name: r.text(col!("first_name"))?,
            last_name: r.text(col!("last_name"))?,
            email: r.text(col!("email"))?,
            user_group: r.text(col!("user_group"))?,
            phone: Phone {
                country_code: r.text(col!("phone_country_code"))?,
                number: r.text(col!("phone_number"))?,
                extension: r.text(col!("phone_extension"))?,
            },
            backup_phone: Phone {
                country_code: r.text(col!("backup_country_code"))?,
                number: r.text(col!("backup_number"))?,
                extension: r.text(col!("backup_extension"))?,
            },
            mode: r.text(col!("mode"))?,
            pin_mode: r.text(col!("pin_mode"))?,
            sms_direction: r.text(col!("sms_direction"))?,
            sms_mode: r.text(col!("sms_mode"))?,
            phone_app_mode: r.text(col!("phone_app_mode"))?,
            enabled: r.flag(col!("enabled"))?,
            disabled_behavior: r.text(col!("disabled_behavior"))?,
            pin_hash: r.opt_text(col!("pin_hash"))?,
            pin_change_required: r.flag(col!("pin_change_required"))?,
            pin_changed_at: r.opt_int(col!("pin_changed_at"))?,
            oath_secret: r.opt_text(col!("oath_secret"))?,
            oath_serial: r.text(col!("oath_serial"))?,
            oath_time_interval: r.int(col!("oath_time_interval"))?,
            static_token: r.opt_text(col!("static_token"))?,
            voice_call_language: r.text(col!("voice_call_language"))?,
            sms_text_language: r.text(col!("sms_text_language"))?,
            phone_app_language: r.text(col!("phone_app_language"))?,
            oath_token_language: r.text(col!("oath_token_language"))?,
            external_id: r.opt_text(col!("external_id"))?,
        })
    }

    /// True when the row passes the text and phone filters (the enum and enabled filters are in
    /// the SQL).
    pub(super) fn matches(&self, f: &UserFilter) -> bool {
        text_matches(&f.username, &self.username)
            && text_matches(&f.first_name, &self.first_name)
            && text_matches(&f.last_name, &self.last_name)
            && text_matches(&f.email, &self.email)
            && text_matches(&f.user_group, &self.user_group)
            && phone_matches(&f.phone, &self.phone, &self.backup_phone)
    }

    pub(super) fn into_record(self, key: &SecretKey) -> StoreResult<UserRecord> {
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
            external_id: self.external_id,
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
pub(super) fn text_matches(filter: &TextFilter, value: &str) -> bool {
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
pub(super) fn phone_matches(pattern: &str, phone: &Phone, backup: &Phone) -> bool {
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

/// The stored literal of a transaction kind.
pub(super) fn kind_literal(kind: TransactionKind) -> &'static str {
    match kind {
        TransactionKind::OathCode => "oath_code",
        TransactionKind::SmsPasscode => "sms_passcode",
        TransactionKind::ProviderCode => "provider_code",
    }
}

/// The kind a stored literal names.
pub(super) fn parse_kind(literal: &str) -> Option<TransactionKind> {
    match literal {
        "oath_code" => Some(TransactionKind::OathCode),
        "sms_passcode" => Some(TransactionKind::SmsPasscode),
        "provider_code" => Some(TransactionKind::ProviderCode),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_values_follow_the_column_list() {
        let key = SecretKey::from_bytes([0x42; secrets::KEY_LEN]);
        let user = UserRecord::new("Row@contoso.com");
        let row = UserRow::new(&user, &key).unwrap();
        let names: Vec<&str> = row.columns().iter().map(|(c, _)| *c).collect();
        assert_eq!(names, USER_COLUMNS);
        assert_eq!(row.insert_values().len(), USER_COLUMNS.len());
        assert_eq!(row.update_values().len(), updated_columns().count() + 1);
        assert_eq!(row.update_values()[0], Value::Text("row@contoso.com"));
        let update = update_user_sql(|n| format!("${n}"));
        assert!(
            update.starts_with("UPDATE users SET first_name = $2, "),
            "{update}"
        );
        assert!(
            update.ends_with("external_id = $30 WHERE username_key = $1"),
            "{update}"
        );
        let insert = insert_user_sql(|n| format!("?{n}"));
        assert!(insert.contains("VALUES (?1, ?2, "), "{insert}");
        assert!(insert.contains("?31)"), "{insert}");
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
