//! Users: look up, add, delete, rename, find, block and unblock (the directory's own operations;
//! a user's settings are [`super::settings`]).
//!
//! Each follows MFA Server's `Error` codes (docs/protocol.md §6.2): 10 not found, 101 duplicate
//! username, 109/110 PIN rules, 133/136 not blocked. Every change writes a `directory_change` audit
//! event naming the actor (`modifyUsername`, else the caller).
//!
//! What is never returned: PINs (only an argon2id hash is kept), OATH secrets and static tokens
//! (stored encrypted; settings report only whether they exist).

use std::time::Instant;

use super::settings::{check_pin, hash_pin, mode_from_v2};
use super::{now_unix, status, CallContext, Engine};
use crate::pfwssdk::codes::ErrorCode;
use crate::pfwssdk::{
    AddUserSettings, AddUserSettings2, AddUserSettings3, Error, Mode, Mode3, Operation, PinMode2,
    Request, Response, UserPhone, UserRow,
};
use crate::store::{Phone, StoreError, TextFilter, UserFilter, UserRecord};
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

pub(super) fn s(o: &Option<String>) -> String {
    o.clone().unwrap_or_default()
}

pub(super) fn phone(cc: &Option<String>, n: &Option<String>, e: &Option<String>) -> Phone {
    Phone {
        country_code: s(cc).trim().to_string(),
        number: s(n).trim().to_string(),
        extension: s(e).trim().to_string(),
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
pub(crate) struct NewUser {
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

/// The [`NewUser`] of `AddUserSettings*` `$a`: the fields every generation has, then
/// `$field: $value` for those that differ.
macro_rules! new_user {
    ($a:ident $(, $field:ident: $value:expr)* $(,)?) => {
        NewUser {
            phone: phone(&$a.country_code, &$a.phone, &$a.extension),
            backup: phone(&$a.backup_country_code, &$a.backup_phone, &$a.backup_extension),
            first: $a.first_name,
            last: $a.last_name,
            email: $a.email_address,
            pin_mode: $a.pin_mode,
            sms_direction: $a.sms_direction,
            sms_mode: $a.sms_mode,
            pin: $a.pin,
            enabled: $a.enabled,
            pin_change_required: $a.pin_change_required,
            $($field: $value,)*
        }
    };
}

impl From<AddUserSettings3> for NewUser {
    fn from(a: AddUserSettings3) -> Self {
        new_user!(a, group: a.user_group, mode: a.mode, phone_app_mode: a.phone_app_mode)
    }
}

impl From<AddUserSettings2> for NewUser {
    fn from(a: AddUserSettings2) -> Self {
        new_user!(a,
            group: a.user_group,
            mode: mode_from_v2(a.mode),
            phone_app_mode: a.phone_app_mode,
        )
    }
}

impl From<AddUserSettings> for NewUser {
    fn from(a: AddUserSettings) -> Self {
        new_user!(a,
            group: None,
            mode: if a.mode == Mode::SmsText {
                Mode3::SmsText
            } else {
                Mode3::VoiceCall
            },
            phone_app_mode: crate::pfwssdk::PhoneAppMode::Standard,
        )
    }
}

/// The canonical form of a username from a request ([`crate::core::username`]), or `Error` 504 naming
/// the character that makes it no name.
pub(super) fn canonical_name(username: &Option<String>) -> Result<String, Error> {
    crate::core::username::canonical(username.as_deref().unwrap_or(""))
        .map_err(|e| ErrorCode::InvalidInput.with(e.to_string()))
}

fn text(pattern: &Option<String>, case_sensitive: bool) -> TextFilter {
    TextFilter {
        pattern: s(pattern),
        case_sensitive,
    }
}

/// The semantic calls of the user families (no `Debug`: `Add` carries a PIN).
pub(crate) enum UserCall {
    /// `UserExists`, `CanonicalizeUser`, `GetPhone`, `GetUserDevices`: one look-up, shaped.
    LookUp(Option<String>),
    /// `AddUser*`: a new user, with the settings of any generation normalised to the newest.
    Add {
        username: Option<String>,
        actor: Option<String>,
        new: Option<NewUser>,
    },
    /// `DeleteUser`.
    Delete {
        username: Option<String>,
        actor: Option<String>,
    },
    /// `ChangeUsername`.
    Rename {
        old: Option<String>,
        new: Option<String>,
        actor: Option<String>,
    },
    /// `FindUsers*`: one filter; `nobody` when the request asks for tags (pfgate keeps none).
    Find {
        filter: UserFilter,
        limit: u32,
        nobody: bool,
    },
    /// `BlockUser`.
    Block {
        username: Option<String>,
        reason: Option<String>,
        actor: Option<String>,
    },
    /// `UnblockUser`.
    Unblock {
        username: Option<String>,
        actor: Option<String>,
    },
    /// `UserIsBlocked`.
    IsBlocked { username: Option<String> },
}

/// `AddUser*` request `$r` as [`UserCall::Add`].
macro_rules! add {
    ($r:ident) => {
        UserCall::Add {
            username: $r.username,
            actor: $r.modify_username,
            new: $r.add_user_settings.map(NewUser::from),
        }
    };
}

/// The [`UserFilter`] of `FindUsers*` request `$r`: the fields every generation has, then
/// `$field: $value` for those only newer ones have.
macro_rules! filter {
    ($r:ident $(, $field:ident: $value:expr)* $(,)?) => {
        UserFilter {
            username: text(&$r.username_filter, $r.username_case_sensitive),
            first_name: text(&$r.first_name_filter, $r.first_name_case_sensitive),
            last_name: text(&$r.last_name_filter, $r.last_name_case_sensitive),
            email: text(&$r.email_filter, $r.email_case_sensitive),
            phone: s(&$r.phone_filter),
            pin_mode: $r.pin_mode_specified.then_some($r.pin_mode_filter),
            enabled: $r.enabled_specified.then_some($r.enabled_filter),
            $($field: $value,)*
            ..UserFilter::default()
        }
    };
}

/// `FindUsers3` and newer: the user group and the mode, as `$mode` maps it to the newest.
macro_rules! filter3 {
    ($r:ident, $mode:expr) => {
        filter!($r,
            user_group: text(&$r.user_group_filter, $r.user_group_case_sensitive),
            mode: $r.mode_specified.then_some($mode($r.mode_filter)),
        )
    };
}

/// `FindUsers*` request `$r` as [`UserCall::Find`] with filter `$filter`.
macro_rules! find {
    ($r:ident, $filter:expr) => {
        UserCall::Find {
            filter: $filter,
            limit: $r.result_limit,
            nobody: false,
        }
    };
}

impl TryFrom<Request> for UserCall {
    type Error = Request;

    /// The user families' classification; any other request is handed back.
    #[allow(clippy::needless_update)] // `filter!` names every field for the newest generations
    fn try_from(request: Request) -> Result<Self, Request> {
        use Request as R;
        Ok(match request {
            R::UserExists(r) => Self::LookUp(r.username),
            R::CanonicalizeUser(r) => Self::LookUp(r.username),
            R::GetPhone(r) => Self::LookUp(r.username),
            R::GetUserDevices(r) => Self::LookUp(r.username),
            R::AddUser(r) => add!(r),
            R::AddUser2(r) => add!(r),
            R::AddUser_2(r) => add!(r),
            R::AddUser_3(r) => add!(r),
            R::DeleteUser(r) => Self::Delete {
                username: r.username,
                actor: r.modify_username,
            },
            R::ChangeUsername(r) => Self::Rename {
                old: r.old_username,
                new: r.new_username,
                actor: r.modify_username,
            },
            R::FindUsers(r) => find!(r, filter!(r)),
            R::FindUsers2(r) => find!(
                r,
                filter!(r, mode: r.mode_specified.then_some(mode_from_v2(r.mode_filter)))
            ),
            R::FindUsers3(r) => find!(r, filter3!(r, mode_from_v2)),
            R::FindUsers_3(r) => find!(r, filter3!(r, mode_from_v2)),
            // Tags are not kept by pfgate: a tag filter other than "all users" matches nobody
            // rather than everybody (fail closed for scripts that act on the result).
            R::FindUsers_4(r) => Self::Find {
                nobody: r.tag_ids.as_ref().is_some_and(|t| !t.is_empty())
                    && r.tag_match_type != crate::pfwssdk::TagMatchType::AllUsers,
                limit: r.result_limit,
                filter: filter3!(r, std::convert::identity),
            },
            R::BlockUser(r) => Self::Block {
                username: r.username,
                reason: r.reason,
                actor: r.modify_username,
            },
            R::UnblockUser(r) => Self::Unblock {
                username: r.username,
                actor: r.modify_username,
            },
            R::UserIsBlocked(r) => Self::IsBlocked {
                username: r.username,
            },
            other => return Err(other),
        })
    }
}

/// A found user as the response of look-up `op`.
fn found(op: Operation, u: UserRecord) -> Response {
    respond!(op,
        [UserExists] => |r| {
            r.result = true;
            r.error = Error::ok();
        },
        [CanonicalizeUser] => |r| {
            r.result = true;
            r.canonical_username = Some(u.username);
            r.error = Error::ok();
        },
        [GetPhone] => |r| {
            r.result = true;
            r.user_phone = Some(user_phone(&u));
            r.error = Error::ok();
        },
        // pfgate activates no Microsoft Authenticator devices: the list is always empty.
        [GetUserDevices] => |r| {
            r.result = true;
            r.user_devices = Some(Vec::new());
            r.error = Error::ok();
        },
    )
}

/// Found rows (and whether they are all) as the response of search `op`.
fn rows(op: Operation, rows: Vec<UserRow>, complete: bool) -> Response {
    respond!(op,
        [FindUsers, FindUsers2, FindUsers3, FindUsers_3, FindUsers_4] => |r| {
            r.result = true;
            r.user_rows = Some(rows);
            r.results_complete = complete;
            r.error = Error::ok();
        },
    )
}

impl Engine {
    /// One user call, decided once and shaped for `op`.
    pub(super) async fn users(&self, ctx: &CallContext, op: Operation, call: UserCall) -> Response {
        match call {
            UserCall::LookUp(username) => match self.load(&username).await {
                Ok(u) => found(op, u),
                Err(e) => status(op, e),
            },
            UserCall::Add {
                username,
                actor,
                new,
            } => status(op, self.add(ctx, op, &username, &actor, new).await),
            UserCall::Delete { username, actor } => {
                status(op, self.delete(ctx, op, &username, &actor).await)
            }
            UserCall::Rename { old, new, actor } => {
                status(op, self.rename(ctx, op, &old, &new, &actor).await)
            }
            UserCall::Find {
                filter,
                limit,
                nobody,
            } => {
                let found = if nobody {
                    Ok((Vec::new(), true))
                } else {
                    self.find(filter, limit).await
                };
                match found {
                    Ok((found, complete)) => rows(op, found, complete),
                    Err(e) => status(op, e),
                }
            }
            UserCall::Block {
                username,
                reason,
                actor,
            } => status(op, self.block(ctx, op, &username, &reason, &actor).await),
            UserCall::Unblock { username, actor } => {
                let started = Instant::now();
                let error = match self.load(&username).await {
                    Ok(u) => self.unblock(&u.username).await,
                    Err(e) => e,
                };
                self.audit_change(ctx, op, &s(&username), actor.as_deref(), started, &error);
                status(op, error)
            }
            UserCall::IsBlocked { username } => match self.load(&username).await {
                Ok(u) => status(op, self.is_blocked(&u.username).await),
                Err(e) => status(op, e),
            },
        }
    }

    async fn delete(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        actor: &Option<String>,
    ) -> Error {
        let started = Instant::now();
        let error = match canonical_name(username) {
            Err(e) => e,
            Ok(name) => match self.store.delete_user(&name).await {
                Ok(true) => Error::ok(),
                Ok(false) => ErrorCode::UserNotFound.error(),
                Err(e) => self.store_error(&e),
            },
        };
        self.audit_change(ctx, op, &s(username), actor.as_deref(), started, &error);
        error
    }

    async fn rename(
        &self,
        ctx: &CallContext,
        op: Operation,
        old_username: &Option<String>,
        new_username: &Option<String>,
        actor: &Option<String>,
    ) -> Error {
        let started = Instant::now();
        let names =
            canonical_name(old_username).and_then(|o| Ok((o, canonical_name(new_username)?)));
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
        self.audit_change(ctx, op, &s(old_username), actor.as_deref(), started, &error);
        error
    }

    async fn block(
        &self,
        ctx: &CallContext,
        op: Operation,
        username: &Option<String>,
        reason: &Option<String>,
        actor: &Option<String>,
    ) -> Error {
        let started = Instant::now();
        let error = match self.load(username).await {
            Ok(u) => match self
                .store
                .block_user(&u.username, &s(reason), &s(actor))
                .await
            {
                Ok(_) => Error::ok(),
                Err(e) => self.store_error(&e),
            },
            Err(e) => e,
        };
        self.audit_change(ctx, op, &s(username), actor.as_deref(), started, &error);
        error
    }

    pub(super) fn store_error(&self, e: &StoreError) -> Error {
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

    pub(super) fn audit_change(
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

    pub(super) async fn load(&self, username: &Option<String>) -> Result<UserRecord, Error> {
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
}
