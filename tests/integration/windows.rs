//! The pfgate executable as an administrator runs it, from the certificate to the audit check, with
//! a real configuration and real clients. In CI (`.ci/windows`) the executable is the Windows build
//! run under wine (`PFGATE_TEST_BIN=…/pfgate.exe`, `PFGATE_TEST_BIN_WRAPPER=wine`); without those
//! variables it is this build's binary, so the same steps run (and can fail) on Linux too.
//!
//! Steps: `cert dev` → `hash-password` → `check-config` → `users import` → `serve` (TLS from the PEM
//! files, an NTLM account, a Basic account, the SQLite store, the audit trail) called by Mono's
//! `SoapHttpClientProtocol` over NTLMv2, pyspnego over NTLM with a MIC, and curl with Basic, good
//! and wrong credentials each → stop → `users export` (the store kept the imported user) →
//! `audit verify` (intact, then refused after one byte of the trail is changed).
//!
//! The Windows service (`pfgate service install`) is exercised under wine's service manager by
//! `.ci/windows` itself (docs/deploy.md, "Windows").

use std::path::Path;
use std::process::Command;

use crate::interop::{interop_available, mono_available, run, TempDir, TOOL_TIMEOUT};
use crate::ntlm::{build_mono_ntlm, mono_ntlm, pyspnego_client, python_ntlm_available, PASSWORD};
use crate::support::*;

/// The Basic account's password (given to `hash-password` on standard input, to curl in a file).
const BASIC_PASSWORD: &str = "Adfs-Sdk!pw2";

/// `pfgate ARGS` in `dir`, run to the end; panics with its output unless it exits `want`.
async fn pfgate(dir: &Path, args: &[&str], want: i32) -> String {
    let mut cmd = pfgate_command();
    cmd.current_dir(dir).args(args);
    let out = run(cmd, TOOL_TIMEOUT).await;
    assert_eq!(out.code, Some(want), "pfgate {args:?}:\n{}", out.report());
    format!("{}{}", out.stdout, out.stderr)
}

/// The configuration: every path relative to the file (so the same text works for the Windows
/// build, which sees this directory as `Z:\…` under wine).
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "certs/dev-server.pem"
tls_key = "certs/dev-server-key.pem"

[directory]
users_file = "users.toml"

[auth.ntlm]
netbios_domain = "CONTOSO"
netbios_computer = "PFGATE"
dns_domain = "contoso.com"
dns_computer = "localhost"

[[auth.ntlm.accounts]]
principal = "CONTOSO\\mimservice"
password_file = "mim.password"

[[auth.basic]]
principal = "CONTOSO\\adfs-sdk"
password_hash = "BASIC_HASH"

[[auth.principals]]
name = "CONTOSO\\mimservice"
allow = ["authentication"]

[[auth.principals]]
name = "CONTOSO\\adfs-sdk"
allow = ["authentication"]

[admin]
enabled = false

[store]
path = "data/pfgate.db"
secrets_key_file = "secrets.key"

[audit]
file = "data/audit.jsonl"

# The scripted provider, named by a route: a configuration without a provider is refused.
[providers.demo]
kind = "scripted"

[[routes]]
providers = ["demo"]
"#;

/// `TestSecurity` over SOAP 1.1 with curl and Basic credentials from `netrc`: the HTTP status and
/// the body.
async fn curl_basic(dir: &Path, url: &str, netrc: &str) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir).args([
        "-sS",
        "--max-time",
        "60",
        "--cacert",
        "certs/dev-ca.pem",
        "--basic",
        "--netrc-file",
        netrc,
        "-H",
        "Content-Type: text/xml; charset=utf-8",
        "-H",
        &format!("SOAPAction: \"{NS}/TestSecurity\""),
        "--data",
        &env11(&format!("<TestSecurity xmlns=\"{NS}\"/>")),
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let out = run(cmd, TOOL_TIMEOUT).await.expect_success();
    let (body, status) = out
        .stdout
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("curl printed no status: {}", out.report()));
    (status.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executable_serves_a_real_configuration_to_real_clients() {
    let test = "the_executable_serves_a_real_configuration_to_real_clients";
    if !mono_available(test).await
        || !interop_available(
            test,
            pfgate::testing::test_skips::Needs::Tools("curl"),
            &["curl"],
            &[],
        )
        .await
        || !python_ntlm_available(test)
    {
        return;
    }
    let d = TempDir::new("windows");
    let dir = d.path();
    build_mono_ntlm(dir).await;

    // The administrator's steps, each through the executable.
    let made = pfgate(dir, &["cert", "dev", "--dir", "certs"], 0).await;
    assert!(made.contains("dev-server.pem"), "{made}");
    let hash = {
        let mut cmd = pfgate_command();
        cmd.current_dir(dir).arg("hash-password");
        let input = dir.join("basic.input");
        std::fs::write(&input, format!("{BASIC_PASSWORD}\n")).unwrap();
        cmd.stdin(std::fs::File::open(&input).unwrap());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    d.write("mim.password", &format!("{PASSWORD}\n"));
    d.write("secrets.key", &"5a".repeat(32));
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo.toml");
    std::fs::copy(demo, dir.join("users.toml")).unwrap();
    d.write("pfgate.toml", &CONFIG.replace("BASIC_HASH", &hash));
    let checked = pfgate(dir, &["check-config", "pfgate.toml"], 0).await;
    assert!(checked.contains("pfgate.toml: OK"), "{checked}");
    d.write(
        "new.csv",
        "username,first_name,phone\nwendy@contoso.com,Wendy,4255550190\n",
    );
    let imported = pfgate(
        dir,
        &["users", "import", "new.csv", "--config", "pfgate.toml"],
        0,
    )
    .await;
    assert!(imported.contains("1 added"), "{imported}");

    // Serve, and call it.
    let mut cmd = pfgate_command();
    cmd.current_dir(dir)
        .args(["serve", "--config", "pfgate.toml"]);
    let (child, addr, fp) = tokio::task::spawn_blocking(move || spawn_serving(cmd))
        .await
        .unwrap();
    let server = Stopped(child);
    let url = format!("https://localhost:{}{SDK_PATH}", addr.port());
    {
        let ntlm = |domain, user, pw| mono_ntlm(dir, url.clone(), fp.clone(), domain, user, pw);
        assert_eq!(
            ntlm("CONTOSO", "mimservice", PASSWORD).await,
            "secure true 2"
        );
        assert_eq!(ntlm("CONTOSO", "mimservice", "wrong").await, "ERROR 401");

        let ca = dir.join("certs/dev-ca.pem");
        let mic = pyspnego_client("ntlm", url.clone(), ca, "CONTOSO\\mimservice", PASSWORD).await;
        assert_eq!(mic["status"], 200, "{mic}");
        assert_eq!(mic["result"], "secure", "{mic}");

        d.write(
            "good.netrc",
            &format!("machine localhost login CONTOSO\\adfs-sdk password {BASIC_PASSWORD}\n"),
        );
        d.write(
            "bad.netrc",
            "machine localhost login CONTOSO\\adfs-sdk password not-it\n",
        );
        let (status, body) = curl_basic(dir, &url, "good.netrc").await;
        assert_eq!(status, "200", "{body}");
        assert_eq!(
            text_of(&body, "TestSecurityResult").as_deref(),
            Some("secure")
        );
        let (status, body) = curl_basic(dir, &url, "bad.netrc").await;
        assert_eq!(status, "401", "{body}");
    }
    drop(server);

    // After the stop: the store kept the imported user, the trail holds the decisions.
    let exported = pfgate(dir, &["users", "export", "--config", "pfgate.toml"], 0).await;
    assert!(exported.contains("wendy@contoso.com"), "{exported}");
    assert!(exported.contains("alice@contoso.com"), "{exported}");
    let verified = pfgate(dir, &["audit", "verify", "data/audit.jsonl"], 0).await;
    assert!(verified.contains("chain intact"), "{verified}");
    let records: u64 = verified
        .split("chain intact: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count: {verified}"));
    assert!(
        records >= 1,
        "alice's authentication is not in the trail: {verified}"
    );
    let trail = dir.join("data/audit.jsonl");
    let text = std::fs::read_to_string(&trail).unwrap();
    assert!(text.contains("alice@contoso.com"), "{text}");
    std::fs::write(
        &trail,
        text.replacen("alice@contoso.com", "alice@contoso.con", 1),
    )
    .unwrap();
    let broken = pfgate(dir, &["audit", "verify", "data/audit.jsonl"], 1).await;
    assert!(broken.contains("chain broken"), "{broken}");
}

/// A server process, stopped (by its own handle) when dropped, so a failed assertion never leaves
/// it running.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One plain-HTTP SOAP 1.1 `TestSecurity` to `addr`, as IIS/ARR forwards it: with the identity
/// header IIS sets (`None`: without it). The status and the body.
async fn forwarded_test_security(
    addr: std::net::SocketAddr,
    header: Option<(&str, &str)>,
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post(SDK_PATH)
        .header("Host", "mfa.contoso.com")
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{NS}/TestSecurity\""));
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(env11(&format!(
            "<TestSecurity xmlns=\"{NS}\"/>"
        )))))
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// deploy/iis/web.config is well-formed XML whose rewrite rule sets, from `{LOGON_USER}`, the
/// server variable of exactly the header deploy/iis/pfgate.toml names, and forwards to exactly
/// its plain listener; that configuration is valid, and pfgate started with it believes the header
/// from 127.0.0.1 (as IIS sends it) and refuses the call without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iis_web_config_forwards_the_authenticated_user_to_pfgate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/iis");
    let xml = std::fs::read_to_string(root.join("web.config")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("web.config is well-formed XML");
    let element = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name(name))
            .unwrap_or_else(|| panic!("no <{name}> in web.config"))
    };
    assert_eq!(
        element("anonymousAuthentication").attribute("enabled"),
        Some("false")
    );
    assert_eq!(
        element("windowsAuthentication").attribute("enabled"),
        Some("true")
    );
    let rule = doc
        .descendants()
        .find(|n| n.has_tag_name("rule") && n.attribute("name") == Some("pfgate"))
        .expect("the pfgate rule");
    let sets: Vec<(&str, &str)> = rule
        .descendants()
        .filter(|n| n.has_tag_name("set"))
        .map(|n| (n.attribute("name").unwrap(), n.attribute("value").unwrap()))
        .collect();
    let action = rule
        .descendants()
        .find(|n| n.has_tag_name("action"))
        .and_then(|n| n.attribute("url"))
        .expect("the rule's action url");

    // The pfgate side, with its Windows paths moved to a temporary directory.
    let d = TempDir::new("iis");
    let text = std::fs::read_to_string(root.join("pfgate.toml"))
        .unwrap()
        .replace(
            r"C:\ProgramData\pfgate\",
            &format!("{}/", d.path().display()),
        );
    std::fs::create_dir_all(d.path().join("data")).unwrap();
    d.write("secrets.key", &"5a".repeat(32));
    d.write("webhook.secret", &"7b".repeat(32));
    let config = d.write("pfgate.toml", &text);
    let mut settings = pfgate::config::load(&config)
        .unwrap_or_else(|e| panic!("deploy/iis/pfgate.toml refused: {:?}", e.0));
    let header = settings
        .auth
        .proxy_identity_header
        .clone()
        .expect("proxy_identity_header");
    // IIS names a request header's server variable HTTP_ + the name upper-cased, '-' as '_'.
    let variable = format!("HTTP_{}", header.to_ascii_uppercase().replace('-', "_"));
    assert!(
        sets.contains(&(variable.as_str(), "{LOGON_USER}")),
        "web.config must set {variable} from {{LOGON_USER}}: {sets:?}"
    );
    let listen = settings.plain_listen.expect("plain_listen");
    assert!(listen.ip().is_loopback(), "{listen}");
    assert_eq!(action, format!("http://{listen}/{{R:1}}"));
    assert!(
        settings
            .trusted_proxies
            .iter()
            .any(|p| p.contains(listen.ip())),
        "IIS's address {} must be a trusted proxy",
        listen.ip()
    );

    settings.plain_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.admin.listen = None;
    let running = pfgate::server::start(settings)
        .await
        .expect("server starts");
    let addr = running.plain_addr.expect("plain listener");
    let (status, body) =
        forwarded_test_security(addr, Some((header.as_str(), "CONTOSO\\mimservice"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        text_of(&body, "TestSecurityResult").as_deref(),
        Some("secure")
    );
    let (status, body) = forwarded_test_security(addr, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) =
        forwarded_test_security(addr, Some((header.as_str(), "CONTOSO\\someone-else"))).await;
    assert_eq!(status, 403, "{body}");
    running.shutdown(std::time::Duration::from_millis(10)).await;
}

/// `service run` started from a console, not by the service manager, says so and exits 2 (on
/// Windows: the dispatcher refuses; elsewhere: services are Windows-only). Never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_run_outside_the_service_manager_exits_2() {
    let d = TempDir::new("service-run");
    let out = pfgate(
        d.path(),
        &[
            "service",
            "run",
            "--config",
            "none.toml",
            "--name",
            "pfgate-x",
        ],
        2,
    )
    .await;
    let want = if std::env::var_os(TEST_BIN).is_some() {
        "not started by the service manager"
    } else {
        "Windows services exist on Windows only"
    };
    assert!(out.contains(want), "{out}");
}
