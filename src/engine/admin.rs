//! Directory operations: what administrators, portals and scripts do to users through the SDK.
//!
//! Each follows MFA Server's `Error` codes (docs/protocol.md §6.2): 10 not found, 101 duplicate username,
//! 109/110 PIN rules, 125 wrong PIN, 133/136 not blocked. Every change writes a `directory_change`
//! audit event naming the actor (`modifyUsername`, else the caller).
//!
//! What is never returned: PINs (only an argon2id hash is kept, so `Pin` is empty), OATH secrets and
//! static tokens (stored encrypted; settings report only whether they exist).

use std::time::Instant;

use subtle::ConstantTimeEq;

use super::audit::{self, AuditEvent, AuditKind};
use super::{now_unix, CallContext, Engine};
use crate::pfwssdk::codes::{CallCode, ErrorCode};
use crate::pfwssdk::{
    response as rs, AddUserSettings, AddUserSettings2, AddUserSettings3, AuthResult,
    CustomerDefaults, CustomerDefaults2, CustomerDefaults3, Error, Features, Mode, Mode2, Mode3,
    Operation, PinMode2, Request, Response, UserPhone, UserRow, UserSettings, UserSettings2,
    UserSettings3,
};
use crate::store::{
    Bypass, Phone, StoreError, TextFilter, TransactionKind, UserFilter, UserRecord,
};

/// Seconds a one-time bypass lasts when the caller gives none (MFA Server's default was 300).
pub const DEFAULT_BYPASS_SECONDS: u32 = 300;
/// Shortest PIN accepted (MFA Server's default customer setting).
pub const MIN_PIN_LENGTH: usize = 4;

fn s(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

fn mode_from_v2(m: Mode2) -> Mode3 {
    match m {
        Mode2::PhoneApp => Mode3::PhoneApp,
        Mode2::SmsText => Mode3::SmsText,
        Mode2::VoiceCall => Mode3::VoiceCall,
        Mode2::Invalid => Mode3::Invalid,
        Mode2::Unspecified => Mode3::Unspecified,
    }
}

fn mode_to_v2(m: Mode3) -> Mode2 {
    match m {
        Mode3::PhoneApp => Mode2::PhoneApp,
        Mode3::SmsText => Mode2::SmsText,
        Mode3::VoiceCall => Mode2::VoiceCall,
        Mode3::OathToken | Mode3::Invalid => Mode2::Invalid,
        Mode3::Unspecified => Mode2::Unspecified,
    }
}

fn mode_to_v1(m: Mode3) -> Mode {
    if m == Mode3::SmsText {
        Mode::SmsText
    } else {
        Mode::VoiceCall
    }
}

fn phone(cc: &Option<String>, n: &Option<String>, e: &Option<String>) -> Phone {
    Phone {
        country_code: s(cc).trim().to_string(),
        number: s(n).trim().to_string(),
        extension: s(e).trim().to_string(),
    }
}

/// MFA Server's PIN rules: digits only, at least [`MIN_PIN_LENGTH`], not all one digit, not a run.
pub fn check_pin(pin: &str) -> Result<(), Error> {
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::PinTooWeak.with("PIN_TOO_WEAK: a PIN may contain digits only"));
    }
    if pin.len() < MIN_PIN_LENGTH {
        return Err(ErrorCode::PinTooShort.error());
    }
    let b = pin.as_bytes();
    let same = b.iter().all(|c| *c == b[0]);
    let up = b.windows(2).all(|w| w[1] == w[0] + 1);
    let down = b.windows(2).all(|w| w[0] == w[1] + 1);
    if same || up || down {
        return Err(ErrorCode::PinTooWeak.error());
    }
    Ok(())
}

fn settings3(u: &UserRecord) -> UserSettings3 {
    UserSettings3 {
        first_name: Some(u.first_name.clone()),
        last_name: Some(u.last_name.clone()),
        email_address: Some(u.email.clone()),
        user_group: Some(u.user_group.clone()),
        country_code: Some(u.phone.country_code.clone()),
        phone: Some(u.phone.number.clone()),
        extension: Some(u.phone.extension.clone()),
        backup_country_code: Some(u.backup_phone.country_code.clone()),
        backup_phone: Some(u.backup_phone.number.clone()),
        backup_extension: Some(u.backup_phone.extension.clone()),
        mode: u.mode,
        pin_mode: u.pin_mode,
        sms_direction: u.sms_direction,
        sms_mode: u.sms_mode,
        phone_app_mode: u.phone_app_mode,
        pin: Some(String::new()),
        pin_format: Some(String::new()),
        seconds_since_pin_change: u
            .pin_changed_at
            .map(|t| (now_unix() - t).max(0) as f64)
            .unwrap_or(0.0),
        enabled: u.enabled,
        pin_change_required: u.pin_change_required,
        disabled_behavior: u.disabled_behavior,
        voice_call_language: Some(u.voice_call_language.clone()),
        sms_text_language: Some(u.sms_text_language.clone()),
        phone_app_language: Some(u.phone_app_language.clone()),
        oath_token_language: Some(u.oath_token_language.clone()),
        enable_global_services: false,
        user_can_change_phone: true,
        keep_phone_synchronized: false,
        override_pin_rules: false,
        user_can_change_pin: true,
        minimum_pin_length: MIN_PIN_LENGTH as i32,
        prevent_weak_pins: true,
        pin_expiration_days: 0,
        historical_pins: 0,
        historical_pin_values: Some(String::new()),
        oath_token_exists: u.oath_secret.is_some(),
        oath_token_serial_number: Some(u.oath_serial.clone()),
        oath_token_secret_key: None,
        oath_token_time_interval: u.oath_time_interval,
        enable_static_token: u.static_token.is_some(),
        static_token: None,
        phone_app_activated: false,
    }
}

fn settings2(u: &UserRecord) -> UserSettings2 {
    let v = settings3(u);
    UserSettings2 {
        first_name: v.first_name,
        last_name: v.last_name,
        email_address: v.email_address,
        user_group: v.user_group,
        country_code: v.country_code,
        phone: v.phone,
        extension: v.extension,
        backup_country_code: v.backup_country_code,
        backup_phone: v.backup_phone,
        backup_extension: v.backup_extension,
        mode: mode_to_v2(v.mode),
        pin_mode: v.pin_mode,
        sms_direction: v.sms_direction,
        sms_mode: v.sms_mode,
        phone_app_mode: v.phone_app_mode,
        pin: v.pin,
        pin_format: v.pin_format,
        seconds_since_pin_change: v.seconds_since_pin_change,
        enabled: v.enabled,
        pin_change_required: v.pin_change_required,
        disabled_behavior: v.disabled_behavior,
        voice_call_language: v.voice_call_language,
        sms_text_language: v.sms_text_language,
        phone_app_language: v.phone_app_language,
        enable_global_services: v.enable_global_services,
        user_can_change_phone: v.user_can_change_phone,
        keep_phone_synchronized: v.keep_phone_synchronized,
        override_pin_rules: v.override_pin_rules,
        user_can_change_pin: v.user_can_change_pin,
        minimum_pin_length: v.minimum_pin_length,
        prevent_weak_pins: v.prevent_weak_pins,
        pin_expiration_days: v.pin_expiration_days,
        historical_pins: v.historical_pins,
        historical_pin_values: v.historical_pin_values,
        enable_static_token: v.enable_static_token,
        static_token: None,
        phone_app_activated: v.phone_app_activated,
    }
}

fn settings1(u: &UserRecord) -> UserSettings {
    let v = settings3(u);
    UserSettings {
        first_name: v.first_name,
        last_name: v.last_name,
        email_address: v.email_address,
        country_code: v.country_code,
        phone: v.phone,
        extension: v.extension,
        backup_country_code: v.backup_country_code,
        backup_phone: v.backup_phone,
        backup_extension: v.backup_extension,
        mode: mode_to_v1(v.mode),
        pin_mode: v.pin_mode,
        sms_direction: v.sms_direction,
        sms_mode: v.sms_mode,
        pin: v.pin,
        pin_format: v.pin_format,
        seconds_since_pin_change: v.seconds_since_pin_change,
        enabled: v.enabled,
        pin_change_required: v.pin_change_required,
        disabled_behavior: v.disabled_behavior,
        voice_call_language: v.voice_call_language,
        sms_text_language: v.sms_text_language,
        enable_global_services: v.enable_global_services,
        user_can_change_phone: v.user_can_change_phone,
        keep_phone_synchronized: v.keep_phone_synchronized,
        override_pin_rules: v.override_pin_rules,
        user_can_change_pin: v.user_can_change_pin,
        minimum_pin_length: v.minimum_pin_length,
        prevent_weak_pins: v.prevent_weak_pins,
        pin_expiration_days: v.pin_expiration_days,
        historical_pins: v.historical_pins,
        historical_pin_values: v.historical_pin_values,
        enable_static_token: v.enable_static_token,
        static_token: None,
    }
}

fn user_phone(u: &UserRecord) -> UserPhone {
    UserPhone {
        country_code: Some(u.phone.country_code.clone()),
        phone: Some(u.phone.number.clone()),
        extension: Some(u.phone.extension.clone()),
        backup_country_code: Some(u.backup_phone.country_code.clone()),
        backup_phone: Some(u.backup_phone.number.clone()),
        backup_extension: Some(u.backup_phone.extension.clone()),
    }
}

fn row(u: &UserRecord) -> UserRow {
    UserRow {
        username: Some(u.username.clone()),
        first_name: Some(u.first_name.clone()),
        last_name: Some(u.last_name.clone()),
        email_address: Some(u.email.clone()),
        user_group: Some(u.user_group.clone()),
        country_code: Some(u.phone.country_code.clone()),
        phone: Some(u.phone.number.clone()),
        extension: Some(u.phone.extension.clone()),
    }
}

/// The fields every `AddUserSettings` generation shares, normalised to the newest.
struct NewUser {
    first: Option<String>,
    last: Option<String>,
    email: Option<String>,
    group: Option<String>,
    phone: Phone,
    backup: Phone,
    mode: Mode3,
    pin_mode: PinMode2,
    sms_direction: crate::pfwssdk::SmsDirection,
    sms_mode: crate::pfwssdk::SmsMode,
    phone_app_mode: crate::pfwssdk::PhoneAppMode,
    pin: Option<String>,
    enabled: bool,
    pin_change_required: bool,
}

impl From<AddUserSettings3> for NewUser {
    fn from(a: AddUserSettings3) -> Self {
        Self {
            phone: phone(&a.country_code, &a.phone, &a.extension),
            backup: phone(&a.backup_country_code, &a.backup_phone, &a.backup_extension),
            first: a.first_name,
            last: a.last_name,
            email: a.email_address,
            group: a.user_group,
            mode: a.mode,
            pin_mode: a.pin_mode,
            sms_direction: a.sms_direction,
            sms_mode: a.sms_mode,
            phone_app_mode: a.phone_app_mode,
            pin: a.pin,
            enabled: a.enabled,
            pin_change_required: a.pin_change_required,
        }
    }
}

impl From<AddUserSettings2> for NewUser {
    fn from(a: AddUserSettings2) -> Self {
        Self {
            phone: phone(&a.country_code, &a.phone, &a.extension),
            backup: phone(&a.backup_country_code, &a.backup_phone, &a.backup_extension),
            first: a.first_name,
            last: a.last_name,
            email: a.email_address,
            group: a.user_group,
            mode: mode_from_v2(a.mode),
            pin_mode: a.pin_mode,
            sms_direction: a.sms_direction,
            sms_mode: a.sms_mode,
            phone_app_mode: a.phone_app_mode,
            pin: a.pin,
            enabled: a.enabled,
            pin_change_required: a.pin_change_required,
        }
    }
}

impl From<AddUserSettings> for NewUser {
    fn from(a: AddUserSettings) -> Self {
        Self {
            phone: phone(&a.country_code, &a.phone, &a.extension),
            backup: phone(&a.backup_country_code, &a.backup_phone, &a.backup_extension),
            first: a.first_name,
            last: a.last_name,
            email: a.email_address,
            group: None,
            mode: if a.mode == Mode::SmsText {
                Mode3::SmsText
            } else {
                Mode3::VoiceCall
            },
            pin_mode: a.pin_mode,
            sms_direction: a.sms_direction,
            sms_mode: a.sms_mode,
            phone_app_mode: crate::pfwssdk::PhoneAppMode::Standard,
            pin: a.pin,
            enabled: a.enabled,
            pin_change_required: a.pin_change_required,
        }
    }
}

/// The canonical form of a username from a request ([`crate::username`]), or `Error` 504 naming
/// the character that makes it no name.
fn canonical_name(username: &Option<String>) -> Result<String, Error> {
    crate::username::canonical(username.as_deref().unwrap_or(""))
        .map_err(|e| ErrorCode::InvalidInput.with(e.to_string()))
}

fn text(pattern: &Option<String>, case_sensitive: bool) -> TextFilter {
    TextFilter {
        pattern: s(pattern),
        case_sensitive,
    }
}

impl Engine {
    fn store_error(&self, e: &StoreError) -> Error {
        match e {
            StoreError::Duplicate(_) => ErrorCode::DuplicateUsername.error(),
            StoreError::NotFound(_) => ErrorCode::UserNotFound.error(),
            // The SDK has no external id field and its updates keep the stored one, so this
            // cannot come from a request; should it, the request is refused with the reason.
            StoreError::ExternalIdTaken { .. } => {
                tracing::warn!(target: "pfgate::engine", error = %e, "directory change refused");
                ErrorCode::InvalidInput.with("The external id is held by another user.")
            }
            StoreError::Unavailable(_) | StoreError::Corrupt(_) | StoreError::KeyMismatch(_) => {
                tracing::error!(target: "pfgate::engine", error = %e, "store failure");
                ErrorCode::StoreUnavailable.error()
            }
        }
    }

    fn audit_change(
        &self,
        ctx: &CallContext,
        op: Operation,
        user: &str,
        actor: Option<&str>,
        started: Instant,
        error: &Error,
    ) {
        let kind = if error.code == 0 {
            AuditKind::DirectoryChange
        } else {
            AuditKind::DirectoryChangeRefused
        };
        let actor = actor.filter(|a| !a.is_empty()).unwrap_or(&ctx.caller);
        audit::emit(
            kind,
            &AuditEvent {
                operation: op.name(),
                caller: actor,
                username: user,
                error: error.code,
                latency: started.elapsed(),
                ..AuditEvent::default()
            },
        );
    }

    async fn load(&self, username: &Option<String>) -> Result<UserRecord, Error> {
        let name = canonical_name(username)?;
        let name = name.as_str();
        if name.is_empty() {
            return Err(ErrorCode::UserNotFound.error());
        }
        match self.store.get_user(name).await {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(ErrorCode::UserNotFound.error()),
            Err(e) => Err(self.store_error(&e)),
        }
    }

    /// Loads the user, applies `change`, stores it, audits. Returns the `Error` to send.
    async fn modify(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        actor: &Option<String>,
        change: impl FnOnce(&mut UserRecord) -> Result<(), Error>,
    ) -> Error {
        let started = Instant::now();
        let result = async {
            let mut user = self.load(username).await?;
            change(&mut user)?;
            self.store
                .update_user(&user)
                .await
                .map_err(|e| self.store_error(&e))
        }
        .await;
        let error = result.err().unwrap_or_else(Error::ok);
        self.audit_change(ctx, op, &s(username), actor.as_deref(), started, &error);
        error
    }

    async fn add(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        actor: &Option<String>,
        new: Option<NewUser>,
    ) -> Error {
        let started = Instant::now();
        let result = async {
            let name = canonical_name(username)?;
            if name.is_empty() {
                return Err(ErrorCode::InvalidInput.with("A username is required."));
            }
            // Refuse a duplicate before spending an argon2 hash on its PIN.
            if self
                .store
                .get_user(&name)
                .await
                .map_err(|e| self.store_error(&e))?
                .is_some()
            {
                return Err(ErrorCode::DuplicateUsername.error());
            }
            let mut u = UserRecord::new(name);
            if let Some(n) = new {
                u.first_name = s(&n.first);
                u.last_name = s(&n.last);
                u.email = s(&n.email);
                u.user_group = s(&n.group);
                u.phone = n.phone;
                u.backup_phone = n.backup;
                u.mode = n.mode;
                u.pin_mode = n.pin_mode;
                u.sms_direction = n.sms_direction;
                u.sms_mode = n.sms_mode;
                u.phone_app_mode = n.phone_app_mode;
                u.enabled = n.enabled;
                u.pin_change_required = n.pin_change_required;
                if let Some(pin) = n.pin.filter(|p| !p.is_empty()) {
                    check_pin(&pin)?;
                    u.pin_hash = Some(hash_pin(&pin)?);
                    u.pin_changed_at = Some(now_unix());
                }
            }
            self.store
                .add_user(&u)
                .await
                .map_err(|e| self.store_error(&e))
        }
        .await;
        let error = result.err().unwrap_or_else(Error::ok);
        self.audit_change(ctx, op, &s(username), actor.as_deref(), started, &error);
        error
    }

    async fn find(&self, filter: UserFilter, limit: u32) -> Result<(Vec<UserRow>, bool), Error> {
        self.store
            .find_users(&filter, limit)
            .await
            .map(|(users, complete)| (users.iter().map(row).collect(), complete))
            .map_err(|e| self.store_error(&e))
    }

    /// Directory and validation operations. `Err(op)` means "not supported by pfgate".
    pub(crate) async fn admin(
        &self,
        ctx: &CallContext,
        request: Request,
    ) -> Result<Response, Operation> {
        let op = request.operation();
        let status = |error: Error| Response::status(op, error.code == 0, error);
        Ok(match request {
            Request::UserExists(r) => match self.load(&r.username).await {
                Ok(_) => status(Error::ok()),
                Err(e) => status(e),
            },
            Request::CanonicalizeUser(r) => match self.load(&r.username).await {
                Ok(u) => Response::CanonicalizeUser(rs::CanonicalizeUser {
                    result: true,
                    canonical_username: Some(u.username),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetPhone(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetPhone(rs::GetPhone {
                    result: true,
                    user_phone: Some(user_phone(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserSettings(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetUserSettings(rs::GetUserSettings {
                    result: true,
                    user_settings: Some(settings1(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserSettings2(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetUserSettings2(rs::GetUserSettings2 {
                    result: true,
                    user_settings: Some(settings2(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserSettings_2(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetUserSettings_2(rs::GetUserSettings_2 {
                    result: true,
                    user_settings: Some(settings2(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserSettingsMaster(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetUserSettingsMaster(rs::GetUserSettingsMaster {
                    result: true,
                    user_settings: Some(settings2(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserSettings_3(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetUserSettings_3(rs::GetUserSettings_3 {
                    result: true,
                    user_settings: Some(settings3(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserSettingsMaster_2(r) => match self.load(&r.username).await {
                Ok(u) => Response::GetUserSettingsMaster_2(rs::GetUserSettingsMaster_2 {
                    result: true,
                    user_settings: Some(settings3(&u)),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::GetUserDevices(r) => match self.load(&r.username).await {
                // pfgate activates no Microsoft Authenticator devices: the list is always empty.
                Ok(_) => Response::GetUserDevices(rs::GetUserDevices {
                    result: true,
                    user_devices: Some(Vec::new()),
                    error: Error::ok(),
                }),
                Err(e) => status(e),
            },
            Request::AddUser(r) => status(
                self.add(
                    ctx,
                    op,
                    &r.username,
                    &r.modify_username,
                    r.add_user_settings.map(NewUser::from),
                )
                .await,
            ),
            Request::AddUser2(r) => status(
                self.add(
                    ctx,
                    op,
                    &r.username,
                    &r.modify_username,
                    r.add_user_settings.map(NewUser::from),
                )
                .await,
            ),
            Request::AddUser_2(r) => status(
                self.add(
                    ctx,
                    op,
                    &r.username,
                    &r.modify_username,
                    r.add_user_settings.map(NewUser::from),
                )
                .await,
            ),
            Request::AddUser_3(r) => status(
                self.add(
                    ctx,
                    op,
                    &r.username,
                    &r.modify_username,
                    r.add_user_settings.map(NewUser::from),
                )
                .await,
            ),
            Request::DeleteUser(r) => {
                let started = Instant::now();
                let error = match canonical_name(&r.username) {
                    Err(e) => e,
                    Ok(name) => match self.store.delete_user(&name).await {
                        Ok(true) => Error::ok(),
                        Ok(false) => ErrorCode::UserNotFound.error(),
                        Err(e) => self.store_error(&e),
                    },
                };
                self.audit_change(
                    ctx,
                    op,
                    &s(&r.username),
                    r.modify_username.as_deref(),
                    started,
                    &error,
                );
                status(error)
            }
            Request::FindUsers(r) => {
                let filter = UserFilter {
                    username: text(&r.username_filter, r.username_case_sensitive),
                    first_name: text(&r.first_name_filter, r.first_name_case_sensitive),
                    last_name: text(&r.last_name_filter, r.last_name_case_sensitive),
                    email: text(&r.email_filter, r.email_case_sensitive),
                    phone: s(&r.phone_filter),
                    pin_mode: r.pin_mode_specified.then_some(r.pin_mode_filter),
                    enabled: r.enabled_specified.then_some(r.enabled_filter),
                    ..UserFilter::default()
                };
                match self.find(filter, r.result_limit).await {
                    Ok((rows, complete)) => Response::FindUsers(rs::FindUsers {
                        result: true,
                        user_rows: Some(rows),
                        results_complete: complete,
                        error: Error::ok(),
                    }),
                    Err(e) => status(e),
                }
            }
            Request::FindUsers2(r) => {
                let filter = UserFilter {
                    username: text(&r.username_filter, r.username_case_sensitive),
                    first_name: text(&r.first_name_filter, r.first_name_case_sensitive),
                    last_name: text(&r.last_name_filter, r.last_name_case_sensitive),
                    email: text(&r.email_filter, r.email_case_sensitive),
                    phone: s(&r.phone_filter),
                    mode: r.mode_specified.then_some(mode_from_v2(r.mode_filter)),
                    pin_mode: r.pin_mode_specified.then_some(r.pin_mode_filter),
                    enabled: r.enabled_specified.then_some(r.enabled_filter),
                    ..UserFilter::default()
                };
                match self.find(filter, r.result_limit).await {
                    Ok((rows, complete)) => Response::FindUsers2(rs::FindUsers2 {
                        result: true,
                        user_rows: Some(rows),
                        results_complete: complete,
                        error: Error::ok(),
                    }),
                    Err(e) => status(e),
                }
            }
            Request::FindUsers3(r) => {
                let filter = UserFilter {
                    username: text(&r.username_filter, r.username_case_sensitive),
                    first_name: text(&r.first_name_filter, r.first_name_case_sensitive),
                    last_name: text(&r.last_name_filter, r.last_name_case_sensitive),
                    email: text(&r.email_filter, r.email_case_sensitive),
                    user_group: text(&r.user_group_filter, r.user_group_case_sensitive),
                    phone: s(&r.phone_filter),
                    mode: r.mode_specified.then_some(mode_from_v2(r.mode_filter)),
                    pin_mode: r.pin_mode_specified.then_some(r.pin_mode_filter),
                    enabled: r.enabled_specified.then_some(r.enabled_filter),
                };
                match self.find(filter, r.result_limit).await {
                    Ok((rows, complete)) => Response::FindUsers3(rs::FindUsers3 {
                        result: true,
                        user_rows: Some(rows),
                        results_complete: complete,
                        error: Error::ok(),
                    }),
                    Err(e) => status(e),
                }
            }
            Request::FindUsers_3(r) => {
                let filter = UserFilter {
                    username: text(&r.username_filter, r.username_case_sensitive),
                    first_name: text(&r.first_name_filter, r.first_name_case_sensitive),
                    last_name: text(&r.last_name_filter, r.last_name_case_sensitive),
                    email: text(&r.email_filter, r.email_case_sensitive),
                    user_group: text(&r.user_group_filter, r.user_group_case_sensitive),
                    phone: s(&r.phone_filter),
                    mode: r.mode_specified.then_some(mode_from_v2(r.mode_filter)),
                    pin_mode: r.pin_mode_specified.then_some(r.pin_mode_filter),
                    enabled: r.enabled_specified.then_some(r.enabled_filter),
                };
                match self.find(filter, r.result_limit).await {
                    Ok((rows, complete)) => Response::FindUsers_3(rs::FindUsers_3 {
                        result: true,
                        user_rows: Some(rows),
                        results_complete: complete,
                        error: Error::ok(),
                    }),
                    Err(e) => status(e),
                }
            }
            Request::FindUsers_4(r) => {
                // Tags are not kept by pfgate: a tag filter other than "all users" matches nobody
                // rather than everybody (fail closed for scripts that act on the result).
                let tags_requested = r.tag_ids.as_ref().is_some_and(|t| !t.is_empty())
                    && r.tag_match_type != crate::pfwssdk::TagMatchType::AllUsers;
                let filter = UserFilter {
                    username: text(&r.username_filter, r.username_case_sensitive),
                    first_name: text(&r.first_name_filter, r.first_name_case_sensitive),
                    last_name: text(&r.last_name_filter, r.last_name_case_sensitive),
                    email: text(&r.email_filter, r.email_case_sensitive),
                    user_group: text(&r.user_group_filter, r.user_group_case_sensitive),
                    phone: s(&r.phone_filter),
                    mode: r.mode_specified.then_some(r.mode_filter),
                    pin_mode: r.pin_mode_specified.then_some(r.pin_mode_filter),
                    enabled: r.enabled_specified.then_some(r.enabled_filter),
                };
                let found = if tags_requested {
                    Ok((Vec::new(), true))
                } else {
                    self.find(filter, r.result_limit).await
                };
                match found {
                    Ok((rows, complete)) => Response::FindUsers_4(rs::FindUsers_4 {
                        result: true,
                        user_rows: Some(rows),
                        results_complete: complete,
                        error: Error::ok(),
                    }),
                    Err(e) => status(e),
                }
            }
            Request::ChangePhone(r) => {
                let p = r.user_phone.unwrap_or_default();
                status(
                    self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                        u.phone = phone(&p.country_code, &p.phone, &p.extension);
                        u.backup_phone =
                            phone(&p.backup_country_code, &p.backup_phone, &p.backup_extension);
                        Ok(())
                    })
                    .await,
                )
            }
            Request::ChangePin(r) => {
                let user_pin = r.user_pin;
                status(
                    self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                        // A missing userPin (or Pin inside it) is an error that changes nothing:
                        // it used to remove the PIN (issue #17, item 13). An explicit empty Pin
                        // still removes it.
                        let Some(p) = user_pin.filter(|p| p.pin.is_some()) else {
                            return Err(ErrorCode::InvalidInput.with(
                                "ChangePin needs userPin with its Pin (empty to remove the PIN).",
                            ));
                        };
                        let pin = s(&p.pin);
                        if pin.is_empty() {
                            u.pin_hash = None;
                        } else {
                            check_pin(&pin)?;
                            u.pin_hash = Some(hash_pin(&pin)?);
                        }
                        u.pin_changed_at = Some(now_unix());
                        u.pin_change_required = p.pin_change_required;
                        Ok(())
                    })
                    .await,
                )
            }
            Request::ChangeMode(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.mode = mode_from_v2(r.mode);
                    Ok(())
                })
                .await,
            ),
            Request::ChangeMode_2(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.mode = r.mode;
                    Ok(())
                })
                .await,
            ),
            Request::ChangePinMode(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.pin_mode = r.pin_mode;
                    Ok(())
                })
                .await,
            ),
            Request::ChangeSmsMode(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.sms_direction = r.sms_direction;
                    u.sms_mode = r.sms_mode;
                    Ok(())
                })
                .await,
            ),
            Request::ChangePhoneAppMode(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.phone_app_mode = r.phone_app_mode;
                    Ok(())
                })
                .await,
            ),
            Request::ChangeLanguage(r) => {
                let l = r.user_language.unwrap_or_default();
                status(
                    self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                        u.voice_call_language = s(&l.voice_call_language);
                        u.sms_text_language = s(&l.sms_text_language);
                        u.phone_app_language = s(&l.phone_app_language);
                        u.oath_token_language = s(&l.oath_token_language);
                        Ok(())
                    })
                    .await,
                )
            }
            Request::ChangeUserInformation(r) => {
                let i = r.user_information.unwrap_or_default();
                status(
                    self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                        u.first_name = s(&i.first_name);
                        u.last_name = s(&i.last_name);
                        u.email = s(&i.email_address);
                        u.user_group = s(&i.user_group);
                        Ok(())
                    })
                    .await,
                )
            }
            Request::ChangeUsername(r) => {
                let started = Instant::now();
                let old = s(&r.old_username);
                let names = canonical_name(&r.old_username)
                    .and_then(|o| Ok((o, canonical_name(&r.new_username)?)));
                let error = match names {
                    Err(e) => e,
                    Ok((_, new)) if new.is_empty() => {
                        ErrorCode::InvalidInput.with("A new username is required.")
                    }
                    Ok((old, new)) => match self.store.rename_user(&old, &new).await {
                        Ok(()) => Error::ok(),
                        Err(e) => self.store_error(&e),
                    },
                };
                self.audit_change(ctx, op, &old, r.modify_username.as_deref(), started, &error);
                status(error)
            }
            Request::ChangeOathToken(r) => {
                let secret = s(&r.secret_key);
                let code = s(&r.code);
                let step = if r.time_interval > 0 {
                    r.time_interval
                } else {
                    30
                };
                status(
                    self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                        if secret.trim().is_empty() {
                            u.oath_secret = None;
                            return Ok(());
                        }
                        // The token is enrolled only when the code proves the secret is the token's.
                        let key = super::totp::base32_decode(&secret).ok_or_else(|| {
                            ErrorCode::InvalidInput.with("The OATH secret key is not base32.")
                        })?;
                        if super::totp::verify(&key, &code, now_unix(), i64::from(step)).is_none() {
                            return Err(ErrorCode::Denied
                                .with("The OATH code does not match the secret key."));
                        }
                        u.oath_secret = Some(secret.trim().to_string());
                        u.oath_time_interval = step;
                        Ok(())
                    })
                    .await,
                )
            }
            Request::ChangeStaticToken(r) => {
                let token = s(&r.static_token);
                status(
                    self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                        u.static_token = (!token.is_empty()).then_some(token);
                        Ok(())
                    })
                    .await,
                )
            }
            Request::Enable(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.enabled = true;
                    Ok(())
                })
                .await,
            ),
            Request::Disable(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.enabled = false;
                    Ok(())
                })
                .await,
            ),
            Request::DisabledBehavior(r) => status(
                self.modify(ctx, op, &r.username, &r.modify_username, |u| {
                    u.disabled_behavior = r.disabled_behavior;
                    Ok(())
                })
                .await,
            ),
            Request::BlockUser(r) => {
                let started = Instant::now();
                let error = match self.load(&r.username).await {
                    Ok(u) => match self
                        .store
                        .block_user(&u.username, &s(&r.reason), &s(&r.modify_username))
                        .await
                    {
                        Ok(_) => Error::ok(),
                        Err(e) => self.store_error(&e),
                    },
                    Err(e) => e,
                };
                self.audit_change(
                    ctx,
                    op,
                    &s(&r.username),
                    r.modify_username.as_deref(),
                    started,
                    &error,
                );
                status(error)
            }
            Request::UnblockUser(r) => {
                let started = Instant::now();
                let error = match self.load(&r.username).await {
                    Ok(u) => self.unblock(&u.username).await,
                    Err(e) => e,
                };
                self.audit_change(
                    ctx,
                    op,
                    &s(&r.username),
                    r.modify_username.as_deref(),
                    started,
                    &error,
                );
                status(error)
            }
            Request::UserIsBlocked(r) => match self.load(&r.username).await {
                Ok(u) => status(self.is_blocked(&u.username).await),
                Err(e) => status(e),
            },
            Request::OneTimeBypass(r) => status(
                self.bypass(ctx, op, &r.username, &r.reason, 0, &r.modify_username)
                    .await,
            ),
            Request::OneTimeBypass2(r) => status(
                self.bypass(
                    ctx,
                    op,
                    &r.username,
                    &r.reason,
                    r.bypass_seconds,
                    &r.modify_username,
                )
                .await,
            ),
            Request::OneTimeBypass_2(r) => status(
                self.bypass(
                    ctx,
                    op,
                    &r.username,
                    &r.reason,
                    r.bypass_seconds,
                    &r.modify_username,
                )
                .await,
            ),
            Request::ValidatePin(r) => {
                let pin = s(&r.pin);
                status(
                    self.verified(
                        ctx,
                        op,
                        &r.username,
                        None,
                        Some(CallCode::PinEntered),
                        |u| async move {
                            let ok = u
                                .pin_hash
                                .as_deref()
                                .is_some_and(|h| crate::store::secrets::verify_pin(&pin, h));
                            if ok {
                                Ok(())
                            } else {
                                Err(ErrorCode::IncorrectPin.error())
                            }
                        },
                    )
                    .await,
                )
            }
            Request::ValidateStaticToken(r) => {
                let given = s(&r.static_token);
                status(
                    self.verified(ctx, op, &r.username, None, None, |u| async move {
                        let ok = u.static_token.as_deref().is_some_and(|t| {
                            !given.is_empty() && bool::from(t.as_bytes().ct_eq(given.as_bytes()))
                        });
                        if ok {
                            Ok(())
                        } else {
                            Err(ErrorCode::Denied.error())
                        }
                    })
                    .await,
                )
            }
            Request::ValidatePasscode(r) => status(
                self.validate_passcode(ctx, op, &r.username, &r.passcode)
                    .await,
            ),
            Request::ValidatePasscodeMaster(r) => status(
                self.validate_passcode(ctx, op, &r.username, &r.passcode)
                    .await,
            ),
            Request::ValidateOathCode(r) => status(
                self.validate_oath(ctx, op, &r.username, &r.code, &r.authentication_request_id)
                    .await,
            ),
            Request::ValidateOathCodeMaster(r) => status(
                self.validate_oath(ctx, op, &r.username, &r.code, &r.authentication_request_id)
                    .await,
            ),
            Request::GetCustomerDefaults(_) => {
                Response::GetCustomerDefaults(rs::GetCustomerDefaults {
                    result: true,
                    customer_defaults: Some(CustomerDefaults {
                        mode: Mode::VoiceCall,
                        pin_mode: PinMode2::Standard,
                        disabled_behavior: AuthResult::Fail,
                        voice_call_language: Some("en".into()),
                        sms_text_language: Some("en".into()),
                        user_can_change_phone: true,
                        user_can_change_pin: true,
                        minimum_pin_length: MIN_PIN_LENGTH as i32,
                        prevent_weak_pins: true,
                        ..CustomerDefaults::default()
                    }),
                    error: Error::ok(),
                })
            }
            Request::GetCustomerDefaults2(_) | Request::GetCustomerDefaults_2(_) => {
                let d = CustomerDefaults2 {
                    mode: Mode2::VoiceCall,
                    pin_mode: PinMode2::Standard,
                    phone_app_mode: crate::pfwssdk::PhoneAppMode::Standard,
                    disabled_behavior: AuthResult::Fail,
                    voice_call_language: Some("en".into()),
                    sms_text_language: Some("en".into()),
                    phone_app_language: Some("en".into()),
                    user_can_change_phone: true,
                    user_can_change_pin: true,
                    minimum_pin_length: MIN_PIN_LENGTH as i32,
                    prevent_weak_pins: true,
                    ..CustomerDefaults2::default()
                };
                if op == Operation::GetCustomerDefaults2 {
                    Response::GetCustomerDefaults2(rs::GetCustomerDefaults2 {
                        result: true,
                        customer_defaults: Some(d),
                        error: Error::ok(),
                    })
                } else {
                    Response::GetCustomerDefaults_2(rs::GetCustomerDefaults_2 {
                        result: true,
                        customer_defaults: Some(d),
                        error: Error::ok(),
                    })
                }
            }
            Request::GetCustomerDefaults_3(_) => {
                Response::GetCustomerDefaults_3(rs::GetCustomerDefaults_3 {
                    result: true,
                    customer_defaults: Some(CustomerDefaults3 {
                        mode: Mode3::VoiceCall,
                        pin_mode: PinMode2::Standard,
                        phone_app_mode: crate::pfwssdk::PhoneAppMode::Standard,
                        disabled_behavior: AuthResult::Fail,
                        voice_call_language: Some("en".into()),
                        sms_text_language: Some("en".into()),
                        phone_app_language: Some("en".into()),
                        oath_token_language: Some("en".into()),
                        user_can_change_phone: true,
                        user_can_change_pin: true,
                        minimum_pin_length: MIN_PIN_LENGTH as i32,
                        prevent_weak_pins: true,
                        ..CustomerDefaults3::default()
                    }),
                    error: Error::ok(),
                })
            }
            // True only for what pfgate actually does.
            Request::GetFeatures(_) => Response::GetFeatures(rs::GetFeatures {
                result: true,
                features: Some(Features {
                    international: true,
                    pin_mode: true,
                    extension_dialing: true,
                    change_phone: true,
                    user_information: true,
                    web_service_sdk: true,
                    sms: true,
                    static_token: true,
                    phone_app: true,
                    oath_token: true,
                    ..Features::default()
                }),
                error: Error::ok(),
            }),
            other => return Err(other.operation()),
        })
    }

    async fn bypass(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        reason: &Option<String>,
        seconds: u32,
        actor: &Option<String>,
    ) -> Error {
        let started = Instant::now();
        let seconds = if seconds == 0 {
            DEFAULT_BYPASS_SECONDS
        } else {
            seconds
        };
        let error = match self.load(username).await {
            Ok(u) => {
                let b = Bypass {
                    username: u.username.clone(),
                    reason: s(reason),
                    expires_at: now_unix() + i64::from(seconds),
                    created_by: s(actor),
                };
                match self.store.add_bypass(&b).await {
                    Ok(()) => Error::ok(),
                    Err(e) => self.store_error(&e),
                }
            }
            Err(e) => e,
        };
        self.audit_change(ctx, op, &s(username), actor.as_deref(), started, &error);
        error
    }

    /// Lifts a block and a lockout (`UnblockUser`): `USER_NOT_BLOCKED` when there was neither.
    async fn unblock(&self, username: &str) -> Error {
        let unblocked = match self.store.unblock_user(username).await {
            Ok(b) => b,
            Err(e) => return self.store_error(&e),
        };
        match self.store.clear_failures(username, now_unix()).await {
            Ok(unlocked) if unblocked || unlocked => Error::ok(),
            Ok(_) => ErrorCode::UserNotBlocked.error(),
            Err(e) => self.store_error(&e),
        }
    }

    /// `UserIsBlocked`: true for a block and for a lockout (both refuse every authentication, and
    /// `UnblockUser` lifts both).
    async fn is_blocked(&self, username: &str) -> Error {
        let blocked = match self.store.block_reason(username).await {
            Ok(reason) => reason.is_some(),
            Err(e) => return self.store_error(&e),
        };
        let locked = match self.store.locked_until(username, now_unix()).await {
            Ok(until) => until.is_some(),
            Err(e) => return self.store_error(&e),
        };
        if blocked || locked {
            Error::ok()
        } else {
            ErrorCode::UserNotCurrentlyBlocked.error()
        }
    }

    /// One attempt at a secret (`Validate*`): the policy first ([`Engine::standing_for_check`]:
    /// unknown, blocked, locked out and disabled users are refused before any secret is looked
    /// at), then `check` on the user; a refusal of the secret counts towards the lockout, a success
    /// clears the count. Every attempt writes an audit event (never the secret).
    async fn verified<F, Fut>(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        request_id: Option<&str>,
        success: Option<CallCode>,
        check: F,
    ) -> Error
    where
        F: FnOnce(UserRecord) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let started = Instant::now();
        let result = match self.standing_for_check(username.as_deref()).await {
            Err(e) => Err(e),
            Ok(user) => {
                let name = user.username.clone();
                let checked = check(user).await;
                match &checked {
                    Ok(()) => self.forget_failures(&name).await,
                    Err(e) if e.code != ErrorCode::StoreUnavailable.code() => {
                        self.count_failure(ctx, op.name(), &name).await
                    }
                    Err(_) => {}
                }
                checked
            }
        };
        let error = result.err().unwrap_or_else(Error::ok);
        let kind = if error.code == 0 {
            AuditKind::SecondFactorCompleted
        } else {
            AuditKind::SecondFactorFailed
        };
        audit::emit(
            kind,
            &AuditEvent {
                operation: op.name(),
                caller: &ctx.caller,
                username: &crate::username::for_log(username.as_deref().unwrap_or("")),
                call_result: if error.code == 0 {
                    success.map(CallCode::code)
                } else {
                    Some(0)
                },
                error: error.code,
                latency: started.elapsed(),
                request_id,
                ..AuditEvent::default()
            },
        );
        error
    }

    async fn validate_passcode(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        passcode: &Option<String>,
    ) -> Error {
        let given = s(passcode);
        let success = Some(CallCode::TextMessageAuthenticated);
        self.verified(ctx, op, username, None, success, |user| async move {
            let now = now_unix();
            let take = |kind| {
                self.store
                    .take_user_transaction(&user.username, kind, &ctx.caller, now)
            };
            let sms = take(TransactionKind::SmsPasscode)
                .await
                .map_err(|e| self.store_error(&e))?;
            let tx = match sms {
                Some(tx) => tx,
                None => {
                    // A code the provider sent and checks itself (Twilio Verify).
                    let provider = take(TransactionKind::ProviderCode)
                        .await
                        .map_err(|e| self.store_error(&e))?
                        .ok_or_else(|| {
                            ErrorCode::Denied
                                .with("Multi-Factor Authentication denied: no passcode is pending.")
                        })?;
                    return if !given.trim().is_empty()
                        && self.check_provider_code(&provider, given.trim()).await
                    {
                        Ok(())
                    } else {
                        Err(ErrorCode::Denied.error())
                    };
                }
            };
            let ok = tx.code_hash.as_deref().is_some_and(|h| {
                !given.trim().is_empty() && crate::store::secrets::verify_pin(given.trim(), h)
            });
            if ok {
                Ok(())
            } else {
                Err(ErrorCode::Denied.error())
            }
        })
        .await
    }

    async fn validate_oath(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        code: &Option<String>,
        request_id: &Option<String>,
    ) -> Error {
        let code = s(code);
        let id = request_id
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty());
        let success = Some(CallCode::OathCodeVerified);
        self.verified(ctx, op, username, request_id.as_deref(), success, |user| async move {
            let now = now_unix();
            if let Some(id) = id {
                // Only the user's own transaction, started by this caller, is taken: anyone
                // else's is left for its owner (issue #23, item 7).
                let tx = self
                    .store
                    .take_transaction(id, &user.username, &ctx.caller, now)
                    .await
                    .map_err(|e| self.store_error(&e))?;
                let Some(tx) = tx else {
                    return Err(ErrorCode::Denied.with(
                        "Multi-Factor Authentication denied: unknown or expired authenticationRequestId.",
                    ));
                };
                if tx.kind == TransactionKind::ProviderCode {
                    return if !code.trim().is_empty() && self.check_provider_code(&tx, code.trim()).await {
                        Ok(())
                    } else {
                        Err(ErrorCode::Denied.error())
                    };
                }
            }
            let secret = user
                .oath_secret
                .as_deref()
                .and_then(super::totp::base32_decode)
                .ok_or_else(|| ErrorCode::Denied.with("Multi-Factor Authentication denied: no OATH token."))?;
            let step = i64::from(user.oath_time_interval.max(1));
            let Some(t) = super::totp::verify(&secret, &code, now, step) else {
                return Err(ErrorCode::Denied.error());
            };
            // A code is good once, across every instance sharing the store.
            let fresh = self
                .store
                .mark_code_used(&user.username, &format!("oath:{t}"), now + 3 * step)
                .await
                .map_err(|e| self.store_error(&e))?;
            if !fresh {
                return Err(ErrorCode::Denied.with("Multi-Factor Authentication denied: the OATH code was already used."));
            }
            Ok(())
        })
        .await
    }
}

fn hash_pin(pin: &str) -> Result<String, Error> {
    crate::store::secrets::hash_pin(pin).map_err(|e| {
        tracing::error!(target: "pfgate::engine", error = %e, "PIN hashing failed");
        ErrorCode::StoreUnavailable.error()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_rules() {
        assert!(check_pin("2580").is_ok());
        assert_eq!(check_pin("123").unwrap_err().code, 109);
        assert_eq!(check_pin("1111").unwrap_err().code, 110);
        assert_eq!(check_pin("1234").unwrap_err().code, 110);
        assert_eq!(check_pin("9876").unwrap_err().code, 110);
        assert_eq!(check_pin("12a4").unwrap_err().code, 110);
    }
}
