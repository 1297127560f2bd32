//! Windows Integrated authentication against real clients: Mono's `SoapHttpClientProtocol` with a
//! `NetworkCredential` over NTLMv2 (which sends no MIC — the case the `sspi` crate gets wrong),
//! curl `--ntlm`, and Python's pyspnego / requests-ntlm (`tests/interop/ntlm_client.py`), which
//! send a MIC, and a SPNEGO mechListMIC under `Negotiate`. Wrong password, unknown user and unknown
//! domain are refused with 401.
//! The cryptographic negatives (replay, NTLMv1, tampered MIC, stale time stamps) are covered
//! message by message in `src/auth/ntlm.rs`.

use std::path::PathBuf;
use std::process::Command;

use pfgate::config::{AuthSettings, NtlmAccountSection, NtlmSettings, Settings};

use crate::support::*;

pub(crate) const PASSWORD: &str = "M1m-Service!pw";

fn required() -> bool {
    std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() == Ok("1")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pfgate-ntlm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) async fn ntlm_server(d: &std::path::Path) -> TestServer {
    let pw = d.join("mim.password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let mut s = Settings::demo("127.0.0.1:0".parse().unwrap());
    s.allow_anonymous = false;
    s.auth = AuthSettings {
        ntlm: Some(NtlmSettings {
            netbios_domain: "CONTOSO".into(),
            netbios_computer: "PFGATE".into(),
            dns_domain: "contoso.com".into(),
            dns_computer: "localhost".into(),
            accounts: vec![NtlmAccountSection {
                principal: "CONTOSO\\mimservice".into(),
                password_file: Some(pw),
                ..NtlmAccountSection::default()
            }],
        }),
        policy: pfgate::auth::policy::Policy::new(vec![pfgate::auth::policy::PrincipalRule {
            name: "CONTOSO\\mimservice".into(),
            allow: vec![pfgate::auth::policy::OperationGroup::Authentication],
        }]),
        ..AuthSettings::default()
    };
    TestServer::start(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_like_iis() {
    let d = dir("iis");
    let s = ntlm_server(&d).await;
    let r = s.client().get(&format!("{SDK_PATH}?WSDL")).await;
    assert_eq!(r.status, 401);
    let offered: Vec<&str> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(offered, vec!["Negotiate", "NTLM"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_ntlm() {
    if !have("curl") {
        assert!(!required(), "curl is required");
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Tools("curl"),
            "curl_ntlm",
            "not installed",
        );
        return;
    }
    let d = dir("curl");
    let s = ntlm_server(&d).await;
    let ca = d.join("leaf.pem");
    std::fs::write(&ca, s.leaf_pem()).unwrap();
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let url = s.url();
    let run = |user: &'static str| {
        let (ca, url, body) = (ca.clone(), url.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "20", "--ntlm", "-u", user, "--cacert"])
                .arg(&ca)
                .args(["-H", "Content-Type: text/xml; charset=utf-8"])
                .args(["-H", &format!("SOAPAction: \"{}\"", action("TestSecurity"))])
                .args(["-w", "\n%{http_code}", "--data-binary", &body, &url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let good = run("CONTOSO\\mimservice:M1m-Service!pw").await.unwrap();
    assert!(good.trim_end().ends_with("200"), "{good}");
    assert!(good.contains("<TestSecurityResult>secure</TestSecurityResult>"));
    for bad in [
        "CONTOSO\\mimservice:wrong-password",
        "CONTOSO\\nobody:M1m-Service!pw",
        "FABRIKAM\\mimservice:M1m-Service!pw",
    ] {
        let out = run(bad).await.unwrap();
        assert!(out.trim_end().ends_with("401"), "{bad}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mono_soap_client_with_network_credential() {
    let tools = ["mono", "mcs", "wsdl"];
    if !tools.iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }) {
        assert!(!required(), "mono, mcs and wsdl are required");
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Mono,
            "mono_soap_client_with_network_credential",
            "mono, mcs or wsdl not on PATH",
        );
        return;
    }
    let d = dir("mono");
    let s = ntlm_server(&d).await;
    build_mono_ntlm(&d).await;
    let run = |user, domain, pw| mono_ntlm(&d, s.url(), s.fingerprint(), domain, user, pw);
    assert_eq!(
        run("mimservice", "CONTOSO", PASSWORD).await,
        "secure true 2"
    );
    assert_eq!(run("mimservice", "CONTOSO", "wrong").await, "ERROR 401");
    assert_eq!(run("nobody", "CONTOSO", PASSWORD).await, "ERROR 401");
    assert_eq!(run("mimservice", "FABRIKAM", PASSWORD).await, "ERROR 401");
}

/// Builds `ntlm.exe` in `d`: a proxy generated from the committed WSDL and
/// `tests/interop/MonoNtlm.cs` (the proxy cannot fetch ?WSDL anonymously from a server that
/// requires Windows auth; the contract test checks the committed WSDL is what pfgate serves).
pub(crate) async fn build_mono_ntlm(d: &std::path::Path) {
    let d = d.to_path_buf();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    tokio::task::spawn_blocking(move || {
        let gen = Command::new("wsdl")
            .current_dir(&d)
            .args(["-nologo", "-n:PfGateNtlm", "-o:Proxy.cs"])
            .arg(root.join("wsdl/PfWsSdk.wsdl"))
            .output()
            .unwrap();
        assert!(
            gen.status.success(),
            "{}",
            String::from_utf8_lossy(&gen.stdout)
        );
        let mcs = Command::new("mcs")
            .current_dir(&d)
            .args([
                "-nologo",
                "-out:ntlm.exe",
                "-r:System.Web.Services.dll",
                "-r:Mono.Security.dll",
                "Proxy.cs",
            ])
            .arg(root.join("tests/interop/MonoNtlm.cs"))
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

/// Runs `ntlm.exe URL FINGERPRINT DOMAIN USER PASSWORD` in `d`: its trimmed standard output
/// ("secure true 2", or "ERROR 401").
pub(crate) async fn mono_ntlm(
    d: &std::path::Path,
    url: String,
    fp: String,
    domain: &'static str,
    user: &'static str,
    pw: &'static str,
) -> String {
    let d = d.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("mono")
            .current_dir(&d)
            .args(["ntlm.exe", &url, &fp, domain, user, pw])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// pyspnego / requests-ntlm: NTLM with a MIC, Negotiate(NTLM) with a mechListMIC
// ---------------------------------------------------------------------------------------------

/// Whether python3 with pyspnego and requests-ntlm is here; prints `SKIP` (or panics under
/// `PFGATE_REQUIRE_INTEROP=1`) when not.
pub(crate) fn python_ntlm_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import spnego, requests_ntlm"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            !required(),
            "{test}: PFGATE_REQUIRE_INTEROP=1 but python3 with pyspnego and requests-ntlm is \
             missing (run .ci/install-deps)"
        );
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Pyspnego,
            test,
            "import spnego, requests_ntlm failed",
        );
    }
    ok
}

/// Runs `tests/interop/ntlm_client.py MODE URL CA USER` with the password in its environment and
/// returns its JSON report; any failure shows the client's stdout and stderr.
pub(crate) async fn pyspnego_client(
    mode: &'static str,
    url: String,
    ca: PathBuf,
    user: &'static str,
    password: &'static str,
) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ntlm_client.py");
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(&script)
            .args([mode, &url])
            .arg(&ca)
            .arg(user)
            .env("PFGATE_NTLM_PASSWORD", password)
            // requests prefers these to its `verify` argument on some paths: trust only the leaf.
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("CURL_CA_BUNDLE", &ca)
            .env("SSL_CERT_FILE", &ca)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(90) {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "ntlm_client.py {mode} {user} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        eprintln!(
            "  {:.2?}  ntlm_client.py {mode} {user}: {}",
            started.elapsed(),
            stdout.trim()
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("ntlm_client.py output is not JSON ({e}): {stdout}\n{stderr}")
        })
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_pyspnego_and_requests_ntlm_send_a_mic() {
    let test = "python_pyspnego_and_requests_ntlm_send_a_mic";
    if !python_ntlm_available(test) {
        return;
    }
    let started = std::time::Instant::now();
    let d = dir("pyspnego");
    let s = ntlm_server(&d).await;
    let ca = d.join("leaf.pem");
    std::fs::write(&ca, s.leaf_pem()).unwrap();
    let user = "CONTOSO\\mimservice";
    for mode in ["ntlm", "negotiate", "requests-ntlm"] {
        let good = pyspnego_client(mode, s.url(), ca.clone(), user, PASSWORD).await;
        assert_eq!(good["status"], 200, "{mode}: {good}");
        assert_eq!(good["result"], "secure", "{mode}: {good}");
        assert_eq!(
            good["legs"],
            serde_json::json!([401, 401, 200]),
            "{mode}: {good}"
        );
        // The point of this test: the client signed its AUTHENTICATE message with a MIC and said
        // so in MsvAvFlags, and pfgate verified it (a wrong MIC is refused: src/auth/ntlm.rs).
        assert_eq!(good["mic"], true, "{mode}: {good}");
        assert_eq!(good["mic_flag"], true, "{mode}: {good}");
        if mode == "negotiate" {
            assert_eq!(good["mech_list_mic"], true, "{good}");
            // pyspnego accepted pfgate's accept-completed token and its mechListMIC.
            assert_eq!(good["server_final"], "verified", "{good}");
        }
        if mode != "requests-ntlm" {
            // The connection stays authenticated, as on IIS.
            assert_eq!(good["reused"], 200, "{mode}: {good}");
        }

        let bad = pyspnego_client(mode, s.url(), ca.clone(), user, "wrong-password").await;
        assert_eq!(bad["status"], 401, "{mode}: {bad}");
        assert_eq!(bad["result"], serde_json::Value::Null, "{mode}: {bad}");
        assert_eq!(bad["mic"], true, "{mode}: {bad}");
    }
    // One bit of an otherwise genuine MIC flipped: refused, so the MIC above was verified.
    let bad_mic = pyspnego_client("ntlm-bad-mic", s.url(), ca.clone(), user, PASSWORD).await;
    assert_eq!(bad_mic["status"], 401, "{bad_mic}");
    let nobody = pyspnego_client(
        "negotiate",
        s.url(),
        ca.clone(),
        "CONTOSO\\nobody",
        PASSWORD,
    )
    .await;
    assert_eq!(nobody["status"], 401, "{nobody}");
    eprintln!("{test}: {:.2?}", started.elapsed());
}
