//! The second-factor decision: policy, the in-flight table and the deadline.
//!
//! Who may authenticate at all is decided first, in one place for every operation
//! ([`super::policy`]: invalid name, unknown, blocked, locked out, disabled). Then, for a user who
//! may: a valid one-time bypass (consumed; CallResult 7), an OATH-mode user (a pending transaction
//! for `ValidateOathCode`), a one-way SMS user (a passcode for `ValidatePasscode`), otherwise one
//! provider call.
//!
//! A retry of an authentication while its call is in flight places no second call: it waits for
//! the first one's outcome (the retry rule NPS-extension and MIM users rely on). A retry is the
//! same user (any case) and number asked by the same caller principal, with the same application
//! name and initiating address ([`CallKey`]); anyone else asking for that user meanwhile gets a
//! call of its own, never another caller's approval or request id (issue #17 item 3). The call
//! runs in its own task, so a caller that goes away does not cancel it for the others.
//!
//! The rule holds across instances sharing a store (`docs/ha.md`), in two levels. In the process,
//! the in-flight table lets the first caller lead and the others wait on a channel, at no cost.
//! The leader then claims the call in the store ([`Store::claim_call`], one atomic insert): the
//! instance whose claim wins places the call, renews the claim's lease while it runs
//! ([`CLAIM_LEASE_SECS`]) and writes its ending to the store; a leader whose claim lost polls the
//! store for that ending instead of calling (short, growing pauses, within the deadline), and takes
//! the call over when the owner's lease lapses (the owner was killed or cut from the database).
//! Polling rather than `LISTEN`/`NOTIFY` keeps this the same on every backend and needs no
//! connection held open per wait; such joins are rare (a retry while the phone rings), and a pause
//! of at most [`MAX_POLL_PAUSE`] is small against a phone call. A store that cannot be
//! reached while claiming fails the authentication secure (CallResult 152), never places an
//! unclaimed call.
//!
//! Every authentication has a deadline (`auth_timeout`, below the callers' 100 s HTTP timeout); when
//! it passes the answer is CallResult 11 "Call Timed Out", never a dropped connection.
//!
//! `PfAuthUser_5`/`PfAuthUserMaster_4` carry the number to call. For them an unknown user (only
//! under `unknown_users = "caller"`) with `requireUserMatch=false` still gets the call placed to that
//! number: MIM names its own service account there and the number is what must be verified, so
//! passing without a call would let any caller skip MFA. With `call_only_stored_numbers` a number
//! other than the user's own is refused (`docs/security.md`, "Decisions").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::phone::E164;
use super::policy::{Refusal, Standing};
use super::{now_unix, CallContext, Engine};
use crate::core::username::UsernameError;
use crate::pfwssdk::codes::{CallCode, ErrorCode};
use crate::pfwssdk::{CallResult, Error, Mode3};
use crate::providers::{AuthAttempt, Provider, ProviderErrorKind, Verdict};
use crate::store::{
    CallClaim, CallKey, CallState, Store, StoreError, Transaction, TransactionKind, UserRecord,
};
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

/// The lease of a claim in the store (seconds): its owner renews it every [`CLAIM_RENEW_EVERY`]
/// while the call runs, so a claim whose owner was killed or cut from the database lapses within
/// this time, and an authentication waiting on it (on any instance) takes the call over with a
/// fresh one instead of answering "timed out" at its own deadline (issue #23 item 5). Long enough
/// for two renewals to fail (each store operation is bounded by 5 s) before a live owner's call is
/// taken over; short against the 60 s deadline.
pub(crate) const CLAIM_LEASE_SECS: i64 = 10;

/// How often the owner of a claim renews its lease.
const CLAIM_RENEW_EVERY: Duration = Duration::from_secs(3);

/// What an ended call's row says when it ended by the deadline (also what versions before the
/// lease wrote for a claim given up, which waiters likewise answer as "timed out").
const DEADLINE: &str = "deadline";

/// How long a call's ending stays in the store for the instances waiting on it (seconds).
const OUTCOME_KEEP_SECS: i64 = 60;

/// The first and the longest pause between two reads of a call placed by another instance.
const FIRST_POLL_PAUSE: Duration = Duration::from_millis(10);
const MAX_POLL_PAUSE: Duration = Duration::from_millis(200);

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthInput<'a> {
    pub operation: &'a str,
    pub username: Option<&'a str>,
    pub require_user_match: bool,
    pub application_name: Option<&'a str>,
    pub initiating_ip: Option<&'a str>,
    /// Number given in the call (`PfAuthUser_5`): (country code, number, extension).
    pub phone: Option<(&'a str, &'a str, &'a str)>,
    /// Mode sent in the call (`PfAuthUser_5`); `None` when the caller left it out.
    pub mode: Option<Mode3>,
}

/// The answer before it is put into a response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuthDecision {
    pub success: bool,
    pub call_result: CallResult,
    pub error: Error,
    pub request_id: Option<String>,
}

impl AuthDecision {
    fn approved(code: CallCode, request_id: String) -> Self {
        Self {
            success: true,
            call_result: code.call_result(),
            error: Error::ok(),
            request_id: Some(request_id),
        }
    }
    /// A second step is under way (an OATH code or a passcode awaited): `false` with no error, and
    /// the id that completes it.
    fn pending(code: CallCode, request_id: String) -> Self {
        Self {
            success: false,
            call_result: code.call_result(),
            error: Error::ok(),
            request_id: Some(request_id),
        }
    }
    fn denied(code: CallCode, request_id: Option<String>) -> Self {
        Self {
            success: false,
            call_result: code.call_result(),
            error: ErrorCode::Denied.error(),
            request_id,
        }
    }
    fn error(error: ErrorCode, call: Option<CallCode>) -> Self {
        Self {
            success: false,
            call_result: call
                .map(CallCode::call_result)
                .unwrap_or_else(|| CallResult::new(0, "")),
            error: error.error(),
            request_id: None,
        }
    }
}

/// How one shared provider call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Verdict(Verdict),
    Deadline,
    /// The store could not be asked who places the call: nobody did.
    StoreUnavailable,
}

impl Ending {
    /// The text the store keeps for instances waiting on this call.
    fn encode(&self) -> String {
        match self {
            Ending::Verdict(Verdict::Approved) => "approved".into(),
            Ending::Verdict(Verdict::NotAnswered) => "not_answered".into(),
            Ending::Verdict(Verdict::HungUp) => "hung_up".into(),
            // Waiting instances need only the answer (150); the reason was logged here.
            Ending::Verdict(Verdict::Denied | Verdict::Refused(_)) => "denied".into(),
            Ending::Verdict(Verdict::Bypassed(reason)) => format!("bypassed:{reason}"),
            Ending::Verdict(Verdict::AppApproved) => "app_approved".into(),
            Ending::Verdict(Verdict::FraudReported) => "fraud_reported".into(),
            Ending::Verdict(Verdict::Failed(reason)) => format!("failed:{reason}"),
            Ending::Verdict(Verdict::FailedOpen(reason)) => format!("failed_open:{reason}"),
            Ending::Deadline => DEADLINE.into(),
            Ending::StoreUnavailable => "store_unavailable".into(),
        }
    }

    /// The ending another instance wrote ([`Ending::encode`]); anything else is a failure, never
    /// an approval.
    fn decode(text: &str) -> Ending {
        match text {
            "approved" => Ending::Verdict(Verdict::Approved),
            "not_answered" => Ending::Verdict(Verdict::NotAnswered),
            "hung_up" => Ending::Verdict(Verdict::HungUp),
            "denied" => Ending::Verdict(Verdict::Denied),
            "app_approved" => Ending::Verdict(Verdict::AppApproved),
            "fraud_reported" => Ending::Verdict(Verdict::FraudReported),
            "store_unavailable" => Ending::StoreUnavailable,
            DEADLINE => Ending::Deadline,
            t => match (
                t.strip_prefix("failed:"),
                t.strip_prefix("failed_open:"),
                t.strip_prefix("bypassed:"),
            ) {
                (Some(reason), _, _) => {
                    Ending::Verdict(Verdict::failed(ProviderErrorKind::Relayed, reason))
                }
                (_, Some(reason), _) => Ending::Verdict(Verdict::FailedOpen(reason.into())),
                (_, _, Some(reason)) => Ending::Verdict(Verdict::Bypassed(reason.into())),
                _ => Ending::Verdict(Verdict::failed(
                    ProviderErrorKind::Relayed,
                    "another instance recorded an ending this version does not know",
                )),
            },
        }
    }
}

/// Key of the in-flight table: who asks, for which user and number ([`CallKey`]): only a true
/// retry joins a call in flight.
pub(crate) type InflightKey = CallKey;

/// The in-flight key of an attempt. The username is the one the engine decided on (the canonical
/// form of issue #17 item 5, once the policy produces it, arrives here unchanged).
fn inflight_key(attempt: &AuthAttempt) -> InflightKey {
    CallKey::new(
        &attempt.username,
        attempt.phone.e164(),
        &attempt.caller,
        &attempt.application_name,
        &attempt.initiating_ip,
    )
}

/// A call in flight: the request id of its local leader and the channel on which the ending will
/// be published, with the request id of the call that was placed (another instance's when the
/// leader joined one there).
type InflightCall = (String, watch::Receiver<Option<(String, Ending)>>);

/// Calls in flight.
#[derive(Debug)]
pub(crate) struct Inflight {
    /// Keyed by a shared key: the call's task removes its entry with the same `Arc` instead of a
    /// second copy of five strings (and a shared store's claim uses it too).
    map: Mutex<HashMap<Arc<InflightKey>, InflightCall>>,
    /// Set when a stop's grace period has ended: every caller still waiting is answered "timed
    /// out" at once instead of having its connection cut (issue #8). Lives here, beside the calls,
    /// because a reload builds a new engine that shares this registry.
    abandon: watch::Sender<bool>,
}

impl Default for Inflight {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
            abandon: watch::Sender::new(false),
        }
    }
}

impl Inflight {
    /// Number of calls in flight now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Ends every wait, now and later, as "timed out".
    pub fn abandon(&self) {
        self.abandon.send_replace(true);
    }
}

fn success_code(mode: Mode3) -> CallCode {
    match mode {
        Mode3::SmsText => CallCode::TextMessageAuthenticated,
        Mode3::PhoneApp => CallCode::MobileAppAuthenticated,
        Mode3::OathToken => CallCode::OathCodeVerified,
        _ => CallCode::NoPinEntered,
    }
}

/// The number the caller gave (`PfAuthUser_5`/`PfAuthUserMaster_4`), unless its phone number is
/// empty: then the user's own number is used, as for the other operations.
fn caller_number<'a>(input: &AuthInput<'a>) -> Option<(&'a str, &'a str, &'a str)> {
    input
        .phone
        .filter(|(_, number, _)| !number.trim().is_empty())
}

/// The mode of this authentication. `own` is the user's mode (voice for an unknown user).
///
/// A mode the caller sent is honoured, `oathToken` included (with a number: the call is placed in
/// that mode and an approval reports 23). Only when `mode` was not sent — or sent as `invalid` /
/// `unspecified`, which name no mode — does pfgate choose: a number the caller gave is called by
/// voice, and without one the user's own mode applies. So the CallResult always names what was
/// done (issue #17, item 15: an omitted mode with a number reported 23 "OATH Code Verified" for a
/// voice call, because the decoder filled in `oathToken`, the enumeration's first value; it now
/// says whether `mode` was sent).
fn effective_mode(input: &AuthInput<'_>, own: Mode3) -> Mode3 {
    let names_a_mode = |m: &Mode3| !matches!(m, Mode3::Invalid | Mode3::Unspecified);
    match (input.mode.filter(names_a_mode), caller_number(input)) {
        (Some(sent), _) => sent,
        (None, Some(_)) => Mode3::VoiceCall,
        (None, None) => own,
    }
}

/// The answer when `call_only_stored_numbers` refuses the number the caller gave.
fn number_refused() -> AuthDecision {
    AuthDecision {
        success: false,
        call_result: CallCode::InvalidPhoneNumber.call_result(),
        error: ErrorCode::Denied.with(
            "Multi-Factor Authentication denied: the number given is not one pfgate holds for \
             this user (engine.call_only_stored_numbers).",
        ),
        request_id: None,
    }
}

impl Engine {
    /// The whole second-factor decision for one request, with its audit event.
    ///
    /// Boxed, because this future is what every waiting caller holds for up to a minute: awaited
    /// inline, its state would be laid out inside `Engine::handle`'s (with room for the largest
    /// operation, and the compiler keeps a second copy of an awaited future's state in the
    /// caller's), which doubled the memory of each waiting call. Measured with 10,000 callers
    /// waiting: BENCHMARKS.md, "Thousands of people on the phone at once".
    pub(crate) fn authenticate<'a>(
        &'a self,
        ctx: &'a CallContext,
        input: AuthInput<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = AuthDecision> + Send + 'a>> {
        Box::pin(self.authenticate_inline(ctx, input))
    }

    async fn authenticate_inline(&self, ctx: &CallContext, input: AuthInput<'_>) -> AuthDecision {
        let started = Instant::now();
        // Counted for the whole decision, provider wait included; the guard also ends the count
        // when the caller goes away and the future is dropped.
        let _inflight = crate::telemetry::metrics::global().auth_started();
        let raw = input.username.unwrap_or("");
        // Canonicalised once: the decision uses it, and the audit event shows it (what
        // `username::for_log` would compute again).
        let name = crate::core::username::canonical(raw);
        let (decision, phone, provider) = self.decide(ctx, &input, name.as_deref()).await;
        let shown = name.unwrap_or_else(|_| raw.escape_default().to_string());
        let kind = if decision.success {
            AuditKind::SecondFactorCompleted
        } else if decision.call_result.code == CallCode::OathCodePending.code()
            || decision.call_result.code == CallCode::TextMessageSent.code()
        {
            AuditKind::SecondFactorPending
        } else {
            AuditKind::SecondFactorFailed
        };
        audit::emit(
            kind,
            &AuditEvent {
                operation: input.operation,
                caller: &ctx.caller,
                username: &shown,
                phone,
                provider,
                call_result: Some(decision.call_result.code),
                error: decision.error.code,
                latency: started.elapsed(),
                request_id: decision.request_id.as_deref(),
                // Say why in words: "152" alone sends an operator to the code table.
                reason: (decision.error.code == ErrorCode::StoreUnavailable.code())
                    .then_some("store unavailable: authentication failed secure"),
            },
        );
        decision
    }

    async fn decide(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        name: Result<&str, &UsernameError>,
    ) -> (AuthDecision, Option<String>, Option<&str>) {
        let request_id = super::new_request_id();
        let standing = match self.standing_of(name).await {
            Standing::Active(standing) => standing,
            Standing::Unknown(name) => {
                return self.unknown_user(ctx, input, &name, request_id).await
            }
            Standing::DisabledPass => {
                return (
                    AuthDecision::approved(CallCode::BypassedAuth, request_id),
                    None,
                    None,
                )
            }
            Standing::Refused(refusal) => return (self.refused(&refusal), None, None),
        };
        // Consumed only when the standing saw one: consuming is a write, and decides atomically
        // (of concurrent requests one uses the bypass, the others go on with a call).
        // Kept boxed: this future's state is what every waiting caller holds.
        let user = &standing.user;
        if standing.bypass {
            match self.store.consume_bypass(&user.username, now_unix()).await {
                Ok(true) => {
                    return (
                        AuthDecision::approved(CallCode::BypassedAuth, request_id),
                        None,
                        None,
                    )
                }
                Ok(false) => {}
                Err(e) => return (self.store_failure(&e), None, None),
            }
        }
        let given = caller_number(input);
        if given.is_some() && !self.may_call_number(input, Some(user)) {
            return (number_refused(), None, None);
        }
        let mode = effective_mode(input, user.mode);
        if mode == Mode3::OathToken && given.is_none() {
            return (
                self.pending_oath(ctx, &user.username, request_id).await,
                None,
                None,
            );
        }
        if mode == Mode3::SmsText
            && user.sms_direction == crate::pfwssdk::SmsDirection::OneWay
            && given.is_none()
        {
            return self.one_way_sms(ctx, input, user, request_id).await;
        }
        let stored = (
            user.phone.country_code.as_str(),
            user.phone.number.as_str(),
            user.phone.extension.as_str(),
        );
        let attempt = self.attempt(
            ctx,
            input,
            (
                &user.username,
                &user.user_group,
                user.external_id.as_deref(),
            ),
            Some(stored),
            mode,
            request_id,
        );
        // Dropped before the call: the call waits for a person, and a waiting caller keeps only
        // the attempt, not the user's record (issue #21, goal 4).
        drop(standing);
        match attempt {
            Ok(attempt) => self.call(ctx, input, attempt).await,
            Err(refused) => (refused, None, None),
        }
    }

    /// A user the store does not hold, under `unknown_users = "caller"`: MFA Server's "user match"
    /// option. `requireUserMatch` (or no name and no number) refuses; without a number the user
    /// passes without a call; with one (`PfAuthUser_5`) the number is called.
    async fn unknown_user(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        name: &str,
        request_id: String,
    ) -> (AuthDecision, Option<String>, Option<&str>) {
        if input.require_user_match || name.is_empty() && input.phone.is_none() {
            return (
                AuthDecision::error(ErrorCode::UserNotFound, None),
                None,
                None,
            );
        }
        if input.phone.is_none() {
            // MFA Server's "user match" option off: users it does not know pass without a call.
            return (
                AuthDecision::approved(CallCode::BypassedAuth, request_id),
                None,
                None,
            );
        }
        if !self.may_call_number(input, None) {
            return (number_refused(), None, None);
        }
        let mode = effective_mode(input, Mode3::VoiceCall);
        match self.attempt(ctx, input, (name, "", None), None, mode, request_id) {
            Ok(attempt) => self.call(ctx, input, attempt).await,
            Err(refused) => (refused, None, None),
        }
    }

    /// The answer to a refused [`Standing`](super::policy::Standing).
    fn refused(&self, refusal: &Refusal) -> AuthDecision {
        if let Refusal::Store(e) = refusal {
            return self.store_failure(e);
        }
        let error = refusal.error();
        AuthDecision {
            success: false,
            call_result: refusal
                .call_code()
                .map(CallCode::call_result)
                .unwrap_or_else(|| CallResult::new(0, "")),
            error,
            request_id: None,
        }
    }

    /// With `call_only_stored_numbers`, a number the caller gives must be one the store holds for
    /// the user (primary or backup, compared as E.164); an unknown user has none, so any is refused.
    /// Without it every number may be called (the SDK's contract, which MIM relies on).
    fn may_call_number(&self, input: &AuthInput<'_>, user: Option<&UserRecord>) -> bool {
        if !self.settings.call_only_stored_numbers {
            return true;
        }
        let Some((cc, number, ext)) = caller_number(input) else {
            return true;
        };
        let Some(user) = user else { return false };
        let dcc = &self.settings.default_country_code;
        let given = match E164::parse(cc, number, ext, dcc) {
            Ok(p) => p,
            Err(_) => return false,
        };
        [&user.phone, &user.backup_phone].iter().any(|p| {
            !p.number.trim().is_empty()
                && E164::parse(&p.country_code, &p.number, &p.extension, dcc)
                    .is_ok_and(|stored| stored.e164() == given.e164())
        })
    }

    /// A second step's transaction: `id` for `username`, started by principal `started_by`, open
    /// until the deadline (`auth_timeout`), with no code hash and no target.
    fn transaction(
        &self,
        id: &str,
        username: &str,
        kind: TransactionKind,
        started_by: &str,
    ) -> Transaction {
        Transaction {
            id: id.to_string(),
            username: username.to_string(),
            kind,
            code_hash: None,
            expires_at: now_unix() + self.settings.auth_timeout.as_secs() as i64,
            target: None,
            started_by: started_by.to_string(),
        }
    }

    fn store_failure(&self, e: &StoreError) -> AuthDecision {
        tracing::error!(target: "pfgate::engine", error = %e, "store failure: authentication fails secure");
        AuthDecision::error(
            ErrorCode::StoreUnavailable,
            Some(CallCode::StoreUnavailable),
        )
    }

    async fn pending_oath(
        &self,
        ctx: &CallContext,
        username: &str,
        request_id: String,
    ) -> AuthDecision {
        let tx = self.transaction(
            &request_id,
            username,
            TransactionKind::OathCode,
            &ctx.caller,
        );
        match self.store.put_transaction(&tx).await {
            Ok(()) => AuthDecision::pending(CallCode::OathCodePending, request_id),
            Err(e) => self.store_failure(&e),
        }
    }

    /// MFA Server's one-way SMS: send a six-digit passcode and leave a transaction for
    /// `ValidatePasscode`. Only a hash of the code is stored; a wrong guess spends the transaction.
    async fn one_way_sms(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        user: &UserRecord,
        request_id: String,
    ) -> (AuthDecision, Option<String>, Option<&str>) {
        let phone = match E164::parse(
            &user.phone.country_code,
            &user.phone.number,
            &user.phone.extension,
            &self.settings.default_country_code,
        ) {
            Ok(p) => p,
            Err(_) => {
                return (
                    AuthDecision::denied(CallCode::InvalidPhoneNumberFormat, None),
                    None,
                    None,
                )
            }
        };
        let code = super::new_passcode();
        let code_hash = match crate::store::secrets::hash_pin(&code) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(target: "pfgate::engine", error = %e, "hashing a passcode failed");
                return (
                    self.store_failure(&StoreError::unavailable(crate::store::Cause::Secrets(e))),
                    None,
                    None,
                );
            }
        };
        let tx = Transaction {
            code_hash: Some(code_hash),
            ..self.transaction(
                &request_id,
                &user.username,
                TransactionKind::SmsPasscode,
                &ctx.caller,
            )
        };
        if let Err(e) = self.store.put_transaction(&tx).await {
            return (self.store_failure(&e), None, None);
        }
        let attempt = AuthAttempt {
            request_id: request_id.clone(),
            username: user.username.clone(),
            user_group: user.user_group.clone(),
            caller: ctx.caller.clone(),
            phone: phone.clone(),
            mode: Mode3::SmsText,
            application_name: input.application_name.unwrap_or("").to_string(),
            initiating_ip: input.initiating_ip.unwrap_or("").to_string(),
            caller_ip: ctx.caller_ip,
            external_id: user.external_id.clone(),
            scripted: ctx.scripted,
        };
        let sent = tokio::time::timeout(
            self.settings.auth_timeout,
            self.provider.send_code(&attempt, &code),
        )
        .await;
        let decision = match sent {
            Ok(Verdict::Approved) => AuthDecision::pending(CallCode::TextMessageSent, request_id),
            Ok(other) => {
                tracing::warn!(target: "pfgate::engine", provider = self.provider.name(), verdict = ?other, "passcode not sent");
                let _ = self
                    .store
                    .take_transaction(&request_id, &user.username, &ctx.caller, now_unix())
                    .await;
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
            Err(_) => {
                let _ = self
                    .store
                    .take_transaction(&request_id, &user.username, &ctx.caller, now_unix())
                    .await;
                AuthDecision::denied(CallCode::CallTimedOut, Some(request_id))
            }
        };
        (decision, Some(phone.masked()), Some(self.provider.name()))
    }

    /// The provider call to place: the number given in the request, else the stored one, in
    /// E.164; an invalid number is the decision instead. `external_id` is the stored user's, for
    /// providers that match the IdP's identity with it.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        (username, user_group, external_id): (&str, &str, Option<&str>),
        stored: Option<(&str, &str, &str)>,
        mode: Mode3,
        request_id: String,
    ) -> Result<AuthAttempt, AuthDecision> {
        let (cc, number, ext) = caller_number(input).or(stored).unwrap_or_default();
        let fallback_cc = stored.map(|s| s.0).filter(|c| !c.is_empty());
        let cc = if cc.is_empty() {
            fallback_cc.unwrap_or("")
        } else {
            cc
        };
        let Ok(phone) = E164::parse(cc, number, ext, &self.settings.default_country_code) else {
            return Err(AuthDecision::denied(
                CallCode::InvalidPhoneNumberFormat,
                None,
            ));
        };
        Ok(AuthAttempt {
            request_id,
            username: username.to_string(),
            user_group: user_group.to_string(),
            caller: ctx.caller.clone(),
            phone,
            mode,
            application_name: input.application_name.unwrap_or("").to_string(),
            initiating_ip: input.initiating_ip.unwrap_or("").to_string(),
            caller_ip: ctx.caller_ip,
            external_id: external_id.map(str::to_string),
            scripted: ctx.scripted,
        })
    }

    /// Places the call of `attempt` (or joins the one in flight for the same person and number)
    /// and turns its ending into the decision, with the masked number and the provider's name for
    /// the audit event.
    async fn call(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        attempt: AuthAttempt,
    ) -> (AuthDecision, Option<String>, Option<&str>) {
        let masked = attempt.phone.masked();
        let mode = attempt.mode;
        // Providers that generate and check codes themselves (Twilio Verify) answer here; the
        // person completes with ValidatePasscode / ValidateOathCode.
        let deadline = self.settings.auth_timeout;
        let started = tokio::time::timeout(deadline, self.provider.start_verification(&attempt))
            .await
            .unwrap_or_else(|_| {
                Some((
                    String::new(),
                    Verdict::failed(ProviderErrorKind::Deadline, "deadline passed"),
                ))
            });
        if let Some((name, verdict)) = started {
            return (
                self.code_sent(&attempt.username, &attempt, &name, verdict)
                    .await,
                Some(masked),
                Some(self.provider.name()),
            );
        }
        // Kept for the audit event of a `true` no person gave; the attempt goes to the call.
        let username = attempt.username.clone();
        let (request_id, ending) = self.shared_call(attempt).await;
        let provider = Some(self.provider.name());
        let unasked = |kind, reason: &str, request_id| {
            self.unasked_approval(kind, ctx, input, &username, &masked, reason, request_id)
        };
        let decision = match ending {
            Ending::Verdict(Verdict::Approved) => {
                AuthDecision::approved(success_code(mode), request_id)
            }
            Ending::Verdict(Verdict::NotAnswered) | Ending::Deadline => {
                AuthDecision::denied(CallCode::CallTimedOut, Some(request_id))
            }
            Ending::Verdict(Verdict::HungUp) => {
                AuthDecision::denied(CallCode::UserHungUp, Some(request_id))
            }
            Ending::Verdict(Verdict::AppApproved) => {
                AuthDecision::approved(CallCode::MobileAppAuthenticated, request_id)
            }
            Ending::Verdict(Verdict::FraudReported) => {
                AuthDecision::denied(CallCode::FraudCodeEntered, Some(request_id))
            }
            Ending::Verdict(Verdict::Denied) => {
                AuthDecision::denied(CallCode::Denied, Some(request_id))
            }
            Ending::Verdict(Verdict::Refused(refusal)) => {
                tracing::warn!(target: "pfgate::engine", provider = self.provider.name(), reason = %refusal.reason, "answer refused; denied");
                AuthDecision::denied(CallCode::Denied, Some(request_id))
            }
            // A `true` no person gave: the provider's own bypass (Duo preauth `allow`), or
            // fail_mode = "safe" with every provider failed. Each has its audit event, at WARN.
            Ending::Verdict(Verdict::Bypassed(reason)) => {
                unasked(AuditKind::ProviderBypass, &reason, request_id)
            }
            Ending::Verdict(Verdict::FailedOpen(reason)) => {
                unasked(AuditKind::FailOpen, &reason, request_id)
            }
            Ending::Verdict(Verdict::Failed(reason)) => {
                tracing::warn!(target: "pfgate::engine", provider = self.provider.name(), reason = %reason, "provider failed");
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
            // Logged where it happened (lead_call / wait_for_remote).
            Ending::StoreUnavailable => AuthDecision::error(
                ErrorCode::StoreUnavailable,
                Some(CallCode::StoreUnavailable),
            ),
        };
        (decision, Some(masked), provider)
    }

    /// CallResult 7 "Bypassed Auth" for a `true` no person gave, with its audit event (`kind`)
    /// naming the cause.
    #[allow(clippy::too_many_arguments)]
    fn unasked_approval(
        &self,
        kind: AuditKind,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        username: &str,
        masked_phone: &str,
        reason: &str,
        request_id: String,
    ) -> AuthDecision {
        audit::emit(
            kind,
            &AuditEvent {
                operation: input.operation,
                caller: &ctx.caller,
                username,
                phone: Some(masked_phone.to_string()),
                provider: Some(self.provider.name()),
                call_result: Some(CallCode::BypassedAuth.code()),
                request_id: Some(&request_id),
                reason: Some(reason),
                ..AuditEvent::default()
            },
        );
        AuthDecision::approved(CallCode::BypassedAuth, request_id)
    }

    /// The answer to a provider-checked code (`start_verification`): a pending transaction that
    /// remembers which provider sent it to which number.
    async fn code_sent(
        &self,
        username: &str,
        attempt: &AuthAttempt,
        provider: &str,
        verdict: Verdict,
    ) -> AuthDecision {
        let request_id = attempt.request_id.clone();
        match verdict {
            Verdict::Approved => {
                let tx = Transaction {
                    target: Some(format!("{provider} {}", attempt.phone.e164())),
                    ..self.transaction(
                        &request_id,
                        username,
                        TransactionKind::ProviderCode,
                        &attempt.caller,
                    )
                };
                match self.store.put_transaction(&tx).await {
                    Ok(()) => AuthDecision::pending(CallCode::TextMessageSent, request_id),
                    // A code for a user pfgate does not hold could never be completed: fail secure.
                    Err(StoreError::NotFound(_)) => {
                        AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
                    }
                    Err(e) => self.store_failure(&e),
                }
            }
            Verdict::NotAnswered => AuthDecision::denied(CallCode::CallTimedOut, Some(request_id)),
            Verdict::HungUp => AuthDecision::denied(CallCode::UserHungUp, Some(request_id)),
            Verdict::Denied => AuthDecision::denied(CallCode::Denied, Some(request_id)),
            Verdict::Refused(refusal) => {
                tracing::warn!(target: "pfgate::engine", reason = %refusal.reason, "one-time code refused; denied");
                AuthDecision::denied(CallCode::Denied, Some(request_id))
            }
            Verdict::FraudReported => {
                AuthDecision::denied(CallCode::FraudCodeEntered, Some(request_id))
            }
            // Not a code-sending answer: an approval here would skip the code, so it fails.
            Verdict::AppApproved | Verdict::Bypassed(_) => {
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
            Verdict::Failed(e) => {
                tracing::warn!(target: "pfgate::engine", reason = %e, "one-time code not sent");
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
            Verdict::FailedOpen(reason) => {
                tracing::warn!(target: "pfgate::engine", reason = %reason, "one-time code not sent");
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
        }
    }

    /// Checks a code against a provider-checked transaction (`target` = "provider +E164").
    pub(crate) async fn check_provider_code(&self, tx: &Transaction, code: &str) -> bool {
        let Some((provider, number)) = tx.target.as_deref().and_then(|t| t.split_once(' ')) else {
            return false;
        };
        let Ok(phone) = E164::parse("", number, "", &self.settings.default_country_code) else {
            return false;
        };
        let attempt = AuthAttempt {
            request_id: tx.id.clone(),
            username: tx.username.clone(),
            user_group: String::new(),
            caller: String::new(),
            phone,
            mode: Mode3::SmsText,
            application_name: String::new(),
            initiating_ip: String::new(),
            caller_ip: std::net::IpAddr::from([0, 0, 0, 0]),
            external_id: None,
            scripted: None,
        };
        let checked = tokio::time::timeout(
            self.settings.auth_timeout,
            self.provider.check_verification(provider, &attempt, code),
        )
        .await;
        match checked {
            Ok(Verdict::Approved) => true,
            Ok(Verdict::Failed(reason)) => {
                tracing::warn!(target: "pfgate::engine", reason = %reason, "code check failed at the provider");
                false
            }
            _ => false,
        }
    }

    /// Starts the provider call for this attempt, or joins the one in flight for the same
    /// [`InflightKey`] (in this process or, through the store, in another). Returns the request id
    /// of the call and how it ended; never waits past the deadline.
    async fn shared_call(&self, attempt: AuthAttempt) -> (String, Ending) {
        let key = Arc::new(inflight_key(&attempt));
        let deadline = self.settings.auth_timeout;
        let (local_id, mut rx) = {
            let mut map = match self.inflight.map.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((id, rx)) = map.get(&key) {
                (id.clone(), rx.clone())
            } else {
                let (tx, rx) = watch::channel(None);
                let id = attempt.request_id.clone();
                map.insert(Arc::clone(&key), (id.clone(), rx.clone()));
                let lead = Lead {
                    provider: self.provider.clone(),
                    store: self.store.clone(),
                    inflight: self.inflight.clone(),
                    key: Arc::clone(&key),
                    deadline,
                };
                tokio::spawn(lead.run(attempt, tx));
                (id, rx)
            }
        };
        // Each caller also keeps its own deadline (plus a little for the call task to report), and
        // gives up at once when a stop's grace period has ended.
        let mut abandon = self.inflight.abandon.subscribe();
        let wait = rx.wait_for(Option::is_some);
        let ended = tokio::select! {
            waited = tokio::time::timeout(deadline + Duration::from_millis(250), wait) => match waited {
                Ok(Ok(v)) => v.clone(),
                _ => None,
            },
            _ = abandon.wait_for(|stop| *stop) => {
                tracing::warn!(target: "pfgate::engine", "shutting down: an authentication still waiting is answered as timed out");
                None
            }
        };
        ended.unwrap_or((local_id, Ending::Deadline))
    }
}

/// What the task that places a call holds besides the attempt.
struct Lead {
    provider: Arc<dyn Provider>,
    store: Arc<dyn Store>,
    inflight: Arc<Inflight>,
    key: Arc<InflightKey>,
    deadline: Duration,
}

impl Lead {
    /// Places (or joins) the call, then publishes its ending and leaves the registry. An `async
    /// fn` spawned as it is, not inside an `async` block that would store the attempt twice: the
    /// task lives as long as the person takes (issue #21, goal 4).
    async fn run(self, attempt: AuthAttempt, tx: watch::Sender<Option<(String, Ending)>>) {
        let (provider, store) = (self.provider.as_ref(), self.store.as_ref());
        let ended = lead_call(provider, store, &attempt, &self.key, self.deadline).await;
        if let Ok(mut m) = self.inflight.map.lock() {
            m.remove(&self.key);
        }
        let _ = tx.send(Some(ended));
    }
}

/// The local leader's part: claim the call in a shared store, then place it (the claim won) or
/// wait for the instance that placed it (the claim lost), taking the call over when that
/// instance's lease lapses. A store private to this process needs no claim. Returns the request id
/// of the call that was placed and its ending.
async fn lead_call(
    provider: &dyn Provider,
    store: &dyn Store,
    attempt: &AuthAttempt,
    key: &InflightKey,
    deadline: Duration,
) -> (String, Ending) {
    if !store.is_shared() {
        let ending = place_call(provider, attempt, deadline).await;
        return (attempt.request_id.clone(), ending);
    }
    // Boxed: the claim, lease and remote-wait states would otherwise size the task of every call
    // on a store private to this process too.
    Box::pin(lead_shared(provider, store, attempt, key, deadline)).await
}

/// [`lead_call`] on a store shared with other instances.
async fn lead_shared(
    provider: &dyn Provider,
    store: &dyn Store,
    attempt: &AuthAttempt,
    key: &InflightKey,
    deadline: Duration,
) -> (String, Ending) {
    let id = attempt.request_id.clone();
    let until = Instant::now() + deadline;
    loop {
        let remaining = until.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return (id, Ending::Deadline);
        }
        let now = now_unix();
        match store
            .claim_call(key, &id, now, now + CLAIM_LEASE_SECS)
            .await
        {
            Ok(CallClaim::Placed) => {
                return (
                    id.clone(),
                    own_call(provider, store, attempt, remaining).await,
                )
            }
            Ok(CallClaim::Joined(other)) => match wait_for_remote(store, &other, until).await {
                Remote::Ended(ending) => return (other, ending),
                Remote::Lapsed => {
                    tracing::warn!(target: "pfgate::engine", request_id = %other,
                        "the instance placing a call stopped renewing its claim (stopped, or cut from the database): taking the call over");
                }
            },
            Err(e) => {
                tracing::error!(target: "pfgate::engine", error = %e, "store failure while claiming the provider call: authentication fails secure");
                return (id, Ending::StoreUnavailable);
            }
        }
    }
}

/// Places the call this instance claimed, renewing the claim's lease while it runs, and records
/// its ending for the instances waiting on it.
async fn own_call(
    provider: &dyn Provider,
    store: &dyn Store,
    attempt: &AuthAttempt,
    remaining: Duration,
) -> Ending {
    let id = &attempt.request_id;
    let ending = tokio::select! {
        ending = place_call(provider, attempt, remaining) => ending,
        never = keep_claim(store, id) => match never {},
    };
    if let Err(e) = store
        .finish_call(id, &ending.encode(), now_unix() + OUTCOME_KEEP_SECS)
        .await
    {
        // This caller has its answer; waiters elsewhere see the lease lapse and take over.
        tracing::warn!(target: "pfgate::engine", error = %e, "could not record a call's ending for other instances");
    }
    ending
}

/// The owner's heartbeat: renews the claim's lease every [`CLAIM_RENEW_EVERY`] until dropped (when
/// the call ends). A renewal that fails is retried at the next beat; a claim another instance took
/// over is left alone (this call still runs: the person may be answering it).
async fn keep_claim(store: &dyn Store, request_id: &str) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(CLAIM_RENEW_EVERY).await;
        match store
            .renew_call(request_id, now_unix() + CLAIM_LEASE_SECS)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(target: "pfgate::engine", request_id,
                    "another instance took over a call this instance still places (its lease lapsed)");
                return std::future::pending().await;
            }
            Err(e) => {
                tracing::warn!(target: "pfgate::engine", error = %e, "could not renew a call's claim; retrying");
            }
        }
    }
}

/// Places the provider call, ended by the deadline.
async fn place_call(provider: &dyn Provider, attempt: &AuthAttempt, deadline: Duration) -> Ending {
    match tokio::time::timeout(deadline, provider.authenticate(attempt)).await {
        Ok(v) => Ending::Verdict(v),
        Err(_) => Ending::Deadline,
    }
}

/// What waiting for another instance's call came to.
#[derive(Debug, PartialEq, Eq)]
enum Remote {
    /// The call ended (or the wait did: deadline, store failure).
    Ended(Ending),
    /// Its owner's lease lapsed without an ending: claim the call again.
    Lapsed,
}

/// Waits, by polling the store, for the ending of a call another instance placed; re-checks the
/// owner's lease on every poll, so a claim whose owner died is noticed within the lease.
async fn wait_for_remote(store: &dyn Store, request_id: &str, until: Instant) -> Remote {
    let poll = async {
        let mut pause = FIRST_POLL_PAUSE;
        loop {
            match store.call_state(request_id).await {
                Ok(Some(CallState::Done(outcome))) => {
                    return Remote::Ended(Ending::decode(&outcome))
                }
                Ok(Some(CallState::Pending { lease_until })) if lease_until < now_unix() => {
                    return Remote::Lapsed
                }
                Ok(Some(CallState::Pending { .. })) => {}
                // Given up, or gone (purged): nothing more will come from it.
                Ok(Some(CallState::Lapsed) | None) => return Remote::Lapsed,
                Err(e) => {
                    tracing::error!(target: "pfgate::engine", error = %e, "store failure while waiting for another instance's call: authentication fails secure");
                    return Remote::Ended(Ending::StoreUnavailable);
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL_PAUSE);
        }
    };
    tokio::time::timeout_at(until.into(), poll)
        .await
        .unwrap_or(Remote::Ended(Ending::Deadline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{tests::TempDb, SqliteStore};

    /// An attempt by MIM for `lapse@contoso.com` at +1 425 555 0100.
    fn attempt(request_id: &str) -> AuthAttempt {
        AuthAttempt {
            request_id: request_id.into(),
            username: "lapse@contoso.com".into(),
            user_group: String::new(),
            caller: "CONTOSO\\svc-mim".into(),
            phone: E164::parse("1", "4255550100", "", "1").expect("a valid number"),
            mode: Mode3::VoiceCall,
            application_name: "MIM".into(),
            initiating_ip: "10.0.0.5".into(),
            caller_ip: [127, 0, 0, 1].into(),
            external_id: None,
            scripted: None,
        }
    }

    /// Issue #23 item 5, on a shared SQLite file: a waiter joined to another process's claim
    /// whose owner stopped renewing it takes the call over once the lease lapses, placing a fresh
    /// call of its own — long before its deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_takes_over_a_claim_whose_lease_lapsed() {
        let db = TempDb::new("takeover");
        let store = SqliteStore::open(&db.0, crate::store::suite::key())
            .await
            .expect("store");
        let directory = crate::store::directory::Directory::from_toml(
            "takeover",
            "[[users]]\nusername = \"lapse@contoso.com\"\ncountry_code = \"1\"\n\
             phone = \"4255550100\"\noutcome = \"approve\"\n",
        )
        .expect("directory");
        let provider = crate::providers::scripted::ScriptedProvider::from_directory(&directory);
        // The dead owner's claim: its lease ends in two seconds and is never renewed.
        let dead = "DEAD0000000000000000000000000001";
        let now = now_unix();
        let key = inflight_key(&attempt("unused"));
        assert_eq!(
            store
                .claim_call(&key, dead, now, now + 2)
                .await
                .expect("claim"),
            CallClaim::Placed
        );
        let started = Instant::now();
        let mine = "A1700000000000000000000000000001";
        let (id, ending) = lead_call(
            &provider,
            &store,
            &attempt(mine),
            &key,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(ending, Ending::Verdict(Verdict::Approved));
        assert_eq!(id, mine, "a fresh call of its own, not the dead one's id");
        assert_eq!(provider.calls(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "taken over after {:?}",
            started.elapsed()
        );
        assert_eq!(
            store.call_state(dead).await.expect("state"),
            Some(CallState::Lapsed)
        );
        assert_eq!(
            store.call_state(mine).await.expect("state"),
            Some(CallState::Done("approved".into()))
        );
    }

    /// Issue #17, item 15: an omitted mode (`None`) with a caller's number is a voice call,
    /// without one the user's own mode; a mode sent is used as sent, `oathToken` included (issue
    /// #17 follow-up: the decoder used to fill `oathToken` in for an omitted mode, so an explicit
    /// one was taken for an omitted one and called by voice).
    #[test]
    fn the_mode_used_is_the_one_sent_else_voice_for_a_number_else_the_users() {
        let with = |phone: Option<(&'static str, &'static str, &'static str)>, mode| AuthInput {
            phone,
            mode,
            ..AuthInput::default()
        };
        let number = Some(("1", "4255550100", ""));
        let empty = Some(("1", " ", ""));
        use Mode3::VoiceCall as Voice;
        use Mode3::{Invalid, OathToken as Oath, PhoneApp as App, SmsText as Sms, Unspecified};
        // (number and mode sent, the user's own mode) → the mode used
        for (input, own, expected) in [
            (with(number, None), App, Voice),
            (with(number, Some(Oath)), App, Oath),
            (with(number, Some(Voice)), Oath, Voice),
            (with(empty, None), Sms, Sms),
            (with(None, Some(Oath)), Voice, Oath),
            (with(number, Some(Unspecified)), Sms, Voice),
            (with(number, Some(Sms)), Voice, Sms),
            (with(number, Some(App)), Voice, App),
            (with(empty, Some(Oath)), Oath, Oath),
            (with(empty, Some(Invalid)), Sms, Sms),
            (with(None, None), App, App),
        ] {
            assert_eq!(
                effective_mode(&input, own),
                expected,
                "{input:?} own {own:?}"
            );
        }
        assert_eq!(caller_number(&with(empty, None)), None);
        assert_eq!(caller_number(&with(number, None)), number);
    }

    #[test]
    fn endings_survive_the_store_and_unknown_ones_fail() {
        for ending in [
            Ending::Verdict(Verdict::Approved),
            Ending::Verdict(Verdict::NotAnswered),
            Ending::Verdict(Verdict::HungUp),
            Ending::Verdict(Verdict::Denied),
            // The store keeps the failure's text; its kind does not travel (`Relayed`).
            Ending::Verdict(Verdict::failed(ProviderErrorKind::Relayed, "carrier: busy")),
            Ending::Verdict(Verdict::FailedOpen("all providers down".into())),
            Ending::Verdict(Verdict::Bypassed("Duo bypass".into())),
            Ending::Deadline,
            Ending::StoreUnavailable,
        ] {
            assert_eq!(Ending::decode(&ending.encode()), ending);
        }
        // A refusal reaches the instances waiting on the call as what it answers: a denial.
        let refused = Ending::Verdict(Verdict::Refused(crate::providers::Refusal::caller("x")));
        assert_eq!(
            Ending::decode(&refused.encode()),
            Ending::Verdict(Verdict::Denied)
        );
        assert!(matches!(
            Ending::decode("approved-by-a-future-version"),
            Ending::Verdict(Verdict::Failed(_))
        ));
        assert!(matches!(
            Ending::decode(""),
            Ending::Verdict(Verdict::Failed(_))
        ));
    }
}

/// Every waiting caller holds these futures for as long as its authentication waits, so their
/// size is memory per caller (BENCHMARKS.md, "Thousands of people on the phone at once"). The
/// bounds are about twice today's sizes: they fail when a large future is awaited inline again
/// (an inline LDAP bind made `Engine::handle` 6.6 KB instead of 1.7 KB), not on a compiler's
/// small layout changes. Sizes are those of the test build, close to release ones.
#[cfg(test)]
mod future_sizes {
    use super::*;

    /// About twice the call task's size when its shared-store states were boxed apart.
    const LEAD_BOUND: usize = 2048;

    #[tokio::test]
    async fn a_waiting_authentication_stays_small() {
        let (engine, ctx) = crate::engine::scripted_engine_for_tests("sizes").await;
        // `Engine::handle` boxes the family's future: the size that counts is the box's content.
        let handle = engine.handle(
            ctx.clone(),
            crate::pfwssdk::Request::PfAuthUser_5(Default::default()),
        );
        let handle_size = size_of_val(&*handle);
        drop(handle);
        let other = engine.handle(
            ctx.clone(),
            crate::pfwssdk::Request::TestSecurity(Default::default()),
        );
        let other_size = size_of_val(&*other);
        drop(other);
        let auth = engine.authenticate_inline(
            &ctx,
            AuthInput {
                operation: "PfAuthUser_5",
                username: Some("u"),
                ..AuthInput::default()
            },
        );
        let auth_size = size_of_val(&auth);
        drop(auth);
        // The task that places the call lives as long as the call: its future is its size.
        let attempt = AuthAttempt {
            request_id: "A1700000000000000000000000000001".into(),
            username: "u".into(),
            user_group: String::new(),
            caller: "anonymous".into(),
            phone: E164::parse("1", "4255550100", "", "1").expect("a valid number"),
            mode: Mode3::VoiceCall,
            application_name: String::new(),
            initiating_ip: String::new(),
            caller_ip: [127, 0, 0, 1].into(),
            external_id: None,
            scripted: None,
        };
        let lead = Lead {
            provider: engine.provider.clone(),
            store: engine.store.clone(),
            inflight: engine.inflight.clone(),
            key: Arc::new(inflight_key(&attempt)),
            deadline: Duration::from_secs(1),
        };
        let (tx, _rx) = watch::channel(None);
        let task = lead.run(attempt, tx);
        let lead_size = size_of_val(&task);
        drop(task);
        eprintln!("future sizes: handle(PfAuthUser_5) {handle_size}, handle(TestSecurity) {other_size}, authenticate {auth_size}, call task {lead_size}");
        assert!(
            lead_size <= LEAD_BOUND,
            "the call's task: {lead_size} bytes"
        );
        assert!(
            handle_size <= 1536,
            "Engine::handle future of an authentication: {handle_size} bytes"
        );
        assert!(
            auth_size <= 8192,
            "authentication future: {auth_size} bytes"
        );
    }
}
