//! Delivering the step-up link to the person: a generic HTTPS webhook (Teams/Slack-style incoming
//! webhooks, or an organisation's own relay) or SMS through Twilio's Messages API. The text is
//! configurable; the link is the only secret it carries, and it is never logged.
//!
//! E-mail goes through [`super::smtp`] (SMTP submission, STARTTLS required).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::idp::{acceptable_url, is_loopback};
use crate::core::secret;
use crate::providers::common::settings::resolve_paths;
use crate::providers::webhook::{sign, Signed, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::providers::AuthAttempt;

/// `[providers.<name>.webhook]`: POSTs JSON to `url`.
///
/// The body is `{"text": …, "username": …, "link": …, "application": …, "request_id": …,
/// "expires_at": <unix seconds>}`: `text` alone is what Teams and Slack incoming webhooks show; a
/// relay of one's own uses the other fields to find the person. With a secret, the request is
/// signed exactly as the webhook provider signs its requests (`X-Pfgate-Timestamp`,
/// `X-Pfgate-Signature`, `docs/webhook.md`), so the relay can tell pfgate's messages from others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// `https://…` (or `http://` to loopback).
    pub url: String,
    /// Environment variable holding the signing secret (optional).
    pub secret_env: Option<String>,
    /// File holding the signing secret (optional).
    pub secret_file: Option<PathBuf>,
}

/// `[providers.<name>.sms]`: Twilio's Messages API (`POST
/// /2010-04-01/Accounts/{AccountSid}/Messages.json`), to the user's phone number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsChannel {
    /// Account SID (`AC…`) or API key SID (`SK…`, then `account` names the account).
    pub account_sid: String,
    /// The account the messages are sent from when `account_sid` is an API key (`AC…`).
    pub account: Option<String>,
    /// Environment variable holding the Auth Token (or API key secret).
    pub auth_token_env: Option<String>,
    /// File holding it.
    pub auth_token_file: Option<PathBuf>,
    /// The sender: a Twilio number in E.164 (`+1…`).
    pub from: Option<String>,
    /// Or a Messaging Service SID (`MG…`).
    pub messaging_service_sid: Option<String>,
    /// Default `https://api.twilio.com`; `http://` only to loopback (tests, a relay).
    pub base_url: Option<String>,
}

impl WebhookChannel {
    pub(crate) fn resolve_relative_to(&mut self, base: &Path) {
        resolve_paths(base, [&mut self.secret_file]);
    }

    pub(crate) fn build(&self, timeout: Duration) -> Result<Channel, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let url = match Url::parse(&self.url) {
            Ok(u) if acceptable_url(&u, true) && u.username().is_empty() => Some(u),
            Ok(_) => {
                problems.push((
                    "url".into(),
                    "must be https:// (http:// only to loopback)".into(),
                ));
                None
            }
            Err(e) => {
                problems.push(("url".into(), format!("'{}' is not a URL: {e}", self.url)));
                None
            }
        };
        let secret = match (&self.secret_env, &self.secret_file) {
            (Some(_), Some(_)) => {
                problems.push((
                    "secret_env".into(),
                    "give either secret_env or secret_file".into(),
                ));
                None
            }
            (Some(v), None) => read_secret(secret::from_env(v), "secret_env", &mut problems),
            (None, Some(f)) => read_secret(
                secret::from_file(f, "step-up webhook secret"),
                "secret_file",
                &mut problems,
            ),
            (None, None) => None,
        };
        match (url, problems.is_empty()) {
            (Some(url), true) => Ok(Channel::Webhook {
                http: client(timeout, is_loopback(&url)).map_err(|e| vec![("url".into(), e)])?,
                url,
                secret,
            }),
            _ => Err(problems),
        }
    }
}

impl SmsChannel {
    pub(crate) fn resolve_relative_to(&mut self, base: &Path) {
        resolve_paths(base, [&mut self.auth_token_file]);
    }

    pub(crate) fn build(&self, timeout: Duration) -> Result<Channel, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let sid_ok = |s: &str, prefix: &str| {
            s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !(sid_ok(&self.account_sid, "AC") || sid_ok(&self.account_sid, "SK")) {
            problems.push(("account_sid".into(), "AC or SK and 32 hex digits".into()));
        }
        let account = match &self.account {
            Some(a) if sid_ok(a, "AC") => a.clone(),
            Some(_) => {
                problems.push(("account".into(), "AC and 32 hex digits".into()));
                String::new()
            }
            None if self.account_sid.starts_with("SK") => {
                problems.push((
                    "account".into(),
                    "required with an API key SID (SK…)".into(),
                ));
                String::new()
            }
            None => self.account_sid.clone(),
        };
        let sender = match (&self.from, &self.messaging_service_sid) {
            (Some(f), None)
                if f.starts_with('+')
                    && f.len() > 4
                    && f[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                ("From", f.clone())
            }
            (None, Some(m)) if sid_ok(m, "MG") => ("MessagingServiceSid", m.clone()),
            _ => {
                problems.push((
                    "from".into(),
                    "give either from (+E.164) or messaging_service_sid (MG…)".into(),
                ));
                ("From", String::new())
            }
        };
        let token = match (&self.auth_token_env, &self.auth_token_file) {
            (Some(v), None) => read_secret(secret::from_env(v), "auth_token_env", &mut problems),
            (None, Some(f)) => read_secret(
                secret::from_file(f, "Twilio auth token"),
                "auth_token_file",
                &mut problems,
            ),
            _ => {
                problems.push((
                    "auth_token_env".into(),
                    "give either auth_token_env or auth_token_file".into(),
                ));
                None
            }
        };
        let base = self
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.twilio.com".into());
        let base = match Url::parse(&base) {
            Ok(u) if acceptable_url(&u, true) => Some(u),
            _ => {
                problems.push((
                    "base_url".into(),
                    "https:// (http:// only to loopback)".into(),
                ));
                None
            }
        };
        match (base, token, problems.is_empty()) {
            (Some(base), Some(token), true) => {
                let url = Url::parse(&format!(
                    "{}/2010-04-01/Accounts/{account}/Messages.json",
                    base.as_str().trim_end_matches('/')
                ))
                .map_err(|e| vec![("base_url".into(), e.to_string())])?;
                Ok(Channel::Sms {
                    http: client(timeout, is_loopback(&base))
                        .map_err(|e| vec![("base_url".into(), e)])?,
                    url,
                    user: self.account_sid.clone(),
                    token,
                    sender,
                })
            }
            _ => Err(problems),
        }
    }
}

fn read_secret(
    r: Result<(Zeroizing<Vec<u8>>, String), String>,
    key: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<Zeroizing<Vec<u8>>> {
    match r {
        Ok((b, _)) => {
            let trimmed = Zeroizing::new(b.trim_ascii().to_vec());
            if trimmed.is_empty() {
                problems.push((key.into(), "the secret is empty".into()));
                None
            } else {
                Some(trimmed)
            }
        }
        Err(e) => {
            problems.push((key.into(), e));
            None
        }
    }
}

fn client(timeout: Duration, loopback: bool) -> Result<reqwest::Client, String> {
    crate::providers::common::http::client_builder("oidc-delivery", timeout, timeout, loopback)
        .build()
        .map_err(|e| e.to_string())
}

/// A built delivery channel.
pub(crate) enum Channel {
    Webhook {
        http: reqwest::Client,
        url: Url,
        secret: Option<Zeroizing<Vec<u8>>>,
    },
    Sms {
        http: reqwest::Client,
        url: Url,
        user: String,
        token: Zeroizing<Vec<u8>>,
        /// (`From` | `MessagingServiceSid`, value)
        sender: (&'static str, String),
    },
    Email(super::smtp::Mailer),
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Webhook { url, .. } => write!(f, "Webhook({url})"),
            Channel::Sms { url, .. } => write!(f, "Sms({url})"),
            Channel::Email(m) => write!(f, "Email({m:?})"),
        }
    }
}

impl Channel {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Sms { .. } => "sms",
            Channel::Email(_) => "email",
        }
    }

    /// Caller-supplied text (application name, username) made fit for this channel's message:
    /// escaped for chat markdown on the webhook channel (Teams, Slack), cleaned of hidden
    /// characters on the plain-text ones (SMS, e-mail).
    pub(crate) fn escape(&self, s: &str) -> String {
        match self {
            Channel::Webhook { .. } => crate::providers::display::escape_chat(s),
            Channel::Sms { .. } | Channel::Email(_) => crate::providers::display::clean(s),
        }
    }

    /// Sends `text` (which contains `link`). Errors are reasons for the log: no link, no secret.
    pub(crate) async fn deliver(
        &self,
        attempt: &AuthAttempt,
        link: &str,
        text: &str,
        expires_unix: i64,
    ) -> Result<(), String> {
        let resp = match self {
            Channel::Email(mailer) => return mailer.send(&attempt.username, text).await,
            Channel::Webhook { http, url, secret } => {
                let body = Zeroizing::new(
                    serde_json::json!({
                        "text": text,
                        "username": attempt.username,
                        "link": link,
                        "application": crate::providers::display::clean(&attempt.application_name),
                        "request_id": attempt.request_id,
                        "expires_at": expires_unix,
                    })
                    .to_string(),
                );
                let mut req = http
                    .post(url.clone())
                    .header("Content-Type", "application/json");
                if let Some(secret) = secret {
                    let ts = crate::core::clock::now_unix();
                    let path = match url.query() {
                        Some(q) => format!("{}?{q}", url.path()),
                        None => url.path().to_string(),
                    };
                    let sig = sign(
                        secret,
                        Signed::Request {
                            method: "POST",
                            path: &path,
                        },
                        ts,
                        body.as_bytes(),
                    );
                    req = req
                        .header(TIMESTAMP_HEADER, ts.to_string())
                        .header(SIGNATURE_HEADER, sig);
                }
                req.body(body.to_string()).send().await
            }
            Channel::Sms {
                http,
                url,
                user,
                token,
                sender,
            } => {
                let body = {
                    let mut form = url::form_urlencoded::Serializer::new(String::new());
                    form.append_pair("To", &attempt.phone.e164())
                        .append_pair(sender.0, &sender.1)
                        .append_pair("Body", text);
                    Zeroizing::new(form.finish())
                };
                let mut cred = Zeroizing::new(format!("{user}:").into_bytes());
                cred.extend_from_slice(token);
                let basic =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&cred[..]));
                http.post(url.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .header("Authorization", format!("Basic {}", basic.as_str()))
                    .body(body.to_string())
                    .send()
                    .await
            }
        };
        let resp = resp.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status} from the {} channel", self.kind()))
        }
    }
}
