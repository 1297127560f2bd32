//! The gateway end to end: a Mono `SoapHttpClientProtocol` proxy calls pfgate, whose route sends
//! the authentication to the example webhook service (a real Python program speaking
//! `docs/webhook.md`) and, when that service is down, fails over to Duo (the Duo fake of
//! `providers_duo`, which checks Duo's request signatures). A person's denial is final: no failover.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pfgate::config::{ProviderSettings, Settings};
use pfgate::providers::duo::DuoSettings;
use pfgate::providers::router::RouteSettings;
use pfgate::providers::webhook::WebhookSettings;

use crate::providers_duo::{Fake as DuoFake, API_HOST, IKEY, SKEY};
use crate::providers_twilio::{Fake as TwilioFake, ACCOUNT_SID, SERVICE_SID, TOKEN};
use crate::support::*;

const WEBHOOK_SECRET: &str = "e2e-webhook-shared-secret-0123456789";

fn tools_present() -> bool {
    let ok = ["python3", "mono", "mcs", "wsdl"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok {
        assert!(
            std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "python3 and Mono are required (PFGATE_REQUIRE_INTEROP=1)"
        );
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Tools("python3 and Mono"),
            "providers_e2e",
            "python3 or Mono missing",
        );
    }
    ok
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_webhook(dir: &std::path::Path) -> (Child, String) {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n")).unwrap();
    let mut child = Command::new("python3")
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("examples/webhook-provider/webhook_provider.py"),
        )
        .args(["--host", "127.0.0.1", "--port", "0", "--secret-file"])
        .arg(&secret)
        .args([
            "--decide",
            "allowlist",
            "--allow",
            "alice@contoso.com",
            "--allow",
            "svc@contoso.com",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in reader.lines().map_while(Result::ok) {});
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (Child(child), base)
}

fn mono_calls(dir: &std::path::Path, url: &str, fp: &str, calls: &[&str]) -> Vec<String> {
    let out = Command::new("mono")
        .current_dir(dir)
        .args(["auth.exe", url, fp])
        .args(calls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Generates the Mono proxy from `wsdl/PfWsSdk.wsdl` and compiles `tests/interop/MonoAuth.cs`
/// with it into `dir/auth.exe` (shared with the OIDC step-up test).
pub(crate) async fn build_auth_exe(dir: &std::path::Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let gen = Command::new("wsdl")
            .current_dir(&d)
            .args(["-nologo", "-n:PfGateAuth", "-o:Proxy.cs"])
            .arg(root.join("wsdl/PfWsSdk.wsdl"))
            .output()
            .unwrap();
        assert!(gen.status.success());
        let mcs = Command::new("mcs")
            .current_dir(&d)
            .args([
                "-nologo",
                "-out:auth.exe",
                "-r:System.Web.Services.dll",
                "Proxy.cs",
            ])
            .arg(root.join("tests/interop/MonoAuth.cs"))
            .output()
            .unwrap();
        assert!(
            mcs.status.success(),
            "{}",
            String::from_utf8_lossy(&mcs.stdout)
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_then_duo_failover_through_a_mono_proxy() {
    if !tools_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pfgate-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The Mono proxy, generated from the WSDL pfgate publishes.
    build_auth_exe(&dir).await;

    let (webhook, webhook_url) = start_webhook(&dir);
    let duo = DuoFake::start().await;
    let duo_secret = dir.join("duo.secret");
    std::fs::write(&duo_secret, format!("{SKEY}\n")).unwrap();

    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.providers = vec![
        (
            "hook".into(),
            ProviderSettings::Webhook(WebhookSettings {
                base_url: webhook_url,
                secret_file: Some(dir.join("webhook.secret")),
                request_timeout_secs: Some(2),
                poll_interval_ms: Some(100),
                ..WebhookSettings::default()
            }),
        ),
        (
            "duo".into(),
            ProviderSettings::Duo(DuoSettings {
                api_host: API_HOST.into(),
                base_url: Some(duo.base_url()),
                integration_key: IKEY.into(),
                secret_key_file: Some(duo_secret),
                poll_interval_ms: Some(100),
                ..DuoSettings::default()
            }),
        ),
    ];
    settings.routes = vec![RouteSettings {
        providers: vec!["hook".into(), "duo".into()],
        ..RouteSettings::default()
    }];
    let server = TestServer::start(settings).await;
    let (url, fp) = (server.url(), server.fingerprint());

    // The webhook decides: alice and the number given for svc approved; bob denied (final).
    let (d, u, f) = (dir.clone(), url.clone(), fp.clone());
    let lines = tokio::task::spawn_blocking(move || {
        mono_calls(
            &d,
            &u,
            &f,
            &[
                "5:svc@contoso.com:1:4255550100",
                "4:alice@contoso.com",
                "4:bob@contoso.com",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(lines, vec!["true 2", "true 2", "false 150"]);
    assert!(
        duo.seen_paths().iter().all(|p| !p.contains("/auth")),
        "no failover after a denial or success: {:?}",
        duo.seen_paths()
    );

    // The webhook service goes down: the same calls fail over to Duo, which approves.
    drop(webhook);
    let (d, u, f) = (dir.clone(), url.clone(), fp.clone());
    let lines = tokio::task::spawn_blocking(move || {
        mono_calls(
            &d,
            &u,
            &f,
            &["4:alice@contoso.com", "5:svc@contoso.com:1:4255550100"],
        )
    })
    .await
    .unwrap();
    assert_eq!(lines, vec!["true 2", "true 2"]);
    let paths = duo.seen_paths();
    assert!(
        paths.iter().any(|p| p.contains("/auth/v2/preauth")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("/auth/v2/auth_status")),
        "{paths:?}"
    );
}

/// Removes a test directory on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// pfgate in demo mode with one route to Twilio Verify (the fake), its token in a directory of
/// its own (`tag`).
async fn twilio_server(fake: &TwilioFake, tag: &str) -> (TestServer, TempDir) {
    let dir = std::env::temp_dir().join(format!("pfgate-e2e-twilio-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("twilio.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.providers = vec![(
        "twilio".into(),
        ProviderSettings::Twilio(pfgate::providers::twilio::TwilioSettings {
            service_sid: SERVICE_SID.into(),
            account_sid: ACCOUNT_SID.into(),
            auth_token_file: Some(token),
            base_url: Some(fake.base_url()),
            ..Default::default()
        }),
    )];
    settings.routes = vec![RouteSettings {
        providers: vec!["twilio".into()],
        ..RouteSettings::default()
    }];
    (TestServer::start(settings).await, TempDir(dir))
}

/// Twilio Verify through the SOAP layer: the first call answers CallResult 20 with an
/// `authenticationRequestId`; the code Twilio sent completes it through `ValidateOathCode` (with
/// the id) or `ValidatePasscode` (by user), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_verify_code_flow_through_soap() {
    let fake = TwilioFake::start().await;
    let (server, _dir) = twilio_server(&fake, "flow").await;
    let c = server.client();
    let call = |op: &'static str, inner: String| {
        let c = c.clone();
        async move {
            let r = c
                .soap11(
                    Some(&action(op)),
                    &env11(&format!(r#"<{op} xmlns="{NS}">{inner}</{op}>"#)),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body
        }
    };
    let pf4 = || {
        call(
            "PfAuthUser_4",
            "<username>alice@contoso.com</username><requireUserMatch>true</requireUserMatch>"
                .into(),
        )
    };
    // alice's number in fixtures/demo.toml: 1 4255550100.
    let body = pf4().await;
    assert_eq!(
        text_of(&body, "PfAuthUser_4Result").as_deref(),
        Some("false")
    );
    assert!(body.contains("<callResult><Code>20</Code>"), "{body}");
    let id = text_of(&body, "authenticationRequestId").unwrap();
    let code = fake.code_for("+14255550100").expect("Twilio sent a code");
    let v = |code: &str, id: &str| {
        format!("<username>alice@contoso.com</username><code>{code}</code><authenticationRequestId>{id}</authenticationRequestId><fallback>false</fallback>")
    };
    let body = call("ValidateOathCode", v(&code, &id)).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("true"),
        "{body}"
    );
    let body = call("ValidateOathCode", v(&code, &id)).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("false"),
        "once only"
    );
    // By user, through ValidatePasscode; a wrong code first spends the attempt.
    pf4().await;
    let code = fake.code_for("+14255550100").unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let p = |c: &str| format!("<username>alice@contoso.com</username><passcode>{c}</passcode>");
    let body = call("ValidatePasscode", p(wrong)).await;
    assert_eq!(
        text_of(&body, "ValidatePasscodeResult").as_deref(),
        Some("false")
    );
    pf4().await;
    let code = fake.code_for("+14255550100").unwrap();
    let body = call("ValidatePasscode", p(&code)).await;
    assert_eq!(
        text_of(&body, "ValidatePasscodeResult").as_deref(),
        Some("true"),
        "{body}"
    );
}

/// Issue #23 item 8 through the SOAP layer: the sixth `PfAuthUser_4` for one user within the
/// window is refused (150) before Twilio is asked; the five before it each sent a code (20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_verify_sends_per_user_are_bounded_through_soap() {
    let fake = TwilioFake::start().await;
    let (server, _dir) = twilio_server(&fake, "bound").await;
    let c = server.client();
    let inner = "<username>alice@contoso.com</username><requireUserMatch>true</requireUserMatch>";
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = c
            .soap11(
                Some(&action("PfAuthUser_4")),
                &env11(&format!(
                    r#"<PfAuthUser_4 xmlns="{NS}">{inner}</PfAuthUser_4>"#
                )),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let code = r
            .body
            .split("<callResult><Code>")
            .nth(1)
            .and_then(|t| t.split('<').next())
            .unwrap_or("")
            .to_string();
        codes.push(code);
    }
    assert_eq!(codes, ["20", "20", "20", "20", "20", "150"]);
    assert_eq!(
        fake.sends(),
        5,
        "the sixth was refused by pfgate, not by Twilio"
    );
}
