//! Kerberos through `Negotiate` (feature `kerberos`) against a real MIT KDC.
//!
//! Each test makes its own realm in a temporary directory: `kdb5_util create -s`, principals and
//! keytabs with `kadmin.local`, and `krb5kdc -n` as a child on a free loopback port, killed on
//! drop. The client is real too: `kinit` (password on stdin) into a private credential cache,
//! then `curl --negotiate` (MIT GSS-API, SPNEGO), against two servers:
//!
//! * the real `pfgate` binary (`pfgate serve --config`, TLS, `[auth.kerberos]` and `[auth.ntlm]`,
//!   an allow-list): SOAP `TestSecurity` with a ticket, a principal off the allow-list, the wrong
//!   service, tampered, replayed, bare (not SPNEGO-wrapped) and Windows-OID tokens, NTLM on the
//!   same build, and the audit log ([`Pfgate`], the `pfgate_*` tests);
//! * a small HTTP server around [`KerberosAcceptor`] alone, for the acceptor's own edge cases.
//!
//! The acceptor runs in a child process: this test binary re-run with `PFGATE_KRB_CHILD` set
//! (see [`child_acceptor_server`]). `KerberosAcceptor::new` sets `KRB5_KTNAME` for its process,
//! and tests in this binary run in parallel threads, so that write must not happen here. All
//! `KRB5_*` variables reach children through `Command::env` only.
//!
//! Skips with a `SKIP` line when the MIT KDC tools or a GSS-API curl are missing, unless
//! `PFGATE_REQUIRE_INTEROP=1`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use pfgate::auth::kerberos::{
    KerberosAcceptor, KerberosContext, KerberosOutcome, KerberosSettings,
};

const REALM: &str = "PFGATE.TEST";
const USER: &str = "alice";
const USER_PASSWORD: &str = "Al1ce-Kerberos!pw";
/// A second Kerberos user, who is not on pfgate's allow-list.
const OTHER_USER: &str = "bob";
const OTHER_PASSWORD: &str = "B0b-Kerberos!pw";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn required() -> bool {
    std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() == Ok("1")
}

/// `None` when everything the tests need is here, else what is missing.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    for tool in ["krb5kdc", "kdb5_util", "kadmin.local", "kinit"] {
        if which(tool).is_none() {
            missing.push(tool.to_string());
        }
    }
    match Command::new("curl").arg("--version").output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("GSS-API") => {}
        Ok(_) => missing.push("curl with GSS-API".into()),
        Err(_) => missing.push("curl".into()),
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Skips (or panics under `PFGATE_REQUIRE_INTEROP=1`) when the tools are missing.
fn ready(test: &str) -> bool {
    if let Some(m) = missing_tools() {
        assert!(
            !required(),
            "{test}: PFGATE_REQUIRE_INTEROP=1 but missing {m} (Debian: krb5-kdc krb5-admin-server \
             krb5-user curl; run .ci/install-deps)"
        );
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Kerberos,
            test,
            &format!("missing {m}"),
        );
        return false;
    }
    true
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("{name} not found"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pfgate-krb-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("rcache")).unwrap();
    d
}

/// A loopback port free for both TCP and UDP right now.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn run_ok(what: &str, cmd: &mut Command, stdin: Option<&str>) -> String {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}): {text}",
        out.status
    );
    text
}

// ---------------------------------------------------------------------------------------------
// The realm: a real MIT KDC
// ---------------------------------------------------------------------------------------------

/// A test realm with `alice` (password), `HTTP/localhost` and `HTTP/otherhost`, and keytabs
/// `http.keytab` (HTTP/localhost only) and `both.keytab` (both services).
struct Kdc {
    dir: PathBuf,
    child: Child,
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept after a failure: kdc.log, each acceptor's child.out/child.err and tokens.log.
        if !std::thread::panicking() && std::env::var_os("PFGATE_KEEP_KRB_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Kdc {
    fn start(tag: &str) -> Kdc {
        let dir = temp_dir(tag);
        let mut last = String::new();
        // A port found free can be taken before the KDC binds it: retry on a new one.
        for _ in 0..3 {
            let port = free_port();
            let fill = |t: &str| {
                t.replace("@REALM@", REALM)
                    .replace("@PORT@", &port.to_string())
                    .replace("@DIR@", dir.to_str().unwrap())
            };
            std::fs::write(
                dir.join("krb5.conf"),
                fill(include_str!("../kerberos/krb5.conf.in")),
            )
            .unwrap();
            std::fs::write(
                dir.join("kdc.conf"),
                fill(include_str!("../kerberos/kdc.conf.in")),
            )
            .unwrap();
            if !dir.join("principal").exists() {
                Self::create_database(&dir);
            }
            let mut child = Command::new(tool("krb5kdc"))
                .args(["-n", "-r", REALM])
                .env("KRB5_CONFIG", dir.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", dir.join("kdc.conf"))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("krb5kdc.out")).unwrap())
                .stderr(std::fs::File::create(dir.join("krb5kdc.err")).unwrap())
                .spawn()
                .unwrap();
            let start = Instant::now();
            let up = loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(15)
                {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if up {
                return Kdc { dir, child };
            }
            let _ = child.kill();
            let _ = child.wait();
            last = format!(
                "{}{}{}",
                read(&dir.join("krb5kdc.out")),
                read(&dir.join("krb5kdc.err")),
                read(&dir.join("kdc.log"))
            );
        }
        panic!("krb5kdc did not start: {last}");
    }

    fn create_database(dir: &Path) {
        let kdb = |cmd: &mut Command| {
            cmd.env("KRB5_CONFIG", dir.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", dir.join("kdc.conf"));
        };
        let mut c = Command::new(tool("kdb5_util"));
        c.args(["-r", REALM, "create", "-s", "-P", "master-key-pw"]);
        kdb(&mut c);
        run_ok("kdb5_util create", &mut c, None);
        let http = dir.join("http.keytab");
        let both = dir.join("both.keytab");
        for q in [
            format!("addprinc -pw {USER_PASSWORD} {USER}"),
            format!("addprinc -pw {OTHER_PASSWORD} {OTHER_USER}"),
            "addprinc -randkey HTTP/localhost".into(),
            "addprinc -randkey HTTP/otherhost".into(),
            // -norandkey: the same keys in both keytabs (ktadd would otherwise rekey).
            format!("ktadd -k {} -norandkey HTTP/localhost", http.display()),
            format!(
                "ktadd -k {} -norandkey HTTP/localhost HTTP/otherhost",
                both.display()
            ),
        ] {
            let mut c = Command::new(tool("kadmin.local"));
            c.args(["-r", REALM, "-q", &q]);
            kdb(&mut c);
            let out = run_ok(&format!("kadmin.local -q {q:?}"), &mut c, None);
            assert!(
                !out.contains("kadmin.local: "),
                "kadmin.local -q {q:?}: {out}"
            );
        }
    }

    fn krb5_conf(&self) -> PathBuf {
        self.dir.join("krb5.conf")
    }

    /// `kinit alice` into a new credential cache, the password on stdin.
    fn kinit(&self, name: &str) -> PathBuf {
        self.kinit_as(USER, USER_PASSWORD, name)
    }

    /// `kinit user` into a new credential cache named `name`.
    fn kinit_as(&self, user: &str, password: &str, name: &str) -> PathBuf {
        let cache = self.dir.join(format!("{name}.ccache"));
        run_ok(
            "kinit",
            Command::new(tool("kinit"))
                .arg(format!("{user}@{REALM}"))
                .env("KRB5_CONFIG", self.krb5_conf())
                .env("KRB5CCNAME", format!("FILE:{}", cache.display())),
            Some(&format!("{password}\n")),
        );
        cache
    }
}

// ---------------------------------------------------------------------------------------------
// The acceptor: this binary re-run as a small HTTP server
// ---------------------------------------------------------------------------------------------

/// A child process serving HTTP on loopback with a [`KerberosAcceptor`]:
/// `GET /` runs a per-connection [`KerberosContext`]; `GET /accept` calls the one-shot
/// [`KerberosAcceptor::accept`]. Both answer `200 AUTH OK: <principal>` or `401 REFUSED: <why>`
/// and record every token received in `tokens.log` (base64, one per line).
struct Acceptor {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the acceptor child ended up.
enum Started {
    Serving(Acceptor),
    /// `KerberosAcceptor::new` failed with this message.
    Failed(String),
}

impl Acceptor {
    fn start(kdc: &Kdc, name: &str, keytab: &str, spn: Option<&str>) -> Started {
        Self::start_with_ktname(kdc, name, keytab, spn, None)
    }

    /// As [`Acceptor::start`], with `KRB5_KTNAME` already set in the child's environment.
    fn start_with_ktname(
        kdc: &Kdc,
        name: &str,
        keytab: &str,
        spn: Option<&str>,
        ktname: Option<String>,
    ) -> Started {
        let dir = kdc.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "kerberos::child_acceptor_server",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PFGATE_KRB_CHILD", &dir)
        .env("PFGATE_KRB_KEYTAB", kdc.dir.join(keytab))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5RCACHEDIR", kdc.dir.join("rcache"))
        .env_remove("KRB5_KTNAME")
        .env_remove("KRB5CCNAME")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("child.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("child.err")).unwrap());
        match spn {
            Some(s) => cmd.env("PFGATE_KRB_SPN", s),
            None => cmd.env_remove("PFGATE_KRB_SPN"),
        };
        if let Some(k) = ktname {
            cmd.env("KRB5_KTNAME", k);
        }
        let mut child = cmd.spawn().unwrap();
        let status = dir.join("status");
        let start = Instant::now();
        loop {
            let s = read(&status);
            if let Some(port) = s.strip_prefix("READY ") {
                let port = port.trim().parse().unwrap();
                return Started::Serving(Acceptor { dir, port, child });
            }
            if let Some(e) = s.strip_prefix("ERROR ") {
                let _ = child.wait();
                return Started::Failed(e.to_string());
            }
            if let Some(rc) = child.try_wait().unwrap() {
                panic!(
                    "acceptor child exited ({rc}) before starting: {}{}",
                    read(&dir.join("child.out")),
                    read(&dir.join("child.err"))
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "acceptor child not ready after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn serving(kdc: &Kdc, name: &str, keytab: &str, spn: Option<&str>) -> Acceptor {
        match Self::start(kdc, name, keytab, spn) {
            Started::Serving(a) => a,
            Started::Failed(e) => panic!("KerberosAcceptor::new failed: {e}"),
        }
    }

    fn tokens(&self) -> Vec<Vec<u8>> {
        read(&self.dir.join("tokens.log"))
            .lines()
            .map(|l| B64.decode(l).unwrap())
            .collect()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "acceptor child died: {}",
            read(&self.dir.join("child.err"))
        );
    }

    /// One request with a raw `Authorization` value on its own connection: (status, body).
    fn get(&self, path: &str, authorization: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp)
            .unwrap_or_else(|e| panic!("no response from the acceptor (did it panic?): {e}"));
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP response (did the acceptor panic?): {resp:?}"));
        let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, body.to_string())
    }

    /// `curl --negotiate` as the holder of `cache` (which may not exist: no ticket), calling
    /// `http://{host}:{port}/`. Returns (HTTP status, body + curl's stderr).
    fn curl(&self, kdc: &Kdc, cache: &Path, host: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--noproxy",
                "*",
                "--negotiate",
                "-u",
                ":",
            ])
            .args(["--resolve", &format!("{host}:{}:127.0.0.1", self.port)])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://{host}:{}/", self.port))
            .env("KRB5_CONFIG", kdc.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", cache.display()))
            .env_remove("KRB5_KTNAME")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.trim_end().rsplit_once('\n').unwrap_or(("", &stdout));
        let code = code.trim().parse().unwrap_or(0);
        (
            code,
            format!(
                "{body}\n[curl stderr] {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// Not a test on its own: the acceptor process the tests above start by re-running this test
/// binary with `PFGATE_KRB_CHILD` set. Without that variable it returns at once.
#[test]
fn child_acceptor_server() {
    let Some(dir) = std::env::var_os("PFGATE_KRB_CHILD").map(PathBuf::from) else {
        return;
    };
    let settings = KerberosSettings {
        keytab: std::env::var_os("PFGATE_KRB_KEYTAB").unwrap().into(),
        service_principal: std::env::var("PFGATE_KRB_SPN").ok(),
    };
    let set_status = |s: String| {
        std::fs::write(dir.join("status.tmp"), s).unwrap();
        std::fs::rename(dir.join("status.tmp"), dir.join("status")).unwrap();
    };
    let acceptor = match KerberosAcceptor::new(&settings) {
        Ok(a) => std::sync::Arc::new(a),
        Err(e) => {
            set_status(format!("ERROR {e}"));
            return;
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    set_status(format!("READY {}", listener.local_addr().unwrap().port()));
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tokens.log"))
            .unwrap(),
    ));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (acceptor, log) = (acceptor.clone(), log.clone());
        std::thread::spawn(move || serve_connection(conn, &acceptor, &log));
    }
}

/// HTTP/1.1 keep-alive on one connection (GETs only), with the connection's handshake state.
fn serve_connection(
    mut conn: TcpStream,
    acceptor: &KerberosAcceptor,
    log: &std::sync::Mutex<std::fs::File>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut pending: Option<KerberosContext> = None;
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let mut lines = head.lines();
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("/")
            .to_string();
        let mut close = false;
        let mut negotiate = None;
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
            if k.eq_ignore_ascii_case("authorization") {
                let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
                if scheme.eq_ignore_ascii_case("negotiate") {
                    negotiate = Some(rest.trim().to_string());
                }
            }
        }
        let (status, www, body) = match negotiate {
            None => (
                401,
                Some("Negotiate".to_string()),
                "no credentials".to_string(),
            ),
            Some(b64) => match B64.decode(&b64) {
                Err(_) => (400, None, "bad base64".to_string()),
                Ok(token) => {
                    if let Ok(mut f) = log.lock() {
                        let _ = writeln!(f, "{b64}");
                    }
                    let result = if path == "/accept" {
                        acceptor.accept(&token)
                    } else {
                        let mut ctx = pending.take().unwrap_or_else(|| acceptor.context());
                        let r = ctx.step(&token);
                        if matches!(r, Ok(KerberosOutcome::Continue { .. })) {
                            pending = Some(ctx);
                        }
                        r
                    };
                    match result {
                        Ok(KerberosOutcome::Authenticated {
                            principal,
                            response_token,
                        }) => (
                            200,
                            response_token.map(|t| format!("Negotiate {}", B64.encode(t))),
                            format!("AUTH OK: {principal}"),
                        ),
                        Ok(KerberosOutcome::Continue { token }) => (
                            401,
                            Some(format!("Negotiate {}", B64.encode(token))),
                            "continue".to_string(),
                        ),
                        Err(e) => (401, Some("Negotiate".to_string()), format!("REFUSED: {e}")),
                    }
                }
            },
        };
        println!("{path} -> {status} {body}");
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            _ => "Unauthorized",
        };
        let www = www
            .map(|w| format!("WWW-Authenticate: {w}\r\n"))
            .unwrap_or_default();
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\n{www}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

const ALICE: &str = "alice@PFGATE.TEST";

#[test]
fn curl_negotiate_with_a_ticket_is_authenticated_without_one_refused() {
    if !ready("kerberos curl_negotiate") {
        return;
    }
    let kdc = Kdc::start("valid");
    let mut acceptor = Acceptor::serving(&kdc, "any", "http.keytab", None);

    let cache = kdc.kinit("alice");
    let (code, out) = acceptor.curl(&kdc, &cache, "localhost");
    assert_eq!(code, 200, "{out}");
    assert!(out.starts_with(&format!("AUTH OK: {ALICE}\n")), "{out}");
    let tokens = acceptor.tokens();
    assert_eq!(tokens.len(), 1, "one Kerberos leg expected");
    // curl (MIT) sends SPNEGO: an [APPLICATION 0] InitialContextToken with OID 1.3.6.1.5.5.2.
    assert_eq!(tokens[0][0], 0x60);
    assert!(tokens[0]
        .windows(8)
        .any(|w| w == [0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]));

    // No ticket: curl has nothing to send; the acceptor sees no token and the answer stays 401.
    let none = kdc.dir.join("no-such.ccache");
    let (code, out) = acceptor.curl(&kdc, &none, "localhost");
    assert_eq!(code, 401, "{out}");
    assert!(!out.contains("AUTH OK"), "{out}");
    assert_eq!(acceptor.tokens().len(), 1, "no token without a ticket");

    // A second, fresh authentication with the same ticket works (a new authenticator).
    let (code, out) = acceptor.curl(&kdc, &cache, "localhost");
    assert_eq!(code, 200, "{out}");
    acceptor.assert_alive();

    // The same, with the service principal named explicitly.
    let named = Acceptor::serving(
        &kdc,
        "named",
        "http.keytab",
        Some("HTTP/localhost@PFGATE.TEST"),
    );
    let (code, out) = named.curl(&kdc, &cache, "localhost");
    assert_eq!(code, 200, "{out}");
    assert!(out.starts_with(&format!("AUTH OK: {ALICE}\n")), "{out}");
}

#[test]
fn ticket_for_another_service_is_refused() {
    if !ready("kerberos another_service") {
        return;
    }
    let kdc = Kdc::start("other");
    let cache = kdc.kinit("alice");

    // Keytab without HTTP/otherhost: the ticket cannot even be decrypted.
    let mut only_localhost = Acceptor::serving(&kdc, "only", "http.keytab", None);
    let (code, out) = only_localhost.curl(&kdc, &cache, "otherhost");
    assert_eq!(code, 401, "{out}");
    assert!(!out.contains("AUTH OK"), "{out}");
    assert_eq!(
        only_localhost.tokens().len(),
        1,
        "curl must have sent a Kerberos token for HTTP/otherhost: {out}"
    );
    assert!(out.contains("REFUSED: Kerberos token refused"), "{out}");
    only_localhost.assert_alive();

    // Keytab with both keys but the SPN setting says HTTP/localhost: refused by name.
    let named = Acceptor::serving(
        &kdc,
        "named",
        "both.keytab",
        Some("HTTP/localhost@PFGATE.TEST"),
    );
    let (code, out) = named.curl(&kdc, &cache, "otherhost");
    assert_eq!(code, 401, "{out}");
    assert!(out.contains("REFUSED"), "{out}");
    // ... while the right service still works with the same acceptor and ticket cache.
    let (code, out) = named.curl(&kdc, &cache, "localhost");
    assert_eq!(code, 200, "{out}");
    assert!(out.starts_with(&format!("AUTH OK: {ALICE}\n")), "{out}");

    // Without the SPN setting the same keytab accepts both (so the refusal above was the SPN's).
    let any = Acceptor::serving(&kdc, "any", "both.keytab", None);
    let (code, out) = any.curl(&kdc, &cache, "otherhost");
    assert_eq!(code, 200, "{out}");

    // A service principal the keytab lacks is a start-up error, not a silent acceptor.
    match Acceptor::start(
        &kdc,
        "missing",
        "http.keytab",
        Some("HTTP/nothere@PFGATE.TEST"),
    ) {
        Started::Failed(e) => assert!(e.contains("no Kerberos acceptor credentials"), "{e}"),
        Started::Serving(_) => panic!("an SPN missing from the keytab was accepted"),
    }

    // KRB5_KTNAME already naming another keytab is a start-up error (one keytab per process);
    // naming the configured one is fine and the acceptor then writes nothing.
    let other = format!("FILE:{}", kdc.dir.join("both.keytab").display());
    match Acceptor::start_with_ktname(&kdc, "conflict", "http.keytab", None, Some(other)) {
        Started::Failed(e) => assert!(e.contains("KRB5_KTNAME is already"), "{e}"),
        Started::Serving(_) => panic!("a conflicting KRB5_KTNAME was ignored"),
    }
    let same = format!("FILE:{}", kdc.dir.join("http.keytab").display());
    match Acceptor::start_with_ktname(&kdc, "preset", "http.keytab", None, Some(same)) {
        Started::Serving(a) => {
            let (code, out) = a.curl(&kdc, &cache, "localhost");
            assert_eq!(code, 200, "{out}");
        }
        Started::Failed(e) => panic!("KRB5_KTNAME naming the same keytab was refused: {e}"),
    }
}

#[test]
fn tampered_truncated_garbage_and_replayed_tokens_are_refused() {
    if !ready("kerberos tampered") {
        return;
    }
    let kdc = Kdc::start("tamper");
    let mut acceptor = Acceptor::serving(&kdc, "any", "http.keytab", None);
    let cache = kdc.kinit("alice");
    let (code, out) = acceptor.curl(&kdc, &cache, "localhost");
    assert_eq!(code, 200, "{out}");
    let good = acceptor.tokens().pop().unwrap();
    let neg = |t: &[u8]| format!("Negotiate {}", B64.encode(t));

    // The accepted token again: MIT's replay cache refuses it.
    let (code, body) = acceptor.get("/accept", Some(&neg(&good)));
    assert_eq!(code, 401, "replay accepted: {body}");
    assert!(body.contains("REFUSED"), "{body}");

    // Every byte flipped in turn: never authenticated. Most flips are refused outright; flips in
    // unprotected fields (e.g. AP options) leave the authenticator intact, so the replay cache
    // refuses those. A flip in the first SPNEGO mechType makes the optimistic Kerberos token
    // unusable and GSS-API answers with a counter-proposal (`Continue`, still 401), which only a
    // fresh, valid Kerberos token could complete.
    let (mut refused, mut continued) = (0, Vec::new());
    for i in 0..good.len() {
        let mut t = good.clone();
        t[i] ^= 0x5a;
        let (code, body) = acceptor.get("/accept", Some(&neg(&t)));
        assert_eq!(code, 401, "byte {i} flipped was accepted: {body}");
        if body == "continue" {
            continued.push(i);
        } else {
            assert!(body.starts_with("REFUSED: "), "byte {i}: {body}");
            refused += 1;
        }
    }
    eprintln!(
        "kerberos tampering: {} byte flips, {refused} refused, continue (SPNEGO counter-proposal) \
         at bytes {continued:?}",
        good.len()
    );
    assert!(
        continued.len() < 16,
        "too many flips only continued: {continued:?}"
    );

    // Truncations, garbage, an NTLM message, empty and non-base64 tokens.
    for len in [1, 2, 16, good.len() / 2, good.len() - 1] {
        let (code, body) = acceptor.get("/accept", Some(&neg(&good[..len])));
        assert_eq!(code, 401, "truncated to {len}: {body}");
    }
    for junk in [
        vec![0u8; 64],
        vec![0xff; 3000],
        b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2".to_vec(),
        vec![0x60, 0x80],
        vec![0x60, 0x84, 0xff, 0xff, 0xff, 0xff, 0x06],
    ] {
        let (code, body) = acceptor.get("/accept", Some(&neg(&junk)));
        assert_eq!(code, 401, "{junk:02x?}: {body}");
    }
    let (code, body) = acceptor.get("/accept", Some("Negotiate "));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("empty Negotiate token"), "{body}");
    let (code, _) = acceptor.get("/accept", Some("Negotiate !!not-base64!!"));
    assert_eq!(code, 400);

    // The acceptor survived all of it, and a fresh authentication still works.
    acceptor.assert_alive();
    let (code, out) = acceptor.curl(&kdc, &cache, "localhost");
    assert_eq!(code, 200, "{out}");
    assert!(out.starts_with(&format!("AUTH OK: {ALICE}\n")), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The real pfgate binary with [auth.kerberos]
// ---------------------------------------------------------------------------------------------

/// NTLM account configured beside Kerberos on the same pfgate.
const NTLM_USER: &str = "CONTOSO\\mimservice";
const NTLM_PASSWORD: &str = "M1m-Service!pw";

/// `pfgate serve --config` as a child process (the binary built with this test, so with the
/// `kerberos` feature): TLS with a throwaway certificate for `localhost` and `otherhost`,
/// `[auth.kerberos]`, `[auth.ntlm]`, and an allow-list naming `alice@PFGATE.TEST` and
/// `CONTOSO\mimservice` (not `bob@PFGATE.TEST`). Its log (stderr) goes to `pfgate.log`.
struct Pfgate {
    dir: PathBuf,
    child: Child,
    port: u16,
    leaf: rustls::pki_types::CertificateDer<'static>,
}

impl Drop for Pfgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pfgate {
    /// Starts pfgate; `Err` carries its log when it exits instead of listening.
    fn start(kdc: &Kdc, name: &str, keytab: &str, spn: Option<&str>) -> Result<Pfgate, String> {
        let dir = kdc.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "otherhost".into()])
            .unwrap();
        std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), c.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("mim.password"), format!("{NTLM_PASSWORD}\n")).unwrap();
        let spn = spn
            .map(|s| format!("service_principal = \"{s}\"\n"))
            .unwrap_or_default();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\n\
             [auth.kerberos]\nkeytab = {keytab:?}\n{spn}\n\
             [auth.ntlm]\nnetbios_domain = \"CONTOSO\"\ndns_computer = \"localhost\"\n\
             [[auth.ntlm.accounts]]\nprincipal = 'CONTOSO\\mimservice'\npassword_file = \"mim.password\"\n\n\
             [[auth.principals]]\nname = \"{USER}@{REALM}\"\nallow = [\"authentication\"]\n\
             [[auth.principals]]\nname = 'CONTOSO\\mimservice'\nallow = [\"authentication\"]\n\
             [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
            keytab = kdc.dir.join(keytab).display().to_string(),
        );
        std::fs::write(dir.join("pfgate.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pfgate"))
            .args(["serve", "--config"])
            .arg(dir.join("pfgate.toml"))
            .env("KRB5_CONFIG", kdc.krb5_conf())
            .env("KRB5RCACHEDIR", kdc.dir.join("rcache"))
            .env("RUST_LOG", "info")
            .env_remove("KRB5_KTNAME")
            .env_remove("KRB5CCNAME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("pfgate.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // "pfgate 0.1.0 listening on https://127.0.0.1:PORT/MultiFactorAuthWebServiceSdk/…"
        let port = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on https://127.0.0.1:").nth(1) {
                        break rest.split('/').next().unwrap().parse().unwrap();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(read(&dir.join("pfgate.log")));
                }
            }
        };
        Ok(Pfgate {
            dir,
            child,
            port,
            leaf: c.cert.der().clone(),
        })
    }

    fn serving(kdc: &Kdc, name: &str, keytab: &str, spn: Option<&str>) -> Pfgate {
        Self::start(kdc, name, keytab, spn)
            .unwrap_or_else(|log| panic!("pfgate did not start:\n{log}"))
    }

    fn log(&self) -> String {
        read(&self.dir.join("pfgate.log"))
    }

    /// Audit events of this kind in the log so far.
    fn audits(&self, event: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("pfgate::audit") && l.contains(event))
            .count()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "pfgate died:\n{}",
            self.log()
        );
    }

    /// `curl` POSTing SOAP `TestSecurity` to `https://{host}:{port}/…/PfWsSdk.asmx` with
    /// `auth` (`--negotiate -u :` with the ticket cache, or `--ntlm -u USER:PASSWORD`).
    fn curl(&self, kdc: &Kdc, host: &str, auth: CurlAuth<'_>) -> CurlResult {
        let headers = self
            .dir
            .join(format!("headers-{}.txt", rand::random::<u64>()));
        let body = crate::support::env11(&format!(
            r#"<TestSecurity xmlns="{}" />"#,
            crate::support::NS
        ));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--noproxy", "*", "--cacert"])
            .arg(self.dir.join("cert.pem"))
            .args(["--resolve", &format!("{host}:{}:127.0.0.1", self.port)])
            .args(["-H", "Content-Type: text/xml; charset=utf-8"])
            .args([
                "-H",
                &format!("SOAPAction: \"{}\"", crate::support::action("TestSecurity")),
            ])
            .arg("-D")
            .arg(&headers)
            .args(["-w", "\n%{http_code}", "--data-binary", &body])
            .env("KRB5_CONFIG", kdc.krb5_conf())
            .env_remove("KRB5_KTNAME");
        match auth {
            CurlAuth::Negotiate(cache) => {
                cmd.args(["--negotiate", "-u", ":"])
                    .env("KRB5CCNAME", format!("FILE:{}", cache.display()));
            }
            CurlAuth::Ntlm(user) => {
                cmd.args(["--ntlm", "-u", user]);
            }
        }
        let out = cmd
            .arg(format!(
                "https://{host}:{}{}",
                self.port,
                crate::support::SDK_PATH
            ))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.trim_end().rsplit_once('\n').unwrap_or(("", &stdout));
        CurlResult {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
            headers: read(&headers),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// One SOAP `TestSecurity` on a fresh TLS connection with this `Authorization` value (none
    /// when empty).
    fn post(&self, authorization: &str) -> crate::support::Resp {
        let client = crate::support::Client::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            &self.leaf,
        );
        let body = crate::support::env11(&format!(
            r#"<TestSecurity xmlns="{}" />"#,
            crate::support::NS
        ));
        let mut req = http::Request::post(crate::support::SDK_PATH)
            .header("host", format!("localhost:{}", self.port))
            .header("content-type", "text/xml; charset=utf-8")
            .header(
                "soapaction",
                format!("\"{}\"", crate::support::action("TestSecurity")),
            );
        if !authorization.is_empty() {
            req = req.header("authorization", authorization);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(client.send(req))
    }
}

enum CurlAuth<'a> {
    Negotiate(&'a Path),
    Ntlm(&'a str),
}

struct CurlResult {
    status: u16,
    body: String,
    /// Every response's headers (`curl -D`), the 401 legs included.
    headers: String,
    stderr: String,
}

impl CurlResult {
    /// The token of the last `WWW-Authenticate: Negotiate <token>` curl saw.
    fn last_negotiate_token(&self) -> Option<Vec<u8>> {
        self.headers
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let v = v.trim();
                (k.eq_ignore_ascii_case("www-authenticate") && v.len() > 10)
                    .then(|| v.strip_prefix("Negotiate "))
                    .flatten()
                    .map(str::to_string)
            })
            .next_back()
            .map(|t| B64.decode(t).unwrap())
    }
}

impl std::fmt::Display for CurlResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {}\n{}\n[headers]\n{}[curl stderr] {}",
            self.status, self.body, self.headers, self.stderr
        )
    }
}

/// What `curl --negotiate` sends for `HTTP/{host}`, captured by a bare HTTP server that never
/// verifies it, so the token is still fresh for pfgate (MIT's replay cache has not seen it).
fn capture_token(kdc: &Kdc, cache: &Path, host: &str) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let mut conn = match listener.accept() {
                Ok((c, _)) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            conn.set_nonblocking(false).ok()?;
            conn.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
            let mut buf = Vec::new();
            loop {
                let head = loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        break head;
                    }
                    let mut chunk = [0u8; 4096];
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let token = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    let v = v.trim();
                    k.eq_ignore_ascii_case("authorization")
                        .then(|| v.strip_prefix("Negotiate "))
                        .flatten()
                        .map(str::to_string)
                });
                if let Some(t) = token {
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return Some(t);
                }
                conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n",
                )
                .ok()?;
            }
        }
        None
    });
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--noproxy",
            "*",
            "--negotiate",
            "-u",
            ":",
        ])
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("http://{host}:{port}/"))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5CCNAME", format!("FILE:{}", cache.display()))
        .env_remove("KRB5_KTNAME")
        .output()
        .unwrap();
    let token = server.join().unwrap().unwrap_or_else(|| {
        panic!(
            "curl sent no Negotiate token: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    B64.decode(token).unwrap()
}

/// The SPNEGO `NegTokenResp` pfgate sent back on a 200 (mutual authentication).
fn accept_completed(token: &[u8]) -> pfgate::auth::spnego::NegTokenResp {
    use pfgate::auth::spnego::{parse_token, IncomingToken, NegState};
    match parse_token(token) {
        Ok(IncomingToken::Resp(r)) => {
            assert_eq!(r.neg_state, Some(NegState::AcceptCompleted), "{r:?}");
            assert!(r.response_token.is_some(), "no AP-REP in {r:?}");
            r
        }
        other => panic!("not a NegTokenResp: {other:?}"),
    }
}

#[test]
fn pfgate_serves_kerberos_and_ntlm_callers_by_the_allow_list() {
    use pfgate::auth::spnego::Oid;
    if !ready("kerberos pfgate_serves") {
        return;
    }
    let started = Instant::now();
    let kdc = Kdc::start("pfgate");
    let mut pf = Pfgate::serving(
        &kdc,
        "pfgate",
        "http.keytab",
        Some("HTTP/localhost@PFGATE.TEST"),
    );

    // Without credentials: IIS's challenges, Negotiate first.
    let r = pf.post("");
    assert_eq!(r.status, 401, "{r:?}");
    let offered: Vec<&str> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(offered, ["Negotiate", "NTLM"]);

    // alice, on the allow-list: the SOAP answer, and pfgate's mutual-authentication token.
    let alice = kdc.kinit("alice");
    let r = pf.curl(&kdc, "localhost", CurlAuth::Negotiate(&alice));
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.body
            .contains("<TestSecurityResult>secure</TestSecurityResult>"),
        "{r}"
    );
    let done = accept_completed(&r.last_negotiate_token().expect("a final Negotiate token"));
    assert_eq!(done.supported_mech, Some(Oid::KRB5), "{done:?}");
    assert!(pf.log().contains("Kerberos acceptor ready"), "{}", pf.log());

    // bob has a valid ticket but is not on the allow-list: 403, one caller_forbidden event.
    let bob = kdc.kinit_as(OTHER_USER, OTHER_PASSWORD, "bob");
    let forbidden = pf.audits("caller_forbidden");
    let r = pf.curl(&kdc, "localhost", CurlAuth::Negotiate(&bob));
    assert_eq!(r.status, 403, "{r}");
    assert_eq!(pf.audits("caller_forbidden"), forbidden + 1, "{}", pf.log());
    assert!(
        pf.log().contains(&format!("{OTHER_USER}@{REALM}")),
        "the refused principal is named in the audit log:\n{}",
        pf.log()
    );

    // NTLM on the same build and server.
    let r = pf.curl(
        &kdc,
        "localhost",
        CurlAuth::Ntlm(&format!("{NTLM_USER}:{NTLM_PASSWORD}")),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.contains("secure"), "{r}");
    let r = pf.curl(
        &kdc,
        "localhost",
        CurlAuth::Ntlm(&format!("{NTLM_USER}:wrong-password")),
    );
    assert_eq!(r.status, 401, "{r}");

    // A configuration reload (SIGHUP) keeps the acceptor built at start-up: Kerberos still works.
    let pid = pf.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut reloaded = false;
    for _ in 0..300 {
        if pf.log().contains("configuration reloaded") {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reloaded, "{}", pf.log());
    let r = pf.curl(&kdc, "localhost", CurlAuth::Negotiate(&alice));
    assert_eq!(r.status, 200, "Kerberos after a reload: {r}");
    pf.assert_alive();
    eprintln!(
        "pfgate_serves_kerberos_and_ntlm_callers_by_the_allow_list: {:.2?}",
        started.elapsed()
    );
}

#[test]
fn pfgate_refuses_wrong_service_tampered_and_replayed_kerberos_tokens() {
    use pfgate::auth::spnego::{parse_token, IncomingToken, Oid};
    if !ready("kerberos pfgate_refuses") {
        return;
    }
    let started = Instant::now();
    let kdc = Kdc::start("pfgate-neg");
    let alice = kdc.kinit("alice");

    // A keytab without HTTP/otherhost: a ticket for it cannot be decrypted.
    let only = Pfgate::serving(&kdc, "only", "http.keytab", None);
    let r = only.curl(&kdc, "otherhost", CurlAuth::Negotiate(&alice));
    assert_eq!(r.status, 401, "{r}");
    assert!(only.log().contains("Kerberos refused"), "{}", only.log());

    // Both keys, but service_principal = HTTP/localhost: refused by name; HTTP/localhost works.
    let mut pf = Pfgate::serving(
        &kdc,
        "named",
        "both.keytab",
        Some("HTTP/localhost@PFGATE.TEST"),
    );
    let r = pf.curl(&kdc, "otherhost", CurlAuth::Negotiate(&alice));
    assert_eq!(r.status, 401, "{r}");
    let r = pf.curl(&kdc, "localhost", CurlAuth::Negotiate(&alice));
    assert_eq!(r.status, 200, "{r}");

    let neg = |t: &[u8]| format!("Negotiate {}", B64.encode(t));
    let refused_once = |pf: &Pfgate, what: &str, authorization: &str| {
        let before = pf.audits("caller_unauthenticated");
        let r = pf.post(authorization);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert_eq!(
            pf.audits("caller_unauthenticated"),
            before + 1,
            "{what}: one audit event per refusal\n{}",
            pf.log()
        );
    };

    // A fresh token, its last byte (inside the encrypted authenticator) flipped: refused. Then
    // the intact token is accepted (so the refusal was the tampering), and refused when replayed.
    let token = capture_token(&kdc, &alice, "localhost");
    let mut tampered = token.clone();
    if let Some(b) = tampered.last_mut() {
        *b ^= 0x01;
    }
    refused_once(&pf, "tampered", &neg(&tampered));
    let r = pf.post(&neg(&token));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("secure"), "{r:?}");
    refused_once(&pf, "replayed", &neg(&token));

    // A bare Kerberos AP-REQ (the GSS token inside SPNEGO), as IIS also accepts: 200, and the
    // mutual-authentication token comes back bare too.
    let token = capture_token(&kdc, &alice, "localhost");
    let Ok(IncomingToken::Init(init)) = parse_token(&token) else {
        panic!("curl's token is not a NegTokenInit")
    };
    assert_eq!(init.mech_types, [Oid::KRB5]);
    let raw = init.mech_token.expect("an optimistic Kerberos token");
    let r = pf.post(&neg(&raw));
    assert_eq!(r.status, 200, "bare AP-REQ: {r:?}");
    let reply = B64
        .decode(
            r.header("www-authenticate")
                .strip_prefix("Negotiate ")
                .expect("a Negotiate token on the 200"),
        )
        .unwrap();
    assert!(
        matches!(parse_token(&reply), Ok(IncomingToken::RawKerberos)),
        "{reply:02x?}"
    );

    // Windows lists Microsoft's Kerberos OID 1.2.840.48018.1.2.2 first: the same token with its
    // mechTypes entry rewritten to that OID (same length) still goes to Kerberos and is accepted.
    let token = capture_token(&kdc, &alice, "localhost");
    let krb5_list = [
        0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
    ];
    let at = token
        .windows(krb5_list.len())
        .position(|w| w == krb5_list)
        .expect("mechTypes [1.2.840.113554.1.2.2]");
    let mut windows = token.clone();
    windows[at + 7] = 0x82; // 1.2.840.113554 -> 1.2.840.48018
    let Ok(IncomingToken::Init(init)) = parse_token(&windows) else {
        panic!("not a NegTokenInit after the rewrite")
    };
    assert_eq!(init.mech_types, [Oid::MS_KRB5]);
    let r = pf.post(&neg(&windows));
    assert_eq!(r.status, 200, "Microsoft OID: {r:?}");
    let done = accept_completed(
        &B64.decode(
            r.header("www-authenticate")
                .trim_start_matches("Negotiate "),
        )
        .unwrap(),
    );
    assert!(
        done.supported_mech == Some(Oid::MS_KRB5) || done.supported_mech == Some(Oid::KRB5),
        "{done:?}"
    );

    // Truncations and garbage: one refusal each, no panic.
    let token = capture_token(&kdc, &alice, "localhost");
    for len in [1, 2, 16, token.len() / 2, token.len() - 1] {
        refused_once(&pf, &format!("truncated to {len}"), &neg(&token[..len]));
    }
    // 12 000 bytes (16 000 in base64): the size of an AD ticket for a user in many groups, so
    // the header limits let such a token through to the acceptor (a 401, not a 431).
    for junk in [vec![0u8; 64], vec![0xff; 12_000], vec![0x60, 0x80]] {
        refused_once(&pf, "garbage", &neg(&junk));
    }
    refused_once(&pf, "not base64", "Negotiate !!not-base64!!");

    // No token material in the log: neither whole tokens nor any 24-character piece of one.
    let log = pf.log();
    for t in [neg(&tampered), neg(&raw), neg(&windows), neg(&token)] {
        let b64 = t.trim_start_matches("Negotiate ");
        for piece in b64.as_bytes().chunks(24).filter(|c| c.len() == 24) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!log.contains(piece), "token material in the log: {piece}");
        }
    }

    pf.assert_alive();
    let r = pf.curl(&kdc, "localhost", CurlAuth::Negotiate(&alice));
    assert_eq!(r.status, 200, "{r}");
    eprintln!(
        "pfgate_refuses_wrong_service_tampered_and_replayed_kerberos_tokens: {:.2?}",
        started.elapsed()
    );
}

#[test]
fn pfgate_does_not_start_with_a_keytab_lacking_the_service_principal() {
    if !ready("kerberos pfgate_does_not_start") {
        return;
    }
    let kdc = Kdc::start("pfgate-start");
    match Pfgate::start(
        &kdc,
        "missing",
        "http.keytab",
        Some("HTTP/nothere@PFGATE.TEST"),
    ) {
        Err(log) => assert!(
            log.contains("auth.kerberos: no Kerberos acceptor credentials"),
            "{log}"
        ),
        Ok(_) => panic!("pfgate started without a key for its service principal"),
    }
}
