//! The store: the user directory and the short-lived state of authentications, behind one trait.
//!
//! The engine never touches SQL; it asks for users, blocks, bypasses and transactions through
//! [`Store`]. The embedded backend is SQLite ([`sqlite`]), in a file or in memory (demo and tests);
//! [`postgres`] is the backend for several instances behind a load balancer (`docs/ha.md`).
//! Every operation that must happen at most once (consuming a bypass, completing a transaction,
//! accepting a one-time code, claiming a provider call) is a single atomic statement in the
//! backend, so it stays correct when several pfgate instances share one database: the database is
//! the only place where instances agree, there is no consensus of pfgate's own.
//!
//! One test suite ([`suite`], test builds only) holds the behaviour every backend must have, and
//! runs against each of them.
//!
//! Secrets at rest: PINs are stored only as argon2id hashes; OATH secrets and static tokens are
//! encrypted with AES-256-GCM under a key from the configuration ([`secrets`]).

pub mod directory;
pub mod postgres;
mod row;
pub mod secrets;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;
mod unavailable;

pub use unavailable::{Cause, TaskEnd, Unavailable};

use async_trait::async_trait;

use crate::pfwssdk::{AuthResult, Mode3, PhoneAppMode, PinMode2, SmsDirection, SmsMode};

/// A phone number as MFA Server keeps it: country calling code, national number, extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phone {
    /// Country calling code, digits only (`1`, `44`); empty when unknown.
    pub country_code: String,
    /// National number as entered.
    pub number: String,
    /// Extension, digits only; empty when none.
    pub extension: String,
}

/// One user of the directory: everything `AddUserSettings3`/`UserSettings3` carry.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// Username as first stored (UPN or `DOMAIN\user`); looked up case-insensitively.
    pub username: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email address.
    pub email: String,
    /// User group.
    pub user_group: String,
    /// Primary phone.
    pub phone: Phone,
    /// Backup phone.
    pub backup_phone: Phone,
    /// Authentication mode.
    pub mode: Mode3,
    /// PIN mode.
    pub pin_mode: PinMode2,
    /// SMS direction.
    pub sms_direction: SmsDirection,
    /// SMS mode.
    pub sms_mode: SmsMode,
    /// Mobile app mode.
    pub phone_app_mode: PhoneAppMode,
    /// Enabled.
    pub enabled: bool,
    /// What authentication does while the user is disabled.
    pub disabled_behavior: AuthResult,
    /// argon2id PHC string of the PIN, if one is set. Never the PIN itself.
    pub pin_hash: Option<String>,
    /// The user must change the PIN at next use.
    pub pin_change_required: bool,
    /// Unix seconds of the last PIN change.
    pub pin_changed_at: Option<i64>,
    /// OATH token secret (base32 text), decrypted in memory only.
    pub oath_secret: Option<String>,
    /// OATH token serial number.
    pub oath_serial: String,
    /// OATH time step in seconds (30 when unset).
    pub oath_time_interval: i32,
    /// Static token (decrypted in memory only).
    pub static_token: Option<String>,
    /// Voice call language.
    pub voice_call_language: String,
    /// SMS text language.
    pub sms_text_language: String,
    /// Mobile app language.
    pub phone_app_language: String,
    /// OATH token language.
    pub oath_token_language: String,
    /// The identity the organisation's identity provider gives this person — Entra ID's `oid`
    /// (object id, a GUID), or an OpenID Connect `sub` — for the OIDC step-up provider's
    /// `match = "external_id"`. Why it is stored: an `oid` never equals a username, and unlike
    /// `preferred_username` it cannot be changed by the user or an administrator, so the link
    /// between the pfgate user and the IdP account has to live here. Kept normalised (trimmed,
    /// lower case: GUIDs arrive in either case) by [`normalize_external_id`], unique among users
    /// ([`StoreError::ExternalIdTaken`]): two users mapped to one IdP identity would let one
    /// person's sign-in approve the other's requests. The SDK has no field for it, so SDK updates
    /// keep the stored value; the users file and `pfgate users import` set it.
    pub external_id: Option<String>,
}

impl UserRecord {
    /// A new, enabled user with MFA Server's defaults (voice call, standard PIN mode, two-way OTP SMS).
    pub fn new(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            user_group: String::new(),
            phone: Phone::default(),
            backup_phone: Phone::default(),
            mode: Mode3::VoiceCall,
            pin_mode: PinMode2::Standard,
            sms_direction: SmsDirection::TwoWay,
            sms_mode: SmsMode::Otp,
            phone_app_mode: PhoneAppMode::Standard,
            enabled: true,
            disabled_behavior: AuthResult::Fail,
            pin_hash: None,
            pin_change_required: false,
            pin_changed_at: None,
            oath_secret: None,
            oath_serial: String::new(),
            oath_time_interval: 30,
            static_token: None,
            voice_call_language: "en".into(),
            sms_text_language: "en".into(),
            phone_app_language: "en".into(),
            oath_token_language: "en".into(),
            external_id: None,
        }
    }
}

/// The longest external id accepted (Entra's `oid` is 36 characters; an OpenID Connect `sub` is at
/// most 255 ASCII characters by the specification).
pub const MAX_EXTERNAL_ID_LEN: usize = 255;

/// The stored form of an external id: trimmed, and a GUID (Entra's `oid`: 8-4-4-4-12 hex digits)
/// in lower case; `None` when empty. Applied on every write and to the claim before comparing, so
/// a GUID matches whatever case either side used. Anything else keeps its case and must match
/// exactly: an OpenID Connect `sub` is case-sensitive (Core 1.0, §2), and folding its case could
/// let two distinct subjects (Entra's pairwise `sub` is base64url) stand for one user.
pub fn normalize_external_id(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    Some(if is_guid(t) {
        t.to_ascii_lowercase()
    } else {
        t.to_string()
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in either case.
fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod external_id_tests {
    use super::normalize_external_id as n;

    #[test]
    fn guids_fold_case_and_other_ids_keep_it() {
        assert_eq!(
            n(" 6F9619FF-8B86-D011-B42D-00C04FC964FF\t").as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        // A pairwise `sub`: case-sensitive, two values differing only in case stay two.
        assert_eq!(
            n("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ").as_deref(),
            Some("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ")
        );
        assert_ne!(n("AbC"), n("abc"));
        // Not quite a GUID: kept as given.
        assert_eq!(
            n("6F9619FF-8B86-D011-B42D-00C04FC964F").as_deref(),
            Some("6F9619FF-8B86-D011-B42D-00C04FC964F")
        );
        assert_eq!(n("   "), None);
    }
}

/// Why `raw` cannot be an external id (too long, control characters), or `None` when it can. The
/// inputs that set it (users file, CSV import) refuse such values with this reason.
pub fn external_id_problem(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.chars().count() > MAX_EXTERNAL_ID_LEN {
        return Some(format!(
            "external_id is longer than {MAX_EXTERNAL_ID_LEN} characters"
        ));
    }
    if t.chars().any(char::is_control) {
        return Some("external_id contains control characters".into());
    }
    None
}

/// A text filter of `FindUsers*`: `*` matches any run of characters, `?` is literal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextFilter {
    /// The pattern; empty or `*` matches everything.
    pub pattern: String,
    /// Compare case-sensitively.
    pub case_sensitive: bool,
}

/// The filters of `FindUsers_4` (older generations use a subset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFilter {
    /// Username.
    pub username: TextFilter,
    /// First name.
    pub first_name: TextFilter,
    /// Last name.
    pub last_name: TextFilter,
    /// Email.
    pub email: TextFilter,
    /// User group.
    pub user_group: TextFilter,
    /// Phone: matched against the digits of the primary and backup numbers (`*` wildcards).
    pub phone: String,
    /// Only users in this mode.
    pub mode: Option<Mode3>,
    /// Only users with this PIN mode.
    pub pin_mode: Option<PinMode2>,
    /// Only users with this enabled state.
    pub enabled: Option<bool>,
}

/// A one-time bypass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bypass {
    /// User (as stored).
    pub username: String,
    /// Why.
    pub reason: String,
    /// Unix seconds after which it is void.
    pub expires_at: i64,
    /// Who granted it.
    pub created_by: String,
}

/// What a pending authentication waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    /// An OATH code (`ValidateOathCode`).
    OathCode,
    /// A one-way SMS one-time passcode (`ValidatePasscode`).
    SmsPasscode,
    /// A code the provider generated, sent and will check (Twilio Verify).
    ProviderCode,
}

/// A short-lived authentication transaction awaiting its second step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// `authenticationRequestId` (32 upper-case hex).
    pub id: String,
    /// User (as stored).
    pub username: String,
    /// What it waits for.
    pub kind: TransactionKind,
    /// For SMS passcodes: argon2id hash of the code that was sent. Never the code.
    pub code_hash: Option<String>,
    /// Unix seconds after which it is void.
    pub expires_at: i64,
    /// For provider-checked codes: the E.164 number the code went to.
    pub target: Option<String>,
    /// The caller principal that started it: only the same principal may complete it (issue #23,
    /// item 7), so one application cannot spend or complete another's pending authentication.
    pub started_by: String,
}

/// When failed attempts lock a user (`[engine] lockout_*`), in the store's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRule {
    /// Failures within the window that lock.
    pub threshold: u32,
    /// Seconds during which failures count.
    pub window_secs: i64,
    /// Seconds a lock lasts.
    pub lock_secs: i64,
}

/// A user's failures after [`Store::record_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failures counted in the current window.
    pub failures: u32,
    /// The end of the lock (Unix seconds), when this or an earlier failure locked the user.
    pub locked_until: Option<i64>,
}

/// What makes two authentications "the same one" for the in-flight rule: only an authentication
/// with every field equal is a retry that may join a provider call in flight (and receive its
/// outcome and `authenticationRequestId`). Anyone else asking for the same user meanwhile — another
/// principal, another application, another initiating address — gets a call of its own (issue #17
/// item 3: a certificate caller "EvilApp" asking for `ALICE@contoso.com` a second after MIM asked
/// for alice was handed MIM's approval). The same key decides in the process
/// (`engine::auth::Inflight`) and, as a keyed digest, in the store ([`Store::claim_call`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallKey {
    /// The username as the engine passes it; compared case-insensitively. (The canonical username
    /// form of issue #17 item 5 plugs in here: the engine passes the canonical form, and
    /// [`CallKey::new`] only folds case.)
    pub username: String,
    /// The number called, E.164.
    pub phone: String,
    /// The authenticated caller principal (`CONTOSO\svc-mim`, a certificate's mapped name, or
    /// `anonymous`); compared case-insensitively, as Windows account names are.
    pub caller: String,
    /// The `applicationName` the caller gave, exactly.
    pub application: String,
    /// The `initiatingIpAddress` the caller gave, exactly (trimmed).
    pub initiating_ip: String,
}

impl CallKey {
    /// The key of an authentication; folds the case of the username (the engine passes it in
    /// canonical form, [`crate::core::username::canonical`]; [`crate::core::username::key`] is the one rule
    /// every keyed lookup shares) and of the principal.
    pub fn new(
        username: &str,
        phone: impl Into<String>,
        caller: &str,
        application: &str,
        initiating_ip: &str,
    ) -> Self {
        Self {
            username: crate::core::username::key(username),
            phone: phone.into(),
            // `username::key` is `to_lowercase` with a fast path for ASCII (same result).
            caller: crate::core::username::key(caller),
            application: application.to_string(),
            initiating_ip: initiating_ip.trim().to_string(),
        }
    }

    /// An unambiguous text of every field (each length-prefixed, so no caller-chosen application
    /// name can make two different keys read alike), for the store's keyed digest.
    pub fn encoded(&self) -> String {
        let mut text = String::from("inflight-call/v2");
        for field in [
            &self.username,
            &self.phone,
            &self.caller,
            &self.application,
            &self.initiating_ip,
        ] {
            text.push_str(&format!("\n{}:{field}", field.len()));
        }
        text
    }
}

/// What the policy of one authentication reads about a user ([`Store::user_standing`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UserStanding {
    /// The user's record.
    pub user: UserRecord,
    /// An administrator blocked the user.
    pub blocked: bool,
    /// The end of a lock after repeated failures (Unix seconds), when one runs at the time asked.
    pub locked_until: Option<i64>,
    /// A bypass valid at the time asked exists. Only a hint that [`Store::consume_bypass`] is worth
    /// calling: consuming decides, atomically, whether this request uses it.
    pub bypass: bool,
}

/// What [`Store::claim_call`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallClaim {
    /// No call for this user and number is in flight anywhere: the caller places it and reports
    /// its ending with [`Store::finish_call`].
    Placed,
    /// A call is in flight (placed by this or another instance) under this request id: the caller
    /// waits for its ending ([`Store::call_state`]) instead of placing a second one.
    Joined(String),
}

/// Where a claimed call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    /// Still in flight. Its owner holds it until `lease_until` (Unix seconds) and renews that
    /// while the call runs ([`Store::renew_call`]); a lease in the past means the owner died or
    /// lost the database, and a waiter may take the call over ([`Store::claim_call`] gives such a
    /// claim up).
    Pending {
        /// Unix seconds the owner's lease runs to.
        lease_until: i64,
    },
    /// Ended; the outcome as the engine wrote it ([`Store::finish_call`]).
    Done(String),
    /// Given up by a later claimant after its lease lapsed without an ending: nothing more will
    /// come from it, and its waiters claim the call again.
    Lapsed,
}

/// The outcome a store writes for a claim given up because its lease lapsed (read back as
/// [`CallState::Lapsed`]). Versions before the lease wrote `deadline` there, which readers take as
/// a call that timed out.
pub const CLAIM_LAPSED: &str = "lapsed";

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A user with this name (case-insensitively) exists already.
    #[error("a user named '{0}' already exists")]
    Duplicate(String),
    /// No such user.
    #[error("no user named '{0}'")]
    NotFound(String),
    /// The backend is unreachable or failed; authentication must fail secure.
    #[error("store unavailable: {0}")]
    Unavailable(Unavailable),
    /// Another user already holds this external id (compared after normalisation): one IdP
    /// identity must never map to two users, or one person's sign-in would approve another's
    /// authentication.
    #[error("the external id '{external_id}' is already held by user '{holder}'")]
    ExternalIdTaken {
        /// The external id, normalised.
        external_id: String,
        /// The user who holds it (or "another user" when it could not be read back).
        holder: String,
    },
    /// Stored data could not be read back (corrupt row, wrong secrets key).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The configured secrets key is not the one this database's secrets were sealed with (its
    /// key check value differs, or, in a database without one, the key opens none of the sealed
    /// secrets). Refused at start: such an instance would seal secrets the others cannot open
    /// (issue #23).
    #[error(
        "the configured secrets key does not match the one this database was written with \
         ({0}); start this instance with the same secrets key as the others \
         (store.secrets_key_file or store.secrets_key_env); to change the key, see \
         \"Rotating the secrets key\" in docs/ha.md"
    )]
    KeyMismatch(&'static str),
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The storage trait: one implementation per backend, one test suite for all.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Checks the backend answers.
    async fn health(&self) -> StoreResult<()>;

    /// The user with this name, case-insensitively.
    async fn get_user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// The user with this name, case-insensitively, with whether it is blocked, the end of a lock
    /// running at `now`, and whether a bypass valid at `now` exists: what the policy of one
    /// authentication needs, in one read instead of four (get_user, block_reason, locked_until,
    /// and a consume_bypass that found nothing in nearly every authentication). Answers as those
    /// calls would at one instant.
    async fn user_standing(&self, username: &str, now: i64) -> StoreResult<Option<UserStanding>>;
    /// Adds a user; [`StoreError::Duplicate`] if the name exists (case-insensitively).
    async fn add_user(&self, user: &UserRecord) -> StoreResult<()>;
    /// Replaces a user's record (matched by `user.username`, case-insensitively);
    /// [`StoreError::NotFound`] if absent.
    async fn update_user(&self, user: &UserRecord) -> StoreResult<()>;
    /// Renames a user (blocks, bypasses and transactions follow).
    async fn rename_user(&self, old: &str, new: &str) -> StoreResult<()>;
    /// Deletes a user and everything attached; false if there was none.
    async fn delete_user(&self, username: &str) -> StoreResult<bool>;
    /// Users matching `filter`, ordered by username, at most `limit` (0 = no limit); the flag is
    /// true when no matching user was left out.
    async fn find_users(
        &self,
        filter: &UserFilter,
        limit: u32,
    ) -> StoreResult<(Vec<UserRecord>, bool)>;

    /// Blocks a user; false if already blocked.
    async fn block_user(&self, username: &str, reason: &str, actor: &str) -> StoreResult<bool>;
    /// Unblocks a user; false if not blocked.
    async fn unblock_user(&self, username: &str) -> StoreResult<bool>;
    /// The block reason, if the user is blocked.
    async fn block_reason(&self, username: &str) -> StoreResult<Option<String>>;

    /// Grants a one-time bypass (replacing any earlier one).
    async fn add_bypass(&self, bypass: &Bypass) -> StoreResult<()>;
    /// Consumes the user's bypass if one is valid at `now`: true exactly once per bypass, even with
    /// concurrent callers.
    async fn consume_bypass(&self, username: &str, now: i64) -> StoreResult<bool>;

    /// Records a pending transaction.
    async fn put_transaction(&self, tx: &Transaction) -> StoreResult<()>;
    /// Removes and returns the transaction if it exists, belongs to `username` (any case), was
    /// started by `started_by`, and has not expired at `now`: at most one caller gets it. A
    /// transaction of another user or principal is left untouched (its owner can still complete
    /// it).
    async fn take_transaction(
        &self,
        id: &str,
        username: &str,
        started_by: &str,
        now: i64,
    ) -> StoreResult<Option<Transaction>>;

    /// Removes and returns the user's newest unexpired transaction of `kind` started by
    /// `started_by` (for operations that name the user but not the request, such as
    /// `ValidatePasscode`): at most one caller gets it.
    async fn take_user_transaction(
        &self,
        username: &str,
        kind: TransactionKind,
        started_by: &str,
        now: i64,
    ) -> StoreResult<Option<Transaction>>;

    /// Counts one failed attempt of `username` at `now` under `rule`, in one atomic statement so
    /// that every instance sharing the store counts into the same number: the count restarts when
    /// the window has passed or an earlier lock has ended, and reaching the threshold locks the user
    /// until `now + rule.lock_secs`. [`StoreError::NotFound`] for a user the store does not hold.
    async fn record_failure(
        &self,
        username: &str,
        now: i64,
        rule: FailureRule,
    ) -> StoreResult<FailureCount>;

    /// The end of the user's lock (Unix seconds) if the user is locked at `now`.
    async fn locked_until(&self, username: &str, now: i64) -> StoreResult<Option<i64>>;

    /// Forgets the user's failures (after a success, or an administrator's `UnblockUser`); true if
    /// the user was locked at `now`.
    async fn clear_failures(&self, username: &str, now: i64) -> StoreResult<bool>;

    /// Remembers that `code` was accepted for `username` until `expires_at`; false if it was already
    /// accepted (a replayed one-time code).
    async fn mark_code_used(
        &self,
        username: &str,
        code: &str,
        expires_at: i64,
    ) -> StoreResult<bool>;

    /// True when other pfgate processes may use the same data (a database file or server), so the
    /// in-flight rule must be decided here and not only in this process's memory. An in-memory
    /// store is private to its process and answers false: claiming calls in it would only cost
    /// time.
    fn is_shared(&self) -> bool;

    /// Claims the provider call for `key` under `request_id`, with a lease until `expires_at` (Unix
    /// seconds) that the owner renews ([`Store::renew_call`]); a pending claim whose lease is
    /// older than `now` is given up ([`CLAIM_LAPSED`]) and the call claimed anew. Of concurrent claimants
    /// with equal keys, in any number of processes, exactly one gets [`CallClaim::Placed`]; the
    /// others get [`CallClaim::Joined`] with its request id. The user need not exist
    /// (`PfAuthUser_5` calls numbers of unknown service accounts). Stores keep only a keyed digest
    /// of the key ([`CallKey::encoded`]), never the number.
    async fn claim_call(
        &self,
        key: &CallKey,
        request_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<CallClaim>;

    /// Records how the call claimed under `request_id` ended; the outcome stays readable until
    /// `keep_until` for the instances waiting on it.
    async fn finish_call(
        &self,
        request_id: &str,
        outcome: &str,
        keep_until: i64,
    ) -> StoreResult<()>;

    /// Rotates the secrets key (`pfgate store rotate-key`): re-seals every OATH secret and static
    /// token under `new_key`, forgets what was keyed with the old one (used-code digests,
    /// in-flight claims: short-lived) and records `new_key`'s check value — in one transaction,
    /// all or nothing. Every instance must be stopped first: one still running with the old key
    /// would keep sealing with it. This store keeps the old key: drop it afterwards. Returns how
    /// many users' secrets were re-sealed.
    async fn rotate_key(&self, new_key: secrets::SecretKey) -> StoreResult<usize>;

    /// Extends the lease of the pending claim `request_id` to `lease_until` (the owner's heartbeat
    /// while its call runs); false when the claim is no longer pending (ended, or given up by
    /// another instance after its lease lapsed).
    async fn renew_call(&self, request_id: &str, lease_until: i64) -> StoreResult<bool>;

    /// Where the call claimed under `request_id` stands; `None` if no such claim is known (never
    /// made, or purged after `keep_until`).
    async fn call_state(&self, request_id: &str) -> StoreResult<Option<CallState>>;
}
