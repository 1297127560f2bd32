//! The Duo provider (`pfgate::providers::duo`) against a fake Duo Auth API v2.
//!
//! The fake runs on 127.0.0.1:0 (hyper, plain HTTP: loopback `base_url`s may be http) and checks
//! the `Date` header and the HTTP Basic signature of EVERY request the way Duo documents it
//! (https://duo.com/docs/authapi, "Authentication"), written here independently of pfgate: its own
//! form decoding, RFC 3986 re-encoding, sorting and canonical string, its own RFC 2822 date
//! parser, and HMAC-SHA512 from aws-lc-rs (pfgate signs with the RustCrypto `hmac`/`sha2`
//! crates). The canonicaliser is first checked against Duo's published example (its HMAC-SHA1
//! value), so a bug in pfgate's canonicalisation fails these tests instead of being mirrored.
//! A request that does not verify gets `401 {"stat":"FAIL","code":4010x,…}` like Duo's.
//!
//! Users are scripted by their Duo username (after pfgate's username template).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pfgate::engine::phone::E164;
use pfgate::pfwssdk::Mode3;
use pfgate::providers::duo::{self, DuoProvider, DuoSettings};
use pfgate::providers::{AuthAttempt, Provider, ProviderConfig as _, Verdict};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Any single step of a test (one authentication, one check).
const STEP: Duration = Duration::from_secs(20);
pub(crate) const API_HOST: &str = "api-test1234.duosecurity.com";
pub(crate) const IKEY: &str = "DIXXXXXXXXXXXXXXXXXX";
pub(crate) const SKEY: &str = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
/// How far the `Date` header may be from the fake's clock.
const DATE_SKEW_SECS: i64 = 300;

// ---------------------------------------------------------------------------------------------
// Duo's signature, written from the documentation (not from pfgate)
// ---------------------------------------------------------------------------------------------

/// Duo: "URL-encoded … Do not encode unreserved characters. Use upper-case hexadecimal digits".
fn rfc3986(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::new();
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
    String::from_utf8(out).unwrap()
}

/// Decodes `application/x-www-form-urlencoded` (also used for query strings): `+` is a space.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn parse_form(s: &str) -> Option<Vec<(String, String)>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

/// Duo's canonical request: date, METHOD, host, path, sorted encoded params, joined by LF.
fn duo_canonical(
    date: &str,
    method: &str,
    host: &str,
    path: &str,
    params: &[(String, String)],
) -> String {
    let mut encoded: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", rfc3986(k), rfc3986(v)))
        .collect();
    encoded.sort();
    format!(
        "{date}\n{}\n{}\n{path}\n{}",
        method.to_uppercase(),
        host.to_lowercase(),
        encoded.join("&")
    )
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Unix seconds of an RFC 2822 date such as `Tue, 21 Aug 2012 17:29:18 -0000`.
fn parse_rfc2822(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == month)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [hh, mm, ss] = hms.as_slice() else {
        return None;
    };
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let z: i64 = zone.get(1..)?.parse().ok()?;
    let offset = sign * ((z / 100) * 3600 + (z % 100) * 60);
    // Days from 1970-01-01 by counting (slow but plainly right for test dates).
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0i64;
    for yy in 1970..y {
        days += if leap(yy) { 366 } else { 365 };
    }
    let mdays = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += mdays[..(m - 1) as usize].iter().sum::<i64>() + d - 1;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The fake's own check of canonicalisation against Duo's published example.
#[test]
fn duo_fake_canonicalisation_matches_duo_documented_example() {
    let params = vec![
        ("username".to_string(), "root".to_string()),
        ("realname".to_string(), "First Last".to_string()),
    ];
    let date = "Tue, 21 Aug 2012 17:29:18 -0000";
    let canon = duo_canonical(
        date,
        "POST",
        "api-XXXXXXXX.duosecurity.com",
        "/accounts/v1/account/list",
        &params,
    );
    let key = hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        b"Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep",
    );
    assert_eq!(
        to_hex(hmac::sign(&key, canon.as_bytes()).as_ref()),
        "2d97d6166319781b5a3a07af39d366f491234edc"
    );
    assert_eq!(parse_rfc2822(date), Some(1_345_570_158));
    assert_eq!(
        parse_rfc2822("Tue, 21 Aug 2012 19:29:18 +0200"),
        Some(1_345_570_158)
    );
    assert_eq!(
        duo::rfc2822_date(UNIX_EPOCH + Duration::from_secs(1_345_570_158)),
        date
    );

    // pfgate's `sign` on the same request verifies with the fake's checker (HMAC-SHA512).
    let auth = duo::sign(
        "DIWJ8X6AEYOR5OMC6TQ1",
        b"Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep",
        date,
        "POST",
        "api-XXXXXXXX.duosecurity.com",
        "/accounts/v1/account/list",
        &[("username", "root"), ("realname", "First Last")],
    );
    let verified = verify_authorization(
        &auth,
        "DIWJ8X6AEYOR5OMC6TQ1",
        b"Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep",
        &canon,
    );
    assert_eq!(verified, Ok(()));
}

/// Checks `Authorization: Basic base64(ikey:hex(HMAC-SHA512(skey, canonical)))`; the error is
/// Duo's code.
fn verify_authorization(header: &str, ikey: &str, skey: &[u8], canonical: &str) -> Result<(), u32> {
    let b64 = header.strip_prefix("Basic ").ok_or(40101u32)?;
    let decoded = BASE64.decode(b64.trim()).map_err(|_| 40101u32)?;
    let decoded = String::from_utf8(decoded).map_err(|_| 40101u32)?;
    let (user, sig) = decoded.split_once(':').ok_or(40101u32)?;
    if user != ikey {
        return Err(40102);
    }
    let sig = from_hex(sig).ok_or(40103u32)?;
    let key = hmac::Key::new(hmac::HMAC_SHA512, skey);
    hmac::verify(&key, canonical.as_bytes(), &sig).map_err(|_| 40103u32)
}

// ---------------------------------------------------------------------------------------------
// The fake Duo Auth API
// ---------------------------------------------------------------------------------------------

/// A request that passed the signature check.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    params: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// Requests refused with 401, and why (Duo code).
    refused: Vec<u32>,
    /// txid → (duo username, auth_status polls so far).
    txs: HashMap<String, (String, u32)>,
}

pub(crate) struct Fake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    polls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let polls = Arc::new(AtomicUsize::new(0));
        let (st, pl) = (state.clone(), polls.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (st, pl) = (st.clone(), pl.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (st, pl) = (st.clone(), pl.clone());
                        async move { Ok::<_, Infallible>(handle(req, st, pl).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            polls,
            task,
        }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub(crate) fn seen_paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }

    fn refused(&self) -> Vec<u32> {
        self.state.lock().unwrap().refused.clone()
    }

    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn ok(response: Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, json!({"stat": "OK", "response": response}))
}

fn fail(status: StatusCode, code: u32, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        json!({"stat": "FAIL", "code": code, "message": message}),
    )
}

fn devices(capabilities: &[&str]) -> Value {
    json!([{
        "device": "DPFZRS9FB0D46QFTM891",
        "type": "phone",
        "number": "XXX-XXX-0100",
        "name": "",
        "capabilities": capabilities,
    }])
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    polls: Arc<AtomicUsize>,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (date, authorization, content_type) = (
        header("date"),
        header("authorization"),
        header("content-type"),
    );
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return fail(StatusCode::BAD_REQUEST, 40000, "bad body"),
    };

    // Parameters: the query string for GET, the form body for POST (Duo's request format).
    let raw = match method.as_str() {
        "GET" => {
            if !body.is_empty() {
                return fail(StatusCode::BAD_REQUEST, 40000, "GET with a body");
            }
            query
        }
        "POST" => {
            if !query.is_empty() {
                return fail(StatusCode::BAD_REQUEST, 40000, "POST with a query string");
            }
            if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
                return fail(StatusCode::BAD_REQUEST, 40000, "POST must be a form");
            }
            String::from_utf8_lossy(&body).into_owned()
        }
        _ => return fail(StatusCode::METHOD_NOT_ALLOWED, 40500, "method"),
    };
    let Some(params) = parse_form(&raw) else {
        return fail(StatusCode::BAD_REQUEST, 40002, "Invalid request parameters");
    };

    // Every request: a fresh Date and a valid signature over exactly what was sent.
    let refuse = |code: u32, message: &str| {
        state.lock().unwrap().refused.push(code);
        fail(StatusCode::UNAUTHORIZED, code, message)
    };
    let Some(date) = date else {
        return refuse(40101, "Missing request credentials (no Date header)");
    };
    match parse_rfc2822(&date) {
        Some(t) if (t - now_unix()).abs() <= DATE_SKEW_SECS => {}
        _ => return refuse(40105, "Request date is invalid or too old"),
    }
    let Some(authorization) = authorization else {
        return refuse(40101, "Missing request credentials");
    };
    let canonical = duo_canonical(&date, &method, API_HOST, &path, &params);
    if let Err(code) = verify_authorization(&authorization, IKEY, SKEY.as_bytes(), &canonical) {
        return refuse(code, "Invalid signature in request credentials");
    }

    let map: HashMap<String, String> = params.iter().cloned().collect();
    state.lock().unwrap().seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        params: map.clone(),
    });
    let p = |k: &str| map.get(k).cloned().unwrap_or_default();

    match (method.as_str(), path.as_str()) {
        ("GET", "/auth/v2/ping") | ("GET", "/auth/v2/check") => ok(json!({"time": now_unix()})),
        ("POST", "/auth/v2/preauth") => {
            let user = p("username");
            match user.as_str() {
                "bypass" => ok(json!({"result": "allow", "status_msg": "Allowing unknown user"})),
                "blocked" => ok(json!({"result": "deny", "status_msg": "Login denied"})),
                "newbie" => ok(json!({
                    "result": "enroll",
                    "status_msg": "Enroll an authentication device to proceed",
                    "enroll_portal_url": "https://api-test1234.duosecurity.com/portal?code=x",
                })),
                "garbage" => Response::builder()
                    .status(StatusCode::OK)
                    .body(Full::new(Bytes::from_static(b"<html>proxy error</html>")))
                    .unwrap(),
                "failstat" => fail(StatusCode::OK, 40002, "Invalid request parameters"),
                "oddresult" => ok(json!({"result": "maybe"})),
                "phoneonly" => ok(json!({"result": "auth", "devices": devices(&["phone"])})),
                "tokenonly" => ok(json!({"result": "auth", "devices": devices(&["mobile_otp"])})),
                "" => fail(StatusCode::BAD_REQUEST, 40002, "Missing username"),
                _ => ok(json!({
                    "result": "auth",
                    "status_msg": "Account is active",
                    "devices": devices(&["auto", "push", "sms", "phone", "mobile_otp"]),
                })),
            }
        }
        ("POST", "/auth/v2/auth") => {
            let user = p("username");
            if p("async") != "1" || p("device") != "auto" {
                return fail(
                    StatusCode::BAD_REQUEST,
                    40002,
                    "expected async=1 and device=auto",
                );
            }
            if !matches!(p("factor").as_str(), "push" | "phone") {
                return fail(StatusCode::BAD_REQUEST, 40002, "factor");
            }
            if user == "broken" {
                return fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    50000,
                    "Internal server error",
                );
            }
            let mut st = state.lock().unwrap();
            let txid = format!("tx-{}-{}", user, st.txs.len());
            st.txs.insert(txid.clone(), (user, 0));
            ok(json!({"txid": txid}))
        }
        ("GET", "/auth/v2/auth_status") => {
            polls.fetch_add(1, Ordering::SeqCst);
            let txid = p("txid");
            let (user, n) = {
                let mut st = state.lock().unwrap();
                let Some(tx) = st.txs.get_mut(&txid) else {
                    return fail(StatusCode::BAD_REQUEST, 40002, "Invalid request parameters");
                };
                tx.1 += 1;
                (tx.0.clone(), tx.1)
            };
            let waiting = json!({"result": "waiting", "status": "pushed", "status_msg": "Pushed a login request to your device..."});
            let done = |result: &str, status: &str| {
                ok(json!({"result": result, "status": status, "status_msg": "done"}))
            };
            match user.as_str() {
                "forever" => ok(waiting),
                "denier" => done("deny", "deny"),
                "fraudster" => done("deny", "fraud"),
                "sleeper" => done("deny", "timeout"),
                "undelivered" => done("deny", "push_failed"),
                "lockedout" => done("deny", "locked_out"),
                "flaky" if n == 2 => fail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    50300,
                    "Service unavailable",
                ),
                _ if n <= 2 => ok(waiting),
                _ => done("allow", "allow"),
            }
        }
        _ => fail(StatusCode::NOT_FOUND, 40400, "Resource not found"),
    }
}

// ---------------------------------------------------------------------------------------------
// pfgate's side
// ---------------------------------------------------------------------------------------------

/// A secret key file in a fresh temp dir (removed on drop).
struct SecretFile(PathBuf);

impl SecretFile {
    fn new(content: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pfgate-duo-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("duo.skey");
        std::fs::write(&path, content).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Self(path)
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn settings(base_url: &str, secret: &SecretFile) -> DuoSettings {
    DuoSettings {
        api_host: API_HOST.into(),
        base_url: Some(base_url.into()),
        integration_key: IKEY.into(),
        secret_key_env: None,
        secret_key_file: Some(secret.0.clone()),
        username_template: None,
        factor: None,
        request_timeout_secs: Some(5),
        poll_interval_ms: Some(100),
        allow_bypass: None,
    }
}

fn provider_with(fake: &Fake, secret: &str, tweak: impl FnOnce(&mut DuoSettings)) -> DuoProvider {
    let file = SecretFile::new(secret);
    let mut s = settings(&fake.base_url(), &file);
    tweak(&mut s);
    assert_eq!(s.validate(), vec![]);
    s.build("duo").unwrap()
}

fn provider(fake: &Fake) -> DuoProvider {
    provider_with(fake, &format!("{SKEY}\n"), |_| {})
}

fn attempt(username: &str) -> AuthAttempt {
    AuthAttempt {
        request_id: "0123456789abcdef".into(),
        username: username.into(),
        user_group: String::new(),
        caller: "CONTOSO\\mimservice".into(),
        phone: E164::parse("1", "4255550100", "", "1").unwrap(),
        mode: Mode3::PhoneApp,
        application_name: "MIM".into(),
        initiating_ip: "203.0.113.7".into(),
        caller_ip: "127.0.0.1".parse().unwrap(),
        external_id: None,
        scripted: None,
    }
}

/// Authenticates through the `Provider` trait, bounded like the engine bounds it.
async fn auth(p: &dyn Provider, a: &AuthAttempt) -> Verdict {
    tokio::time::timeout(STEP, p.authenticate(a))
        .await
        .expect("the attempt ended within the step timeout")
}

async fn healthy(p: &dyn Provider) -> bool {
    tokio::time::timeout(STEP, p.healthy())
        .await
        .expect("check ended in time")
}

fn failed(v: &Verdict) -> &str {
    match v {
        Verdict::Failed(e) => e.detail(),
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_push_approved_after_two_waiting_polls() {
    let fake = Fake::start().await;
    let p = provider(&fake);
    let started = Instant::now();
    assert_eq!(auth(&p, &attempt("approver")).await, Verdict::Approved);
    assert!(fake.refused().is_empty(), "refused: {:?}", fake.refused());
    assert_eq!(
        fake.seen_paths(),
        [
            "/auth/v2/preauth",
            "/auth/v2/auth",
            "/auth/v2/auth_status",
            "/auth/v2/auth_status",
            "/auth/v2/auth_status"
        ]
    );
    assert_eq!(fake.polls(), 3);
    // Two waits of poll_interval_ms between three answers.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );

    let seen = fake.seen();
    let pre = &seen[0];
    assert_eq!(pre.method, "POST");
    assert_eq!(
        pre.params.get("username").map(String::as_str),
        Some("approver")
    );
    assert_eq!(
        pre.params.get("ipaddr").map(String::as_str),
        Some("203.0.113.7")
    );
    let a = &seen[1].params;
    assert_eq!(a["factor"], "push");
    assert_eq!(a["device"], "auto");
    assert_eq!(a["async"], "1");
    assert_eq!(a["ipaddr"], "203.0.113.7");
    assert_eq!(a["type"], "MIM");
    assert_eq!(a["pushinfo"], "from=MIM");
    assert_eq!(seen[2].method, "GET");
    assert!(seen[2].params["txid"].starts_with("tx-approver-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_preauth_results_map_without_a_push() {
    let fake = Fake::start().await;
    let p = provider(&fake);
    // A Duo bypass user: a bypass (not the person's approval), no /auth call; refused when
    // the settings say so.
    assert!(
        matches!(auth(&p, &attempt("bypass")).await, Verdict::Bypassed(r) if r.contains("Duo bypass")),
    );
    let strict = provider_with(&fake, &format!("{SKEY}\n"), |s| {
        s.allow_bypass = Some(false)
    });
    assert_eq!(auth(&strict, &attempt("bypass")).await, Verdict::Denied);
    // Denied by Duo policy, and not enrolled: denied (fail secure), no /auth call.
    assert_eq!(auth(&p, &attempt("blocked")).await, Verdict::Denied);
    assert_eq!(auth(&p, &attempt("newbie")).await, Verdict::Denied);
    // No device can take push or phone: nobody can be asked; denied, no /auth call.
    assert_eq!(auth(&p, &attempt("tokenonly")).await, Verdict::Denied);
    assert!(
        fake.seen_paths().iter().all(|p| p == "/auth/v2/preauth"),
        "{:?}",
        fake.seen_paths()
    );
    assert_eq!(fake.seen().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_person_answers_map_to_verdicts() {
    let fake = Fake::start().await;
    let p = provider(&fake);
    assert_eq!(auth(&p, &attempt("denier")).await, Verdict::Denied);
    assert_eq!(auth(&p, &attempt("fraudster")).await, Verdict::Denied);
    assert_eq!(auth(&p, &attempt("lockedout")).await, Verdict::Denied);
    assert_eq!(auth(&p, &attempt("sleeper")).await, Verdict::NotAnswered);
    // A push Duo could not deliver: the person was not asked, so another provider may try.
    let v = auth(&p, &attempt("undelivered")).await;
    assert!(failed(&v).contains("push could not be delivered"), "{v:?}");
    assert!(fake.refused().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_errors_are_failed_and_carry_no_secret() {
    let fake = Fake::start().await;
    let p = provider(&fake);
    let checks: [(&str, &str); 5] = [
        ("broken", "HTTP 500"),
        ("garbage", "malformed"),
        ("failstat", "FAIL 40002"),
        ("oddresult", "unknown result"),
        ("flaky", "HTTP 503"),
    ];
    for (user, expect) in checks {
        let v = auth(&p, &attempt(user)).await;
        let reason = failed(&v);
        assert!(reason.contains(expect), "{user}: {reason}");
        assert!(!reason.contains(SKEY), "{user}: {reason}");
        assert!(!reason.contains("Basic"), "{user}: {reason}");
    }
    assert!(fake.refused().is_empty(), "{:?}", fake.refused());
    // Debug output names no secret either.
    assert!(!format!("{p:?}").contains(SKEY));
}

/// pfgate holds the wrong secret: the fake sees a bad signature (401, 40103) on the first
/// request, and the attempt is Failed (so the router fails over), never a verdict about the person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_wrong_secret_is_failed() {
    let fake = Fake::start().await;
    let wrong = "0123456789012345678901234567890123456789";
    let p = provider_with(&fake, wrong, |_| {});
    let v = auth(&p, &attempt("approver")).await;
    let reason = failed(&v);
    assert!(
        reason.contains("401") && reason.contains("40103"),
        "{reason}"
    );
    assert!(!reason.contains(wrong), "{reason}");
    assert_eq!(fake.refused(), vec![40103]);
    assert!(fake.seen().is_empty());
    assert!(!healthy(&p).await);

    // The wrong integration key is refused as such.
    let p = provider_with(&fake, SKEY, |s| {
        s.integration_key = "DIWRONGWRONGWRONGWRO".into()
    });
    assert!(failed(&auth(&p, &attempt("approver")).await).contains("40102"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_username_template_maps_the_name_duo_sees() {
    let fake = Fake::start().await;
    // UPN → account name.
    let p = provider_with(&fake, SKEY, |s| s.username_template = Some("{user}".into()));
    assert_eq!(p.duo_username("approver@contoso.com"), "approver");
    assert_eq!(
        auth(&p, &attempt("approver@contoso.com")).await,
        Verdict::Approved
    );
    // Down-level name → another domain.
    let p = provider_with(&fake, SKEY, |s| {
        s.username_template = Some("{sam}@corp.example".into())
    });
    assert_eq!(auth(&p, &attempt("CONTOSO\\jdoe")).await, Verdict::Approved);
    // Default: as stored.
    let p = provider(&fake);
    assert_eq!(
        auth(&p, &attempt("CONTOSO\\Jane Doe")).await,
        Verdict::Approved
    );

    let users: Vec<String> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path != "/auth/v2/auth_status")
        .map(|s| s.params["username"].clone())
        .collect();
    assert_eq!(
        users,
        [
            "approver",
            "approver",
            "jdoe@corp.example",
            "jdoe@corp.example",
            "CONTOSO\\Jane Doe",
            "CONTOSO\\Jane Doe",
        ]
    );
    // The backslash, space and @ went through the signature's percent-encoding and verified.
    assert!(fake.refused().is_empty(), "{:?}", fake.refused());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_factor_follows_devices_and_settings() {
    let fake = Fake::start().await;
    // auto: a phone-only user gets a call (no push fields).
    let p = provider(&fake);
    assert_eq!(auth(&p, &attempt("phoneonly")).await, Verdict::Approved);
    let seen = fake.seen();
    let a = &seen
        .iter()
        .find(|s| s.path == "/auth/v2/auth")
        .unwrap()
        .params;
    assert_eq!(a["factor"], "phone");
    assert!(
        !a.contains_key("pushinfo") && !a.contains_key("type"),
        "{a:?}"
    );
    // push only: a phone-only user cannot be asked.
    let p = provider_with(&fake, SKEY, |s| s.factor = Some("push".into()));
    assert_eq!(auth(&p, &attempt("phoneonly")).await, Verdict::Denied);
    // phone only: a push-capable user is called.
    let p = provider_with(&fake, SKEY, |s| s.factor = Some("phone".into()));
    assert_eq!(auth(&p, &attempt("approver")).await, Verdict::Approved);
    let seen = fake.seen();
    let last = seen
        .iter()
        .rev()
        .find(|s| s.path == "/auth/v2/auth")
        .unwrap();
    assert_eq!(last.params["factor"], "phone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_initiating_ip_is_sent_only_when_it_is_an_ip() {
    let fake = Fake::start().await;
    let p = provider(&fake);
    let mut a = attempt("bypass");
    a.initiating_ip = "not an ip; DROP TABLE".into();
    assert!(matches!(auth(&p, &a).await, Verdict::Bypassed(_)));
    a.initiating_ip = " 2001:db8::7 ".into();
    assert!(matches!(auth(&p, &a).await, Verdict::Bypassed(_)));
    let seen = fake.seen();
    assert!(!seen[0].params.contains_key("ipaddr"));
    assert_eq!(seen[1].params["ipaddr"], "2001:db8::7");
}

/// The engine wraps the attempt in a timeout and drops it: polling must stop there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_deadline_stops_polling() {
    let fake = Fake::start().await;
    let p: Arc<dyn Provider> = Arc::new(provider(&fake));
    let a = attempt("forever");
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(1200), p.authenticate(&a)).await;
    assert!(r.is_err(), "the attempt should still be waiting: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let at_deadline = fake.polls();
    assert!(at_deadline >= 3, "polled {at_deadline} times");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        fake.polls(),
        at_deadline,
        "polling went on after the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_check_is_readiness() {
    let fake = Fake::start().await;
    let p = provider(&fake);
    assert!(healthy(&p).await);
    assert_eq!(fake.seen_paths(), ["/auth/v2/check"]);
    assert_eq!(fake.seen()[0].method, "GET");

    // Nothing listening: not ready, and an attempt is Failed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let file = SecretFile::new(SKEY);
    let p = settings(&format!("http://{closed}"), &file)
        .build("duo")
        .unwrap();
    assert!(!healthy(&p).await);
    let v = auth(&p, &attempt("approver")).await;
    assert!(failed(&v).contains("could not connect"), "{v:?}");
}

/// A server that accepts and never answers: `request_timeout_secs` ends each request as Failed
/// (well before an engine deadline would turn it into "not answered").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_unresponsive_server_is_failed_at_the_request_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let file = SecretFile::new(SKEY);
    let mut s = settings(&format!("http://{addr}"), &file);
    s.request_timeout_secs = Some(1);
    let p = s.build("duo").unwrap();
    let started = Instant::now();
    let v = auth(&p, &attempt("approver")).await;
    assert!(failed(&v).contains("no answer within 1 s"), "{v:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_settings_are_validated() {
    let file = SecretFile::new(SKEY);
    let base = settings("http://127.0.0.1:9", &file);
    assert_eq!(base.validate(), vec![]);
    let keys =
        |s: DuoSettings| -> Vec<String> { s.validate().into_iter().map(|(k, _)| k).collect() };

    let mut s = base.clone();
    s.base_url = Some("http://duo-relay.corp.example".into());
    assert_eq!(keys(s), ["base_url"]);
    let mut s = base.clone();
    s.base_url = None;
    assert_eq!(keys(s.clone()), Vec::<String>::new());
    assert_eq!(
        s.build("duo").unwrap().base_url(),
        "https://api-test1234.duosecurity.com/"
    );
    let mut s = base.clone();
    s.secret_key_env = Some("PFGATE_DUO_TEST_NEVER_SET".into());
    assert_eq!(keys(s), ["secret_key_env"]);
    let mut s = base.clone();
    s.secret_key_file = None;
    s.secret_key_env = Some("PFGATE_DUO_TEST_NEVER_SET".into());
    let problems = s.validate();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].1.contains("not set"), "{problems:?}");
    let mut s = base.clone();
    s.secret_key_file = None;
    assert_eq!(keys(s), ["secret_key_env"]);
    let empty = SecretFile::new("\n");
    let s = settings("http://127.0.0.1:9", &empty);
    assert_eq!(keys(s), ["secret_key_file"]);
    let mut s = base.clone();
    s.username_template = Some("{upn}".into());
    s.factor = Some("sms".into());
    assert_eq!(keys(s), ["username_template", "factor"]);

    // The configuration text: unknown keys are refused.
    let toml_ok = format!(
        "api_host = \"{API_HOST}\"\nintegration_key = \"{IKEY}\"\nsecret_key_file = \"/x\"\n\
         username_template = \"{{user}}\"\nfactor = \"push\"\n"
    );
    let parsed: DuoSettings = toml::from_str(&toml_ok).unwrap();
    assert_eq!(parsed.factor.as_deref(), Some("push"));
    assert!(toml::from_str::<DuoSettings>(&format!("{toml_ok}secret_key = \"inline\"\n")).is_err());
}

/// Issue #23 item 6, through the real binary: Duo's preauth `allow` answers `true` with
/// CallResult 7 "Bypassed Auth" and a `provider_bypass` audit event at WARN — it answered `true`
/// with 21, audited exactly like a push approval — and a provider with `allow_bypass = false`
/// refuses it (150). Two providers on the one Duo fake, routed by group; the template gives both
/// users the Duo username "bypass".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duo_bypass_is_its_own_outcome_and_audit_event_and_can_be_refused() {
    let fake = Fake::start().await;
    let dir = crate::cli::temp_dir("duo-bypass");
    std::fs::write(dir.join("duo.skey"), format!("{SKEY}\n")).unwrap();
    std::fs::write(
        dir.join("users.toml"),
        "[[users]]\nusername = \"bypass@contoso.com\"\ngroup = \"Open\"\ncountry_code = \"1\"\n\
         phone = \"4255550100\"\nmode = \"phoneApp\"\n\
         [[users]]\nusername = \"bypass@fabrikam.com\"\ngroup = \"Strict\"\ncountry_code = \"1\"\n\
         phone = \"4255550101\"\nmode = \"phoneApp\"\n",
    )
    .unwrap();
    let duo = |name: &str, extra: &str| {
        format!(
            "[providers.{name}]\nkind = \"duo\"\napi_host = \"{API_HOST}\"\nbase_url = \"{}\"\n\
             integration_key = \"{IKEY}\"\nsecret_key_file = \"duo.skey\"\n\
             username_template = \"{{user}}\"\npoll_interval_ms = 100\n{extra}",
            fake.base_url()
        )
    };
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
             [directory]\nusers_file = \"users.toml\"\n{}{}\
             [[routes]]\nmatch_group = \"Strict\"\nproviders = [\"strict\"]\n\
             [[routes]]\nproviders = [\"duo\"]\n",
            duo("duo", ""),
            duo("strict", "allow_bypass = false\n")
        ),
    )
    .unwrap();
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let cfg = config.display().to_string();
    let served = tokio::task::spawn_blocking(move || {
        crate::cli::spawn_serve_env(
            &["serve", "--config", &cfg],
            1,
            std::process::Stdio::from(file),
            &[],
        )
    })
    .await
    .unwrap();
    let addr = crate::cli::plain_addr(&served);

    assert_eq!(
        crate::providers_fail_modes::auth4(&addr, "bypass@contoso.com").await,
        ("true".into(), "7".into())
    );
    let line = crate::reload::wait_for_log(&log, &["pfgate::audit", "provider_bypass"], 1);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("Duo bypass"), "{line}");
    assert_eq!(
        crate::providers_fail_modes::auth4(&addr, "bypass@fabrikam.com").await,
        ("false".into(), "150".into())
    );
    assert!(
        fake.seen_paths().iter().all(|p| p == "/auth/v2/preauth"),
        "no push was sent: {:?}",
        fake.seen_paths()
    );
    let status = crate::cli::sigterm_and_wait(served.child);
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
