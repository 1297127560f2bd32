//! The Duo provider: Duo Security's Auth API v2 (<https://duo.com/docs/authapi>).
//!
//! One attempt is three steps, each a signed HTTPS request to the Auth API host:
//!
//! 1. `POST /auth/v2/preauth` (`username`, `ipaddr`): may the user authenticate, and with what?
//!    `allow` (a Duo bypass user) is a bypass, not an approval: `true` with CallResult 7 and a
//!    `provider_bypass` audit event, or a denial with `allow_bypass = false`; `deny` and `enroll` (not
//!    enrolled) deny — fail secure: asking another provider would bypass Duo's own policy;
//!    `auth` goes on.
//! 2. `POST /auth/v2/auth` with `factor=push` or `factor=phone`, `device=auto`, `async=1` (for a
//!    push also `type` and `pushinfo` naming the calling application): returns a `txid`.
//! 3. `GET /auth/v2/auth_status?txid=…`, repeated while the `result` is `waiting` (Duo long-polls
//!    it, and pfgate waits `poll_interval_ms` between answers), until `allow` or `deny`.
//!
//! | Duo says | [`Verdict`] |
//! |---|---|
//! | preauth `allow` | `Bypassed` (CallResult 7); `Denied` with `allow_bypass = false` |
//! | preauth `deny`, `enroll`; no device able to take the factor | `Denied` |
//! | auth_status `allow` | `Approved` |
//! | auth_status `deny` / `timeout` | `NotAnswered` |
//! | auth_status `deny` / `push_failed` (the push could not be delivered) | `Failed` |
//! | auth_status `deny` / `deny`, `fraud`, `locked_out` or any other status | `Denied` |
//! | `stat: FAIL`, HTTP non-2xx, network error, timeout, malformed JSON | `Failed` |
//!
//! `Failed` is what lets the router fail over, so it is kept for "the person was not asked":
//! Duo unreachable, a bad signature or key, a malformed answer, a push that could not be sent.
//!
//! **Signing** ([`sign`]) is Duo's documented request signature: the canonical request is five
//! lines joined by `\n` — the `Date` header (RFC 2822), the method in upper case, the API host in
//! lower case, the path, and the parameters ([`canonical_params`]: RFC 3986 percent-encoding,
//! unreserved characters kept, upper-case hex, sorted, `key=value` joined by `&`) — and the
//! `Authorization` header is HTTP Basic with the integration key as user and the lower-case hex
//! HMAC of the canonical request, keyed with the secret key, as password. Duo documents HMAC-SHA1
//! (its example value) and accepts HMAC-SHA512 over the same canonical request; its own client
//! libraries now sign with HMAC-SHA512, and so does pfgate (SHA-1 is not offered). Parameters go
//! in the query string for `GET` and as an `application/x-www-form-urlencoded` body for `POST`,
//! encoded exactly as they were signed.
//!
//! Duo's responses are not signed; TLS (certificate verification always on, HTTPS required except
//! to a loopback `base_url`) is what authenticates them.
//!
//! The engine owns the deadline and drops the future when it passes, which drops the request in
//! flight and stops polling. The secret key comes from an environment variable or a file, never
//! the configuration itself, and is never logged, put in a verdict reason or printed by `Debug`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha512;
use url::Url;
use zeroize::Zeroizing;

use super::common::http::{self, BaseUrl, BaseUrlRules};
use super::common::settings::{resolve_paths, Problems};
use super::common::BuildError;
use super::settings::{BuildContext, ProviderConfig};
use super::{AuthAttempt, Provider, ProviderError, ProviderErrorKind as Kind, Verdict};
use crate::core::secret::{self, Secret, SecretKeys};

/// Default for `request_timeout_secs` (`preauth`, `auth`, `check`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `poll_interval_ms`: the wait between two `auth_status` answers.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// The longest one `auth_status` request may take: Duo holds it open (long poll) until the
/// transaction changes state. The engine's deadline (at most 99 s) normally ends the wait first.
pub const AUTH_STATUS_TIMEOUT: Duration = Duration::from_secs(75);
/// The longest an attempt polls when nobody enforces a deadline (the engine always does); it then
/// ends as `NotAnswered`.
pub const MAX_ATTEMPT: Duration = Duration::from_secs(120);
/// The largest response body pfgate reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest text taken from a Duo message into a failure reason (characters).
const MAX_REASON_CHARS: usize = 200;
/// The longest application name shown in a push (characters).
const MAX_APP_CHARS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Signing (Duo Auth API "Request Authentication")
// ---------------------------------------------------------------------------------------------

/// Percent-encodes `s` as Duo's canonical form requires (RFC 3986): every byte of its UTF-8 form
/// except the unreserved `A–Z a–z 0–9 - . _ ~` becomes `%XX` with upper-case hex (a space is
/// `%20`, never `+`).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The parameters line of the canonical request: each key and value [`encode`]d, the pairs sorted
/// by encoded key then encoded value, written `key=value` and joined by `&`. Empty without
/// parameters (the line is then blank). This is also exactly the query string or form body sent.
pub fn canonical_params(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request: `date`, upper-case `method`, lower-case `host`, `path` and
/// [`canonical_params`], joined by `\n` (no trailing newline).
pub fn canonical_request(
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    [
        date.to_string(),
        method.to_ascii_uppercase(),
        host.to_ascii_lowercase(),
        path.to_string(),
        canonical_params(params),
    ]
    .join("\n")
}

/// The `Authorization` header value for a request: `Basic ` + base64(`integration_key` + `:` +
/// lower-case hex HMAC-SHA512(`secret_key`, [`canonical_request`])). `date` must be the `Date`
/// header sent, `host` the Duo API host name (not a test or proxy address).
pub fn sign(
    integration_key: &str,
    secret_key: &[u8],
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    let canonical = canonical_request(date, method, host, path, params);
    // HMAC takes keys of any length; the error branch cannot happen.
    let signature = match <Hmac<Sha512> as KeyInit>::new_from_slice(secret_key) {
        Ok(mut mac) => {
            mac.update(canonical.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    let credentials = Zeroizing::new(format!("{integration_key}:{signature}"));
    format!("Basic {}", BASE64.encode(credentials.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `t` as an RFC 2822 date in UTC, the form Duo's `Date` header takes:
/// `Tue, 21 Aug 2012 17:29:18 -0000`.
pub fn rfc2822_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(m - 1).unwrap_or(0)];
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} -0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// Username mapping
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Username,
    User,
    Domain,
}

/// How a pfgate username becomes a Duo username: a text with placeholders.
///
/// - `{username}`: the username as stored in pfgate (`CONTOSO\jdoe`, `jdoe@contoso.com`, `jdoe`);
/// - `{user}` (alias `{sam}`): the account part — after the `\` of `DOMAIN\name`, else before the
///   last `@` of `name@domain`, else the whole username;
/// - `{domain}`: the other part (`CONTOSO`, `contoso.com`), empty when there is none.
///
/// Anything else is copied. `{user}` maps a UPN to its sAMAccountName-style name, `{user}@corp.example`
/// rewrites the domain. A `{` or `}` that is not part of a placeholder is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameTemplate {
    pieces: Vec<Piece>,
}

impl Default for UsernameTemplate {
    fn default() -> Self {
        Self {
            pieces: vec![Piece::Username],
        }
    }
}

impl UsernameTemplate {
    /// Parses a template; the error names what is wrong.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            if rest[i..].starts_with('}') {
                return Err(format!("'{template}' has a '}}' without a '{{'"));
            }
            let after = &rest[i + 1..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("'{template}' has a '{{' without a '}}'"))?;
            let name = &after[..end];
            let piece = match name {
                "username" => Piece::Username,
                "user" | "sam" => Piece::User,
                "domain" => Piece::Domain,
                other => {
                    return Err(format!(
                    "'{template}': unknown placeholder {{{other}}} (use {{username}}, {{user}}, \
                         {{sam}} or {{domain}})"
                ))
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = &after[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        if !pieces.iter().any(|p| !matches!(p, Piece::Text(_))) {
            return Err(format!(
                "'{template}' has no placeholder, so every user would be the same Duo user"
            ));
        }
        Ok(Self { pieces })
    }

    /// The Duo username for a pfgate username.
    pub fn apply(&self, username: &str) -> String {
        let (user, domain) = split_username(username);
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Username => out.push_str(username),
                Piece::User => out.push_str(user),
                Piece::Domain => out.push_str(domain),
            }
        }
        out
    }
}

/// (account, domain) of `DOMAIN\name`, `name@domain` or `name`.
fn split_username(username: &str) -> (&str, &str) {
    if let Some((domain, user)) = username.split_once('\\') {
        (user, domain)
    } else if let Some((user, domain)) = username.rsplit_once('@') {
        (user, domain)
    } else {
        (username, "")
    }
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// Which Duo factor an attempt uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Factor {
    /// Duo Push when one of the user's devices can take it, else a phone call.
    #[default]
    Auto,
    /// Duo Push only.
    Push,
    /// A Duo phone call only.
    Phone,
}

impl Factor {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "push" => Some(Self::Push),
            "phone" => Some(Self::Phone),
            _ => None,
        }
    }
}

/// `[providers.<name>]` with `kind = "duo"`, as configured.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DuoSettings {
    /// The Auth API host name from the Duo Admin Panel (`api-xxxxxxxx.duosecurity.com`). Requests
    /// are signed for this host.
    pub api_host: String,
    /// Where requests go, when not `https://{api_host}` (tests, an air-gapped site's relay):
    /// `https://…`, or `http://` to a loopback address only. Scheme, host and port only.
    pub base_url: Option<String>,
    /// The integration key (`DI…`), sent as the HTTP Basic user.
    pub integration_key: String,
    /// Name of the environment variable holding the secret key.
    pub secret_key_env: Option<String>,
    /// File holding the secret key (surrounding whitespace ignored).
    pub secret_key_file: Option<PathBuf>,
    /// How a pfgate username becomes a Duo username (see [`UsernameTemplate`]); default
    /// `{username}`.
    pub username_template: Option<String>,
    /// `auto` (default: push when the user's device can, else phone), `push` or `phone`.
    pub factor: Option<String>,
    /// Timeout of the `preauth`, `auth` and `check` requests, 1–60 s (default 10).
    pub request_timeout_secs: Option<u64>,
    /// Wait between two `auth_status` answers, 100–10000 ms (default 1000).
    pub poll_interval_ms: Option<u64>,
    /// What a preauth `allow` does — Duo letting the user through without a second factor (the
    /// user's bypass status in Duo, or a policy such as a new-user policy of "allow"). `true`
    /// (default): honoured as MFA Server reported a bypass, `true` with CallResult 7 "Bypassed
    /// Auth" and a `provider_bypass` audit event at WARN — never as an approval by the person.
    /// `false`: refused (CallResult 150), for a site where only pfgate's own policy may exempt
    /// anyone from MFA, whatever Duo's administrators configure.
    pub allow_bypass: Option<bool>,
}

/// The secret key's two settings keys.
fn secret_keys(s: &DuoSettings) -> SecretKeys<'_> {
    SecretKeys {
        env_key: "secret_key_env",
        env: s.secret_key_env.as_deref(),
        file_key: "secret_key_file",
        file: s.secret_key_file.as_deref(),
        what: "Duo secret key",
    }
}

/// Settings after checking.
struct Checked {
    base: BaseUrl,
    host: String,
    secret: Secret,
    template: UsernameTemplate,
    factor: Factor,
    request_timeout: Duration,
    poll_interval: Duration,
}

impl DuoSettings {
    /// A provider named `name` (for logs and audit), with its secret key loaded.
    pub fn build(&self, name: &str) -> Result<DuoProvider, BuildError> {
        let c = self.check().map_err(BuildError::invalid("Duo"))?;
        let client = http::client_builder(
            "duo",
            c.request_timeout,
            AUTH_STATUS_TIMEOUT,
            c.base.loopback,
        )
        .build()
        .map_err(BuildError::client("Duo"))?;
        Ok(DuoProvider {
            name: name.to_string(),
            base: c.base.url,
            host: c.host,
            integration_key: self.integration_key.trim().to_string(),
            secret: c.secret,
            template: c.template,
            factor: c.factor,
            client,
            request_timeout: c.request_timeout,
            poll_interval: c.poll_interval,
            allow_bypass: self.allow_bypass.unwrap_or(true),
        })
    }

    /// The API host (lower case) and where requests go.
    fn check_host(&self, problems: &mut Problems) -> (String, Option<BaseUrl>) {
        let host = self.api_host.trim().to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.starts_with(['.', '-'])
            && !host.ends_with(['.', '-']);
        if !host_ok {
            problems.push(
                "api_host",
                format!(
                    "'{}' is not a host name (give the API hostname from the Duo Admin Panel, \
                     e.g. api-xxxxxxxx.duosecurity.com, without https:// or a path)",
                    self.api_host
                ),
            );
        }
        let base = match &self.base_url {
            None if host_ok => problems.take_as(
                "api_host",
                Url::parse(&format!("https://{host}/"))
                    .map(|url| BaseUrl {
                        url,
                        loopback: false,
                    })
                    .map_err(|e| format!("'{host}' does not make a URL: {e}")),
            ),
            None => None,
            Some(s) => problems.take_as("base_url", check_base_url(s)),
        };
        (host, base)
    }

    fn check(&self) -> Result<Checked, Vec<(String, String)>> {
        let mut problems = Problems::default();
        let (host, base) = self.check_host(&mut problems);

        let ikey = self.integration_key.trim();
        if ikey.is_empty() || !ikey.bytes().all(|b| b.is_ascii_alphanumeric()) {
            problems.push(
                "integration_key",
                "the integration key (DI…, from the Duo Admin Panel) must be letters and digits",
            );
        }

        let secret = problems.take(secret::load_required(
            secret_keys(self),
            "the secret key is required: secret_key_env (an environment variable's name) \
             or secret_key_file (a file); it is never written in the configuration itself",
            check_secret,
        ));

        let template = match self.username_template.as_deref() {
            None => UsernameTemplate::default(),
            Some(t) => UsernameTemplate::parse(t).unwrap_or_else(|reason| {
                problems.push("username_template", reason);
                UsernameTemplate::default()
            }),
        };

        let factor = match self.factor.as_deref() {
            None => Factor::Auto,
            Some(f) => Factor::parse(f).unwrap_or_else(|| {
                problems.push("factor", format!("'{f}' is not one of auto, push, phone"));
                Factor::Auto
            }),
        };

        let request_timeout =
            problems.request_timeout(self.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT);
        let poll_interval = problems.poll_interval(self.poll_interval_ms, DEFAULT_POLL_INTERVAL);

        let checked = base.zip(secret).map(|(base, secret)| Checked {
            base,
            host,
            secret,
            template,
            factor,
            request_timeout,
            poll_interval,
        });
        problems.finish(checked)
    }
}

impl ProviderConfig for DuoSettings {
    /// Makes a relative `secret_key_file` relative to `dir` (the configuration file's directory).
    fn resolve_relative_to(&mut self, dir: &Path) {
        resolve_paths(dir, [&mut self.secret_key_file]);
    }

    /// Every problem, as `(key, reason)` for `pfgate check-config`. The secret is read, so a
    /// missing variable or file is reported now.
    fn validate(&self) -> Vec<(String, String)> {
        self.check().err().unwrap_or_default()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(DuoSettings::build(self, cx.name)?))
    }
}

/// `(url, loopback)` of a `base_url`: https, or http to a loopback address; no path, query,
/// fragment or credentials (Duo signs the path, so a prefix would break every signature).
fn check_base_url(s: &str) -> Result<BaseUrl, String> {
    http::check_base_url(
        s,
        BaseUrlRules {
            credentials_hint: "",
            root_only: Some("Duo signs the request path"),
        },
    )
}

fn check_secret(bytes: Zeroizing<Vec<u8>>, origin: &str) -> Result<Secret, String> {
    secret::printable_token(
        &bytes,
        origin,
        "secret key",
        "copy it from the Duo Admin Panel",
    )
}

// ---------------------------------------------------------------------------------------------
// Duo's answers
// ---------------------------------------------------------------------------------------------

/// Every Auth API answer: `{"stat":"OK","response":…}` or `{"stat":"FAIL","code":…,"message":…}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    stat: String,
    #[serde(default)]
    response: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_detail: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PreauthResponse {
    result: String,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    devices: Vec<Device>,
}

#[derive(Debug, Deserialize)]
struct Device {
    #[serde(default)]
    capabilities: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AuthResponse {
    txid: String,
}

#[derive(Debug, Deserialize)]
struct StatusResponse {
    result: String,
    #[serde(default)]
    status: Option<String>,
}

/// A Duo text cut to a length safe for logs and reasons, control characters dropped.
fn clip(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect()
}

fn fail_text(e: &Envelope) -> String {
    let code = match &e.code {
        Some(serde_json::Value::Number(n)) => format!(" {n}"),
        Some(serde_json::Value::String(s)) => format!(" {}", clip(s)),
        _ => String::new(),
    };
    let message = e.message.as_deref().map(clip).unwrap_or_default();
    match e.message_detail.as_deref().map(clip) {
        Some(d) if !d.is_empty() => format!("FAIL{code} {message} ({d})"),
        _ => format!("FAIL{code} {message}"),
    }
}

fn describe(e: &reqwest::Error, path: &str, timeout: Duration) -> ProviderError {
    http::transport_error(e, &format!("duo {path}"), Some(timeout))
}

// ---------------------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------------------

/// Duo's Auth API v2 (see the module documentation).
pub struct DuoProvider {
    name: String,
    base: Url,
    host: String,
    integration_key: String,
    secret: Secret,
    template: UsernameTemplate,
    factor: Factor,
    client: reqwest::Client,
    request_timeout: Duration,
    poll_interval: Duration,
    /// `allow_bypass`: whether a preauth `allow` is honoured (as a bypass) or refused.
    allow_bypass: bool,
}

impl fmt::Debug for DuoProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DuoProvider")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("host", &self.host)
            .field("integration_key", &self.integration_key)
            .field("secret", &self.secret)
            .field("template", &self.template)
            .field("factor", &self.factor)
            .field("request_timeout", &self.request_timeout)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl DuoProvider {
    /// Where requests go (`https://{api_host}/` unless `base_url` says otherwise).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The Duo username for a pfgate username (the template applied).
    pub fn duo_username(&self, username: &str) -> String {
        self.template.apply(username)
    }

    /// One signed request; the `response` member of an `OK` answer, decoded. Errors are reasons
    /// for the audit log (no secret, no signature).
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<T, ProviderError> {
        let date = rfc2822_date(SystemTime::now());
        let authorization = Zeroizing::new(sign(
            &self.integration_key,
            self.secret.expose(),
            &date,
            method.as_str(),
            &self.host,
            path,
            params,
        ));
        let encoded = canonical_params(params);
        let mut url = self.base.clone();
        url.set_path(path);
        let mut request = if method == Method::GET {
            if !encoded.is_empty() {
                url.set_query(Some(&encoded));
            }
            self.client.get(url)
        } else {
            self.client
                .request(method.clone(), url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(encoded)
        };
        request = request
            .timeout(timeout)
            .header(reqwest::header::DATE, &date)
            .header(reqwest::header::AUTHORIZATION, authorization.as_str())
            .header(reqwest::header::ACCEPT, "application/json");
        let mut response = request
            .send()
            .await
            .map_err(|e| describe(&e, path, timeout))?;
        let status = response.status();
        let bytes = http::read_capped(
            &mut response,
            &format!("duo {path}"),
            MAX_RESPONSE_BYTES,
            Some(timeout),
        )
        .await?;
        let envelope = serde_json::from_slice::<Envelope>(&bytes);
        tracing::debug!(provider = %self.name, path, status = status.as_u16(), "duo answer");
        if !status.is_success() {
            let detail = match envelope {
                Ok(e) if e.stat == "FAIL" => {
                    format!("duo {path}: HTTP {} {}", status.as_u16(), fail_text(&e))
                }
                _ => format!("duo {path}: HTTP {}", status.as_u16()),
            };
            return Err(ProviderError::new(Kind::HttpStatus, detail));
        }
        let bad = |detail: String| ProviderError::new(Kind::BadAnswer, detail);
        let envelope = envelope.map_err(|e| {
            bad(format!(
                "duo {path}: malformed answer ({})",
                clip(&e.to_string())
            ))
        })?;
        match envelope.stat.as_str() {
            "OK" => {}
            "FAIL" => {
                return Err(ProviderError::new(
                    Kind::Rejected,
                    format!("duo {path}: {}", fail_text(&envelope)),
                ))
            }
            other => return Err(bad(format!("duo {path}: unknown stat '{}'", clip(other)))),
        }
        let body = envelope
            .response
            .ok_or_else(|| bad(format!("duo {path}: answer without a response")))?;
        serde_json::from_value(body).map_err(|e| {
            bad(format!(
                "duo {path}: malformed response ({})",
                clip(&e.to_string())
            ))
        })
    }

    async fn run(&self, attempt: &AuthAttempt) -> Result<Verdict, ProviderError> {
        let started = Instant::now();
        let username = self.duo_username(&attempt.username);
        if username.trim().is_empty() {
            return Err(ProviderError::new(
                Kind::Local,
                format!(
                    "the username template gives an empty Duo username for '{}'",
                    attempt.username
                ),
            ));
        }
        let ip = attempt
            .initiating_ip
            .trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_string());

        let mut params: Vec<(&str, &str)> = vec![("username", &username)];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        let pre: PreauthResponse = self
            .call(
                Method::POST,
                "/auth/v2/preauth",
                &params,
                self.request_timeout,
            )
            .await?;
        let status_msg = pre.status_msg.as_deref().map(clip).unwrap_or_default();
        match pre.result.as_str() {
            "auth" => {}
            "allow" if self.allow_bypass => {
                // Not the person's approval: its own outcome (7) and audit event, at WARN.
                return Ok(Verdict::Bypassed(format!(
                    "Duo preauth allows user {username:?} without a second factor (Duo bypass): \
                     {status_msg}"
                )));
            }
            "allow" => {
                tracing::warn!(provider = %self.name, duo_username = %username, status_msg,
                    "Duo preauth allows this user without a second factor (Duo bypass); refused (allow_bypass = false)");
                return Ok(Verdict::Denied);
            }
            "deny" => {
                tracing::info!(provider = %self.name, duo_username = %username, status_msg,
                    "Duo preauth denies this user");
                return Ok(Verdict::Denied);
            }
            "enroll" => {
                tracing::info!(provider = %self.name, duo_username = %username,
                    "the user is not enrolled in Duo; denied");
                return Ok(Verdict::Denied);
            }
            other => {
                return Err(ProviderError::new(
                    Kind::BadAnswer,
                    format!("duo /auth/v2/preauth: unknown result '{}'", clip(other)),
                ))
            }
        }

        let can = |capability: &str| {
            pre.devices
                .iter()
                .any(|d| d.capabilities.iter().any(|c| c == capability))
        };
        let factor = match self.factor {
            Factor::Auto if can("push") => "push",
            Factor::Auto | Factor::Phone if can("phone") => "phone",
            Factor::Push if can("push") => "push",
            _ => {
                tracing::info!(provider = %self.name, duo_username = %username, factor = ?self.factor,
                    "no Duo device of this user can take the factor; denied");
                return Ok(Verdict::Denied);
            }
        };

        // Shown on the person's phone: no bidi or invisible characters (issue #23 item 9).
        let app: String = super::display::clean(&attempt.application_name)
            .chars()
            .take(MAX_APP_CHARS)
            .collect();
        let app = app.trim();
        let pushinfo = format!("from={}", encode(app));
        let mut params: Vec<(&str, &str)> = vec![
            ("username", &username),
            ("factor", factor),
            ("device", "auto"),
            ("async", "1"),
        ];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        if factor == "push" && !app.is_empty() {
            params.push(("type", app));
            params.push(("pushinfo", &pushinfo));
        }
        let auth: AuthResponse = self
            .call(Method::POST, "/auth/v2/auth", &params, self.request_timeout)
            .await?;
        if auth.txid.is_empty() {
            return Err(ProviderError::new(
                Kind::BadAnswer,
                "duo /auth/v2/auth: empty txid",
            ));
        }

        self.wait(&auth.txid, &username, started).await
    }

    /// Polls `auth_status` for `txid` until Duo decides (or [`MAX_ATTEMPT`] passes since
    /// `started`).
    async fn wait(
        &self,
        txid: &str,
        username: &str,
        started: Instant,
    ) -> Result<Verdict, ProviderError> {
        loop {
            let st: StatusResponse = self
                .call(
                    Method::GET,
                    "/auth/v2/auth_status",
                    &[("txid", txid)],
                    AUTH_STATUS_TIMEOUT,
                )
                .await?;
            let status = st.status.as_deref().unwrap_or("");
            match st.result.as_str() {
                "waiting" => {
                    if started.elapsed() >= MAX_ATTEMPT {
                        return Ok(Verdict::NotAnswered);
                    }
                    tokio::time::sleep(self.poll_interval).await;
                }
                "allow" => return Ok(Verdict::Approved),
                "deny" => {
                    return Ok(match status {
                        "timeout" => Verdict::NotAnswered,
                        "push_failed" => {
                            return Err(ProviderError::new(
                                Kind::Rejected,
                                "duo: the push could not be delivered",
                            ))
                        }
                        "fraud" => {
                            tracing::warn!(provider = %self.name, duo_username = %username,
                                "the person marked this Duo request as fraudulent");
                            Verdict::Denied
                        }
                        other => {
                            tracing::info!(provider = %self.name, duo_username = %username,
                                status = %clip(other), "Duo denied");
                            Verdict::Denied
                        }
                    })
                }
                other => {
                    return Err(ProviderError::new(
                        Kind::BadAnswer,
                        format!("duo /auth/v2/auth_status: unknown result '{}'", clip(other)),
                    ))
                }
            }
        }
    }
}

#[async_trait]
impl Provider for DuoProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict {
        match self.run(attempt).await {
            Ok(v) => v,
            Err(reason) => {
                tracing::warn!(provider = %self.name, %reason, "Duo attempt failed");
                Verdict::Failed(reason)
            }
        }
    }

    /// A signed `GET /auth/v2/check`: Duo is reachable and accepts the keys and signature.
    async fn healthy(&self) -> bool {
        match self
            .call::<serde_json::Value>(Method::GET, "/auth/v2/check", &[], self.request_timeout)
            .await
        {
            Ok(_) => true,
            Err(reason) => {
                tracing::warn!(provider = %self.name, %reason, "Duo check failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Duo's documented example (https://duo.com/docs/authapi, "Authentication"): its HMAC-SHA1
    // result is 2d97d6166319781b5a3a07af39d366f491234edc; the HMAC-SHA512 value below is the same
    // canonical request under SHA-512 (computed with Python's hmac/hashlib).
    const IKEY: &str = "DIWJ8X6AEYOR5OMC6TQ1";
    const SKEY: &str = "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep";
    const DATE: &str = "Tue, 21 Aug 2012 17:29:18 -0000";

    #[test]
    fn canonical_request_matches_duo_example() {
        let params = [("username", "root"), ("realname", "First Last")];
        assert_eq!(
            canonical_request(
                DATE,
                "post",
                "API-xxxxxxxx.duosecurity.com",
                "/accounts/v1/account/list",
                &params
            ),
            "Tue, 21 Aug 2012 17:29:18 -0000\nPOST\napi-xxxxxxxx.duosecurity.com\n\
             /accounts/v1/account/list\nrealname=First%20Last&username=root"
        );
        assert_eq!(
            sign(
                IKEY,
                SKEY.as_bytes(),
                DATE,
                "POST",
                "api-xxxxxxxx.duosecurity.com",
                "/accounts/v1/account/list",
                &params
            ),
            "Basic RElXSjhYNkFFWU9SNU9NQzZUUTE6MWJmZmI4OTI0MzQ4ZjdkYjdkYTllN2Q3ZDc0OWRlZDkzYWFmZDAyZDhlOTA0OTYwZGE3Yjk2YzU3NTEwMjIwMTg1YTY0YTI4MjdlZThmMjRhYzVkMzA4MDJhOWVlOTdlNTlkZTQ0YjMwNGIxODI0MmYwZDU5NmQxNWE4MTIyYWY="
        );
    }

    #[test]
    fn encoding_and_order() {
        assert_eq!(encode("a b+c/d@e~f-g.h_i"), "a%20b%2Bc%2Fd%40e~f-g.h_i");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(canonical_params(&[]), "");
        assert_eq!(
            canonical_params(&[("b", "2"), ("a", "z"), ("a", "y"), ("A", "1")]),
            "A=1&a=y&a=z&b=2"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc2822_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 -0000");
        assert_eq!(
            rfc2822_date(UNIX_EPOCH + Duration::from_secs(1_345_570_158)),
            DATE
        );
        assert_eq!(
            rfc2822_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 -0000"
        );
    }

    #[test]
    fn templates() {
        let t = |s: &str| UsernameTemplate::parse(s).unwrap();
        assert_eq!(t("{username}").apply("CONTOSO\\jdoe"), "CONTOSO\\jdoe");
        assert_eq!(t("{user}").apply("jdoe@contoso.com"), "jdoe");
        assert_eq!(t("{sam}").apply("CONTOSO\\jdoe"), "jdoe");
        assert_eq!(t("{user}").apply("jdoe"), "jdoe");
        assert_eq!(
            t("{user}@corp.example").apply("CONTOSO\\jdoe"),
            "jdoe@corp.example"
        );
        assert_eq!(
            t("{domain}/{user}").apply("jdoe@contoso.com"),
            "contoso.com/jdoe"
        );
        assert_eq!(t("x-{domain}").apply("jdoe"), "x-");
        assert!(UsernameTemplate::parse("{upn}").is_err());
        assert!(UsernameTemplate::parse("{user").is_err());
        assert!(UsernameTemplate::parse("user}").is_err());
        assert!(UsernameTemplate::parse("fixed").is_err());
    }

    #[test]
    fn settings_are_checked() {
        let s = DuoSettings {
            api_host: "https://api-x.duosecurity.com".into(),
            base_url: Some("http://example.com".into()),
            integration_key: "".into(),
            secret_key_env: Some("PFGATE_TEST_DUO_SKEY_UNSET_123".into()),
            secret_key_file: Some("/nonexistent".into()),
            username_template: Some("{nope}".into()),
            factor: Some("sms".into()),
            request_timeout_secs: Some(0),
            poll_interval_ms: Some(5),
            allow_bypass: None,
        };
        let keys: Vec<String> = s.validate().into_iter().map(|(k, _)| k).collect();
        for k in [
            "api_host",
            "base_url",
            "integration_key",
            "secret_key_env",
            "username_template",
            "factor",
            "request_timeout_secs",
            "poll_interval_ms",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not reported: {keys:?}");
        }
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080/").is_ok());
        assert!(check_base_url("https://relay.corp.example").is_ok());
        assert!(check_base_url("https://relay.corp.example/duo").is_err());
        assert!(check_base_url("http://relay.corp.example").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(Zeroizing::new(b"topsecret".to_vec()));
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
