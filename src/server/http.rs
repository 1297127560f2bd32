//! One HTTP request: route by path and method, enforce the body limits, and hand SOAP to the
//! engine. Everything an ASMX endpoint answers besides SOAP lives here too (WSDL, DISCO, help page).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::access_log::{self, Answer, Handled, Page, Probe, Rejection};
use super::caller::{self, ConnAuth};
use crate::config::{is_trusted, Settings};
use crate::telemetry::audit::AuditKind;
use crate::engine::{CallContext, Engine};
use crate::pfwssdk::{help, wsdl};
use crate::pfwssdk::soap::envelope::{read_head, SoapVersion};
use crate::pfwssdk::soap::xml::XmlLimits;
use crate::pfwssdk::soap::{decode_request, encode_response, Fault};

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// Validated settings.
    pub settings: Settings,
    /// NTLM acceptor parts, when Windows authentication is configured.
    pub ntlm: Option<caller::NtlmRuntime>,
    /// Hook (issue #6): the test double's state when this server is `pfgate mock`. `None` on the
    /// gateway, which then never looks at it: the connection picks its service once
    /// (`server::serve_http`), so the gateway path pays nothing per request.
    pub mock: Option<Arc<crate::mock::MockState>>,
    /// The server's guards against unauthenticated load (kept across reloads).
    pub guard: Arc<super::guard::Guard>,
}

pub use crate::net::ConnInfo;

pub(crate) type HttpResponse = http::Response<Full<Bytes>>;

use crate::net::respond;

fn plain(status: StatusCode, text: &str) -> HttpResponse {
    respond(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

fn fault_response(version: SoapVersion, fault: &Fault) -> HttpResponse {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        version.content_type(),
        fault.to_envelope(version),
    )
}

/// The `op` value of a help-page query (`?op=PfAuthUser_5`), percent-decoded; the first one wins.
fn help_operation(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v.into_owned())
}

/// True for any path ending in `/PfWsSdk.asmx`, case-insensitively (docs/protocol.md §1).
pub fn is_sdk_path(path: &str) -> bool {
    const SUFFIX: &str = "/pfwssdk.asmx";
    path.len() >= SUFFIX.len()
        && path.is_char_boundary(path.len() - SUFFIX.len())
        && path[path.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

/// The URL the caller used, for `soap:address`: forwarded scheme and host are believed only from a
/// configured trusted proxy.
fn public_location(state: &AppState, conn: &ConnInfo, headers: &HeaderMap, path: &str) -> String {
    let trusted = is_trusted(&state.settings.trusted_proxies, conn.peer.ip());
    let mut scheme = if conn.tls { "https" } else { "http" };
    let mut host: Option<String> = header(headers, HOST.as_str())
        .filter(|h| valid_host(h))
        .map(str::to_string);
    if trusted {
        match header(headers, "x-forwarded-proto").map(|p| p.trim().to_ascii_lowercase()) {
            Some(p) if p == "https" => scheme = "https",
            Some(p) if p == "http" => scheme = "http",
            _ => {}
        }
        if let Some(h) = header(headers, "x-forwarded-host")
            .and_then(|h| h.split(',').next())
            .map(str::trim)
            .filter(|h| valid_host(h))
        {
            host = Some(h.to_string());
        }
    }
    let host = host.unwrap_or_else(|| conn.local.to_string());
    format!("{scheme}://{host}{path}")
}

/// The caller's address: the peer, or the right-most untrusted `X-Forwarded-For` entry when the peer
/// is a trusted proxy.
pub(crate) fn caller_ip(state: &AppState, conn: &ConnInfo, headers: &HeaderMap) -> IpAddr {
    let proxies = &state.settings.trusted_proxies;
    let peer = conn.peer.ip();
    if !is_trusted(proxies, peer) {
        return peer;
    }
    let Some(xff) = header(headers, "x-forwarded-for") else {
        return peer;
    };
    let mut ip = peer;
    for entry in xff.rsplit(',') {
        match entry.trim().parse::<IpAddr>() {
            Ok(addr) => {
                ip = addr;
                if !is_trusted(proxies, addr) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    ip
}

/// Handles one request. Never fails: every problem becomes an HTTP answer.
pub async fn handle(
    state: Arc<AppState>,
    conn: ConnInfo,
    auth: Arc<ConnAuth>,
    req: http::Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let started = Instant::now();
    auth.request_started();
    let caller = caller_ip(&state, &conn, req.headers());
    let method = req.method().clone();
    // Kept before `route` consumes the request; only for the access log, so only when it is on.
    let path = access_log::enabled().then(|| req.uri().path().to_owned());
    // Boxed: the engine's future is large (every operation's state lives in it), and hyper moves
    // the service future around; a box keeps those moves to a pointer copy.
    let (mut response, operation, outcome) =
        Box::pin(route(&state, &conn, &auth, req, caller)).await;
    auth.request_ended();
    if auth.must_close() {
        response = closing(response);
    }
    let status = response.status().as_u16();
    crate::telemetry::metrics::global().request(
        outcome.operation_label(operation),
        outcome.metric_outcome(),
        started.elapsed(),
    );
    if let Some(path) = path {
        access_log::record(&access_log::Entry {
            method: method.as_str(),
            path: &path,
            caller,
            operation,
            status,
            outcome: &outcome.text(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
    Ok(response)
}

/// Hook (issue #6): generic over the body so the test double can route a request whose body it has
/// already read (to match it against its scenario) through the same path; the gateway instantiates
/// it with hyper's `Incoming` only.
pub(crate) async fn route<B>(
    state: &AppState,
    conn: &ConnInfo,
    auth: &ConnAuth,
    req: http::Request<B>,
    caller: IpAddr,
) -> (HttpResponse, Option<&'static str>, Handled)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    // Probes for load balancers and orchestrators: no credentials, no body read, nothing but a
    // status. `/healthz` says the process serves; `/readyz` says it can answer authentications
    // (the store answers), so a balancer takes an instance whose database is gone out of rotation.
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        match path.as_str() {
            "/healthz" => {
                return (
                    plain(StatusCode::OK, "ok"),
                    None,
                    Handled::Probe(Probe::Live),
                )
            }
            "/readyz" => {
                return if state.engine.ready().await {
                    (
                        plain(StatusCode::OK, "ready"),
                        None,
                        Handled::Probe(Probe::Ready),
                    )
                } else {
                    (
                        plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: store unavailable",
                        ),
                        None,
                        Handled::Probe(Probe::NotReady),
                    )
                };
            }
            _ => {}
        }
    }
    if !is_sdk_path(&path) {
        return (
            plain(
                StatusCode::NOT_FOUND,
                "Not found. The PfWsSdk endpoint is at a path ending in /PfWsSdk.asmx.",
            ),
            None,
            Handled::NotFound,
        );
    }
    // Before sign-in: a body announced over the limit is refused at once, whoever sends it, and
    // what the client already wrote is read and dropped in the background so that it reads the
    // 413 instead of a connection reset (issue #17, item 14).
    if announced_too_large(req.headers(), &state.settings) {
        linger(req.into_body(), &state.settings);
        return too_large(state.settings.limits.max_body_bytes);
    }
    // Like an IIS site with anonymous access off: every request to the SDK is authenticated,
    // the WSDL and help page included.
    let identified = match caller::identify(state, conn, caller, req.headers(), auth).await {
        Ok(p) => p,
        Err(refusal) => return refused(state, conn, caller, req, refusal).await,
    };
    let principal = identified.principal;
    let final_token = identified.final_token;
    if !state.settings.auth.policy.knows(&principal) {
        crate::telemetry::metrics::global().refusal(crate::telemetry::metrics::RefusalReason::NotAllowed);
        caller::audit_refusal(
            AuditKind::CallerForbidden,
            &principal,
            "-",
            "not in the allow-list",
        );
        drain(req.into_body(), &state.settings).await;
        return (
            plain(StatusCode::FORBIDDEN, "403 - Forbidden: Access is denied."),
            None,
            Handled::Forbidden,
        );
    }
    let (mut response, operation, outcome) = match *req.method() {
        Method::GET | Method::HEAD => {
            let location = public_location(state, conn, req.headers(), &path);
            let query = req.uri().query().unwrap_or("");
            let key = query
                .split(['&', '='])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let (resp, what) = match key.as_str() {
                "wsdl" => (
                    respond(
                        StatusCode::OK,
                        "text/xml; charset=utf-8",
                        wsdl::wsdl_for(&location),
                    ),
                    Page::Wsdl,
                ),
                "disco" => (
                    respond(
                        StatusCode::OK,
                        "text/xml; charset=utf-8",
                        wsdl::disco_for(&location),
                    ),
                    Page::Disco,
                ),
                _ => (
                    respond(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        help::page(&location, help_operation(query).as_deref()),
                    ),
                    Page::Help,
                ),
            };
            // For HEAD, hyper sends the headers and omits the body.
            (resp, None, Handled::Page(what))
        }
        Method::POST => soap(state, req, caller, &principal).await,
        _ => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Use GET (WSDL, help page) or POST (SOAP).",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            (r, None, Handled::Rejected(Rejection::MethodNotAllowed))
        }
    };
    if let Some(token) = final_token.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, token);
    }
    (response, operation, outcome)
}

/// The answer to a caller that could not be identified: 401 with the challenges (or the next
/// handshake leg), 400 for duplicate credentials, 429 past the failed sign-ins, 503 when the
/// password checks are busy. Audited unless it is a handshake step.
async fn refused<B>(
    state: &AppState,
    conn: &ConnInfo,
    source: IpAddr,
    req: http::Request<B>,
    refusal: caller::Unauthenticated,
) -> (HttpResponse, Option<&'static str>, Handled)
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use caller::RefusalStatus;
    if let Some(reason) = refusal.refusal() {
        crate::telemetry::metrics::global().refusal(reason.metric_label());
        audit_unauthenticated(state, source, &refusal);
    }
    let status = refusal.status();
    let challenge = refusal.challenge;
    let outcome = Handled::Unauthenticated(refusal.reason);
    let mut r = match status {
        RefusalStatus::BadRequest => {
            drop(req);
            let r = plain(
                StatusCode::BAD_REQUEST,
                "400 - Bad Request: the request carries its credentials more than once.",
            );
            return (closing(r), None, outcome);
        }
        RefusalStatus::TooManyAttempts { retry_after } => {
            let mut r = plain(
                StatusCode::TOO_MANY_REQUESTS,
                "429 - Too many failed sign-ins from this address; try again later.",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            r
        }
        RefusalStatus::Busy => {
            let mut r = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 - Busy checking sign-ins; try again shortly.",
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        RefusalStatus::Unauthorized => plain(
            StatusCode::UNAUTHORIZED,
            "401 - Unauthorized: Access is denied due to invalid credentials.",
        ),
    };
    // Read (and drop) the body so the connection survives for the next leg.
    drain(req.into_body(), &state.settings).await;
    if status == RefusalStatus::Unauthorized {
        let challenges = match challenge {
            Some(c) => vec![c],
            None => caller::challenges(&state.settings, conn.tls),
        };
        for c in challenges {
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().append(http::header::WWW_AUTHENTICATE, v);
            }
        }
    }
    (r, None, outcome)
}

/// Audits a refusal of an unidentified caller, one by one up to
/// `limits.audited_refusals_per_source_per_minute` per source address and minute; the rest of the
/// minute becomes one summary record ([`audit_refusal_summary`]), so a flood of 401s writes a
/// bounded number of records (issue #17, item 8).
fn audit_unauthenticated(state: &AppState, source: IpAddr, refusal: &caller::Unauthenticated) {
    let per_minute = state.settings.limits.audited_refusals_per_minute;
    match state.guard.refusals.admit(source, per_minute) {
        super::guard::AuditDecision::Suppress => {}
        super::guard::AuditDecision::Record { suppressed } => {
            if suppressed > 0 {
                audit_refusal_summary(source, suppressed);
            }
            caller::audit_refusal(
                AuditKind::CallerUnauthenticated,
                refusal.claimed.as_deref().unwrap_or("-"),
                "-",
                &format!("{} (from {source})", refusal.reason),
            );
        }
    }
}

/// The one record that stands for the refusals from `source` in a minute past the ones recorded.
pub(crate) fn audit_refusal_summary(source: IpAddr, count: u64) {
    caller::audit_refusal(
        AuditKind::CallerUnauthenticated,
        "-",
        "-",
        &format!(
            "{count} further refusals from {source} within one minute, not recorded one by one \
             (limits.audited_refusals_per_source_per_minute)"
        ),
    );
}

async fn soap<B>(
    state: &AppState,
    req: http::Request<B>,
    caller: IpAddr,
    principal: &str,
) -> (HttpResponse, Option<&'static str>, Handled)
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &state.settings.limits;
    let headers = req.headers();
    let head = match read_head(
        header(headers, CONTENT_TYPE.as_str()),
        header(headers, "soapaction"),
    ) {
        Ok(h) => h,
        Err(e) => {
            return (
                plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string()),
                None,
                Handled::Rejected(Rejection::UnsupportedMediaType),
            )
        }
    };
    let limited = Limited::new(req.into_body(), limits.max_body_bytes as usize);
    let body = match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Err(_) => {
            return (
                plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body was not received in time.",
                ),
                None,
                Handled::Rejected(Rejection::BodyTimeout),
            )
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return too_large(limits.max_body_bytes);
            }
            return (
                plain(
                    StatusCode::BAD_REQUEST,
                    "The request body could not be read.",
                ),
                None,
                Handled::Rejected(Rejection::BodyError),
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let xml_limits = XmlLimits {
        max_depth: limits.max_xml_depth,
        max_elements: limits.max_xml_elements,
        ..XmlLimits::DEFAULT
    };
    let call = match decode_request(&head, &body, xml_limits) {
        Ok(c) => c,
        Err(fault) => {
            tracing::warn!(target: "pfgate::pfwssdk::soap", caller = %caller, fault = %fault.message, "request refused");
            return (fault_response(head.version, &fault), None, Handled::Fault);
        }
    };
    // The body's bytes are a view of hyper's read buffer: released here, hyper can reuse that
    // buffer while this call waits (an authentication waits up to a minute) instead of allocating
    // a second one for its end-of-stream check — 8 KB less per waiting caller (BENCHMARKS.md).
    drop(body);
    let operation = call.request.operation().name();
    if let Err(refusal) = state
        .settings
        .auth
        .policy
        .check(principal, call.request.operation())
    {
        crate::telemetry::metrics::global().refusal(crate::telemetry::metrics::RefusalReason::OperationNotAllowed);
        let reason = format!("{refusal:?}");
        caller::audit_refusal(AuditKind::CallerForbidden, principal, operation, &reason);
        return (
            plain(StatusCode::FORBIDDEN, "403 - Forbidden: Access is denied."),
            Some(operation),
            Handled::Forbidden,
        );
    }
    let ctx = CallContext {
        caller_ip: caller,
        caller: principal.to_string(),
    };
    let response = Box::pin(state.engine.handle(&ctx, call.request)).await;
    let xml = encode_response(call.version, &response);
    let (result, error, call_code) = response.outcome();
    let outcome = Handled::Answered(Answer {
        result,
        error,
        call: call_code,
    });
    (
        respond(StatusCode::OK, call.version.content_type(), xml),
        Some(operation),
        outcome,
    )
}

/// Reads and discards a request body, within the body limit and timeout, so a keep-alive
/// connection stays usable after an early answer (NTLM needs the same connection for its next leg).
async fn drain<B>(body: B, settings: &Settings)
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = Limited::new(body, settings.limits.max_body_bytes as usize);
    let _ = tokio::time::timeout(settings.limits.body_timeout, limited.collect()).await;
}

/// True when `Content-Length` announces more than the body limit. Checked before sign-in (and so
/// before `100 Continue` is sent).
fn announced_too_large(headers: &HeaderMap, settings: &Settings) -> bool {
    header(headers, CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > settings.limits.max_body_bytes)
}

/// Most bytes of a refused body read after the answer, and for how long: enough for a client that
/// writes a body of a few times the limit before reading (Python's `http.client`, .NET's
/// `HttpWebRequest`) to get to the answer; past either, the connection is closed.
const LINGER_BYTES: u64 = 16 * 1024 * 1024;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops `body` in the background, bounded by [`LINGER_BYTES`] and [`LINGER_TIME`],
/// while the answer (marked `Connection: close`) goes out: closing a socket with unread data makes
/// the kernel send a reset, which can destroy the answer before the client reads it.
fn linger<B>(body: B, settings: &Settings)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let budget = LINGER_BYTES.max(settings.limits.max_body_bytes.saturating_mul(4));
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    tokio::spawn(async move {
        let limited = Limited::new(body, budget);
        let _ = tokio::time::timeout(LINGER_TIME, limited.collect()).await;
    });
}

fn too_large(max: u64) -> (HttpResponse, Option<&'static str>, Handled) {
    (
        closing(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("The request body is larger than the limit of {max} bytes."),
        )),
        None,
        Handled::Rejected(Rejection::TooLarge),
    )
}

/// Marks a response as the last on its connection: the request body was not (fully) read, so the
/// connection cannot be reused, and the client should learn that now rather than by a reset.
fn closing(mut r: HttpResponse) -> HttpResponse {
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sdk_paths_case_insensitively() {
        assert!(is_sdk_path("/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"));
        assert!(is_sdk_path("/multifactorauthwebservicesdk/pfwssdk.ASMX"));
        assert!(is_sdk_path("/PfWsSdk.asmx"));
        assert!(!is_sdk_path("/PfWsSdk.asmx/x"));
        assert!(!is_sdk_path("/XPfWsSdk.asmx"));
        assert!(!is_sdk_path("/é/fWsSdk.asmx"));
    }
}
