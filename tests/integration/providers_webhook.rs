//! The webhook provider (`src/providers/webhook.rs`) against a fake webhook service that
//! implements `docs/webhook.md`: it verifies every request's signature and timestamp with the same
//! public `verify` (answering 401 otherwise, and recording it), signs its answers, and follows a
//! script chosen by the username of each attempt. The provider is called through the `Provider`
//! trait, as the engine calls it.
//!
//! Also: the HTTPS options (a private CA and a client certificate, with a TLS fake), the
//! configuration checks, and the example service in `examples/webhook-provider/` (Python 3),
//! which is started for real: it and pfgate must agree on the signature. Without `python3` that
//! test prints a `SKIP` line, unless `PFGATE_REQUIRE_INTEROP=1`, which makes it a failure.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pfgate::engine::phone::E164;
use pfgate::pfwssdk::Mode3;
use pfgate::providers::webhook::{
    self, now_unix, SignatureError, Signed, StartRequest, StateResponse, WebhookProvider,
    WebhookSettings, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use pfgate::providers::{AuthAttempt, Provider, ProviderConfig as _, ProviderErrorKind, Verdict};
use tokio::net::TcpListener;

/// The shared secret both sides hold in these tests.
const SECRET: &str = "webhook-test-secret-5f1c9a7e";
/// Another secret, to prove a wrong one is refused.
const WRONG_SECRET: &str = "not-the-secret-0000000000000";
/// The fake serves under this base path, so the signed path includes a prefix.
const PREFIX: &str = "/hook/v1";
/// The window the fake applies to request timestamps.
const WINDOW: Duration = Duration::from_secs(300);
/// The longest any single wait in these tests may take.
const STEP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The fake service
// ---------------------------------------------------------------------------------------------

/// What the fake does for an attempt; chosen by the attempt's username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Success in the answer to the start.
    Approve,
    /// Pending on start, pending (with `Retry-After: 1`) on the first poll, success on the second.
    PendingTwice,
    /// Pending on start, then failed/denied.
    Deny,
    /// Failed/not_answered at once.
    NoAnswer,
    /// Failed/hung_up at once.
    HangUp,
    /// Failed/error with a reason.
    Error,
    /// HTTP 500 to the start.
    Status500,
    /// Pending, then HTTP 500 to the poll.
    Poll500,
    /// HTTP 404 to the start.
    Status404,
    /// A redirect (pfgate follows none).
    Redirect,
    /// Never terminal.
    Slow,
    /// Success, signed with another secret.
    BadSignature,
    /// Success without signature headers.
    NoSignature,
    /// A signed "pending" whose body is swapped for "success".
    TamperedBody,
    /// A validly signed success for another request id.
    WrongId,
    /// A success signed an hour ago.
    StaleResponse,
    /// A success signed for another path (a response captured from another endpoint).
    OtherPath,
    /// A success signed with the request's signing string (a reflected request signature).
    RequestSignature,
    /// A signed body that is not JSON.
    NotJson,
    /// A signed state with an unknown status.
    UnknownStatus,
    /// `success` with outcome `denied`.
    SuccessDenied,
    /// `failed` with outcome `approved`.
    FailedApproved,
}

impl Script {
    fn for_user(username: &str) -> Script {
        match username {
            "approve" => Script::Approve,
            "pending_twice" => Script::PendingTwice,
            "deny" => Script::Deny,
            "no_answer" => Script::NoAnswer,
            "hang_up" => Script::HangUp,
            "error" => Script::Error,
            "status_500" => Script::Status500,
            "poll_500" => Script::Poll500,
            "status_404" => Script::Status404,
            "redirect" => Script::Redirect,
            "slow" => Script::Slow,
            "bad_signature" => Script::BadSignature,
            "no_signature" => Script::NoSignature,
            "tampered_body" => Script::TamperedBody,
            "wrong_id" => Script::WrongId,
            "stale_response" => Script::StaleResponse,
            "other_path" => Script::OtherPath,
            "request_signature" => Script::RequestSignature,
            "not_json" => Script::NotJson,
            "unknown_status" => Script::UnknownStatus,
            "success_denied" => Script::SuccessDenied,
            "failed_approved" => Script::FailedApproved,
            other => panic!("no script for user {other}"),
        }
    }
}

/// How an answer is spoiled (for the failure scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spoil {
    None,
    WrongSecret,
    NoHeaders,
    SwapBody,
    WrongId,
    Stale,
    OtherPath,
    AsRequest,
    NotJson,
}

/// One answer: HTTP status, the state (status, outcome, reason), extra headers, how it is spoiled.
struct Answer {
    http: u16,
    state: (&'static str, Option<&'static str>, Option<&'static str>),
    retry_after: Option<&'static str>,
    spoil: Spoil,
}

const fn ok(
    state: (&'static str, Option<&'static str>, Option<&'static str>),
    spoil: Spoil,
) -> Answer {
    Answer {
        http: 200,
        state,
        retry_after: None,
        spoil,
    }
}

const PENDING: (&str, Option<&str>, Option<&str>) = ("pending", None, None);
const SUCCESS: (&str, Option<&str>, Option<&str>) = ("success", Some("approved"), None);

/// The answer of `script` to its `step`-th request (0 = the start, 1 = the first poll, …).
fn answer(script: Script, step: usize) -> Answer {
    use Script::*;
    let failed = |outcome, reason| ("failed", Some(outcome), reason);
    match (script, step) {
        (Approve, _) => ok(SUCCESS, Spoil::None),
        (PendingTwice, 0) => ok(PENDING, Spoil::None),
        (PendingTwice, 1) => Answer {
            retry_after: Some("1"),
            ..ok(PENDING, Spoil::None)
        },
        (PendingTwice, _) => ok(SUCCESS, Spoil::None),
        (Deny, 0) => ok(PENDING, Spoil::None),
        (Deny, _) => ok(failed("denied", Some("the user pressed Deny")), Spoil::None),
        (NoAnswer, _) => ok(failed("not_answered", None), Spoil::None),
        (HangUp, _) => ok(failed("hung_up", None), Spoil::None),
        (Error, _) => ok(
            failed("error", Some("carrier unreachable\n(code 42)")),
            Spoil::None,
        ),
        (Status500, _) => Answer {
            http: 500,
            ..ok(SUCCESS, Spoil::None)
        },
        (Poll500, 0) => ok(PENDING, Spoil::None),
        (Poll500, _) => Answer {
            http: 500,
            ..ok(SUCCESS, Spoil::None)
        },
        (Status404, _) => Answer {
            http: 404,
            ..ok(SUCCESS, Spoil::None)
        },
        (Redirect, _) => Answer {
            http: 307,
            ..ok(SUCCESS, Spoil::None)
        },
        (Slow, _) => ok(PENDING, Spoil::None),
        (BadSignature, _) => ok(SUCCESS, Spoil::WrongSecret),
        (NoSignature, _) => ok(SUCCESS, Spoil::NoHeaders),
        (TamperedBody, _) => ok(PENDING, Spoil::SwapBody),
        (WrongId, _) => ok(SUCCESS, Spoil::WrongId),
        (StaleResponse, _) => ok(SUCCESS, Spoil::Stale),
        (OtherPath, _) => ok(SUCCESS, Spoil::OtherPath),
        (RequestSignature, _) => ok(SUCCESS, Spoil::AsRequest),
        (NotJson, _) => ok(SUCCESS, Spoil::NotJson),
        (UnknownStatus, _) => ok(("maybe", None, None), Spoil::None),
        (SuccessDenied, _) => ok(("success", Some("denied"), None), Spoil::None),
        (FailedApproved, _) => ok(("failed", Some("approved"), None), Spoil::None),
    }
}

/// One request the fake received, as it arrived.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    timestamp: Option<String>,
    signature: Option<String>,
    body: Bytes,
    at: Instant,
    verified: Result<(), SignatureError>,
}

struct Fake {
    secret: Vec<u8>,
    /// Added to the fake's clock: lets a test move the fake into the future (replay tests).
    clock_offset: AtomicI64,
    seen: Mutex<Vec<Seen>>,
    /// request_id → (script, requests answered so far).
    attempts: Mutex<HashMap<String, (Script, usize)>>,
    /// Start bodies as parsed (to check what pfgate sends).
    starts: Mutex<Vec<StartRequest>>,
    /// Answer health checks unsigned.
    health_unsigned: std::sync::atomic::AtomicBool,
}

impl Fake {
    fn new(secret: &str) -> Arc<Self> {
        Arc::new(Self {
            secret: secret.as_bytes().to_vec(),
            clock_offset: AtomicI64::new(0),
            seen: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            starts: Mutex::new(Vec::new()),
            health_unsigned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn now(&self) -> i64 {
        now_unix() + self.clock_offset.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn bad_signatures(&self) -> usize {
        self.seen().iter().filter(|s| s.verified.is_err()).count()
    }

    /// Polls (GETs) of one attempt.
    fn polls(&self, request_id: &str) -> Vec<Seen> {
        let path = format!("{PREFIX}/authentications/{request_id}");
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path == path)
            .collect()
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().as_str().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let verified = webhook::verify(
            &self.secret,
            Signed::Request {
                method: &method,
                path: &path,
            },
            timestamp.as_deref(),
            signature.as_deref(),
            &body,
            self.now(),
            WINDOW,
        );
        self.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            timestamp,
            signature,
            body: body.clone(),
            at: Instant::now(),
            verified: verified.clone(),
        });
        if let Err(e) = verified {
            // Unsigned on purpose: the caller is not known to hold the secret.
            return plain(401, &format!("{{\"error\":\"{e}\"}}"));
        }
        let Some(route) = path.strip_prefix(PREFIX) else {
            return plain(404, "{}");
        };
        match (method.as_str(), route) {
            ("GET", "/health") => {
                let body = br#"{"status":"ok"}"#;
                if self.health_unsigned.load(Ordering::SeqCst) {
                    return plain(200, std::str::from_utf8(body).unwrap());
                }
                self.signed(200, &method, &path, body.to_vec(), Spoil::None, None)
            }
            ("POST", "/authentications") => {
                let start: StartRequest = match serde_json::from_slice(&body) {
                    Ok(s) => s,
                    Err(_) => return plain(400, "{}"),
                };
                let script = Script::for_user(&start.username);
                let id = start.request_id.clone();
                // Idempotent on request_id: a repeated start gets the attempt's state (200) and
                // starts nothing.
                let (step, new) = {
                    let mut attempts = self.attempts.lock().unwrap();
                    let new = !attempts.contains_key(&id);
                    let entry = attempts.entry(id.clone()).or_insert((script, 0));
                    entry.1 += 1;
                    (entry.1 - 1, new)
                };
                if new {
                    self.starts.lock().unwrap().push(start);
                }
                let status = if new { 201 } else { 200 };
                self.respond(&method, &path, &id, answer(script, step), status)
            }
            ("GET", r) if r.starts_with("/authentications/") => {
                let id = r["/authentications/".len()..].to_string();
                let found = {
                    let mut attempts = self.attempts.lock().unwrap();
                    attempts.get_mut(&id).map(|entry| {
                        entry.1 += 1;
                        (entry.0, entry.1 - 1)
                    })
                };
                match found {
                    Some((script, step)) => {
                        self.respond(&method, &path, &id, answer(script, step), 200)
                    }
                    None => plain(404, "{}"),
                }
            }
            _ => plain(404, "{}"),
        }
    }

    fn respond(
        &self,
        method: &str,
        path: &str,
        id: &str,
        a: Answer,
        success_status: u16,
    ) -> Response<Full<Bytes>> {
        if a.http >= 300 {
            let mut r = plain(a.http, r#"{"error":"scripted"}"#);
            if a.http == 307 {
                r.headers_mut().insert(
                    "location",
                    format!("{PREFIX}/authentications/{id}").parse().unwrap(),
                );
            }
            return r;
        }
        let state = |status: &str, outcome: Option<&str>, reason: Option<&str>, id: &str| {
            serde_json::to_vec(&StateResponse {
                request_id: id.to_string(),
                status: status.to_string(),
                outcome: outcome.map(str::to_string),
                reason: reason.map(str::to_string),
            })
            .unwrap()
        };
        let (status, outcome, reason) = a.state;
        let body = match a.spoil {
            Spoil::WrongId => state(status, outcome, reason, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"),
            Spoil::NotJson => b"approved!".to_vec(),
            _ => state(status, outcome, reason, id),
        };
        let code = if a.http == 200 {
            success_status
        } else {
            a.http
        };
        self.signed(code, method, path, body, a.spoil, a.retry_after)
    }

    /// A response signed as `docs/webhook.md` says (unless spoiled).
    fn signed(
        &self,
        status: u16,
        method: &str,
        path: &str,
        body: Vec<u8>,
        spoil: Spoil,
        retry_after: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let mut ts = self.now();
        let mut secret = self.secret.clone();
        let mut signed_path = path.to_string();
        let mut signed_body = body.clone();
        let mut sent_body = body;
        match spoil {
            Spoil::WrongSecret => secret = WRONG_SECRET.as_bytes().to_vec(),
            Spoil::Stale => ts -= 3600,
            Spoil::OtherPath => signed_path = format!("{PREFIX}/health"),
            Spoil::SwapBody => {
                signed_body = sent_body.clone();
                sent_body = String::from_utf8(sent_body)
                    .unwrap()
                    .replace("\"pending\"", "\"success\",\"outcome\":\"approved\"")
                    .into_bytes();
            }
            _ => {}
        }
        let what = if spoil == Spoil::AsRequest {
            Signed::Request {
                method,
                path: &signed_path,
            }
        } else {
            Signed::Response {
                status,
                method,
                path: &signed_path,
            }
        };
        let signature = webhook::sign(&secret, what, ts, &signed_body);
        let mut b = Response::builder()
            .status(status)
            .header("content-type", "application/json");
        if spoil != Spoil::NoHeaders {
            b = b
                .header(TIMESTAMP_HEADER, ts.to_string())
                .header(SIGNATURE_HEADER, signature);
        }
        if let Some(r) = retry_after {
            b = b.header("retry-after", r);
        }
        b.body(Full::new(Bytes::from(sent_body))).unwrap()
    }
}

fn plain(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Serves one connection (plain or TLS) with the fake.
async fn serve<IO>(fake: Arc<Fake>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let fake = fake.clone();
        async move { Ok::<_, Infallible>(fake.handle(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// The fake on 127.0.0.1 (plain HTTP: loopback is allowed).
async fn start_fake(secret: &str) -> (Arc<Fake>, SocketAddr) {
    let fake = Fake::new(secret);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = fake.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(f.clone(), stream));
        }
    });
    (fake, addr)
}

// ---------------------------------------------------------------------------------------------
// pfgate's side
// ---------------------------------------------------------------------------------------------

/// A temporary file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pfgate-webhook-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, content).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn settings(base_url: String, secret_file: &TempFile) -> WebhookSettings {
    WebhookSettings {
        base_url,
        secret_file: Some(secret_file.0.clone()),
        request_timeout_secs: Some(5),
        poll_interval_ms: Some(100),
        ..WebhookSettings::default()
    }
}

/// A provider for the fake at `addr`, signing with `secret`.
fn provider(addr: SocketAddr, secret: &str) -> (WebhookProvider, TempFile) {
    // The trailing newline, as `echo … > file` leaves it, is not part of the secret.
    let file = TempFile::new("secret", format!("{secret}\n").as_bytes());
    let p = settings(format!("http://{addr}{PREFIX}"), &file)
        .build("webhook-test")
        .unwrap();
    (p, file)
}

fn attempt(username: &str) -> AuthAttempt {
    AuthAttempt {
        request_id: pfgate::engine::new_request_id(),
        username: username.to_string(),
        user_group: String::new(),
        caller: "anonymous".to_string(),
        phone: E164::parse("1", "(425) 555-0100", "77", "1").unwrap(),
        mode: Mode3::PhoneApp,
        application_name: "MIM".to_string(),
        initiating_ip: "192.0.2.10".to_string(),
        caller_ip: "198.51.100.7".parse().unwrap(),
        external_id: None,
        scripted: None,
    }
}

/// `authenticate` through the trait, bounded like the engine bounds it.
async fn run(p: &dyn Provider, a: &AuthAttempt) -> Verdict {
    tokio::time::timeout(STEP, p.authenticate(a))
        .await
        .expect("the provider answers in time")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_success_is_approved_and_the_request_is_as_documented() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    let a = attempt("approve");
    let before = now_unix();
    assert_eq!(run(&p, &a).await, Verdict::Approved);

    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "one POST, no polling: {seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, format!("{PREFIX}/authentications"));
    assert_eq!(seen[0].verified, Ok(()));
    assert!(seen[0].signature.as_deref().unwrap().starts_with("v1="));
    let start = fake.starts.lock().unwrap()[0].clone();
    assert_eq!(start.request_id, a.request_id);
    assert_eq!(start.username, "approve");
    assert_eq!(start.phone, "+14255550100");
    assert_eq!(start.extension, "77");
    assert_eq!(start.mode, "phoneApp");
    assert_eq!(start.application_name, "MIM");
    assert_eq!(start.initiating_ip, "192.0.2.10");
    assert_eq!(start.caller_ip, "198.51.100.7");
    // The default deadline told to the service is 60 s (the engine's default auth_timeout).
    assert!((before + 59..=now_unix() + 61).contains(&start.deadline));
    // Exactly the documented keys, nothing else.
    let raw: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    let mut keys: Vec<_> = raw.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "application_name",
            "caller_ip",
            "deadline",
            "extension",
            "initiating_ip",
            "mode",
            "phone",
            "request_id",
            "username"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_is_polled_and_retry_after_is_honoured() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    let a = attempt("pending_twice");
    assert_eq!(run(&p, &a).await, Verdict::Approved);

    let seen = fake.seen();
    assert_eq!(seen.len(), 3, "POST + two polls: {seen:?}");
    assert!(seen.iter().all(|s| s.verified.is_ok()));
    let polls = fake.polls(&a.request_id);
    assert_eq!(polls.len(), 2);
    // The first poll follows the configured 100 ms; the second waits the 1 s Retry-After.
    let first_gap = polls[0].at - seen[0].at;
    let second_gap = polls[1].at - polls[0].at;
    assert!(first_gap < Duration::from_millis(900), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(950), "{second_gap:?}");
    assert!(second_gap < Duration::from_secs(3), "{second_gap:?}");
    // A GET has an empty body, signed as such.
    assert!(polls.iter().all(|s| s.body.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_map_to_verdicts() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    assert_eq!(run(&p, &attempt("deny")).await, Verdict::Denied);
    assert_eq!(run(&p, &attempt("no_answer")).await, Verdict::NotAnswered);
    assert_eq!(run(&p, &attempt("hang_up")).await, Verdict::HungUp);
    // The service's reason reaches the audit log, on one line.
    assert_eq!(
        run(&p, &attempt("error")).await,
        Verdict::failed(ProviderErrorKind::Rejected, "carrier unreachable (code 42)")
    );
    assert_eq!(fake.bad_signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_failed_never_approved() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    let cases = [
        ("status_500", "HTTP 500"),
        ("poll_500", "HTTP 500"),
        ("status_404", "HTTP 404"),
        ("redirect", "HTTP 307"),
        ("bad_signature", "signature does not match"),
        ("no_signature", "no X-Pfgate-Timestamp header"),
        ("tampered_body", "signature does not match"),
        ("wrong_id", "another request_id"),
        ("stale_response", "window"),
        ("other_path", "signature does not match"),
        ("request_signature", "signature does not match"),
        ("not_json", "not a state object"),
        ("unknown_status", "unknown status 'maybe'"),
        ("success_denied", "only 'approved' goes with success"),
        ("failed_approved", "unknown outcome 'approved'"),
    ];
    for (user, expected) in cases {
        match run(&p, &attempt(user)).await {
            Verdict::Failed(e) => {
                let reason = e.detail();
                assert!(
                    reason.contains(expected),
                    "{user}: reason {reason:?} should mention {expected:?}"
                );
                assert!(!reason.contains(SECRET), "{user}: the secret leaked");
            }
            other => panic!("{user}: {other:?}, expected Failed"),
        }
    }
    // Every request pfgate sent was correctly signed: the failures were the service's.
    assert_eq!(fake.bad_signatures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_error_is_failed() {
    // A port with nothing listening.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (p, _secret) = provider(addr, SECRET);
    match run(&p, &attempt("approve")).await {
        Verdict::Failed(e) => assert!(e.detail().contains("could not connect"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!p.healthy().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_on_pfgates_side_is_refused_by_the_service() {
    // The fake holds SECRET, pfgate signs with WRONG_SECRET: the fake must see a bad signature
    // (this is what proves the fake really checks, so the other tests' "verified" means something).
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, WRONG_SECRET);
    match run(&p, &attempt("approve")).await {
        Verdict::Failed(e) => {
            let reason = e.detail();
            assert!(reason.contains("HTTP 401"), "{reason}");
            assert!(!reason.contains(SECRET) && !reason.contains(WRONG_SECRET));
        }
        other => panic!("{other:?}"),
    }
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].verified, Err(SignatureError::Mismatch));
    assert!(
        fake.starts.lock().unwrap().is_empty(),
        "nothing was started"
    );
    assert!(!p.healthy().await);
    assert_eq!(fake.bad_signatures(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_drops_the_attempt_and_polling_stops() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    let a = attempt("slow");
    let deadline = Duration::from_millis(1500);
    let started = Instant::now();
    // As the engine does: the future is dropped when the deadline passes.
    let r = tokio::time::timeout(deadline, p.authenticate(&a)).await;
    let took = started.elapsed();
    assert!(r.is_err(), "never terminal, so the deadline ends it: {r:?}");
    assert!(took < deadline + Duration::from_millis(500), "{took:?}");
    let polls_at_deadline = fake.polls(&a.request_id).len();
    assert!(
        polls_at_deadline >= 5,
        "it was polling: {polls_at_deadline}"
    );
    // Ten poll intervals later no more polls arrived (one already on the wire may still land).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = fake.polls(&a.request_id).len();
    assert!(
        after <= polls_at_deadline + 1,
        "polling stopped: {polls_at_deadline} then {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_caller_deadline_the_provider_stops_at_its_own() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    let p = p.with_auth_timeout(Duration::from_secs(1));
    let a = attempt("slow");
    let started = Instant::now();
    assert_eq!(run(&p, &a).await, Verdict::NotAnswered);
    assert!(started.elapsed() < Duration::from_millis(1500));
    let start = fake.starts.lock().unwrap()[0].clone();
    assert!(start.deadline <= now_unix() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_request_cannot_be_replayed() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    let a = attempt("pending_twice");
    assert_eq!(run(&p, &a).await, Verdict::Approved);
    let captured = fake.seen();
    let (post, poll) = (captured[0].clone(), captured[1].clone());
    assert_eq!(post.method, "POST");
    assert_eq!(poll.method, "GET");

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let replay = |s: &Seen, timestamp: &str, path: &str| {
        let mut r = client
            .request(s.method.parse().unwrap(), format!("http://{addr}{path}"))
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, s.signature.clone().unwrap());
        if !s.body.is_empty() {
            r = r.body(s.body.clone());
        }
        r.send()
    };
    let ts = post.timestamp.clone().unwrap();

    // Within the window the same request is accepted (the start is idempotent on request_id: the
    // existing attempt's state comes back and nothing new starts).
    let r = replay(&post, &ts, &post.path).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fake.bad_signatures(), 0);
    assert_eq!(fake.starts.lock().unwrap().len(), 1);

    // Sent to another endpoint, the signature does not hold.
    let r = replay(
        &poll,
        poll.timestamp.as_deref().unwrap(),
        &format!("{PREFIX}/health"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        fake.seen().last().unwrap().verified,
        Err(SignatureError::Mismatch)
    );

    // Later than the window (the fake's clock moved on), the captured request is refused.
    fake.clock_offset
        .store(WINDOW.as_secs() as i64 + 1, Ordering::SeqCst);
    let r = replay(&post, &ts, &post.path).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(matches!(
        fake.seen().last().unwrap().verified,
        Err(SignatureError::OutsideWindow { .. })
    ));

    // And forging a fresh timestamp breaks the signature.
    let fresh = fake.now().to_string();
    let r = replay(&post, &fresh, &post.path).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        fake.seen().last().unwrap().verified,
        Err(SignatureError::Mismatch)
    );

    // pfgate itself, when its clock is behind the service's by more than the window, is refused
    // the same way (and would refuse the service's answers likewise: see stale_response).
    assert!(matches!(
        run(&p, &attempt("approve")).await,
        Verdict::Failed(_)
    ));
    assert!(matches!(
        fake.seen().last().unwrap().verified,
        Err(SignatureError::OutsideWindow { .. })
    ));
}

#[test]
fn verify_checks_the_window_the_headers_and_every_signed_part() {
    let secret = SECRET.as_bytes();
    let what = Signed::Request {
        method: "POST",
        path: "/authentications",
    };
    let body = br#"{"request_id":"X"}"#;
    let t = 1_700_000_000_i64;
    let sig = webhook::sign(secret, what, t, body);
    let ts = t.to_string();
    let w = Duration::from_secs(300);
    let check = |what: Signed<'_>, ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| {
        webhook::verify(secret, what, ts, sig, body, now, w)
    };

    assert_eq!(check(what, Some(&ts), Some(&sig), body, t), Ok(()));
    // The window holds both ways, inclusive.
    assert_eq!(check(what, Some(&ts), Some(&sig), body, t + 300), Ok(()));
    assert_eq!(check(what, Some(&ts), Some(&sig), body, t - 300), Ok(()));
    assert_eq!(
        check(what, Some(&ts), Some(&sig), body, t + 301),
        Err(SignatureError::OutsideWindow {
            skew: 301,
            window: 300
        })
    );
    assert!(matches!(
        check(what, Some(&ts), Some(&sig), body, t - 301),
        Err(SignatureError::OutsideWindow { .. })
    ));
    // Missing or malformed headers.
    assert_eq!(
        check(what, None, Some(&sig), body, t),
        Err(SignatureError::MissingTimestamp)
    );
    assert_eq!(
        check(what, Some(&ts), None, body, t),
        Err(SignatureError::MissingSignature)
    );
    for bad in ["", "-1700000000", "1.7e9", "abc", "+1700000000"] {
        assert_eq!(
            check(what, Some(bad), Some(&sig), body, t),
            Err(SignatureError::BadTimestamp),
            "{bad:?}"
        );
    }
    for bad in [
        "",
        "v1=",
        "v1=zz",
        "v2=00",
        &sig[3..],
        &sig.replace("v1=", "v0="),
    ] {
        assert_eq!(
            check(what, Some(&ts), Some(bad), body, t),
            Err(SignatureError::Mismatch),
            "{bad:?}"
        );
    }
    // Every signed part matters.
    let other = |method, path| Signed::Request { method, path };
    assert_eq!(
        check(
            other("GET", "/authentications"),
            Some(&ts),
            Some(&sig),
            body,
            t
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        check(other("POST", "/health"), Some(&ts), Some(&sig), body, t),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        check(what, Some(&ts), Some(&sig), br#"{"request_id":"Y"}"#, t),
        Err(SignatureError::Mismatch)
    );
    let (t2, ts2) = (t + 1, (t + 1).to_string());
    assert_eq!(
        check(what, Some(&ts2), Some(&sig), body, t2),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        webhook::verify(
            WRONG_SECRET.as_bytes(),
            what,
            Some(&ts),
            Some(&sig),
            body,
            t,
            w
        ),
        Err(SignatureError::Mismatch)
    );
    // Responses bind the status code and are never interchangeable with requests.
    let resp = |status| Signed::Response {
        status,
        method: "POST",
        path: "/authentications",
    };
    let rsig = webhook::sign(secret, resp(201), t, body);
    assert_eq!(check(resp(201), Some(&ts), Some(&rsig), body, t), Ok(()));
    assert_eq!(
        check(resp(200), Some(&ts), Some(&rsig), body, t),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        check(what, Some(&ts), Some(&rsig), body, t),
        Err(SignatureError::Mismatch)
    );
    // Several entries (a service rotating its secret signs with both): one match suffices.
    let both = format!("v1={}, {sig}", "ab".repeat(32));
    assert_eq!(check(what, Some(&ts), Some(&both), body, t), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_is_signed_both_ways() {
    let (fake, addr) = start_fake(SECRET).await;
    let (p, _secret) = provider(addr, SECRET);
    assert!(tokio::time::timeout(STEP, p.healthy()).await.unwrap());
    let seen = fake.seen();
    assert_eq!(seen.last().unwrap().path, format!("{PREFIX}/health"));
    assert_eq!(seen.last().unwrap().verified, Ok(()));
    // A 200 that is not signed is not healthy: it could come from anything on that address.
    fake.health_unsigned.store(true, Ordering::SeqCst);
    assert!(!tokio::time::timeout(STEP, p.healthy()).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// HTTPS: a private CA and a client certificate
// ---------------------------------------------------------------------------------------------

struct Pki {
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    client_cert_pem: String,
    client_key_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pfgate webhook test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    cp.distinguished_name
        .push(rcgen::DnType::CommonName, "pfgate");
    let client_cert = cp.signed_by(&client_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        server_chain: vec![server_cert.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// The fake over TLS, requiring a client certificate from the test CA.
async fn start_tls_fake(pki: &Pki) -> (Arc<Fake>, SocketAddr) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let fake = Fake::new(SECRET);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = fake.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, f) = (acceptor.clone(), f.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve(f, tls).await;
                }
            });
        }
    });
    (fake, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_client_certificate() {
    let pki = pki();
    let (fake, addr) = start_tls_fake(&pki).await;
    let secret = TempFile::new("secret", SECRET.as_bytes());
    let ca = TempFile::new("ca.pem", pki.ca_pem.as_bytes());
    let cert = TempFile::new("client.pem", pki.client_cert_pem.as_bytes());
    let key = TempFile::new("client.key", pki.client_key_pem.as_bytes());
    let base = format!("https://localhost:{}{PREFIX}", addr.port());

    let full = WebhookSettings {
        ca_file: Some(ca.0.clone()),
        client_cert: Some(cert.0.clone()),
        client_key: Some(key.0.clone()),
        ..settings(base.clone(), &secret)
    };
    assert_eq!(full.validate(), Vec::new());
    let p = full.build("webhook-tls").unwrap();
    assert_eq!(run(&p, &attempt("pending_twice")).await, Verdict::Approved);
    assert!(p.healthy().await);
    assert_eq!(fake.bad_signatures(), 0);
    let answered = fake.seen().len();

    // Without the client certificate the service refuses the handshake: a provider failure.
    let no_client_cert = WebhookSettings {
        ca_file: Some(ca.0.clone()),
        ..settings(base.clone(), &secret)
    }
    .build("webhook-tls")
    .unwrap();
    match run(&no_client_cert, &attempt("approve")).await {
        // Under TLS 1.3 the client finishes its side of the handshake before the server's
        // refusal arrives, so what the client reports depends on timing: usually "received fatal
        // alert: CertificateRequired", sometimes only that the connection closed before the
        // request went out ("connection was not ready"). Either way the call fails, and the
        // service sees no request (checked below).
        Verdict::Failed(e) => {
            let reason = e.detail();
            let reason = reason.to_lowercase();
            assert!(
                reason.contains("certificate") || reason.contains("connection"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.seen().len(),
        answered,
        "no request got through without a client certificate"
    );
    // Without the private CA the service's certificate is not trusted.
    let no_ca = WebhookSettings {
        client_cert: Some(cert.0.clone()),
        client_key: Some(key.0.clone()),
        ..settings(base, &secret)
    }
    .build("webhook-tls")
    .unwrap();
    match run(&no_ca, &attempt("approve")).await {
        Verdict::Failed(e) => {
            let reason = e.detail();
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.seen().len(), answered, "no request got through");
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn keys(problems: &[(String, String)]) -> Vec<&str> {
    problems.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn configuration_is_checked_key_by_key() {
    let secret = TempFile::new("secret", format!("{SECRET}\r\n").as_bytes());
    let short = TempFile::new("short", b"0123456789abcde\n");
    let base = |url: &str| settings(url.to_string(), &secret);

    // As the TOML section will be written (without `kind`, which the caller consumes).
    let parsed: WebhookSettings = toml::from_str(&format!(
        "base_url = \"https://mfa.example.org/pfgate\"\nsecret_file = {:?}\n\
         request_timeout_secs = 5\npoll_interval_ms = 500\nsignature_window_secs = 120\n",
        secret.0
    ))
    .unwrap();
    assert_eq!(parsed.validate(), Vec::new());
    let built = parsed.build("webhook").unwrap();
    assert_eq!(built.name(), "webhook");
    // Neither Debug form shows the secret.
    assert!(!format!("{built:?}").contains(SECRET));
    assert!(format!("{built:?}").contains("redacted"));
    // An unknown key (or an inline secret) is refused by the parser.
    let err = toml::from_str::<WebhookSettings>(
        "base_url = \"https://mfa.example.org\"\nsecret = \"inline-secrets-are-refused\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");

    for ok in [
        "https://mfa.example.org",
        "http://127.0.0.1:8090",
        "http://[::1]:8090/x",
        "http://localhost:8090",
    ] {
        assert_eq!(base(ok).validate(), Vec::new(), "{ok}");
    }
    for bad in [
        "http://mfa.example.org",
        "http://10.0.0.1:8090",
        "ftp://mfa.example.org",
        "not a url",
        "https://user:pw@mfa.example.org",
        "https://mfa.example.org/?x=1",
    ] {
        assert_eq!(keys(&base(bad).validate()), ["base_url"], "{bad}");
    }

    let none = WebhookSettings {
        secret_file: None,
        ..base("https://mfa.example.org")
    };
    assert_eq!(keys(&none.validate()), ["secret_env"]);
    let both = WebhookSettings {
        secret_env: Some("PFGATE_WEBHOOK_TEST_UNSET".into()),
        ..base("https://mfa.example.org")
    };
    assert_eq!(keys(&both.validate()), ["secret_env"]);
    let unset = WebhookSettings {
        secret_env: Some("PFGATE_WEBHOOK_TEST_UNSET_VARIABLE".into()),
        secret_file: None,
        ..base("https://mfa.example.org")
    };
    let problems = unset.validate();
    assert_eq!(keys(&problems), ["secret_env"]);
    assert!(problems[0].1.contains("not set"));
    let too_short = WebhookSettings {
        secret_file: Some(short.0.clone()),
        ..base("https://mfa.example.org")
    };
    let problems = too_short.validate();
    assert_eq!(keys(&problems), ["secret_file"]);
    assert!(problems[0].1.contains("15 bytes"), "{problems:?}");
    assert!(
        !problems[0].1.contains("0123456789abcde"),
        "the secret leaked"
    );
    let missing_file = WebhookSettings {
        secret_file: Some("/nonexistent/pfgate-webhook-secret".into()),
        ..base("https://mfa.example.org")
    };
    assert_eq!(keys(&missing_file.validate()), ["secret_file"]);

    let half_identity = WebhookSettings {
        client_cert: Some(secret.0.clone()),
        ..base("https://mfa.example.org")
    };
    assert_eq!(keys(&half_identity.validate()), ["client_key"]);
    let not_pem = WebhookSettings {
        client_cert: Some(secret.0.clone()),
        client_key: Some(secret.0.clone()),
        ca_file: Some(secret.0.clone()),
        ..base("https://mfa.example.org")
    };
    assert_eq!(keys(&not_pem.validate()), ["client_cert", "ca_file"]);

    let numbers = WebhookSettings {
        request_timeout_secs: Some(0),
        poll_interval_ms: Some(50),
        signature_window_secs: Some(86_400),
        ..base("https://mfa.example.org")
    };
    assert_eq!(
        keys(&numbers.validate()),
        [
            "request_timeout_secs",
            "poll_interval_ms",
            "signature_window_secs"
        ]
    );
    // build() reports the same problems.
    match numbers.build("webhook") {
        Err(pfgate::providers::BuildError::Invalid { problems: p, .. }) => assert_eq!(p.len(), 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_secret_from_the_environment() {
    // A name no other test uses; set before any provider reads it.
    let var = format!("PFGATE_WEBHOOK_TEST_SECRET_{}", std::process::id());
    std::env::set_var(&var, SECRET);
    let s = WebhookSettings {
        base_url: "https://mfa.example.org".into(),
        secret_env: Some(var.clone()),
        ..WebhookSettings::default()
    };
    assert_eq!(s.validate(), Vec::new());
    assert!(s.build("webhook").is_ok());
    std::env::set_var(&var, "short");
    assert_eq!(keys(&s.validate()), ["secret_env"]);
    std::env::remove_var(&var);
}

// ---------------------------------------------------------------------------------------------
// The example service (examples/webhook-provider/, Python 3)
// ---------------------------------------------------------------------------------------------

/// The example running as a child process; killed (by its own handle) on drop.
struct Example {
    child: Child,
    base: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python3_available() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    let test = "providers_webhook::the_example_service_agrees_with_pfgate";
    if std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: python3 unavailable\nPFGATE_REQUIRE_INTEROP=1 requires it; run .ci/install-deps");
    }
    pfgate::testing::test_skips::skip(
        pfgate::testing::test_skips::Needs::Tools("python3"),
        test,
        "not on PATH",
    );
    false
}

/// Starts the example on a free port and waits for its `listening on …` line.
async fn start_example(secret: &TempFile) -> Example {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/webhook-provider/webhook_provider.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", "0", "--secret-file"])
        .arg(&secret.0)
        .args([
            "--decide",
            "allowlist",
            "--allow",
            "alice",
            "--pending-polls",
            "1",
            "--retry-after",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        STEP,
        tokio::task::spawn_blocking(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).map(|_| (line, reader))
        }),
    )
    .await;
    let (line, reader) = match line {
        Ok(Ok(Ok(v))) => v,
        other => {
            let _ = child.kill();
            panic!("the example did not start: {other:?}");
        }
    };
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for l in reader.lines().map_while(Result::ok) {
            eprintln!("[example] {l}");
        }
    });
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Example { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_agrees_with_pfgate() {
    if !python3_available() {
        return;
    }
    let secret = TempFile::new("secret", format!("{SECRET}\n").as_bytes());
    let example = start_example(&secret).await;
    assert!(
        example.base.starts_with("http://127.0.0.1:"),
        "{}",
        example.base
    );
    let p = settings(example.base.clone(), &secret)
        .build("webhook-example")
        .unwrap();

    assert!(tokio::time::timeout(STEP, p.healthy()).await.unwrap());
    // alice is on the allow list: pending for one poll, then approved.
    assert_eq!(run(&p, &attempt("alice")).await, Verdict::Approved);
    // bob is not.
    assert_eq!(run(&p, &attempt("bob")).await, Verdict::Denied);

    // With another secret the example refuses pfgate, and pfgate fails (never approves).
    let wrong = TempFile::new("wrong", WRONG_SECRET.as_bytes());
    let p_wrong = settings(example.base.clone(), &wrong)
        .build("webhook-example")
        .unwrap();
    match run(&p_wrong, &attempt("alice")).await {
        Verdict::Failed(e) => assert!(e.detail().contains("HTTP 401"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!p_wrong.healthy().await);
    drop(example);
}
