//! The OpenID Connect step-up provider (issue #10): the second factor is a fresh multi-factor
//! sign-in at the organisation's identity provider (Microsoft Entra ID, Okta, Ping, Keycloak —
//! any OpenID Connect provider).
//!
//! There is no public API that asks Entra to "call this user now", but every OpenID Connect
//! provider tells a relying party how a sign-in was made (`amr` contains `mfa`; `acr`, Entra's
//! `acrs` for an authentication context). So the provider:
//!
//! 1. creates a one-time, unguessable link (256 random bits) bound to the request id, the user and
//!    an expiry within the authentication deadline ([`Registry`]);
//! 2. delivers it through the configured channel ([`delivery`]);
//! 3. shows a page with the application's name and the requesting IP; "Continue" starts an
//!    authorization-code flow with PKCE, `prompt=login` and (by default) `max_age=0`, plus
//!    `acr_values` / an Entra `acrs` claims request when configured ([`web`]);
//! 4. validates the ID token on the callback ([`jwt`], [`idp`]) and checks the signed-in identity
//!    is the user being authenticated ([`IdentityMatch`]: the claim equals the username, or the
//!    claim — Entra's `oid` — equals the external id the store holds for the user);
//! 5. resolves the waiting `PfAuthUser*` call through a oneshot channel.
//!
//! **Why opening the link does not start the sign-in.** Chat services and mail scanners fetch links
//! to preview them. A `GET` of the link only shows a page and changes nothing; the person's click
//! (a `POST` carrying a per-link CSRF token) consumes the link. So a preview neither burns the
//! link nor, worse, starts a flow someone else could finish.
//!
//! **State lives in this process's memory**, keyed by SHA-256 of the random tokens (a lookup by
//! hash never compares a secret byte by byte, and the map holds no usable token). With several
//! instances behind a load balancer, the link and the callback must reach the instance that issued
//! the link: the step-up listener's address is per instance (`public_url`), or the balancer keeps
//! `/stepup/` sticky. A restart forgets pending step-ups; their SOAP calls end with the process
//! anyway. (`docs/oidc.md`.)
//!
//! **Outcomes.** Success answers CallResult 21 "Mobile App Authenticated" — MFA Server has no code
//! for "signed in at an identity provider", and 21 is the one for an approval made by the person
//! in an app rather than by a phone call or a code ([`Verdict::AppApproved`]). A wrong identity,
//! missing MFA, an invalid token or the person's "Deny" answer CallResult 150 (denied; the reason
//! is logged); "This wasn't me" answers 112 "Fraud Code Entered" and writes a `fraud_reported`
//! audit event; an unopened link that expires answers 11 "Call Timed Out". A link that cannot be
//! delivered is a provider failure (117, and the router may fail over or, on a `safe` route, fail
//! open): nobody was reached. **Once the link is delivered nothing is a failure**: a bogus code
//! (the IdP's `invalid_grant`), a forged or mismatched callback, a state or token problem, even
//! the IdP failing mid-flow, is [`Verdict::Refused`] — a denial (150), so a link holder without
//! IdP credentials can neither fail the step-up open nor make it fail over to a weaker provider.
//! Only the IdP's own failures ([`super::Blame::Provider`]) count toward its breaker.

pub mod delivery;
pub mod idp;
pub mod jwt;
mod pages;
pub mod smtp;
mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lc_rs::digest;
use base64::Engine as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;
use url::Url;
use zeroize::Zeroizing;

use super::common::settings::{resolve_paths, Problems};
use super::common::BuildError;
use super::settings::{BuildContext, ProviderConfig};
use super::{display, AuthAttempt, Provider, ProviderErrorKind, Verdict};
use crate::core::secret::{self, SecretKeys};
use crate::telemetry::audit::{self, AuditEvent, AuditKind};

/// Default `username_claim`.
pub const DEFAULT_USERNAME_CLAIM: &str = "preferred_username";

/// How the signed-in identity is matched with the user being authenticated (`match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMatch {
    /// `match = "username"`: the claim equals the pfgate username, ignoring ASCII case. For
    /// `preferred_username`, `upn`, `email` — values a user or an administrator can change, so
    /// whoever can rename an IdP account can pass as another pfgate user.
    Username,
    /// `match = "external_id"`: the claim equals the external id stored for the user (users file,
    /// `pfgate users import`), ignoring case, whole value only. For Entra's `oid` (an immutable
    /// GUID that never equals a username) or `sub`. A user with no stored external id is refused,
    /// never matched by username instead.
    ExternalId,
}

impl IdentityMatch {
    /// The configured literal.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::ExternalId => "external_id",
        }
    }

    /// The default for a claim: `external_id` for `oid` and `sub` (identifiers, not names),
    /// `username` otherwise.
    pub fn default_for(claim: &str) -> Self {
        if matches!(claim, "oid" | "sub") {
            Self::ExternalId
        } else {
            Self::Username
        }
    }
}
/// Default `scopes`.
pub const DEFAULT_SCOPES: &str = "openid profile email";
/// Default `clock_skew_secs`.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);
/// Default `request_timeout_secs` (discovery, JWKS, token endpoint, delivery).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most step-ups waiting at once per provider; more are refused (provider failure), so a
/// flood of authentications cannot grow memory without bound.
pub const MAX_PENDING: usize = 10_000;
/// Default delivery text. `{link}` is required in a configured text; `{application}`, `{user}`
/// and `{minutes}` are optional.
pub const DEFAULT_MESSAGE: &str = "{application}: confirm your sign-in as {user} within {minutes} min: {link} — if you did not ask for this, open the link and choose \"This wasn't me\".";

/// `[providers.<name>]` with `kind = "oidc"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The issuer, exactly as the IdP's discovery document gives it (Entra:
    /// `https://login.microsoftonline.com/<tenant id>/v2.0`). `https`, or `http` to loopback.
    pub issuer: String,
    /// The application (client) id registered at the IdP.
    pub client_id: String,
    /// Environment variable holding the client secret (a confidential client; recommended).
    pub client_secret_env: Option<String>,
    /// File holding the client secret. Without either, pfgate is a public client (PKCE only).
    pub client_secret_file: Option<PathBuf>,
    /// Where people reach the step-up pages, as registered (the redirect URI is
    /// `{public_url}/stepup/callback`). `https`, or `http` to loopback.
    pub public_url: String,
    /// The step-up listener (separate from the SOAP listener): e.g. `0.0.0.0:8443`.
    pub listen: Option<SocketAddr>,
    /// PEM certificate (chain) for the step-up listener; with `tls_key`. Without them the
    /// listener is plain HTTP, allowed only on a loopback address (behind a TLS reverse proxy).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Scopes requested (default `openid profile email`).
    pub scopes: Option<String>,
    /// The ID token claim naming the user: `preferred_username` (default), `upn`, `email`, `oid`,
    /// `sub`, …; compared as `match` says.
    pub username_claim: Option<String>,
    /// How the claim is matched: `"username"` (equal to the pfgate username, ignoring ASCII case)
    /// or `"external_id"` (equal to the user's stored external id, ignoring case). Default
    /// `external_id` when the claim is `oid` or `sub`, `username` otherwise. See [`IdentityMatch`].
    #[serde(rename = "match")]
    pub identity_match: Option<String>,
    /// `amr` values of which the token must contain one (default `["mfa"]`; `[]` turns the `amr`
    /// check off, for IdPs that prove MFA through `acr`/`acrs` only).
    pub mfa_amr_values: Option<Vec<String>>,
    /// Sent as `acr_values`; the token's `acr` must then be one of them.
    pub acr_values: Option<Vec<String>>,
    /// An Entra authentication context id (`c1`…`c99`): requested through the `claims` parameter
    /// and required in the token's `acrs` claim.
    pub acrs: Option<String>,
    /// Sends `max_age=0` (default true): the IdP must authenticate now, not reuse a session.
    pub max_age_zero: Option<bool>,
    /// How long a link can be opened, in seconds; never longer than the engine's `auth_timeout`
    /// (the default).
    pub link_ttl_secs: Option<u64>,
    /// Clock difference tolerated in `exp`/`iat`/`auth_time`, 0–300 s (default 60).
    pub clock_skew_secs: Option<u64>,
    /// Timeout of each request to the IdP or a delivery channel, 1–60 s (default 10).
    pub request_timeout_secs: Option<u64>,
    /// The delivery text; must contain `{link}`.
    pub message: Option<String>,
    /// Delivery through an HTTPS webhook (Teams/Slack-style).
    pub webhook: Option<delivery::WebhookChannel>,
    /// Delivery by SMS through Twilio's Messages API.
    pub sms: Option<delivery::SmsChannel>,
    /// Delivery by e-mail (SMTP submission with STARTTLS).
    pub email: Option<smtp::EmailChannel>,
}

impl OidcSettings {
    /// How the signed-in identity is matched: `match` as configured, else the default for
    /// `username_claim`; `Err` when `match` names neither way.
    pub fn identity_match(&self) -> Result<IdentityMatch, String> {
        match self.identity_match.as_deref() {
            None => Ok(IdentityMatch::default_for(
                self.username_claim
                    .as_deref()
                    .unwrap_or(DEFAULT_USERNAME_CLAIM),
            )),
            Some("username") => Ok(IdentityMatch::Username),
            Some("external_id") => Ok(IdentityMatch::ExternalId),
            Some(other) => Err(format!("'{other}' is not \"username\" or \"external_id\"")),
        }
    }

    fn check(&self) -> Result<Checked, Vec<(String, String)>> {
        let mut problems = Problems::default();
        let issuer = problems.take_as("issuer", self.issuer_url());
        if self.client_id.trim().is_empty() {
            problems.push("client_id", "the application (client) id is required");
        }
        let secret = secret::load(
            SecretKeys {
                env_key: "client_secret_env",
                env: self.client_secret_env.as_deref(),
                file_key: "client_secret_file",
                file: self.client_secret_file.as_deref(),
                what: "OIDC client secret",
            },
            |b, _| secret_text(&b),
        )
        .unwrap_or_else(|(k, r)| {
            problems.push(k, r);
            None
        });
        let public = problems.take_as("public_url", self.public_url());
        self.check_listener(&mut problems);
        let skew = self.clock_skew_secs.unwrap_or(DEFAULT_SKEW.as_secs());
        if skew > 300 {
            problems.push("clock_skew_secs", "at most 300");
        }
        let timeout = self
            .request_timeout_secs
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT.as_secs());
        if !(1..=60).contains(&timeout) {
            problems.push("request_timeout_secs", "between 1 and 60");
        }
        self.check_texts(&mut problems);
        let (claim, matching) = self.check_identity(&mut problems);
        let channel = self.channel(Duration::from_secs(timeout), &mut problems);
        let checked = match (issuer, public, channel, matching) {
            (Some(issuer), Some(public), Some(channel), Some(matching)) => Some(Checked {
                issuer,
                secret,
                public,
                skew: Duration::from_secs(skew),
                timeout: Duration::from_secs(timeout),
                claim,
                matching,
                channel,
            }),
            _ => None,
        };
        problems.finish(checked)
    }

    /// `issuer` parsed: https (http only to loopback), without a query.
    fn issuer_url(&self) -> Result<Url, String> {
        match Url::parse(&self.issuer) {
            Ok(u) if idp::acceptable_url(&u, true) && u.query().is_none() => Ok(u),
            Ok(_) => {
                Err("must be https:// (http:// only to a loopback address), without a query".into())
            }
            Err(e) => Err(format!("'{}' is not a URL: {e}", self.issuer)),
        }
    }

    /// `public_url` parsed: https (http only to loopback), without a query, fragment or user.
    fn public_url(&self) -> Result<Url, String> {
        match Url::parse(&self.public_url) {
            Ok(u)
                if idp::acceptable_url(&u, true)
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty() =>
            {
                Ok(u)
            }
            Ok(_) => {
                Err("must be https:// (http:// only to a loopback address), without a query".into())
            }
            Err(e) => Err(format!("'{}' is not a URL: {e}", self.public_url)),
        }
    }

    /// `listen`, `tls_cert` and `tls_key` together: plain HTTP only on loopback.
    fn check_listener(&self, problems: &mut Problems) {
        match (self.listen, &self.tls_cert, &self.tls_key) {
            (None, _, _) => problems.push(
                "listen",
                "the step-up listener's address is required (e.g. \"0.0.0.0:8443\")",
            ),
            (Some(a), None, None) if !a.ip().is_loopback() => problems.push(
                "listen",
                "plain HTTP only on a loopback address; give tls_cert and tls_key",
            ),
            (Some(_), Some(_), None) | (Some(_), None, Some(_)) => {
                problems.push("tls_cert", "tls_cert and tls_key go together")
            }
            _ => {}
        }
    }

    /// `link_ttl_secs`, `message` and `acrs`.
    fn check_texts(&self, problems: &mut Problems) {
        if self.link_ttl_secs == Some(0) {
            problems.push("link_ttl_secs", "at least 1");
        }
        if let Some(m) = &self.message {
            if !m.contains("{link}") {
                problems.push("message", "must contain {link}");
            }
        }
        if let Some(a) = &self.acrs {
            if a.is_empty() || a.len() > 10 || !a.bytes().all(|b| b.is_ascii_alphanumeric()) {
                problems.push("acrs", "an authentication context id such as c1");
            }
        }
    }

    /// The claim naming the person and how it is matched (`username_claim`, `match`).
    fn check_identity(&self, problems: &mut Problems) -> (String, Option<IdentityMatch>) {
        let claim = self
            .username_claim
            .clone()
            .unwrap_or_else(|| DEFAULT_USERNAME_CLAIM.into());
        if claim.is_empty() {
            problems.push("username_claim", "must name a claim");
        }
        let matching = problems.take_as("match", self.identity_match());
        if claim == "oid" && matching == Some(IdentityMatch::Username) {
            problems.push(
                "match",
                "username_claim = \"oid\" is an object id (a GUID) that never equals a username: \
                 use match = \"external_id\" and store each user's oid (users file or CSV \
                 external_id)",
            );
        }
        (claim, matching)
    }

    /// The one delivery channel (`webhook`, `sms` or `email`), built.
    fn channel(&self, timeout: Duration, problems: &mut Problems) -> Option<delivery::Channel> {
        let configured = [
            self.webhook.is_some(),
            self.sms.is_some(),
            self.email.is_some(),
        ];
        match configured.iter().filter(|c| **c).count() {
            0 => {
                problems.push(
                    "webhook",
                    "a delivery channel is required: [providers.NAME.webhook], .sms or .email",
                );
                return None;
            }
            1 => {}
            _ => {
                problems.push("webhook", "configure one delivery channel, not several");
                return None;
            }
        }
        let (key, built) = if let Some(w) = &self.webhook {
            ("webhook", w.build(timeout))
        } else if let Some(s) = &self.sms {
            ("sms", s.build(timeout))
        } else if let Some(e) = &self.email {
            ("email", e.build(timeout).map(delivery::Channel::Email))
        } else {
            ("webhook", Err(Vec::new()))
        };
        built.map_err(|list| problems.extend_under(key, list)).ok()
    }

    /// Builds the provider and starts its step-up listener (on the current Tokio runtime).
    /// `auth_timeout` is the engine's deadline: links never outlive it.
    pub fn build(&self, name: &str, auth_timeout: Duration) -> Result<OidcProvider, String> {
        let c = self.check().map_err(|p| {
            p.iter()
                .map(|(k, r)| format!("{k}: {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        // The issuer as configured, not as `Url` normalises it: a trailing slash matters to the
        // `iss` comparison (Entra's v2.0 issuer has none, Okta's org issuer neither).
        let _ = &c.issuer;
        let idp = idp::Idp::new(
            self.issuer.clone(),
            self.client_id.clone(),
            c.secret,
            c.timeout,
        )
        .map_err(|e| format!("issuer: {e}"))?;
        let base = self.public_url.trim_end_matches('/').to_string();
        let prefix = c.public.path().trim_end_matches('/').to_string();
        let link_ttl = self
            .link_ttl_secs
            .map(Duration::from_secs)
            .unwrap_or(auth_timeout)
            .min(auth_timeout);
        let inner = Arc::new(Inner {
            name: name.to_string(),
            idp,
            redirect_uri: format!("{base}/stepup/callback"),
            link_base: format!("{base}/stepup/l/"),
            prefix,
            secure_cookie: c.public.scheme() == "https",
            scopes: self.scopes.clone().unwrap_or_else(|| DEFAULT_SCOPES.into()),
            username_claim: c.claim,
            matching: c.matching,
            amr_any: self
                .mfa_amr_values
                .clone()
                .unwrap_or_else(|| vec!["mfa".into()]),
            acr_any: self.acr_values.clone().unwrap_or_default(),
            acrs: self.acrs.clone(),
            max_age_zero: self.max_age_zero.unwrap_or(true),
            skew: c.skew,
            link_ttl,
            auth_timeout,
            message: self
                .message
                .clone()
                .unwrap_or_else(|| DEFAULT_MESSAGE.into()),
            channel: c.channel,
            registry: Registry::default(),
        });
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                crate::net::tls::from_files(cert, key, None)
                    .map_err(|e| format!("tls_cert: {e}"))?,
            ),
            _ => None,
        };
        let listen = self.listen.ok_or("listen: required")?;
        let (bound, listener) = web::start(inner.clone(), listen, tls)
            .map_err(|e| format!("listen: cannot listen on {listen}: {e}"))?;
        Ok(OidcProvider {
            name: name.to_string(),
            inner,
            listen_addr: bound,
            _listener: listener,
        })
    }
}

impl ProviderConfig for OidcSettings {
    /// Makes relative paths relative to the configuration file's directory.
    fn resolve_relative_to(&mut self, base: &Path) {
        resolve_paths(
            base,
            [
                &mut self.client_secret_file,
                &mut self.tls_cert,
                &mut self.tls_key,
            ],
        );
        if let Some(w) = &mut self.webhook {
            w.resolve_relative_to(base);
        }
        if let Some(s) = &mut self.sms {
            s.resolve_relative_to(base);
        }
        if let Some(e) = &mut self.email {
            e.resolve_relative_to(base);
        }
    }

    /// Every problem, as `(key, reason)`.
    fn validate(&self) -> Vec<(String, String)> {
        self.check().err().unwrap_or_default()
    }

    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(
            OidcSettings::build(self, cx.name, cx.auth_timeout).map_err(BuildError::Start)?,
        ))
    }
}

struct Checked {
    issuer: Url,
    secret: Option<Zeroizing<String>>,
    public: Url,
    skew: Duration,
    timeout: Duration,
    claim: String,
    matching: IdentityMatch,
    channel: delivery::Channel,
}

fn secret_text(bytes: &[u8]) -> Result<Zeroizing<String>, String> {
    let s = std::str::from_utf8(bytes).map_err(|_| "the client secret is not UTF-8".to_string())?;
    let s = s.trim();
    if s.is_empty() {
        return Err("the client secret is empty".into());
    }
    Ok(Zeroizing::new(s.to_string()))
}

/// How a step-up ended, as the browser side decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A valid multi-factor sign-in of the right person.
    Approved,
    /// Refused; the reason is for the log (never a token).
    Denied(String),
    /// "This wasn't me".
    Fraud,
    /// The link was opened after it expired.
    Expired,
    /// Refused after the person was reached: a forged, mismatched or unverifiable callback, or
    /// the IdP failing mid-flow. A denial, never a failure that could fail over or open.
    Refused(super::Refusal),
}

/// What the person's pages show about the request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub request_id: String,
    pub username: String,
    pub application: String,
    /// The IP address the SOAP call reported (the person's), or the calling system's.
    pub ip: String,
    /// When the link was issued (Unix seconds): the sign-in must be later.
    pub issued_unix: i64,
    /// The user's stored external id when the link was issued (normalised), for
    /// [`IdentityMatch::ExternalId`].
    pub external_id: Option<String>,
}

/// An issued link, not yet used.
#[derive(Debug)]
pub(crate) struct Link {
    pub request: Request,
    pub expires: Instant,
    pub csrf: Zeroizing<String>,
    pub tx: oneshot::Sender<Outcome>,
}

/// A started sign-in, awaiting the callback.
#[derive(Debug)]
pub(crate) struct Flow {
    pub request: Request,
    pub deadline: Instant,
    pub nonce: Zeroizing<String>,
    pub verifier: Zeroizing<String>,
    /// SHA-256 of the browser-binding cookie set when the flow started.
    pub binding: [u8; 32],
    pub tx: oneshot::Sender<Outcome>,
}

/// Pending links and flows, keyed by SHA-256 of their random tokens.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    links: Mutex<HashMap<[u8; 32], Link>>,
    flows: Mutex<HashMap<[u8; 32], Flow>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    fn insert_link(&self, key: [u8; 32], link: Link) -> bool {
        let now = Instant::now();
        let mut links = lock(&self.links);
        // Entries whose SOAP call has gone are dead weight; so are expired ones.
        links.retain(|_, l| !l.tx.is_closed() && l.expires > now);
        if links.len() >= MAX_PENDING {
            return false;
        }
        links.insert(key, link);
        true
    }
    pub(crate) fn take_link(&self, key: &[u8; 32]) -> Option<Link> {
        lock(&self.links).remove(key)
    }
    pub(crate) fn peek_link<R>(&self, key: &[u8; 32], f: impl FnOnce(&Link) -> R) -> Option<R> {
        lock(&self.links).get(key).map(f)
    }
    pub(crate) fn insert_flow(&self, key: [u8; 32], flow: Flow) -> bool {
        let now = Instant::now();
        let mut flows = lock(&self.flows);
        flows.retain(|_, f| !f.tx.is_closed() && f.deadline > now);
        if flows.len() >= MAX_PENDING {
            return false;
        }
        flows.insert(key, flow);
        true
    }
    pub(crate) fn take_flow(&self, key: &[u8; 32]) -> Option<Flow> {
        lock(&self.flows).remove(key)
    }
}

/// What the provider and its listener share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub name: String,
    pub idp: idp::Idp,
    pub redirect_uri: String,
    link_base: String,
    /// The path of `public_url` (empty or `/prefix`), before `/stepup/…`.
    pub prefix: String,
    pub secure_cookie: bool,
    pub scopes: String,
    pub username_claim: String,
    pub matching: IdentityMatch,
    pub amr_any: Vec<String>,
    pub acr_any: Vec<String>,
    pub acrs: Option<String>,
    pub max_age_zero: bool,
    pub skew: Duration,
    link_ttl: Duration,
    pub auth_timeout: Duration,
    message: String,
    channel: delivery::Channel,
    pub registry: Registry,
}

/// The OIDC step-up provider.
#[derive(Debug)]
pub struct OidcProvider {
    name: String,
    inner: Arc<Inner>,
    listen_addr: SocketAddr,
    /// The step-up listener: it stops accepting when the provider is dropped.
    _listener: crate::net::listener::Listeners,
}

impl OidcProvider {
    /// The step-up listener's bound address (useful with port 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }
}

/// 256 random bits, base64url (43 characters).
pub(crate) fn random_token() -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; 32]);
    // aws-lc-rs's system RNG; it does not fail on supported platforms, and a failure must not
    // yield a predictable token, so the caller gets an empty token, which nothing accepts.
    if aws_lc_rs::rand::fill(&mut b[..]).is_err() {
        return Zeroizing::new(String::new());
    }
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b[..]))
}

/// SHA-256, the registry's key for a token.
pub(crate) fn key_of(token: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

/// Constant-time equality of two secrets.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub(crate) fn now_unix() -> i64 {
    crate::core::clock::now_unix()
}

/// Writes the `fraud_reported` audit event ("This wasn't me").
pub(crate) fn audit_fraud(provider: &str, r: &Request) {
    audit::emit(
        AuditKind::FraudReported,
        &AuditEvent {
            operation: "oidc-stepup",
            caller: &r.ip,
            username: &r.username,
            provider: Some(provider),
            call_result: Some(112),
            request_id: Some(&r.request_id),
            reason: Some("the person reported the request as not theirs"),
            ..AuditEvent::default()
        },
    );
}

/// Removes the link when the SOAP call's future ends (answered, or dropped at the deadline).
struct Cleanup<'a> {
    registry: &'a Registry,
    key: [u8; 32],
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.registry.take_link(&self.key);
    }
}

#[async_trait]
impl Provider for OidcProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict {
        let inner = &self.inner;
        if inner.matching == IdentityMatch::ExternalId && attempt.external_id.is_none() {
            // No sign-in could ever match: refuse now rather than send the person a link that
            // cannot succeed. Never fall back to the username: that is the weaker match this
            // setting was chosen to avoid.
            tracing::warn!(target: "pfgate::oidc", provider = %self.name, request_id = %attempt.request_id, user = %attempt.username, reason = "no external id stored for user", "step-up refused");
            return Verdict::Denied;
        }
        let token = random_token();
        if token.is_empty() {
            return Verdict::failed(
                ProviderErrorKind::Local,
                "no randomness for the step-up link",
            );
        }
        let key = key_of(&token);
        let (tx, mut rx) = oneshot::channel();
        let expires = Instant::now() + inner.link_ttl;
        let request = Request {
            request_id: attempt.request_id.clone(),
            username: attempt.username.clone(),
            application: attempt.application_name.clone(),
            ip: display::shown_ip(&attempt.initiating_ip, attempt.caller_ip),
            issued_unix: now_unix(),
            external_id: attempt.external_id.clone(),
        };
        let link = Link {
            request,
            expires,
            csrf: random_token(),
            tx,
        };
        if !inner.registry.insert_link(key, link) {
            return Verdict::failed(ProviderErrorKind::Local, "too many step-ups pending");
        }
        let _cleanup = Cleanup {
            registry: &inner.registry,
            key,
        };
        let url = Zeroizing::new(format!("{}{}", inner.link_base, token.as_str()));
        let minutes = inner.link_ttl.as_secs().div_ceil(60).max(1);
        let escape = |s: &str| inner.channel.escape(s);
        let text = Zeroizing::new(display::fill(
            &inner.message,
            &[
                ("application", &escape(or_dash(&attempt.application_name))),
                ("user", &escape(&attempt.username)),
                ("minutes", &minutes.to_string()),
                ("link", &url),
            ],
        ));
        let expires_unix = now_unix() + i64::try_from(inner.link_ttl.as_secs()).unwrap_or(0);
        if let Err(reason) = inner
            .channel
            .deliver(attempt, &url, &text, expires_unix)
            .await
        {
            return Verdict::failed(
                ProviderErrorKind::Rejected,
                format!("step-up link not delivered: {reason}"),
            );
        }
        tracing::info!(target: "pfgate::oidc", provider = %self.name, request_id = %attempt.request_id, channel = inner.channel.kind(), "step-up link delivered");
        let outcome = tokio::select! {
            r = &mut rx => r.ok(),
            () = tokio::time::sleep_until(expires.into()) => {
                // Unopened by now: the link is void. Opened: the sign-in goes on until the deadline.
                if inner.registry.take_link(&key).is_some() {
                    Some(Outcome::Expired)
                } else {
                    rx.await.ok()
                }
            }
        };
        match outcome {
            Some(Outcome::Approved) => Verdict::AppApproved,
            Some(Outcome::Fraud) => Verdict::FraudReported,
            Some(Outcome::Denied(reason)) => {
                tracing::warn!(target: "pfgate::oidc", provider = %self.name, request_id = %attempt.request_id, reason = %reason, "step-up refused");
                Verdict::Denied
            }
            Some(Outcome::Refused(refusal)) => {
                tracing::warn!(target: "pfgate::oidc", provider = %self.name, request_id = %attempt.request_id, reason = %refusal.reason, blame = ?refusal.blame, "step-up refused");
                Verdict::Refused(refusal)
            }
            Some(Outcome::Expired) | None => {
                tracing::info!(target: "pfgate::oidc", provider = %self.name, request_id = %attempt.request_id, "step-up link expired unused");
                Verdict::NotAnswered
            }
        }
    }

    async fn healthy(&self) -> bool {
        self.inner.idp.endpoints().await.is_ok()
    }
}

fn or_dash(s: &str) -> &str {
    if display::clean(s).is_empty() {
        "Sign-in"
    } else {
        s
    }
}
