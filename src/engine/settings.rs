//! A user's settings: read them (`GetUserSettings*`), change them (`Change*`, `Enable`, `Disable`,
//! `DisabledBehavior`), the PIN rules, and what every user starts with (`GetCustomerDefaults*`,
//! `GetFeatures`).
//!
//! A read is one look-up shaped into each generation's settings type (`settings1`,
//! `settings2`, `settings3`: the newest, narrowed); a change is one [`Change`] applied by
//! `Engine::modify` (load, apply, store, audit).

use std::time::Instant;

use super::users::s;
use super::{now_unix, status, CallContext, Engine};
use crate::pfwssdk::codes::ErrorCode;
use crate::pfwssdk::{
    AuthResult, CustomerDefaults, CustomerDefaults2, CustomerDefaults3, Error, Features, Mode,
    Mode2, Mode3, Operation, PhoneAppMode, PinMode2, Request, Response, SmsDirection, SmsMode,
    UserInformation, UserLanguage, UserPhone, UserPin, UserSettings, UserSettings2, UserSettings3,
};
use crate::store::UserRecord;

/// Shortest PIN accepted (MFA Server's default customer setting).
pub const MIN_PIN_LENGTH: usize = 4;

pub(super) fn mode_from_v2(m: Mode2) -> Mode3 {
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

/// `$ty` built from `$v`, the same settings in their newest generation: the fields named are
/// moved as they are, each `$field: $value` is converted (older generations have fewer modes).
macro_rules! narrow {
    ($v:ident => $ty:ident { $($same:ident),* $(,)? } $(, $field:ident: $value:expr)* $(,)?) => {
        $ty { $($same: $v.$same,)* $($field: $value,)* }
    };
}

fn settings2(u: &UserRecord) -> UserSettings2 {
    let v = settings3(u);
    narrow!(v => UserSettings2 {
        first_name, last_name, email_address, user_group, country_code, phone, extension,
        backup_country_code, backup_phone, backup_extension, pin_mode, sms_direction, sms_mode,
        phone_app_mode, pin, pin_format, seconds_since_pin_change, enabled, pin_change_required,
        disabled_behavior, voice_call_language, sms_text_language, phone_app_language,
        enable_global_services, user_can_change_phone, keep_phone_synchronized,
        override_pin_rules, user_can_change_pin, minimum_pin_length, prevent_weak_pins,
        pin_expiration_days, historical_pins, historical_pin_values, enable_static_token,
        phone_app_activated,
    }, mode: mode_to_v2(v.mode), static_token: None)
}

fn settings1(u: &UserRecord) -> UserSettings {
    let v = settings3(u);
    narrow!(v => UserSettings {
        first_name, last_name, email_address, country_code, phone, extension,
        backup_country_code, backup_phone, backup_extension, pin_mode, sms_direction, sms_mode,
        pin, pin_format, seconds_since_pin_change, enabled, pin_change_required,
        disabled_behavior, voice_call_language, sms_text_language, enable_global_services,
        user_can_change_phone, keep_phone_synchronized, override_pin_rules, user_can_change_pin,
        minimum_pin_length, prevent_weak_pins, pin_expiration_days, historical_pins,
        historical_pin_values, enable_static_token,
    }, mode: mode_to_v1(v.mode), static_token: None)
}

/// The customer defaults (pfgate has one customer), in the newest generation.
fn defaults3() -> CustomerDefaults3 {
    CustomerDefaults3 {
        mode: Mode3::VoiceCall,
        pin_mode: PinMode2::Standard,
        phone_app_mode: PhoneAppMode::Standard,
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
    }
}

fn defaults2() -> CustomerDefaults2 {
    let v = defaults3();
    narrow!(v => CustomerDefaults2 {
        pin_mode, sms_direction, sms_mode, phone_app_mode, enable_global_services,
        user_can_change_phone, keep_phone_synchronized, disabled_behavior, voice_call_language,
        sms_text_language, phone_app_language, user_can_change_pin, minimum_pin_length,
        prevent_weak_pins, pin_expiration_days, historical_pins,
    }, mode: mode_to_v2(v.mode))
}

fn defaults1() -> CustomerDefaults {
    let v = defaults3();
    narrow!(v => CustomerDefaults {
        pin_mode, sms_direction, sms_mode, enable_global_services, user_can_change_phone,
        keep_phone_synchronized, disabled_behavior, voice_call_language, sms_text_language,
        user_can_change_pin, minimum_pin_length, prevent_weak_pins, pin_expiration_days,
        historical_pins,
    }, mode: mode_to_v1(v.mode))
}

/// One change to a user's settings, whatever the operation that asks it (no `Debug`: it may
/// carry a PIN, an OATH secret or a static token).
pub(crate) enum Change {
    /// `ChangePhone`: the phone and the backup phone.
    Phone(UserPhone),
    /// `ChangePin`: `None` when the request has no `userPin` (or no `Pin` in it).
    Pin(Option<UserPin>),
    /// `ChangeMode`, `ChangeMode_2` (normalised to the newest mode).
    Mode(Mode3),
    /// `ChangePinMode`.
    PinMode(PinMode2),
    /// `ChangeSmsMode`.
    SmsMode(SmsDirection, SmsMode),
    /// `ChangePhoneAppMode`.
    PhoneAppMode(PhoneAppMode),
    /// `ChangeLanguage`.
    Language(UserLanguage),
    /// `ChangeUserInformation`.
    Information(UserInformation),
    /// `ChangeOathToken`: an empty secret removes the token.
    OathToken {
        secret: String,
        code: String,
        step: i32,
    },
    /// `ChangeStaticToken`: empty removes it.
    StaticToken(String),
    /// `Enable`, `Disable`.
    Enabled(bool),
    /// `DisabledBehavior`.
    DisabledBehavior(AuthResult),
}

impl Change {
    /// Applies the change to `u`, or refuses it with the `Error` to send (nothing changed).
    fn apply(self, u: &mut UserRecord) -> Result<(), Error> {
        match self {
            Change::Phone(p) => {
                u.phone = super::users::phone(&p.country_code, &p.phone, &p.extension);
                u.backup_phone = super::users::phone(
                    &p.backup_country_code,
                    &p.backup_phone,
                    &p.backup_extension,
                );
            }
            Change::Pin(user_pin) => change_pin(u, user_pin)?,
            Change::Mode(mode) => u.mode = mode,
            Change::PinMode(pin_mode) => u.pin_mode = pin_mode,
            Change::SmsMode(direction, mode) => {
                u.sms_direction = direction;
                u.sms_mode = mode;
            }
            Change::PhoneAppMode(mode) => u.phone_app_mode = mode,
            Change::Language(l) => {
                u.voice_call_language = s(&l.voice_call_language);
                u.sms_text_language = s(&l.sms_text_language);
                u.phone_app_language = s(&l.phone_app_language);
                u.oath_token_language = s(&l.oath_token_language);
            }
            Change::Information(i) => {
                u.first_name = s(&i.first_name);
                u.last_name = s(&i.last_name);
                u.email = s(&i.email_address);
                u.user_group = s(&i.user_group);
            }
            Change::OathToken { secret, code, step } => change_oath_token(u, &secret, &code, step)?,
            Change::StaticToken(token) => u.static_token = (!token.is_empty()).then_some(token),
            Change::Enabled(enabled) => u.enabled = enabled,
            Change::DisabledBehavior(behavior) => u.disabled_behavior = behavior,
        }
        Ok(())
    }
}

/// `ChangePin`: a missing userPin (or Pin inside it) is an error that changes nothing: it used to
/// remove the PIN (issue #17, item 13). An explicit empty Pin still removes it.
fn change_pin(u: &mut UserRecord, user_pin: Option<UserPin>) -> Result<(), Error> {
    let Some(p) = user_pin.filter(|p| p.pin.is_some()) else {
        return Err(ErrorCode::InvalidInput
            .with("ChangePin needs userPin with its Pin (empty to remove the PIN)."));
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
}

/// `ChangeOathToken`: an empty secret removes the token; otherwise the token is enrolled only
/// when the code proves the secret is the token's.
fn change_oath_token(u: &mut UserRecord, secret: &str, code: &str, step: i32) -> Result<(), Error> {
    if secret.trim().is_empty() {
        u.oath_secret = None;
        return Ok(());
    }
    let key = super::totp::base32_decode(secret)
        .ok_or_else(|| ErrorCode::InvalidInput.with("The OATH secret key is not base32."))?;
    if super::totp::verify(&key, code, now_unix(), i64::from(step)).is_none() {
        return Err(ErrorCode::Denied.with("The OATH code does not match the secret key."));
    }
    u.oath_secret = Some(secret.trim().to_string());
    u.oath_time_interval = step;
    Ok(())
}

/// The semantic calls of the settings families (no `Debug`: a [`Change`] may carry secrets).
pub(crate) enum SettingsCall {
    /// `GetUserSettings*`: one look-up, shaped into each generation's settings type.
    Get(Option<String>),
    /// `Change*`, `Enable`, `Disable`, `DisabledBehavior`.
    Change {
        username: Option<String>,
        actor: Option<String>,
        change: Change,
    },
    /// `GetCustomerDefaults*`.
    CustomerDefaults,
    /// `GetFeatures`.
    Features,
}

/// Request `$r` as [`SettingsCall::Change`] making change `$change`.
macro_rules! change {
    ($r:ident, $change:expr) => {
        SettingsCall::Change {
            change: $change,
            username: $r.username,
            actor: $r.modify_username,
        }
    };
}

impl TryFrom<Request> for SettingsCall {
    type Error = Request;

    /// The settings families' classification; any other request is handed back.
    fn try_from(request: Request) -> Result<Self, Request> {
        use Request as R;
        Ok(match request {
            R::GetUserSettings(r) => Self::Get(r.username),
            R::GetUserSettings2(r) => Self::Get(r.username),
            R::GetUserSettings_2(r) => Self::Get(r.username),
            R::GetUserSettings_3(r) => Self::Get(r.username),
            R::GetUserSettingsMaster(r) => Self::Get(r.username),
            R::GetUserSettingsMaster_2(r) => Self::Get(r.username),
            R::ChangePhone(r) => change!(r, Change::Phone(r.user_phone.unwrap_or_default())),
            R::ChangePin(r) => change!(r, Change::Pin(r.user_pin)),
            R::ChangeMode(r) => change!(r, Change::Mode(mode_from_v2(r.mode))),
            R::ChangeMode_2(r) => change!(r, Change::Mode(r.mode)),
            R::ChangePinMode(r) => change!(r, Change::PinMode(r.pin_mode)),
            R::ChangeSmsMode(r) => change!(r, Change::SmsMode(r.sms_direction, r.sms_mode)),
            R::ChangePhoneAppMode(r) => change!(r, Change::PhoneAppMode(r.phone_app_mode)),
            R::ChangeLanguage(r) => {
                change!(r, Change::Language(r.user_language.unwrap_or_default()))
            }
            R::ChangeUserInformation(r) => {
                change!(
                    r,
                    Change::Information(r.user_information.unwrap_or_default())
                )
            }
            R::ChangeOathToken(r) => change!(
                r,
                Change::OathToken {
                    secret: s(&r.secret_key),
                    code: s(&r.code),
                    step: if r.time_interval > 0 {
                        r.time_interval
                    } else {
                        30
                    },
                }
            ),
            R::ChangeStaticToken(r) => change!(r, Change::StaticToken(s(&r.static_token))),
            R::Enable(r) => change!(r, Change::Enabled(true)),
            R::Disable(r) => change!(r, Change::Enabled(false)),
            R::DisabledBehavior(r) => change!(r, Change::DisabledBehavior(r.disabled_behavior)),
            R::GetCustomerDefaults(_)
            | R::GetCustomerDefaults2(_)
            | R::GetCustomerDefaults_2(_)
            | R::GetCustomerDefaults_3(_) => Self::CustomerDefaults,
            R::GetFeatures(_) => Self::Features,
            other => return Err(other),
        })
    }
}

/// A user's settings as the response of `op`.
fn user_settings(op: Operation, u: &UserRecord) -> Response {
    respond!(op,
        [GetUserSettings] => |r| {
            r.result = true;
            r.user_settings = Some(settings1(u));
            r.error = Error::ok();
        },
        [GetUserSettings2, GetUserSettings_2, GetUserSettingsMaster] => |r| {
            r.result = true;
            r.user_settings = Some(settings2(u));
            r.error = Error::ok();
        },
        [GetUserSettings_3, GetUserSettingsMaster_2] => |r| {
            r.result = true;
            r.user_settings = Some(settings3(u));
            r.error = Error::ok();
        },
    )
}

/// The customer defaults as the response of `op`.
fn customer_defaults(op: Operation) -> Response {
    respond!(op,
        [GetCustomerDefaults] => |r| {
            r.result = true;
            r.customer_defaults = Some(defaults1());
            r.error = Error::ok();
        },
        [GetCustomerDefaults2, GetCustomerDefaults_2] => |r| {
            r.result = true;
            r.customer_defaults = Some(defaults2());
            r.error = Error::ok();
        },
        [GetCustomerDefaults_3] => |r| {
            r.result = true;
            r.customer_defaults = Some(defaults3());
            r.error = Error::ok();
        },
    )
}

/// `GetFeatures`: true only for what pfgate actually does.
fn features() -> Response {
    Response::GetFeatures(crate::pfwssdk::response::GetFeatures {
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
    })
}

impl Engine {
    /// One settings call, decided once and shaped for `op`.
    pub(super) async fn settings_call(
        &self,
        ctx: &CallContext,
        op: Operation,
        call: SettingsCall,
    ) -> Response {
        match call {
            SettingsCall::Get(username) => match self.load(&username).await {
                Ok(u) => user_settings(op, &u),
                Err(e) => status(op, e),
            },
            SettingsCall::Change {
                username,
                actor,
                change,
            } => status(
                op,
                self.modify(ctx, op, &username, &actor, |u| change.apply(u))
                    .await,
            ),
            SettingsCall::CustomerDefaults => customer_defaults(op),
            SettingsCall::Features => features(),
        }
    }

    /// Loads the user, applies `change`, stores it, audits. Returns the `Error` to send.
    pub(super) async fn modify(
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
}

/// The argon2id hash of `pin`; a failure to hash fails secure as Error 505.
pub(super) fn hash_pin(pin: &str) -> Result<String, Error> {
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
