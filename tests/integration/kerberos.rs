//! Kerberos through `Negotiate` (feature `kerberos`) against a real MIT KDC.
//!
//! Each test makes its own realm in a temporary directory: `kdb5_util create -s`, principals and
//! keytabs with `kadmin.local`, and `krb5kdc -n` as a child on a free loopback port, killed on
//! drop. The client is real too: `kinit` (password on stdin) into a private credential cache,
//! then `curl --negotiate` (MIT GSS-API, SPNEGO) against a small HTTP server that calls
//! [`KerberosAcceptor`].
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
        eprintln!("SKIP {test}: missing {m}");
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
        let cache = self.dir.join(format!("{name}.ccache"));
        run_ok(
            "kinit",
            Command::new(tool("kinit"))
                .arg(format!("{USER}@{REALM}"))
                .env("KRB5_CONFIG", self.krb5_conf())
                .env("KRB5CCNAME", format!("FILE:{}", cache.display())),
            Some(&format!("{USER_PASSWORD}\n")),
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
