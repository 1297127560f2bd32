//! The stages before the body: what is answered without credentials (probes, other paths, a body
//! announced over the limit), then who called ([`caller::identify`]) and whether the policy lets
//! them in at all. Each stage ends the request with a [`Routed`] or hands on what the next needs.

use std::net::IpAddr;

use http::header::{HeaderValue, CONTENT_LENGTH, HOST, RETRY_AFTER};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::reply::{closing, forbidden, plain, too_large};
use super::{AppState, ConnInfo, Handled, Refusal, Routed};
use crate::config::{is_trusted, Settings};
use crate::gateway::caller::{self, Identified, Unauthenticated};
use crate::telemetry::audit::AuditKind;

/// True for any path ending in `/PfWsSdk.asmx`, case-insensitively (docs/protocol.md §1).
pub fn is_sdk_path(path: &str) -> bool {
    const SUFFIX: &str = "/pfwssdk.asmx";
    path.len() >= SUFFIX.len()
        && path.is_char_boundary(path.len() - SUFFIX.len())
        && path[path.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX)
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
pub(crate) fn public_location(
    state: &AppState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    path: &str,
) -> String {
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
pub fn caller_ip(state: &AppState, conn: &ConnInfo, headers: &HeaderMap) -> IpAddr {
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

/// Stage 1: what is answered before anyone signs in. Probes for load balancers and orchestrators
/// get nothing but a status (`/healthz`: the process serves; `/readyz`: the store answers, so a
/// balancer takes an instance whose database is gone out of rotation); a path that is not the SDK
/// endpoint is a 404; a body announced over the limit is refused at once, whoever sends it, and
/// what the client already wrote is read and dropped in the background so that it reads the 413
/// instead of a connection reset (issue #17, item 14).
pub async fn preflight<B>(
    state: &AppState,
    req: http::Request<B>,
) -> Result<http::Request<B>, Routed>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path();
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        match path {
            "/healthz" => {
                let ok = plain(StatusCode::OK, "ok");
                return Err(Routed::without_operation(ok, Handled::Healthz));
            }
            "/readyz" => {
                return Err(if state.engine.ready().await {
                    let ready = plain(StatusCode::OK, "ready");
                    Routed::without_operation(ready, Handled::Readyz)
                } else {
                    let text = "not ready: store unavailable";
                    let not = plain(StatusCode::SERVICE_UNAVAILABLE, text);
                    Routed::without_operation(not, Handled::NotReady)
                });
            }
            _ => {}
        }
    }
    if !is_sdk_path(path) {
        let text = "Not found. The PfWsSdk endpoint is at a path ending in /PfWsSdk.asmx.";
        let r = plain(StatusCode::NOT_FOUND, text);
        return Err(Routed::without_operation(r, Handled::NotFound));
    }
    if announced_too_large(req.headers(), &state.settings) {
        linger(req.into_body(), &state.settings);
        return Err(too_large(state.settings.limits.max_body_bytes));
    }
    Ok(req)
}

/// A caller identified and let in by the policy's allow-list.
#[derive(Debug)]
pub struct Admitted {
    /// Who called.
    pub principal: String,
    /// A `WWW-Authenticate` value for the answer (Negotiate's final token).
    final_token: Option<String>,
}

impl Admitted {
    /// Adds what the sign-in owes the answer (Negotiate's final token) to `routed`.
    pub fn finish(&self, mut routed: Routed) -> Routed {
        if let Some(token) = self
            .final_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            routed
                .response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, token);
        }
        routed
    }
}

/// A request turned away before its body was read, and what to do with that body.
#[derive(Debug)]
pub struct Turned {
    /// The answer.
    pub answer: Routed,
    /// Whether the body is to be read (so the connection survives for the next leg) or dropped
    /// (the answer closes the connection).
    pub read_body: bool,
}

impl Turned {
    /// Disposes of the unread `body` as the refusal asks, and gives the answer.
    pub async fn dispose<B>(self, body: B, settings: &Settings) -> Routed
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.read_body {
            drain(body, settings).await;
        }
        self.answer
    }
}

/// Stage 2: like an IIS site with anonymous access off, every request to the SDK is
/// authenticated, the WSDL and help page included. Takes what [`caller::identify`] found (asked
/// once, by the gateway or by a layer in front of it) and applies the allow-list.
// The error is the answer itself, moved out once: boxing it would cost an allocation per
// refused request for nothing.
#[allow(clippy::result_large_err)]
pub fn admit(
    state: &AppState,
    conn: &ConnInfo,
    source: IpAddr,
    identified: Result<Identified, Unauthenticated>,
) -> Result<Admitted, Turned> {
    let identified = identified.map_err(|refusal| refused(state, conn, source, refusal))?;
    let principal = identified.principal;
    if !state.settings.auth.policy.knows(&principal) {
        let refusal = Refusal::NotAllowed;
        crate::telemetry::metrics::global().refusal(refusal.metric_label());
        caller::audit_refusal(
            AuditKind::CallerForbidden,
            &principal,
            "-",
            &refusal.to_string(),
        );
        return Err(Turned {
            answer: Routed::without_operation(forbidden(), Handled::Forbidden),
            read_body: true,
        });
    }
    Ok(Admitted {
        principal,
        final_token: identified.final_token,
    })
}

/// The answer to a caller that could not be identified: 401 with the challenges (or the next
/// handshake leg), 400 for duplicate credentials, 429 past the failed sign-ins, 503 when the
/// password checks are busy. Audited unless it is a handshake step.
fn refused(state: &AppState, conn: &ConnInfo, source: IpAddr, refusal: Unauthenticated) -> Turned {
    use caller::RefusalStatus;
    if let Some(reason) = refusal.refusal() {
        crate::telemetry::metrics::global().refusal(reason.metric_label());
        audit_unauthenticated(state, source, &refusal);
    }
    let status = refusal.status();
    let challenge = refusal.challenge;
    let handled = Handled::Unauthenticated(refusal.reason);
    let mut r = match status {
        RefusalStatus::BadRequest => {
            let r = plain(
                StatusCode::BAD_REQUEST,
                "400 - Bad Request: the request carries its credentials more than once.",
            );
            return Turned {
                answer: Routed::without_operation(closing(r), handled),
                read_body: false,
            };
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
    // The body is read (and dropped) so the connection survives for the next leg.
    Turned {
        answer: Routed::without_operation(r, handled),
        read_body: true,
    }
}

/// Audits a refusal of an unidentified caller, one by one up to
/// `limits.audited_refusals_per_source_per_minute` per source address and minute; the rest of the
/// minute becomes one summary record ([`audit_refusal_summary`]), so a flood of 401s writes a
/// bounded number of records (issue #17, item 8).
fn audit_unauthenticated(state: &AppState, source: IpAddr, refusal: &Unauthenticated) {
    use crate::gateway::guard::AuditDecision;
    let per_minute = state.settings.limits.audited_refusals_per_minute;
    match state.guard.refusals.admit(source, per_minute) {
        AuditDecision::Suppress => {}
        AuditDecision::Record { suppressed } => {
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
pub fn audit_refusal_summary(source: IpAddr, count: u64) {
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
pub fn announced_too_large(headers: &HeaderMap, settings: &Settings) -> bool {
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
