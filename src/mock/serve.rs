//! One request to the test double: the admin API, or a SDK request matched against the scenario,
//! delayed, faulted or answered by the real engine (through the gateway's own `route`), then
//! journaled with its secrets redacted.
//!
//! The double reads a SOAP body before routing it — it must see the operation and inputs to pick a
//! rule — and then hands the same bytes to the gateway's path, so what the engine answers is exactly
//! what the gateway would answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::faults::{self, Dropped, MockBody};
use super::journal::{self, CallerInfo, Entry, ResponseInfo};
use super::scenario::{FaultSide, FaultSpec, RequestFacts};
use super::MockState;
use crate::server::caller::{self, ConnAuth};
use crate::server::http::{self as gateway, AppState, ConnInfo};
use crate::pfwssdk::soap::envelope::{read_head, SoapVersion};
use crate::pfwssdk::soap::xml::{self, Element, XmlLimits};
use crate::pfwssdk::soap::{decode_request, Fault};

/// A SOAP request as far as the double understood it.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The version to answer in.
    pub version: SoapVersion,
    /// Wire operation, when the request decoded (`None`: the engine will answer with a fault).
    pub operation: Option<&'static str>,
    /// Flattened inputs (unredacted).
    pub inputs: BTreeMap<String, String>,
}

/// The operation element of a SOAP envelope (the first child of the first `Body`, any version).
pub fn operation_element<'r, 'x>(root: &'r Element<'x>) -> Option<&'r Element<'x>> {
    if root.name != "Envelope" {
        return None;
    }
    root.children
        .iter()
        .find(|c| c.name == "Body")
        .and_then(|b| b.children.first())
}

/// Reads what a SOAP request asks, without deciding anything: `None` when the headers do not
/// announce SOAP.
pub fn decode(headers: &http::HeaderMap, body: &[u8], limits: XmlLimits) -> Option<Decoded> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let head = read_head(h(CONTENT_TYPE.as_str()), h("soapaction")).ok()?;
    let operation = decode_request(&head, body, limits)
        .ok()
        .map(|c| c.request.operation().name());
    let inputs = xml::parse(body, limits)
        .ok()
        .and_then(|root| operation_element(&root).map(journal::flatten))
        .unwrap_or_default();
    Some(Decoded {
        version: head.version,
        operation,
        inputs,
    })
}

/// The decoded, redacted fields of a response envelope (empty when it is not XML).
pub fn response_fields(body: &[u8]) -> BTreeMap<String, String> {
    xml::parse(body, XmlLimits::default())
        .ok()
        .and_then(|root| operation_element(&root).map(journal::flatten))
        .map(|m| journal::redact_map(&m))
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A response with a complete body.
pub fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> http::Response<MockBody> {
    let mut r = http::Response::new(faults::full(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// What the journal needs of a request, gathered once.
pub struct Seen {
    arrived_ms: u64,
    started: Instant,
    method: String,
    path: String,
    /// The request as decoded.
    pub decoded: Option<Decoded>,
    caller: CallerInfo,
}

impl Seen {
    /// The journal entry for an answer.
    pub fn entry(
        &self,
        rule: Option<String>,
        fault: Option<String>,
        status: u16,
        outcome: &str,
        body: &[u8],
    ) -> Entry {
        let d = self.decoded.as_ref();
        Entry {
            seq: 0,
            time_unix_ms: self.arrived_ms,
            method: self.method.clone(),
            path: self.path.clone(),
            soap_version: d.map(|d| match d.version {
                SoapVersion::V11 => "1.1".to_string(),
                SoapVersion::V12 => "1.2".to_string(),
            }),
            operation: d.and_then(|d| d.operation).map(str::to_string),
            user: d.and_then(|d| d.inputs.get("username").cloned()),
            inputs: d
                .map(|d| journal::redact_map(&d.inputs))
                .unwrap_or_default(),
            caller: self.caller.clone(),
            rule,
            fault,
            replayed_from: None,
            response: ResponseInfo {
                status,
                outcome: outcome.to_string(),
                fields: response_fields(body),
            },
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

fn log(entry: &Entry) {
    tracing::info!(
        target: "pfgate::mock",
        seq = entry.seq,
        operation = entry.operation.as_deref().unwrap_or("-"),
        user = entry.user.as_deref().unwrap_or("-"),
        rule = entry.rule.as_deref().unwrap_or("(unmatched)"),
        fault = entry.fault.as_deref().unwrap_or("-"),
        status = entry.response.status,
        outcome = %entry.response.outcome,
        duration_ms = entry.duration_ms,
        "mock request"
    );
}

/// Stores an entry in the journal and logs it.
pub fn push(mock: &MockState, mut entry: Entry) {
    entry.seq = mock.journal.push(entry.clone());
    log(&entry);
}

/// The double's service for one request. An `Err` drops the connection without a response (the
/// `drop_before_headers` fault).
///
/// The work runs in a task of its own: hyper drops a service future whose client has gone (a
/// client that timed out on a delayed rule), and the journal must still show that request —
/// "the client gave up after 300 ms" is exactly what a timeout test asserts.
pub async fn handle(
    mock: Arc<MockState>,
    state: Arc<AppState>,
    conn: ConnInfo,
    auth: Arc<ConnAuth>,
    req: http::Request<Incoming>,
) -> Result<http::Response<MockBody>, Dropped> {
    tokio::spawn(answer(mock, state, conn, auth, req))
        .await
        .unwrap_or(Err(Dropped))
}

async fn answer(
    mock: Arc<MockState>,
    state: Arc<AppState>,
    conn: ConnInfo,
    auth: Arc<ConnAuth>,
    req: http::Request<Incoming>,
) -> Result<http::Response<MockBody>, Dropped> {
    if mock.admin_on_main() && req.uri().path().starts_with(mock.admin_prefix()) {
        return Ok(Box::pin(super::admin::handle(&mock, req)).await);
    }
    let started = Instant::now();
    let caller_ip = gateway::caller_ip(&state, &conn, req.headers());
    // The double has no NTLM (the only stateful scheme), so asking who called is free of effects;
    // `route` asks again and decides.
    let principal = caller::identify(&state, &conn, caller_ip, req.headers(), &auth)
        .await
        .map(|i| i.principal)
        .unwrap_or_else(|_| "-".into());
    let mut seen = Seen {
        arrived_ms: now_ms(),
        started,
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        decoded: None,
        caller: CallerInfo {
            ip: caller_ip.to_string(),
            principal,
        },
    };
    let limits = state.settings.limits.clone();
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let soap = req.method() == Method::POST
        && gateway::is_sdk_path(req.uri().path())
        && announced.is_none_or(|n| n <= limits.max_body_bytes);
    if !soap {
        // WSDL, help page, probes, refusals: the gateway's answer, journaled.
        let (resp, _, outcome) =
            Box::pin(gateway::route(&state, &conn, &auth, req, caller_ip)).await;
        return Ok(finish(&mock, &seen, None, None, resp, &outcome.text(), None).await);
    }
    let (parts, body) = req.into_parts();
    let limited = Limited::new(
        body,
        usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX),
    );
    let bytes = match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Ok(Ok(c)) => c.to_bytes(),
        _ => {
            let mut r = respond(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "The request body could not be read (too large, too slow or broken).\n",
            );
            r.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            push(&mock, seen.entry(None, None, 400, "body-error", b""));
            return Ok(r);
        }
    };
    let xml_limits = XmlLimits {
        max_depth: limits.max_xml_depth,
        max_elements: limits.max_xml_elements,
        ..XmlLimits::DEFAULT
    };
    seen.decoded = decode(&parts.headers, &bytes, xml_limits);
    let version = seen
        .decoded
        .as_ref()
        .map(|d| d.version)
        .unwrap_or(SoapVersion::V11);

    if let Some(fixtures) = mock.replay() {
        return Ok(super::replay::answer(&mock, fixtures, &seen, version));
    }

    let loaded = mock.loaded();
    let empty = BTreeMap::new();
    let facts = RequestFacts {
        operation: seen.decoded.as_ref().and_then(|d| d.operation),
        inputs: seen.decoded.as_ref().map(|d| &d.inputs).unwrap_or(&empty),
        caller: &seen.caller.principal,
    };
    let matched = loaded.scenario.find(&facts);
    drop(loaded);
    let rule = matched.as_ref().map(|m| m.name.clone());
    let fault = matched.as_ref().and_then(|m| m.fault.clone());
    let label = fault.as_ref().map(FaultSpec::label);
    if let Some(m) = &matched {
        if !m.delay.is_zero() {
            tokio::time::sleep(m.delay).await;
        }
    }
    match &fault {
        Some(FaultSpec::DropBeforeHeaders) => {
            push(&mock, seen.entry(rule, label, 0, "dropped", b""));
            return Err(Dropped);
        }
        Some(FaultSpec::SoapFault { code, message }) => {
            let f = match code {
                FaultSide::Client => Fault::client(message.clone()),
                FaultSide::Server => Fault::server(message.clone()),
            };
            let body = f.to_envelope(version);
            push(
                &mock,
                seen.entry(rule, label, 500, "fault", body.as_bytes()),
            );
            return Ok(respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                version.content_type(),
                body,
            ));
        }
        Some(FaultSpec::Http { status }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let text = format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            );
            push(
                &mock,
                seen.entry(rule, label, status.as_u16(), "http-error", b""),
            );
            return Ok(respond(status, "text/plain; charset=utf-8", text));
        }
        _ => {}
    }
    // The engine answers; a rule's outcome waits for the provider call it causes.
    let user = facts_user(&seen);
    let phone = seen.decoded.as_ref().and_then(|d| {
        let n = d.inputs.get("phoneNumber").filter(|n| !n.is_empty())?;
        let cc = d
            .inputs
            .get("countryCode")
            .map(String::as_str)
            .unwrap_or("");
        Some(
            format!("{cc}{n}")
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>(),
        )
    });
    let token = match (matched.as_ref().and_then(|m| m.outcome), user) {
        (Some(outcome), Some(user)) => Some(mock.expect_call(&user, phone.as_deref(), outcome)),
        _ => None,
    };
    let req = http::Request::from_parts(parts, Full::new(bytes));
    let (resp, _, outcome) = Box::pin(gateway::route(&state, &conn, &auth, req, caller_ip)).await;
    if let Some(t) = token {
        mock.forget_call(t);
    }
    Ok(finish(&mock, &seen, rule, fault, resp, &outcome.text(), label).await)
}

fn facts_user(seen: &Seen) -> Option<String> {
    seen.decoded.as_ref()?.inputs.get("username").cloned()
}

/// Journals a routed answer and shapes its body as the fault asks (trickled, cut, malformed).
async fn finish(
    mock: &MockState,
    seen: &Seen,
    rule: Option<String>,
    fault: Option<FaultSpec>,
    resp: gateway::HttpResponse,
    outcome: &str,
    label: Option<String>,
) -> http::Response<MockBody> {
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let bytes: Bytes = match fault {
        Some(FaultSpec::MalformedXml) => {
            Bytes::from(faults::malformed(&String::from_utf8_lossy(&bytes)))
        }
        _ => bytes,
    };
    let status = parts.status.as_u16();
    push(mock, seen.entry(rule, label, status, outcome, &bytes));
    let body = match fault {
        Some(FaultSpec::Trickle {
            chunk_bytes,
            interval_ms,
        }) => {
            parts.headers.remove(CONTENT_LENGTH);
            faults::trickle(bytes, chunk_bytes, Duration::from_millis(interval_ms))
        }
        Some(FaultSpec::DropAfterHeaders) => {
            parts.headers.remove(CONTENT_LENGTH);
            faults::drop_after_headers(bytes)
        }
        _ => faults::full(bytes),
    };
    http::Response::from_parts(parts, body)
}
