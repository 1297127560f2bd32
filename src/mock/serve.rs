//! One request to the test double: the admin API, or a SDK request matched against the scenario,
//! delayed, faulted or answered by the real engine through the gateway's own stages, then
//! journaled with its secrets redacted.
//!
//! The double is a [`Layer`] around the gateway's service. It asks who called once and reads and
//! decodes the SOAP body once — it must see the operation and inputs to pick a rule — and then
//! enters the gateway's stages after those (`gateway::route_identified`, `gateway::soap::answer`)
//! with what it read, plus the matched rule's outcome, which the engine carries to the provider
//! call the request causes ([`crate::providers::AuthAttempt::scripted`]). What the engine answers
//! is exactly what the gateway would answer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::faults::{self, Dropped, MockBody};
use super::journal::{self, CallerInfo, Entry, ResponseInfo};
use super::scenario::{FaultSide, FaultSpec, Matched, RequestFacts};
use super::MockState;
use crate::gateway::caller::{self, ConnAuth, Identified, Unauthenticated};
use crate::gateway::{self, AppState, ConnInfo, Layer, LayerResult, NoAnswer, Routed};
use crate::pfwssdk::soap::envelope::{read_head, RequestHead, SoapVersion};
use crate::pfwssdk::soap::xml::{Element, XmlLimits};
use crate::pfwssdk::soap::{decode_envelope, parse_envelope, DecodedCall, Fault};

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

/// Reads a SOAP body once: what the double matches on (operation, flattened inputs), and the
/// decoded call (or the fault) the gateway's stages answer.
fn read(
    head: &RequestHead,
    body: &[u8],
    limits: XmlLimits,
) -> (Decoded, Result<DecodedCall, Fault>) {
    let tree = parse_envelope(body, limits);
    let call = match &tree {
        Ok(root) => decode_envelope(head, root),
        Err(fault) => Err(fault.clone()),
    };
    let inputs = tree
        .ok()
        .and_then(|root| operation_element(&root).map(journal::flatten))
        .unwrap_or_default();
    let decoded = Decoded {
        version: head.version,
        operation: call.as_ref().ok().map(|c| c.request.operation().name()),
        inputs,
    };
    (decoded, call)
}

/// Reads what a SOAP request asks, without deciding anything: `None` when the headers do not
/// announce SOAP.
pub fn decode(headers: &http::HeaderMap, body: &[u8], limits: XmlLimits) -> Option<Decoded> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let head = read_head(h(CONTENT_TYPE.as_str()), h("soapaction")).ok()?;
    Some(read(&head, body, limits).0)
}

/// The decoded, redacted fields of a response envelope (empty when it is not XML), read with the
/// request parser: one XML reader in the tree. A plain operation's answer (every `PfAuthUser_*`)
/// is read only when the journal is listed, so this is off the request path where it matters.
pub fn response_fields(body: &[u8]) -> BTreeMap<String, String> {
    crate::pfwssdk::soap::xml::parse(body, XmlLimits::default())
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
#[derive(Clone)]
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
        let mut e = self.clone().into_entry(rule, fault, status, outcome);
        e.response.fields = response_fields(body);
        e
    }

    /// The journal entry for an answer, its response fields left empty (to be read later). What
    /// the request carried moves into it; its inputs are redacted in place.
    fn into_entry(
        self,
        rule: Option<String>,
        fault: Option<String>,
        status: u16,
        outcome: &str,
    ) -> Entry {
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (soap_version, operation, inputs) = match self.decoded {
            Some(d) => {
                let version = match d.version {
                    SoapVersion::V11 => "1.1",
                    SoapVersion::V12 => "1.2",
                };
                let inputs = journal::redact_in_place(d.inputs);
                (Some(version.to_string()), d.operation, inputs)
            }
            None => (None, None, BTreeMap::new()),
        };
        Entry {
            seq: 0,
            time_unix_ms: self.arrived_ms,
            method: self.method,
            path: self.path,
            soap_version,
            operation: operation.map(str::to_string),
            // Not a secret, and redaction leaves it as it is.
            user: inputs.get("username").cloned(),
            inputs,
            caller: self.caller,
            rule,
            fault,
            replayed_from: None,
            response: ResponseInfo {
                status,
                outcome: outcome.to_string(),
                fields: BTreeMap::new(),
            },
            duration_ms,
        }
    }
}

/// The line through `tracing`.
macro_rules! log_event {
    ($entry:expr) => {
        tracing::info!(
            target: "pfgate::mock",
            seq = $entry.seq,
            operation = $entry.operation.as_deref().unwrap_or("-"),
            user = $entry.user.as_deref().unwrap_or("-"),
            rule = $entry.rule.as_deref().unwrap_or("(unmatched)"),
            fault = $entry.fault.as_deref().unwrap_or("-"),
            status = $entry.response.status,
            outcome = %$entry.response.outcome,
            duration_ms = $entry.duration_ms,
            "mock request"
        )
    };
}

/// The test double's line for a request (docs/mock.md), written by hand when the log allows
/// it (`telemetry::line`: through `tracing-subscriber` it cost a tenth of a rule hit), with the
/// bytes `tracing` would write.
fn log(entry: &Entry) {
    use crate::telemetry::line;
    match line::direct() {
        Some(format) if tracing::enabled!(target: "pfgate::mock", tracing::Level::INFO) => {
            let mut buf = Vec::with_capacity(256);
            write_line(&mut buf, format, std::time::SystemTime::now(), entry);
            crate::telemetry::access_log::write_out(&buf);
        }
        Some(_) => {}
        None => log_event!(entry),
    }
}

/// The line's fields, in the order `log_event!` records them.
fn line_fields(entry: &Entry) -> [(&'static str, crate::telemetry::line::Field<'_>); 8] {
    use crate::telemetry::line::Field;
    [
        ("seq", Field::UInt(entry.seq)),
        (
            "operation",
            Field::Text(entry.operation.as_deref().unwrap_or("-")),
        ),
        ("user", Field::Text(entry.user.as_deref().unwrap_or("-"))),
        (
            "rule",
            Field::Text(entry.rule.as_deref().unwrap_or("(unmatched)")),
        ),
        ("fault", Field::Text(entry.fault.as_deref().unwrap_or("-"))),
        ("status", Field::UInt(u64::from(entry.response.status))),
        ("outcome", Field::Display(&entry.response.outcome)),
        ("duration_ms", Field::UInt(entry.duration_ms)),
    ]
}

/// Appends the line [`log_event!`] writes for `entry` through `tracing-subscriber`.
fn write_line(
    buf: &mut Vec<u8>,
    format: crate::telemetry::LogFormat,
    now: std::time::SystemTime,
    entry: &Entry,
) {
    let head = crate::telemetry::line::Head {
        now,
        level: b"INFO",
        target: "pfgate::mock",
        message: "mock request",
    };
    crate::telemetry::line::write(buf, format, &head, &line_fields(entry));
}

/// Stores an entry in the journal and logs it.
pub fn push(mock: &MockState, entry: Entry) {
    log(&mock.journal.push(entry));
}

/// Journals the answer the gateway's stages encoded for the request, unchanged: when its
/// operation's response cannot hold a secret (`journal::response_is_plain`), its fields are read
/// when the journal is, not now.
fn push_answer(mock: &MockState, seen: Seen, answer: Answered<'_>, body: &Bytes) {
    let Answered {
        rule,
        fault,
        status,
        outcome,
        operation,
    } = answer;
    let plain = status == 200 && operation.is_some_and(journal::response_is_plain);
    if plain {
        let entry = seen.into_entry(rule, fault, status, outcome);
        log(&mock.journal.push_answer(entry, body.clone()));
    } else {
        let mut entry = seen.into_entry(rule, fault, status, outcome);
        entry.response.fields = response_fields(body);
        push(mock, entry);
    }
}

/// What [`push_answer`] journals besides the body.
struct Answered<'a> {
    rule: Option<String>,
    fault: Option<String>,
    status: u16,
    outcome: &'a str,
    /// The operation the gateway's stages answered.
    operation: Option<&'static str>,
}

/// The double as a layer around the gateway's service (`server::start_serving` takes it).
#[derive(Debug)]
pub struct MockLayer {
    mock: Arc<MockState>,
}

impl MockLayer {
    /// The layer over the double's state.
    pub fn new(mock: Arc<MockState>) -> Self {
        Self { mock }
    }
}

impl Layer for MockLayer {
    fn call(
        &self,
        state: Arc<AppState>,
        conn: ConnInfo,
        auth: Arc<ConnAuth>,
        req: http::Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = LayerResult> + Send>> {
        let mock = self.mock.clone();
        Box::pin(async move {
            handle(mock, state, conn, auth, req)
                .await
                .map_err(|Dropped| {
                    NoAnswer("pfgate mock: connection dropped on purpose (scripted fault)")
                })
        })
    }
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

/// One request: the admin API, a request the gateway answers as it would (WSDL, help page,
/// probes, refusals), or a SOAP call the scenario decides on ([`soap`]).
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
    // Asked once: the journal records who called, and the gateway's stages take the answer.
    let identified = caller::identify(&state, &conn, caller_ip, req.headers(), &auth).await;
    let seen = Seen {
        arrived_ms: now_ms(),
        started,
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        decoded: None,
        caller: CallerInfo {
            ip: caller_ip.to_string(),
            principal: identified
                .as_ref()
                .map(|i| i.principal.clone())
                .unwrap_or_else(|_| "-".into()),
        },
    };
    let limits = &state.settings.limits;
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let soap_call = req.method() == Method::POST
        && gateway::is_sdk_path(req.uri().path())
        && announced.is_none_or(|n| n <= limits.max_body_bytes);
    if !soap_call {
        // WSDL, help page, probes, refusals: the gateway's answer, journaled.
        let routed = match gateway::preflight(&state, req).await {
            Ok(req) => {
                let stages = gateway::route_identified(&state, &conn, req, caller_ip, identified);
                Box::pin(stages).await
            }
            Err(routed) => routed,
        };
        return Ok(finish(&mock, seen, None, routed).await);
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
    let call = Call {
        conn,
        caller_ip,
        identified,
    };
    soap(&mock, &state, seen, &parts.headers, &bytes, call).await
}

/// What the gateway's stages need of a request past its body.
struct Call {
    conn: ConnInfo,
    caller_ip: std::net::IpAddr,
    identified: Result<Identified, Unauthenticated>,
}

/// A SOAP request read in full: decoded once, replayed or matched against the scenario, delayed
/// and faulted as the rule says, else answered by the gateway's stages with the rule's outcome.
async fn soap(
    mock: &MockState,
    state: &AppState,
    mut seen: Seen,
    headers: &http::HeaderMap,
    bytes: &Bytes,
    call: Call,
) -> Result<http::Response<MockBody>, Dropped> {
    // A head that does not announce SOAP is not decoded: the gateway answers it with a 415.
    let request = match gateway::soap::head(headers) {
        Ok(head) => {
            let (decoded, call) = read(&head, bytes, gateway::soap::xml_limits(state));
            seen.decoded = Some(decoded);
            Ok((head.version, call))
        }
        Err(unsupported) => Err(unsupported),
    };
    let version = seen
        .decoded
        .as_ref()
        .map(|d| d.version)
        .unwrap_or(SoapVersion::V11);

    if let Some(fixtures) = mock.replay() {
        return Ok(super::replay::answer(mock, fixtures, &seen, version));
    }
    let matched = matching_rule(mock, &seen);
    if let Some(m) = &matched {
        if !m.delay.is_zero() {
            tokio::time::sleep(m.delay).await;
        }
    }
    if let Some(answer) = faulted(mock, &seen, matched.as_ref(), version) {
        return answer;
    }
    let routed = match gateway::admit(state, &call.conn, call.caller_ip, call.identified) {
        // The body is read already: nothing to drain.
        Err(turned) => turned.answer,
        Ok(admitted) => {
            let routed = match request {
                Ok((version, decoded)) => {
                    let outcome = matched.as_ref().and_then(|m| m.outcome);
                    let principal = &admitted.principal;
                    let stages = gateway::soap::answer(
                        state,
                        call.caller_ip,
                        principal,
                        version,
                        decoded,
                        outcome,
                    );
                    Box::pin(stages).await
                }
                Err(unsupported) => unsupported,
            };
            admitted.finish(routed)
        }
    };
    Ok(finish(mock, seen, matched, routed).await)
}

/// The first rule of the scenario in force that matches the request.
fn matching_rule(mock: &MockState, seen: &Seen) -> Option<Matched> {
    let loaded = mock.loaded();
    let empty = BTreeMap::new();
    let facts = RequestFacts {
        operation: seen.decoded.as_ref().and_then(|d| d.operation),
        inputs: seen.decoded.as_ref().map(|d| &d.inputs).unwrap_or(&empty),
        caller: &seen.caller.principal,
    };
    loaded.scenario.find(&facts)
}

/// The answer of a rule whose fault replaces the engine's answer altogether (a dropped
/// connection, a SOAP fault, an HTTP error), journaled; `None` for every other rule.
fn faulted(
    mock: &MockState,
    seen: &Seen,
    matched: Option<&Matched>,
    version: SoapVersion,
) -> Option<Result<http::Response<MockBody>, Dropped>> {
    let rule = matched.map(|m| m.name.clone());
    let fault = matched.and_then(|m| m.fault.as_ref());
    let label = fault.map(FaultSpec::label);
    match fault? {
        FaultSpec::DropBeforeHeaders => {
            push(mock, seen.entry(rule, label, 0, "dropped", b""));
            Some(Err(Dropped))
        }
        FaultSpec::SoapFault { code, message } => {
            let f = match code {
                FaultSide::Client => Fault::client(message.clone()),
                FaultSide::Server => Fault::server(message.clone()),
            };
            let body = f.to_envelope(version);
            push(mock, seen.entry(rule, label, 500, "fault", body.as_bytes()));
            Some(Ok(respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                version.content_type(),
                body,
            )))
        }
        FaultSpec::Http { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let text = format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            );
            push(
                mock,
                seen.entry(rule, label, status.as_u16(), "http-error", b""),
            );
            Some(Ok(respond(status, "text/plain; charset=utf-8", text)))
        }
        _ => None,
    }
}

/// Journals a routed answer and shapes its body as the matched rule's fault asks (trickled, cut,
/// malformed).
async fn finish(
    mock: &MockState,
    seen: Seen,
    matched: Option<Matched>,
    routed: Routed,
) -> http::Response<MockBody> {
    let (rule, fault) = match matched {
        Some(m) => (Some(m.name), m.fault),
        None => (None, None),
    };
    let label = fault.as_ref().map(FaultSpec::label);
    let outcome = routed.handled.text();
    let operation = routed.operation;
    let (mut parts, body) = routed.response.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(never) => match never {},
    };
    let status = parts.status.as_u16();
    // A malformed body is not the encoder's: its fields are read now (`operation: None`).
    let (bytes, operation): (Bytes, _) = match fault {
        Some(FaultSpec::MalformedXml) => {
            let text = faults::malformed(&String::from_utf8_lossy(&bytes));
            (Bytes::from(text), None)
        }
        _ => (bytes, operation),
    };
    let answer = Answered {
        rule,
        fault: label,
        status,
        outcome: &outcome,
        operation,
    };
    push_answer(mock, seen, answer, &bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::line::tests::captured;
    use crate::telemetry::LogFormat;

    fn entry(rule: Option<&str>, user: Option<&str>, outcome: &str) -> Entry {
        Entry {
            seq: 42,
            time_unix_ms: 0,
            method: "POST".into(),
            path: "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx".into(),
            soap_version: Some("1.1".into()),
            operation: Some("PfAuthUser_5".into()),
            user: user.map(str::to_string),
            inputs: BTreeMap::new(),
            caller: CallerInfo {
                ip: "127.0.0.1".into(),
                principal: "anonymous".into(),
            },
            rule: rule.map(str::to_string),
            fault: None,
            replayed_from: None,
            response: ResponseInfo {
                status: 200,
                outcome: outcome.into(),
                fields: BTreeMap::new(),
            },
            duration_ms: 3,
        }
    }

    #[test]
    fn the_request_line_is_the_one_tracing_writes() {
        let odd = Entry {
            seq: u64::MAX,
            operation: None,
            fault: Some("http_503".into()),
            duration_ms: 0,
            ..entry(
                Some("rule \"one\"\twith\nodd é\u{200b}"),
                Some("CONTOSO\\a \"quoted\" user"),
                "false/error=12/call=5 with \"quotes\"",
            )
        };
        let entries = [
            entry(Some("approve-all"), Some("alice@contoso.com"), "true"),
            entry(None, None, "fault"),
            odd,
        ];
        for format in [LogFormat::Text, LogFormat::Json] {
            for e in &entries {
                let expected = captured(format, || log_event!(e));
                assert!(expected.ends_with('\n'), "{expected}");
                let mut by_hand = Vec::new();
                write_line(&mut by_hand, format, std::time::UNIX_EPOCH, e);
                assert_eq!(String::from_utf8(by_hand).unwrap(), expected);
            }
        }
    }
}
