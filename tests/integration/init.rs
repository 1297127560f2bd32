//! `pfgate init DIR --provider KIND` through the real binary, for every provider kind: the site
//! it writes (secret files owner-only; never overwritten), `check-config` listing exactly the
//! placeholders, the test filling them, `check-config` OK, `serve` starting, and — for the webhook,
//! against the example webhook service (a real program speaking docs/webhook.md) — `pfgate call`
//! authenticating as MIM does: NTLM as the service account, `PfAuthUser_5` with a number.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cli::{bin, listen_addr, sigterm_and_wait, spawn_serve, temp_dir};

const MIM_PASSWORD: &str = "Mim-Service-Passw0rd";
const WEBHOOK_SECRET: &str = "init-webhook-shared-secret-0123456789";

/// Runs the binary; (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The keys `check-config` names, from its `file:key: reason` lines.
fn listed_keys(config: &Path, stderr: &str) -> BTreeSet<String> {
    let prefix = format!("{}:", config.display());
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| l.split_once(": ").map(|(k, _)| k.to_string()))
        .collect()
}

/// The placeholders every site has, and each provider's own.
fn expected_placeholders(provider: &str) -> BTreeSet<String> {
    let common = [
        "auth.ntlm.netbios_domain",
        "auth.ntlm.accounts[0].principal",
        "auth.ntlm.accounts[0].password_file",
        "auth.principals[0].name",
        "directory.users_file",
    ];
    let own: &[&str] = match provider {
        "webhook" => &["providers.hook.base_url", "providers.hook.secret_file"],
        "duo" => &[
            "providers.duo.api_host",
            "providers.duo.integration_key",
            "providers.duo.secret_key_file",
        ],
        "twilio-verify" => &[
            "providers.twilio.service_sid",
            "providers.twilio.account_sid",
            "providers.twilio.auth_token_file",
        ],
        "oidc" => &[
            "providers.entra.issuer",
            "providers.entra.client_id",
            "providers.entra.client_secret_file",
            "providers.entra.public_url",
            "providers.entra.webhook.url",
        ],
        other => panic!("no placeholders known for {other}"),
    };
    common.iter().chain(own).map(|k| k.to_string()).collect()
}

/// The value the test gives each placeholder of a TOML file, by key (TOML-quoted).
fn value_for(key: &str, webhook_url: &str) -> String {
    let v = match key {
        "netbios_domain" => "CONTOSO",
        "principal" | "name" => "CONTOSO\\\\mimservice",
        "username" => "mimservice@contoso.com",
        "base_url" => webhook_url,
        "api_host" => "api-1234abcd.duosecurity.com",
        "integration_key" => "DIXXXXXXXXXXXXXXXXXX",
        "service_sid" => "VA0123456789abcdef0123456789abcdef",
        "account_sid" => "SK0123456789abcdef0123456789abcdef",
        "issuer" => "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
        "client_id" => "11111111-2222-3333-4444-555555555555",
        "public_url" => "https://stepup.contoso.com",
        "url" => "https://relay.contoso.com/stepup",
        other => panic!("the test has no value for placeholder key {other}"),
    };
    format!("\"{v}\"")
}

/// Fills every placeholder `init` wrote: `key = "<FILL: …>"` lines of the TOML files by key, and
/// the secret files' whole content.
fn fill(dir: &Path, webhook_url: &str) {
    for toml_file in ["pfgate.toml", "users.toml"] {
        let path = dir.join(toml_file);
        let text = std::fs::read_to_string(&path).unwrap();
        let filled: Vec<String> = text
            .lines()
            .map(|l| match l.split_once(" = ") {
                Some((k, v)) if v.contains("<FILL:") => {
                    format!("{k} = {}", value_for(k.trim(), webhook_url))
                }
                _ => l.to_string(),
            })
            .collect();
        std::fs::write(&path, filled.join("\n") + "\n").unwrap();
    }
    for (secret, value) in [
        ("mimservice.password", MIM_PASSWORD),
        ("webhook.secret", WEBHOOK_SECRET),
        ("duo.skey", "duo-secret-key-0123456789012345678901234567"),
        ("twilio.token", "twilio-api-key-secret-0123456789abcdef"),
        ("oidc-client.secret", "oidc-client-secret-0123456789"),
    ] {
        let path = dir.join(secret);
        if path.exists() {
            // Rewriting keeps the file's owner-only mode.
            std::fs::write(&path, format!("{value}\n")).unwrap();
        }
    }
}

/// The example webhook service, approving everyone, on a free port; killed on drop.
struct WebhookService(Child, String);

impl Drop for WebhookService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_webhook_service(dir: &Path) -> Option<WebhookService> {
    let secret = dir.join("service.secret");
    std::fs::write(&secret, format!("{WEBHOOK_SECRET}\n")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/webhook-provider/webhook_provider.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", "0", "--decide", "approve"])
        .arg("--secret-file")
        .arg(&secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut reader = std::io::BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    std::thread::spawn(move || for _ in reader.lines().map_while(Result::ok) {});
    let base = line.trim().strip_prefix("listening on ")?.to_string();
    Some(WebhookService(child, base))
}

/// Owner-only secrets (Unix): the key, the secret files, the certificate keys.
#[cfg(unix)]
fn assert_owner_only(dir: &Path, provider_secret: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    for f in [
        "secrets.key",
        "mimservice.password",
        provider_secret,
        "certs/dev-server-key.pem",
        "certs/dev-ca-key.pem",
    ] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
}

/// The whole path for one provider; `webhook_url` is where the webhook provider is sent.
fn init_fill_check_serve(
    provider: &str,
    provider_secret: &str,
    webhook_url: &str,
    state_dir: Option<&Path>,
) -> String {
    let root = temp_dir(&format!("init-{provider}"));
    let dir = root.join("site");
    let mut args = vec![
        "init".to_string(),
        dir.display().to_string(),
        "--provider".into(),
        provider.into(),
    ];
    if let Some(s) = state_dir {
        args.extend(["--state-dir".into(), s.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    for step in [
        "pfgate check-config",
        "pfgate serve",
        "pfgate call",
        "mim check",
    ] {
        assert!(out.contains(step), "init names the step {step}: {out}");
    }
    #[cfg(unix)]
    assert_owner_only(&dir, provider_secret);
    let before = std::fs::read(dir.join("pfgate.toml")).unwrap();
    let (code, _, err) = run(&["init", &dir.display().to_string(), "--provider", provider]);
    assert_eq!(code, Some(2), "init must refuse an existing site: {err}");
    assert!(err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(dir.join("pfgate.toml")).unwrap(), before);

    let config = dir.join("pfgate.toml");
    let cfg = config.display().to_string();
    let (code, _, err) = run(&["check-config", &cfg]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        listed_keys(&config, &err),
        expected_placeholders(provider),
        "{err}"
    );
    // Serving is refused while placeholders remain.
    let (code, _, err) = run(&["serve", "--config", &cfg, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");

    fill(&dir, webhook_url);
    #[cfg(unix)]
    assert_owner_only(&dir, provider_secret);
    let (code, out, err) = run(&["check-config", &cfg]);
    assert_eq!(code, Some(0), "{provider}: {out}{err}");
    cfg
}

/// Starts `serve` on the filled site and returns it with its https address.
async fn serve_site(cfg: String) -> (crate::cli::Served, String) {
    let served = tokio::task::spawn_blocking(move || {
        spawn_serve(&["serve", "--config", &cfg, "--listen", "127.0.0.1:0"], 2)
    })
    .await
    .unwrap();
    let addr = listen_addr(&served, "https://");
    (served, addr)
}

async fn stop(served: crate::cli::Served) {
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success());
}

/// Webhook: the whole road, ending with `pfgate call` authenticating as MIM (NTLM, PfAuthUser_5
/// with the end user's number) against the example webhook service, trusting the site's dev CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_webhook_site_fills_checks_serves_and_authenticates() {
    let service_dir = temp_dir("init-webhook-service");
    let Some(service) = start_webhook_service(&service_dir) else {
        assert!(
            std::env::var("PFGATE_REQUIRE_INTEROP").is_err(),
            "python3 is required (PFGATE_REQUIRE_INTEROP=1)"
        );
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Tools("python3"),
            "init_webhook_site_fills_checks_serves_and_authenticates",
            "python3 missing (the example webhook service)",
        );
        return;
    };
    // The store and the audit trail in a state directory of their own (as /var/lib/pfgate).
    let state = service_dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cfg = init_fill_check_serve("webhook", "webhook.secret", &service.1, Some(&state));
    let dir = Path::new(&cfg).parent().unwrap().to_path_buf();
    let (served, addr) = serve_site(cfg).await;
    let url = format!("https://{addr}/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx");
    let ca = dir.join("certs/dev-ca.pem").display().to_string();
    let password = dir.join("mimservice.password").display().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(&[
            "call",
            &url,
            "PfAuthUser_5",
            "--ca",
            &ca,
            "--auth",
            "ntlm",
            "--user",
            "CONTOSO\\mimservice",
            "--password-file",
            &password,
            "--param",
            "username=mimservice@contoso.com",
            "--param",
            "countryCode=1",
            "--param",
            "phoneNumber=4255550100",
            "--param",
            "mode=voiceCall",
            "--param",
            "requireUserMatch=true",
            "--timeout",
            "30",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("PfAuthUser_5Result: true"), "{out}");
    stop(served).await;
    let trail = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(trail.contains("mimservice@contoso.com"), "{trail}");
    assert!(state.join("pfgate.db").is_file());
    assert!(!dir.join("pfgate.db").exists() && !dir.join("audit.jsonl").exists());
    drop(service);
}

/// Duo, Twilio Verify and OIDC: init, the placeholders listed exactly, filled, check-config OK,
/// and serve starts (no fake of these services is reached: nothing is authenticated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_duo_twilio_and_oidc_sites_fill_check_and_serve() {
    for (provider, secret) in [
        ("duo", "duo.skey"),
        ("twilio-verify", "twilio.token"),
        ("oidc", "oidc-client.secret"),
    ] {
        let cfg = init_fill_check_serve(provider, secret, "unused", None);
        if provider == "oidc" {
            // The step-up listener's port: free, not the 8444 written (tests run in parallel).
            let text = std::fs::read_to_string(&cfg).unwrap();
            let text = text.replace("listen = \"0.0.0.0:8444\"", "listen = \"127.0.0.1:0\"");
            std::fs::write(&cfg, text).unwrap();
        }
        let (served, _) = serve_site(cfg).await;
        stop(served).await;
    }
}
