//! Talking to the identity provider: the discovery document, the JWKS (with key rotation), and the
//! token endpoint. Everything the IdP sends is bounded in size and checked before use.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use super::jwt::{self, Jwk, TokenError};

/// The largest document read from the IdP (discovery, JWKS, token response).
const MAX_BODY: usize = 256 * 1024;

/// A JWKS is refetched for an unknown `kid` at most this often: key rotation needs one refetch,
/// a stream of forged tokens with random `kid`s must not turn pfgate into a JWKS fetch loop.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// The endpoints of the discovery document pfgate uses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `issuer`, equal to the configured one.
    pub issuer: String,
    /// `authorization_endpoint`.
    pub authorization: Url,
    /// `token_endpoint`.
    pub token: Url,
    /// `jwks_uri`.
    pub jwks: Url,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Default)]
struct Keys {
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// The IdP as pfgate knows it: configuration, discovered endpoints (cached), keys (cached).
#[derive(Debug)]
pub struct Idp {
    issuer: String,
    client_id: String,
    client_secret: Option<Zeroizing<String>>,
    loopback_ok: bool,
    http: reqwest::Client,
    endpoints: Mutex<Option<Endpoints>>,
    keys: Mutex<Keys>,
}

/// `https`, or `http` to a loopback host when the issuer itself is on loopback (tests, a local
/// relay).
pub fn acceptable_url(url: &Url, loopback_ok: bool) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => loopback_ok && is_loopback(url),
        _ => false,
    }
}

pub(crate) use crate::providers::common::http::is_loopback;

impl Idp {
    /// A client for `issuer` (validated by the settings).
    pub fn new(
        issuer: String,
        client_id: String,
        client_secret: Option<Zeroizing<String>>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let parsed = Url::parse(&issuer).map_err(|e| format!("issuer: {e}"))?;
        let loopback_ok = parsed.scheme() == "http" && is_loopback(&parsed);
        let http =
            crate::providers::common::http::client_builder("oidc", timeout, timeout, loopback_ok)
                .build()
                .map_err(|e| e.to_string())?;
        Ok(Self {
            issuer,
            client_id,
            client_secret,
            loopback_ok,
            http,
            endpoints: Mutex::new(None),
            keys: Mutex::new(Keys::default()),
        })
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url.clone())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", without_url(&e)))?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        Ok(body)
    }

    /// The discovery document's endpoints, fetched once and kept (a failed fetch is retried at the
    /// next use).
    pub async fn endpoints(&self) -> Result<Endpoints, String> {
        if let Some(e) = lock(&self.endpoints).clone() {
            return Ok(e);
        }
        let url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        ))
        .map_err(|e| e.to_string())?;
        let body = self.get(&url).await?;
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("the discovery document is not usable: {e}"))?;
        // OpenID Connect Discovery §4.3: the issuer in the document must be the one asked for,
        // or a document on a compromised path could name another issuer's tokens as valid.
        if d.issuer != self.issuer {
            return Err(format!(
                "the discovery document names issuer {:?}, not the configured {:?}",
                d.issuer, self.issuer
            ));
        }
        let parse = |what: &str, s: &str| -> Result<Url, String> {
            let u = Url::parse(s).map_err(|e| format!("{what}: {e}"))?;
            if acceptable_url(&u, self.loopback_ok) {
                Ok(u)
            } else {
                Err(format!("{what} {s} is not https"))
            }
        };
        let e = Endpoints {
            issuer: d.issuer,
            authorization: parse("authorization_endpoint", &d.authorization_endpoint)?,
            token: parse("token_endpoint", &d.token_endpoint)?,
            jwks: parse("jwks_uri", &d.jwks_uri)?,
        };
        *lock(&self.endpoints) = Some(e.clone());
        Ok(e)
    }

    async fn fetch_keys(&self, jwks: &Url) -> Result<Vec<Jwk>, String> {
        let body = self.get(jwks).await?;
        let keys = jwt::parse_jwks(&body)?;
        let mut k = lock(&self.keys);
        k.keys = keys.clone();
        k.fetched = Some(Instant::now());
        Ok(keys)
    }

    /// Verifies an ID token's signature with the issuer's keys. An unknown `kid` refetches the
    /// JWKS once (key rotation), at most every [`JWKS_REFETCH_INTERVAL`].
    pub async fn verify_signature(
        &self,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, VerifyError> {
        let unverified = jwt::decode(token)?;
        let endpoints = self.endpoints().await.map_err(VerifyError::Idp)?;
        let (cached, stale) = {
            let k = lock(&self.keys);
            let stale = k
                .fetched
                .is_none_or(|t| t.elapsed() >= JWKS_REFETCH_INTERVAL);
            (k.keys.clone(), stale)
        };
        let has_candidate = unverified.candidates(&cached).next().is_some();
        let keys = if !has_candidate && stale {
            self.fetch_keys(&endpoints.jwks)
                .await
                .map_err(VerifyError::Idp)?
        } else {
            cached
        };
        Ok(unverified.verify(&keys)?)
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the ID token. The client
    /// authenticates with HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1: id and secret
    /// form-encoded first), or as a public client with PKCE alone when no secret is configured.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Zeroizing<String>, ExchangeError> {
        let endpoints = self.endpoints().await.map_err(ExchangeError::Idp)?;
        // In a block: the serializer is not `Send` and must not live across an await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_verifier", verifier);
            if self.client_secret.is_none() {
                form.append_pair("client_id", &self.client_id);
            }
            Zeroizing::new(form.finish())
        };
        let mut req = self
            .http
            .post(endpoints.token.clone())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        if let Some(secret) = &self.client_secret {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.client_id),
                enc(secret)
            )));
            req = req.header("Authorization", format!("Basic {}", basic.as_str()));
        }
        let resp = req
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| ExchangeError::Idp(format!("token endpoint: {}", without_url(&e))))?;
        let status = resp.status();
        let body = Zeroizing::new(read_limited(resp).await.map_err(ExchangeError::Idp)?);
        if status.is_client_error() {
            // The grant (the code, its verifier, the redirect URI) was refused: the code came
            // through the person's browser, so whoever holds the link can send any code. The
            // OAuth error code is safe to log; the description may echo input, so it is left out.
            let err = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|j| {
                    j.get("error")?
                        .as_str()
                        .map(|e| e.chars().take(60).collect())
                })
                .unwrap_or_else(|| "?".to_string());
            return Err(ExchangeError::GrantRefused(format!(
                "token endpoint: HTTP {status}, error {err:?}"
            )));
        }
        if !status.is_success() {
            return Err(ExchangeError::Idp(format!("token endpoint: HTTP {status}")));
        }
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| ExchangeError::Idp(format!("token endpoint: HTTP {status}, not JSON")))?;
        json.get("id_token")
            .and_then(|v| v.as_str())
            .map(|s| Zeroizing::new(s.to_string()))
            .ok_or_else(|| ExchangeError::Idp("token endpoint: no id_token in the response".into()))
    }
}

/// Why a code could not be exchanged for an ID token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The IdP refused the grant (HTTP 4xx: `invalid_grant`, `invalid_request`…): what the
    /// callback carried — a bogus, used or foreign code — is at fault, not the IdP.
    #[error("{0}")]
    GrantRefused(String),
    /// The IdP could not be asked or answered unusably (connect, timeout, 5xx, a body that is not
    /// a token response).
    #[error("{0}")]
    Idp(String),
}

/// Why a signature could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token itself.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The IdP could not be asked for its keys.
    #[error("identity provider: {0}")]
    Idp(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A reqwest error without its URL (which, for the token endpoint, carries nothing secret, but
/// keeps messages short and uniform).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    if let Some(src) = std::error::Error::source(e) {
        s.push_str(&format!(" ({src})"));
    }
    s
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return Err(format!("response larger than {MAX_BODY} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the response: {}", without_url(&e)))?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(format!("response larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
