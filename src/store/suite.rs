//! The store test suite: one set of behavioural checks that every [`Store`] backend must pass.
//!
//! It owns the contract the trait documents only in prose, including the parts a backend could
//! get subtly wrong: case-insensitive names, at-most-once bypasses, transactions and codes under
//! concurrency, expiry at the boundary (valid while `now <= expires_at`), `FindUsers` wildcards
//! and completeness, what follows a user through rename and delete, and the claims of provider
//! calls that carry the in-flight rule across instances.
//!
//! Every check runs as its own test against every backend ([`suite_for!`] at the end: SQLite in
//! memory, SQLite in a file, PostgreSQL in a schema of its own), so a failure names the backend
//! and the check. PostgreSQL needs `PFGATE_TEST_DATABASE_URL`; without it those tests print a
//! `SKIP` line and pass (`.ci/run` sets it, so CI always runs them). Durable backends also run
//! [`seed_persistent`] / [`check_persistent`] around a reopen, and scan their raw storage for
//! [`PLAINTEXT_SECRETS`], in their own test modules.
//!
//! Contract points beyond the trait's doc comments, which the checks pin down:
//! - blocks, bypasses, transactions and used codes can only be attached to an existing user
//!   (otherwise [`StoreError::NotFound`]); reading or consuming them for an unknown user is simply
//!   "none" / `false`;
//! - `update_user` keeps the username as first stored; `rename_user` to the same name in another
//!   letter case just changes the stored case;
//! - a one-time code accepted before a rename is still refused after it.
//!
//! Each check uses its own usernames, so the checks can share one store. Assertions panic.

use std::sync::Arc;

use crate::pfwssdk::{AuthResult, Mode3, PhoneAppMode, PinMode2, SmsDirection, SmsMode};
use crate::store::secrets::{self, SecretKey};
use crate::store::{
    Bypass, CallClaim, CallKey, CallState, FailureCount, FailureRule, Phone, Store, StoreError,
    TextFilter, Transaction, TransactionKind, UserFilter, UserRecord,
};

/// The OATH secret the suite stores (a backend test asserts it is absent from raw storage).
pub const OATH_SECRET: &str = "SUITEOATHSECRETJBSWY3DPEHPK3PXP";
/// The static token the suite stores.
pub const STATIC_TOKEN: &str = "suite-static-token-8c1f2e77";
/// Every plaintext secret the suite writes through the store.
pub const PLAINTEXT_SECRETS: &[&str] = &[OATH_SECRET, STATIC_TOKEN, PERSIST_OATH, PERSIST_TOKEN];
/// The user [`seed_persistent`] writes (stored in clear: a raw scan should find it).
pub const PERSIST_USER: &str = "Suite-Persist@contoso.com";
const PERSIST_OATH: &str = "SUITEPERSISTOATHGEZDGNBVGY3TQOJQ";
const PERSIST_TOKEN: &str = "suite-persist-token-51d0";

/// A PHC-shaped PIN hash: the store keeps it verbatim and never hashes or verifies.
const PIN_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c3VpdGVzYWx0c3VpdGU$5jIqH3U1tHfVd8bCzEqL0g";

/// The principal that starts the suite's transactions.
const CALLER: &str = "CONTOSO\\suite-app";

/// A point in time for the caller-supplied clocks (bypasses, transactions).
const NOW: i64 = 1_900_000_000;

/// Wall-clock Unix seconds (used codes expire against the store's own clock).
fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn filter(pattern: &str) -> TextFilter {
    TextFilter {
        pattern: pattern.into(),
        case_sensitive: false,
    }
}

fn filter_cs(pattern: &str) -> TextFilter {
    TextFilter {
        pattern: pattern.into(),
        case_sensitive: true,
    }
}

/// A user with every field set away from its default.
fn full_user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        email: "ada@contoso.com".into(),
        user_group: "Engineering".into(),
        phone: Phone {
            country_code: "1".into(),
            number: "(425) 555-0100".into(),
            extension: "12".into(),
        },
        backup_phone: Phone {
            country_code: "44".into(),
            number: "20 7946 0000".into(),
            extension: String::new(),
        },
        mode: Mode3::OathToken,
        pin_mode: PinMode2::Pin,
        sms_direction: SmsDirection::OneWay,
        sms_mode: SmsMode::OtpPlusPin,
        phone_app_mode: PhoneAppMode::Pin,
        enabled: false,
        disabled_behavior: AuthResult::Succeed,
        pin_hash: Some(PIN_HASH.into()),
        pin_change_required: true,
        pin_changed_at: Some(1_700_000_123),
        oath_secret: Some(OATH_SECRET.into()),
        oath_serial: "SN-0001".into(),
        oath_time_interval: 60,
        static_token: Some(STATIC_TOKEN.into()),
        voice_call_language: "de".into(),
        sms_text_language: "fr".into(),
        phone_app_language: "es".into(),
        oath_token_language: "it".into(),
        // Already in stored form (lower case, trimmed), so a read compares equal.
        external_id: Some(format!("ext-{}", name.to_lowercase())),
    }
}

/// `health` answers.
pub async fn check_health(store: &dyn Store) {
    store.health().await.unwrap();
}

/// Add, get (any case), duplicate (any case), update, missing-user errors, delete.
pub async fn check_user_crud(store: &dyn Store) {
    let user = full_user("Suite-Crud@Contoso.com");
    assert_eq!(
        store.get_user("suite-crud@contoso.com").await.unwrap(),
        None
    );
    store.add_user(&user).await.unwrap();
    for name in [
        "Suite-Crud@Contoso.com",
        "suite-crud@contoso.com",
        "SUITE-CRUD@CONTOSO.COM",
    ] {
        assert_eq!(
            store.get_user(name).await.unwrap().as_ref(),
            Some(&user),
            "get {name}"
        );
    }
    // Defaults round-trip too.
    let plain = UserRecord::new("suite-crud-defaults");
    store.add_user(&plain).await.unwrap();
    assert_eq!(
        store.get_user("suite-crud-defaults").await.unwrap(),
        Some(plain)
    );

    // Duplicates, case-insensitively.
    for name in ["Suite-Crud@Contoso.com", "SUITE-crud@contoso.COM"] {
        let err = store.add_user(&UserRecord::new(name)).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate(_)), "add {name}: {err}");
    }
    assert_eq!(
        store
            .get_user("suite-crud@contoso.com")
            .await
            .unwrap()
            .as_ref(),
        Some(&user)
    );

    // Update, matched case-insensitively; the stored username keeps its first case.
    let mut changed = UserRecord::new("SUITE-CRUD@CONTOSO.COM");
    changed.first_name = "Grace".into();
    changed.mode = Mode3::SmsText;
    changed.oath_time_interval = 30;
    store.update_user(&changed).await.unwrap();
    let got = store
        .get_user("suite-crud@contoso.com")
        .await
        .unwrap()
        .unwrap();
    let mut expected = changed.clone();
    expected.username = "Suite-Crud@Contoso.com".into();
    assert_eq!(got, expected);
    // Secrets and PIN cleared by the update.
    assert_eq!(
        (got.oath_secret, got.static_token, got.pin_hash),
        (None, None, None)
    );

    let err = store
        .update_user(&UserRecord::new("suite-crud-missing"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(store.get_user("suite-crud-missing").await.unwrap(), None);

    // Delete, case-insensitively, once.
    assert!(store.delete_user("SUITE-CRUD@contoso.com").await.unwrap());
    assert_eq!(
        store.get_user("suite-crud@contoso.com").await.unwrap(),
        None
    );
    assert!(!store.delete_user("suite-crud@contoso.com").await.unwrap());
    assert!(!store.delete_user("suite-crud-missing").await.unwrap());
    assert!(store.delete_user("suite-crud-defaults").await.unwrap());
}

/// The external id stored for `username` (which must exist).
async fn stored_external_id(store: &dyn Store, username: &str) -> Option<String> {
    store
        .get_user(username)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{username} is in the store"))
        .external_id
}

/// The external id (the IdP's `oid`/`sub` for the OIDC step-up provider): stored trimmed and lower
/// case, read back, unique among users whatever its case (refused with
/// [`StoreError::ExternalIdTaken`] naming the holder, on add and on update, leaving the refused
/// row as it was), kept by an update that carries it, cleared, and free again once cleared.
pub async fn check_external_id(store: &dyn Store) {
    const OID: &str = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
    const STORED: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let mut a = UserRecord::new("Suite-Ext-A@contoso.com");
    a.external_id = Some(format!("  {OID}\t"));
    store.add_user(&a).await.unwrap();
    let got = store
        .get_user("suite-ext-a@contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.external_id.as_deref(), Some(STORED));

    // Another user with the same id, in another case: refused, naming the holder; not added.
    let mut b = UserRecord::new("Suite-Ext-B@contoso.com");
    b.external_id = Some(STORED.to_ascii_uppercase());
    let err = store.add_user(&b).await.unwrap_err();
    match &err {
        StoreError::ExternalIdTaken {
            external_id,
            holder,
        } => {
            assert_eq!(external_id, STORED);
            assert_eq!(holder, "Suite-Ext-A@contoso.com");
        }
        other => panic!("add with a taken external id: {other}"),
    }
    assert!(err.to_string().contains("Suite-Ext-A@contoso.com"), "{err}");
    assert_eq!(
        store.get_user("suite-ext-b@contoso.com").await.unwrap(),
        None
    );

    // Without one: added (any number of users have none).
    b.external_id = None;
    store.add_user(&b).await.unwrap();
    let mut c = UserRecord::new("Suite-Ext-C@contoso.com");
    c.external_id = Some("   ".into());
    store.add_user(&c).await.unwrap();
    assert_eq!(
        stored_external_id(store, "suite-ext-c@contoso.com").await,
        None,
        "blank is none"
    );

    // An update to a taken id: refused, and the row keeps what it had.
    let mut b_taking = b.clone();
    b_taking.external_id = Some(OID.into());
    b_taking.first_name = "Mallory".into();
    let err = store.update_user(&b_taking).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::ExternalIdTaken { holder, .. } if holder == "Suite-Ext-A@contoso.com"),
        "{err}"
    );
    assert_eq!(
        store.get_user("suite-ext-b@contoso.com").await.unwrap(),
        Some(b.clone())
    );

    // An update of the holder that carries its own id is no conflict; a different id is stored.
    let mut a2 = got.clone();
    a2.first_name = "Alice".into();
    store.update_user(&a2).await.unwrap();
    assert_eq!(
        store.get_user("suite-ext-a@contoso.com").await.unwrap(),
        Some(a2.clone())
    );
    b.external_id = Some("00000000-0000-0000-0000-00000000000B".into());
    store.update_user(&b).await.unwrap();
    assert_eq!(
        stored_external_id(store, "suite-ext-b@contoso.com")
            .await
            .as_deref(),
        Some("00000000-0000-0000-0000-00000000000b")
    );

    // The id follows a rename.
    store
        .rename_user("suite-ext-a@contoso.com", "Suite-Ext-A2@contoso.com")
        .await
        .unwrap();
    let renamed = store
        .get_user("suite-ext-a2@contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.external_id.as_deref(), Some(STORED));

    // Cleared: gone, and free for another user.
    let mut cleared = renamed.clone();
    cleared.external_id = None;
    store.update_user(&cleared).await.unwrap();
    assert_eq!(
        stored_external_id(store, "suite-ext-a2@contoso.com").await,
        None
    );
    c.external_id = Some(OID.into());
    store.update_user(&c).await.unwrap();
    assert_eq!(
        stored_external_id(store, "suite-ext-c@contoso.com")
            .await
            .as_deref(),
        Some(STORED)
    );
    for name in [
        "suite-ext-a2@contoso.com",
        "suite-ext-b@contoso.com",
        "suite-ext-c@contoso.com",
    ] {
        assert!(store.delete_user(name).await.unwrap());
    }
}

/// OATH secret and static token come back as stored, through set, clear and set again.
pub async fn check_secrets_round_trip(store: &dyn Store) {
    let mut user = UserRecord::new("Suite-Secrets@contoso.com");
    user.oath_secret = Some(OATH_SECRET.into());
    user.static_token = Some(STATIC_TOKEN.into());
    user.pin_hash = Some(PIN_HASH.into());
    store.add_user(&user).await.unwrap();
    assert_eq!(
        store
            .get_user("suite-secrets@contoso.com")
            .await
            .unwrap()
            .as_ref(),
        Some(&user)
    );

    let mut cleared = user.clone();
    cleared.oath_secret = None;
    cleared.static_token = None;
    store.update_user(&cleared).await.unwrap();
    assert_eq!(
        store.get_user("suite-secrets@contoso.com").await.unwrap(),
        Some(cleared)
    );

    // Unicode and empty values survive as well.
    let mut odd = user.clone();
    odd.oath_secret = Some(String::new());
    odd.static_token = Some("stätic-tökén-✓".into());
    store.update_user(&odd).await.unwrap();
    assert_eq!(
        store
            .get_user("suite-secrets@contoso.com")
            .await
            .unwrap()
            .as_ref(),
        Some(&odd)
    );

    // Leave the suite's secrets in place for the backend's raw-storage scan.
    store.update_user(&user).await.unwrap();
    assert_eq!(
        store.get_user("SUITE-SECRETS@contoso.com").await.unwrap(),
        Some(user)
    );
}

/// Rename moves the record and everything attached, keeps secrets readable, refuses missing
/// sources and existing targets, and allows a change of letter case only.
pub async fn check_rename(store: &dyn Store) {
    let mut user = full_user("Suite-Rename-Old@contoso.com");
    user.oath_secret = Some("SUITERENAMEOATH".into());
    user.static_token = Some("suite-rename-token".into());
    store.add_user(&user).await.unwrap();
    assert!(store
        .block_user("suite-rename-old@contoso.com", "lost phone", "admin")
        .await
        .unwrap());
    store
        .add_bypass(&Bypass {
            username: user.username.clone(),
            reason: "travel".into(),
            expires_at: NOW + 600,
            created_by: "admin".into(),
        })
        .await
        .unwrap();
    let tx = Transaction {
        id: "A0000000000000000000000000000001".into(),
        username: user.username.clone(),
        kind: TransactionKind::SmsPasscode,
        code_hash: Some(PIN_HASH.into()),
        expires_at: NOW + 300,
        target: None,
        started_by: CALLER.into(),
    };
    store.put_transaction(&tx).await.unwrap();
    assert!(store
        .mark_code_used(&user.username, "246810", wall_now() + 600)
        .await
        .unwrap());

    store
        .rename_user(
            "SUITE-RENAME-OLD@contoso.com",
            "Suite-Rename-New@contoso.com",
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_user("suite-rename-old@contoso.com")
            .await
            .unwrap(),
        None
    );
    let renamed = store
        .get_user("suite-rename-new@contoso.com")
        .await
        .unwrap()
        .unwrap();
    let mut expected = user.clone();
    expected.username = "Suite-Rename-New@contoso.com".into();
    assert_eq!(renamed, expected);

    // Attached state followed the rename.
    assert_eq!(
        store
            .block_reason("suite-rename-old@contoso.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .block_reason("suite-rename-new@contoso.com")
            .await
            .unwrap()
            .as_deref(),
        Some("lost phone")
    );
    assert!(!store
        .consume_bypass("suite-rename-old@contoso.com", NOW)
        .await
        .unwrap());
    assert!(store
        .consume_bypass("suite-rename-new@contoso.com", NOW)
        .await
        .unwrap());
    let taken = store
        .take_transaction(&tx.id, "suite-rename-new@contoso.com", CALLER, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.username, "Suite-Rename-New@contoso.com");
    assert_eq!(taken.code_hash, tx.code_hash);
    // The code accepted before the rename is still a replay after it.
    assert!(!store
        .mark_code_used("suite-rename-new@contoso.com", "246810", wall_now() + 600)
        .await
        .unwrap());

    // Missing source; existing target (any case); the old name is free again.
    let err = store
        .rename_user("suite-rename-missing", "suite-rename-x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    store
        .add_user(&UserRecord::new("suite-rename-other"))
        .await
        .unwrap();
    let err = store
        .rename_user("suite-rename-new@contoso.com", "SUITE-RENAME-OTHER")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err}");
    assert_eq!(
        store
            .get_user("suite-rename-new@contoso.com")
            .await
            .unwrap()
            .as_ref(),
        Some(&expected)
    );
    assert!(store
        .get_user("suite-rename-other")
        .await
        .unwrap()
        .is_some());

    // Letter case only.
    store
        .rename_user(
            "suite-rename-new@contoso.com",
            "SUITE-RENAME-NEW@CONTOSO.COM",
        )
        .await
        .unwrap();
    let recased = store
        .get_user("suite-rename-new@contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recased.username, "SUITE-RENAME-NEW@CONTOSO.COM");
    assert_eq!(recased.oath_secret.as_deref(), Some("SUITERENAMEOATH"));
    assert_eq!(recased.static_token.as_deref(), Some("suite-rename-token"));

    assert!(store
        .delete_user("suite-rename-new@contoso.com")
        .await
        .unwrap());
    assert!(store.delete_user("suite-rename-other").await.unwrap());
}

/// Deleting a user removes its block, bypass, transactions and used codes.
pub async fn check_delete_cascades(store: &dyn Store) {
    let name = "suite-delete@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    assert!(store.block_user(name, "reason", "admin").await.unwrap());
    store
        .add_bypass(&Bypass {
            username: name.into(),
            reason: "r".into(),
            expires_at: NOW + 600,
            created_by: "admin".into(),
        })
        .await
        .unwrap();
    let tx = Transaction {
        id: "D0000000000000000000000000000001".into(),
        username: name.into(),
        kind: TransactionKind::OathCode,
        code_hash: None,
        expires_at: NOW + 300,
        target: None,
        started_by: CALLER.into(),
    };
    store.put_transaction(&tx).await.unwrap();
    assert!(store
        .mark_code_used(name, "135790", wall_now() + 600)
        .await
        .unwrap());

    assert!(store.delete_user("SUITE-DELETE@contoso.com").await.unwrap());
    assert_eq!(store.block_reason(name).await.unwrap(), None);
    assert!(!store.consume_bypass(name, NOW).await.unwrap());
    assert_eq!(
        store
            .take_transaction(&tx.id, name, CALLER, NOW)
            .await
            .unwrap(),
        None
    );

    // A new user of the same name starts clean.
    store.add_user(&UserRecord::new(name)).await.unwrap();
    assert_eq!(store.block_reason(name).await.unwrap(), None);
    assert!(!store.consume_bypass(name, NOW).await.unwrap());
    assert!(store
        .mark_code_used(name, "135790", wall_now() + 600)
        .await
        .unwrap());
    assert!(store.delete_user(name).await.unwrap());
}

/// Block once, reason, unblock once; unknown users.
pub async fn check_blocks(store: &dyn Store) {
    let name = "Suite-Block@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    assert_eq!(store.block_reason(name).await.unwrap(), None);
    assert!(store
        .block_user("suite-block@contoso.com", "fraud report", "helpdesk")
        .await
        .unwrap());
    assert!(!store
        .block_user("SUITE-BLOCK@contoso.com", "again", "helpdesk")
        .await
        .unwrap());
    assert_eq!(
        store
            .block_reason("suite-block@CONTOSO.com")
            .await
            .unwrap()
            .as_deref(),
        Some("fraud report"),
        "a second block must not replace the first"
    );
    assert!(store.unblock_user("SUITE-block@contoso.com").await.unwrap());
    assert!(!store.unblock_user(name).await.unwrap());
    assert_eq!(store.block_reason(name).await.unwrap(), None);
    // Empty reasons are reasons.
    assert!(store.block_user(name, "", "").await.unwrap());
    assert_eq!(store.block_reason(name).await.unwrap().as_deref(), Some(""));
    assert!(store.unblock_user(name).await.unwrap());

    let err = store
        .block_user("suite-block-missing", "r", "a")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(!store.unblock_user("suite-block-missing").await.unwrap());
    assert_eq!(
        store.block_reason("suite-block-missing").await.unwrap(),
        None
    );
    assert!(store.delete_user(name).await.unwrap());
}

fn bypass(name: &str, expires_at: i64) -> Bypass {
    Bypass {
        username: name.into(),
        reason: "suite".into(),
        expires_at,
        created_by: "suite-admin".into(),
    }
}

/// A bypass is consumed once, only before it expires; a new one replaces the old.
pub async fn check_bypass(store: &dyn Store) {
    let name = "Suite-Bypass@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    assert!(!store.consume_bypass(name, NOW).await.unwrap());

    store.add_bypass(&bypass(name, NOW + 60)).await.unwrap();
    assert!(store
        .consume_bypass("suite-bypass@contoso.com", NOW)
        .await
        .unwrap());
    assert!(!store.consume_bypass(name, NOW).await.unwrap());

    // Valid up to and including expires_at, void after.
    store.add_bypass(&bypass(name, NOW)).await.unwrap();
    assert!(!store.consume_bypass(name, NOW + 1).await.unwrap());
    store.add_bypass(&bypass(name, NOW)).await.unwrap();
    assert!(store.consume_bypass(name, NOW).await.unwrap());

    // Re-granting replaces (expired or not) and still yields one use.
    store.add_bypass(&bypass(name, NOW - 5)).await.unwrap();
    store
        .add_bypass(&bypass("SUITE-BYPASS@contoso.com", NOW + 5))
        .await
        .unwrap();
    assert!(store.consume_bypass(name, NOW).await.unwrap());
    assert!(!store.consume_bypass(name, NOW).await.unwrap());

    let err = store
        .add_bypass(&bypass("suite-bypass-missing", NOW + 60))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(!store
        .consume_bypass("suite-bypass-missing", NOW)
        .await
        .unwrap());
    assert!(store.delete_user(name).await.unwrap());
}

/// `user_standing` answers in one read what `get_user`, `block_reason`, `locked_until` and a look
/// at the bypasses answer one by one, at the boundaries of each (a lock ends at `locked_until`, a
/// bypass is valid up to and including `expires_at`), and never consumes the bypass.
pub async fn check_user_standing(store: &dyn Store) {
    let name = "Suite-Standing@contoso.com";
    assert_eq!(store.user_standing(name, NOW).await.unwrap(), None);
    store.add_user(&full_user(name)).await.unwrap();
    let standing = |now| async move {
        store
            .user_standing("suite-STANDING@contoso.com", now)
            .await
            .unwrap()
            .expect("the user exists")
    };
    let s = standing(NOW).await;
    assert_eq!(s.user, full_user(name), "the record, secrets opened");
    assert_eq!((s.blocked, s.locked_until, s.bypass), (false, None, false));

    assert!(store.block_user(name, "fraud", "helpdesk").await.unwrap());
    assert!(standing(NOW).await.blocked);
    assert!(store.unblock_user(name).await.unwrap());
    assert!(!standing(NOW).await.blocked);

    for at in [NOW, NOW + 1, NOW + 2] {
        store.record_failure(name, at, RULE).await.unwrap();
    }
    // Locked at NOW + 2 for 50 s: until NOW + 52, which is no longer locked.
    assert_eq!(standing(NOW + 51).await.locked_until, Some(NOW + 52));
    assert_eq!(standing(NOW + 52).await.locked_until, None);
    assert!(store.clear_failures(name, NOW + 3).await.unwrap());
    assert_eq!(standing(NOW + 3).await.locked_until, None);

    store.add_bypass(&bypass(name, NOW + 60)).await.unwrap();
    assert!(standing(NOW + 60).await.bypass);
    assert!(!standing(NOW + 61).await.bypass);
    assert!(standing(NOW).await.bypass, "reading does not consume");
    assert!(store.consume_bypass(name, NOW).await.unwrap());
    assert!(!standing(NOW).await.bypass);

    // Each part belongs to this user only.
    let other = "suite-standing-other@contoso.com";
    store.add_user(&UserRecord::new(other)).await.unwrap();
    store.block_user(name, "r", "a").await.unwrap();
    store.add_bypass(&bypass(name, NOW + 60)).await.unwrap();
    let o = store.user_standing(other, NOW).await.unwrap().unwrap();
    assert_eq!((o.blocked, o.locked_until, o.bypass), (false, None, false));
    assert_eq!(o.user, UserRecord::new(other));
    assert!(store.delete_user(other).await.unwrap());
    assert!(store.delete_user(name).await.unwrap());
    assert_eq!(store.user_standing(name, NOW).await.unwrap(), None);
}

/// 20 concurrent consumers of one bypass: exactly one wins (several rounds).
pub async fn check_bypass_concurrency(store: Arc<dyn Store>) {
    let name = "suite-bypass-race@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    for round in 0..5 {
        store.add_bypass(&bypass(name, NOW + 60)).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(&store);
                let who = if i % 2 == 0 {
                    name.to_owned()
                } else {
                    name.to_uppercase()
                };
                tokio::spawn(async move { store.consume_bypass(&who, NOW).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}: {wins} callers consumed one bypass");
    }
    assert!(store.delete_user(name).await.unwrap());
}

/// A transaction is taken once with its content intact, never after expiry; unknown ids, unknown
/// users and duplicate ids.
pub async fn check_transactions(store: &dyn Store) {
    let name = "Suite-Tx@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    let sms = Transaction {
        id: "B0000000000000000000000000000001".into(),
        username: "suite-tx@contoso.com".into(),
        kind: TransactionKind::ProviderCode,
        code_hash: None,
        expires_at: NOW + 120,
        target: Some("+14255550100".into()),
        started_by: CALLER.into(),
    };
    let oath = Transaction {
        id: "B0000000000000000000000000000002".into(),
        username: name.into(),
        kind: TransactionKind::OathCode,
        code_hash: None,
        expires_at: NOW + 120,
        target: None,
        started_by: CALLER.into(),
    };
    store.put_transaction(&sms).await.unwrap();
    store.put_transaction(&oath).await.unwrap();
    assert!(
        store.put_transaction(&oath).await.is_err(),
        "duplicate id accepted"
    );

    // Another user, or another principal, naming the id takes nothing and leaves it for its owner
    // (issue #23, item 7).
    for (user, caller) in [
        ("suite-other@contoso.com", CALLER),
        (name, "CONTOSO\\other-app"),
    ] {
        assert_eq!(
            store
                .take_transaction(&sms.id, user, caller, NOW)
                .await
                .unwrap(),
            None,
            "{user} / {caller}"
        );
    }
    assert_eq!(
        store
            .take_user_transaction(
                name,
                TransactionKind::ProviderCode,
                "CONTOSO\\other-app",
                NOW
            )
            .await
            .unwrap(),
        None
    );

    // The username comes back as stored, whatever case the caller used.
    let mut expected = sms.clone();
    expected.username = name.into();
    assert_eq!(
        store
            .take_transaction(&sms.id, "SUITE-TX@contoso.com", CALLER, NOW)
            .await
            .unwrap(),
        Some(expected)
    );
    assert_eq!(
        store
            .take_transaction(&sms.id, "SUITE-TX@contoso.com", CALLER, NOW)
            .await
            .unwrap(),
        None
    );
    // Valid up to and including expires_at.
    assert_eq!(
        store
            .take_transaction(&oath.id, name, CALLER, NOW + 120)
            .await
            .unwrap(),
        Some(oath.clone())
    );

    // Expired: never returned, not even to a caller with an earlier clock afterwards.
    let late = Transaction {
        id: "B0000000000000000000000000000003".into(),
        ..oath.clone()
    };
    store.put_transaction(&late).await.unwrap();
    assert_eq!(
        store
            .take_transaction(&late.id, name, CALLER, NOW + 121)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_transaction("B0000000000000000000000000000009", name, CALLER, NOW)
            .await
            .unwrap(),
        None
    );

    let orphan = Transaction {
        id: "B0000000000000000000000000000004".into(),
        username: "suite-tx-missing".into(),
        ..oath.clone()
    };
    let err = store.put_transaction(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.delete_user(name).await.unwrap());
}

/// The newest unexpired transaction of a kind is taken by user, once; other kinds and users and
/// expired ones are left alone.
pub async fn check_user_transactions(store: &dyn Store) {
    let name = "Suite-UTx@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    let mk = |id: &str, kind, expires_at| Transaction {
        id: id.into(),
        username: name.into(),
        kind,
        code_hash: Some(PIN_HASH.into()),
        expires_at,
        target: None,
        started_by: CALLER.into(),
    };
    let old = mk(
        "D0000000000000000000000000000001",
        TransactionKind::SmsPasscode,
        NOW + 60,
    );
    let new = mk(
        "D0000000000000000000000000000002",
        TransactionKind::SmsPasscode,
        NOW + 120,
    );
    let oath = mk(
        "D0000000000000000000000000000003",
        TransactionKind::OathCode,
        NOW + 300,
    );
    for t in [&old, &new, &oath] {
        store.put_transaction(t).await.unwrap();
    }
    let got = store
        .take_user_transaction(
            "suite-utx@CONTOSO.com",
            TransactionKind::SmsPasscode,
            CALLER,
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(got, Some(new.clone()), "newest first, username as stored");
    // The older one expires before it is asked for.
    assert_eq!(
        store
            .take_user_transaction(name, TransactionKind::SmsPasscode, CALLER, NOW + 61)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_user_transaction("nobody", TransactionKind::OathCode, CALLER, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_user_transaction(name, TransactionKind::OathCode, CALLER, NOW)
            .await
            .unwrap(),
        Some(oath)
    );
    assert!(store.delete_user(name).await.unwrap());
}

/// 20 concurrent takers of one transaction: exactly one gets it.
pub async fn check_transaction_concurrency(store: Arc<dyn Store>) {
    let name = "suite-tx-race@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    for round in 0..5 {
        let id = format!("C00000000000000000000000000000{round:02}");
        let tx = Transaction {
            id: id.clone(),
            username: name.into(),
            kind: TransactionKind::OathCode,
            code_hash: None,
            expires_at: NOW + 60,
            target: None,
            started_by: CALLER.into(),
        };
        store.put_transaction(&tx).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = Arc::clone(&store);
                let id = id.clone();
                tokio::spawn(async move { store.take_transaction(&id, name, CALLER, NOW).await })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            if let Some(got) = t.await.unwrap().unwrap() {
                winners.push(got);
            }
        }
        assert_eq!(winners, vec![tx], "round {round}");
    }
    assert!(store.delete_user(name).await.unwrap());
}

/// A code is accepted once per user (any case), other codes and other users are independent.
pub async fn check_used_codes(store: &dyn Store) {
    let (a, b) = ("Suite-Code-A@contoso.com", "suite-code-b@contoso.com");
    store.add_user(&UserRecord::new(a)).await.unwrap();
    store.add_user(&UserRecord::new(b)).await.unwrap();
    let until = wall_now() + 600;
    assert!(store.mark_code_used(a, "123456", until).await.unwrap());
    assert!(
        !store.mark_code_used(a, "123456", until).await.unwrap(),
        "replay accepted"
    );
    assert!(!store
        .mark_code_used("SUITE-CODE-A@CONTOSO.COM", "123456", until)
        .await
        .unwrap());
    assert!(store.mark_code_used(a, "654321", until).await.unwrap());
    assert!(store.mark_code_used(b, "123456", until).await.unwrap());
    assert!(!store.mark_code_used(b, "123456", until).await.unwrap());

    let err = store
        .mark_code_used("suite-code-missing", "123456", until)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.delete_user(a).await.unwrap());
    assert!(store.delete_user(b).await.unwrap());
}

/// 20 concurrent acceptances of one code: exactly one succeeds.
pub async fn check_used_code_concurrency(store: Arc<dyn Store>) {
    let name = "suite-code-race@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    let until = wall_now() + 600;
    for round in 0..5 {
        let code = format!("77770{round}");
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = Arc::clone(&store);
                let code = code.clone();
                tokio::spawn(async move { store.mark_code_used(name, &code, until).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "round {round}: one code accepted {wins} times");
    }
    assert!(store.delete_user(name).await.unwrap());
}

/// `find_users`: wildcards, literal `%` `_` `?`, case flags, phone digits, enum and enabled
/// filters, ordering, limit and completeness.
pub async fn check_find_users(store: &dyn Store) {
    let mk = |name: &str, first: &str, last: &str, email: &str, group: &str| {
        let mut u = UserRecord::new(name);
        u.first_name = first.into();
        u.last_name = last.into();
        u.email = email.into();
        u.user_group = group.into();
        u
    };
    let mut adams = mk(
        "SFind-Adams@contoso.com",
        "Ada",
        "Adams",
        "ada.adams@contoso.com",
        "Suite_Find",
    );
    adams.phone.number = "425 555 0100".into();
    let mut baker = mk(
        "sfind-baker@contoso.com",
        "Bob",
        "Baker",
        "BOB@Fabrikam.com",
        "suite_find",
    );
    baker.phone.number = "(206) 555-0111".into();
    baker.backup_phone.number = "425-555-0199".into();
    baker.mode = Mode3::SmsText;
    baker.enabled = false;
    let mut carter = mk(
        "sfind-carter@contoso.com",
        "Cy",
        "Carter",
        "cy@contoso.com",
        "suite%find",
    );
    carter.mode = Mode3::OathToken;
    carter.pin_mode = PinMode2::Pin;
    let mut dunn = mk(
        "sfind-dunn@contoso.com",
        "Di",
        "Dunn_x",
        "di@contoso.com",
        "other",
    );
    dunn.phone = Phone {
        country_code: "44".into(),
        number: "20 7946 0000".into(),
        extension: String::new(),
    };
    let mut evans = mk(
        "sfind-evans@contoso.com",
        "Ed",
        "Evans",
        "ed@contoso.com",
        "other",
    );
    evans.mode = Mode3::PhoneApp;
    evans.oath_secret = Some("SUITEFINDOATH".into());
    let all = [&adams, &baker, &carter, &dunn, &evans];
    // Insert out of order: results must come back ordered by username (case-insensitively).
    for u in [&evans, &baker, &dunn, &adams, &carter] {
        store.add_user(u).await.unwrap();
    }

    let base = || UserFilter {
        username: filter("sfind-*"),
        ..UserFilter::default()
    };
    let names = |found: &[UserRecord]| -> Vec<String> {
        found.iter().map(|u| u.username.to_lowercase()).collect()
    };
    let expect = |users: &[&UserRecord]| -> Vec<String> {
        users.iter().map(|u| u.username.to_lowercase()).collect()
    };
    let find =
        |f: UserFilter, limit: u32| async move { store.find_users(&f, limit).await.unwrap() };

    // Everything, in order, complete; full records come back.
    let (found, complete) = find(base(), 0).await;
    assert!(complete);
    assert_eq!(found, all.iter().map(|u| (*u).clone()).collect::<Vec<_>>());

    // Limit and completeness.
    let (found, complete) = find(base(), 2).await;
    assert_eq!(
        (names(&found), complete),
        (expect(&[&adams, &baker]), false)
    );
    let (found, complete) = find(base(), 4).await;
    assert_eq!((found.len(), complete), (4, false));
    let (found, complete) = find(base(), 5).await;
    assert_eq!((found.len(), complete), (5, true));
    let (found, complete) = find(base(), 100).await;
    assert_eq!((found.len(), complete), (5, true));

    // Username: case flags and wildcards.
    let by_user = |p: TextFilter| UserFilter {
        username: p,
        ..UserFilter::default()
    };
    assert_eq!(names(&find(by_user(filter("SFIND-*")), 0).await.0).len(), 5);
    assert!(find(by_user(filter_cs("SFIND-*")), 0).await.0.is_empty());
    assert_eq!(
        names(&find(by_user(filter_cs("SFind-*")), 0).await.0),
        expect(&[&adams])
    );
    assert_eq!(
        names(&find(by_user(filter_cs("sfind-*")), 0).await.0),
        expect(&[&baker, &carter, &dunn, &evans])
    );
    assert_eq!(
        names(&find(by_user(filter("sfind-*r@contoso.com")), 0).await.0),
        expect(&[&baker, &carter])
    );
    assert_eq!(
        names(&find(by_user(filter("*find-d*")), 0).await.0),
        expect(&[&dunn])
    );
    assert_eq!(
        names(&find(by_user(filter("SFIND-EVANS@CONTOSO.COM")), 0).await.0),
        expect(&[&evans])
    );
    assert!(
        find(by_user(filter("sfind-evans")), 0).await.0.is_empty(),
        "no star is exact"
    );
    assert!(
        find(by_user(filter("sfind-?vans@contoso.com")), 0)
            .await
            .0
            .is_empty(),
        "? is literal"
    );

    // Other text fields (always within the suite's users).
    let with = |f: UserFilter| UserFilter {
        username: filter("sfind-*"),
        ..f
    };
    let d = UserFilter::default;
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    first_name: filter("b*"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&baker])
    );
    assert!(find(
        with(UserFilter {
            first_name: filter_cs("b*"),
            ..d()
        }),
        0
    )
    .await
    .0
    .is_empty());
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    last_name: filter("Adams"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&adams])
    );
    assert!(find(
        with(UserFilter {
            last_name: filter("Adam"),
            ..d()
        }),
        0
    )
    .await
    .0
    .is_empty());
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    last_name: filter("*_x"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&dunn])
    );
    assert!(
        find(
            with(UserFilter {
                last_name: filter("Dunn_"),
                ..d()
            }),
            0
        )
        .await
        .0
        .is_empty(),
        "_ is literal"
    );
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    email: filter("*@FABRIKAM.com"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&baker])
    );
    assert!(find(
        with(UserFilter {
            email: filter_cs("*@fabrikam.com"),
            ..d()
        }),
        0
    )
    .await
    .0
    .is_empty());
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    user_group: filter("suite_find"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&adams, &baker])
    );
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    user_group: filter_cs("suite_find"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&baker])
    );
    assert_eq!(
        names(
            &find(
                with(UserFilter {
                    user_group: filter("*%*"),
                    ..d()
                }),
                0
            )
            .await
            .0
        ),
        expect(&[&carter]),
        "% is literal"
    );

    // Phone: digits of primary or backup number.
    let phone = |p: &str| {
        with(UserFilter {
            phone: p.into(),
            ..d()
        })
    };
    assert_eq!(
        names(&find(phone("425*"), 0).await.0),
        expect(&[&adams, &baker])
    );
    assert_eq!(names(&find(phone("*0111"), 0).await.0), expect(&[&baker]));
    assert_eq!(
        names(&find(phone("425-555-0100"), 0).await.0),
        expect(&[&adams])
    );
    assert_eq!(
        names(&find(phone("*555*"), 0).await.0),
        expect(&[&adams, &baker])
    );
    assert_eq!(
        names(&find(phone("2079460000"), 0).await.0),
        expect(&[&dunn])
    );
    assert!(find(phone("425"), 0).await.0.is_empty(), "no star is exact");

    // Enum and enabled filters, alone and combined.
    let (found, _) = find(
        with(UserFilter {
            mode: Some(Mode3::SmsText),
            ..d()
        }),
        0,
    )
    .await;
    assert_eq!(names(&found), expect(&[&baker]));
    let (found, _) = find(
        with(UserFilter {
            pin_mode: Some(PinMode2::Pin),
            ..d()
        }),
        0,
    )
    .await;
    assert_eq!(names(&found), expect(&[&carter]));
    let (found, _) = find(
        with(UserFilter {
            enabled: Some(false),
            ..d()
        }),
        0,
    )
    .await;
    assert_eq!(names(&found), expect(&[&baker]));
    let (found, complete) = find(
        with(UserFilter {
            enabled: Some(true),
            mode: Some(Mode3::VoiceCall),
            ..d()
        }),
        1,
    )
    .await;
    assert_eq!((names(&found), complete), (expect(&[&adams]), false));
    let (found, complete) = find(
        with(UserFilter {
            enabled: Some(true),
            mode: Some(Mode3::VoiceCall),
            ..d()
        }),
        2,
    )
    .await;
    assert_eq!((names(&found), complete), (expect(&[&adams, &dunn]), true));
    let (found, complete) = find(
        with(UserFilter {
            first_name: filter("nobody"),
            ..d()
        }),
        1,
    )
    .await;
    assert!(found.is_empty() && complete);

    for u in all {
        assert!(store.delete_user(&u.username).await.unwrap());
    }
}

/// Writes data that must survive closing and reopening a durable store.
pub async fn seed_persistent(store: &dyn Store) {
    let mut user = full_user(PERSIST_USER);
    user.oath_secret = Some(PERSIST_OATH.into());
    user.static_token = Some(PERSIST_TOKEN.into());
    store.add_user(&user).await.unwrap();
    assert!(store
        .block_user(PERSIST_USER, "persisted block", "suite")
        .await
        .unwrap());
    store
        .add_bypass(&bypass(PERSIST_USER, NOW + 3600))
        .await
        .unwrap();
    assert!(store
        .mark_code_used(PERSIST_USER, "112233", wall_now() + 3600)
        .await
        .unwrap());
}

/// Checks, on the reopened store, what [`seed_persistent`] wrote.
pub async fn check_persistent(store: &dyn Store) {
    let mut expected = full_user(PERSIST_USER);
    expected.oath_secret = Some(PERSIST_OATH.into());
    expected.static_token = Some(PERSIST_TOKEN.into());
    assert_eq!(
        store.get_user(&PERSIST_USER.to_lowercase()).await.unwrap(),
        Some(expected)
    );
    assert_eq!(
        store.block_reason(PERSIST_USER).await.unwrap().as_deref(),
        Some("persisted block")
    );
    assert!(!store
        .mark_code_used(PERSIST_USER, "112233", wall_now() + 3600)
        .await
        .unwrap());
    assert!(store.consume_bypass(PERSIST_USER, NOW).await.unwrap());
    assert!(!store.consume_bypass(PERSIST_USER, NOW).await.unwrap());
}

/// The in-flight key of `user` and `phone` asked by MIM (`CONTOSO\svc-mim`, application "MIM",
/// from 10.0.0.5).
fn mim_call(user: &str, phone: &str) -> CallKey {
    CallKey::new(user, phone, "CONTOSO\\svc-mim", "MIM", "10.0.0.5")
}

/// Claims of provider calls: one call per key — user (any case), number, principal (any case),
/// application and initiating address — joiners learn its request id, an ended call frees the
/// slot, and a claim whose lease lapsed is given up.
pub async fn check_call_claims(store: &dyn Store) {
    let (user, phone) = ("Suite-Call@contoso.com", "+14255550100");
    let id = |n: u32| format!("E00000000000000000000000000000{n:02}");
    let claim = |key: CallKey, n: u32, now: i64| {
        let rid = id(n);
        async move { store.claim_call(&key, &rid, now, now + 60).await.unwrap() }
    };
    assert_eq!(
        claim(mim_call(user, phone), 1, NOW).await,
        CallClaim::Placed
    );
    assert_eq!(
        store.call_state(&id(1)).await.unwrap(),
        Some(CallState::Pending {
            lease_until: NOW + 60
        })
    );
    // A true retry (the user and the principal in another letter case): joined, not placed.
    let retry = CallKey::new(
        "suite-call@CONTOSO.com",
        phone,
        "contoso\\SVC-MIM",
        "MIM",
        " 10.0.0.5",
    );
    assert_eq!(claim(retry, 2, NOW).await, CallClaim::Joined(id(1)));
    assert_eq!(store.call_state(&id(2)).await.unwrap(), None);
    // Anyone else who asks for the same user and number gets a call of its own: another
    // principal, another application, another initiating address.
    let others = [
        CallKey::new(user, phone, "CONTOSO\\evil", "MIM", "10.0.0.5"),
        CallKey::new(user, phone, "CONTOSO\\svc-mim", "EvilApp", "10.0.0.5"),
        CallKey::new(user, phone, "CONTOSO\\svc-mim", "MIM", "203.0.113.9"),
        // The fields are length-prefixed: moving text between them makes another key.
        CallKey::new(user, phone, "CONTOSO\\svc-mim", "MIM1", "0.0.0.5"),
    ];
    for (n, key) in (10..).zip(others) {
        assert_eq!(claim(key, n, NOW).await, CallClaim::Placed, "{n}");
        store.finish_call(&id(n), "denied", NOW + 60).await.unwrap();
    }
    // Another number, another user (unknown to the store: PfAuthUser_5 calls those too).
    assert_eq!(
        claim(mim_call(user, "+14255550101"), 3, NOW).await,
        CallClaim::Placed
    );
    assert_eq!(
        claim(mim_call("suite-call-nobody", phone), 4, NOW).await,
        CallClaim::Placed
    );

    // The call ends: waiters read its outcome; the next authentication places a new call.
    store
        .finish_call(&id(1), "approved", NOW + 60)
        .await
        .unwrap();
    assert_eq!(
        store.call_state(&id(1)).await.unwrap(),
        Some(CallState::Done("approved".into()))
    );
    assert!(
        !store.renew_call(&id(1), NOW + 90).await.unwrap(),
        "an ended call's lease is not renewed"
    );
    assert_eq!(
        claim(mim_call(user, phone), 5, NOW + 1).await,
        CallClaim::Placed
    );

    // The owner's heartbeat extends the lease: a claimant after the first lease still joins.
    assert!(store.renew_call(&id(5), NOW + 100).await.unwrap());
    assert_eq!(
        claim(mim_call(user, phone), 7, NOW + 62).await,
        CallClaim::Joined(id(5))
    );
    // A claim whose lease lapsed (its owner stopped renewing) is given up: the next claimant
    // places the call, the old one's waiters read that it lapsed, and its owner cannot renew it.
    assert_eq!(
        claim(mim_call(user, phone), 6, NOW + 101).await,
        CallClaim::Placed
    );
    assert_eq!(
        store.call_state(&id(5)).await.unwrap(),
        Some(CallState::Lapsed)
    );
    assert!(!store.renew_call(&id(5), NOW + 130).await.unwrap());
    // A request id cannot claim a second call.
    assert!(store
        .claim_call(
            &mim_call(user, "+14255550199"),
            &id(6),
            NOW + 101,
            NOW + 120
        )
        .await
        .is_err());
    for n in [3, 4, 6] {
        store.finish_call(&id(n), "denied", NOW + 60).await.unwrap();
    }
}

/// 20 concurrent claimants of one call (several rounds): exactly one places it, the others join
/// it under its request id.
pub async fn check_call_claim_concurrency(store: Arc<dyn Store>) {
    let key = mim_call("suite-call-race@contoso.com", "+442079460000");
    for round in 0..5u32 {
        let now = NOW + i64::from(round);
        let tasks: Vec<_> = (0..20u32)
            .map(|i| {
                let store = Arc::clone(&store);
                let key = key.clone();
                let rid = format!("F000000000000000000000000000{round:02}{i:02}");
                tokio::spawn(async move {
                    let claim = store.claim_call(&key, &rid, now, now + 60).await.unwrap();
                    (rid, claim)
                })
            })
            .collect();
        let mut placed = Vec::new();
        let mut joined = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (rid, CallClaim::Placed) => placed.push(rid),
                (_, CallClaim::Joined(other)) => joined.push(other),
            }
        }
        assert_eq!(placed.len(), 1, "round {round}: {placed:?} placed one call");
        assert!(
            joined.iter().all(|j| *j == placed[0]),
            "round {round}: joiners must join the placed call"
        );
        store
            .finish_call(&placed[0], "approved", now + 60)
            .await
            .unwrap();
    }
}

/// The suite's lockout rule: 3 failures within 100 s lock for 50 s.
const RULE: FailureRule = FailureRule {
    threshold: 3,
    window_secs: 100,
    lock_secs: 50,
};

/// Failures count per user (any case) within the window, the threshold locks until `now + lock`,
/// the count restarts after the window or after a lock ends, clearing reports a lock, and the
/// counter follows a rename and goes with a delete.
pub async fn check_lockout(store: &dyn Store) {
    let name = "Suite-Lock@contoso.com";
    store.add_user(&UserRecord::new(name)).await.unwrap();
    assert_eq!(store.locked_until(name, NOW).await.unwrap(), None);
    let count = |failures, locked_until| FailureCount {
        failures,
        locked_until,
    };
    assert_eq!(
        store
            .record_failure("suite-lock@CONTOSO.com", NOW, RULE)
            .await
            .unwrap(),
        count(1, None)
    );
    assert_eq!(
        store.record_failure(name, NOW + 10, RULE).await.unwrap(),
        count(2, None)
    );
    assert_eq!(
        store.record_failure(name, NOW + 20, RULE).await.unwrap(),
        count(3, Some(NOW + 70))
    );
    assert_eq!(
        store.locked_until(name, NOW + 69).await.unwrap(),
        Some(NOW + 70)
    );
    assert_eq!(store.locked_until(name, NOW + 70).await.unwrap(), None);
    // After the lock ended the count starts again.
    assert_eq!(
        store.record_failure(name, NOW + 71, RULE).await.unwrap(),
        count(1, None)
    );
    // After the window passed (no lock) it starts again too.
    assert_eq!(
        store.record_failure(name, NOW + 171, RULE).await.unwrap(),
        count(1, None)
    );
    store.record_failure(name, NOW + 172, RULE).await.unwrap();
    store.record_failure(name, NOW + 173, RULE).await.unwrap();
    assert!(
        store.clear_failures(name, NOW + 174).await.unwrap(),
        "was locked"
    );
    assert_eq!(store.locked_until(name, NOW + 174).await.unwrap(), None);
    assert!(!store.clear_failures(name, NOW + 174).await.unwrap());
    // A user the store does not hold has no counter.
    let err = store
        .record_failure("suite-lock-nobody", NOW, RULE)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    // The counter follows a rename and goes with a delete.
    for t in 0..3 {
        store
            .record_failure(name, NOW + 200 + t, RULE)
            .await
            .unwrap();
    }
    store
        .rename_user(name, "Suite-Lock-Renamed@contoso.com")
        .await
        .unwrap();
    assert_eq!(
        store
            .locked_until("suite-lock-renamed@contoso.com", NOW + 203)
            .await
            .unwrap(),
        Some(NOW + 252)
    );
    assert!(store
        .delete_user("suite-lock-renamed@contoso.com")
        .await
        .unwrap());
    store.add_user(&UserRecord::new(name)).await.unwrap();
    assert_eq!(store.locked_until(name, NOW + 203).await.unwrap(), None);
    assert!(store.delete_user(name).await.unwrap());
}

/// Two stores on one database (two pfgate instances): failures counted through either add up,
/// concurrently, and a lock set through one holds in the other (issue #17, item 2).
pub async fn check_lockout_shared(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let name = "suite-lock-shared@contoso.com";
    a.add_user(&UserRecord::new(name)).await.unwrap();
    let rule = FailureRule {
        threshold: 40,
        ..RULE
    };
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tokio::spawn(async move { store.record_failure(name, NOW, rule).await })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap().unwrap().failures);
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=40).collect::<Vec<_>>(),
        "every failure counted once"
    );
    assert_eq!(a.locked_until(name, NOW + 1).await.unwrap(), Some(NOW + 50));
    assert_eq!(b.locked_until(name, NOW + 1).await.unwrap(), Some(NOW + 50));
    assert!(b.clear_failures(name, NOW + 1).await.unwrap());
    assert_eq!(a.locked_until(name, NOW + 1).await.unwrap(), None);
    assert!(a.delete_user(name).await.unwrap());
}

/// The secrets key check (issue #23): a database opened with one key refuses every other key at
/// open, and keeps refusing after reopening with the right one; a database without a check value
/// (written before the check existed) accepts only a key that opens its sealed secrets, and then
/// records it. `open` opens the same database with a key; `forget` deletes its key check row.
pub async fn check_key_check<O, OF, F, FF>(open: O, forget: F)
where
    O: Fn(SecretKey) -> OF,
    OF: std::future::Future<Output = Result<Arc<dyn Store>, StoreError>>,
    F: Fn() -> FF,
    FF: std::future::Future<Output = ()>,
{
    let other = || SecretKey::from_bytes([0x17; secrets::KEY_LEN]);
    let refused = |result: Result<Arc<dyn Store>, StoreError>, why: &str| {
        let err = result.expect_err("another key must be refused");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::KeyMismatch(_)), "{msg}");
        assert!(msg.contains(why), "{msg}");
        assert!(
            msg.contains("secrets_key_file") && msg.contains("docs/ha.md"),
            "says what to do: {msg}"
        );
    };
    // An empty database: the first key opens it and is recorded.
    let store = open(key()).await.unwrap();
    drop(store);
    refused(open(other()).await, "key check value differs");
    // A secret sealed under the right key; the right key still opens.
    let store = open(key()).await.unwrap();
    let mut user = UserRecord::new("Suite-KeyCheck@contoso.com");
    user.static_token = Some("suite-key-check-token".into());
    store.add_user(&user).await.unwrap();
    drop(store);
    refused(open(other()).await, "key check value differs");
    // Without a check value (a database from before it), a key that opens no secret is refused
    // and writes nothing; the right key opens, and is recorded again.
    forget().await;
    refused(open(other()).await, "opens none of its secrets");
    refused(open(other()).await, "opens none of its secrets");
    let store = open(key()).await.unwrap();
    assert_eq!(
        store
            .get_user("suite-keycheck@contoso.com")
            .await
            .unwrap()
            .and_then(|u| u.static_token)
            .as_deref(),
        Some("suite-key-check-token")
    );
    drop(store);
    refused(open(other()).await, "key check value differs");
}

/// Rotating the secrets key (`pfgate store rotate-key`): every sealed secret opens under the new
/// key afterwards, the old key is refused, and what was keyed with the old one (used-code digests,
/// in-flight claims) is forgotten. `open` opens the same database with a key; it holds
/// [`key`]'s check value at the start.
pub async fn check_rotate_key<O, OF>(open: O)
where
    O: Fn(SecretKey) -> OF,
    OF: std::future::Future<Output = Result<Arc<dyn Store>, StoreError>>,
{
    let new = || SecretKey::from_bytes([0x24; secrets::KEY_LEN]);
    let store = open(key()).await.unwrap();
    let mut user = UserRecord::new("Suite-Rotate@contoso.com");
    user.oath_secret = Some("SUITEROTATEOATHSECRET".into());
    user.static_token = Some("suite-rotate-token".into());
    store.add_user(&user).await.unwrap();
    assert!(store
        .mark_code_used("suite-rotate@contoso.com", "424242", wall_now() + 300)
        .await
        .unwrap());
    let call = CallKey::new("suite-rotate@contoso.com", "+14255550100", "c", "a", "");
    let pending = "D0000000000000000000000000000001";
    let now = wall_now();
    assert_eq!(
        store
            .claim_call(&call, pending, now, now + 60)
            .await
            .unwrap(),
        CallClaim::Placed
    );
    let resealed = store.rotate_key(new()).await.unwrap();
    assert!(resealed >= 1, "{resealed}");
    drop(store);

    let err = open(key()).await.expect_err("the old key is refused");
    assert!(matches!(err, StoreError::KeyMismatch(_)), "{err}");
    let store = open(new()).await.unwrap();
    assert_eq!(
        store.get_user("suite-rotate@contoso.com").await.unwrap(),
        Some(user)
    );
    // Digests and claims keyed with the old key are gone (they could never match again).
    assert!(store
        .mark_code_used("suite-rotate@contoso.com", "424242", wall_now() + 300)
        .await
        .unwrap());
    assert_eq!(store.call_state(pending).await.unwrap(), None);
    drop(store);
    // A second rotation works from the new key.
    let store = open(new()).await.unwrap();
    store.rotate_key(key()).await.unwrap();
    drop(store);
    assert!(open(key()).await.is_ok());
}

/// A store under test, with what keeps its storage alive (a temporary file, a schema) until the
/// test ends.
pub struct Subject {
    /// The store.
    pub store: Arc<dyn Store>,
    _guard: Box<dyn std::any::Any + Send>,
}

/// The secrets key of the suite's stores.
pub fn key() -> SecretKey {
    SecretKey::from_bytes([0x42; secrets::KEY_LEN])
}

/// A fresh in-memory SQLite store.
pub async fn open_sqlite_memory() -> Option<Subject> {
    let store = crate::store::sqlite::SqliteStore::in_memory(key())
        .await
        .unwrap();
    Some(Subject {
        store: Arc::new(store),
        _guard: Box::new(()),
    })
}

/// A fresh SQLite store in a temporary file (removed with the subject).
pub async fn open_sqlite_file() -> Option<Subject> {
    let db = crate::store::sqlite::tests::TempDb::new("suite");
    let store = crate::store::sqlite::SqliteStore::open(&db.0, key())
        .await
        .unwrap();
    Some(Subject {
        store: Arc::new(store),
        _guard: Box::new(db),
    })
}

/// A fresh SQLite store in a temporary file owned by this process ([`FileUse::Owned`]: calls in
/// flight are not shared with other processes, but claims still work as the suite checks).
///
/// [`FileUse::Owned`]: crate::store::sqlite::FileUse::Owned
pub async fn open_sqlite_file_owned() -> Option<Subject> {
    use crate::store::sqlite::{FileUse, SqliteStore};
    let db = crate::store::sqlite::tests::TempDb::new("suite-owned");
    let store = SqliteStore::open_as(&db.0, key(), FileUse::Owned)
        .await
        .unwrap();
    Some(Subject {
        store: Arc::new(store),
        _guard: Box::new(db),
    })
}

/// A fresh PostgreSQL store in a schema of its own (dropped with the subject), or `None` (with a
/// printed reason) when `PFGATE_TEST_DATABASE_URL` is not set.
pub async fn open_postgres() -> Option<Subject> {
    use crate::store::postgres::{testing, PostgresStore};
    let url = testing::database_url("store suite on PostgreSQL")?;
    let schema = testing::TestSchema::create(&url).await.unwrap();
    let store = PostgresStore::connect(&schema.settings(), key())
        .await
        .unwrap();
    Some(Subject {
        store: Arc::new(store),
        _guard: Box::new(schema),
    })
}

/// Two stores on one fresh database: the same in-memory SQLite store twice (it cannot be opened
/// twice), one SQLite file opened twice, or two connections pools on one PostgreSQL schema.
pub async fn open_sqlite_memory_pair() -> Option<(Subject, Arc<dyn Store>)> {
    let a = open_sqlite_memory().await?;
    let b = Arc::clone(&a.store);
    Some((a, b))
}

/// See [`open_sqlite_memory_pair`].
pub async fn open_sqlite_file_pair() -> Option<(Subject, Arc<dyn Store>)> {
    let db = crate::store::sqlite::tests::TempDb::new("suite-pair");
    let a = crate::store::sqlite::SqliteStore::open(&db.0, key())
        .await
        .unwrap();
    let b = crate::store::sqlite::SqliteStore::open(&db.0, key())
        .await
        .unwrap();
    Some((
        Subject {
            store: Arc::new(a),
            _guard: Box::new(db),
        },
        Arc::new(b),
    ))
}

/// See [`open_sqlite_memory_pair`].
pub async fn open_postgres_pair() -> Option<(Subject, Arc<dyn Store>)> {
    use crate::store::postgres::{testing, PostgresStore};
    let url = testing::database_url("store suite on PostgreSQL")?;
    let schema = testing::TestSchema::create(&url).await.unwrap();
    let a = PostgresStore::connect(&schema.settings(), key())
        .await
        .unwrap();
    let b = PostgresStore::connect(&schema.settings(), key())
        .await
        .unwrap();
    Some((
        Subject {
            store: Arc::new(a),
            _guard: Box::new(schema),
        },
        Arc::new(b),
    ))
}

/// One test per check for a backend: `suite_for!(module_name, opener)`.
macro_rules! suite_for {
    ($backend:ident, $open:path, $pair:path) => {
        mod $backend {
            use super::*;
            suite_for!(@by_ref $open: check_health, check_user_crud, check_external_id,
                check_secrets_round_trip,
                check_rename, check_delete_cascades, check_blocks, check_bypass,
                check_transactions, check_user_transactions, check_used_codes, check_find_users,
                check_call_claims, check_lockout, check_user_standing);
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn check_lockout_shared() {
                let Some((subject, other)) = $pair().await else { return };
                super::check_lockout_shared(Arc::clone(&subject.store), other).await;
            }
            suite_for!(@shared $open: check_bypass_concurrency, check_transaction_concurrency,
                check_used_code_concurrency, check_call_claim_concurrency);
        }
    };
    (@by_ref $open:path: $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some(subject) = $open().await else { return };
            super::$check(subject.store.as_ref()).await;
        }
    )*};
    (@shared $open:path: $($check:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some(subject) = $open().await else { return };
            super::$check(Arc::clone(&subject.store)).await;
        }
    )*};
}

suite_for!(sqlite_memory, open_sqlite_memory, open_sqlite_memory_pair);
suite_for!(sqlite_file, open_sqlite_file, open_sqlite_file_pair);
// Owned, the file cannot be opened twice: the pair (two processes' view) stays unlocked.
suite_for!(
    sqlite_file_owned,
    open_sqlite_file_owned,
    open_sqlite_file_pair
);
suite_for!(postgres, open_postgres, open_postgres_pair);
