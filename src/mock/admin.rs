//! The admin API of the test double, under its prefix (default `/__pfgate/`), JSON in and out:
//!
//! | method and path | what |
//! |---|---|
//! | `GET journal?operation=&user=` | the journal (secrets redacted), oldest first |
//! | `DELETE journal` (or `POST journal/clear`) | forget the journal |
//! | `GET verify?operation=&user=` | counts by operation and user, unmatched requests, rule uses and unmet `expect`s |
//! | `GET scenario` | the scenario in force |
//! | `PUT scenario` (TOML body) | replace it, validated first |
//! | `POST scenario/reload` | re-read the files given at start |
//! | `POST reset` | the start scenario again, journal and overrides cleared |
//! | `GET`/`POST`/`DELETE overrides` | outcomes imposed on the next N calls of a user |
//! | `GET outbox` | the one-time passcodes "texted", by number (what a person would have read) |
//!
//! A bearer token is required whenever one is configured, and must be when the listener is not
//! loopback (checked at start); it is compared as a SHA-256 digest in constant time. Replacing a
//! scenario swaps one `Arc`: requests in flight finish with the rule that matched them.

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::faults::MockBody;
use super::journal::{self, Filter};
use super::scenario::Scenario;
use super::serve::respond;
use super::{MockError, MockState, Override};

/// Largest admin request body (a scenario file).
const MAX_ADMIN_BODY: usize = 1024 * 1024;

fn json_response(status: StatusCode, value: &Value) -> http::Response<MockBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> http::Response<MockBody> {
    json_response(status, &json!({ "error": message }))
}

async fn read_body(req: http::Request<Incoming>) -> Result<Bytes, http::Response<MockBody>> {
    match Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body could not be read or is larger than 1 MiB",
        )),
    }
}

/// The scenario in force, as the API shows it.
pub fn describe(mock: &MockState) -> Value {
    let loaded = mock.loaded();
    let s = &loaded.scenario;
    json!({
        "sources": s.sources,
        "names": s.names,
        "users": s.directory.users().map(|u| u.username.clone()).collect::<Vec<_>>(),
        "rules": s.rules.iter().map(|r| json!({
            "name": r.name,
            "used": r.used(),
            "spec": r.spec,
        })).collect::<Vec<_>>(),
    })
}

/// Rule uses and unmet expectations (`expect = N` not equal to the uses).
pub fn rule_report(mock: &MockState) -> (Vec<Value>, Vec<Value>) {
    let loaded = mock.loaded();
    let mut rules = Vec::new();
    let mut unmet = Vec::new();
    for r in &loaded.scenario.rules {
        let v = json!({ "name": r.name, "used": r.used(), "expect": r.spec.expect });
        if r.spec.expect.is_some_and(|e| e != r.used()) {
            unmet.push(v.clone());
        }
        rules.push(v);
    }
    (rules, unmet)
}

async fn apply(mock: &MockState, result: Result<Scenario, MockError>) -> http::Response<MockBody> {
    match result {
        Ok(s) => match mock.apply(s).await {
            Ok(()) => json_response(StatusCode::OK, &describe(mock)),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// Answers a request on the admin API's own listener: the API under its prefix, nothing else.
pub async fn handle_own_listener(
    mock: &MockState,
    req: http::Request<Incoming>,
) -> http::Response<MockBody> {
    if req.uri().path().starts_with(mock.admin_prefix()) {
        handle(mock, req).await
    } else {
        error(
            StatusCode::NOT_FOUND,
            &format!(
                "this listener serves only the admin API, under {}",
                mock.admin_prefix()
            ),
        )
    }
}

/// Answers one admin request.
pub async fn handle(mock: &MockState, req: http::Request<Incoming>) -> http::Response<MockBody> {
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !mock.token_ok(authorization) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs 'Authorization: Bearer <token>' with the configured token",
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pfgate mock\""),
        );
        return r;
    }
    let rest = req
        .uri()
        .path()
        .strip_prefix(mock.admin_prefix())
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let filter = Filter::from_query(req.uri().query());
    let method = req.method().clone();
    match (&method, rest.as_str()) {
        (&Method::GET, "journal") => {
            json_response(StatusCode::OK, &json!({ "entries": mock.journal.list(&filter) }))
        }
        (&Method::DELETE, "journal") | (&Method::POST, "journal/clear") => {
            mock.journal.clear();
            json_response(StatusCode::OK, &json!({ "cleared": true }))
        }
        (&Method::GET, "verify") => {
            let counts = journal::count(&mock.journal.list(&filter));
            let (rules, unmet) = rule_report(mock);
            let mut v = serde_json::to_value(&counts).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("rules".into(), json!(rules));
                o.insert("unmet_expectations".into(), json!(unmet));
            }
            json_response(StatusCode::OK, &v)
        }
        (&Method::GET, "scenario") => json_response(StatusCode::OK, &describe(mock)),
        (&Method::PUT, "scenario") | (&Method::POST, "scenario") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let text = String::from_utf8_lossy(&body).into_owned();
            let parsed = Scenario::from_sources(&[("admin API".to_string(), text)]);
            apply(mock, parsed.map_err(MockError::from)).await
        }
        (&Method::POST, "scenario/reload") => apply(mock, mock.reread()).await,
        (&Method::POST, "reset") => {
            let r = apply(mock, mock.initial()).await;
            if r.status() == StatusCode::OK {
                mock.journal.clear();
                mock.clear_overrides();
            }
            r
        }
        (&Method::GET, "overrides") => {
            json_response(StatusCode::OK, &json!({ "overrides": mock.overrides() }))
        }
        (&Method::POST, "overrides") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match serde_json::from_slice::<Override>(&body) {
                Ok(o) if o.count == 0 => error(StatusCode::BAD_REQUEST, "count must be at least 1"),
                Ok(o) if o.delay_ms > super::scenario::MAX_DELAY_MS => error(
                    StatusCode::BAD_REQUEST,
                    "delay_ms is longer than a client would wait",
                ),
                Ok(o) => {
                    mock.set_override(o);
                    json_response(StatusCode::OK, &json!({ "overrides": mock.overrides() }))
                }
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    &format!("expected {{\"user\", \"outcome\", \"count\", \"delay_ms\"}}: {e}"),
                ),
            }
        }
        (&Method::DELETE, "overrides") => {
            mock.clear_overrides();
            json_response(StatusCode::OK, &json!({ "overrides": [] }))
        }
        (&Method::GET, "outbox") => {
            let loaded = mock.loaded();
            json_response(StatusCode::OK, &json!({ "outbox": loaded.scripted.outbox() }))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown admin endpoint: journal, verify, scenario, scenario/reload, reset, overrides, outbox",
        ),
    }
}
