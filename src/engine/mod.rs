//! MFA Server semantics behind the SDK: who the user is, whether to call, and what to answer.
//!
//! The engine speaks only typed requests and responses ([`crate::pfwssdk`]); it knows nothing of
//! SOAP or HTTP. It fails secure: anything it does not know how to decide ends in "not
//! authenticated", and an operation pfgate does not implement answers `false` with an `Error` naming
//! it (never a fault, so callers take their normal error path).
//!
//! This version runs on the users-file [`directory`] with a scripted provider (each user's or
//! number's `outcome`): enough for demo mode and for callers to integrate against.

pub mod directory;

use std::net::IpAddr;

use rand::RngCore;

use crate::config::EngineSettings;
use crate::pfwssdk::codes::{CallCode, ErrorCode};
use crate::pfwssdk::{
    response as rs, AuthResult, CallResult, Error, Mode, Mode2, Mode3, Operation, Request,
    Response, UserPhone, UserSettings, UserSettings2, UserSettings3,
};
use directory::{Directory, Outcome, User};

/// Who is calling, as far as the transport knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The caller's address (the forwarded one when the peer is a trusted proxy).
    pub caller_ip: IpAddr,
    /// Authenticated caller identity, or `anonymous`.
    pub caller: String,
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    directory: Directory,
    settings: EngineSettings,
}

/// The result of one second-factor decision, before it is put into a response.
#[derive(Debug, Clone, PartialEq)]
struct AuthDecision {
    success: bool,
    call_result: CallResult,
    error: Error,
    request_id: Option<String>,
}

impl AuthDecision {
    fn approved(code: CallCode) -> Self {
        Self {
            success: true,
            call_result: code.call_result(),
            error: Error::ok(),
            request_id: Some(new_request_id()),
        }
    }
    fn denied(code: CallCode) -> Self {
        Self {
            success: false,
            call_result: code.call_result(),
            error: ErrorCode::Denied.error(),
            request_id: Some(new_request_id()),
        }
    }
}

/// A new `authenticationRequestId`: 32 upper-case hex characters from the OS RNG.
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn success_code(mode: Mode3) -> CallCode {
    match mode {
        Mode3::SmsText => CallCode::TextMessageAuthenticated,
        Mode3::PhoneApp => CallCode::MobileAppAuthenticated,
        Mode3::OathToken => CallCode::OathCodeVerified,
        _ => CallCode::NoPinEntered,
    }
}

fn scripted(outcome: Outcome, mode: Mode3) -> AuthDecision {
    match outcome {
        Outcome::Approve => AuthDecision::approved(success_code(mode)),
        Outcome::NoAnswer => AuthDecision::denied(CallCode::CallTimedOut),
        Outcome::HangUp => AuthDecision::denied(CallCode::UserHungUp),
    }
}

impl Engine {
    /// An engine over `directory`.
    pub fn new(directory: Directory, settings: EngineSettings) -> Self {
        Self {
            directory,
            settings,
        }
    }

    /// The engine's settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// True when everything the engine depends on is reachable (`TestMasterConnection`).
    pub fn healthy(&self) -> bool {
        true
    }

    /// Answers one request.
    pub async fn handle(&self, _ctx: &CallContext, request: Request) -> Response {
        match request {
            Request::TestSecurity(_) => Response::TestSecurity(rs::TestSecurity {
                result: Some("secure".into()),
            }),
            Request::TestMasterConnection(_) => {
                let healthy = self.healthy();
                Response::TestMasterConnection(rs::TestMasterConnection {
                    result: healthy,
                    error: if healthy {
                        Error::ok()
                    } else {
                        Error::new(
                            ErrorCode::NotSupported.code(),
                            "A dependency is unavailable.",
                        )
                    },
                })
            }
            // The meaning of this string is not public (PROTOCOL.md Q11); pfgate answers "true"
            // or "false" for the same health check as TestMasterConnection.
            Request::TestMasterConnection_2(_) => {
                Response::TestMasterConnection_2(rs::TestMasterConnection_2 {
                    result: Some(self.healthy().to_string()),
                })
            }
            Request::PfAuthUser(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUser(rs::PfAuthUser {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUser2(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUser2(rs::PfAuthUser2 {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUser3(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUser3(rs::PfAuthUser3 {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUser_3(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUser_3(rs::PfAuthUser_3 {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUser_4(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUser_4(rs::PfAuthUser_4 {
                    result: d.success,
                    call_result: d.call_result,
                    authentication_request_id: d.request_id,
                    error: d.error,
                })
            }
            Request::PfAuthUserMaster(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUserMaster(rs::PfAuthUserMaster {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUserMaster2(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUserMaster2(rs::PfAuthUserMaster2 {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUserMaster_2(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUserMaster_2(rs::PfAuthUserMaster_2 {
                    result: d.success,
                    call_result: d.call_result,
                    error: d.error,
                })
            }
            Request::PfAuthUserMaster_3(r) => {
                let d = self.auth_user(r.username.as_deref(), r.require_user_match);
                Response::PfAuthUserMaster_3(rs::PfAuthUserMaster_3 {
                    result: d.success,
                    call_result: d.call_result,
                    authentication_request_id: d.request_id,
                    error: d.error,
                })
            }
            Request::PfAuthUser_5(r) => {
                let d = self.auth_phone(r.mode, r.phone_number.as_deref());
                Response::PfAuthUser_5(rs::PfAuthUser_5 {
                    result: d.success,
                    call_result: d.call_result,
                    authentication_request_id: d.request_id,
                    error: d.error,
                })
            }
            Request::PfAuthUserMaster_4(r) => {
                let d = self.auth_phone(r.mode, r.phone_number.as_deref());
                Response::PfAuthUserMaster_4(rs::PfAuthUserMaster_4 {
                    result: d.success,
                    call_result: d.call_result,
                    authentication_request_id: d.request_id,
                    error: d.error,
                })
            }
            Request::UserExists(r) => {
                let found = self.user(r.username.as_deref()).is_some();
                Response::UserExists(rs::UserExists {
                    result: found,
                    error: if found {
                        Error::ok()
                    } else {
                        ErrorCode::UserNotFound.error()
                    },
                })
            }
            Request::CanonicalizeUser(r) => match self.user(r.username.as_deref()) {
                Some(u) => Response::CanonicalizeUser(rs::CanonicalizeUser {
                    result: true,
                    canonical_username: Some(u.username.clone()),
                    error: Error::ok(),
                }),
                None => {
                    Response::failure(Operation::CanonicalizeUser, ErrorCode::UserNotFound.error())
                }
            },
            Request::GetPhone(r) => {
                self.with_user(Operation::GetPhone, r.username.as_deref(), |u| {
                    Response::GetPhone(rs::GetPhone {
                        result: true,
                        user_phone: Some(phone_of(u)),
                        error: Error::ok(),
                    })
                })
            }
            Request::GetUserSettings(r) => self.user_settings_v1(r.username.as_deref()),
            Request::GetUserSettings2(r) => {
                self.with_user(Operation::GetUserSettings2, r.username.as_deref(), |u| {
                    Response::GetUserSettings2(rs::GetUserSettings2 {
                        result: true,
                        user_settings: Some(settings2(u)),
                        error: Error::ok(),
                    })
                })
            }
            Request::GetUserSettings_2(r) => {
                self.with_user(Operation::GetUserSettings_2, r.username.as_deref(), |u| {
                    Response::GetUserSettings_2(rs::GetUserSettings_2 {
                        result: true,
                        user_settings: Some(settings2(u)),
                        error: Error::ok(),
                    })
                })
            }
            Request::GetUserSettingsMaster(r) => self.with_user(
                Operation::GetUserSettingsMaster,
                r.username.as_deref(),
                |u| {
                    Response::GetUserSettingsMaster(rs::GetUserSettingsMaster {
                        result: true,
                        user_settings: Some(settings2(u)),
                        error: Error::ok(),
                    })
                },
            ),
            Request::GetUserSettings_3(r) => {
                self.with_user(Operation::GetUserSettings_3, r.username.as_deref(), |u| {
                    Response::GetUserSettings_3(rs::GetUserSettings_3 {
                        result: true,
                        user_settings: Some(settings3(u)),
                        error: Error::ok(),
                    })
                })
            }
            Request::GetUserSettingsMaster_2(r) => self.with_user(
                Operation::GetUserSettingsMaster_2,
                r.username.as_deref(),
                |u| {
                    Response::GetUserSettingsMaster_2(rs::GetUserSettingsMaster_2 {
                        result: true,
                        user_settings: Some(settings3(u)),
                        error: Error::ok(),
                    })
                },
            ),
            Request::UserIsBlocked(r) => {
                self.with_user(Operation::UserIsBlocked, r.username.as_deref(), |u| {
                    Response::UserIsBlocked(rs::UserIsBlocked {
                        result: u.blocked,
                        error: Error::ok(),
                    })
                })
            }
            other => {
                let op = other.operation();
                Response::failure(op, ErrorCode::not_supported(op.name()))
            }
        }
    }

    fn user(&self, username: Option<&str>) -> Option<&User> {
        username.and_then(|u| self.directory.get(u.trim()))
    }

    fn with_user(
        &self,
        op: Operation,
        username: Option<&str>,
        f: impl FnOnce(&User) -> Response,
    ) -> Response {
        match self.user(username) {
            Some(u) => f(u),
            None => Response::failure(op, ErrorCode::UserNotFound.error()),
        }
    }

    fn user_settings_v1(&self, username: Option<&str>) -> Response {
        match self.user(username) {
            Some(u) => Response::GetUserSettings(rs::GetUserSettings {
                result: true,
                user_settings: Some(settings1(u)),
                error: Error::ok(),
            }),
            None => Response::failure(Operation::GetUserSettings, ErrorCode::UserNotFound.error()),
        }
    }

    /// Policy for operations that name a user: unknown, disabled, blocked, then the scripted call.
    fn auth_user(&self, username: Option<&str>, require_user_match: bool) -> AuthDecision {
        let Some(user) = self.user(username) else {
            if require_user_match {
                return AuthDecision {
                    success: false,
                    call_result: CallResult::new(0, ""),
                    error: ErrorCode::UserNotFound.error(),
                    request_id: None,
                };
            }
            // MFA Server's "user match" option off: users it does not know pass without a call.
            return AuthDecision::approved(CallCode::BypassedAuth);
        };
        if !user.enabled {
            return match user.disabled_behavior() {
                AuthResult::Succeed => AuthDecision::approved(CallCode::BypassedAuth),
                AuthResult::Fail => AuthDecision {
                    success: false,
                    call_result: CallResult::new(0, ""),
                    error: Error::new(
                        ErrorCode::Denied.code(),
                        "Multi-Factor Authentication denied.",
                    ),
                    request_id: None,
                },
            };
        }
        if user.blocked {
            return AuthDecision::denied(CallCode::UserBlocked);
        }
        scripted(user.outcome, user.mode())
    }

    /// Operations that carry the number to call: the phone rules decide.
    fn auth_phone(&self, mode: Mode3, number: Option<&str>) -> AuthDecision {
        let number = number.unwrap_or("");
        if !number.chars().any(|c| c.is_ascii_digit()) {
            return AuthDecision::denied(CallCode::InvalidPhoneNumber);
        }
        scripted(self.directory.phone_outcome(number), mode)
    }
}

fn phone_of(u: &User) -> UserPhone {
    UserPhone {
        country_code: Some(u.country_code.clone()),
        phone: Some(u.phone.clone()),
        extension: Some(u.extension.clone()),
        backup_country_code: Some(String::new()),
        backup_phone: Some(String::new()),
        backup_extension: Some(String::new()),
    }
}

fn settings3(u: &User) -> UserSettings3 {
    UserSettings3 {
        first_name: Some(u.first_name.clone()),
        last_name: Some(u.last_name.clone()),
        email_address: Some(u.email.clone()),
        user_group: Some(u.group.clone()),
        country_code: Some(u.country_code.clone()),
        phone: Some(u.phone.clone()),
        extension: Some(u.extension.clone()),
        backup_country_code: Some(String::new()),
        backup_phone: Some(String::new()),
        backup_extension: Some(String::new()),
        mode: u.mode(),
        pin_mode: crate::pfwssdk::PinMode2::Standard,
        sms_direction: crate::pfwssdk::SmsDirection::TwoWay,
        sms_mode: crate::pfwssdk::SmsMode::Otp,
        phone_app_mode: crate::pfwssdk::PhoneAppMode::Standard,
        enabled: u.enabled,
        disabled_behavior: u.disabled_behavior(),
        ..UserSettings3::default()
    }
}

fn mode2(m: Mode3) -> Mode2 {
    match m {
        Mode3::PhoneApp => Mode2::PhoneApp,
        Mode3::SmsText => Mode2::SmsText,
        Mode3::VoiceCall => Mode2::VoiceCall,
        Mode3::OathToken | Mode3::Invalid => Mode2::Invalid,
        Mode3::Unspecified => Mode2::Unspecified,
    }
}

fn settings2(u: &User) -> UserSettings2 {
    let s = settings3(u);
    UserSettings2 {
        first_name: s.first_name,
        last_name: s.last_name,
        email_address: s.email_address,
        user_group: s.user_group,
        country_code: s.country_code,
        phone: s.phone,
        extension: s.extension,
        backup_country_code: s.backup_country_code,
        backup_phone: s.backup_phone,
        backup_extension: s.backup_extension,
        mode: mode2(s.mode),
        pin_mode: s.pin_mode,
        sms_direction: s.sms_direction,
        sms_mode: s.sms_mode,
        phone_app_mode: s.phone_app_mode,
        enabled: s.enabled,
        disabled_behavior: s.disabled_behavior,
        ..UserSettings2::default()
    }
}

fn settings1(u: &User) -> UserSettings {
    let s = settings3(u);
    UserSettings {
        first_name: s.first_name,
        last_name: s.last_name,
        email_address: s.email_address,
        country_code: s.country_code,
        phone: s.phone,
        extension: s.extension,
        backup_country_code: s.backup_country_code,
        backup_phone: s.backup_phone,
        backup_extension: s.backup_extension,
        mode: if s.mode == Mode3::SmsText {
            Mode::SmsText
        } else {
            Mode::VoiceCall
        },
        pin_mode: s.pin_mode,
        sms_direction: s.sms_direction,
        sms_mode: s.sms_mode,
        enabled: s.enabled,
        disabled_behavior: s.disabled_behavior,
        ..UserSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_upper_hex_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        assert_ne!(a, b);
    }
}
