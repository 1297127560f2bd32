//! Reload and shutdown through the real binary (issue #8): a good file is swapped in and a
//! keep-alive connection follows it, a bad file and a restart-only change are refused with a log
//! line naming file, key and reason while the old configuration stays in force, a renewed
//! certificate is served to new connections while an established one stays usable, `SIGHUP`
//! re-reads the users file, and `SIGTERM` lets authentications finish within the grace period and
//! answers the rest "timed out" before exiting 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{
    listen_addr, plain_addr, sha256_colons, sigterm_and_wait, spawn_serve_env, temp_dir,
    write_cert, Pinned, Served,
};
use crate::support::*;

fn pem_sha256(cert_pem: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(cert_pem).unwrap();
    sha256_colons(&der)
}

/// One kept-alive TLS connection to pfgate.
struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    async fn open(addr: &str, seen: Arc<Pinned>) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(seen)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    /// `TestSecurity` on this connection: the HTTP status.
    async fn test_security(&mut self) -> u16 {
        let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
        let req = http::Request::post(SDK_PATH)
            .header("host", "localhost")
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", format!("\"{}\"", action("TestSecurity")))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        send_on(&mut self.sender, req).await.status
    }
}

/// Waits until the log file holds `count` lines containing every one of `needles`; returns the
/// last such line.
pub(crate) fn wait_for_log(log: &Path, needles: &[&str], count: usize) -> String {
    for _ in 0..300 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect();
        if hits.len() >= count {
            return hits[count - 1].to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no {count} log lines with {needles:?} within 30 s; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn config_text(allow: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [auth]\nallow_anonymous = true\n\
         [[auth.principals]]\nname = \"anonymous\"\nallow = [{allow}]\n{extra}\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n"
    )
}

/// Writes through a temporary file and a rename, as configuration management does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn serve_logged(dir: &Path, args: &[&str], wanted: usize) -> (Served, PathBuf) {
    let log = dir.join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    // Info, and the scripted provider's "call placed" lines (how the shutdown test knows its
    // calls are under way before it sends SIGTERM).
    let env = [("RUST_LOG", "info,pfgate::provider::scripted=debug")];
    let served = spawn_serve_env(args, wanted, Stdio::from(file), &env);
    (served, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_a_bad_one_refused_and_a_renewed_certificate_served() {
    let dir = temp_dir("reload");
    let (cert, _key) = write_cert(&dir);
    let first_cert = pem_sha256(&cert);
    let config = dir.join("pfgate.toml");
    std::fs::write(&config, config_text("\"directory_read\"", "")).unwrap();
    let (served, log) = serve_logged(&dir, &["serve", "--config", config.to_str().unwrap()], 2);
    let addr = listen_addr(&served, "https://");
    let seen = Arc::new(Pinned::default());
    let mut kept = KeepAlive::open(&addr, seen.clone()).await;
    // anonymous may read the directory but not authenticate: TestSecurity is refused.
    assert_eq!(kept.test_security().await, 403);

    // A good change: the same kept-alive connection follows it from its next request.
    replace(&config, &config_text("\"authentication\"", ""));
    wait_for_log(&log, &["configuration reloaded", "file changed"], 1);
    assert_eq!(kept.test_security().await, 200);

    // A bad file: refused with file, key and reason; the configuration in force stays.
    replace(
        &config,
        &config_text("\"directory_read\"", "[engine]\nauth_timeout_secs = 500\n"),
    );
    let line = wait_for_log(&log, &["configuration refused"], 1);
    assert!(line.contains(config.to_str().unwrap()), "{line}");
    assert!(line.contains("engine.auth_timeout_secs"), "{line}");
    assert!(line.contains("out of range"), "{line}");
    assert_eq!(
        kept.test_security().await,
        200,
        "the old configuration stays"
    );
    // Both are audit events too (a configuration change is a security event).
    wait_for_log(
        &log,
        &["pfgate::audit", "config_reloaded", "file changed"],
        1,
    );
    wait_for_log(
        &log,
        &[
            "pfgate::audit",
            "config_refused",
            "engine.auth_timeout_secs",
        ],
        1,
    );

    // A key that only takes effect at start-up refuses the whole reload (no half-applied file).
    replace(
        &config,
        &config_text("\"directory_read\"", "")
            .replace("[auth]", "plain_listen = \"127.0.0.1:0\"\n[auth]"),
    );
    let line = wait_for_log(&log, &["configuration refused"], 2);
    assert!(line.contains("server.plain_listen"), "{line}");
    assert!(line.contains("needs a restart"), "{line}");
    assert_eq!(
        kept.test_security().await,
        200,
        "the old configuration stays"
    );

    // A renewed certificate (as certbot writes it): new connections get it, the established one
    // keeps working.
    replace(&config, &config_text("\"authentication\"", ""));
    wait_for_log(&log, &["configuration reloaded"], 2);
    let renewal = temp_dir("reload-renewed");
    let (new_cert, new_key) = write_cert(&renewal);
    let second_cert = pem_sha256(&new_cert);
    assert_ne!(first_cert, second_cert);
    std::fs::copy(&new_key, dir.join("key.pem.new")).unwrap();
    std::fs::copy(&new_cert, dir.join("cert.pem.new")).unwrap();
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    let line = wait_for_log(&log, &["configuration reloaded", &second_cert], 1);
    assert!(line.contains("file changed"), "{line}");
    assert_eq!(
        kept.test_security().await,
        200,
        "the established connection stays usable"
    );
    let mut fresh = KeepAlive::open(&addr, seen.clone()).await;
    assert_eq!(fresh.test_security().await, 200);
    assert_eq!(
        seen.seen.lock().unwrap().clone(),
        vec![first_cert, second_cert],
        "the first connection saw the first certificate, the new one the renewed certificate"
    );

    let status = sigterm_and_wait(served.child);
    assert!(status.success(), "{status:?}");
}

fn users_file(extra_user: Option<&str>) -> String {
    let mut text = String::from(
        "[[users]]\nusername = \"quick@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n\
         outcome = \"approve\"\ndelay_ms = 2000\n\
         [[users]]\nusername = \"slow@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550101\"\n\
         outcome = \"approve\"\ndelay_ms = 60000\n",
    );
    if let Some(u) = extra_user {
        text.push_str(&format!(
            "[[users]]\nusername = \"{u}\"\ncountry_code = \"1\"\nphone = \"4255550102\"\noutcome = \"approve\"\n"
        ));
    }
    text
}

fn plain_config(grace: u64) -> String {
    format!(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[limits]\nshutdown_grace_secs = {grace}\n\
         [directory]\nusers_file = \"users.toml\"\n[auth]\nallow_anonymous = true\n\
         [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n"
    )
}

/// One SOAP 1.1 call over plain HTTP on a new connection; the response body.
async fn call_plain(addr: &str, op: &str, inner: &str) -> String {
    let body = env11(&format!(r#"<{op} xmlns="{NS}">{inner}</{op}>"#));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        action(op),
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), tcp.read_to_end(&mut out))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

async fn user_exists(addr: &str, user: &str) -> Option<String> {
    let out = call_plain(addr, "UserExists", &format!("<username>{user}</username>")).await;
    text_of(
        out.split("\r\n\r\n").nth(1).unwrap_or(""),
        "UserExistsResult",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_the_users_file_again() {
    let dir = temp_dir("sighup");
    std::fs::write(dir.join("users.toml"), users_file(None)).unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(&config, plain_config(1)).unwrap();
    let (served, log) = serve_logged(&dir, &["serve", "--config", config.to_str().unwrap()], 1);
    let addr = plain_addr(&served);
    assert_eq!(
        user_exists(&addr, "carol@contoso.com").await.as_deref(),
        Some("false")
    );
    // The users file is not watched (only the configuration and TLS files are): SIGHUP it is.
    std::fs::write(
        dir.join("users.toml"),
        users_file(Some("carol@contoso.com")),
    )
    .unwrap();
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for_log(&log, &["configuration reloaded", "SIGHUP"], 1);
    assert_eq!(
        user_exists(&addr, "carol@contoso.com").await.as_deref(),
        Some("true")
    );
    let status = sigterm_and_wait(served.child);
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_authentications_finish_within_the_grace_period_and_times_out_the_rest() {
    let dir = temp_dir("grace");
    std::fs::write(dir.join("users.toml"), users_file(None)).unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(&config, plain_config(4)).unwrap();
    let (served, log) = serve_logged(&dir, &["serve", "--config", config.to_str().unwrap()], 1);
    let addr = plain_addr(&served);
    let auth = |user: &'static str| {
        let addr = addr.clone();
        tokio::spawn(async move {
            call_plain(
                &addr,
                "PfAuthUser_4",
                &format!("<username>{user}</username><requireUserMatch>true</requireUserMatch>"),
            )
            .await
        })
    };
    let quick = auth("quick@contoso.com");
    let slow = auth("slow@contoso.com");
    // Both calls are placed (the scripted provider is waiting on them) before the stop.
    wait_for_log(&log, &["scripted call placed", "quick@contoso.com"], 1);
    wait_for_log(&log, &["scripted call placed", "slow@contoso.com"], 1);
    let child = served.child;
    let waiter = std::thread::spawn(move || sigterm_and_wait(child));

    let quick = quick.await.unwrap();
    assert!(quick.starts_with("HTTP/1.1 200"), "{quick}");
    let body = quick.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        text_of(body, "PfAuthUser_4Result").as_deref(),
        Some("true"),
        "{body}"
    );

    let slow = slow.await.unwrap();
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    let body = slow.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        text_of(body, "PfAuthUser_4Result").as_deref(),
        Some("false"),
        "{body}"
    );
    let doc = parse_xml(body);
    let code = doc
        .descendants()
        .find(|n| n.has_tag_name("callResult"))
        .and_then(|n| n.children().find(|c| c.has_tag_name("Code")))
        .and_then(|c| c.text())
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("11"), "Call Timed Out: {body}");

    let status = waiter.join().unwrap();
    assert!(status.success(), "exit 0 after the stop: {status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shutdown grace period ended"), "{text}");
}
