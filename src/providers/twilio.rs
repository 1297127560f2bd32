//! The Twilio Verify provider: Twilio's Verify API v2 (<https://www.twilio.com/docs/verify/api>).
//!
//! Twilio Verify generates the one-time code, sends it (SMS or a voice call) and checks it itself,
//! so it cannot complete an authentication on its own: the person has to type the code. It
//! therefore implements the code-flow hooks of [`Provider`] rather than
//! [`Provider::authenticate`]:
//!
//! 1. [`Provider::start_verification`]: `POST {base}/v2/Services/{service_sid}/Verifications`
//!    with the form `To=<E.164>&Channel=sms|call` (`call` for [`Mode3::VoiceCall`], `sms` for
//!    [`Mode3::SmsText`]; for a call to a number with an extension also `SendDigits=<extension>`).
//!    A `2xx` answer whose `status` is `pending` means the code is on its way (`Approved` = sent);
//!    the engine then answers `PfAuthUser` with CallResult 20 "Text Message Sent".
//! 2. [`Provider::check_verification`]: `POST {base}/v2/Services/{service_sid}/VerificationCheck`
//!    with `To=<E.164>&Code=<code>`, when the caller completes with `ValidatePasscode` or
//!    `ValidateOathCode`.
//!
//! Every request carries HTTP Basic credentials: the Account SID (`AC…`) and its Auth Token, or
//! an API key SID (`SK…`) and its secret (Twilio recommends API keys in production).
//!
//! | Twilio says | [`Verdict`] |
//! |---|---|
//! | Verifications: `2xx`, `status: pending` | `Approved` (the code was sent) |
//! | Verifications: `2xx` with another status | `Failed` |
//! | more than `max_sends_per_user` sends to one user within `send_window_secs` (not sent) | `Refused` (caller: no breaker, no failover) |
//! | Verifications: `429` with 60203 (too many sends to this number) | `Refused` (caller) |
//! | Verifications: other `4xx` (60200 invalid parameter, 60205 SMS to a landline, 20003 bad credentials, …), `5xx` | `Failed`, with Twilio's error code and message |
//! | VerificationCheck: `2xx`, `status: approved`, `valid: true`, `to` the number and `sid` the verification started | `Approved` |
//! | VerificationCheck: `approved` without `valid: true`, for another `to`, or another `sid` | `Refused` (provider) |
//! | VerificationCheck: `2xx`, `status: pending` (a wrong code) | `Denied` |
//! | VerificationCheck: `2xx`, `canceled`, `expired`, `max_attempts_reached`, `failed`, `deleted` | `Denied` |
//! | VerificationCheck: `404` (20404: none pending — expired, already approved, never started) | `Denied` |
//! | VerificationCheck: `429` with 60202 (more than 5 checks) | `Denied` |
//! | VerificationCheck: any other `4xx` or `429`, `5xx` | `Failed` |
//! | a network error, a timeout, a body over 64 KiB, malformed JSON | `Failed` |
//! | a code that is not 4–10 letters or digits | `Denied`, without asking Twilio |
//!
//! `Failed` is kept for "Twilio could not be asked"; the engine refuses the code either way, but
//! logs a `Failed` check as a provider problem.
//!
//! The SID of each verification started is kept in memory by request id, so an `approved` check
//! must name it; a check of a verification another instance started (or this one before a
//! restart) is compared by number only. The per-user send bound is counted per instance.
//!
//! The code is never logged, put in a verdict reason or kept. Texts that come from Twilio are
//! cut to 200 characters, and every run of four or more digits in them is masked, so neither a
//! phone number nor a code can reach the audit log through them.
//!
//! Twilio's answers are not signed; TLS (certificate verification always on, HTTPS required except
//! to a loopback `base_url`) is what authenticates them. Redirects are not followed. The token
//! comes from an environment variable or a file, never the configuration itself, and is never
//! logged, put in a verdict reason or printed by `Debug`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::common::http::{self, BaseUrl, BaseUrlRules};
use super::common::settings::{resolve_paths, Problems};
use super::common::BuildError;
use super::settings::{BuildContext, ProviderConfig};
use super::{AuthAttempt, Provider, ProviderError, ProviderErrorKind as Kind, Refusal, Verdict};
use crate::core::secret::{self, Secret, SecretKeys};
use crate::pfwssdk::Mode3;

/// Where requests go unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://verify.twilio.com";
/// Default for `request_timeout_secs`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body pfgate reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest text taken from a Twilio message into a failure reason (characters).
const MAX_REASON_CHARS: usize = 200;
/// Twilio error: authentication failed (HTTP 401).
pub const ERROR_AUTHENTICATE: u64 = 20003;
/// Twilio error: the resource was not found (HTTP 404): no pending verification.
pub const ERROR_NOT_FOUND: u64 = 20404;
/// Twilio error: invalid parameter (HTTP 400).
pub const ERROR_INVALID_PARAMETER: u64 = 60200;
/// Twilio error: more than 5 checks of one verification (HTTP 429).
pub const ERROR_MAX_CHECK_ATTEMPTS: u64 = 60202;
/// Twilio error: more than 5 sends of one verification (HTTP 429).
pub const ERROR_MAX_SEND_ATTEMPTS: u64 = 60203;
/// Twilio error: SMS is not supported by a landline number (HTTP 403).
pub const ERROR_SMS_TO_LANDLINE: u64 = 60205;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// `[providers.<name>]` with `kind = "twilio-verify"`, as configured.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// The Verify Service SID (`VA` and 32 hex digits), from the Twilio Console → Verify →
    /// Services.
    pub service_sid: String,
    /// The HTTP Basic user: the Account SID (`AC…`) with its Auth Token, or an API key SID
    /// (`SK…`) with the key's secret. `AC`/`SK` and 32 hex digits.
    pub account_sid: String,
    /// Name of the environment variable holding the Auth Token (or API key secret).
    pub auth_token_env: Option<String>,
    /// File holding the Auth Token (or API key secret); surrounding whitespace is ignored.
    pub auth_token_file: Option<PathBuf>,
    /// Where requests go, when not `https://verify.twilio.com` (a relay, a test server):
    /// `https://…`, or `http://` to a loopback address only. A path prefix is kept.
    pub base_url: Option<String>,
    /// Timeout of each request (and of connecting), 1–60 s (default 10).
    pub request_timeout_secs: Option<u64>,
    /// The most codes sent to one user within `send_window_secs`, 1–100 (default 5); more are
    /// refused before Twilio is asked (CallResult 150), so a caller cannot have pfgate text or
    /// call one person without end. Counted per pfgate instance.
    pub max_sends_per_user: Option<u32>,
    /// The window of `max_sends_per_user`, 60–86400 s (default 600, Twilio's 10-minute life of
    /// a verification).
    pub send_window_secs: Option<u64>,
}

/// Default `max_sends_per_user`.
pub const DEFAULT_MAX_SENDS_PER_USER: u32 = 5;
/// Default `send_window_secs`.
pub const DEFAULT_SEND_WINDOW: Duration = Duration::from_secs(600);
/// The most users (and started verifications) one provider keeps track of at once; past it a
/// send is refused rather than memory grown without bound.
const MAX_TRACKED: usize = 100_000;

/// The token's two settings keys.
fn token_keys(s: &TwilioSettings) -> SecretKeys<'_> {
    SecretKeys {
        env_key: "auth_token_env",
        env: s.auth_token_env.as_deref(),
        file_key: "auth_token_file",
        file: s.auth_token_file.as_deref(),
        what: "Twilio token",
    }
}

/// Settings after checking.
struct Checked {
    base: BaseUrl,
    service_sid: String,
    account_sid: String,
    token: Secret,
    request_timeout: Duration,
    max_sends: u32,
    send_window: Duration,
}

impl TwilioSettings {
    /// A provider named `name` (for logs and audit), with its token loaded.
    pub fn build(&self, name: &str) -> Result<TwilioProvider, BuildError> {
        let c = self.check().map_err(BuildError::invalid("Twilio Verify"))?;
        let client = http::client_builder(
            "twilio-verify",
            c.request_timeout,
            c.request_timeout,
            c.base.loopback,
        )
        .build()
        .map_err(BuildError::client("Twilio"))?;
        Ok(TwilioProvider {
            name: name.to_string(),
            base: c.base.url,
            service_sid: c.service_sid,
            account_sid: c.account_sid,
            token: c.token,
            client,
            request_timeout: c.request_timeout,
            sends: Mutex::new(Sends {
                max: c.max_sends,
                window: c.send_window,
                by_user: HashMap::new(),
            }),
            started: Mutex::new(HashMap::new()),
        })
    }

    fn check(&self) -> Result<Checked, Vec<(String, String)>> {
        let mut problems = Problems::default();

        let service_sid = self.service_sid.trim().to_string();
        if !is_sid(&service_sid, &["VA"]) {
            problems.push(
                "service_sid",
                format!(
                    "'{}' is not a Verify Service SID (VA and 32 hex digits, from the Twilio \
                     Console → Verify → Services)",
                    clip(&service_sid)
                ),
            );
        }
        let account_sid = self.account_sid.trim().to_string();
        if !is_sid(&account_sid, &["AC", "SK"]) {
            problems.push(
                "account_sid",
                format!(
                    "'{}' is not an Account SID (AC and 32 hex digits) or an API key SID (SK and \
                     32 hex digits)",
                    clip(&account_sid)
                ),
            );
        }

        let base = problems.take_as(
            "base_url",
            check_base_url(self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL)),
        );

        let token = problems.take(secret::load_required(
            token_keys(self),
            "the Auth Token (or API key secret) is required: auth_token_env (an environment \
             variable's name) or auth_token_file (a file); it is never written in the \
             configuration itself",
            check_secret,
        ));

        let request_timeout =
            problems.request_timeout(self.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT);
        let max_sends = problems.bounded(
            "max_sends_per_user",
            self.max_sends_per_user.map(u64::from),
            1..=100,
            u64::from(DEFAULT_MAX_SENDS_PER_USER),
            "",
        );
        let send_window = Duration::from_secs(problems.bounded(
            "send_window_secs",
            self.send_window_secs,
            60..=86_400,
            DEFAULT_SEND_WINDOW.as_secs(),
            "seconds",
        ));

        let checked = base.zip(token).map(|(base, token)| Checked {
            base,
            service_sid,
            account_sid,
            token,
            request_timeout,
            // In 1..=100, so it fits.
            max_sends: u32::try_from(max_sends).unwrap_or(DEFAULT_MAX_SENDS_PER_USER),
            send_window,
        });
        problems.finish(checked)
    }
}

impl ProviderConfig for TwilioSettings {
    /// Makes a relative `auth_token_file` relative to `dir` (the configuration file's directory).
    fn resolve_relative_to(&mut self, dir: &Path) {
        resolve_paths(dir, [&mut self.auth_token_file]);
    }

    /// Every problem, as `(key, reason)` for `pfgate check-config`. The token is read, so a
    /// missing variable or file is reported now.
    fn validate(&self) -> Vec<(String, String)> {
        self.check().err().unwrap_or_default()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(TwilioSettings::build(self, cx.name)?))
    }
}

/// True when `s` is one of the `prefixes` followed by exactly 32 hex digits (Twilio's SID
/// pattern, e.g. `^VA[0-9a-fA-F]{32}$`).
fn is_sid(s: &str, prefixes: &[&str]) -> bool {
    s.len() == 34
        && prefixes.iter().any(|p| s.starts_with(p))
        && s.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

/// A `base_url`: https, or http to a loopback address; no query, fragment or credentials. A path
/// prefix is allowed (the endpoints are appended to it).
fn check_base_url(s: &str) -> Result<BaseUrl, String> {
    http::check_base_url(
        s,
        BaseUrlRules {
            credentials_hint: "use account_sid and the token settings",
            root_only: None,
        },
    )
}

fn check_secret(bytes: Zeroizing<Vec<u8>>, origin: &str) -> Result<Secret, String> {
    secret::printable_token(
        &bytes,
        origin,
        "token",
        "copy the Auth Token or API key secret from the Twilio Console",
    )
}

// ---------------------------------------------------------------------------------------------
// Twilio's answers
// ---------------------------------------------------------------------------------------------

/// The fields pfgate reads from a Verification or VerificationCheck resource.
#[derive(Debug, Deserialize)]
struct VerificationBody {
    status: String,
    #[serde(default)]
    valid: Option<bool>,
    /// The verification's SID (`VE…`).
    #[serde(default)]
    sid: Option<String>,
    /// The number (E.164) the verification was sent to.
    #[serde(default)]
    to: Option<String>,
}

/// The verification a check must belong to: the number asked about, and the SID of the
/// verification this instance started for the request, when it did (another instance, or this
/// one before a restart, may have started it: then the number alone is compared).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// E.164 of the number the code was sent to.
    pub to: &'a str,
    /// The `VE…` SID Twilio answered when the code was sent.
    pub sid: Option<&'a str>,
}

/// Codes sent per user within the window (`max_sends_per_user`).
#[derive(Debug)]
struct Sends {
    max: u32,
    window: Duration,
    by_user: HashMap<String, VecDeque<Instant>>,
}

impl Sends {
    /// Counts a send to `user` now, or `Err` with the reason when the bound is reached (or too
    /// many users are tracked to count another).
    fn admit(&mut self, user: &str, now: Instant) -> Result<(), String> {
        let window = self.window;
        let live = |t: &Instant| now.duration_since(*t) < window;
        self.by_user.retain(|_, times| {
            times.retain(live);
            !times.is_empty()
        });
        let key = user.to_lowercase();
        let sent = self.by_user.get(&key).map_or(0, VecDeque::len);
        if sent >= self.max as usize {
            return Err(format!(
                "{sent} codes already sent to this user within {} s (max_sends_per_user = {})",
                window.as_secs(),
                self.max
            ));
        }
        if sent == 0 && self.by_user.len() >= MAX_TRACKED {
            return Err("too many users with codes pending to count another".into());
        }
        self.by_user.entry(key).or_default().push_back(now);
        Ok(())
    }
}

/// A verification this instance started: its SID and number, by request id.
#[derive(Debug)]
struct Started {
    sid: String,
    to: String,
    at: Instant,
}

/// Twilio's error body: `{"code":60200,"message":"…","more_info":"…","status":400}`.
#[derive(Debug, Default)]
struct ErrorBody {
    code: Option<u64>,
    message: Option<String>,
}

impl ErrorBody {
    /// Reads what it can; anything that is not Twilio's error object yields an empty one.
    fn parse(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
            return Self::default();
        };
        Self {
            code: map.get("code").and_then(|c| match c {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }),
            message: map
                .get("message")
                .and_then(serde_json::Value::as_str)
                .map(scrub),
        }
    }
}

/// A Twilio text made safe for one log line: control characters dropped, every run of four or more
/// digits masked (phone numbers, codes), at most 200 characters.
fn scrub(s: &str) -> String {
    let chars: Vec<char> = s
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let end = chars[i..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(chars.len(), |n| i + n);
            if end - i >= 4 {
                out.extend(std::iter::repeat_n('*', end - i));
            } else {
                out.extend(&chars[i..end]);
            }
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out.trim().to_string()
}

/// A text from the configuration or an answer, cut for a reason (no digit masking).
fn clip(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect()
}

/// `HTTP 400, Twilio error 60200: Invalid parameter` (the parts that are known).
fn http_error(status: StatusCode, e: &ErrorBody) -> String {
    let mut s = format!("HTTP {}", status.as_u16());
    if let Some(code) = e.code {
        s.push_str(&format!(", Twilio error {code}"));
    }
    match e.message.as_deref() {
        Some(m) if !m.is_empty() => s.push_str(&format!(": {m}")),
        _ => {}
    }
    s
}

/// What an answer to `POST …/Verifications` means.
pub fn start_outcome(status: StatusCode, body: &[u8]) -> Verdict {
    if !status.is_success() {
        let e = ErrorBody::parse(body);
        if e.code == Some(ERROR_MAX_SEND_ATTEMPTS) {
            // Twilio's own bound on resends: what callers asked for, not a Twilio failure, so
            // it neither counts toward the breaker nor fails over to another provider.
            return Verdict::Refused(Refusal::caller(format!(
                "twilio-verify Verifications: {} (too many codes sent to this number)",
                http_error(status, &e)
            )));
        }
        let hint = match e.code {
            Some(ERROR_AUTHENTICATE) => " (check account_sid and the token)",
            Some(ERROR_SMS_TO_LANDLINE) => " (the number cannot take text messages)",
            _ => "",
        };
        return Verdict::failed(
            Kind::HttpStatus,
            format!(
                "twilio-verify Verifications: {}{hint}",
                http_error(status, &e)
            ),
        );
    }
    match serde_json::from_slice::<VerificationBody>(body) {
        Ok(v) if v.status == "pending" => Verdict::Approved,
        Ok(v) => Verdict::failed(
            Kind::BadAnswer,
            format!(
                "twilio-verify Verifications: unexpected status '{}' (expected pending)",
                clip(&v.status)
            ),
        ),
        Err(e) => Verdict::failed(
            Kind::BadAnswer,
            format!(
                "twilio-verify Verifications: malformed answer ({})",
                clip(&e.to_string())
            ),
        ),
    }
}

/// What an answer to `POST …/VerificationCheck` means. `approved` counts only when it is `valid`
/// and belongs to the verification `expected` names; anything else is refused (an answer about
/// another number or verification is never this person's approval).
pub fn check_outcome(status: StatusCode, body: &[u8], expected: Expected<'_>) -> Verdict {
    if status == StatusCode::NOT_FOUND {
        // 20404: no pending verification for this number (expired, already approved, or never
        // started): the code cannot be right.
        return Verdict::Denied;
    }
    if !status.is_success() {
        let e = ErrorBody::parse(body);
        if status == StatusCode::TOO_MANY_REQUESTS && e.code == Some(ERROR_MAX_CHECK_ATTEMPTS) {
            return Verdict::Denied;
        }
        return Verdict::failed(
            Kind::HttpStatus,
            format!(
                "twilio-verify VerificationCheck: {}",
                http_error(status, &e)
            ),
        );
    }
    match serde_json::from_slice::<VerificationBody>(body) {
        Ok(v) => match v.status.as_str() {
            "approved" => approved_outcome(&v, expected),
            "pending" | "canceled" | "expired" | "max_attempts_reached" | "failed" | "deleted" => {
                Verdict::Denied
            }
            other => Verdict::failed(
                Kind::BadAnswer,
                format!(
                    "twilio-verify VerificationCheck: unknown status '{}'",
                    clip(other)
                ),
            ),
        },
        Err(e) => Verdict::failed(
            Kind::BadAnswer,
            format!(
                "twilio-verify VerificationCheck: malformed answer ({})",
                clip(&e.to_string())
            ),
        ),
    }
}

/// An `approved` check: `Approved` only when `valid` is true, `to` is the number asked about
/// and, when known, `sid` is the verification started; otherwise refused (Twilio's answer is at
/// fault, not the person).
fn approved_outcome(v: &VerificationBody, expected: Expected<'_>) -> Verdict {
    let refused = |why: &str| {
        Verdict::Refused(Refusal::provider(format!(
            "twilio-verify VerificationCheck: status approved but {why}"
        )))
    };
    if v.valid != Some(true) {
        return refused("not valid");
    }
    if v.to.as_deref() != Some(expected.to) {
        return refused("for another number");
    }
    match expected.sid {
        Some(sid) if v.sid.as_deref() != Some(sid) => refused("for another verification"),
        _ => Verdict::Approved,
    }
}

/// The `Channel` for a mode, `None` when Twilio Verify cannot serve it.
pub fn channel(mode: Mode3) -> Option<&'static str> {
    match mode {
        Mode3::SmsText => Some("sms"),
        Mode3::VoiceCall => Some("call"),
        Mode3::PhoneApp | Mode3::OathToken | Mode3::Invalid | Mode3::Unspecified => None,
    }
}

/// True when `code` can be a Verify code: 4–10 ASCII letters or digits (Twilio's `Code` is "the
/// 4–10 character string being verified").
fn plausible_code(code: &str) -> bool {
    (4..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An `application/x-www-form-urlencoded` body of `pairs`, in order.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn describe(e: &reqwest::Error, what: &str, timeout: Duration) -> ProviderError {
    http::transport_error(e, &format!("twilio-verify {what}"), Some(timeout))
}

// ---------------------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------------------

/// Twilio Verify v2 (see the module documentation).
pub struct TwilioProvider {
    name: String,
    base: Url,
    service_sid: String,
    account_sid: String,
    token: Secret,
    client: reqwest::Client,
    request_timeout: Duration,
    /// Codes sent per user ([`TwilioSettings::max_sends_per_user`]).
    sends: Mutex<Sends>,
    /// Verifications started here, by request id, for the check's SID comparison.
    started: Mutex<HashMap<String, Started>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TwilioProvider {
    /// Remembers the verification started for `request_id` (Twilio's answer `body`).
    fn remember(&self, request_id: &str, to: &str, body: &[u8]) {
        let Some(sid) = serde_json::from_slice::<VerificationBody>(body)
            .ok()
            .and_then(|v| v.sid)
        else {
            return;
        };
        let now = Instant::now();
        let mut started = lock(&self.started);
        // A verification lives 10 minutes at Twilio; the engine's transaction less.
        started.retain(|_, s| now.duration_since(s.at) < DEFAULT_SEND_WINDOW);
        if started.len() < MAX_TRACKED {
            started.insert(
                request_id.to_string(),
                Started {
                    sid,
                    to: to.to_string(),
                    at: now,
                },
            );
        }
    }

    /// The SID started for `request_id` to `to`, if this instance started it.
    fn started_sid(&self, request_id: &str, to: &str) -> Option<String> {
        lock(&self.started)
            .get(request_id)
            .filter(|s| s.to == to)
            .map(|s| s.sid.clone())
    }
}

impl fmt::Debug for TwilioProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioProvider")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("service_sid", &self.service_sid)
            .field("account_sid", &self.account_sid)
            .field("token", &self.token)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl TwilioProvider {
    /// Where requests go (`https://verify.twilio.com/` unless `base_url` says otherwise).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `{base}/v2/Services/{service_sid}/<tail…>`, each segment percent-encoded.
    fn endpoint(&self, tail: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(["v2", "Services", self.service_sid.as_str()]);
            path.extend(tail);
        }
        url
    }

    /// `Basic base64(user:token)`, marked sensitive (never printed by the HTTP stack).
    fn authorization(&self) -> Result<HeaderValue, ProviderError> {
        let mut credentials = Zeroizing::new(Vec::with_capacity(
            self.account_sid.len() + 1 + self.token.expose().len(),
        ));
        credentials.extend_from_slice(self.account_sid.as_bytes());
        credentials.push(b':');
        credentials.extend_from_slice(self.token.expose());
        let value = Zeroizing::new(format!("Basic {}", BASE64.encode(credentials.as_slice())));
        let mut header = HeaderValue::from_str(&value).map_err(|_| {
            ProviderError::new(
                Kind::Local,
                "twilio-verify: the credentials do not make a header",
            )
        })?;
        header.set_sensitive(true);
        Ok(header)
    }

    /// One request; the status and the body (capped). `form` is sent as
    /// `application/x-www-form-urlencoded`. Errors are reasons for the audit log (no secret).
    async fn exchange(
        &self,
        method: Method,
        what: &str,
        url: Url,
        form: Option<String>,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let mut request = self
            .client
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, self.authorization()?)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(form) = form {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| describe(&e, what, self.request_timeout))?;
        let status = response.status();
        let bytes = http::read_capped(
            &mut response,
            &format!("twilio-verify {what}"),
            MAX_RESPONSE_BYTES,
            Some(self.request_timeout),
        )
        .await?;
        tracing::debug!(target: "pfgate::provider", provider = %self.name, what, status = status.as_u16(), "twilio-verify answer");
        Ok((status, bytes))
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &str {
        &self.name
    }

    /// Twilio Verify cannot complete without the person's code: the engine uses
    /// [`Provider::start_verification`] instead, so this only answers a misrouted call.
    async fn authenticate(&self, _attempt: &AuthAttempt) -> Verdict {
        Verdict::failed(
            Kind::Unsupported,
            "twilio-verify completes with ValidatePasscode/ValidateOathCode",
        )
    }

    fn sends_codes(&self) -> bool {
        true
    }

    async fn start_verification(&self, attempt: &AuthAttempt) -> Option<(String, Verdict)> {
        let Some(channel) = channel(attempt.mode) else {
            return Some((
                self.name.clone(),
                Verdict::failed(
                    Kind::Unsupported,
                    "twilio-verify sends SMS or voice codes only",
                ),
            ));
        };
        if let Err(reason) = lock(&self.sends).admit(&attempt.username, Instant::now()) {
            tracing::warn!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, user = %attempt.username, %reason, "twilio-verify send refused");
            return Some((self.name.clone(), Verdict::Refused(Refusal::caller(reason))));
        }
        let to = attempt.phone.e164();
        let mut pairs = vec![("To", to.as_str()), ("Channel", channel)];
        let extension = attempt.phone.extension();
        if channel == "call" && !extension.is_empty() {
            // Dialled after the call is answered (a desk phone behind a switchboard).
            pairs.push(("SendDigits", extension));
        }
        let verdict = match self
            .exchange(
                Method::POST,
                "Verifications",
                self.endpoint(&["Verifications"]),
                Some(form(&pairs)),
            )
            .await
        {
            Ok((status, body)) => {
                let verdict = start_outcome(status, &body);
                if verdict == Verdict::Approved {
                    self.remember(&attempt.request_id, &to, &body);
                }
                verdict
            }
            Err(reason) => Verdict::Failed(reason),
        };
        match &verdict {
            Verdict::Failed(reason) => {
                tracing::warn!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, phone = %attempt.phone.masked(), channel, %reason, "twilio-verify could not send the code");
            }
            _ => {
                tracing::debug!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, phone = %attempt.phone.masked(), channel, "twilio-verify sent a code");
            }
        }
        Some((self.name.clone(), verdict))
    }

    async fn check_verification(
        &self,
        _provider: &str,
        attempt: &AuthAttempt,
        code: &str,
    ) -> Verdict {
        let code = Zeroizing::new(code.trim().to_string());
        if !plausible_code(&code) {
            // Not something Twilio could have sent; do not spend one of the person's checks.
            return Verdict::Denied;
        }
        let to = attempt.phone.e164();
        let verdict = match self
            .exchange(
                Method::POST,
                "VerificationCheck",
                self.endpoint(&["VerificationCheck"]),
                Some(form(&[("To", &to), ("Code", &code)])),
            )
            .await
        {
            Ok((status, body)) => {
                let sid = self.started_sid(&attempt.request_id, &to);
                let expected = Expected {
                    to: &to,
                    sid: sid.as_deref(),
                };
                check_outcome(status, &body, expected)
            }
            Err(reason) => Verdict::Failed(reason),
        };
        if let Verdict::Refused(r) = &verdict {
            tracing::warn!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, phone = %attempt.phone.masked(), reason = %r.reason, "twilio-verify answer refused");
        }
        tracing::debug!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, phone = %attempt.phone.masked(), verdict = ?verdict, "twilio-verify code checked");
        verdict
    }

    /// `GET {base}/v2/Services/{service_sid}`: healthy on 200 (Twilio reachable, the credentials
    /// accepted, the Verify Service there).
    async fn healthy(&self) -> bool {
        match self
            .exchange(Method::GET, "Services", self.endpoint(&[]), None)
            .await
        {
            Ok((StatusCode::OK, _)) => true,
            Ok((status, body)) => {
                let reason = http_error(status, &ErrorBody::parse(&body));
                tracing::warn!(target: "pfgate::provider", provider = %self.name, %reason, "twilio-verify service check failed");
                false
            }
            Err(reason) => {
                tracing::warn!(target: "pfgate::provider", provider = %self.name, %reason, "twilio-verify service check failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Blame;

    #[test]
    fn sids() {
        let hex32 = "0123456789abcdefABCDEF0123456789";
        assert!(is_sid(&format!("VA{hex32}"), &["VA"]));
        assert!(is_sid(&format!("SK{hex32}"), &["AC", "SK"]));
        assert!(!is_sid(&format!("AC{hex32}"), &["VA"]));
        assert!(!is_sid(&format!("VA{}", &hex32[1..]), &["VA"]));
        assert!(!is_sid(&format!("VA{}g", &hex32[1..]), &["VA"]));
        assert!(!is_sid("", &["VA"]));
    }

    #[test]
    fn base_urls() {
        assert!(check_base_url(DEFAULT_BASE_URL).is_ok());
        assert!(check_base_url("https://relay.corp.example/twilio").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080/").is_ok());
        assert!(check_base_url("http://localhost:1").is_ok());
        assert!(check_base_url("http://verify.twilio.com").is_err());
        assert!(check_base_url("http://127.0.0.1.example.org").is_err());
        assert!(check_base_url("https://AC1:tok@verify.twilio.com").is_err());
        assert!(check_base_url("https://verify.twilio.com/?a=b").is_err());
        assert!(check_base_url("ftp://verify.twilio.com").is_err());
    }

    #[test]
    fn scrub_masks_numbers_and_codes() {
        assert_eq!(
            scrub("Invalid parameter `To`: +14255550100"),
            "Invalid parameter `To`: +***********"
        );
        assert_eq!(scrub("code 123456 wrong"), "code ****** wrong");
        assert_eq!(scrub("Max (5) check attempts"), "Max (5) check attempts");
        assert_eq!(scrub("a\nb"), "ab");
        assert_eq!(scrub(&"x".repeat(500)).len(), MAX_REASON_CHARS);
    }

    #[test]
    fn start_answers() {
        let ok = br#"{"sid":"VE0","status":"pending","valid":false,"channel":"sms"}"#;
        assert_eq!(start_outcome(StatusCode::CREATED, ok), Verdict::Approved);
        let v = start_outcome(
            StatusCode::FORBIDDEN,
            br#"{"code":60205,"message":"SMS is not supported by landline phone number","more_info":"https://www.twilio.com/docs/errors/60205","status":403}"#,
        );
        assert_eq!(
            v,
            Verdict::failed(
                Kind::HttpStatus,
                "twilio-verify Verifications: HTTP 403, Twilio error 60205: SMS is not supported \
                 by landline phone number (the number cannot take text messages)"
            )
        );
        assert!(matches!(
            start_outcome(StatusCode::CREATED, br#"{"status":"approved"}"#),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            start_outcome(StatusCode::CREATED, b"<html>"),
            Verdict::Failed(_)
        ));
        assert_eq!(
            start_outcome(StatusCode::BAD_GATEWAY, b"<html>"),
            Verdict::failed(Kind::HttpStatus, "twilio-verify Verifications: HTTP 502")
        );
    }

    #[test]
    fn check_answers() {
        const TO: &str = "+14255550100";
        let ours = Expected {
            to: TO,
            sid: Some("VE01"),
        };
        let check = |status, body: &str| check_outcome(status, body.as_bytes(), ours);
        let body = |s: &str, valid: bool| {
            format!(r#"{{"status":"{s}","valid":{valid},"sid":"VE01","to":"{TO}"}}"#)
        };
        assert_eq!(
            check(StatusCode::OK, &body("approved", true)),
            Verdict::Approved
        );
        // Issue #23 item 8: approved is not enough.
        let refused = |v: Verdict| matches!(v, Verdict::Refused(r) if r.blame == Blame::Provider);
        for other in [
            format!(r#"{{"status":"approved","sid":"VE01","to":"{TO}"}}"#),
            body("approved", false),
            format!(r#"{{"status":"approved","valid":true,"sid":"VE02","to":"{TO}"}}"#),
            r#"{"status":"approved","valid":true,"sid":"VE01","to":"+14255550111"}"#.to_string(),
            r#"{"status":"approved","valid":true,"sid":"VE01"}"#.to_string(),
        ] {
            assert!(refused(check(StatusCode::OK, &other)), "{other}");
        }
        // Started by another instance (no SID known here): the number still has to match.
        let anywhere = Expected { to: TO, sid: None };
        let other_sid = format!(r#"{{"status":"approved","valid":true,"sid":"VE09","to":"{TO}"}}"#);
        assert_eq!(
            check_outcome(StatusCode::OK, other_sid.as_bytes(), anywhere),
            Verdict::Approved
        );
        for s in ["pending", "canceled", "expired", "max_attempts_reached"] {
            assert_eq!(check(StatusCode::OK, &body(s, false)), Verdict::Denied);
        }
        assert_eq!(
            check(StatusCode::NOT_FOUND, r#"{"code":20404}"#),
            Verdict::Denied
        );
        assert_eq!(
            check(StatusCode::TOO_MANY_REQUESTS, r#"{"code":60202}"#),
            Verdict::Denied
        );
        for (status, body) in [
            (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"code":20429}"#.to_string(),
            ),
            (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
            (StatusCode::OK, body("weird", false)),
        ] {
            assert!(matches!(check(status, &body), Verdict::Failed(_)), "{body}");
        }
    }

    #[test]
    fn sends_are_bounded_per_user_and_window() {
        let mut sends = Sends {
            max: 2,
            window: Duration::from_secs(60),
            by_user: HashMap::new(),
        };
        let t0 = Instant::now();
        assert!(sends.admit("Alice", t0).is_ok());
        assert!(sends.admit("alice", t0).is_ok());
        assert!(sends.admit("ALICE", t0).is_err(), "case-insensitive");
        assert!(sends.admit("bob", t0).is_ok(), "per user");
        assert!(sends.admit("alice", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn codes_and_channels() {
        assert!(plausible_code("123456"));
        assert!(plausible_code("1234"));
        assert!(plausible_code("ABCDEF1234"));
        assert!(!plausible_code("123"));
        assert!(!plausible_code("12345678901"));
        assert!(!plausible_code("12 456"));
        assert!(!plausible_code("12345'"));
        assert_eq!(channel(Mode3::SmsText), Some("sms"));
        assert_eq!(channel(Mode3::VoiceCall), Some("call"));
        assert_eq!(channel(Mode3::PhoneApp), None);
        assert_eq!(channel(Mode3::OathToken), None);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(Zeroizing::new(b"topsecret".to_vec()));
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
