//! Primary authentication (`pfgate::engine::primary`) against a real OpenLDAP `slapd`.
//!
//! Each test that needs a directory starts its own `slapd` on 127.0.0.1 with free ports, from a
//! throwaway `slapd.conf` (`tests/ldap/slapd.conf.in`, mdb backend) in a fresh temp directory,
//! loaded with `slapadd` from `tests/ldap/directory.ldif`. The server listens on `ldap://` (plain
//! and StartTLS) and `ldaps://` with a certificate for IP 127.0.0.1 made by rcgen, logs every
//! operation (`-d 256`, stats) to a file the tests read to see which binds reached it, and is
//! killed when the test ends (the [`Slapd`] guard's `Drop`).
//!
//! The server is configured like Active Directory in the one way that matters here: a bind with a
//! DN and an empty password succeeds (`allow bind_anon_dn`), so the empty-password test shows the
//! server would have said yes and that pfgate never asked.
//!
//! Missing `slapd`/`slapadd` skips a test with a `SKIP ldap:` line, unless
//! `PFGATE_REQUIRE_INTEROP=1` (set by `.ci/run`, whose `.ci/install-deps` installs them), which
//! makes it a failure. Tests that need no directory (settings, an unresponsive server, the
//! connection counter) always run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldap3::LdapConnAsync;
use pfgate::engine::primary::{LdapSettings, PrimaryAuth, PrimaryError};
use tokio::net::TcpListener;

use crate::support::{action, env11, text_of, TestServer, NS, STEP};

/// The bind DN template for the `ou=people` users.
const PEOPLE: &str = "uid={username},ou=people,dc=example,dc=org";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const ALICE_PW: &str = "alice-secret";
/// The entry a DN-injection username `eve,ou=partners` would reach unescaped.
const EVE_DN: &str = "uid=eve,ou=partners,ou=people,dc=example,dc=org";
const EVE_PW: &str = "eve-secret";
/// A user whose uid holds a comma (`uid=smith\, john`).
const SMITH: &str = "smith, john";
const SMITH_PW: &str = "smith-secret";

/// The timeout given to `PrimaryAuth` for checks that should answer quickly.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `slapadd` may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Tools, temp dirs, the slapd guard
// ---------------------------------------------------------------------------------------------

struct Tools {
    slapd: PathBuf,
    slapadd: PathBuf,
}

/// Finds `name` on `PATH` or in the sbin directories Debian installs slapd into (not on a
/// non-root `PATH`).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `slapd` and `slapadd`, or `None` after printing `SKIP ldap: …`; panics instead when
/// `PFGATE_REQUIRE_INTEROP=1`.
fn ldap_tools(test: &str) -> Option<Tools> {
    match (find_tool("slapd"), find_tool("slapadd")) {
        (Some(slapd), Some(slapadd)) => Some(Tools { slapd, slapadd }),
        _ => {
            let why = "OpenLDAP slapd/slapadd not found (Debian package `slapd`; \
                       `bash .ci/install-deps` installs it)";
            if std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() == Ok("1") {
                panic!("{test}: {why}, and PFGATE_REQUIRE_INTEROP=1 makes this a failure");
            }
            pfgate::testing::test_skips::skip(pfgate::testing::test_skips::Needs::Ldap, test, why);
            None
        }
    }
}

/// A fresh directory under the system temp dir; removed on drop unless the test failed, so the
/// slapd config and log of a failure can be inspected.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("pfgate-ldap-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("ldap: kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn ldap_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ldap")
        .join(name)
}

/// Waits for `child` to exit, at most `limit`; kills it and panics on overrun.
async fn wait_child(child: &mut Child, what: &str, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A running `slapd`; killed (and waited for) on drop.
struct Slapd {
    child: Option<Child>,
    ldap_url: String,
    ldaps_url: String,
    /// The PEM of the server certificate (self-signed: it is its own CA).
    ca_file: PathBuf,
    log: PathBuf,
    // Last: dropped after the child is killed.
    dir: TempDir,
}

impl Slapd {
    async fn start(tools: &Tools, tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("generate the slapd certificate");
        let ca_file = dir.write("server-cert.pem", &cert.cert.pem());
        dir.write("server-key.pem", &cert.signing_key.serialize_pem());
        std::fs::create_dir_all(dir.path().join("db")).expect("create db dir");

        let template = std::fs::read_to_string(ldap_fixture("slapd.conf.in"))
            .expect("read tests/ldap/slapd.conf.in");
        let dir_str = dir.path().to_str().expect("temp dir is UTF-8");
        let conf = dir.write("slapd.conf", &template.replace("@DIR@", dir_str));

        let add_log = dir.path().join("slapadd.log");
        let mut slapadd = Command::new(&tools.slapadd)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(ldap_fixture("directory.ldif"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&add_log).expect("create slapadd.log"))
            .stderr(std::fs::File::create(dir.path().join("slapadd.err")).expect("slapadd.err"))
            .spawn()
            .expect("spawn slapadd");
        let status = wait_child(&mut slapadd, "slapadd", TOOL_TIMEOUT).await;
        assert!(
            status.success(),
            "slapadd failed ({status}): {}",
            std::fs::read_to_string(dir.path().join("slapadd.err")).unwrap_or_default()
        );

        // A port can be taken between free_port() and slapd's bind: retry a few times.
        let log = dir.path().join("slapd.log");
        let mut slapd = Slapd {
            child: None,
            ldap_url: String::new(),
            ldaps_url: String::new(),
            ca_file,
            log,
            dir,
        };
        for attempt in 1..=5 {
            let (plain, tls) = (free_port(), free_port());
            slapd.ldap_url = format!("ldap://127.0.0.1:{plain}/");
            slapd.ldaps_url = format!("ldaps://127.0.0.1:{tls}/");
            let child = Command::new(&tools.slapd)
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(format!("{} {}", slapd.ldap_url, slapd.ldaps_url))
                // Foreground, stats logging (connections, BIND dn=…, RESULT err=…) to stderr.
                .args(["-d", "256"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&slapd.log).expect("create slapd.log"))
                .spawn()
                .expect("spawn slapd");
            slapd.child = Some(child);
            match slapd.wait_listening([plain, tls]).await {
                Ok(()) => return slapd,
                Err(why) if why.contains("Address already in use") && attempt < 5 => {
                    eprintln!("ldap: slapd attempt {attempt}: port taken, retrying");
                    slapd.stop();
                }
                Err(why) => panic!("slapd did not start: {why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until both ports accept connections; `Err(log)` if slapd exits first.
    async fn wait_listening(&mut self, ports: [u16; 2]) -> Result<(), String> {
        let deadline = Instant::now() + STEP;
        for port in ports {
            loop {
                if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                    return Err(format!("slapd exited ({status}): {}", self.log_text()));
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "slapd did not listen on port {port} within {STEP:?}: {}",
                        self.log_text()
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The DNs of the simple binds that reached the server, in order.
    fn binds(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(" BIND dn=\"") && l.contains("method=128"))
            .filter_map(|l| {
                l.split("dn=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Waits (bounded) until `n` simple binds are in the log, then returns them.
    async fn wait_binds(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + STEP;
        loop {
            let binds = self.binds();
            if binds.len() >= n {
                return binds;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} binds in the slapd log within {STEP:?}, saw {binds:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Waits (bounded) until `needle` occurs `n` times in the log; slapd may log a result a
    /// moment after the client has it.
    async fn wait_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + STEP;
        while self.count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "expected {n} × {needle:?} in the slapd log within {STEP:?}:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Plain `ldap://` settings (allowed: the host is loopback).
    fn settings(&self, template: &str) -> LdapSettings {
        LdapSettings {
            url: self.ldap_url.clone(),
            bind_dn_template: template.into(),
            start_tls: false,
            ca_file: None,
            timeout: CHECK_TIMEOUT,
        }
    }

    fn auth(&self, template: &str) -> PrimaryAuth {
        PrimaryAuth::new(self.settings(template)).expect("valid settings")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `verify` with a test-side bound on top of the configured one.
async fn verify(auth: &PrimaryAuth, username: &str, password: &str) -> Result<bool, PrimaryError> {
    tokio::time::timeout(STEP, auth.verify(username, password))
        .await
        .unwrap_or_else(|_| panic!("verify({username:?}) did not return within {STEP:?}"))
}

/// A simple bind with ldap3 directly, bypassing pfgate's rules: the control experiment that shows
/// what the server itself would answer. Returns the LDAP result code.
async fn raw_bind(url: &str, dn: &str, password: &str) -> u32 {
    let (conn, mut ldap) = tokio::time::timeout(STEP, LdapConnAsync::new(url))
        .await
        .expect("raw connect in time")
        .expect("raw connect");
    ldap3::drive!(conn);
    let result = tokio::time::timeout(STEP, ldap.simple_bind(dn, password))
        .await
        .expect("raw bind in time")
        .expect("raw bind");
    let _ = tokio::time::timeout(STEP, ldap.unbind()).await;
    result.rc
}

// ---------------------------------------------------------------------------------------------
// Against slapd
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_right_password_is_accepted_and_unbinds() {
    let Some(tools) = ldap_tools("ldap_right_password_is_accepted_and_unbinds") else {
        return;
    };
    let slapd = Slapd::start(&tools, "right").await;
    let auth = slapd.auth(PEOPLE);

    assert!(verify(&auth, "alice", ALICE_PW).await.unwrap());
    // A uid with a comma binds only if the username was escaped right.
    assert!(verify(&auth, SMITH, SMITH_PW).await.unwrap());

    let binds = slapd.wait_binds(2).await;
    assert_eq!(binds[0], ALICE_DN);
    assert_eq!(binds.len(), 2, "{binds:?}");
    // One connection per check, each closed with an UNBIND.
    slapd.wait_count(" UNBIND", 2).await;
    slapd.wait_count(" closed", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_wrong_password_is_rejected() {
    let Some(tools) = ldap_tools("ldap_wrong_password_is_rejected") else {
        return;
    };
    let slapd = Slapd::start(&tools, "wrong").await;
    let auth = slapd.auth(PEOPLE);

    assert!(!verify(&auth, "alice", "alice-secreT").await.unwrap());
    assert!(!verify(&auth, "alice", EVE_PW).await.unwrap());
    assert!(!verify(&auth, SMITH, ALICE_PW).await.unwrap());
    // The server did see (and reject, 49) the binds: the false is its answer.
    slapd.wait_binds(3).await;
    slapd.wait_count("RESULT tag=97 err=49", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_unknown_user_is_rejected() {
    let Some(tools) = ldap_tools("ldap_unknown_user_is_rejected") else {
        return;
    };
    let slapd = Slapd::start(&tools, "unknown").await;
    let auth = slapd.auth(PEOPLE);

    assert!(!verify(&auth, "mallory", ALICE_PW).await.unwrap());
    assert!(!verify(&auth, "eve", EVE_PW).await.unwrap()); // eve is in ou=partners, not ou=people
    assert_eq!(slapd.wait_binds(2).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_empty_password_never_reaches_the_server() {
    let Some(tools) = ldap_tools("ldap_empty_password_never_reaches_the_server") else {
        return;
    };
    let mut slapd = Slapd::start(&tools, "empty").await;
    let auth = slapd.auth(PEOPLE);

    // Control: this server (like AD) answers an empty-password bind to alice's DN with success.
    assert_eq!(
        raw_bind(&slapd.ldap_url, ALICE_DN, "").await,
        0,
        "the test server should accept unauthenticated binds (allow bind_anon_dn)"
    );
    let before = slapd.wait_binds(1).await.len();

    assert!(!verify(&auth, "alice", "").await.unwrap());
    assert!(!verify(&auth, "", ALICE_PW).await.unwrap());
    assert!(!verify(&auth, "   ", ALICE_PW).await.unwrap());
    // A marker bind after them: once it is in the log, anything sent before would be too.
    assert!(verify(&auth, "alice", ALICE_PW).await.unwrap());
    let binds = slapd.wait_binds(before + 1).await;
    assert_eq!(
        binds[before..],
        [ALICE_DN.to_string()],
        "only the marker bind may reach the server: {binds:?}"
    );

    // And with the server gone, still an immediate Ok(false), not a connection error.
    slapd.stop();
    let start = Instant::now();
    assert!(!verify(&auth, "alice", "").await.unwrap());
    assert!(!verify(&auth, "", "x").await.unwrap());
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "empty credentials took {:?}",
        start.elapsed()
    );
    // Whereas a real password now fails to connect: the server really is down.
    assert!(matches!(
        verify(&auth, "alice", ALICE_PW).await,
        Err(PrimaryError::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_dn_injection_usernames_are_rejected() {
    let Some(tools) = ldap_tools("ldap_dn_injection_usernames_are_rejected") else {
        return;
    };
    let slapd = Slapd::start(&tools, "inject").await;
    let auth = slapd.auth(PEOPLE);

    // Control: unescaped, "eve,ou=partners" would have named eve's entry and bound.
    assert_eq!(raw_bind(&slapd.ldap_url, EVE_DN, EVE_PW).await, 0);

    let cases = [
        ("eve,ou=partners", EVE_PW),
        ("alice,ou=admins", ALICE_PW),
        ("*", ALICE_PW),
        ("alice)(uid=*", ALICE_PW),
        ("alice+cn=Alice Example", ALICE_PW),
        ("alice\\", ALICE_PW),
        ("alice\0", ALICE_PW),
        ("#alice", ALICE_PW),
        ("\"alice\"", ALICE_PW),
        ("alice,ou=people,dc=example,dc=org", ALICE_PW),
    ];
    for (username, password) in cases {
        assert!(
            !verify(&auth, username, password)
                .await
                .unwrap_or_else(|e| panic!("{username:?}: {e}")),
            "{username:?} must not authenticate"
        );
    }
    // Every one reached the server as one RDN under ou=people (slapd logs the DN it parsed, with
    // escaped commas as \2C: three separators means four RDNs, as in the template) and was
    // refused with 49 invalidCredentials.
    let binds = slapd.wait_binds(1 + cases.len()).await;
    for dn in &binds[1..] {
        assert!(
            dn.ends_with(",ou=people,dc=example,dc=org") && dn.matches(',').count() == 3,
            "{dn}"
        );
    }
    slapd.wait_count("RESULT tag=97 err=49", cases.len()).await;
    // The server still answers normally afterwards.
    assert!(verify(&auth, "alice", ALICE_PW).await.unwrap());
    slapd.wait_count("RESULT tag=97 err=0", 2).await;
    assert_eq!(slapd.count("RESULT tag=97 err=49"), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_upn_template_passes_username_verbatim() {
    let Some(tools) = ldap_tools("ldap_upn_template_passes_username_verbatim") else {
        return;
    };
    let slapd = Slapd::start(&tools, "upn").await;
    let auth = slapd.auth("{username}");

    // slapd takes DNs, not UPNs: the whole DN as username binds...
    assert!(verify(&auth, ALICE_DN, ALICE_PW).await.unwrap());
    assert!(!verify(&auth, ALICE_DN, "nope").await.unwrap());
    // ...and a name that is no DN is refused by the server (34 invalidDNSyntax) → false.
    assert!(!verify(&auth, "alice@example.org", ALICE_PW).await.unwrap());
    // Control characters never reach it.
    let before = slapd.wait_binds(2).await.len();
    assert!(!verify(&auth, "alice\n", ALICE_PW).await.unwrap());
    assert!(
        !verify(&auth, "uid=alice,ou=people,dc=example,dc=org\0", ALICE_PW)
            .await
            .unwrap()
    );
    assert!(verify(&auth, ALICE_DN, ALICE_PW).await.unwrap()); // marker
    let binds = slapd.wait_binds(before + 1).await;
    assert_eq!(binds[before..], [ALICE_DN.to_string()], "{binds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_start_tls_and_ldaps_bind_with_ca_file() {
    let Some(tools) = ldap_tools("ldap_start_tls_and_ldaps_bind_with_ca_file") else {
        return;
    };
    let slapd = Slapd::start(&tools, "tls").await;

    let start_tls = PrimaryAuth::new(LdapSettings {
        start_tls: true,
        ca_file: Some(slapd.ca_file.clone()),
        ..slapd.settings(PEOPLE)
    })
    .unwrap();
    assert!(verify(&start_tls, "alice", ALICE_PW).await.unwrap());
    assert!(!verify(&start_tls, "alice", "wrong").await.unwrap());

    let ldaps = PrimaryAuth::new(LdapSettings {
        url: slapd.ldaps_url.clone(),
        ca_file: Some(slapd.ca_file.clone()),
        ..slapd.settings(PEOPLE)
    })
    .unwrap();
    assert!(verify(&ldaps, "alice", ALICE_PW).await.unwrap());
    assert!(!verify(&ldaps, "alice", "wrong").await.unwrap());

    // The server saw four TLS sessions (two after StartTLS) and both accepted binds at a TLS
    // security strength factor, never ssf=0.
    slapd.wait_count("TLS established", 4).await;
    slapd.wait_count("mech=SIMPLE", 2).await;
    let log = slapd.log_text();
    assert_eq!(log.matches(" STARTTLS").count(), 2, "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("mech=SIMPLE"))
            .all(|l| !l.contains(" ssf=0")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_tls_with_wrong_ca_is_an_error() {
    let Some(tools) = ldap_tools("ldap_tls_with_wrong_ca_is_an_error") else {
        return;
    };
    let slapd = Slapd::start(&tools, "wrongca").await;
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let wrong_ca = slapd.dir.write("other-ca.pem", &other.cert.pem());

    for (url, start_tls) in [(&slapd.ldap_url, true), (&slapd.ldaps_url, false)] {
        let auth = PrimaryAuth::new(LdapSettings {
            url: url.clone(),
            start_tls,
            ca_file: Some(wrong_ca.clone()),
            ..slapd.settings(PEOPLE)
        })
        .unwrap();
        let err = verify(&auth, "alice", ALICE_PW).await.unwrap_err();
        assert!(matches!(err, PrimaryError::Tls { .. }), "{url}: {err:?}");
        assert!(!err.to_string().contains(ALICE_PW), "{err}");
    }
    // No password was sent over the unverified connections.
    assert!(slapd.binds().is_empty(), "{:?}", slapd.binds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_server_down_is_an_error_within_the_timeout() {
    let Some(tools) = ldap_tools("ldap_server_down_is_an_error_within_the_timeout") else {
        return;
    };
    let mut slapd = Slapd::start(&tools, "down").await;
    let timeout = Duration::from_secs(2);
    let auth = PrimaryAuth::new(LdapSettings {
        timeout,
        ..slapd.settings(PEOPLE)
    })
    .unwrap();
    assert!(verify(&auth, "alice", ALICE_PW).await.unwrap());

    slapd.stop();
    let start = Instant::now();
    let err = verify(&auth, "alice", ALICE_PW).await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, PrimaryError::Connect { .. }), "{err:?}");
    assert!(took <= timeout, "took {took:?}");
    let text = err.to_string();
    assert!(text.contains(&slapd.ldap_url), "{text}");
    assert!(!text.contains(ALICE_PW), "{text}");
}

// ---------------------------------------------------------------------------------------------
// No directory needed
// ---------------------------------------------------------------------------------------------

/// A server that accepts TCP connections and never answers: the whole check must still end at
/// the configured timeout, as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_unresponsive_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}/", listener.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock); // keep open, never reply
        }
    });
    for start_tls in [false, true] {
        let ca = TempDir::new("blackhole");
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let ca_file = ca.write("ca.pem", &cert.cert.pem());
        let timeout = Duration::from_millis(750);
        let auth = PrimaryAuth::new(LdapSettings {
            url: url.clone(),
            bind_dn_template: PEOPLE.into(),
            start_tls,
            ca_file: start_tls.then_some(ca_file),
            timeout,
        })
        .unwrap();
        let start = Instant::now();
        let err = verify(&auth, "alice", ALICE_PW).await.unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, PrimaryError::Timeout { .. }), "{err:?}");
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(2),
            "start_tls={start_tls}: took {took:?}"
        );
        assert!(!err.to_string().contains(ALICE_PW), "{err}");
    }
    holder.abort();
}

/// Counts connections: empty credentials must not open one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_empty_credentials_open_no_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}/", listener.local_addr().unwrap());
    let auth = PrimaryAuth::new(LdapSettings {
        url,
        bind_dn_template: PEOPLE.into(),
        start_tls: false,
        ca_file: None,
        timeout: CHECK_TIMEOUT,
    })
    .unwrap();
    for (user, password) in [("alice", ""), ("", ALICE_PW), (" ", ALICE_PW), ("", "")] {
        assert!(!verify(&auth, user, password).await.unwrap());
    }
    // Nothing is waiting in the accept queue.
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "a connection was opened: {accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_invalid_settings_are_refused() {
    let base = LdapSettings {
        url: "ldap://127.0.0.1:389".into(),
        bind_dn_template: PEOPLE.into(),
        start_tls: false,
        ca_file: None,
        timeout: CHECK_TIMEOUT,
    };
    base.validate().unwrap();
    let refused = |s: LdapSettings| -> String {
        let msg = s.validate().unwrap_err();
        match PrimaryAuth::new(s) {
            Err(PrimaryError::Config(m)) => assert_eq!(m, msg),
            other => panic!("PrimaryAuth::new accepted what validate refused: {other:?}"),
        }
        msg
    };

    let msg = refused(LdapSettings {
        bind_dn_template: "uid=alice,ou=people,dc=example,dc=org".into(),
        ..base.clone()
    });
    assert!(msg.contains("{username}"), "{msg}");
    let msg = refused(LdapSettings {
        url: "https://127.0.0.1".into(),
        ..base.clone()
    });
    assert!(msg.contains("ldap://"), "{msg}");
    let msg = refused(LdapSettings {
        url: "ldap://dc1.corp.example:389".into(),
        ..base.clone()
    });
    assert!(
        msg.contains("clear text") && msg.contains("start_tls"),
        "{msg}"
    );
    let msg = refused(LdapSettings {
        url: "ldaps://dc1.corp.example".into(),
        ..base.clone()
    });
    assert!(msg.contains("ca_file is required"), "{msg}");
    let msg = refused(LdapSettings {
        url: "ldap://dc1.corp.example".into(),
        start_tls: true,
        ..base.clone()
    });
    assert!(msg.contains("ca_file is required"), "{msg}");
    let msg = refused(LdapSettings {
        timeout: Duration::ZERO,
        ..base.clone()
    });
    assert!(msg.contains("timeout"), "{msg}");

    // A CA file that holds no certificate is caught when the checker is built.
    let dir = TempDir::new("badca");
    let empty = dir.write("empty.pem", "not a certificate\n");
    let err = PrimaryAuth::new(LdapSettings {
        url: "ldaps://127.0.0.1".into(),
        ca_file: Some(empty),
        ..base
    })
    .unwrap_err();
    assert!(matches!(err, PrimaryError::CaFile { .. }), "{err:?}");
}

/// `CombinedAuthUser_4` end to end over TLS: the LDAP bind first, then the second factor; a wrong
/// password never reaches the provider; without `[primary_auth]` the answer is Error 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_auth_user_binds_then_calls() {
    let Some(tools) = ldap_tools("combined_auth_user_binds_then_calls") else {
        return;
    };
    let slapd = Slapd::start(&tools, "combined").await;
    let mut settings = pfgate::config::Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.primary_auth = Some(slapd.settings(PEOPLE));
    let users = r#"
[[users]]
username = "alice"
country_code = "1"
phone = "4255550100"
outcome = "approve"
"#;
    let directory = pfgate::store::directory::Directory::from_toml("ldap test", users).unwrap();
    let store = pfgate::server::app::open_store(&settings).await.unwrap();
    pfgate::server::app::seed(store.as_ref(), &directory)
        .await
        .unwrap();
    let provider = std::sync::Arc::new(
        pfgate::providers::scripted::ScriptedProvider::from_directory(&directory),
    );
    let engine = pfgate::engine::Engine::new(store, provider.clone(), settings.engine.clone())
        .with_primary(Some(std::sync::Arc::new(slapd.auth(PEOPLE))));
    let server =
        TestServer::from_running(pfgate::server::start_with(settings, engine).await.unwrap());
    let c = server.client();
    let combined = |pw: &str| {
        env11(&format!(
            r#"<CombinedAuthUser_4 xmlns="{NS}"><username>alice</username><password>{pw}</password><authenticationType>ldap</authenticationType><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType><requireUserMatch>true</requireUserMatch></CombinedAuthUser_4>"#
        ))
    };
    let r = c
        .soap11(Some(&action("CombinedAuthUser_4")), &combined(ALICE_PW))
        .await;
    assert_eq!(
        text_of(&r.body, "CombinedAuthUser_4Result").as_deref(),
        Some("true"),
        "{}",
        r.body
    );
    assert_eq!(
        text_of(&r.body, "primaryAuthSucceeded").as_deref(),
        Some("true")
    );
    assert_eq!(text_of(&r.body, "pfAuthSucceeded").as_deref(), Some("true"));
    assert_eq!(
        text_of(&r.body, "authenticationRequestId").map(|i| i.len()),
        Some(32)
    );
    assert_eq!(provider.calls(), 1);

    let r = c
        .soap11(
            Some(&action("CombinedAuthUser_4")),
            &combined("wrong-password"),
        )
        .await;
    assert_eq!(
        text_of(&r.body, "CombinedAuthUser_4Result").as_deref(),
        Some("false")
    );
    assert_eq!(
        text_of(&r.body, "primaryAuthSucceeded").as_deref(),
        Some("false")
    );
    assert!(r.body.contains("<error><Code>12</Code>"), "{}", r.body);
    assert_eq!(
        provider.calls(),
        1,
        "no second factor after a failed primary"
    );

    let r = c
        .soap11(
            Some(&action("PrimaryAuthUser")),
            &env11(&format!(
                r#"<PrimaryAuthUser xmlns="{NS}"><username>alice</username><password>{ALICE_PW}</password></PrimaryAuthUser>"#
            )),
        )
        .await;
    assert_eq!(
        text_of(&r.body, "PrimaryAuthUserResult").as_deref(),
        Some("true")
    );

    // Issue #17, item 1: the policy holds for CombinedAuthUser* too — a blocked user with the right
    // password gets no second factor and no `true`.
    let block = env11(&format!(
        r#"<BlockUser xmlns="{NS}"><username>alice</username><reason>test</reason><modifyUsername>admin</modifyUsername></BlockUser>"#
    ));
    let r = c.soap11(Some(&action("BlockUser")), &block).await;
    assert_eq!(text_of(&r.body, "BlockUserResult").as_deref(), Some("true"));
    let r = c
        .soap11(Some(&action("CombinedAuthUser_4")), &combined(ALICE_PW))
        .await;
    assert_eq!(
        text_of(&r.body, "CombinedAuthUser_4Result").as_deref(),
        Some("false"),
        "{}",
        r.body
    );
    assert_eq!(
        text_of(&r.body, "pfAuthSucceeded").as_deref(),
        Some("false")
    );
    assert!(r.body.contains("<callResult><Code>14</Code>"), "{}", r.body);
    assert_eq!(provider.calls(), 1, "no call for a blocked user");

    // The demo server has no [primary_auth]: Error 502.
    let demo = TestServer::demo().await;
    let r = demo
        .client()
        .soap11(Some(&action("CombinedAuthUser_4")), &combined(ALICE_PW))
        .await;
    assert!(r.body.contains("<error><Code>502</Code>"), "{}", r.body);
}

/// Issue #17, item 1 follow-up, through the binary with a real slapd: `PrimaryAuthUser` asks the
/// same policy as every other operation that can answer a success. A blocked, locked-out or
/// disabled user's right password is refused (`false`, Error 12 naming why) without the directory
/// being asked; so is a user the store does not hold (Error 10, `unknown_users = "deny"`). A
/// disabled user whose behaviour is `succeed` still needs the right password. Before the fix each
/// refused case answered `true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_auth_user_refuses_blocked_locked_disabled_and_unknown_users() {
    use crate::security_engine::{binary_site, code_in, plain_soap, serve_binary, stop_binary};
    let test = "primary_auth_user_refuses_blocked_locked_disabled_and_unknown_users";
    let Some(tools) = ldap_tools(test) else {
        return;
    };
    let slapd = Slapd::start(&tools, "primaryuser").await;
    let users = "[[users]]\nusername = \"alice\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n\
                 pin = \"2580\"\noutcome = \"approve\"\n";
    let extra = format!(
        "[engine]\nlockout_threshold = 2\n\
         [primary_auth]\nldap_url = \"{}\"\nbind_dn_template = \"{PEOPLE}\"\n",
        slapd.ldap_url
    );
    let (dir, config) = binary_site("primary-user", users, &extra);
    let (served, addr) = serve_binary(&config).await;
    let primary = |user: &'static str, pw: &'static str| {
        let addr = addr.clone();
        async move {
            let body = plain_soap(
                &addr,
                "PrimaryAuthUser",
                &format!("<username>{user}</username><password>{pw}</password>"),
            )
            .await;
            let result = text_of(&body, "PrimaryAuthUserResult").unwrap_or_default();
            (result, code_in(&body, "error"), body)
        }
    };
    let admin = |op: &'static str, extra: &'static str| {
        let addr = addr.clone();
        async move {
            let inner =
                format!("<username>alice</username>{extra}<modifyUsername>admin</modifyUsername>");
            let body = plain_soap(&addr, op, &inner).await;
            assert_eq!(
                text_of(&body, &format!("{op}Result")).as_deref(),
                Some("true"),
                "{op}: {body}"
            );
        }
    };
    let refused = |(result, error, body): (String, i64, String), code: i64, why: &str| {
        assert_eq!((result.as_str(), error), ("false", code), "{why}: {body}");
        assert!(body.contains(why), "{why}: {body}");
    };

    // In good standing: the directory decides (two binds).
    let (r, e, body) = primary("alice", ALICE_PW).await;
    assert_eq!((r.as_str(), e), ("true", 0), "{body}");
    let (r, e, body) = primary("alice", "wrong-password").await;
    assert_eq!((r.as_str(), e), ("false", 12), "{body}");
    assert_eq!(slapd.wait_binds(2).await.len(), 2);

    admin("BlockUser", "<reason>lost laptop</reason>").await;
    refused(primary("alice", ALICE_PW).await, 12, "blocked");
    admin("UnblockUser", "<reason>found</reason>").await;

    for _ in 0..2 {
        let body = plain_soap(
            &addr,
            "ValidatePin",
            "<username>alice</username><pin>9731</pin>",
        )
        .await;
        assert_eq!(code_in(&body, "error"), 125, "{body}");
    }
    refused(primary("alice", ALICE_PW).await, 12, "locked out");
    admin("UnblockUser", "<reason>identity checked</reason>").await;

    admin("Disable", "").await;
    refused(primary("alice", ALICE_PW).await, 12, "disabled");
    // Behaviour "succeed" waives the second factor, not the password (two more binds).
    admin(
        "DisabledBehavior",
        "<disabledBehavior>succeed</disabledBehavior>",
    )
    .await;
    let (r, e, body) = primary("alice", ALICE_PW).await;
    assert_eq!((r.as_str(), e), ("true", 0), "{body}");
    let (r, e, body) = primary("alice", "wrong-password").await;
    assert_eq!((r.as_str(), e), ("false", 12), "{body}");
    admin("Enable", "").await;

    // In the directory, not in the store: refused by default (MFA Server asked its own users).
    let (r, e, body) = primary(SMITH, SMITH_PW).await;
    assert_eq!((r.as_str(), e), ("false", 10), "{body}");

    // A marker bind: once it is in the log, a bind sent for any refused case would be too.
    let (r, _, body) = primary("alice", ALICE_PW).await;
    assert_eq!(r, "true", "{body}");
    let binds = slapd.wait_binds(5).await;
    assert_eq!(
        binds,
        vec![ALICE_DN.to_string(); 5],
        "only the five allowed checks may reach the directory"
    );
    assert!(stop_binary(served).await.success());
    let _ = std::fs::remove_dir_all(&dir);
}
