//! The webhook provider: the universal adapter. An organisation that already reaches its people
//! some other way (its own telephony, a paging system, a chat bot, an in-house app) implements
//! three small HTTPS endpoints in any language and pfgate sends every second factor there.
//!
//! The protocol is specified for implementers in `docs/webhook.md` (with an OpenAPI file beside
//! it) and `examples/webhook-provider/` is a runnable Python service. In short:
//!
//! - `POST {base}/authentications` starts an attempt; `GET {base}/authentications/{request_id}` is
//!   polled (every `poll_interval_ms`, or as the service's `Retry-After` says, bounded to
//!   0.1–10 s) until the state is terminal: `success`, or `failed` with an `outcome`;
//! - `GET {base}/health` is the readiness check (200 with a signed body).
//!
//! **Why every message is signed, in both directions.** The service decides whether a person gets
//! in, so its answers must be authentic: TLS proves the host, but a misrouted proxy, a shared load
//! balancer or a compromised host name must not be able to say "success". Both sides share a secret
//! and sign each message with HMAC-SHA256 over a timestamp, the direction, the method and path (and
//! for responses the status code) and the body ([`signing_string`]). Binding the method and path
//! stops a signed request from being replayed to another endpoint; binding the request a response
//! answers (and pfgate checking the `request_id` in it) stops a captured "success" from being
//! replayed for another attempt; the timestamp window ([`verify`]) stops a captured message from
//! being replayed later. A response with a missing, wrong or stale signature is a provider failure
//! ([`Verdict::Failed`]), never an approval — so the engine fails over as for any other failure.
//!
//! Secrets come from an environment variable or a file, never from the configuration itself, and
//! never appear in logs, errors, verdict reasons or `Debug` output.
//!
//! The engine owns the deadline and drops the future when it passes; dropping it drops the request
//! in flight and polling stops. The service is told the deadline (`deadline` in the start request)
//! so it can stop ringing by itself.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;
use zeroize::Zeroizing;

use super::common::http::{self, BaseUrl, BaseUrlRules};
use super::common::settings::{resolve_paths, Problems};
use super::common::BuildError;
use super::settings::{BuildContext, ProviderConfig};
use super::{AuthAttempt, Provider, ProviderError, ProviderErrorKind as Kind, Verdict};
use crate::core::secret::{self, Secret, SecretKeys};
use crate::pfwssdk::Mode3;

/// Header carrying the signer's Unix time in seconds (decimal).
pub const TIMESTAMP_HEADER: &str = "X-Pfgate-Timestamp";
/// Header carrying the signature: `v1=<64 lowercase hex digits>`.
pub const SIGNATURE_HEADER: &str = "X-Pfgate-Signature";
/// The scheme label in [`SIGNATURE_HEADER`].
pub const SIGNATURE_SCHEME: &str = "v1";
/// The shortest shared secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Default for `signature_window_secs`.
pub const DEFAULT_SIGNATURE_WINDOW: Duration = Duration::from_secs(300);
/// Default for `request_timeout_secs`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `poll_interval_ms`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// Default deadline sent to the service when the engine's is not given ([`WebhookProvider::with_auth_timeout`]).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds on any wait between polls (the configured interval and `Retry-After` alike).
pub const MIN_POLL: Duration = Duration::from_millis(100);
/// See [`MIN_POLL`].
pub const MAX_POLL: Duration = Duration::from_secs(10);
/// The largest response body pfgate reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest failure reason taken from a service (characters).
const MAX_REASON_CHARS: usize = 200;

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

/// What a signature covers besides the timestamp and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed<'a> {
    /// A request pfgate sends. `path` is the request target exactly as sent on the request line
    /// (percent-encoded, with the base URL's path prefix), e.g. `/authentications/3F2A…`.
    Request {
        /// `GET` or `POST`.
        method: &'a str,
        /// The request target.
        path: &'a str,
    },
    /// A response the service sends, to the request with this method and path.
    Response {
        /// The HTTP status code of the response.
        status: u16,
        /// The method of the request answered.
        method: &'a str,
        /// The path of the request answered (as the request's own signature covered it).
        path: &'a str,
    },
}

/// The exact bytes that are signed. Lines are separated by a single `\n` (LF); the body follows the
/// last `\n` byte for byte (it may be empty, as for a `GET`):
///
/// ```text
/// request:   "pfgate-v1-request\n"  + timestamp + "\n" + METHOD + "\n" + path + "\n" + body
/// response:  "pfgate-v1-response\n" + timestamp + "\n" + status + "\n" + METHOD + "\n" + path + "\n" + body
/// ```
///
/// `timestamp` is the [`TIMESTAMP_HEADER`] value as sent, `status` is three decimal digits. No
/// field before the body can contain a line feed, so the string splits one way only, and the first
/// line keeps a request signature from ever being valid as a response signature.
pub fn signing_string(what: Signed<'_>, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let head = match what {
        Signed::Request { method, path } => {
            format!("pfgate-v1-request\n{timestamp}\n{method}\n{path}\n")
        }
        Signed::Response {
            status,
            method,
            path,
        } => format!("pfgate-v1-response\n{timestamp}\n{status}\n{method}\n{path}\n"),
    };
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Signs a message made at `timestamp` (Unix seconds): the value for [`SIGNATURE_HEADER`],
/// `v1=` + lowercase hex of HMAC-SHA256(secret, [`signing_string`]).
pub fn sign(secret: &[u8], what: Signed<'_>, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &signing_string(what, &timestamp.to_string(), body));
    format!("{SIGNATURE_SCHEME}={}", hex(tag.as_ref()))
}

/// Why a signature was refused. The texts name no secret and no signature value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No timestamp header.
    #[error("no {TIMESTAMP_HEADER} header")]
    MissingTimestamp,
    /// No signature header.
    #[error("no {SIGNATURE_HEADER} header")]
    MissingSignature,
    /// The timestamp is not decimal Unix seconds.
    #[error("{TIMESTAMP_HEADER} is not Unix seconds")]
    BadTimestamp,
    /// The timestamp is outside the window around the verifier's clock (a replay, or clocks apart).
    #[error("the timestamp is {skew} s away from this clock, more than the {window} s window (replayed, or clocks apart)")]
    OutsideWindow {
        /// How far the timestamp is from now, in seconds (either direction).
        skew: u64,
        /// The window, in seconds.
        window: u64,
    },
    /// No `v1=` entry matched.
    #[error("the signature does not match")]
    Mismatch,
}

/// Verifies a message: the timestamp header must be decimal Unix seconds within `window` of `now`
/// (either direction), and one `v1=<hex>` entry of the signature header (entries are separated by
/// commas; other schemes are ignored) must equal the HMAC over [`signing_string`], compared in
/// constant time. `timestamp` and `signature` are the header values as received.
pub fn verify(
    secret: &[u8],
    what: Signed<'_>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    window: Duration,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp)?.trim();
    let signature = signature.ok_or(SignatureError::MissingSignature)?;
    if timestamp.is_empty()
        || timestamp.len() > 18
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::BadTimestamp);
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.abs_diff(ts);
    if skew > window.as_secs() {
        return Err(SignatureError::OutsideWindow {
            skew,
            window: window.as_secs(),
        });
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let message = signing_string(what, timestamp, body);
    let matched = signature
        .split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(scheme, _)| scheme.trim() == SIGNATURE_SCHEME)
        .filter_map(|(_, value)| unhex(value.trim()))
        .any(|tag| hmac::verify(&key, &message, &tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Seconds since the Unix epoch, the clock signatures use.
pub fn now_unix() -> i64 {
    crate::core::clock::now_unix()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Hex (either case) of exactly 32 bytes, else `None`.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Wire types
// ---------------------------------------------------------------------------------------------

/// The body of `POST {base}/authentications`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// pfgate's `authenticationRequestId` (32 upper-case hex digits); the service's key for the
    /// attempt.
    pub request_id: String,
    /// The username as the caller sent it.
    pub username: String,
    /// The number, E.164 with `+` (`+14255550100`).
    pub phone: String,
    /// The extension's digits, empty when none.
    pub extension: String,
    /// `voiceCall`, `smsText`, `phoneApp` or `oathToken`.
    pub mode: String,
    /// The calling application's name (`MIM`, …), possibly empty.
    pub application_name: String,
    /// The IP address of the person authenticating as the caller reported it, possibly empty.
    pub initiating_ip: String,
    /// The address of the system that called pfgate.
    pub caller_ip: String,
    /// Unix seconds after which pfgate no longer waits; the service should stop trying by then.
    pub deadline: i64,
}

/// The state the service answers with, on start and on every poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateResponse {
    /// The attempt this state is for (must equal the request's).
    pub request_id: String,
    /// `pending`, `success` or `failed`.
    pub status: String,
    /// With `failed`: `denied`, `not_answered`, `hung_up` or `error`; with `success`: `approved`
    /// or absent; ignored with `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Free text for the audit log (at most 200 characters are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `mode` value for a [`Mode3`]; `invalid`/`unspecified` are sent as `voiceCall`, the
/// engine's own default.
pub fn mode_name(mode: Mode3) -> &'static str {
    match mode {
        Mode3::SmsText => "smsText",
        Mode3::PhoneApp => "phoneApp",
        Mode3::OathToken => "oathToken",
        Mode3::VoiceCall | Mode3::Invalid | Mode3::Unspecified => "voiceCall",
    }
}

/// What a state means: `None` while pending, else the verdict.
pub fn interpret(state: &StateResponse) -> Option<Verdict> {
    let reason = || {
        state
            .reason
            .as_deref()
            .map(clean_reason)
            .filter(|r| !r.is_empty())
    };
    match state.status.as_str() {
        "pending" => None,
        "success" => Some(match state.outcome.as_deref() {
            None | Some("approved") => Verdict::Approved,
            Some(other) => Verdict::failed(
                Kind::BadAnswer,
                format!(
                    "webhook answered success with outcome '{}' (only 'approved' goes with \
                     success)",
                    clean_reason(other)
                ),
            ),
        }),
        "failed" => Some(match state.outcome.as_deref() {
            Some("denied") => Verdict::Denied,
            Some("not_answered") => Verdict::NotAnswered,
            Some("hung_up") => Verdict::HungUp,
            Some("error") => Verdict::failed(
                Kind::Rejected,
                reason().unwrap_or_else(|| "webhook reported an error".to_string()),
            ),
            None => Verdict::failed(
                Kind::Rejected,
                format!(
                    "webhook failed without an outcome{}",
                    reason().map(|r| format!(": {r}")).unwrap_or_default()
                ),
            ),
            Some(other) => Verdict::failed(
                Kind::BadAnswer,
                format!(
                    "webhook failed with unknown outcome '{}'",
                    clean_reason(other)
                ),
            ),
        }),
        other => Some(Verdict::failed(
            Kind::BadAnswer,
            format!("webhook answered unknown status '{}'", clean_reason(other)),
        )),
    }
}

/// A service-provided text made safe for one log line: control characters become spaces, at most
/// 200 characters.
fn clean_reason(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

/// `Retry-After` in seconds, bounded to [`MIN_POLL`]..=[`MAX_POLL`]; `None` when absent or not
/// a number of seconds (an HTTP date is not honoured: the configured interval applies).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(MAX_POLL.as_secs())).clamp(MIN_POLL, MAX_POLL))
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// `[providers.<name>]` with `kind = "webhook"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// `https://…` (or `http://` to a loopback host: `127.0.0.1`, `[::1]`, `localhost`). The
    /// endpoints are `{base_url}/authentications`, `…/authentications/{id}`, `…/health`.
    pub base_url: String,
    /// Name of the environment variable holding the shared secret.
    pub secret_env: Option<String>,
    /// File holding the shared secret (one trailing newline is ignored).
    pub secret_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the service; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// PEM CA certificate(s): when set, only these are trusted for the service's certificate.
    pub ca_file: Option<PathBuf>,
    /// Timeout of each HTTP request, 1–60 s (default 10).
    pub request_timeout_secs: Option<u64>,
    /// Wait between polls when the service gives no `Retry-After`, 100–10000 ms (default 1000).
    pub poll_interval_ms: Option<u64>,
    /// How far a response's timestamp may be from pfgate's clock, 1–3600 s (default 300).
    pub signature_window_secs: Option<u64>,
}

/// The shared secret's two settings keys.
fn secret_keys(s: &WebhookSettings) -> SecretKeys<'_> {
    SecretKeys {
        env_key: "secret_env",
        env: s.secret_env.as_deref(),
        file_key: "secret_file",
        file: s.secret_file.as_deref(),
        what: "webhook secret",
    }
}

/// Everything a valid configuration yields before the client is built.
struct Checked {
    base: BaseUrl,
    secret: Secret,
    identity: Option<reqwest::Identity>,
    roots: Option<Vec<reqwest::Certificate>>,
    request_timeout: Duration,
    poll_interval: Duration,
    window: Duration,
}

impl WebhookSettings {
    /// A provider named `name` (for logs and audit).
    pub fn build(&self, name: &str) -> Result<WebhookProvider, BuildError> {
        let c = self.check().map_err(BuildError::invalid("webhook"))?;
        let mut builder = http::client_builder(
            "webhook",
            c.request_timeout,
            c.request_timeout,
            c.base.loopback,
        );
        if let Some(roots) = c.roots {
            builder = builder.tls_certs_only(roots);
        }
        if let Some(identity) = c.identity {
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(BuildError::client("webhook"))?;
        Ok(WebhookProvider {
            name: name.to_string(),
            base: c.base.url,
            secret: c.secret,
            client,
            poll_interval: c.poll_interval,
            window: c.window,
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
        })
    }

    fn check(&self) -> Result<Checked, Vec<(String, String)>> {
        let mut problems = Problems::default();
        let base = problems.take_as("base_url", check_base_url(&self.base_url));
        let secret = problems.take(secret::load_required(
            secret_keys(self),
            "a shared secret is required: secret_env (an environment variable's name) or \
             secret_file (a file); it is never written in the configuration itself",
            check_secret,
        ));
        let identity = self.client_identity(&mut problems);
        let roots = self.roots(&mut problems);
        let request_timeout =
            problems.request_timeout(self.request_timeout_secs, DEFAULT_REQUEST_TIMEOUT);
        let poll_interval =
            problems.poll_interval(self.poll_interval_ms, Duration::from_millis(1000));
        let window = Duration::from_secs(problems.bounded(
            "signature_window_secs",
            self.signature_window_secs,
            1..=3600,
            DEFAULT_SIGNATURE_WINDOW.as_secs(),
            "seconds",
        ));
        let checked = base.zip(secret).map(|(base, secret)| Checked {
            base,
            secret,
            identity,
            roots,
            request_timeout,
            poll_interval,
            window,
        });
        problems.finish(checked)
    }

    /// The client certificate and key (`client_cert`, `client_key`), when configured.
    fn client_identity(&self, problems: &mut Problems) -> Option<reqwest::Identity> {
        let (cert, key) = match (&self.client_cert, &self.client_key) {
            (None, None) => return None,
            (Some(_), None) => {
                problems.push("client_key", "client_cert needs client_key");
                return None;
            }
            (None, Some(_)) => {
                problems.push("client_cert", "client_key needs client_cert");
                return None;
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        let cert_pem =
            std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()));
        let key_pem = std::fs::read(key)
            .map(Zeroizing::new)
            .map_err(|e| format!("cannot read {}: {e}", key.display()));
        let (cert_pem, key_pem) = match (cert_pem, key_pem) {
            (Ok(cert_pem), Ok(key_pem)) => (cert_pem, key_pem),
            (cert_pem, key_pem) => {
                if let Err(e) = cert_pem {
                    problems.push("client_cert", e);
                }
                if let Err(e) = key_pem {
                    problems.push("client_key", e);
                }
                return None;
            }
        };
        let mut both = Zeroizing::new(Vec::with_capacity(cert_pem.len() + key_pem.len() + 1));
        both.extend_from_slice(&cert_pem);
        both.push(b'\n');
        both.extend_from_slice(&key_pem);
        problems.take_as(
            "client_cert",
            reqwest::Identity::from_pem(&both).map_err(|e| {
                format!("client_cert and client_key are not a PEM certificate and private key: {e}")
            }),
        )
    }

    /// The CA certificates of `ca_file`, when configured.
    fn roots(&self, problems: &mut Problems) -> Option<Vec<reqwest::Certificate>> {
        let path = self.ca_file.as_ref()?;
        let read = std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|pem| {
                reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))
            })
            .and_then(|certs| {
                if certs.is_empty() {
                    Err(format!("{} holds no PEM certificate", path.display()))
                } else {
                    Ok(certs)
                }
            });
        problems.take_as("ca_file", read)
    }
}

impl ProviderConfig for WebhookSettings {
    /// Makes relative file paths relative to `dir` (the configuration file's directory).
    fn resolve_relative_to(&mut self, dir: &Path) {
        resolve_paths(
            dir,
            [
                &mut self.secret_file,
                &mut self.client_cert,
                &mut self.client_key,
                &mut self.ca_file,
            ],
        );
    }

    /// Every problem, as `(key, reason)` for `pfgate check-config`: the URL, the secret (read, so
    /// a missing variable or file is reported now), the certificate files and the numbers.
    fn validate(&self) -> Vec<(String, String)> {
        self.check().err().unwrap_or_default()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(
            WebhookSettings::build(self, cx.name)?.with_auth_timeout(cx.auth_timeout),
        ))
    }
}

/// The base URL and whether its host is loopback.
fn check_base_url(s: &str) -> Result<BaseUrl, String> {
    http::check_base_url(
        s,
        BaseUrlRules {
            credentials_hint: "use the shared secret and an optional client certificate",
            root_only: None,
        },
    )
}

fn check_secret(mut bytes: Zeroizing<Vec<u8>>, origin: &str) -> Result<Secret, String> {
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the secret in {origin} is {} bytes; at least {MIN_SECRET_LEN} are required \
             (e.g. `openssl rand -hex 32`)",
            bytes.len()
        ));
    }
    Ok(Secret::new(bytes))
}

// ---------------------------------------------------------------------------------------------
// The provider
// ---------------------------------------------------------------------------------------------

/// A webhook service reached over HTTPS (see the module documentation).
pub struct WebhookProvider {
    name: String,
    base: Url,
    secret: Secret,
    client: reqwest::Client,
    poll_interval: Duration,
    window: Duration,
    auth_timeout: Duration,
}

impl fmt::Debug for WebhookProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookProvider")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("secret", &self.secret)
            .field("poll_interval", &self.poll_interval)
            .field("window", &self.window)
            .field("auth_timeout", &self.auth_timeout)
            .finish_non_exhaustive()
    }
}

/// A verified 2xx answer.
struct Reply {
    retry_after: Option<Duration>,
    state: StateResponse,
}

impl WebhookProvider {
    /// Sets the deadline told to the service (`deadline` = start + this); pass the engine's
    /// `auth_timeout`. Polling also ends by itself at that deadline (as `NotAnswered`) should the
    /// caller not enforce one.
    pub fn with_auth_timeout(mut self, auth_timeout: Duration) -> Self {
        self.auth_timeout = auth_timeout;
        self
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `{base}/<segments…>`, each segment percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// Sends one signed request and returns the status, headers and body (capped), with the
    /// response signature verified when the status is 2xx. Errors are reasons for the audit log.
    async fn exchange(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Option<Duration>, Vec<u8>), ProviderError> {
        let path = url.path().to_string();
        let timestamp = now_unix();
        let signature = sign(
            self.secret.expose(),
            Signed::Request {
                method: method.as_str(),
                path: &path,
            },
            timestamp,
            &body,
        );
        let mut request = self
            .client
            .request(method.clone(), url)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(reqwest::header::ACCEPT, "application/json");
        if method == Method::POST {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| describe(&e, &method, &path))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::new(
                Kind::HttpStatus,
                format!("webhook {method} {path} answered HTTP {}", status.as_u16()),
            ));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (ts, sig) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
        let retry = retry_after(header(reqwest::header::RETRY_AFTER.as_str()).as_deref());
        let bytes = http::read_capped(
            &mut response,
            &format!("webhook {method} {path}"),
            MAX_RESPONSE_BYTES,
            None,
        )
        .await?;
        verify(
            self.secret.expose(),
            Signed::Response {
                status: status.as_u16(),
                method: method.as_str(),
                path: &path,
            },
            ts.as_deref(),
            sig.as_deref(),
            &bytes,
            now_unix(),
            self.window,
        )
        .map_err(|e| {
            ProviderError::new(
                Kind::BadAnswer,
                format!("webhook {method} {path}: response refused: {e}"),
            )
        })?;
        Ok((status, retry, bytes))
    }

    /// An exchange whose answer must be a state for `request_id`.
    async fn state(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
        request_id: &str,
    ) -> Result<Reply, ProviderError> {
        let path = url.path().to_string();
        let (_, retry_after, bytes) = self.exchange(method.clone(), url, body).await?;
        let bad = |detail: String| ProviderError::new(Kind::BadAnswer, detail);
        let state: StateResponse = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "webhook {method} {path}: the answer is not a state object: {e}"
            ))
        })?;
        if state.request_id != request_id {
            return Err(bad(format!(
                "webhook {method} {path}: the answer is for another request_id"
            )));
        }
        Ok(Reply { retry_after, state })
    }

    async fn run(&self, attempt: &AuthAttempt) -> Result<Verdict, ProviderError> {
        let deadline = now_unix()
            .saturating_add(i64::try_from(self.auth_timeout.as_secs()).unwrap_or(i64::MAX));
        let start = StartRequest {
            request_id: attempt.request_id.clone(),
            username: attempt.username.clone(),
            phone: attempt.phone.e164(),
            extension: attempt.phone.extension().to_string(),
            mode: mode_name(attempt.mode).to_string(),
            application_name: attempt.application_name.clone(),
            initiating_ip: attempt.initiating_ip.clone(),
            caller_ip: attempt.caller_ip.to_string(),
            deadline,
        };
        let body = serde_json::to_vec(&start).map_err(|e| {
            ProviderError::new(Kind::Local, format!("cannot encode the start request: {e}"))
        })?;
        let started = tokio::time::Instant::now();
        // Each exchange in a box of its own, freed when it ends: inline, the HTTP client's state
        // would size this future, which a call keeps between polls for as long as the person
        // takes (issue #21, goal 4: 1 KB per waiting caller).
        let mut reply = Box::pin(self.state(
            Method::POST,
            self.endpoint(&["authentications"]),
            body,
            &attempt.request_id,
        ))
        .await?;
        let poll_url = self.endpoint(&["authentications", &attempt.request_id]);
        loop {
            if let Some(verdict) = interpret(&reply.state) {
                return Ok(verdict);
            }
            let wait = reply
                .retry_after
                .unwrap_or(self.poll_interval)
                .clamp(MIN_POLL, MAX_POLL);
            if started.elapsed() + wait > self.auth_timeout {
                tracing::debug!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, "webhook still pending at the deadline");
                return Ok(Verdict::NotAnswered);
            }
            tokio::time::sleep(wait).await;
            reply = Box::pin(self.state(
                Method::GET,
                poll_url.clone(),
                Vec::new(),
                &attempt.request_id,
            ))
            .await?;
        }
    }
}

/// A transport error as an audit reason (the URL and the kind; no secret is ever in either).
fn describe(e: &reqwest::Error, method: &Method, path: &str) -> ProviderError {
    http::transport_error(e, &format!("webhook {method} {path}"), None)
}

#[async_trait]
impl Provider for WebhookProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict {
        let verdict = match self.run(attempt).await {
            Ok(v) => v,
            Err(reason) => Verdict::Failed(reason),
        };
        tracing::debug!(target: "pfgate::provider", provider = %self.name, request_id = %attempt.request_id, verdict = ?verdict, "webhook attempt ended");
        verdict
    }

    /// A signed `GET {base}/health`: healthy when the answer is 200 with a valid signature (which
    /// also proves both sides hold the same secret).
    async fn healthy(&self) -> bool {
        match self
            .exchange(Method::GET, self.endpoint(&["health"]), Vec::new())
            .await
        {
            Ok((status, _, _)) => status == StatusCode::OK,
            Err(reason) => {
                tracing::debug!(target: "pfgate::provider", provider = %self.name, reason = %reason, "webhook health check failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_string_layout() {
        let s = signing_string(
            Signed::Request {
                method: "POST",
                path: "/authentications",
            },
            "1700000000",
            b"{}",
        );
        assert_eq!(
            s,
            b"pfgate-v1-request\n1700000000\nPOST\n/authentications\n{}"
        );
        let s = signing_string(
            Signed::Response {
                status: 200,
                method: "GET",
                path: "/health",
            },
            "1700000000",
            b"",
        );
        assert_eq!(s, b"pfgate-v1-response\n1700000000\n200\nGET\n/health\n");
    }

    #[test]
    fn known_vectors() {
        // The worked examples in docs/webhook.md (computed independently with Python's hmac), so
        // the code and the documentation cannot drift apart.
        let secret = b"0123456789abcdef0123456789abcdef";
        let path = "/authentications/00112233445566778899AABBCCDDEEFF";
        let sig = sign(
            secret,
            Signed::Request {
                method: "GET",
                path,
            },
            1_700_000_000,
            b"",
        );
        assert_eq!(
            sig,
            "v1=5e7a4755003ba6976544d67142398d1e2032dbe119eb1dcfa6976089ae8e8b2a"
        );
        let body = br#"{"request_id":"00112233445566778899AABBCCDDEEFF","status":"success","outcome":"approved"}"#;
        let response = Signed::Response {
            status: 200,
            method: "GET",
            path,
        };
        let expected = "v1=8ffdca69607d97c475bc9441f81557838e69e23f2ab84d2171150241fea56cdf";
        assert_eq!(sign(secret, response, 1_700_000_001, body), expected);
        let window = Duration::from_secs(300);
        assert_eq!(
            verify(
                secret,
                response,
                Some("1700000001"),
                Some(expected),
                body,
                1_700_000_100,
                window
            ),
            Ok(())
        );
        // Upper-case hex and a second entry (secret rotation) are accepted.
        let both = format!(
            "v1={}, {}",
            "0".repeat(64),
            expected.to_uppercase().replace("V1=", "v1=")
        );
        assert_eq!(
            verify(
                secret,
                response,
                Some("1700000001"),
                Some(&both),
                body,
                1_700_000_100,
                window
            ),
            Ok(())
        );
        // A request signature is never a response signature.
        assert_eq!(
            verify(
                secret,
                Signed::Response {
                    status: 200,
                    method: "GET",
                    path
                },
                Some("1700000000"),
                Some(&sig),
                b"",
                1_700_000_000,
                window
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn retry_after_is_bounded() {
        assert_eq!(retry_after(Some("0")), Some(MIN_POLL));
        assert_eq!(retry_after(Some(" 3 ")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(Some("99999999999")), Some(MAX_POLL));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn base_urls() {
        assert!(check_base_url("https://mfa.example.org/pfgate").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080/x").is_ok());
        assert!(check_base_url("http://localhost:1").is_ok());
        assert!(check_base_url("http://mfa.example.org").is_err());
        assert!(check_base_url("http://127.0.0.1.example.org").is_err());
        assert!(check_base_url("https://u:p@mfa.example.org").is_err());
        assert!(check_base_url("https://mfa.example.org/?a=b").is_err());
        assert!(check_base_url("ftp://mfa.example.org").is_err());
    }
}
