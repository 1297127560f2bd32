//! `pfgate users import --from-sdk URL`: copy the user directory out of an old MFA Server through
//! its own Web Service SDK into the store named by `--config` (the same destination as the CSV
//! import), restartable and idempotent.
//!
//! How the directory is read (docs/migration.md has the administrator's view):
//! - **Listing.** `FindUsers_4` with a username filter, falling back to `FindUsers_3`, `FindUsers3`,
//!   `FindUsers2` and `FindUsers` when the old server answers a fault or `false`/Error. Each call
//!   asks for at most `--page-size` rows; when the server says `resultsComplete = false` the slice
//!   is split by the next character of the username (`a*` → `aa*`, `ab*`, … and the exact name
//!   `a`) until every slice is complete. The characters tried are a fixed set (letters, digits,
//!   `.-_@\'$ ` and so on) plus every character the server has shown at that position, so a
//!   slice is only missed if the server never returned any name with an unusual character in the
//!   first page of its parent slice — the summary says how many slices were split.
//! - **Reading.** Per user `GetUserSettings_3` (falling back to `GetUserSettings_2` and
//!   `GetUserSettings`), `GetPhone` (whose numbers win over the settings' copy) and
//!   `UserIsBlocked`. An operation that answers a SOAP fault is not asked again in this run; one
//!   that answers `false`/Error is retried with the older generation for that user only (the error
//!   may be about the user).
//! - **What cannot be copied.** PINs and OATH secrets are not readable through the SDK (MFA
//!   Server returns them empty); such users are imported and listed in the problems file as
//!   `not_migrated` so they can be asked to set a PIN / re-enrol a token. A block reason is not
//!   readable either: blocked users are blocked with the reason "blocked on the old MFA Server".
//! - **Existing users** are left alone unless `--update`, as with the CSV import; a user whose
//!   stored values differ from the old server's is listed (`differs`, with the field names).
//!   With `--update` the differing fields are replaced and pfgate-side secrets (a PIN hash, an OATH
//!   secret, a static token) are kept. Either way a second run changes nothing.
//! - **Restart.** With `--since-checkpoint FILE` the last user done is recorded after every user
//!   (written atomically); a new run with the same file lists the users again and continues after
//!   that name. `--max-users N` stops after N users (a batch), leaving the checkpoint.
//!
//! Neither phone numbers nor any secret appear in the progress lines, the summary or the problems
//! file: only usernames, field names and the old server's error texts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pfwssdk::codes::ErrorCode;
use crate::pfwssdk::soap::xml::{parse, Element};
use crate::pfwssdk::wire::{DecodeError, WireEnum};
use crate::pfwssdk::{
    Error, Mode3, Operation, PhoneAppMode, PinMode2, UserPhone, UserRow, UserSettings,
    UserSettings2, UserSettings3, NAMESPACE,
};
use crate::sdk_client::response::{body_element, fault_of, field, RESPONSE_LIMITS};
use crate::sdk_client::{request, ClientError, SdkClient, SoapFault};
use crate::store::{Phone, Store, StoreError, UserRecord};

/// The block reason given to users the old server had blocked (its reason is not readable).
pub const BLOCK_REASON: &str = "blocked on the old MFA Server";

const FIND_OPS: &[Operation] = &[
    Operation::FindUsers_4,
    Operation::FindUsers_3,
    Operation::FindUsers3,
    Operation::FindUsers2,
    Operation::FindUsers,
];
const SETTINGS_OPS: &[Operation] = &[
    Operation::GetUserSettings_3,
    Operation::GetUserSettings_2,
    Operation::GetUserSettings,
];

/// Characters always tried when a slice must be split (lower case: the filter is
/// case-insensitive).
const SPLIT_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789.-_@\\' $#!%&+=~^`{}()[],;";

/// Longest prefix a slice may grow to before the listing gives up on it.
const MAX_PREFIX: usize = 64;

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The old server could not be reached or listed.
    #[error("old server: {0}")]
    Source(String),
    /// The destination store failed (the checkpoint holds the last user done).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The checkpoint or problems file.
    #[error("{0}")]
    File(String),
}

impl From<ClientError> for ImportError {
    fn from(e: ClientError) -> Self {
        ImportError::Source(e.to_string())
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Rows asked for per `FindUsers` call.
    pub page_size: u32,
    /// Write nothing; print what would change.
    pub dry_run: bool,
    /// Replace users that exist with different values.
    pub update: bool,
    /// Checkpoint file.
    pub checkpoint: Option<PathBuf>,
    /// Problems CSV.
    pub problems: PathBuf,
    /// Stop after this many users.
    pub max_users: Option<usize>,
}

/// One line of the problems file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The user (empty for problems of the listing).
    pub username: String,
    /// `failed` (not imported), `not_migrated` (imported without it), `differs`, `warning`.
    pub severity: &'static str,
    /// Short name of the issue (`pin`, `oath_secret`, `read`, …).
    pub issue: String,
    /// Details (never a secret or a phone number).
    pub detail: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Users the old server listed.
    pub listed: usize,
    /// Users skipped because the checkpoint says they were done.
    pub already_done: usize,
    /// Users read from the old server in this run.
    pub read: usize,
    /// Added to the store.
    pub imported: usize,
    /// Replaced (`--update`).
    pub updated: usize,
    /// Present already (identical, or different without `--update`).
    pub skipped: usize,
    /// Could not be read or stored.
    pub failed: usize,
    /// `FindUsers` calls made.
    pub find_calls: usize,
    /// Slices that had to be split.
    pub split_slices: usize,
    /// The operations that answered.
    pub find_op: Option<&'static str>,
    /// The settings operation used (the newest that answered).
    pub settings_op: Option<&'static str>,
    /// Stopped by `--max-users` before the end.
    pub stopped_early: bool,
    /// Problems.
    pub problems: Vec<Problem>,
}

/// The checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Checkpoint {
    /// The source URL: a checkpoint of another server is refused.
    source: String,
    /// Lower-case username of the last user finished (imported, skipped or failed).
    last_done: String,
}

enum Called<T> {
    Ok(T),
    Failed(Error),
    Fault(SoapFault),
}

fn describe(op: Operation, c: &Called<()>) -> String {
    match c {
        Called::Ok(()) => format!("{}: ok", op.name()),
        Called::Failed(e) => format!(
            "{}: false, Error {} {}",
            op.name(),
            e.code,
            e.description.as_deref().unwrap_or("")
        ),
        Called::Fault(f) => format!("{}: {f}", op.name()),
    }
}

/// Calls `op` and decodes the answer: a fault, `false`/non-zero Error, or `read`'s value.
async fn invoke<T>(
    client: &mut SdkClient,
    op: Operation,
    params: &[(&str, String)],
    read: impl FnOnce(&Element) -> Result<T, DecodeError>,
) -> Result<Called<T>, ClientError> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let element = request::operation_element(op, &params)?;
    let bytes = client.call_raw(op, &element).await?;
    let doc = parse(&bytes, RESPONSE_LIMITS)
        .map_err(|e| ClientError::Protocol(format!("{}: answer is not XML: {e}", op.name())))?;
    let el = body_element(&doc)?;
    if let Some(f) = fault_of(el) {
        return Ok(Called::Fault(f));
    }
    if !el.is(NAMESPACE, &format!("{}Response", op.name())) {
        return Err(ClientError::Protocol(format!(
            "{}: unexpected answer <{}>",
            op.name(),
            el.name
        )));
    }
    let bad = |e: DecodeError| ClientError::Protocol(format!("{}: {e}", op.name()));
    let result: bool = field(el, &format!("{}Result", op.name())).map_err(bad)?;
    let error: Error = field(el, "error").map_err(bad)?;
    if !result || error.code != 0 {
        return Ok(Called::Failed(error));
    }
    read(el).map(Called::Ok).map_err(bad)
}

/// Which generations the old server answers, learnt during the run.
struct Generations {
    find: usize,
    settings: usize,
    phone: bool,
    blocked: bool,
}

/// One `FindUsers*` page: usernames and whether it was complete.
async fn find_page(
    client: &mut SdkClient,
    gens: &mut Generations,
    pattern: &str,
    page: u32,
    summary: &mut Summary,
) -> Result<(Vec<String>, bool), ImportError> {
    let mut tried = Vec::new();
    while gens.find < FIND_OPS.len() {
        let op = FIND_OPS[gens.find];
        summary.find_calls += 1;
        let params = [
            ("usernameFilter", pattern.to_string()),
            ("usernameCaseSensitive", "false".to_string()),
            ("resultLimit", page.to_string()),
        ];
        let called = invoke(client, op, &params, |el| {
            let rows: Option<Vec<UserRow>> = field(el, "userRows")?;
            let complete: bool = field(el, "resultsComplete")?;
            Ok((rows.unwrap_or_default(), complete))
        })
        .await?;
        match called {
            Called::Ok((rows, complete)) => {
                summary.find_op = Some(op.name());
                if rows.len() > page as usize && page > 0 {
                    summary.problems.push(Problem {
                        username: String::new(),
                        severity: "warning",
                        issue: "result_limit".into(),
                        detail: format!(
                            "{} returned {} rows for a limit of {page}",
                            op.name(),
                            rows.len()
                        ),
                    });
                }
                let names = rows
                    .into_iter()
                    .filter_map(|r| r.username)
                    .filter(|u| !u.trim().is_empty())
                    .collect();
                return Ok((names, complete));
            }
            Called::Failed(e) => tried.push(describe(op, &Called::Failed(e))),
            Called::Fault(f) => tried.push(describe(op, &Called::Fault(f))),
        }
        // Neither answered a page: the next generation is tried, and this one not again.
        gens.find += 1;
    }
    Err(ImportError::Source(format!(
        "no FindUsers generation lists users: {}",
        tried.join("; ")
    )))
}

/// Lists every username, sorted case-insensitively, each once.
async fn list_users(
    client: &mut SdkClient,
    gens: &mut Generations,
    page: u32,
    summary: &mut Summary,
) -> Result<Vec<String>, ImportError> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut extra_chars: BTreeSet<char> = BTreeSet::new();
    let mut queue: Vec<String> = vec![String::new()];
    while let Some(prefix) = queue.pop() {
        let (names, complete) =
            find_page(client, gens, &format!("{prefix}*"), page, summary).await?;
        for n in &names {
            let key = n.to_lowercase();
            if let Some(c) = key.chars().nth(prefix.chars().count()) {
                if !SPLIT_CHARS.contains(c) && c != '*' {
                    extra_chars.insert(c);
                }
            }
            found.entry(key).or_insert_with(|| n.clone());
        }
        if complete {
            continue;
        }
        summary.split_slices += 1;
        if prefix.chars().count() >= MAX_PREFIX {
            summary.problems.push(Problem {
                username: String::new(),
                severity: "warning",
                issue: "listing".into(),
                detail: format!(
                    "the slice '{prefix}*' is still incomplete at {MAX_PREFIX} characters; raise --page-size"
                ),
            });
            continue;
        }
        if !prefix.is_empty() {
            // The user named exactly the prefix is in no longer slice.
            let (exact, _) = find_page(client, gens, &prefix, page, summary).await?;
            for n in exact {
                found.entry(n.to_lowercase()).or_insert(n);
            }
        }
        for c in SPLIT_CHARS.chars().chain(extra_chars.iter().copied()) {
            queue.push(format!("{prefix}{c}"));
        }
    }
    Ok(found.into_values().collect())
}

/// The settings of one user, whatever generation answered.
struct OldUser {
    record: UserRecord,
    pin_set: bool,
    oath_exists: bool,
    static_token_enabled: bool,
    mode_literal: String,
}

fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default().trim().to_string()
}

fn cc(v: &Option<String>) -> String {
    s(v).trim_start_matches('+').to_string()
}

fn lang(v: &Option<String>, default: &str) -> String {
    let l = s(v);
    if l.is_empty() {
        default.to_string()
    } else {
        l
    }
}

fn from_v3(username: &str, u: UserSettings3) -> OldUser {
    let mut r = UserRecord::new(username);
    r.first_name = s(&u.first_name);
    r.last_name = s(&u.last_name);
    r.email = s(&u.email_address);
    r.user_group = s(&u.user_group);
    r.phone = Phone {
        country_code: cc(&u.country_code),
        number: s(&u.phone),
        extension: s(&u.extension),
    };
    r.backup_phone = Phone {
        country_code: cc(&u.backup_country_code),
        number: s(&u.backup_phone),
        extension: s(&u.backup_extension),
    };
    r.mode = u.mode;
    r.pin_mode = u.pin_mode;
    r.sms_direction = u.sms_direction;
    r.sms_mode = u.sms_mode;
    r.phone_app_mode = u.phone_app_mode;
    r.enabled = u.enabled;
    r.pin_change_required = u.pin_change_required;
    r.disabled_behavior = u.disabled_behavior;
    r.voice_call_language = lang(&u.voice_call_language, "en");
    r.sms_text_language = lang(&u.sms_text_language, "en");
    r.phone_app_language = lang(&u.phone_app_language, "en");
    r.oath_token_language = lang(&u.oath_token_language, "en");
    r.oath_serial = s(&u.oath_token_serial_number);
    if u.oath_token_time_interval > 0 {
        r.oath_time_interval = u.oath_token_time_interval;
    }
    let secret = s(&u.oath_token_secret_key);
    if !secret.is_empty() && crate::engine::totp::base32_decode(&secret).is_some() {
        r.oath_secret = Some(secret);
    }
    let token = s(&u.static_token);
    if u.enable_static_token && !token.is_empty() {
        r.static_token = Some(token);
    }
    OldUser {
        mode_literal: u.mode.as_str().to_string(),
        pin_set: !s(&u.pin).is_empty(),
        oath_exists: u.oath_token_exists,
        static_token_enabled: u.enable_static_token,
        record: r,
    }
}

fn from_v2(username: &str, u: UserSettings2) -> OldUser {
    let mode_literal = u.mode.as_str().to_string();
    let mut old = from_v3(
        username,
        UserSettings3 {
            first_name: u.first_name,
            last_name: u.last_name,
            email_address: u.email_address,
            user_group: u.user_group,
            country_code: u.country_code,
            phone: u.phone,
            extension: u.extension,
            backup_country_code: u.backup_country_code,
            backup_phone: u.backup_phone,
            backup_extension: u.backup_extension,
            mode: Mode3::from_literal(&mode_literal).unwrap_or(Mode3::VoiceCall),
            pin_mode: u.pin_mode,
            sms_direction: u.sms_direction,
            sms_mode: u.sms_mode,
            phone_app_mode: u.phone_app_mode,
            pin: u.pin,
            enabled: u.enabled,
            pin_change_required: u.pin_change_required,
            disabled_behavior: u.disabled_behavior,
            voice_call_language: u.voice_call_language,
            sms_text_language: u.sms_text_language,
            phone_app_language: u.phone_app_language,
            enable_static_token: u.enable_static_token,
            static_token: u.static_token,
            ..UserSettings3::default()
        },
    );
    old.mode_literal = mode_literal;
    old
}

fn from_v1(username: &str, u: UserSettings) -> OldUser {
    let mode_literal = u.mode.as_str().to_string();
    let mut old = from_v3(
        username,
        UserSettings3 {
            first_name: u.first_name,
            last_name: u.last_name,
            email_address: u.email_address,
            country_code: u.country_code,
            phone: u.phone,
            extension: u.extension,
            backup_country_code: u.backup_country_code,
            backup_phone: u.backup_phone,
            backup_extension: u.backup_extension,
            mode: Mode3::from_literal(&mode_literal).unwrap_or(Mode3::VoiceCall),
            pin_mode: u.pin_mode,
            sms_direction: u.sms_direction,
            sms_mode: u.sms_mode,
            phone_app_mode: PhoneAppMode::Standard,
            pin: u.pin,
            enabled: u.enabled,
            pin_change_required: u.pin_change_required,
            disabled_behavior: u.disabled_behavior,
            voice_call_language: u.voice_call_language,
            sms_text_language: u.sms_text_language,
            enable_static_token: u.enable_static_token,
            static_token: u.static_token,
            ..UserSettings3::default()
        },
    );
    old.mode_literal = mode_literal;
    old
}

/// Reads one user's settings, phone and blocked state.
async fn read_user(
    client: &mut SdkClient,
    gens: &mut Generations,
    username: &str,
    summary: &mut Summary,
) -> Result<Result<(OldUser, bool, Vec<Problem>), Problem>, ImportError> {
    let param = [("username", username.to_string())];
    let mut tried = Vec::new();
    let mut old = None;
    let mut i = gens.settings;
    while i < SETTINGS_OPS.len() {
        let op = SETTINGS_OPS[i];
        let called = match op {
            Operation::GetUserSettings_3 => {
                invoke(client, op, &param, |el| {
                    field::<Option<UserSettings3>>(el, "userSettings")
                        .map(|u| from_v3(username, u.unwrap_or_default()))
                })
                .await?
            }
            Operation::GetUserSettings_2 => {
                invoke(client, op, &param, |el| {
                    field::<Option<UserSettings2>>(el, "userSettings")
                        .map(|u| from_v2(username, u.unwrap_or_default()))
                })
                .await?
            }
            _ => {
                invoke(client, op, &param, |el| {
                    field::<Option<UserSettings>>(el, "userSettings")
                        .map(|u| from_v1(username, u.unwrap_or_default()))
                })
                .await?
            }
        };
        match called {
            Called::Ok(u) => {
                summary.settings_op.get_or_insert(op.name());
                old = Some(u);
                break;
            }
            Called::Failed(e) => tried.push(describe(op, &Called::Failed(e))),
            Called::Fault(f) => {
                tried.push(describe(op, &Called::Fault(f)));
                // The server does not know this operation: not asked again in this run.
                gens.settings = i + 1;
            }
        }
        i += 1;
    }
    let Some(mut old) = old else {
        return Ok(Err(Problem {
            username: username.to_string(),
            severity: "failed",
            issue: "read".into(),
            detail: tried.join("; "),
        }));
    };
    let mut problems = Vec::new();
    if gens.phone {
        match invoke(client, Operation::GetPhone, &param, |el| {
            field::<Option<UserPhone>>(el, "userPhone")
        })
        .await?
        {
            Called::Ok(Some(p)) => {
                old.record.phone = Phone {
                    country_code: cc(&p.country_code),
                    number: s(&p.phone),
                    extension: s(&p.extension),
                };
                old.record.backup_phone = Phone {
                    country_code: cc(&p.backup_country_code),
                    number: s(&p.backup_phone),
                    extension: s(&p.backup_extension),
                };
            }
            Called::Ok(None) => {}
            Called::Fault(_) => gens.phone = false,
            Called::Failed(e) => problems.push(Problem {
                username: username.to_string(),
                severity: "warning",
                issue: "phone".into(),
                detail: format!(
                    "GetPhone: Error {} {}; the numbers of the user settings were used",
                    e.code,
                    e.description.unwrap_or_default()
                ),
            }),
        }
    }
    let mut blocked = false;
    if gens.blocked {
        match invoke(client, Operation::UserIsBlocked, &param, |_| Ok(())).await? {
            Called::Ok(()) => blocked = true,
            Called::Failed(e)
                if e.code == 0 || e.code == ErrorCode::UserNotCurrentlyBlocked.code() => {}
            Called::Failed(e) => problems.push(Problem {
                username: username.to_string(),
                severity: "warning",
                issue: "blocked".into(),
                detail: format!(
                    "UserIsBlocked: Error {} {}; imported as not blocked",
                    e.code,
                    e.description.unwrap_or_default()
                ),
            }),
            Called::Fault(f) => {
                gens.blocked = false;
                problems.push(Problem {
                    username: String::new(),
                    severity: "warning",
                    issue: "blocked".into(),
                    detail: format!("UserIsBlocked: {f}; blocked states are not copied"),
                });
            }
        }
    }
    if !matches!(
        old.mode_literal.as_str(),
        "voiceCall" | "smsText" | "phoneApp" | "oathToken"
    ) {
        problems.push(Problem {
            username: username.to_string(),
            severity: "warning",
            issue: "mode".into(),
            detail: format!(
                "the old server says mode '{}'; imported as voiceCall",
                old.mode_literal
            ),
        });
        old.record.mode = Mode3::VoiceCall;
    }
    Ok(Ok((old, blocked, problems)))
}

/// The fields pfgate keeps that the old server's values are compared on (secrets excluded).
fn differing_fields(a: &UserRecord, b: &UserRecord) -> Vec<&'static str> {
    let mut d = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            d.push(name);
        }
    };
    check("first_name", a.first_name == b.first_name);
    check("last_name", a.last_name == b.last_name);
    check("email", a.email == b.email);
    check("user_group", a.user_group == b.user_group);
    check("phone", a.phone == b.phone);
    check("backup_phone", a.backup_phone == b.backup_phone);
    check("mode", a.mode == b.mode);
    check("pin_mode", a.pin_mode == b.pin_mode);
    check("sms_direction", a.sms_direction == b.sms_direction);
    check("sms_mode", a.sms_mode == b.sms_mode);
    check("phone_app_mode", a.phone_app_mode == b.phone_app_mode);
    check("enabled", a.enabled == b.enabled);
    check(
        "disabled_behavior",
        a.disabled_behavior == b.disabled_behavior,
    );
    check(
        "pin_change_required",
        a.pin_change_required == b.pin_change_required,
    );
    check("oath_serial", a.oath_serial == b.oath_serial);
    check(
        "oath_time_interval",
        a.oath_time_interval == b.oath_time_interval,
    );
    check(
        "voice_call_language",
        a.voice_call_language == b.voice_call_language,
    );
    check(
        "sms_text_language",
        a.sms_text_language == b.sms_text_language,
    );
    check(
        "phone_app_language",
        a.phone_app_language == b.phone_app_language,
    );
    check(
        "oath_token_language",
        a.oath_token_language == b.oath_token_language,
    );
    if b.oath_secret.is_some() {
        check("oath_secret", a.oath_secret == b.oath_secret);
    }
    if b.static_token.is_some() {
        check("static_token", a.static_token == b.static_token);
    }
    d
}

fn read_checkpoint(path: &Path, source: &str) -> Result<Option<Checkpoint>, ImportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ImportError::File(format!(
                "cannot read the checkpoint {}: {e}",
                path.display()
            )))
        }
    };
    let cp: Checkpoint = serde_json::from_str(&text).map_err(|e| {
        ImportError::File(format!(
            "{}: not a pfgate import checkpoint: {e}",
            path.display()
        ))
    })?;
    if cp.source != source {
        return Err(ImportError::File(format!(
            "{}: this checkpoint belongs to an import from {}, not {source}",
            path.display(),
            cp.source
        )));
    }
    Ok(Some(cp))
}

fn write_checkpoint(path: &Path, cp: &Checkpoint) -> Result<(), ImportError> {
    let tmp = path.with_extension("tmp");
    let text =
        serde_json::to_string(cp).map_err(|e| ImportError::File(format!("checkpoint: {e}")))?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            ImportError::File(format!(
                "cannot write the checkpoint {}: {e}",
                path.display()
            ))
        })
}

/// Writes the problems CSV.
pub fn write_problems(path: &Path, problems: &[Problem]) -> Result<(), ImportError> {
    let err = |e: &dyn std::fmt::Display| {
        ImportError::File(format!("cannot write {}: {e}", path.display()))
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| err(&e))?;
    w.write_record(["username", "severity", "issue", "detail"])
        .map_err(|e| err(&e))?;
    for p in problems {
        w.write_record([p.username.as_str(), p.severity, &p.issue, &p.detail])
            .map_err(|e| err(&e))?;
    }
    w.flush().map_err(|e| err(&e))
}

/// Runs the import. Progress goes to `progress` (standard error for the command); dry-run
/// changes to `changes` (standard output).
pub async fn run(
    client: &mut SdkClient,
    store: &dyn Store,
    opts: &ImportOptions,
    progress: &mut dyn std::io::Write,
    changes: &mut dyn std::io::Write,
) -> Result<Summary, ImportError> {
    let source = client.url().to_string();
    let mut summary = Summary::default();
    let mut gens = Generations {
        find: 0,
        settings: 0,
        phone: true,
        blocked: true,
    };
    let checkpoint = match &opts.checkpoint {
        Some(p) => read_checkpoint(p, &source)?,
        None => None,
    };
    let users = list_users(client, &mut gens, opts.page_size.max(1), &mut summary).await?;
    summary.listed = users.len();
    let _ = writeln!(
        progress,
        "listed {} users with {} ({} calls)",
        users.len(),
        summary.find_op.unwrap_or("-"),
        summary.find_calls
    );
    let last_done = checkpoint.map(|c| c.last_done);
    let mut processed = 0usize;
    for username in &users {
        let key = username.to_lowercase();
        if last_done.as_deref().is_some_and(|l| key.as_str() <= l) {
            summary.already_done += 1;
            continue;
        }
        if opts.max_users.is_some_and(|m| processed >= m) {
            summary.stopped_early = true;
            break;
        }
        processed += 1;
        match read_user(client, &mut gens, username, &mut summary).await? {
            Err(problem) => {
                summary.failed += 1;
                summary.problems.push(problem);
            }
            Ok((old, blocked, problems)) => {
                summary.read += 1;
                summary.problems.extend(problems);
                apply(store, opts, old, blocked, &mut summary, changes).await?;
            }
        }
        if !opts.dry_run {
            if let Some(p) = &opts.checkpoint {
                write_checkpoint(
                    p,
                    &Checkpoint {
                        source: source.clone(),
                        last_done: key.clone(),
                    },
                )?;
            }
        }
        if processed.is_multiple_of(25) {
            let _ = writeln!(
                progress,
                "progress: {} read, {} imported, {} updated, {} skipped, {} failed",
                summary.read, summary.imported, summary.updated, summary.skipped, summary.failed
            );
        }
    }
    Ok(summary)
}

async fn apply(
    store: &dyn Store,
    opts: &ImportOptions,
    old: OldUser,
    blocked: bool,
    summary: &mut Summary,
    changes: &mut dyn std::io::Write,
) -> Result<(), ImportError> {
    let mut user = old.record;
    let name = user.username.clone();
    let not_migrated = |issue: &str, detail: &str| Problem {
        username: name.clone(),
        severity: "not_migrated",
        issue: issue.into(),
        detail: detail.into(),
    };
    let mut notes = Vec::new();
    if old.pin_set || user.pin_mode == PinMode2::Pin {
        notes.push(not_migrated(
            "pin",
            "PINs are not readable through the SDK: the user must set a new PIN",
        ));
    }
    if old.oath_exists && user.oath_secret.is_none() {
        notes.push(not_migrated(
            "oath_secret",
            "OATH token secrets are not readable through the SDK: re-enrol the token",
        ));
    }
    if old.static_token_enabled && user.static_token.is_none() {
        notes.push(not_migrated(
            "static_token",
            "the static token is not readable through the SDK: issue a new one",
        ));
    }
    let existing = store.get_user(&user.username).await?;
    let block_now = store_block(store, &user.username, existing.is_some()).await?;
    match existing {
        None => {
            summary.imported += 1;
            summary.problems.extend(notes);
            if opts.dry_run {
                let _ = writeln!(
                    changes,
                    "would add {}{}",
                    user.username,
                    if blocked { " (blocked)" } else { "" }
                );
                return Ok(());
            }
            store.add_user(&user).await?;
            if blocked {
                store
                    .block_user(&user.username, BLOCK_REASON, "import")
                    .await?;
            }
        }
        Some(current) => {
            let mut diff = differing_fields(&current, &user);
            if blocked != block_now {
                diff.push("blocked");
            }
            if diff.is_empty() {
                summary.skipped += 1;
                return Ok(());
            }
            if !opts.update {
                summary.skipped += 1;
                summary.problems.push(Problem {
                    username: user.username.clone(),
                    severity: "differs",
                    issue: "existing".into(),
                    detail: format!(
                        "already in pfgate with other values ({}); kept (--update takes the old server's)",
                        diff.join(", ")
                    ),
                });
                return Ok(());
            }
            summary.updated += 1;
            summary.problems.extend(notes);
            if opts.dry_run {
                let _ = writeln!(
                    changes,
                    "would update {} ({})",
                    current.username,
                    diff.join(", ")
                );
                return Ok(());
            }
            // pfgate-side secrets the old server cannot hand over are kept.
            user.username = current.username.clone();
            user.pin_hash = current.pin_hash.clone();
            user.pin_changed_at = current.pin_changed_at;
            if user.oath_secret.is_none() {
                user.oath_secret = current.oath_secret.clone();
            }
            if user.static_token.is_none() {
                user.static_token = current.static_token.clone();
            }
            // The SDK has no external id (the IdP's oid): the one pfgate holds stays.
            user.external_id = current.external_id.clone();
            store.update_user(&user).await?;
            if blocked && !block_now {
                store
                    .block_user(&user.username, BLOCK_REASON, "import")
                    .await?;
            } else if !blocked && block_now {
                store.unblock_user(&user.username).await?;
            }
        }
    }
    Ok(())
}

async fn store_block(store: &dyn Store, username: &str, exists: bool) -> Result<bool, StoreError> {
    if !exists {
        return Ok(false);
    }
    Ok(store.block_reason(username).await?.is_some())
}

/// The summary as a two-column table.
pub fn summary_table(s: &Summary, source: &str, problems: &Path, dry_run: bool) -> String {
    let count = |sev: &str, issue: &str| {
        s.problems
            .iter()
            .filter(|p| p.severity == sev && (issue.is_empty() || p.issue == issue))
            .count()
    };
    let rows: Vec<(&str, String)> = vec![
        ("source", source.to_string()),
        (
            "listed with",
            format!(
                "{} ({} calls, {} slices split)",
                s.find_op.unwrap_or("-"),
                s.find_calls,
                s.split_slices
            ),
        ),
        (
            "read with",
            format!("{}, GetPhone, UserIsBlocked", s.settings_op.unwrap_or("-")),
        ),
        ("users listed", s.listed.to_string()),
        ("done before (checkpoint)", s.already_done.to_string()),
        ("read", s.read.to_string()),
        (
            if dry_run { "would import" } else { "imported" },
            s.imported.to_string(),
        ),
        (
            if dry_run { "would update" } else { "updated" },
            s.updated.to_string(),
        ),
        ("skipped (present)", s.skipped.to_string()),
        ("failed", s.failed.to_string()),
        (
            "PINs not migrated",
            count("not_migrated", "pin").to_string(),
        ),
        (
            "OATH secrets not migrated",
            count("not_migrated", "oath_secret").to_string(),
        ),
        (
            "problems file",
            format!("{} ({} rows)", problems.display(), s.problems.len()),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    if s.stopped_early {
        out.push_str(
            "stopped after --max-users; run again with the same --since-checkpoint to continue\n",
        );
    }
    if dry_run {
        out.push_str("dry run: nothing was written\n");
    }
    out
}

/// `pfgate users import --from-sdk`: exit 0 when every listed user was handled (PINs and OATH
/// secrets not migrated are not failures), 1 when some users failed, 2 usage or files, 3 the old
/// server could not be listed or reached, 4 it refused the credentials; a store failure stops the
/// run (exit 2) with the checkpoint at the last user done.
pub async fn command(
    settings: crate::sdk_client::command::ConnectSettings,
    store: &dyn Store,
    opts: &ImportOptions,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut client = match crate::sdk_client::command::client(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pfgate users import: {e}");
            return ExitCode::from(crate::sdk_client::command::exit_code(&e));
        }
    };
    let source = client.url().to_string();
    let mut progress = std::io::stderr();
    let mut changes = std::io::stdout();
    let result = run(&mut client, store, opts, &mut progress, &mut changes).await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pfgate users import: {e}");
            return ExitCode::from(match e {
                ImportError::Source(m) if m.contains("HTTP 401") || m.contains("HTTP 403") => 4,
                ImportError::Source(_) => 3,
                _ => 2,
            });
        }
    };
    if let Err(e) = write_problems(&opts.problems, &summary.problems) {
        eprintln!("pfgate users import: {e}");
    }
    print!(
        "{}",
        summary_table(&summary, &source, &opts.problems, opts.dry_run)
    );
    if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Checks the modes pfgate keeps are representable (used by tests of the mapping).
#[cfg(test)]
fn mapped(u: &UserSettings3) -> UserRecord {
    from_v3("x", u.clone()).record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfwssdk::{AuthResult, SmsDirection, SmsMode};

    #[test]
    fn older_generations_map_mode_and_defaults() {
        let v1 = UserSettings {
            mode: crate::pfwssdk::Mode::SmsText,
            country_code: Some("+44".into()),
            ..UserSettings::default()
        };
        let old = from_v1("a", v1);
        assert_eq!(old.record.mode, Mode3::SmsText);
        assert_eq!(old.record.phone.country_code, "44");
        assert_eq!(old.record.voice_call_language, "en");
        let v3 = UserSettings3 {
            oath_token_time_interval: 0,
            sms_direction: SmsDirection::OneWay,
            sms_mode: SmsMode::OtpPlusPin,
            disabled_behavior: AuthResult::Succeed,
            ..UserSettings3::default()
        };
        let r = mapped(&v3);
        assert_eq!(r.oath_time_interval, 30);
        assert_eq!(r.sms_direction, SmsDirection::OneWay);
    }

    #[test]
    fn differences_name_fields_and_ignore_secrets_the_source_lacks() {
        let mut a = UserRecord::new("a");
        a.pin_hash = Some("h".into());
        a.oath_secret = Some("JBSWY3DP".into());
        let mut b = UserRecord::new("a");
        assert!(differing_fields(&a, &b).is_empty());
        b.phone.number = "1".into();
        b.enabled = false;
        assert_eq!(differing_fields(&a, &b), vec!["phone", "enabled"]);
    }
}
