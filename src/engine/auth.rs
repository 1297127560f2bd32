//! The second-factor decision: policy, the in-flight table and the deadline.
//!
//! Policy, in MFA Server's order: unknown user (with `requireUserMatch` an error, without it a pass
//! — except when the caller named the number to call, see below), disabled user (its disabled
//! behaviour), blocked user (CallResult 14), a valid one-time bypass (consumed; CallResult 7), an
//! OATH-mode user (a pending transaction for `ValidateOathCode`), otherwise one provider call.
//!
//! A second authentication for the same user and number while one is in flight places no second
//! call: it waits for the first one's outcome (the retry rule NPS-extension users rely on). The call
//! runs in its own task, so a caller that goes away does not cancel it for the others.
//!
//! Every authentication has a deadline (`auth_timeout`, below the callers' 100 s HTTP timeout); when
//! it passes the answer is CallResult 11 "Call Timed Out", never a dropped connection.
//!
//! `PfAuthUser_5`/`PfAuthUserMaster_4` carry the number to call. For them an unknown user with
//! `requireUserMatch=false` still gets the call placed to that number: MIM names its own service
//! account there and the number is what must be verified, so passing without a call would let any
//! caller skip MFA. (pfgate's choice; MFA Server's behaviour here is not public.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::audit::{self, AuditEvent, AuditKind};
use super::phone::E164;
use super::{now_unix, CallContext, Engine};
use crate::pfwssdk::codes::{CallCode, ErrorCode};
use crate::pfwssdk::{AuthResult, CallResult, Error, Mode3};
use crate::providers::{AuthAttempt, Verdict};
use crate::store::{StoreError, Transaction, TransactionKind};

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
    /// Mode given in the call (`PfAuthUser_5`).
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
}

/// Key of the in-flight table: lower-cased username and E.164 number.
pub(crate) type InflightKey = (String, String);

/// A call in flight: its request id and the channel its ending will be published on.
type InflightCall = (String, watch::Receiver<Option<Ending>>);

/// Calls in flight.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    map: Mutex<HashMap<InflightKey, InflightCall>>,
}

impl Inflight {
    /// Number of calls in flight now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
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

impl Engine {
    /// The whole second-factor decision for one request, with its audit event.
    pub(crate) async fn authenticate(
        &self,
        ctx: &CallContext,
        input: AuthInput<'_>,
    ) -> AuthDecision {
        let started = Instant::now();
        let (decision, phone, provider) = self.decide(ctx, &input).await;
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
                username: input.username.unwrap_or(""),
                phone,
                provider,
                call_result: Some(decision.call_result.code),
                error: decision.error.code,
                latency: started.elapsed(),
                request_id: decision.request_id.as_deref(),
                reason: None,
            },
        );
        decision
    }

    async fn decide(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
    ) -> (AuthDecision, Option<String>, Option<&str>) {
        let username = input.username.map(str::trim).unwrap_or("");
        let user = if username.is_empty() {
            Ok(None)
        } else {
            self.store.get_user(username).await
        };
        let user = match user {
            Ok(u) => u,
            Err(e) => return (self.store_failure(&e), None, None),
        };
        let request_id = super::new_request_id();
        let Some(user) = user else {
            if input.require_user_match || username.is_empty() && input.phone.is_none() {
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
            return self
                .call(
                    ctx,
                    input,
                    (username, ""),
                    None,
                    Mode3::VoiceCall,
                    request_id,
                )
                .await;
        };
        if !user.enabled {
            return match user.disabled_behavior {
                AuthResult::Succeed => (
                    AuthDecision::approved(CallCode::BypassedAuth, request_id),
                    None,
                    None,
                ),
                AuthResult::Fail => (
                    AuthDecision::denied(CallCode::UserDisabled, None),
                    None,
                    None,
                ),
            };
        }
        match self.store.block_reason(&user.username).await {
            Ok(Some(_)) => {
                return (
                    AuthDecision::denied(CallCode::UserBlocked, None),
                    None,
                    None,
                )
            }
            Ok(None) => {}
            Err(e) => return (self.store_failure(&e), None, None),
        }
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
        let mode = input.mode.unwrap_or(user.mode);
        if mode == Mode3::OathToken && input.phone.is_none() {
            return (
                self.pending_oath(&user.username, request_id).await,
                None,
                None,
            );
        }
        if mode == Mode3::SmsText
            && user.sms_direction == crate::pfwssdk::SmsDirection::OneWay
            && input.phone.is_none()
        {
            return self.one_way_sms(ctx, input, &user, request_id).await;
        }
        let stored = (
            user.phone.country_code.as_str(),
            user.phone.number.as_str(),
            user.phone.extension.as_str(),
        );
        self.call(
            ctx,
            input,
            (&user.username, &user.user_group),
            Some(stored),
            mode,
            request_id,
        )
        .await
    }

    fn store_failure(&self, e: &StoreError) -> AuthDecision {
        tracing::error!(target: "pfgate::engine", error = %e, "store failure: authentication fails secure");
        AuthDecision::error(
            ErrorCode::StoreUnavailable,
            Some(CallCode::StoreUnavailable),
        )
    }

    async fn pending_oath(&self, username: &str, request_id: String) -> AuthDecision {
        let tx = Transaction {
            id: request_id.clone(),
            username: username.to_string(),
            kind: TransactionKind::OathCode,
            code_hash: None,
            expires_at: now_unix() + self.settings.auth_timeout.as_secs() as i64,
            target: None,
        };
        match self.store.put_transaction(&tx).await {
            Ok(()) => AuthDecision {
                success: false,
                call_result: CallCode::OathCodePending.call_result(),
                error: Error::ok(),
                request_id: Some(request_id),
            },
            Err(e) => self.store_failure(&e),
        }
    }

    /// MFA Server's one-way SMS: send a six-digit passcode and leave a transaction for
    /// `ValidatePasscode`. Only a hash of the code is stored; a wrong guess spends the transaction.
    async fn one_way_sms(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        user: &crate::store::UserRecord,
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
                    self.store_failure(&StoreError::Unavailable(e.to_string())),
                    None,
                    None,
                );
            }
        };
        let tx = Transaction {
            id: request_id.clone(),
            username: user.username.clone(),
            kind: TransactionKind::SmsPasscode,
            code_hash: Some(code_hash),
            expires_at: now_unix() + self.settings.auth_timeout.as_secs() as i64,
            target: None,
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
        };
        let sent = tokio::time::timeout(
            self.settings.auth_timeout,
            self.provider.send_code(&attempt, &code),
        )
        .await;
        let decision = match sent {
            Ok(Verdict::Approved) => AuthDecision {
                success: false,
                call_result: CallCode::TextMessageSent.call_result(),
                error: Error::ok(),
                request_id: Some(request_id),
            },
            Ok(other) => {
                tracing::warn!(target: "pfgate::engine", provider = self.provider.name(), verdict = ?other, "passcode not sent");
                let _ = self.store.take_transaction(&request_id, now_unix()).await;
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
            Err(_) => {
                let _ = self.store.take_transaction(&request_id, now_unix()).await;
                AuthDecision::denied(CallCode::CallTimedOut, Some(request_id))
            }
        };
        (decision, Some(phone.masked()), Some(self.provider.name()))
    }

    /// Places (or joins) the provider call.
    async fn call(
        &self,
        ctx: &CallContext,
        input: &AuthInput<'_>,
        (username, user_group): (&str, &str),
        stored: Option<(&str, &str, &str)>,
        mode: Mode3,
        request_id: String,
    ) -> (AuthDecision, Option<String>, Option<&str>) {
        let (cc, number, ext) = input.phone.or(stored).unwrap_or_default();
        let fallback_cc = stored.map(|s| s.0).filter(|c| !c.is_empty());
        let cc = if cc.is_empty() {
            fallback_cc.unwrap_or("")
        } else {
            cc
        };
        let phone = match E164::parse(cc, number, ext, &self.settings.default_country_code) {
            Ok(p) => p,
            Err(_) => {
                return (
                    AuthDecision::denied(CallCode::InvalidPhoneNumberFormat, None),
                    None,
                    None,
                )
            }
        };
        let masked = Some(phone.masked());
        let attempt = AuthAttempt {
            request_id,
            username: username.to_string(),
            user_group: user_group.to_string(),
            caller: ctx.caller.clone(),
            phone: phone.clone(),
            mode,
            application_name: input.application_name.unwrap_or("").to_string(),
            initiating_ip: input.initiating_ip.unwrap_or("").to_string(),
            caller_ip: ctx.caller_ip,
        };
        // Providers that generate and check codes themselves (Twilio Verify) answer here; the
        // person completes with ValidatePasscode / ValidateOathCode.
        let deadline = self.settings.auth_timeout;
        let started = tokio::time::timeout(deadline, self.provider.start_verification(&attempt))
            .await
            .unwrap_or_else(|_| Some((String::new(), Verdict::Failed("deadline passed".into()))));
        if let Some((name, verdict)) = started {
            return (
                self.code_sent(username, &attempt, &name, verdict).await,
                masked,
                Some(self.provider.name()),
            );
        }
        let (request_id, ending) = self.shared_call(attempt).await;
        let provider = Some(self.provider.name());
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
            Ending::Verdict(Verdict::Denied) => {
                AuthDecision::denied(CallCode::Denied, Some(request_id))
            }
            Ending::Verdict(Verdict::FailedOpen(reason)) => {
                // fail_mode = "safe": every provider failed and the route lets the request through.
                audit::emit(
                    AuditKind::FailOpen,
                    &AuditEvent {
                        operation: input.operation,
                        caller: &ctx.caller,
                        username,
                        phone: Some(phone.masked()),
                        provider: Some(self.provider.name()),
                        call_result: Some(CallCode::BypassedAuth.code()),
                        request_id: Some(&request_id),
                        reason: Some(&reason),
                        ..AuditEvent::default()
                    },
                );
                AuthDecision::approved(CallCode::BypassedAuth, request_id)
            }
            Ending::Verdict(Verdict::Failed(reason)) => {
                tracing::warn!(target: "pfgate::engine", provider = self.provider.name(), reason = %reason, "provider failed");
                AuthDecision::denied(CallCode::UnableToPlaceCall, Some(request_id))
            }
        };
        (decision, masked, provider)
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
                    id: request_id.clone(),
                    username: username.to_string(),
                    kind: TransactionKind::ProviderCode,
                    code_hash: None,
                    expires_at: now_unix() + self.settings.auth_timeout.as_secs() as i64,
                    target: Some(format!("{provider} {}", attempt.phone.e164())),
                };
                match self.store.put_transaction(&tx).await {
                    Ok(()) => AuthDecision {
                        success: false,
                        call_result: CallCode::TextMessageSent.call_result(),
                        error: Error::ok(),
                        request_id: Some(request_id),
                    },
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
            Verdict::Failed(reason) | Verdict::FailedOpen(reason) => {
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

    /// Starts the provider call for this user and number, or joins the one in flight. Returns the
    /// request id of the call and how it ended; never waits past the deadline.
    async fn shared_call(&self, attempt: AuthAttempt) -> (String, Ending) {
        let key: InflightKey = (attempt.username.to_lowercase(), attempt.phone.e164());
        let deadline = self.settings.auth_timeout;
        let (request_id, mut rx) = {
            let mut map = match self.inflight.map.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((id, rx)) = map.get(&key) {
                (id.clone(), rx.clone())
            } else {
                let (tx, rx) = watch::channel(None);
                map.insert(key.clone(), (attempt.request_id.clone(), rx.clone()));
                let provider = self.provider.clone();
                let inflight: Arc<Inflight> = self.inflight.clone();
                let id = attempt.request_id.clone();
                tokio::spawn(async move {
                    let ending =
                        match tokio::time::timeout(deadline, provider.authenticate(&attempt)).await
                        {
                            Ok(v) => Ending::Verdict(v),
                            Err(_) => Ending::Deadline,
                        };
                    if let Ok(mut m) = inflight.map.lock() {
                        m.remove(&key);
                    }
                    let _ = tx.send(Some(ending));
                });
                (id, rx)
            }
        };
        // Each caller also keeps its own deadline (plus a little for the call task to report).
        let wait = rx.wait_for(Option::is_some);
        let ending = match tokio::time::timeout(deadline + Duration::from_millis(250), wait).await {
            Ok(Ok(v)) => v.clone().unwrap_or(Ending::Deadline),
            _ => Ending::Deadline,
        };
        (request_id, ending)
    }
}
