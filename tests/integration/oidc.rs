//! The OpenID Connect step-up provider end to end (issue #10), against a real, certified OpenID
//! Connect provider (panva's `oidc-provider`, `tests/oidc/op.mjs`, run with the machine's Node.js)
//! and a real browser (Debian's Chromium, driven by `tests/oidc/drive.mjs` through playwright-core).
//!
//! pfgate delivers the link through its webhook channel to a receiver in this test (a real local
//! HTTP server); the browser opens it, signs in at the OP, and the SOAP call that was waiting all
//! along answers. Each test starts its own OP, pfgate and receiver.
//!
//! The OP's login form decides whether a sign-in is multi-factor (a one-time code "123456" puts
//! `mfa` in `amr`; none leaves `amr` ["pwd"]); with `--rogue-jwks` its JWKS publishes a key other
//! than the one it signs with.
//!
//! A missing tool (node, the npm packages, chromium, Mono) skips with a `SKIP` line, unless
//! `PFGATE_REQUIRE_INTEROP=1` (`.ci/run`), which makes it a failure.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pfgate::config::{ProviderSettings, Settings};
use pfgate::providers::oidc::delivery::{SmsChannel, WebhookChannel};
use pfgate::providers::oidc::smtp::EmailChannel;
use pfgate::providers::oidc::OidcSettings;
use pfgate::providers::router::{FailMode, RouteSettings};
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};

use crate::support::*;

const CLIENT_ID: &str = "pfgate-stepup";
const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";
/// The OP's one-time code that makes a sign-in multi-factor.
const OTP: &str = "123456";
/// How long any single step may take before the test fails (not a timing assertion: a bound).
const STEP: Duration = Duration::from_secs(60);

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// node, the npm packages (`npm ci` in tests/oidc) and chromium; Mono too when `mono` is asked.
fn tools_present(test: &str, mono: bool) -> bool {
    let mut missing = Vec::new();
    for t in ["node", "chromium"] {
        if !have(t) {
            missing.push(t.to_string());
        }
    }
    if !oidc_dir().join("node_modules/oidc-provider").is_dir()
        || !oidc_dir().join("node_modules/playwright-core").is_dir()
    {
        missing.push("tests/oidc/node_modules (npm ci)".into());
    }
    if mono {
        for t in ["mono", "mcs", "wsdl"] {
            if !have(t) {
                missing.push(t.to_string());
            }
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{test}: missing {missing:?} (PFGATE_REQUIRE_INTEROP=1)"
    );
    pfgate::testing::test_skips::skip(
        pfgate::testing::test_skips::Needs::Oidc,
        test,
        &format!("missing {missing:?}"),
    );
    false
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago (the OP must know pfgate's redirect URI before pfgate starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the OP with `extra` options (`--rogue-jwks`, `--auth-time-offset N`); returns it and
/// its issuer.
fn start_op(redirect_uri: &str, extra: &[&str]) -> (Child, String) {
    let mut cmd = Command::new("node");
    cmd.current_dir(oidc_dir())
        .arg("op.mjs")
        .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args(["--redirect-uri", redirect_uri])
        .args(extra);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut issuer = None;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        if let Some(i) = line.trim().strip_prefix("listening on ") {
            issuer = Some(i.to_string());
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || for _ in reader.lines().map_while(Result::ok) {});
    (Child(child), issuer.expect("the OP printed its issuer"))
}

/// The webhook channel's receiver: every JSON body POSTed to it.
struct Receiver {
    url: String,
    rx: Mutex<mpsc::UnboundedReceiver<Value>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let tx = Arc::new(tx);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let (ctype, auth) = (header("content-type"), header("authorization"));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            // JSON (the webhook channel) as sent; a form (Twilio's Messages API)
                            // as an object of its fields, with the path and Authorization header.
                            let msg = if ctype.starts_with("application/x-www-form-urlencoded") {
                                let mut m: serde_json::Map<String, Value> =
                                    url::form_urlencoded::parse(&body)
                                        .map(|(k, v)| (k.into_owned(), Value::from(v.into_owned())))
                                        .collect();
                                m.insert("_path".into(), path.into());
                                m.insert("_authorization".into(), auth.into());
                                Value::Object(m)
                            } else {
                                serde_json::from_slice(&body).unwrap_or(Value::Null)
                            };
                            let _ = tx.send(msg);
                            let mut resp = http::Response::new(Full::new(Bytes::from_static(
                                b"{\"sid\":\"SM00000000000000000000000000000000\",\"status\":\"queued\"}",
                            )));
                            *resp.status_mut() = http::StatusCode::CREATED;
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            rx: Mutex::new(rx),
        }
    }

    /// The next delivered message.
    async fn next(&self) -> Value {
        tokio::time::timeout(STEP, self.rx.lock().await.recv())
            .await
            .expect("a step-up link was delivered")
            .unwrap()
    }
}

struct Env {
    _op: Child,
    server: TestServer,
    hook: Receiver,
    stepup_url: String,
}

async fn env(link_ttl: Option<u64>, rogue_jwks: bool) -> Env {
    env_with(link_ttl, rogue_jwks, Via::Webhook).await
}

/// The delivery channel a test configures.
enum Via {
    Webhook,
    /// Twilio's Messages API, played by the receiver.
    Sms,
    /// SMTP with STARTTLS: the fake server's port and CA file.
    Email(u16, PathBuf),
}

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token-for-the-oidc-test";

/// With `sms`, the link goes through Twilio's Messages API (the receiver plays Twilio) instead of
/// the webhook channel.
async fn env_with(link_ttl: Option<u64>, rogue_jwks: bool, via: Via) -> Env {
    env_custom(link_ttl, rogue_jwks, via, |_, _| {}).await
}

/// As [`env_with`], with `customize` given the settings (the oidc provider's among them) and the
/// test's directory before pfgate starts.
async fn env_custom(
    link_ttl: Option<u64>,
    rogue_jwks: bool,
    via: Via,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> Env {
    let op_args: &[&str] = if rogue_jwks { &["--rogue-jwks"] } else { &[] };
    env_op(link_ttl, op_args, via, customize).await
}

/// As [`env_custom`], with the OP started with `op_args`.
async fn env_op(
    link_ttl: Option<u64>,
    op_args: &[&str],
    via: Via,
    customize: impl FnOnce(&mut Settings, &std::path::Path),
) -> Env {
    let port = free_port();
    let stepup_url = format!("http://127.0.0.1:{port}");
    let (op, issuer) = start_op(&format!("{stepup_url}/stepup/callback"), op_args);
    let hook = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("pfgate-oidc-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("client.secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.providers = vec![(
        "entra".into(),
        ProviderSettings::Oidc(Box::new(OidcSettings {
            issuer,
            client_id: CLIENT_ID.into(),
            client_secret_file: Some(secret),
            public_url: stepup_url.clone(),
            listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
            link_ttl_secs: link_ttl,
            webhook: matches!(via, Via::Webhook).then(|| WebhookChannel {
                url: format!("{}/hooks/stepup", hook.url),
                ..WebhookChannel::default()
            }),
            sms: matches!(via, Via::Sms).then(|| {
                let token = dir.join("twilio.token");
                std::fs::write(&token, AUTH_TOKEN).unwrap();
                SmsChannel {
                    account_sid: ACCOUNT_SID.into(),
                    auth_token_file: Some(token),
                    from: Some("+15005550006".into()),
                    base_url: Some(hook.url.clone()),
                    ..SmsChannel::default()
                }
            }),
            email: match &via {
                Via::Email(port, ca) => {
                    let pw = dir.join("smtp.password");
                    std::fs::write(&pw, format!("{SMTP_PASSWORD}\n")).unwrap();
                    Some(EmailChannel {
                        host: "localhost".into(),
                        port: Some(*port),
                        from: "mfa@contoso.com".into(),
                        ca_file: Some(ca.clone()),
                        username: Some(SMTP_USER.into()),
                        password_file: Some(pw),
                        ..EmailChannel::default()
                    })
                }
                _ => None,
            },
            ..OidcSettings::default()
        })),
    )];
    settings.routes = vec![RouteSettings {
        providers: vec!["entra".into()],
        ..RouteSettings::default()
    }];
    customize(&mut settings, &dir);
    let server = TestServer::start(settings).await;
    Env {
        _op: op,
        server,
        hook,
        stepup_url,
    }
}

/// `PfAuthUser_5` for `user` (MIM's call: application "MIM", the person at 10.0.0.5), answered
/// as (result, CallResult code).
async fn pf5(c: &Client, user: &str) -> (String, String) {
    pf5_from(c, user, "MIM", "10.0.0.5").await
}

/// As [`pf5`], with the caller's `applicationName` and `initiatingIpAddress` (XML-escaped here).
async fn pf5_from(c: &Client, user: &str, application: &str, ip: &str) -> (String, String) {
    let x = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let (application, ip) = (x(application), x(ip));
    let inner = format!(
        "<PfAuthUser_5 xmlns=\"{NS}\"><username>{user}</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType><initiatingIpAddress>{ip}</initiatingIpAddress><applicationName>{application}</applicationName><requireUserMatch>false</requireUserMatch><mode>voiceCall</mode><countryCode>1</countryCode><phoneNumber>4255550100</phoneNumber><extension></extension></PfAuthUser_5>"
    );
    let r = c
        .soap11(Some(&action("PfAuthUser_5")), &env11(&inner))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = parse_xml(&r.body);
    let result = doc
        .descendants()
        .find(|n| n.has_tag_name("PfAuthUser_5Result"))
        .and_then(|n| n.text())
        .unwrap_or("")
        .to_string();
    let code = doc
        .descendants()
        .find(|n| n.has_tag_name("callResult"))
        .and_then(|n| n.children().find(|c| c.has_tag_name("Code")))
        .and_then(|n| n.text())
        .unwrap_or("")
        .to_string();
    (result, code)
}

/// Runs the browser on `link`; its JSON report.
async fn drive(link: &str, action: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.current_dir(oidc_dir())
        .arg("drive.mjs")
        .args([link, action])
        .args(extra);
    let out = crate::interop::run(cmd, STEP).await;
    assert!(out.success(), "{}", out.report());
    let line = out.stdout.lines().last().unwrap_or("").to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {}", out.report()))
}

/// Starts a `PfAuthUser_5`, takes the delivered link, runs the browser with `action`; the SOAP
/// answer, the browser's report and the delivered message.
async fn step_up(
    e: &Env,
    user: &str,
    action: &str,
    extra: &[&str],
) -> ((String, String), Value, Value) {
    let c = e.server.client();
    let u = user.to_string();
    let call = tokio::spawn(async move { pf5(&c, &u).await });
    let msg = e.hook.next().await;
    let link = msg["link"].as_str().unwrap().to_string();
    let report = drive(&link, action, extra).await;
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    (answer, report, msg)
}

/// A refused step-up: the browser was shown "denied" for a reason containing `reason`, and the
/// waiting SOAP call answered false with CallResult 150.
fn assert_refused(answer: &(String, String), report: &Value, reason: &str) {
    assert_eq!(report["outcome"], "denied", "{report}");
    assert!(
        report["reason"].as_str().unwrap_or("").contains(reason),
        "{report}"
    );
    assert_eq!(*answer, ("false".to_string(), "150".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_mfa_sign_in_approves_pending_call_and_link_is_single_use() {
    if !tools_present("oidc_mfa_sign_in", false) {
        return;
    }
    let e = env(None, false).await;
    let (answer, report, msg) = step_up(
        &e,
        "alice@contoso.com",
        "continue",
        &["--otp", OTP, "--replay"],
    )
    .await;
    // The delivered message: the link on pfgate's step-up listener, and nothing else secret.
    let link = msg["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/stepup/l/", e.stepup_url)),
        "{msg}"
    );
    assert_eq!(
        link.len() - link.rfind('/').unwrap() - 1,
        43,
        "256-bit token"
    );
    assert!(msg["text"].as_str().unwrap().contains(link), "{msg}");
    assert_eq!(msg["username"], "alice@contoso.com");
    // The page showed what the SOAP call said, with the headers the pages promise.
    assert_eq!(report["application"], "MIM", "{report}");
    assert_eq!(report["ip"], "10.0.0.5", "{report}");
    assert_eq!(report["user"], "alice@contoso.com", "{report}");
    assert_eq!(report["cache_control"], "no-store");
    assert_eq!(report["referrer_policy"], "no-referrer");
    assert!(
        report["csp"]
            .as_str()
            .unwrap()
            .starts_with("default-src 'none'"),
        "{report}"
    );
    assert_eq!(report["outcome"], "approved", "{report}");
    assert_eq!(answer, ("true".into(), "21".into()));
    // The callback URL replayed: refused.
    assert_eq!(report["replay_status"], 400, "{report}");
    assert_eq!(report["replay_outcome"], "expired", "{report}");
    // The link opened again after use: gone.
    let again = drive(link, "open", &[]).await;
    assert_eq!(again["start_status"], 410, "{again}");
    assert_eq!(again["outcome"], "expired", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refusals_no_mfa_wrong_user_deny_and_fraud() {
    if !tools_present("oidc_refusals", false) {
        return;
    }
    let e = env(None, false).await;
    // A sign-in without MFA (amr ["pwd"]): denied, 150.
    let (answer, report, _) = step_up(&e, "alice@contoso.com", "continue", &[]).await;
    assert_refused(&answer, &report, "multi-factor");
    // Signed in (with MFA) as someone else: denied.
    let (answer, report, _) = step_up(
        &e,
        "alice@contoso.com",
        "continue",
        &["--user", "bob@contoso.com", "--otp", OTP],
    )
    .await;
    assert_refused(&answer, &report, "different user");
    // "Deny" on the page.
    let (answer, report, _) = step_up(&e, "alice@contoso.com", "deny", &[]).await;
    assert_refused(&answer, &report, "You denied");
    // "This wasn't me": fraud, 112.
    let (answer, report, _) = step_up(&e, "alice@contoso.com", "fraud", &[]).await;
    assert_eq!(report["outcome"], "fraud", "{report}");
    assert_eq!(answer, ("false".into(), "112".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_token_signed_with_unknown_key_is_refused() {
    if !tools_present("oidc_unknown_key", false) {
        return;
    }
    let e = env(None, true).await;
    let (answer, report, _) = step_up(&e, "alice@contoso.com", "continue", &["--otp", OTP]).await;
    assert_eq!(report["outcome"], "denied", "{report}");
    assert_eq!(
        report["reason"], "The sign-in could not be verified.",
        "{report}"
    );
    assert_eq!(answer, ("false".into(), "150".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_expired_link_times_out_the_call() {
    if !tools_present("oidc_expired_link", false) {
        return;
    }
    let e = env(Some(1), false).await;
    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let msg = e.hook.next().await;
    // The link expires unopened: the call ends as not answered.
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("false".into(), "11".into()));
    let report = drive(msg["link"].as_str().unwrap(), "open", &[]).await;
    assert_eq!(report["start_status"], 410, "{report}");
    assert_eq!(report["outcome"], "expired", "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tampered_state_and_forged_forms_are_refused() {
    if !tools_present("oidc_tampered", false) {
        return;
    }
    let e = env(None, false).await;
    let http = reqwest_like();
    // A callback with a state pfgate never issued.
    let (status, body) = get(
        &http,
        &format!("{}/stepup/callback?code=x&state=forged", e.stepup_url),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("data-outcome=\"expired\""), "{body}");
    // A callback without state.
    let (status, _) = get(&http, &format!("{}/stepup/callback?code=x", e.stepup_url)).await;
    assert_eq!(status, 400);
    // A guessed link.
    let (status, _) = get(
        &http,
        &format!("{}/stepup/l/{}", e.stepup_url, "A".repeat(43)),
    )
    .await;
    assert_eq!(status, 410);
    // A real link, posted without its CSRF token: refused, and the link survives for the person.
    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let msg = e.hook.next().await;
    let link = msg["link"].as_str().unwrap().to_string();
    let (status, _) = post_form(&http, &link, "action=continue&csrf=forged").await;
    assert_eq!(status, 403);
    let report = drive(&link, "continue", &["--otp", OTP]).await;
    assert_eq!(report["outcome"], "approved", "{report}");
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("true".into(), "21".into()));
}

/// A plain HTTP client for the hostile requests (no browser: no cookies, no redirects).
fn reqwest_like() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let resp = c.get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post_form(c: &reqwest::Client, url: &str, form: &str) -> (u16, String) {
    let resp = c
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The issue's end-to-end test: MIM's proxy (a wsdl-generated Mono `SoapHttpClientProtocol`)
/// calls `PfAuthUser_5`, the person signs in with MFA in the browser, and the proxy's pending
/// call returns true with CallResult 21.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_mono_proxy_pending_pfauthuser5_returns_true() {
    if !tools_present("oidc_mono_proxy", true) {
        return;
    }
    mono_proxy_approves_alice(&env(None, false).await, "mono").await;
}

/// MIM's proxy (Mono, `auth.exe`) calls `PfAuthUser_5` for alice; the delivered link is signed in
/// with MFA in the browser; the proxy's pending call must return `true 21`.
async fn mono_proxy_approves_alice(e: &Env, tag: &str) {
    let dir = std::env::temp_dir().join(format!("pfgate-oidc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    crate::providers_e2e::build_auth_exe(&dir).await;
    let (url, fp) = (e.server.url(), e.server.fingerprint());
    let d = dir.clone();
    let mono = tokio::task::spawn_blocking(move || {
        Command::new("mono")
            .current_dir(&d)
            .args(["auth.exe", &url, &fp, "5:alice@contoso.com:1:4255550100"])
            .output()
            .unwrap()
    });
    let msg = e.hook.next().await;
    let report = drive(msg["link"].as_str().unwrap(), "continue", &["--otp", OTP]).await;
    assert_eq!(report["outcome"], "approved", "{report}");
    let out = tokio::time::timeout(STEP, mono).await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true 21");
}

/// The SMS channel: Twilio's Messages API (played by the receiver) gets the link for the user's
/// number, authenticated as Twilio's documented HTTP Basic; the texted link works like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_link_by_sms_through_twilio_messages() {
    if !tools_present("oidc_sms", false) {
        return;
    }
    let e = env_with(None, false, Via::Sms).await;
    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let msg = e.hook.next().await;
    assert_eq!(
        msg["_path"],
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    assert_eq!(msg["_authorization"], format!("Basic {basic}"));
    assert_eq!(msg["To"], "+14255550100");
    assert_eq!(msg["From"], "+15005550006");
    let body = msg["Body"].as_str().unwrap();
    let link = body
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/stepup/l/", e.stepup_url)))
        .unwrap_or_else(|| panic!("no link in {body:?}"));
    let report = drive(link, "continue", &["--otp", OTP]).await;
    assert_eq!(report["outcome"], "approved", "{report}");
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("true".into(), "21".into()));
}

const SMTP_USER: &str = "pfgate-relay";
const SMTP_PASSWORD: &str = "smtp-password-for-the-oidc-test";

/// A submission server speaking SMTP (RFC 5321) with STARTTLS (RFC 3207): it refuses mail before
/// TLS, offers `AUTH PLAIN` only after it, checks the credentials, and hands each accepted
/// message (envelope and data) to the test.
struct SmtpFake {
    port: u16,
    ca: PathBuf,
    rx: Mutex<mpsc::UnboundedReceiver<(String, String, String)>>,
}

impl SmtpFake {
    async fn start(dir: &std::path::Path) -> Self {
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let ca = dir.join("smtp-ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(ck.cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = smtp_session(stream, acceptor, tx).await;
                });
            }
        });
        Self {
            port,
            ca,
            rx: Mutex::new(rx),
        }
    }

    async fn next(&self) -> (String, String, String) {
        tokio::time::timeout(STEP, self.rx.lock().await.recv())
            .await
            .expect("a message was submitted")
            .unwrap()
    }
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::UnboundedSender<(String, String, String)>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut plain = BufReader::new(stream);
    plain
        .get_mut()
        .write_all(b"220 fake.test ESMTP\r\n")
        .await?;
    let mut line = String::new();
    // Before TLS: EHLO and STARTTLS only.
    loop {
        line.clear();
        if plain.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if cmd.starts_with("EHLO") {
            b"250-fake.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n"
        } else if cmd == "STARTTLS" {
            plain.get_mut().write_all(b"220 go ahead\r\n").await?;
            break;
        } else {
            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        };
        plain.get_mut().write_all(answer).await?;
    }
    let tls = acceptor.accept(plain.into_inner()).await?;
    let mut s = BufReader::new(tls);
    let (mut authed, mut from, mut to) = (false, String::new(), String::new());
    loop {
        line.clear();
        if s.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let raw = line.trim_end().to_string();
        let cmd = raw.to_ascii_uppercase();
        let answer: String = if cmd.starts_with("EHLO") {
            "250-fake.test\r\n250 AUTH PLAIN\r\n".into()
        } else if let Some(b64) = raw.strip_prefix("AUTH PLAIN ") {
            use base64::Engine as _;
            let want = format!("\0{SMTP_USER}\0{SMTP_PASSWORD}");
            let got = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            authed = got == want.as_bytes();
            if authed {
                "235 ok\r\n"
            } else {
                "535 bad credentials\r\n"
            }
            .into()
        } else if !authed {
            "530 authentication required\r\n".into()
        } else if let Some(a) = cmd.strip_prefix("MAIL FROM:") {
            from = a.trim_matches(['<', '>']).to_ascii_lowercase();
            "250 ok\r\n".into()
        } else if let Some(a) = cmd.strip_prefix("RCPT TO:") {
            to = a.trim_matches(['<', '>']).to_ascii_lowercase();
            "250 ok\r\n".into()
        } else if cmd == "DATA" {
            s.get_mut().write_all(b"354 go on\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let _ = tx.send((from.clone(), to.clone(), data));
            "250 queued\r\n".into()
        } else if cmd == "QUIT" {
            s.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 not implemented\r\n".into()
        };
        s.get_mut().write_all(answer.as_bytes()).await?;
    }
}

/// The e-mail channel: the link is submitted over SMTP only after STARTTLS, to the verified
/// server, authenticated; the mailed link works like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_link_by_email_over_smtp_starttls() {
    if !tools_present("oidc_email", false) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pfgate-oidc-smtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let smtp = SmtpFake::start(&dir).await;
    let e = env_with(None, false, Via::Email(smtp.port, smtp.ca.clone())).await;
    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let (from, to, data) = smtp.next().await;
    assert_eq!(from, "mfa@contoso.com");
    assert_eq!(to, "alice@contoso.com");
    assert!(data.contains("To: <alice@contoso.com>\r\n"), "{data}");
    assert!(data.contains("Subject: Confirm your sign-in\r\n"), "{data}");
    let link = data
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{}/stepup/l/", e.stepup_url)))
        .unwrap_or_else(|| panic!("no link in {data:?}"))
        .to_string();
    let report = drive(&link, "continue", &["--otp", OTP]).await;
    assert_eq!(report["outcome"], "approved", "{report}");
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("true".into(), "21".into()));
}

/// The OP's `oid` of alice (tests/oidc/op.mjs), as Entra sends object ids: lower case.
const ALICE_OID: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

/// pfgate with `username_claim = "oid"` (so `match` defaults to `external_id`) and a users file
/// holding: alice with the OP's oid of alice in upper case, bob with an oid that is not the OP's
/// bob's, carol with none.
async fn env_oid() -> Env {
    env_custom(None, false, Via::Webhook, |settings, dir| {
        let users = dir.join("users.toml");
        std::fs::write(
            &users,
            format!(
                "[[users]]\nusername = \"alice@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n\
                 external_id = \"{}\"\n\
                 [[users]]\nusername = \"bob@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n\
                 external_id = \"00000000-0000-0000-0000-0000000000b0\"\n\
                 [[users]]\nusername = \"carol@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n",
                ALICE_OID.to_ascii_uppercase()
            ),
        )
        .unwrap();
        settings.directory = pfgate::config::DirectorySource::File(users);
        for (_, p) in &mut settings.providers {
            if let ProviderSettings::Oidc(o) = p {
                o.username_claim = Some("oid".into());
            }
        }
    })
    .await
}

/// `oid` mapped through the store, with MIM's Mono proxy: alice's stored external id is the OP's
/// `oid` of alice in another letter case; her MFA sign-in approves the pending `PfAuthUser_5`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_oid_mapped_through_the_store_mono_proxy_returns_true() {
    if !tools_present("oidc_oid_mono_proxy", true) {
        return;
    }
    mono_proxy_approves_alice(&env_oid().await, "oid-mono").await;
}

/// `oid` mapped through the store, over SOAP: the right person approves (21); a person whose
/// `oid` is not the one stored for the user is refused (150) even though their
/// `preferred_username` is the username; the account of another person is refused; a user with
/// no stored external id is refused at once (150) and no link is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_oid_mismatch_and_missing_external_id_are_refused() {
    if !tools_present("oidc_oid_refusals", false) {
        return;
    }
    let e = env_oid().await;
    let (answer, report, _) = step_up(&e, "alice@contoso.com", "continue", &["--otp", OTP]).await;
    assert_eq!(report["outcome"], "approved", "{report}");
    assert_eq!(answer, ("true".into(), "21".into()));
    // bob signs in as bob, with MFA: his preferred_username is his pfgate username, but his oid
    // is not the external id stored for him.
    let (answer, report, _) = step_up(
        &e,
        "bob@contoso.com",
        "continue",
        &["--user", "bob@contoso.com", "--otp", OTP],
    )
    .await;
    assert_refused(&answer, &report, "different user");
    // alice's link, signed in (with MFA) as bob: refused.
    let (answer, report, _) = step_up(
        &e,
        "alice@contoso.com",
        "continue",
        &["--user", "bob@contoso.com", "--otp", OTP],
    )
    .await;
    assert_eq!(report["outcome"], "denied", "{report}");
    assert_eq!(answer, ("false".into(), "150".into()));
    // carol has no external id: refused without a link (none could ever match).
    let answer = tokio::time::timeout(STEP, pf5(&e.server.client(), "carol@contoso.com"))
        .await
        .unwrap();
    assert_eq!(answer, ("false".into(), "150".into()));
    assert!(
        e.hook.rx.lock().await.try_recv().is_err(),
        "no link was delivered for a user without an external id"
    );
}

/// The step-up listener over TLS (`tls_cert`/`tls_key`), as it runs anywhere but on loopback:
/// the delivered link is `https://`, a client that trusts the certificate gets the page (with the
/// application and the caller's IP), one that does not trust it gets no page, plain HTTP on the
/// TLS port gets no page, and the person's "Deny" posted over TLS ends the waiting call (150).
/// No browser: the sign-in itself is the same code as over plain HTTP (tested above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_step_up_listener_over_tls() {
    if !tools_present("oidc_step_up_listener_over_tls", false) {
        return;
    }
    let mut cert_pem = String::new();
    let e = env_custom(None, false, Via::Webhook, |s, dir| {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        cert_pem = c.cert.pem();
        let (cert, key) = (dir.join("stepup-cert.pem"), dir.join("stepup-key.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        let ProviderSettings::Oidc(o) = &mut s.providers[0].1 else {
            panic!("the oidc provider")
        };
        let port = o.listen.unwrap().port();
        o.public_url = format!("https://localhost:{port}");
        o.tls_cert = Some(cert);
        o.tls_key = Some(key);
    })
    .await;
    let port: u16 = e.stepup_url.rsplit(':').next().unwrap().parse().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let trusting = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve("localhost", addr)
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let untrusting = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", addr)
        .tls_certs_only([reqwest::Certificate::from_pem(
            rcgen::generate_simple_self_signed(vec!["localhost".into()])
                .unwrap()
                .cert
                .pem()
                .as_bytes(),
        )
        .unwrap()])
        .build()
        .unwrap();

    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let msg = e.hook.next().await;
    let link = msg["link"].as_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!("https://localhost:{port}/stepup/l/")),
        "{link}"
    );

    // Plain HTTP on the TLS port, and a client that does not trust the certificate: no page.
    let plain = reqwest_like()
        .get(format!("http://127.0.0.1:{port}/stepup/l/x"))
        .send()
        .await;
    assert!(
        plain.as_ref().map(|r| r.status() != 200).unwrap_or(true),
        "plain HTTP on the TLS port answered 200"
    );
    assert!(
        untrusting.get(&link).send().await.is_err(),
        "a client that does not trust the step-up certificate got an answer"
    );

    // The person's page over TLS, then "Deny" with the page's CSRF token.
    let page = deny_without_browser(&trusting, &link).await;
    assert!(page.contains("MIM") && page.contains("10.0.0.5"), "{page}");
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("false".into(), "150".into()));
}

/// What the person's "Deny" does, without a browser: opens the link (200), posts the form with
/// the page's CSRF token (200). Returns the page the link showed.
async fn deny_without_browser(http: &reqwest::Client, link: &str) -> String {
    let (page, csrf) = open_link(http, link).await;
    let (status, _) = post_form(http, link, &format!("action=deny&csrf={csrf}")).await;
    assert_eq!(status, 200);
    page
}

/// Opens a link without a browser (200): the page and its CSRF token.
async fn open_link(http: &reqwest::Client, link: &str) -> (String, String) {
    let (status, page) = get(http, link).await;
    assert_eq!(status, 200, "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_string();
    (page, csrf)
}

/// What a link holder without IdP credentials can do (issue #23 item 1): open the link, press
/// "Continue" (the page's CSRF token; the browser-binding cookie pfgate sets), skip the IdP, and
/// send pfgate's callback the flow's own `state` with a code the IdP never issued. The IdP's token
/// endpoint answers 400 `invalid_grant`. Returns the callback's status and page.
async fn link_holder_bogus_callback(http: &reqwest::Client, e: &Env, link: &str) -> (u16, String) {
    let (_, csrf) = open_link(http, link).await;
    let resp = http
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("action=continue&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "Continue redirects to the IdP");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let location = url::Url::parse(&header("location")).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the authorization request's state");
    let cookie = header("set-cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let resp = http
        .get(format!(
            "{}/stepup/callback?code=garbage&state={state}",
            e.stepup_url
        ))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// One authentication answered by a link holder's bogus callback: the SOAP answer and the page.
async fn answered_by_bogus_callback(e: &Env) -> ((String, String), String) {
    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let msg = e.hook.next().await;
    let link = msg["link"].as_str().unwrap().to_string();
    let (_, page) = link_holder_bogus_callback(&reqwest_like(), e, &link).await;
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    (answer, page)
}

/// Issue #23 item 1, a `fail_mode = "safe"` route: a link holder's bogus code is a denial (150),
/// never a provider failure that fails open (it answered `true`/7 with a `fail_open` event while
/// the page said "not confirmed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_bogus_code_on_a_safe_route_is_denied_not_failed_open() {
    if !tools_present("oidc_bogus_code_safe_route", false) {
        return;
    }
    let e = env_custom(None, false, Via::Webhook, |s, _| {
        s.routes[0].fail_mode = FailMode::Safe;
    })
    .await;
    let (answer, page) = answered_by_bogus_callback(&e).await;
    assert!(page.contains("data-outcome=\"denied\""), "{page}");
    assert_eq!(answer, ("false".into(), "150".into()));
}

/// Issue #23 item 1, a route `["entra", "hook"]`: a link holder's bogus code does not fail over to
/// the next provider (here the scripted one, which approves alice's number: it answered `true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_bogus_code_does_not_fail_over_to_the_next_provider() {
    if !tools_present("oidc_bogus_code_no_failover", false) {
        return;
    }
    let e = env_custom(None, false, Via::Webhook, |s, _| {
        s.providers
            .push(("hook".into(), ProviderSettings::Scripted));
        s.routes[0].providers = vec!["entra".into(), "hook".into()];
    })
    .await;
    let (answer, _) = answered_by_bogus_callback(&e).await;
    assert_eq!(answer, ("false".into(), "150".into()));
}

/// Issue #23 items 1 and 2, a single secure route: a bogus code is a denial (150, not 117
/// "unable to place call"), and many of them never count toward the breaker: it stays closed and
/// the admin `/readyz` stays 200 (five opened it, and `/readyz` answered 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_bogus_codes_are_denials_and_leave_the_breaker_closed() {
    if !tools_present("oidc_bogus_codes_breaker", false) {
        return;
    }
    let e = env_custom(None, false, Via::Webhook, |s, _| {
        s.admin = pfgate::config::AdminSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            required: true,
            token: None,
        };
    })
    .await;
    let admin = e.server.running.as_ref().unwrap().admin_addr.unwrap();
    for _ in 0..7 {
        let (answer, _) = answered_by_bogus_callback(&e).await;
        assert_eq!(answer, ("false".into(), "150".into()));
    }
    let (status, body) = get(&reqwest_like(), &format!("http://{admin}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready["routes"][0]["providers"][0]["breaker"], "closed",
        "{ready}"
    );
}

/// A reload that rebuilds the providers (here: `[breaker]` changed) keeps a running OIDC provider
/// whose own settings did not change: the reload is applied (it was refused before: the new
/// provider could not bind the step-up port again), and a link delivered before it still works
/// after it. A reload that changes the OIDC provider itself is still refused, the running one
/// staying in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_survives_a_reload_that_rebuilds_the_providers() {
    if !tools_present("oidc_reload", false) {
        return;
    }
    let e = env(None, false).await;
    let live = e.server.running.as_ref().unwrap().live();

    let c = e.server.client();
    let call = tokio::spawn(async move { pf5(&c, "alice@contoso.com").await });
    let msg = e.hook.next().await;
    let link = msg["link"].as_str().unwrap().to_string();

    let mut settings = live.state().settings.clone();
    settings.breaker.failure_threshold += 1;
    live.reload(settings.clone())
        .await
        .expect("a reload that only changes [breaker] is applied");
    assert_eq!(
        live.state().settings.breaker.failure_threshold,
        settings.breaker.failure_threshold
    );

    let mut changed = settings.clone();
    let ProviderSettings::Oidc(o) = &mut changed.providers[0].1 else {
        panic!("the oidc provider")
    };
    o.link_ttl_secs = Some(30);
    let refused = live.reload(changed).await;
    assert!(
        refused.is_err(),
        "changing the oidc provider itself needs a restart"
    );
    assert_eq!(live.state().settings.providers, settings.providers);

    // The link delivered before both reloads: the person's page, then "Deny" — the waiting call ends.
    deny_without_browser(&reqwest_like(), &link).await;
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("false".into(), "150".into()));
}

/// Issue #23 item 10: a multi-factor sign-in recorded 30 s before the link was issued — within
/// `clock_skew_secs` (60), on an IdP whose clock agrees with pfgate's (its `iat` is right) — is
/// not fresh: refused (150). It was accepted (21): the skew was applied to the sign-in's time
/// whatever the clocks said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_before_the_link_within_the_skew_is_not_fresh() {
    if !tools_present("oidc_sign_in_before_the_link", false) {
        return;
    }
    let e = env_op(
        None,
        &["--auth-time-offset", "-30"],
        Via::Webhook,
        |_, _| {},
    )
    .await;
    let (answer, report, _) = step_up(&e, "alice@contoso.com", "continue", &["--otp", OTP]).await;
    assert_refused(&answer, &report, "not a fresh sign-in");
}

/// Issue #23 item 9: caller-supplied text on the step-up page and in the delivered message. An
/// application name with a right-to-left override (U+202E) and chat markdown, and an
/// `initiatingIpAddress` that is free text: the page shows no bidi or control character and no
/// IP that is not one; the chat message carries the name with its markdown escaped. (Before,
/// the page showed both as given and the message the raw name.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_caller_text_is_cleaned_on_the_page_and_escaped_in_the_message() {
    if !tools_present("oidc_caller_text", false) {
        return;
    }
    let e = env(None, false).await;
    let c = e.server.client();
    let app = "MIM\u{202E}evorppa\u{202C} *now* [ok](https://evil.example)\u{0007}";
    let call = tokio::spawn(async move {
        pf5_from(
            &c,
            "alice@contoso.com",
            app,
            "10.0.0.1 (your usual office - approve)",
        )
        .await
    });
    let msg = e.hook.next().await;
    let link = msg["link"].as_str().unwrap().to_string();
    let text = msg["text"].as_str().unwrap();
    for c in ['\u{202E}', '\u{202C}', '\u{0007}'] {
        assert!(!text.contains(c), "{text:?}");
    }
    assert!(
        text.contains(r"MIMevorppa \*now\* \[ok\]\(https://evil.example\)"),
        "{text:?}"
    );
    let (page, _) = open_link(&reqwest_like(), &link).await;
    let dd = |id: &str| {
        page.split(&format!("<dd id=\"{id}\">"))
            .nth(1)
            .and_then(|r| r.split("</dd>").next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        dd("application"),
        "MIMevorppa *now* [ok](https://evil.example)"
    );
    assert!(!dd("ip").contains("approve"), "{page}");
    assert!(!dd("ip").contains("10.0.0.1"), "{page}");
    deny_without_browser(&reqwest_like(), &link).await;
    let answer = tokio::time::timeout(STEP, call).await.unwrap().unwrap();
    assert_eq!(answer, ("false".into(), "150".into()));
}
