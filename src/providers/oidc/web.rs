//! The step-up listener: the link pages and the OpenID Connect callback, on a listener of their own
//! (the people who open links are not the systems that call the SOAP endpoint, and an
//! organisation will often publish one and not the other).
//!
//! Routes, under the path of `public_url`:
//!
//! - `GET  /stepup/l/{link}` — the start page (changes nothing: link previews are harmless);
//! - `POST /stepup/l/{link}` — `continue` (consumes the link and redirects to the IdP with state,
//!   nonce and PKCE), `deny` or `fraud`; the form carries the link's CSRF token;
//! - `GET  /stepup/callback?code&state` — single use: the flow is removed before anything else, so
//!   a replayed callback finds nothing.
//!
//! Every answer carries `Cache-Control: no-store`, `Referrer-Policy: no-referrer` (the link must not
//! leak to the IdP in a `Referer`) and a CSP with `default-src 'none'`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use super::idp::ExchangeError;
use super::{
    audit_fraud, ct_eq, jwt, key_of, now_unix, pages, random_token, Flow, IdentityMatch, Inner,
    Outcome, Request,
};
use crate::net::listener::{FnService, Http1, Listeners, Tls};
use crate::net::tls::TlsIdentity;
use crate::net::ConnInfo;
use crate::providers::Refusal;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// Header, handshake and body deadlines.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest form accepted.
const MAX_FORM: usize = 4096;
/// The browser-binding cookie set when a sign-in starts.
const COOKIE_NAME: &str = "pfgate_stepup";

type Resp = http::Response<Full<Bytes>>;

/// Binds `listen` and serves on the current runtime until the returned set is dropped (with the
/// provider that owns it). Returns the bound address too.
pub(super) fn start(
    inner: Arc<Inner>,
    listen: SocketAddr,
    tls: Option<TlsIdentity>,
) -> std::io::Result<(SocketAddr, Listeners)> {
    let std_listener = std::net::TcpListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| std::io::Error::other(format!("no async runtime: {e}")))?;
    // `build` is not async: enter the runtime to register the socket and spawn the loop.
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
    let service = FnService::new(
        "oidc",
        Http1::new(IO_TIMEOUT).max_buf_size(16 * 1024),
        IO_TIMEOUT,
        move |_: ConnInfo, req| {
            let inner = inner.clone();
            async move { handle(&inner, req).await }
        },
    );
    let mut listeners = Listeners::new(MAX_CONNECTIONS);
    listeners.serve(listener, Tls::from_acceptor(acceptor), Arc::new(service));
    tracing::info!(target: "pfgate::oidc", %addr, "step-up listener ready");
    Ok((addr, listeners))
}

/// The CSP: nothing but the hashed stylesheet; forms may post to this page and be redirected to
/// the IdP's authorization endpoint (Chromium applies `form-action` to the redirect too).
fn respond(status: StatusCode, html: String, form_target: Option<&str>) -> Resp {
    let mut r = crate::net::respond(status, "text/html; charset=utf-8", html);
    security_headers(r.headers_mut(), form_target);
    r
}

fn security_headers(h: &mut http::HeaderMap, form_target: Option<&str>) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let csp = format!(
        "default-src 'none'; style-src {}; form-action 'self'{}; frame-ancestors 'none'; base-uri 'none'",
        pages::style_hash(),
        form_target.map(|t| format!(" {t}")).unwrap_or_default()
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert("content-security-policy", v);
    }
}

async fn handle(inner: &Inner, req: http::Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let Some(rest) = path
        .strip_prefix(inner.prefix.as_str())
        .and_then(|p| p.strip_prefix("/stepup/"))
    else {
        return respond(
            StatusCode::NOT_FOUND,
            pages::bad_request("Not found."),
            None,
        );
    };
    match (req.method().clone(), rest) {
        (Method::GET, "callback") => callback(inner, &req).await,
        (m, link) if link.starts_with("l/") => {
            let token = &link[2..];
            // Tokens are 43 base64url characters; anything else cannot be one.
            if token.len() != 43
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return respond(StatusCode::NOT_FOUND, pages::expired(), None);
            }
            let token = token.to_string();
            match m {
                Method::GET | Method::HEAD => start_page(inner, &token).await,
                Method::POST => answer(inner, &token, req).await,
                _ => respond(
                    StatusCode::METHOD_NOT_ALLOWED,
                    pages::bad_request("Use GET or POST."),
                    None,
                ),
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            pages::bad_request("Not found."),
            None,
        ),
    }
}

/// The origin of the authorization endpoint, for `form-action`.
async fn idp_origin(inner: &Inner) -> Option<String> {
    let e = inner.idp.endpoints().await.ok()?;
    Some(e.authorization.origin().ascii_serialization())
}

async fn start_page(inner: &Inner, token: &str) -> Resp {
    let key = key_of(token);
    let now = Instant::now();
    let Some((request, csrf, live)) = inner.registry.peek_link(&key, |l| {
        (
            l.request.clone(),
            l.csrf.clone(),
            l.expires > now && !l.tx.is_closed(),
        )
    }) else {
        return respond(StatusCode::GONE, pages::expired(), None);
    };
    if !live {
        expire(inner, &key);
        return respond(StatusCode::GONE, pages::expired(), None);
    }
    let action = format!("{}/stepup/l/{token}", inner.prefix);
    let origin = idp_origin(inner).await;
    respond(
        StatusCode::OK,
        pages::start(&request, &action, &csrf),
        origin.as_deref(),
    )
}

/// Ends a link that expired while still registered (its SOAP call learns "expired").
fn expire(inner: &Inner, key: &[u8; 32]) {
    if let Some(link) = inner.registry.take_link(key) {
        let _ = link.tx.send(Outcome::Expired);
    }
}

async fn read_form(req: http::Request<Incoming>) -> Option<Vec<(String, String)>> {
    let limited = Limited::new(req.into_body(), MAX_FORM);
    let body = tokio::time::timeout(IO_TIMEOUT, limited.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some(
        url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

async fn answer(inner: &Inner, token: &str, req: http::Request<Incoming>) -> Resp {
    let key = key_of(token);
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            pages::bad_request("Expected a form."),
            None,
        );
    }
    let Some(form) = read_form(req).await else {
        return respond(
            StatusCode::BAD_REQUEST,
            pages::bad_request("The form could not be read."),
            None,
        );
    };
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(csrf), Some(action)) = (field("csrf"), field("action")) else {
        return respond(
            StatusCode::BAD_REQUEST,
            pages::bad_request("The form is incomplete."),
            None,
        );
    };
    // The CSRF token is checked before the link is consumed, so a forged post cannot burn it.
    let Some(csrf_ok) = inner
        .registry
        .peek_link(&key, |l| ct_eq(l.csrf.as_bytes(), csrf.as_bytes()))
    else {
        return respond(StatusCode::GONE, pages::expired(), None);
    };
    if !csrf_ok {
        return respond(
            StatusCode::FORBIDDEN,
            pages::bad_request("The form did not come from this page."),
            None,
        );
    }
    let Some(link) = inner.registry.take_link(&key) else {
        return respond(StatusCode::GONE, pages::expired(), None);
    };
    if link.expires <= Instant::now() || link.tx.is_closed() {
        let _ = link.tx.send(Outcome::Expired);
        return respond(StatusCode::GONE, pages::expired(), None);
    }
    match action {
        "deny" => {
            let page = pages::denied(Some(&link.request), "You denied the request.");
            let _ = link
                .tx
                .send(Outcome::Denied("the person chose Deny".into()));
            respond(StatusCode::OK, page, None)
        }
        "fraud" => {
            audit_fraud(&inner.name, &link.request);
            let page = pages::fraud(&link.request);
            let _ = link.tx.send(Outcome::Fraud);
            respond(StatusCode::OK, page, None)
        }
        "continue" => begin_sign_in(inner, link).await,
        _ => {
            // Unknown action: the link is spent (fail secure), the call denied.
            let _ = link.tx.send(Outcome::Denied("unknown form action".into()));
            respond(
                StatusCode::BAD_REQUEST,
                pages::bad_request("Unknown action."),
                None,
            )
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn begin_sign_in(inner: &Inner, link: super::Link) -> Resp {
    let endpoints = match inner.idp.endpoints().await {
        Ok(e) => e,
        Err(reason) => {
            // The person was reached: a denial (the IdP's fault), never a failure to fail over.
            let _ = link.tx.send(Outcome::Refused(Refusal::provider(format!(
                "discovery: {reason}"
            ))));
            return respond(
                StatusCode::BAD_GATEWAY,
                pages::bad_request("The sign-in service cannot be reached. Try again later."),
                None,
            );
        }
    };
    let (state, nonce, verifier, binding) = (
        random_token(),
        random_token(),
        random_token(),
        random_token(),
    );
    let challenge = b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    let mut url = endpoints.authorization.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", inner.idp.client_id())
            .append_pair("redirect_uri", &inner.redirect_uri)
            .append_pair("scope", &inner.scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "login")
            .append_pair("login_hint", &link.request.username);
        if inner.max_age_zero {
            q.append_pair("max_age", "0");
        }
        if !inner.acr_any.is_empty() {
            q.append_pair("acr_values", &inner.acr_any.join(" "));
        }
        if let Some(acrs) = &inner.acrs {
            let claims =
                serde_json::json!({"id_token": {"acrs": {"essential": true, "value": acrs}}});
            q.append_pair("claims", &claims.to_string());
        }
    }
    let deadline = Instant::now() + inner.auth_timeout;
    let flow = Flow {
        request: link.request,
        deadline,
        nonce,
        verifier,
        binding: key_of(&binding),
        tx: link.tx,
    };
    if !inner.registry.insert_flow(key_of(&state), flow) {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::bad_request("Too many sign-ins are in progress. Try again later."),
            None,
        );
    }
    let mut r = respond(
        StatusCode::SEE_OTHER,
        String::new(),
        Some(&endpoints.authorization.origin().ascii_serialization()),
    );
    let cookie = format!(
        "{COOKIE_NAME}={}; Path={}/stepup/callback; Max-Age={}; HttpOnly; SameSite=Lax{}",
        binding.as_str(),
        inner.prefix,
        inner.auth_timeout.as_secs(),
        if inner.secure_cookie { "; Secure" } else { "" }
    );
    if let (Ok(loc), Ok(c)) = (
        HeaderValue::from_str(url.as_str()),
        HeaderValue::from_str(&cookie),
    ) {
        r.headers_mut().insert(LOCATION, loc);
        r.headers_mut().insert(SET_COOKIE, c);
    }
    r
}

fn cookie_value(req: &http::Request<Incoming>) -> Option<Zeroizing<String>> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| Zeroizing::new(v.to_string()))
}

async fn callback(inner: &Inner, req: &http::Request<Incoming>) -> Resp {
    let query: Vec<(String, Zeroizing<String>)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
            .collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(state) = get("state") else {
        return respond(
            StatusCode::BAD_REQUEST,
            pages::bad_request("The sign-in answer has no state."),
            None,
        );
    };
    // Removed first: whatever happens next, this state is never accepted again (replays).
    let Some(flow) = inner.registry.take_flow(&key_of(state)) else {
        tracing::warn!(target: "pfgate::oidc", provider = %inner.name, "callback with an unknown, used or expired state");
        return respond(StatusCode::BAD_REQUEST, pages::expired(), None);
    };
    if flow.deadline <= Instant::now() || flow.tx.is_closed() {
        let _ = flow.tx.send(Outcome::Expired);
        return respond(StatusCode::GONE, pages::expired(), None);
    }
    let bound = cookie_value(req).is_some_and(|c| ct_eq(&key_of(&c), &flow.binding));
    if !bound {
        return refuse_as(
            flow,
            StatusCode::FORBIDDEN,
            "The sign-in was finished in another browser than the one that started it.",
            Refusal::caller("browser binding cookie missing or wrong"),
        );
    }
    if let Some(error) = get("error") {
        let error: String = error.chars().take(60).collect();
        return refuse(
            flow,
            StatusCode::OK,
            "The sign-in was not completed.",
            format!("the identity provider answered error {error:?}"),
        );
    }
    let Some(code) = get("code") else {
        return refuse_as(
            flow,
            StatusCode::BAD_REQUEST,
            "The sign-in answer has no code.",
            Refusal::caller("callback without a code"),
        );
    };
    let id_token = match inner
        .idp
        .exchange(code, &flow.verifier, &inner.redirect_uri)
        .await
    {
        Ok(t) => t,
        Err(ExchangeError::GrantRefused(reason)) => {
            return refuse_as(
                flow,
                StatusCode::OK,
                "The sign-in could not be verified.",
                Refusal::caller(reason),
            )
        }
        Err(ExchangeError::Idp(reason)) => return idp_failed(flow, reason),
    };
    let claims = match inner.idp.verify_signature(&id_token).await {
        Ok(c) => c,
        Err(super::idp::VerifyError::Idp(reason)) => return idp_failed(flow, reason),
        // The token came from the IdP's token endpoint, not through the browser: a signature its
        // own keys do not verify is the IdP's (or the path to it's) failure.
        Err(super::idp::VerifyError::Token(e)) => {
            return refuse_as(
                flow,
                StatusCode::OK,
                "The sign-in could not be verified.",
                Refusal::provider(e.to_string()),
            )
        }
    };
    let endpoints_issuer = match inner.idp.endpoints().await {
        Ok(e) => e.issuer,
        Err(reason) => return idp_failed(flow, reason),
    };
    let expect = jwt::Expect {
        issuer: &endpoints_issuer,
        client_id: inner.idp.client_id(),
        nonce: &flow.nonce,
        now: now_unix(),
        skew: inner.skew,
        not_before_auth: flow.request.issued_unix,
        amr_any: &inner.amr_any,
        acr_any: &inner.acr_any,
        acrs: inner.acrs.as_deref(),
    };
    if let Err(e) = jwt::check_claims(&claims, &expect) {
        let shown = match &e {
            jwt::TokenError::Claim { claim, .. } if matches!(*claim, "amr" | "acr" | "acrs") => {
                "The sign-in did not use multi-factor authentication."
            }
            jwt::TokenError::Claim { claim, .. } if *claim == "auth_time" => {
                "The sign-in was not a fresh sign-in."
            }
            _ => "The sign-in could not be verified.",
        };
        return refuse(flow, StatusCode::OK, shown, e.to_string());
    }
    let signed_in = claims
        .get(inner.username_claim.as_str())
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if let Err(reason) = identity_matches(
        inner.matching,
        &inner.username_claim,
        &flow.request,
        signed_in,
    ) {
        return refuse(
            flow,
            StatusCode::OK,
            "You signed in as a different user than the one being verified.",
            reason,
        );
    }
    let page = pages::done(&flow.request);
    if flow.tx.send(Outcome::Approved).is_err() {
        return respond(StatusCode::GONE, pages::expired(), None);
    }
    tracing::info!(target: "pfgate::oidc", provider = %inner.name, request_id = %flow.request.request_id, "step-up sign-in verified");
    respond(StatusCode::OK, page, None)
}

/// Whether the signed-in identity (the value of the configured claim) is the user being
/// authenticated, as `match` says; `Err` is the reason for the log. Whole values only: no prefix,
/// substring or partial match, and with `external_id` never a fall back to the username. The
/// claim's value is an identifier, not a secret, so the reason may name it (shortened).
fn identity_matches(
    matching: IdentityMatch,
    claim: &str,
    request: &Request,
    signed_in: &str,
) -> Result<(), String> {
    let who: String = signed_in.chars().take(100).collect();
    match matching {
        IdentityMatch::Username => {
            if signed_in.is_empty() || !signed_in.eq_ignore_ascii_case(&request.username) {
                return Err(format!(
                    "signed in as {who:?} ({claim} claim), not the user being authenticated"
                ));
            }
        }
        IdentityMatch::ExternalId => {
            let Some(expected) = request.external_id.as_deref() else {
                return Err(format!(
                    "no external id stored for user {:?}",
                    request.username
                ));
            };
            let got = crate::store::normalize_external_id(signed_in);
            if got.as_deref() != Some(expected) {
                return Err(format!(
                    "signed in as {who:?} ({claim} claim), not the external id stored for user \
                     {:?}",
                    request.username
                ));
            }
        }
    }
    Ok(())
}

/// Ends the flow as denied by the sign-in itself (no MFA, another user, a stale sign-in): the
/// page says `shown`, the log says `reason`.
fn refuse(flow: Flow, status: StatusCode, shown: &str, reason: String) -> Resp {
    tracing::warn!(target: "pfgate::oidc", request_id = %flow.request.request_id, reason = %reason, "step-up sign-in refused");
    let page = pages::denied(Some(&flow.request), shown);
    let _ = flow.tx.send(Outcome::Denied(reason));
    respond(status, page, None)
}

/// Ends the flow as refused for what the callback carried or the IdP did ([`Refusal`]): a
/// denial for the waiting call, whoever is to blame.
fn refuse_as(flow: Flow, status: StatusCode, shown: &str, refusal: Refusal) -> Resp {
    tracing::warn!(target: "pfgate::oidc", request_id = %flow.request.request_id, reason = %refusal.reason, blame = ?refusal.blame, "step-up callback refused");
    let page = pages::denied(Some(&flow.request), shown);
    let _ = flow.tx.send(Outcome::Refused(refusal));
    respond(status, page, None)
}

/// Ends the flow because the IdP failed mid-flow (unreachable, 5xx, unusable answer): still a
/// denial — the person was reached — counted toward the IdP's breaker.
fn idp_failed(flow: Flow, reason: String) -> Resp {
    refuse_as(
        flow,
        StatusCode::BAD_GATEWAY,
        "The sign-in service could not be reached to confirm the sign-in.",
        Refusal::provider(reason),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(external_id: Option<&str>) -> Request {
        Request {
            request_id: "1".into(),
            username: "alice@contoso.com".into(),
            application: "MIM".into(),
            ip: "10.0.0.5".into(),
            issued_unix: 0,
            external_id: external_id.map(str::to_string),
        }
    }

    #[test]
    fn external_id_matching_is_whole_value_case_insensitive_and_never_by_username() {
        const OID: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
        let m = |stored: Option<&str>, claim: &str| {
            identity_matches(IdentityMatch::ExternalId, "oid", &request(stored), claim)
        };
        assert_eq!(m(Some(OID), OID), Ok(()));
        assert_eq!(m(Some(OID), &OID.to_ascii_uppercase()), Ok(()));
        assert_eq!(m(Some(OID), &format!(" {OID} ")), Ok(()));
        for wrong in [
            "",
            "6f9619ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964f",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff0",
            "x6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "00000000-0000-0000-0000-000000000000",
        ] {
            let e = m(Some(OID), wrong).unwrap_err();
            assert!(e.contains("not the external id stored"), "{wrong}: {e}");
        }
        // No stored id: refused even when the claim is the username itself.
        let e = m(None, "alice@contoso.com").unwrap_err();
        assert!(
            e.contains("no external id stored for user \"alice@contoso.com\""),
            "{e}"
        );
        let e = m(None, OID).unwrap_err();
        assert!(e.contains("no external id stored"), "{e}");
    }

    #[test]
    fn username_matching_ignores_ascii_case_only() {
        let m = |claim: &str| {
            identity_matches(
                IdentityMatch::Username,
                "preferred_username",
                &request(Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")),
                claim,
            )
        };
        assert_eq!(m("ALICE@contoso.com"), Ok(()));
        for wrong in [
            "",
            "alice",
            "alice@contoso.com.evil",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        ] {
            assert!(m(wrong).is_err(), "{wrong}");
        }
    }
}
