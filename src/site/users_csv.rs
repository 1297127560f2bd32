//! Bulk import and export of the user directory as CSV, so an administrator can load the users an
//! old MFA Server held (exported from its console or assembled from AD) and take them out again.
//!
//! Columns (header row required, any order, names case-insensitive; only `username` is required):
//!
//! | column | meaning |
//! |---|---|
//! | `username` | UPN or `DOMAIN\user` |
//! | `first_name`, `last_name`, `email`, `user_group` | user information |
//! | `country_code`, `phone`, `extension` | primary phone (country code digits, number as typed) |
//! | `backup_country_code`, `backup_phone`, `backup_extension` | backup phone |
//! | `mode` | `voiceCall` (default), `smsText`, `phoneApp`, `oathToken` |
//! | `pin_mode` | `standard` (default), `pin`, `voiceprint`, `returnPin` |
//! | `sms_direction` / `sms_mode` | `twoWay`/`oneWay`; `otp`/`otpPlusPin` |
//! | `phone_app_mode` | `standard`, `pin` |
//! | `enabled` | `true` (default) / `false` (also `1`/`0`, `yes`/`no`) |
//! | `disabled_behavior` | `fail` (default) / `succeed` |
//! | `pin` | a PIN in clear (stored only as an argon2id hash; checked against the PIN rules) |
//! | `oath_secret`, `oath_time_interval` | OATH token secret (base32) and step (default 30) |
//! | `static_token` | static token |
//! | `blocked`, `block_reason` | block the user on import |
//! | `external_id` | the IdP's identity of the person (Entra ID `oid`, OIDC `sub`) for the OIDC step-up provider; stored lower case, unique among users |
//!
//! Import adds users the store does not hold and skips those it does, so running it twice changes
//! nothing the second time. `--update` updates existing users with **the columns the file has**;
//! the others keep their stored values. Why not replace the whole record: a file of
//! `username,external_id` (Entra's object ids, docs/oidc.md) would then reset every phone number,
//! and an export imported back would clear the PINs and OATH secrets it never contains. A bad row is reported with its line number and
//! the rest are imported. Export writes the same columns except the secrets (`pin`, `oath_secret`,
//! `static_token`), which pfgate never hands out, and always writes `external_id` (empty when
//! unset). `external_id` is optional on import so CSVs written before it existed still load: a file
//! without the column leaves the stored external ids alone, like any absent column; a file with it
//! sets each row's (an empty cell clears it). A row whose external id another user holds is
//! reported like any bad row.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Arc;

use crate::engine::settings::check_pin;
use crate::pfwssdk::wire::WireEnum;
use crate::pfwssdk::{AuthResult, Mode3, PhoneAppMode, PinMode2, SmsDirection, SmsMode};
use crate::store::{Phone, Store, StoreError, UserFilter, UserRecord};

/// The export columns, in order.
pub const EXPORT_COLUMNS: &[&str] = &[
    "username",
    "first_name",
    "last_name",
    "email",
    "user_group",
    "country_code",
    "phone",
    "extension",
    "backup_country_code",
    "backup_phone",
    "backup_extension",
    "mode",
    "pin_mode",
    "sms_direction",
    "sms_mode",
    "phone_app_mode",
    "enabled",
    "disabled_behavior",
    "oath_time_interval",
    "blocked",
    "block_reason",
    "external_id",
];

const SECRET_COLUMNS: &[&str] = &["pin", "oath_secret", "static_token"];

/// One row ready to import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// CSV line number (1 = header).
    pub line: u64,
    /// The user.
    pub user: UserRecord,
    /// PIN in clear, to hash.
    pub pin: Option<String>,
    /// Block reason, if the row blocks the user.
    pub block: Option<String>,
    /// The columns of the file (lower case): an update writes these and keeps the others.
    pub columns: Arc<HashSet<String>>,
}

/// A row that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// CSV line number.
    pub line: u64,
    /// What is wrong (never the value of a secret column).
    pub reason: String,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" => None,
        "true" | "1" | "yes" | "y" => Some(true),
        "false" | "0" | "no" | "n" => Some(false),
        _ => None,
    }
}

fn parse_enum<T: WireEnum>(v: &str, column: &str) -> Result<Option<T>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    T::from_literal(v).map(Some).ok_or_else(|| {
        format!(
            "column {column}: '{v}' is not one of {}",
            T::LITERALS.join(", ")
        )
    })
}

/// Reads a CSV file into rows and row errors. A header problem is an `Err`.
pub fn read(input: impl Read) -> Result<(Vec<ImportRow>, Vec<RowError>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::None)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the header row: {e}"))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut index = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let known = EXPORT_COLUMNS.contains(&h.as_str()) || SECRET_COLUMNS.contains(&h.as_str());
        if !known {
            return Err(format!(
                "unknown column '{h}' (known: {}, {})",
                EXPORT_COLUMNS.join(", "),
                SECRET_COLUMNS.join(", ")
            ));
        }
        if index.insert(h.clone(), i).is_some() {
            return Err(format!("column '{h}' appears twice"));
        }
    }
    if !index.contains_key("username") {
        return Err("the header row has no 'username' column".into());
    }
    let columns: Arc<HashSet<String>> = Arc::new(index.keys().cloned().collect());
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(RowError {
                    line,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        match row(
            &Fields {
                record: &record,
                index: &index,
            },
            line,
            &columns,
        ) {
            Ok(r) => rows.push(r),
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    Ok((rows, errors))
}

/// One CSV record with its header index.
struct Fields<'a> {
    record: &'a csv::StringRecord,
    index: &'a HashMap<String, usize>,
}

impl<'a> Fields<'a> {
    fn get(&self, column: &str) -> &'a str {
        self.index
            .get(column)
            .and_then(|i| self.record.get(*i))
            .unwrap_or("")
    }
}

fn row(f: &Fields<'_>, line: u64, columns: &Arc<HashSet<String>>) -> Result<ImportRow, String> {
    let get = |c: &str| f.get(c);
    let username = get("username").trim();
    if username.is_empty() {
        return Err("username is empty".into());
    }
    let mut u = UserRecord::new(username);
    u.first_name = get("first_name").trim().into();
    u.last_name = get("last_name").trim().into();
    u.email = get("email").trim().into();
    u.user_group = get("user_group").trim().into();
    u.phone = Phone {
        country_code: get("country_code").trim().trim_start_matches('+').into(),
        number: get("phone").trim().into(),
        extension: get("extension").trim().into(),
    };
    u.backup_phone = Phone {
        country_code: get("backup_country_code")
            .trim()
            .trim_start_matches('+')
            .into(),
        number: get("backup_phone").trim().into(),
        extension: get("backup_extension").trim().into(),
    };
    if let Some(m) = parse_enum::<Mode3>(get("mode"), "mode")? {
        u.mode = m;
    }
    if let Some(m) = parse_enum::<PinMode2>(get("pin_mode"), "pin_mode")? {
        u.pin_mode = m;
    }
    if let Some(m) = parse_enum::<SmsDirection>(get("sms_direction"), "sms_direction")? {
        u.sms_direction = m;
    }
    if let Some(m) = parse_enum::<SmsMode>(get("sms_mode"), "sms_mode")? {
        u.sms_mode = m;
    }
    if let Some(m) = parse_enum::<PhoneAppMode>(get("phone_app_mode"), "phone_app_mode")? {
        u.phone_app_mode = m;
    }
    if let Some(m) = parse_enum::<AuthResult>(get("disabled_behavior"), "disabled_behavior")? {
        u.disabled_behavior = m;
    }
    let enabled = get("enabled");
    if !enabled.trim().is_empty() {
        u.enabled = parse_bool(enabled).ok_or("column enabled: expected true or false")?;
    }
    let pin = get("pin").trim().to_string();
    let pin = if pin.is_empty() {
        None
    } else {
        check_pin(&pin)
            .map_err(|e| format!("column pin: {}", e.description.unwrap_or_default()))?;
        Some(pin)
    };
    let oath = get("oath_secret").trim();
    if !oath.is_empty() {
        if crate::engine::totp::base32_decode(oath).is_none() {
            return Err("column oath_secret: not base32".into());
        }
        u.oath_secret = Some(oath.to_string());
    }
    let interval = get("oath_time_interval").trim();
    if !interval.is_empty() {
        u.oath_time_interval = interval
            .parse::<i32>()
            .ok()
            .filter(|v| (1..=300).contains(v))
            .ok_or("column oath_time_interval: expected seconds between 1 and 300")?;
    }
    let token = get("static_token");
    if !token.is_empty() {
        u.static_token = Some(token.to_string());
    }
    let external_id = get("external_id");
    if let Some(reason) = crate::store::external_id_problem(external_id) {
        return Err(format!("column {reason}"));
    }
    u.external_id = crate::store::normalize_external_id(external_id);
    let blocked = parse_bool(get("blocked")).unwrap_or(false);
    let block = blocked.then(|| get("block_reason").trim().to_string());
    Ok(ImportRow {
        line,
        user: u,
        pin,
        block,
        columns: Arc::clone(columns),
    })
}

/// The stored user with the row's columns applied: what the file says is written, what it does
/// not have is kept (see the module documentation for why). A present column with an empty cell
/// writes the empty value or the default, as for a new user; for `pin`, `oath_secret`,
/// `static_token` and `external_id` that clears them.
fn merged(existing: UserRecord, n: &UserRecord, columns: &HashSet<String>) -> UserRecord {
    let has = |c: &str| columns.contains(c);
    let mut u = existing;
    macro_rules! take {
        ($($column:literal => $($field:ident).+),* $(,)?) => {$(
            if has($column) {
                u.$($field).+ = n.$($field).+.clone();
            }
        )*};
    }
    take!(
        "first_name" => first_name,
        "last_name" => last_name,
        "email" => email,
        "user_group" => user_group,
        "country_code" => phone.country_code,
        "phone" => phone.number,
        "extension" => phone.extension,
        "backup_country_code" => backup_phone.country_code,
        "backup_phone" => backup_phone.number,
        "backup_extension" => backup_phone.extension,
        "mode" => mode,
        "pin_mode" => pin_mode,
        "sms_direction" => sms_direction,
        "sms_mode" => sms_mode,
        "phone_app_mode" => phone_app_mode,
        "enabled" => enabled,
        "disabled_behavior" => disabled_behavior,
        "pin" => pin_hash,
        "pin" => pin_changed_at,
        "oath_secret" => oath_secret,
        "oath_time_interval" => oath_time_interval,
        "static_token" => static_token,
        "external_id" => external_id,
    );
    u
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Users added.
    pub added: usize,
    /// Users replaced (`--update`).
    pub updated: usize,
    /// Users already present and left alone.
    pub skipped: usize,
    /// Rows refused, with reasons.
    pub errors: Vec<RowError>,
}

/// What importing one row would do to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    /// The user is not in the store: added.
    Add,
    /// The user exists and `--update` was given: the file's columns are written.
    Update,
    /// The user exists: left alone.
    Skip,
}

/// `users import --dry-run`: what [`import`] would do with `rows`, reading the store only. Each
/// row's line, user name and action, in file order; a user named twice in the file counts as
/// present the second time, as it would be. Refusals only the store makes (an external id another
/// user holds) show on the real run.
pub async fn preview(
    store: &dyn Store,
    rows: &[ImportRow],
    update: bool,
) -> Result<Vec<(u64, String, RowAction)>, StoreError> {
    let mut seen = HashSet::new();
    let mut plan = Vec::with_capacity(rows.len());
    for r in rows {
        let name = &r.user.username;
        let present = !seen.insert(name.to_lowercase()) || store.get_user(name).await?.is_some();
        let action = match (present, update) {
            (false, _) => RowAction::Add,
            (true, true) => RowAction::Update,
            (true, false) => RowAction::Skip,
        };
        plan.push((r.line, name.clone(), action));
    }
    Ok(plan)
}

/// Imports rows into the store.
pub async fn import(
    store: &dyn Store,
    rows: Vec<ImportRow>,
    update: bool,
) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    for r in rows {
        let mut user = r.user;
        if let Some(pin) = &r.pin {
            user.pin_hash = Some(crate::store::secrets::hash_pin(pin).map_err(|e| {
                StoreError::unavailable_while("hashing a PIN", crate::store::Cause::Secrets(e))
            })?);
            user.pin_changed_at = Some(crate::engine::now_unix());
        }
        let written = match store.get_user(&user.username).await? {
            Some(existing) if update => {
                user = merged(existing, &user, &r.columns);
                store.update_user(&user).await.map(|()| &mut report.updated)
            }
            Some(_) => {
                report.skipped += 1;
                continue;
            }
            None => store.add_user(&user).await.map(|()| &mut report.added),
        };
        match written {
            Ok(count) => *count += 1,
            // One IdP identity, one user: this row is refused, the others go on.
            Err(e @ StoreError::ExternalIdTaken { .. }) => {
                report.errors.push(RowError {
                    line: r.line,
                    reason: format!("column {e}"),
                });
                continue;
            }
            Err(e) => return Err(e),
        }
        if let Some(reason) = r.block {
            store.block_user(&user.username, &reason, "import").await?;
        }
    }
    Ok(report)
}

/// Writes every user as CSV (no secrets).
pub async fn export(store: &dyn Store, out: impl Write) -> Result<usize, String> {
    let (users, _) = store
        .find_users(&UserFilter::default(), 0)
        .await
        .map_err(|e| e.to_string())?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(EXPORT_COLUMNS).map_err(|e| e.to_string())?;
    for u in &users {
        let block = store
            .block_reason(&u.username)
            .await
            .map_err(|e| e.to_string())?;
        let interval = u.oath_time_interval.to_string();
        let fields: Vec<&str> = vec![
            &u.username,
            &u.first_name,
            &u.last_name,
            &u.email,
            &u.user_group,
            &u.phone.country_code,
            &u.phone.number,
            &u.phone.extension,
            &u.backup_phone.country_code,
            &u.backup_phone.number,
            &u.backup_phone.extension,
            u.mode.as_str(),
            u.pin_mode.as_str(),
            u.sms_direction.as_str(),
            u.sms_mode.as_str(),
            u.phone_app_mode.as_str(),
            if u.enabled { "true" } else { "false" },
            u.disabled_behavior.as_str(),
            &interval,
            if block.is_some() { "true" } else { "false" },
            block.as_deref().unwrap_or(""),
            u.external_id.as_deref().unwrap_or(""),
        ];
        w.write_record(&fields).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(users.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_reports_bad_ones_by_line() {
        let csv = "Username,phone,country_code,mode,enabled,pin,blocked,block_reason\n\
                   alice@contoso.com,4255550100,1,voiceCall,true,2580,false,\n\
                   \"smith, j\",\"425 555 0101\",1,smsText,no,,yes,lost phone\n\
                   bad@contoso.com,1,1,fax,true,,,\n\
                   weak@contoso.com,1,1,voiceCall,true,1234,,\n\
                   ,1,1,voiceCall,true,,,\n";
        let (rows, errors) = read(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].user.username, "alice@contoso.com");
        assert_eq!(rows[0].pin.as_deref(), Some("2580"));
        assert_eq!(rows[1].user.username, "smith, j");
        assert_eq!(rows[1].user.phone.number, "425 555 0101");
        assert_eq!(rows[1].user.mode, Mode3::SmsText);
        assert!(!rows[1].user.enabled);
        assert_eq!(rows[1].block.as_deref(), Some("lost phone"));
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6]);
        assert!(errors[0].reason.contains("fax"));
        assert!(errors[1].reason.contains("PIN_TOO_WEAK"));
        assert!(!errors[1].reason.contains("1234"), "never echo a PIN");
    }

    #[test]
    fn external_id_column_is_optional_normalised_and_checked() {
        let (rows, errors) = read(
            "username,external_id\n\
             a,  6F9619FF-8B86-D011-B42D-00C04FC964FF \n\
             b,\n\
             \"c\",\"x\u{7}y\"\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            rows[0].user.external_id.as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        assert_eq!(rows[1].user.external_id, None);
        assert!(rows.iter().all(|r| r.columns.contains("external_id")));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 4);
        assert!(
            errors[0].reason.contains("control characters"),
            "{errors:?}"
        );
        // A file written before the column existed: read, and marked to keep stored ids.
        let (rows, errors) = read("username,phone\na,1\n".as_bytes()).unwrap();
        assert!(errors.is_empty());
        assert_eq!(rows[0].user.external_id, None);
        assert!(!rows[0].columns.contains("external_id"));
    }

    #[tokio::test]
    async fn import_keeps_or_sets_external_ids_and_refuses_a_taken_one_as_a_row() {
        let store = crate::store::sqlite::SqliteStore::in_memory(
            crate::store::secrets::SecretKey::from_bytes([9; crate::store::secrets::KEY_LEN]),
        )
        .await
        .unwrap();
        let (rows, _) = read(
            "username,external_id\na,0000000A-0000-0000-0000-00000000000A\n\
             b,0000000a-0000-0000-0000-00000000000a\n"
                .as_bytes(),
        )
        .unwrap();
        let report = import(&store, rows, false).await.unwrap();
        assert_eq!(report.added, 1);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].line, 3);
        assert!(
            report.errors[0].reason.contains("held by user 'a'"),
            "{:?}",
            report.errors
        );
        let (rows, _) = read("username,first_name\na,Ann\n".as_bytes()).unwrap();
        let report = import(&store, rows, true).await.unwrap();
        assert_eq!(report.updated, 1);
        let a = store.get_user("a").await.unwrap().unwrap();
        assert_eq!(
            (a.first_name.as_str(), a.external_id.as_deref()),
            ("Ann", Some("0000000a-0000-0000-0000-00000000000a"))
        );
        let mut out = Vec::new();
        export(&store, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().next().unwrap().ends_with(",external_id"),
            "{text}"
        );
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with(",0000000a-0000-0000-0000-00000000000a"),
            "{text}"
        );
    }

    /// `--update` writes the file's columns only: Entra's `username,external_id` list leaves
    /// phones, PIN and OATH secret alone, and so does an export imported back.
    #[tokio::test]
    async fn update_writes_only_the_columns_the_file_has() {
        let store = crate::store::sqlite::SqliteStore::in_memory(
            crate::store::secrets::SecretKey::from_bytes([9; crate::store::secrets::KEY_LEN]),
        )
        .await
        .unwrap();
        let (rows, errors) = read(
            "username,first_name,country_code,phone,mode,pin,oath_secret\n\
             dana@contoso.com,Dana,1,4255550170,oathToken,2580,JBSWY3DPEHPK3PXP\n"
                .as_bytes(),
        )
        .unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        import(&store, rows, false).await.unwrap();
        let before = store.get_user("dana@contoso.com").await.unwrap().unwrap();
        assert!(before.pin_hash.is_some());

        let (rows, _) = read(
            "username,external_id\nDANA@contoso.com,3F2504E0-4F89-41D3-9A0C-0305E82C3301\n"
                .as_bytes(),
        )
        .unwrap();
        let report = import(&store, rows, true).await.unwrap();
        assert_eq!(report.updated, 1);
        let after = store.get_user("dana@contoso.com").await.unwrap().unwrap();
        let mut expected = before.clone();
        expected.external_id = Some("3f2504e0-4f89-41d3-9a0c-0305e82c3301".into());
        assert_eq!(after, expected, "only the external id changed");

        // An export (no secrets in it) imported back with --update keeps the secrets.
        let mut out = Vec::new();
        export(&store, &mut out).await.unwrap();
        let (rows, errors) = read(out.as_slice()).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        import(&store, rows, true).await.unwrap();
        assert_eq!(
            store.get_user("dana@contoso.com").await.unwrap().unwrap(),
            expected
        );

        // A present column is written, an empty cell included.
        let (rows, _) =
            read("username,phone,external_id\ndana@contoso.com,4255550171,\n".as_bytes()).unwrap();
        import(&store, rows, true).await.unwrap();
        let last = store.get_user("dana@contoso.com").await.unwrap().unwrap();
        assert_eq!(last.phone.number, "4255550171");
        assert_eq!(last.external_id, None);
        assert_eq!(last.pin_hash, before.pin_hash);
        assert_eq!(last.oath_secret.as_deref(), Some("JBSWY3DPEHPK3PXP"));
    }

    #[test]
    fn refuses_unknown_and_missing_columns() {
        assert!(read("user,phone\na,1\n".as_bytes())
            .unwrap_err()
            .contains("unknown column 'user'"));
        assert!(read("phone\n1\n".as_bytes())
            .unwrap_err()
            .contains("username"));
        assert!(read("username,username\na,b\n".as_bytes())
            .unwrap_err()
            .contains("twice"));
    }
}
