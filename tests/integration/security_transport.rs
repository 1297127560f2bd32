//! Issue #17 (items 6-12, 14) and #23 item 11, tried as an attacker who has not signed in: nothing
//! such a client sends may starve pfgate, fill its disk, reveal which accounts exist or put a
//! credential into the log. Every test runs against a real server over real sockets on 127.0.0.1
//! (the binary where the log, the audit trail, file modes or memory are what is checked), and every
//! DoS test is bounded in time and count and measures a legitimate caller while the attack runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use pfgate::auth::basic::BasicAccount;
use pfgate::auth::policy::{OperationGroup, Policy, PrincipalRule};
use pfgate::config::{AuthSettings, Settings};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cli::{bin, plain_addr, sigterm_and_wait, spawn_serve_logging, temp_dir, write_cert};
use crate::support::*;

const USER: &str = "CONTOSO\\adfs-sdk";
const PASSWORD: &str = "Adfs&Pa55-Sup3rSecret";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn basic(user: &str, pw: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{pw}")))
}

/// A server that requires sign-in: one Basic account allowed the authentication group.
fn signed_in_settings() -> Settings {
    let mut s = Settings::demo("127.0.0.1:0".parse().unwrap());
    s.allow_anonymous = false;
    s.auth = AuthSettings {
        allow_anonymous: false,
        basic: vec![BasicAccount {
            principal: USER.into(),
            password_hash: pfgate::store::secrets::hash_pin(PASSWORD).unwrap(),
        }],
        policy: Policy::new(vec![PrincipalRule {
            name: USER.into(),
            allow: vec![OperationGroup::Authentication],
        }]),
        ..AuthSettings::default()
    };
    s
}

fn test_security_request(authz: Option<&str>, extra: &str) -> String {
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let authz = authz
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{}\"\r\n{authz}{extra}Content-Length: {}\r\n\r\n{body}",
        action("TestSecurity"),
        body.len()
    )
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) from `stream`.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned());
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request on a fresh connection; the status code, or `None` if the connection failed.
async fn one_shot<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, req: &str) -> Option<u16> {
    stream.write_all(req.as_bytes()).await.ok()?;
    let r = read_response(stream).await?;
    r.get(9..12)?.parse().ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// ---- item 9: XML namespace amplification -------------------------------------------------------

/// The body of the report: 44,000 namespace declarations on the envelope and 19,990 elements
/// using the prefix declared first (so a scan from the innermost binding walks all 44,000).
fn namespace_bomb() -> String {
    let mut decls = String::with_capacity(700_000);
    for i in 0..44_000 {
        decls.push_str(&format!(" xmlns:a{i}=\"u\""));
    }
    let elements = "<a0:x/>".repeat(19_990);
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"{decls}><soap:Body><UserExists xmlns="{NS}"><username>{elements}</username></UserExists></soap:Body></soap:Envelope>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_amplification_gets_a_fault_quickly_and_the_probe_stays_fast() {
    let s = TestServer::demo().await;
    let c = s.client();
    let bomb = namespace_bomb();
    assert!(
        bomb.len() > 800_000 && bomb.len() < 1_000_000,
        "{}",
        bomb.len()
    );
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.soap11(Some(&action("UserExists")), &bomb),
    )
    .await
    .expect("the namespace bomb is answered within 5 s");
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(
        text_of(&r.body, "faultcode").as_deref(),
        Some("soap:Client")
    );
    let fs = text_of(&r.body, "faultstring").unwrap_or_default();
    assert!(fs.contains("namespace"), "{fs}");
    let single = started.elapsed();
    assert!(single < Duration::from_secs(2), "{single:?}");

    // Four senders loop the bomb for 4 s while a legitimate probe is timed.
    let stop = Instant::now() + Duration::from_secs(4);
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (c, bomb) = (c.clone(), bomb.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while Instant::now() < stop {
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    c.soap11(Some(&action("UserExists")), &bomb),
                )
                .await;
                sent += 1;
            }
            sent
        }));
    }
    let mut probes = Vec::new();
    while Instant::now() < stop {
        let t = Instant::now();
        crate::hostile::still_serves(&c).await;
        probes.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut sent = 0;
    for s in senders {
        sent += s.await.unwrap();
    }
    let p50 = median(probes.clone());
    eprintln!(
        "namespace bomb: one answered in {single:?}; {sent} sent by 4 senders in 4 s; probe p50 {p50:?} over {}",
        probes.len()
    );
    assert!(p50 < Duration::from_secs(1), "probe p50 {p50:?}");
}

// ---- item 10: Basic timing does not tell which accounts exist -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_refusals_cost_the_same_for_unknown_users_and_empty_passwords() {
    let mut settings = signed_in_settings();
    // Every attempt must reach the password check here, not the per-address limit.
    settings.limits.failed_sign_ins_per_address = 1000;
    let s = TestServer::start(settings).await;
    let c = s.client();
    let times = |authz: String| {
        let c = c.clone();
        async move {
            let mut v = Vec::new();
            for _ in 0..7 {
                let mut stream = c.tls().await;
                let t = Instant::now();
                let status = one_shot(&mut stream, &test_security_request(Some(&authz), "")).await;
                v.push(t.elapsed());
                assert_eq!(status, Some(401));
            }
            median(v)
        }
    };
    let known_empty = times(basic(USER, "")).await;
    let unknown = times(basic("CONTOSO\\nobody", "guess")).await;
    let known_wrong = times(basic(USER, "guess")).await;
    eprintln!("Basic refusal medians: known user, empty password {known_empty:?}; unknown user {unknown:?}; known user, wrong password {known_wrong:?}");
    // Generous: the finding was a factor of 128 (0.21 ms against 26.9 ms).
    for (a, b) in [(known_empty, unknown), (known_wrong, unknown)] {
        let ratio = a.as_secs_f64().max(b.as_secs_f64()) / a.as_secs_f64().min(b.as_secs_f64());
        assert!(ratio < 4.0, "{a:?} against {b:?}");
    }
}

// ---- item 14: an oversized body before sign-in ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_before_sign_in_is_answered_413_to_a_client_that_writes_it_all_first() {
    let s = TestServer::start(signed_in_settings()).await;
    let c = s.client();
    let size = 2 * 1024 * 1024;
    for authz in [None, Some(basic(USER, PASSWORD))] {
        // As Python's http.client and .NET's HttpWebRequest do: the whole body, then read.
        let mut stream = c.tls().await;
        let head = format!(
            "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{}\"\r\n{}Content-Length: {size}\r\n\r\n",
            action("TestSecurity"),
            authz.as_ref().map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default(),
        );
        let started = Instant::now();
        let written = tokio::time::timeout(Duration::from_secs(10), async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&vec![b'x'; size]).await?;
            stream.flush().await
        })
        .await
        .expect("the body is taken within 10 s");
        assert!(
            written.is_ok(),
            "{authz:?}: writing the body failed: {written:?}"
        );
        let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
            .await
            .expect("answered within 10 s");
        let answer = answer.expect("a response, not a reset");
        assert!(answer.starts_with("HTTP/1.1 413"), "{authz:?}: {answer}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    // Announced and not sent (Expect: 100-continue): 413 at once, no 100 Continue.
    let mut stream = c.tls().await;
    let head = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nExpect: 100-continue\r\nContent-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(3), read_response(&mut stream))
        .await
        .expect("answered at once")
        .expect("a response");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

// ---- items 11 and 12 through the binary: the log and the audit trail ------------------------------

struct Gateway {
    dir: PathBuf,
    served: crate::cli::Served,
    log: PathBuf,
    trail: PathBuf,
}

impl Gateway {
    /// `pfgate serve` with TLS and plain listeners, 127.0.0.1 a trusted proxy (so Basic and the
    /// identity header are accepted on the plain listener), one Basic account, the audit trail,
    /// and `extra` appended to the configuration.
    fn start(tag: &str, extra: &str) -> Self {
        let dir = temp_dir(tag);
        write_cert(&dir);
        std::fs::write(
            dir.join("users.toml"),
            "[[users]]\nusername = \"zed@contoso.com\"\nphone = \"5550100\"\noutcome = \"hang_up\"\n",
        )
        .unwrap();
        let hash = pfgate::store::secrets::hash_pin(PASSWORD).unwrap();
        let config = dir.join("pfgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
                 plain_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
                 [directory]\nusers_file = \"users.toml\"\n\
                 [auth]\nproxy_identity_header = \"X-Forwarded-User\"\n\
                 [[auth.basic]]\nprincipal = 'CONTOSO\\adfs-sdk'\npassword_hash = '{hash}'\n\
                 [[auth.principals]]\nname = 'CONTOSO\\adfs-sdk'\nallow = [\"authentication\"]\n\
                 [[auth.principals]]\nname = 'alice'\nallow = [\"authentication\"]\n\
                 [audit]\nfile = \"audit/trail.jsonl\"\n{extra}"
            ),
        )
        .unwrap();
        let log = dir.join("stderr.log");
        let cfg = config.display().to_string();
        let served = spawn_serve_logging(
            &["serve", "--config", &cfg],
            3,
            Stdio::from(std::fs::File::create(&log).unwrap()),
        );
        let trail = dir.join("audit/trail.jsonl");
        Self {
            dir,
            served,
            log,
            trail,
        }
    }

    fn plain(&self) -> String {
        plain_addr(&self.served)
    }

    /// Stops the server; returns the log and the audit trail.
    fn stop(self) -> (String, String, PathBuf) {
        let status = sigterm_and_wait(self.served.child);
        assert!(status.success(), "{status:?}");
        let log = std::fs::read_to_string(&self.log).unwrap();
        let trail = std::fs::read_to_string(&self.trail).unwrap_or_default();
        (log, trail, self.dir)
    }
}

async fn plain_status(addr: &str, req: &str) -> Option<u16> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tokio::time::timeout(STEP, one_shot(&mut tcp, req))
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_authorization_value_reaches_the_log_or_the_audit_trail() {
    let g = Gateway::start("no-credential-in-log", "");
    let addr = g.plain();
    let token = b64(&format!("{USER}:{PASSWORD}"));
    let bearer = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.bWFjbWFjbWFj";
    let values = [
        format!("Basic\t{token}"),
        format!("Basic{token}"),
        token.clone(),
        format!("Bearer {bearer}"),
        format!("{bearer} Basic"),
        format!("Basic  \t {token}x"),
    ];
    for v in &values {
        let status = plain_status(&addr, &test_security_request(Some(v), "")).await;
        assert!(matches!(status, Some(400 | 401)), "{v}: {status:?}");
    }
    // The good value still signs in (over the trusted proxy's plain HTTP).
    let ok = plain_status(
        &addr,
        &test_security_request(Some(&basic(USER, PASSWORD)), ""),
    )
    .await;
    assert_eq!(ok, Some(200));
    let (log, trail, dir) = g.stop();
    assert!(trail.contains("caller_unauthenticated"), "{trail}");
    for secret in [
        &token[..16],
        &token[16..32],
        &token[token.len() - 12..],
        PASSWORD,
        &bearer[..20],
        &bearer[20..40],
        &bearer[40..],
    ] {
        assert!(!log.contains(secret), "the log holds '{secret}':\n{log}");
        assert!(
            !trail.contains(secret),
            "the trail holds '{secret}':\n{trail}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_identity_or_authorization_headers_are_refused_400_and_audited() {
    let g = Gateway::start("duplicate-headers", "");
    let addr = g.plain();
    let two_users = "X-Forwarded-User: alice\r\nX-Forwarded-User: CONTOSO\\mallory\r\n";
    assert_eq!(
        plain_status(&addr, &test_security_request(None, two_users)).await,
        Some(400)
    );
    // The same name written twice is still two headers.
    let same_twice = "X-Forwarded-User: alice\r\nx-forwarded-user: alice\r\n";
    assert_eq!(
        plain_status(&addr, &test_security_request(None, same_twice)).await,
        Some(400)
    );
    let two_authz = format!("Authorization: {}\r\n", basic("CONTOSO\\nobody", "x"));
    assert_eq!(
        plain_status(
            &addr,
            &test_security_request(Some(&basic(USER, PASSWORD)), &two_authz)
        )
        .await,
        Some(400)
    );
    // One of each is served.
    assert_eq!(
        plain_status(
            &addr,
            &test_security_request(None, "X-Forwarded-User: alice\r\n")
        )
        .await,
        Some(200)
    );
    assert_eq!(
        plain_status(
            &addr,
            &test_security_request(Some(&basic(USER, PASSWORD)), "")
        )
        .await,
        Some(200)
    );
    let (_, trail, dir) = g.stop();
    let duplicates = trail
        .lines()
        .filter(|l| l.contains("caller_unauthenticated") && l.contains("duplicate"))
        .count();
    assert_eq!(duplicates, 3, "{trail}");
    assert!(!trail.contains("mallory"), "{trail}");
    let _ = std::fs::remove_dir_all(dir);
}

#[allow(dead_code)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[allow(dead_code)]
fn verify_trail(path: &Path) -> std::process::Output {
    bin().args(["audit", "verify"]).arg(path).output().unwrap()
}
