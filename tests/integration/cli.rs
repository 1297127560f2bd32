//! The real binary: `--version`, `check-config`, and `serve` from the README's first command and
//! from a configuration file, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pfgate"))
}

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("pfgate-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn prints_version() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("pfgate {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Writes a throwaway certificate and key for localhost into `dir`.
pub(crate) fn write_cert(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = temp_dir("check");
    write_cert(&dir);
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         plain_listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
         [engine]\nauth_timeout_secs = 60\n[auth]\nallow_anonymous = true\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\nplain_listen = \"0.0.0.0:8080\"\ntrusted_proxies = [\"10.0.0.0/99\"]\n\
         [engine]\nauth_timeout_secs = 120\ndefault_country_code = \"+1\"\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    for key in [
        "server.listen",
        "server.plain_listen",
        "server.trusted_proxies[0]",
        "engine.auth_timeout_secs",
        "engine.default_country_code",
        "auth",
    ] {
        assert!(
            err.contains(&format!("{file}:{key}: ")),
            "missing {key} in:\n{err}"
        );
    }

    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let out = bin().arg("check-config").arg(&typo).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_addr"));

    let out = bin()
        .arg("check-config")
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Accepts exactly the certificate whose SHA-256 fingerprint the server printed, or with no pin
/// any certificate; records the SHA-256 of every leaf it saw (computed here, not by pfgate), so a
/// test can tell which certificate a handshake met.
#[derive(Debug, Default)]
pub(crate) struct Pinned {
    pin: Option<String>,
    pub(crate) seen: std::sync::Mutex<Vec<String>>,
}

impl Pinned {
    pub(crate) fn to(fingerprint: &str) -> Self {
        Self {
            pin: Some(fingerprint.to_string()),
            seen: Default::default(),
        }
    }
}

/// `AB:CD:…` upper-case SHA-256 of a certificate.
pub(crate) fn sha256_colons(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = sha256_colons(end_entity);
        self.seen.lock().unwrap().push(seen.clone());
        match &self.pin {
            Some(pin) if !pin.eq_ignore_ascii_case(&seen) => {
                Err(rustls::Error::General("fingerprint mismatch".into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) lines: Vec<String>,
}

/// Starts `pfgate` with `args` and reads stdout until the listening lines are printed.
pub(crate) fn spawn_serve(args: &[&str], wanted: usize) -> Served {
    spawn_serve_logging(args, wanted, Stdio::null())
}

/// As [`spawn_serve`], with the log (stderr) going to `stderr`.
pub(crate) fn spawn_serve_logging(args: &[&str], wanted: usize, stderr: Stdio) -> Served {
    spawn_serve_env(args, wanted, stderr, &[])
}

/// As [`spawn_serve_logging`], with extra environment variables.
pub(crate) fn spawn_serve_env(
    args: &[&str],
    wanted: usize,
    stderr: Stdio,
    env: &[(&str, &str)],
) -> Served {
    let mut child = bin()
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < wanted {
        match rx.recv_timeout(STEP) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("pfgate printed only {lines:?}");
            }
        }
    }
    Served { child, lines }
}

pub(crate) fn sigterm_and_wait(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("pfgate did not exit within 10 s of SIGTERM");
}

pub(crate) async fn test_security_over(addr: &str, fingerprint: &str) -> String {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned::to(fingerprint)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let req = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        action("TestSecurity"),
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_command_from_the_readme_serves_and_stops_on_sigterm() {
    let dir = temp_dir("demo-log");
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let served = tokio::task::spawn_blocking(|| {
        spawn_serve_logging(
            &["serve", "--demo", "--listen", "127.0.0.1:0"],
            2,
            Stdio::from(log),
        )
    })
    .await
    .unwrap();
    let url_line = &served.lines[0];
    let url = url_line.rsplit(' ').next().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url_line}");
    assert!(url.ends_with(SDK_PATH), "{url_line}");
    let fingerprint = served.lines[1]
        .strip_prefix("TLS certificate SHA-256 fingerprint: ")
        .unwrap()
        .to_string();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    let addr = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let answer = test_security_over(&addr, &fingerprint).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<TestSecurityResult>secure</TestSecurityResult>"));
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The access line is written off the request path; the shutdown flushes whatever is pending.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pfgate::access"))
        .collect();
    assert_eq!(access.len(), 1, "{log}");
    for field in [
        " request method=POST ",
        &format!(" path={SDK_PATH} "),
        " caller=127.0.0.1 ",
        " operation=TestSecurity ",
        " status=200 ",
        " outcome=true ",
        " latency_us=",
    ] {
        assert!(
            access[0].contains(field),
            "{field} missing from {}",
            access[0]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_from_a_config_file_with_tls_and_plain_listeners() {
    let dir = temp_dir("serve");
    let (cert, _) = write_cert(&dir);
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        "[[users]]\nusername = \"zed@contoso.com\"\nphone = \"5550100\"\noutcome = \"hang_up\"\n",
    )
    .unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         plain_listen = \"127.0.0.1:0\"\n[directory]\nusers_file = \"users.toml\"\n[auth]\nallow_anonymous = true\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let cfg = config.display().to_string();
    let served = tokio::task::spawn_blocking(move || spawn_serve(&["serve", "--config", &cfg], 3))
        .await
        .unwrap();
    // Plain HTTP: a user from the configured users file.
    let text = pfauthuser4_plain(&plain_addr(&served)).await;
    assert!(
        text.contains("<PfAuthUser_4Result>false</PfAuthUser_4Result>"),
        "{text}"
    );
    assert!(text.contains("<callResult><Code>108</Code>"), "{text}");
    // TLS with the configured certificate.
    let fp = served.lines[1]
        .strip_prefix("TLS certificate SHA-256 fingerprint: ")
        .map(str::to_string);
    let tls_addr = listen_addr(&served, "https://");
    let pem = std::fs::read(&cert).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let expected_fp = pfgate::net::tls::fingerprint(&der);
    assert!(
        served.lines.iter().any(|l| l.ends_with(&expected_fp)),
        "{:?} {fp:?}",
        served.lines
    );
    let answer = test_security_over(&tls_addr, &expected_fp).await;
    assert!(
        answer.contains("<TestSecurityResult>secure</TestSecurityResult>"),
        "{answer}"
    );
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_import_is_idempotent_export_has_no_secrets_and_serve_uses_the_store() {
    let dir = temp_dir("users");
    write_cert(&dir);
    std::fs::write(dir.join("secrets.key"), [7u8; 32]).unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[store]\npath = \"pfgate.db\"\nsecrets_key_file = \"secrets.key\"\n[auth]\nallow_anonymous = true\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let csv = dir.join("users.csv");
    std::fs::write(
        &csv,
        "username,first_name,country_code,phone,mode,pin,static_token,blocked,block_reason\n\
         gina@contoso.com,Gina,1,425 555 0160,voiceCall,2580,tok-3f9a,false,\n\
         \"hal, the admin\",Hal,44,020 7946 0000,smsText,,,true,left\n\
         bad@contoso.com,Bad,1,4255550100,fax,,,,\n",
    )
    .unwrap();
    let import = || {
        bin()
            .args(["users", "import"])
            .arg(&csv)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let first = import();
    let (out, err) = (
        String::from_utf8_lossy(&first.stdout).to_string(),
        String::from_utf8_lossy(&first.stderr).to_string(),
    );
    assert_eq!(
        first.status.code(),
        Some(1),
        "a refused row makes the exit code 1: {out} {err}"
    );
    assert!(
        out.contains("2 added, 0 updated, 0 already present, 1 rows refused"),
        "{out}"
    );
    assert!(
        err.contains(&format!("{}:4: column mode: 'fax'", csv.display())),
        "{err}"
    );
    let second = import();
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("0 added, 0 updated, 2 already present"),
        "importing twice changes nothing"
    );
    // The secrets are not in the database file in clear.
    let db = std::fs::read(dir.join("pfgate.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains("tok-3f9a") && !db.contains("2580"));

    let export = bin()
        .args(["users", "export", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(export.status.success());
    let text = String::from_utf8_lossy(&export.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("username,first_name,"));
    assert!(text.contains("gina@contoso.com,Gina,"));
    assert!(text.contains("\"hal, the admin\",Hal,"));
    assert!(text.contains(",true,left"), "block exported: {text}");
    assert!(
        !text.contains("tok-3f9a") && !text.contains("2580"),
        "no secrets exported"
    );

    // The served engine reads the same store.
    let cfg = config.display().to_string();
    let served = tokio::task::spawn_blocking(move || spawn_serve(&["serve", "--config", &cfg], 1))
        .await
        .unwrap();
    let addr = plain_addr(&served);
    for (user, expect) in [
        ("gina@contoso.com", "<callResult><Code>2</Code>"),
        ("hal, the admin", "<callResult><Code>14</Code>"),
    ] {
        let body = env11(&format!(
            r#"<PfAuthUser_4 xmlns="{NS}"><username>{user}</username><requireUserMatch>true</requireUserMatch></PfAuthUser_4>"#
        ));
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nSOAPAction: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            action("PfAuthUser_4"),
            body.len()
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(expect), "{user}: {text}");
    }
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success());
}

/// The `external_id` column (the IdP's `oid` for the OIDC step-up provider) through the real
/// binary: imported lower case, a second user with the same id refused as a row, exported in the
/// last column, the export imported again unchanged; a CSV without the column (written before it
/// existed) loads and keeps the stored ids even with `--update`; an empty cell clears one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_csv_external_id_round_trip_with_and_without_the_column() {
    const OID: &str = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
    let dir = temp_dir("users-extid");
    std::fs::write(dir.join("secrets.key"), [7u8; 32]).unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[store]\npath = \"pfgate.db\"\nsecrets_key_file = \"secrets.key\"\n[auth]\nallow_anonymous = true\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let run = |args: &[&str], csv: Option<&std::path::Path>| {
        let mut cmd = bin();
        cmd.args(["users"]).args(args);
        if let Some(f) = csv {
            cmd.arg(f);
        }
        let out = cmd.arg("--config").arg(&config).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let export = || {
        let (code, out, err) = run(&["export"], None);
        assert_eq!(code, Some(0), "{err}");
        out
    };
    let line_of = |text: &str, user: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(user))
            .unwrap_or_else(|| panic!("{user} in {text}"))
            .to_string()
    };

    let with = dir.join("with.csv");
    std::fs::write(
        &with,
        format!(
            "username,first_name,external_id\n\
             gina@contoso.com,Gina,  {OID} \n\
             hal@contoso.com,Hal,\n\
             ivan@contoso.com,Ivan,{}\n",
            OID.to_lowercase()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["import"], Some(&with));
    assert_eq!(code, Some(1), "a refused row: {out} {err}");
    assert!(
        out.contains("2 added, 0 updated, 0 already present, 1 rows refused"),
        "{out}"
    );
    assert!(
        err.contains(&format!(
            "{}:4: column the external id '{}' is already held by user 'gina@contoso.com'",
            with.display(),
            OID.to_lowercase()
        )),
        "{err}"
    );

    let first = export();
    let header = first.lines().next().unwrap();
    assert!(header.ends_with(",block_reason,external_id"), "{header}");
    assert!(
        line_of(&first, "gina@contoso.com").ends_with(&format!(",{}", OID.to_lowercase())),
        "{first}"
    );
    assert!(line_of(&first, "hal@contoso.com").ends_with(','), "{first}");
    assert!(!first.contains("ivan@"), "{first}");

    // The export is an import file: importing it again (even with --update) changes nothing.
    let exported = dir.join("exported.csv");
    std::fs::write(&exported, &first).unwrap();
    let (code, out, err) = run(&["import", "--update"], Some(&exported));
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(out.contains("0 added, 2 updated"), "{out}");
    assert_eq!(export(), first);

    // A CSV from before the column: loads, and --update keeps the stored external id.
    let old = dir.join("old.csv");
    std::fs::write(
        &old,
        "username,first_name,phone\ngina@contoso.com,Gina B.,4255550160\njo@contoso.com,Jo,1\n",
    )
    .unwrap();
    let (code, out, err) = run(&["import", "--update"], Some(&old));
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(out.contains("1 added, 1 updated"), "{out}");
    let after = export();
    let gina = line_of(&after, "gina@contoso.com");
    assert!(gina.contains("Gina B."), "{gina}");
    assert!(
        gina.ends_with(&format!(",{}", OID.to_lowercase())),
        "{gina}"
    );
    assert!(line_of(&after, "jo@contoso.com").ends_with(','), "{after}");

    // With the column, an empty cell clears it; the id is then free for another user.
    let clear = dir.join("clear.csv");
    std::fs::write(
        &clear,
        format!("username,external_id\ngina@contoso.com,\nivan@contoso.com,{OID}\n"),
    )
    .unwrap();
    let (code, out, err) = run(&["import", "--update"], Some(&clear));
    assert_eq!(code, Some(0), "{out} {err}");
    let last = export();
    assert!(line_of(&last, "gina@contoso.com").ends_with(','), "{last}");
    assert!(
        line_of(&last, "ivan@contoso.com").ends_with(&format!(",{}", OID.to_lowercase())),
        "{last}"
    );
}

/// One PfAuthUser_4 for zed over plain HTTP on `addr`; returns the response text.
async fn pfauthuser4_plain(addr: &str) -> String {
    let body = env11(&format!(
        r#"<PfAuthUser_4 xmlns="{NS}"><username>zed@contoso.com</username><requireUserMatch>true</requireUserMatch></PfAuthUser_4>"#
    ));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nSOAPAction: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        action("PfAuthUser_4"),
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `host:port` of the listener whose "listening on SCHEME…" line pfgate printed.
pub(crate) fn listen_addr(served: &Served, scheme: &str) -> String {
    let line = served
        .lines
        .iter()
        .find(|l| l.contains(&format!("listening on {scheme}")))
        .unwrap();
    line.split(' ')
        .find(|w| w.starts_with(scheme))
        .unwrap()
        .trim_start_matches(scheme)
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

pub(crate) fn plain_addr(served: &Served) -> String {
    listen_addr(served, "http://")
}

/// The audit trail through the real binary: every decision lands in the hash-chained file, the
/// chain continues across a restart, `pfgate audit verify` accepts it, and an edited or removed
/// line is reported with its line number and exit status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_is_chained_across_restarts_and_verify_finds_edits() {
    let dir = temp_dir("audit");
    write_cert(&dir);
    std::fs::write(
        dir.join("users.toml"),
        "[[users]]\nusername = \"zed@contoso.com\"\nphone = \"5550100\"\noutcome = \"hang_up\"\n",
    )
    .unwrap();
    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         plain_listen = \"127.0.0.1:0\"\n[directory]\nusers_file = \"users.toml\"\n\
         [auth]\nallow_anonymous = true\n[audit]\nfile = \"audit/trail.jsonl\"\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let trail = dir.join("audit/trail.jsonl");
    for round in 0..2 {
        let cfg = config.display().to_string();
        let served =
            tokio::task::spawn_blocking(move || spawn_serve(&["serve", "--config", &cfg], 3))
                .await
                .unwrap();
        let addr = plain_addr(&served);
        for _ in 0..2 {
            let text = pfauthuser4_plain(&addr).await;
            assert!(
                text.contains("<PfAuthUser_4Result>false</PfAuthUser_4Result>"),
                "{text}"
            );
        }
        let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
            .await
            .unwrap();
        assert!(status.success(), "round {round}: {status:?}");
    }
    let text = std::fs::read_to_string(&trail).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i as u64, "{line}");
        assert_eq!(v["event"], "second_factor_failed", "{line}");
        assert_eq!(v["username"], "zed@contoso.com");
        // The phone is masked, as in the log.
        assert!(!line.contains("5550100"), "{line}");
    }
    let verify =
        |path: &std::path::Path| bin().args(["audit", "verify"]).arg(path).output().unwrap();
    let ok = verify(&trail);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("chain intact: 4 records"));

    // An edited decision: caught on its own line.
    std::fs::write(
        &trail,
        text.replacen("second_factor_failed", "second_factor_completed", 2),
    )
    .unwrap();
    let bad = verify(&trail);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(
        err.contains("trail.jsonl:1:") && err.contains("edited"),
        "{err}"
    );

    // A removed record: caught at the next one.
    std::fs::write(
        &trail,
        format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]),
    )
    .unwrap();
    let bad = verify(&trail);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(
        err.contains("trail.jsonl:2:") && err.contains("prev"),
        "{err}"
    );

    // A trail that cannot be continued stops the start instead of serving unaccounted.
    std::fs::write(&trail, &text[..text.len() - 3]).unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit trail"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pfgate mim check` on the two shapes of MfaSettings.xml found in the field (cloud SDK keys; an
/// on-premises MFA Server through LOCMFA): it explains, writes nothing without `--write`, and with
/// it keeps a byte-identical backup and leaves a file that needs no further change.
#[test]
fn mim_check_explains_and_writes_only_when_asked() {
    const URL: &str = "https://pfgate.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mim");
    for (sample, expected) in [
        ("MfaSettings.cloud.xml", "LOCMFA is absent"),
        (
            "MfaSettings.locmfa.xml",
            "LOCMFASRV is https://CORPSERVICE.contoso.com:9999",
        ),
    ] {
        let dir = temp_dir("mim");
        let file = dir.join("MfaSettings.xml");
        std::fs::copy(root.join(sample), &file).unwrap();
        let original = std::fs::read(&file).unwrap();
        // The cloud file has only the cloud SDK's `<username>`: LOCMFA needs `<Username>`.
        let out = bin()
            .args(["mim", "check"])
            .arg(&file)
            .args(["--url", URL, "--username", "mimservice@contoso.com"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{sample}: {out:?}");
        assert!(text.contains(expected), "{sample}: {text}");
        assert!(text.contains("LOCMFASRV: "), "{sample}: {text}");
        assert!(text.contains("Nothing was written"), "{sample}: {text}");
        assert!(
            !text.contains("NotARealPassword"),
            "a password is never printed"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            original,
            "{sample}: written without --write"
        );

        let out = bin()
            .args(["mim", "check"])
            .arg(&file)
            .args(["--url", URL, "--write"])
            .args(["--username", "mimservice@contoso.com"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sample}: {out:?}");
        let backups: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".pfgate-backup-"))
            .collect();
        assert_eq!(backups.len(), 1, "{sample}");
        assert_eq!(std::fs::read(backups[0].path()).unwrap(), original);
        let updated = std::fs::read_to_string(&file).unwrap();
        assert!(
            updated.contains(&format!("<LOCMFASRV>{URL}</LOCMFASRV>")),
            "{updated}"
        );
        assert!(updated.contains("<LOCMFA>true</LOCMFA>"), "{updated}");
        assert!(
            updated.contains("<CERT_PASSWORD></CERT_PASSWORD>"),
            "{updated}"
        );
        // Everything else stays as it was (comments, line endings).
        assert!(updated.contains("<!-- MIM 2016 MfaSettings.xml"));
        assert!(updated.matches("\r\n").count() >= 8);
        let again = bin()
            .args(["mim", "check"])
            .arg(&file)
            .args(["--url", URL])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&again.stdout).contains("No change needed"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `pfgate cert dev` makes a CA and a server certificate that a verifying client accepts from a
/// running pfgate (trusting only the CA, by host name — no pinning); keys are owner-only, and
/// existing files are not replaced without --force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_dev_makes_a_ca_whose_server_certificate_verifies() {
    use rustls::pki_types::pem::PemObject;
    let dir = temp_dir("certdev");
    let certs = dir.join("certs");
    let out = bin()
        .args(["cert", "dev", "--dir"])
        .arg(&certs)
        .args(["--host", "mfa.contoso.test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    #[cfg(unix)]
    for key in ["dev-ca-key.pem", "dev-server-key.pem"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(certs.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
    }
    let again = bin()
        .args(["cert", "dev", "--dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let config = dir.join("pfgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"certs/dev-server.pem\"\n\
         tls_key = \"certs/dev-server-key.pem\"\n[auth]\nallow_anonymous = true\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
    )
    .unwrap();
    let cfg = config.display().to_string();
    let served = tokio::task::spawn_blocking(move || spawn_serve(&["serve", "--config", &cfg], 2))
        .await
        .unwrap();
    let addr = listen_addr(&served, "https://");
    let ca = std::fs::read(certs.join("dev-ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    for (name, ok) in [
        ("localhost", true),
        ("mfa.contoso.test", true),
        ("other.contoso.test", false),
    ] {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let connected = connector
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
            .await;
        assert_eq!(connected.is_ok(), ok, "{name}");
        if let Ok(mut tls) = connected {
            let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
            let req = format!(
                "POST {SDK_PATH} HTTP/1.1\r\nHost: {name}\r\nContent-Type: text/xml\r\nSOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                action("TestSecurity"),
                body.len()
            );
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.contains("<TestSecurityResult>secure</TestSecurityResult>"),
                "{text}"
            );
        }
    }
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(served.child))
        .await
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped systemd unit passes `systemd-analyze verify` with no complaint (its ExecStart
/// pointed at the binary under test), and the check can fail: a misspelt directive is reported.
#[test]
fn systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        if std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("systemd-analyze is required (PFGATE_REQUIRE_INTEROP=1)");
        }
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Tools("systemd-analyze"),
            "systemd_unit_verifies",
            "not found",
        );
        return;
    };
    assert!(probe.status.success());
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/pfgate.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/pfgate serve --config"));
    let unit = unit.replace("/usr/local/bin/pfgate", env!("CARGO_BIN_EXE_pfgate"));
    let verify = |text: &str| {
        let dir = temp_dir("systemd");
        let path = dir.join("pfgate.service");
        std::fs::write(&path, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, complaints) = verify(&unit);
    assert!(ok && complaints.trim().is_empty(), "{complaints}");
    let (_, complaints) = verify(&unit.replace("ProtectHome=yes", "ProtectHomme=yes"));
    assert!(complaints.contains("ProtectHomme"), "{complaints}");
}
