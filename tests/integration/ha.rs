//! Several instances, one truth (issue #7, `docs/ha.md`): two real pfgate processes on their own
//! ports share one PostgreSQL schema, with a fake webhook provider (`docs/webhook.md`) that counts
//! the calls it is asked to place and answers slowly enough for calls to overlap.
//!
//! - concurrent `PfAuthUser_5` for one user and number on both instances: one provider call, every
//!   caller gets its outcome and request id;
//! - one one-time bypass, 50 racing authentications across the instances: consumed once;
//! - an `authenticationRequestId` issued by one instance completed on the other, and the TOTP code
//!   then refused as a replay on both;
//! - directory changes through one instance seen by the next request to the other;
//! - the database connection cut (a TCP proxy of the test's own in front of PostgreSQL): answers
//!   fail secure (CallResult 152, Error 503, an audit event saying why), `/readyz` answers 503, and
//!   both recover by themselves when the proxy comes back;
//! - only a true retry joins a call in flight: another application on the other instance gets a
//!   call of its own (issue #17 item 3);
//! - an instance with another secrets key refuses to start; `pfgate store rotate-key` changes the
//!   key for all (issue #23 item 4);
//! - an instance killed mid-call: the login waiting on its claim is served by a fresh call once
//!   the claim's lease lapses (issue #23 item 5).
//!
//! The database comes from `PFGATE_TEST_DATABASE_URL` (each test in a schema of its own); without
//! it the tests print a `SKIP` line. `.ci/run` sets it, so CI always runs them.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pfgate::providers::webhook::{
    self, now_unix, Signed, StartRequest, StateResponse, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use pfgate::store::postgres::testing::{self, TestSchema};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{action, env11, text_of, NS, SDK_PATH, STEP};

pub(crate) const WEBHOOK_SECRET: &str = "ha-test-webhook-secret-3e9d1c0b7a";
/// The fake provider's base path.
pub(crate) const PREFIX: &str = "/hook";
/// The OATH secret of `oath@contoso.com` (base32 of `12345678901234567890`).
const OATH_SECRET: &[u8] = b"12345678901234567890";

/// The users both instances seed (concurrently: that race is part of the test).
pub(crate) const USERS: &str = r#"
[[users]]
username = "race@contoso.com"
country_code = "1"
phone = "4255550100"

[[users]]
username = "bypass@contoso.com"
country_code = "1"
phone = "4255550102"

[[users]]
username = "oath@contoso.com"
country_code = "1"
phone = "4255550103"
mode = "oathToken"
oath_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

[[users]]
username = "mover@contoso.com"
country_code = "1"
phone = "4255550104"

[[users]]
username = "outage@contoso.com"
country_code = "1"
phone = "4255550105"

[[users]]
username = "stale@contoso.com"
country_code = "1"
phone = "4255550106"
"#;

/// The user whose first call the fake provider never answers (its instance is killed meanwhile).
const STALE_USER: &str = "stale@contoso.com";

// ---------------------------------------------------------------------------------------------
// The fake webhook provider
// ---------------------------------------------------------------------------------------------

/// A webhook service that approves every attempt, after `delay` for `race@contoso.com` (so that
/// authentications arriving together overlap), at once for everyone else — except the first call
/// for [`STALE_USER`], which it leaves ringing for two minutes; it records every start.
pub(crate) struct FakeProvider {
    starts: Mutex<Vec<StartRequest>>,
    delay: Duration,
}

impl FakeProvider {
    pub(crate) async fn start(delay: Duration) -> (Arc<Self>, SocketAddr) {
        let fake = Arc::new(Self {
            starts: Mutex::new(Vec::new()),
            delay,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let fake = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let fake = fake.clone();
                        async move { Ok::<_, Infallible>(fake.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (fake, addr)
    }

    /// Starts (POSTs) received for this E.164 number.
    pub(crate) fn calls_to(&self, phone: &str) -> usize {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.phone == phone)
            .count()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (ts, sig) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let verified = webhook::verify(
            WEBHOOK_SECRET.as_bytes(),
            Signed::Request {
                method: &method,
                path: &path,
            },
            ts.as_deref(),
            sig.as_deref(),
            &body,
            now_unix(),
            Duration::from_secs(300),
        );
        if verified.is_err() {
            return Response::builder()
                .status(401)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
        }
        match (method.as_str(), path.strip_prefix(PREFIX)) {
            ("GET", Some("/health")) => sign(200, &method, &path, br#"{"status":"ok"}"#.to_vec()),
            ("POST", Some("/authentications")) => {
                let start: StartRequest = serde_json::from_slice(&body).unwrap();
                let id = start.request_id.clone();
                let delay = {
                    let mut starts = self.starts.lock().unwrap();
                    let first_stale = start.username == STALE_USER
                        && !starts.iter().any(|s| s.username == STALE_USER);
                    let slow = start.username == "race@contoso.com";
                    starts.push(start);
                    match (first_stale, slow) {
                        (true, _) => Duration::from_secs(120),
                        (false, true) => self.delay,
                        _ => Duration::ZERO,
                    }
                };
                tokio::time::sleep(delay).await;
                let state = StateResponse {
                    request_id: id,
                    status: "success".into(),
                    outcome: Some("approved".into()),
                    reason: None,
                };
                sign(201, &method, &path, serde_json::to_vec(&state).unwrap())
            }
            _ => Response::builder()
                .status(404)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap(),
        }
    }
}

/// A response signed as `docs/webhook.md` says.
fn sign(status: u16, method: &str, path: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let ts = now_unix();
    let signature = webhook::sign(
        WEBHOOK_SECRET.as_bytes(),
        Signed::Response {
            status,
            method,
            path,
        },
        ts,
        &body,
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of PostgreSQL that the test can cut and restore
// ---------------------------------------------------------------------------------------------

/// Forwards 127.0.0.1:`port` to the database. `cut` closes every forwarded connection and makes
/// new ones close at once (the database is unreachable); `restore` forwards again.
pub(crate) struct DbProxy {
    pub(crate) port: u16,
    up: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl DbProxy {
    pub(crate) async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let (accept_up, accept_gen) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = accept_gen.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                    // Both sockets close here.
                });
            }
        });
        Self {
            port,
            up,
            generation,
        }
    }

    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Two pfgate processes
// ---------------------------------------------------------------------------------------------

/// One `pfgate serve` process; killed on drop. Its log (stderr) goes to a file the test can read.
struct Instance {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Instance {
    /// Starts `pfgate serve --config CONFIG` and waits for its "listening on" line.
    fn spawn(config: &Path, name: &str) -> Self {
        let log = config.with_file_name(format!("{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pfgate"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(STEP) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{name} did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        // "pfgate X listening on http://127.0.0.1:PORT/... (plain HTTP)"
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{name}: unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts `pfgate serve --config CONFIG` expecting it to refuse: its exit code and log, or a
    /// panic when it starts listening (or neither within [`STEP`]).
    fn refused(config: &Path, name: &str) -> (Option<i32>, String) {
        let log = config.with_file_name(format!("{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pfgate"))
            .args(["serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(config.with_file_name(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            let out = std::fs::read_to_string(config.with_file_name(format!("{name}.out")))
                .unwrap_or_default();
            if out.contains("listening on") || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} started (or hung) instead of refusing: {out}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (
            status.code(),
            std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }

    /// Ends the process as a crash or `kill -9` would (SIGKILL): nothing it holds is released.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// One HTTP/1.1 request on a fresh connection: (status, body).
    async fn http(&self, request: String) -> (u16, String) {
        http_exchange(self.addr, &request).await
    }

    async fn get(&self, path: &str) -> u16 {
        self.http(format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ))
        .await
        .0
    }

    /// Calls `op` with the inner XML of its element; returns the response body (HTTP 200).
    async fn call(&self, op: &str, inner: &str) -> String {
        let body = env11(&format!(r#"<{op} xmlns="{NS}">{inner}</{op}>"#));
        let (status, text) = self
            .http(format!(
                "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
                 SOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                action(op),
                body.len()
            ))
            .await;
        assert_eq!(status, 200, "{op}: {text}");
        text
    }

    /// `PfAuthUser_4` for a stored user: (result, callResult, error, request id).
    async fn auth4(&self, user: &str) -> (String, i64, i64, Option<String>) {
        let body = self
            .call(
                "PfAuthUser_4",
                &format!("<username>{user}</username><requireUserMatch>true</requireUserMatch>"),
            )
            .await;
        answer(&body, "PfAuthUser_4Result")
    }

    /// `PfAuthUser_5` calling `+1 number`: (result, callResult, error, request id).
    async fn auth5(&self, user: &str, number: &str) -> (String, i64, i64, Option<String>) {
        self.auth5_from(user, number, "").await
    }

    /// [`Instance::auth5`] naming the application that asks.
    async fn auth5_from(
        &self,
        user: &str,
        number: &str,
        application: &str,
    ) -> (String, i64, i64, Option<String>) {
        let body = self
            .call(
                "PfAuthUser_5",
                &format!(
                    "<username>{user}</username><applicationName>{application}</applicationName>\
                     <requireUserMatch>true</requireUserMatch>\
                     <mode>voiceCall</mode><countryCode>1</countryCode>\
                     <phoneNumber>{number}</phoneNumber><extension />"
                ),
            )
            .await;
        answer(&body, "PfAuthUser_5Result")
    }
}

/// One HTTP/1.1 request on a fresh connection to `addr`: (status, body).
pub(crate) async fn http_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(STEP, exchange)
        .await
        .expect("answer in time")
        .expect("HTTP exchange");
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, body.to_string())
}

/// (result, callResult code, error code, request id) of an authentication response.
fn answer(body: &str, result: &str) -> (String, i64, i64, Option<String>) {
    let code = |parent: &str| -> i64 {
        let doc = roxmltree::Document::parse(body).unwrap();
        doc.descendants()
            .find(|n| n.tag_name().name() == parent)
            .and_then(|n| n.children().find(|c| c.tag_name().name() == "Code"))
            .and_then(|n| n.text())
            .unwrap_or_else(|| panic!("no {parent}/Code in {body}"))
            .parse()
            .unwrap()
    };
    (
        text_of(body, result).unwrap_or_else(|| panic!("no {result} in {body}")),
        code("callResult"),
        code("error"),
        text_of(body, "authenticationRequestId").filter(|id| !id.is_empty()),
    )
}

/// Two instances on one schema, and what they share.
struct Cluster {
    a: Instance,
    b: Instance,
    provider: Arc<FakeProvider>,
    _schema: TestSchema,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What two instances share: a fresh schema, the fake provider, a directory with the secrets key,
/// the users file and `pfgate.toml`.
struct Shared {
    schema: TestSchema,
    provider: Arc<FakeProvider>,
    provider_addr: SocketAddr,
    dir: TempDir,
}

impl Shared {
    /// `None` (with a `SKIP` line) without a database.
    async fn create(test: &str) -> Option<Self> {
        let url = testing::database_url(test)?;
        let schema = TestSchema::create(&url).await.unwrap();
        let (provider, provider_addr) = FakeProvider::start(Duration::from_secs(3)).await;
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pfgate-ha-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir = TempDir(dir);
        std::fs::write(dir.0.join("secrets.key"), [0x5au8; 32]).unwrap();
        std::fs::write(dir.0.join("webhook.secret"), WEBHOOK_SECRET).unwrap();
        std::fs::write(dir.0.join("users.toml"), USERS).unwrap();
        Some(Self {
            schema,
            provider,
            provider_addr,
            dir,
        })
    }

    /// Writes `name` (a configuration file in the shared directory) for an instance reaching the
    /// database at `db_url` with the secrets key in `key_file`, seeding the users file or not;
    /// returns its path.
    fn config(&self, name: &str, db_url: &str, key_file: &str, users: bool) -> PathBuf {
        let directory = if users {
            "[directory]\nusers_file = \"users.toml\"\n"
        } else {
            ""
        };
        let config = format!(
            "[server]\nplain_listen = \"127.0.0.1:0\"\n\
             [auth]\nallow_anonymous = true\n\
             [engine]\nauth_timeout_secs = 20\n\
             {directory}\
             [store]\nurl = \"{db_url}\"\nschema = \"{}\"\npool_size = 4\nsecrets_key_file = \"{key_file}\"\n\
             [providers.hook]\nkind = \"webhook\"\nbase_url = \"http://{}{PREFIX}\"\n\
             secret_file = \"webhook.secret\"\npoll_interval_ms = 100\n\
             [[routes]]\nproviders = [\"hook\"]\n",
            self.schema.name(),
            self.provider_addr,
        );
        let path = self.dir.0.join(name);
        std::fs::write(&path, config).unwrap();
        path
    }
}

impl Cluster {
    /// Two instances on a fresh schema of the test database, reached directly or through
    /// `proxy_port` (a [`DbProxy`] in front of it). `None` (with a `SKIP` line) without a
    /// database.
    async fn start(test: &str, proxy: Option<&DbProxy>) -> Option<Self> {
        let shared = Shared::create(test).await?;
        let url = testing::database_url(test)?;
        let db_url = match proxy {
            Some(p) => with_port(&url, p.port),
            None => url.clone(),
        };
        let path = shared.config("pfgate.toml", &db_url, "secrets.key", true);
        // Both start at once: migrations and seeding race, and must not fail.
        let (p1, p2) = (path.clone(), path.clone());
        let a = std::thread::spawn(move || Instance::spawn(&p1, "a"));
        let b = std::thread::spawn(move || Instance::spawn(&p2, "b"));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        Some(Self {
            a,
            b,
            provider: shared.provider,
            _schema: shared.schema,
            _dir: shared.dir,
        })
    }
}

/// `url` with its port replaced (the proxy's), host 127.0.0.1.
pub(crate) fn with_port(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_host(Some("127.0.0.1")).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

/// `host:port` of the test database.
pub(crate) fn upstream(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5432)
    )
}

/// The TOTP code of `OATH_SECRET` now.
fn totp_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    pfgate::engine::totp::hotp(OATH_SECRET, now / 30, 6)
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pfauthuser5_on_two_instances_places_one_call() {
    let Some(c) = Cluster::start("ha concurrent_pfauthuser5", None).await else {
        return;
    };
    let (a, b) = (Arc::new(c.a), Arc::new(c.b));
    // Three callers on each instance, for the same user and number, at the same time.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let instance = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { instance.auth5("race@contoso.com", "4255550100").await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for t in tasks {
        let (result, call_result, error, id) = t.await.unwrap();
        assert_eq!((result.as_str(), call_result, error), ("true", 2, 0));
        ids.insert(id.expect("a request id"));
    }
    assert_eq!(
        c.provider.calls_to("+14255550100"),
        1,
        "six callers on two instances, one provider call"
    );
    assert_eq!(ids.len(), 1, "every caller gets the one call's request id");
    // Once it ended, a new authentication places a new call, on either instance.
    let (result, ..) = b.auth5("race@contoso.com", "4255550100").await;
    assert_eq!(result, "true");
    assert_eq!(c.provider.calls_to("+14255550100"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bypass_is_consumed_once_by_fifty_racing_requests() {
    let Some(c) = Cluster::start("ha bypass race", None).await else {
        return;
    };
    let body =
        c.a.call(
            "OneTimeBypass2",
            "<username>bypass@contoso.com</username><reason>lost phone</reason>\
             <bypassSeconds>120</bypassSeconds><modifyUsername>helpdesk</modifyUsername>",
        )
        .await;
    assert_eq!(
        text_of(&body, "OneTimeBypass2Result").as_deref(),
        Some("true")
    );
    let (a, b) = (Arc::new(c.a), Arc::new(c.b));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let instance = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { instance.auth4("bypass@contoso.com").await })
        })
        .collect();
    let mut by_code: HashMap<i64, usize> = HashMap::new();
    for t in tasks {
        let (result, call_result, _, _) = t.await.unwrap();
        assert_eq!(result, "true", "callResult {call_result}");
        *by_code.entry(call_result).or_default() += 1;
    }
    assert_eq!(
        by_code.get(&7),
        Some(&1),
        "one bypass, one use: {by_code:?}"
    );
    assert_eq!(
        by_code.get(&2),
        Some(&49),
        "the others were called: {by_code:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_from_one_instance_completes_on_the_other_and_the_code_is_spent_on_both() {
    let Some(c) = Cluster::start("ha request id across instances", None).await else {
        return;
    };
    let validate = |code: &str, id: &str| {
        format!(
            "<username>oath@contoso.com</username><code>{code}</code>\
             <authenticationRequestId>{id}</authenticationRequestId><fallback>false</fallback>"
        )
    };
    let (result, call_result, _, id) = c.a.auth4("oath@contoso.com").await;
    assert_eq!(
        (result.as_str(), call_result),
        ("false", 22),
        "OATH pending"
    );
    let id = id.unwrap();
    let code = totp_now();
    let body = c.b.call("ValidateOathCode", &validate(&code, &id)).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("true"),
        "{body}"
    );
    // The id was spent on B: A cannot use it again.
    let body = c.a.call("ValidateOathCode", &validate(&code, &id)).await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("false")
    );
    // The code accepted on B is a replay on A and on B, with fresh ids from either instance.
    for (issuer, checker) in [(&c.b, &c.a), (&c.a, &c.b)] {
        let (_, _, _, fresh) = issuer.auth4("oath@contoso.com").await;
        let body = checker
            .call("ValidateOathCode", &validate(&code, &fresh.unwrap()))
            .await;
        assert_eq!(
            text_of(&body, "ValidateOathCodeResult").as_deref(),
            Some("false"),
            "a replayed code must be refused on every instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_changes_through_one_instance_are_seen_by_the_next_request_to_the_other() {
    let Some(c) = Cluster::start("ha directory changes", None).await else {
        return;
    };
    // A new number through A: B calls it on the very next request.
    let body =
        c.a.call(
            "ChangePhone",
            "<username>mover@contoso.com</username><userPhone><CountryCode>1</CountryCode>\
             <Phone>4255550199</Phone><Extension /><BackupCountryCode /><BackupPhone />\
             <BackupExtension /></userPhone><sendEmail>false</sendEmail>",
        )
        .await;
    assert_eq!(text_of(&body, "ChangePhoneResult").as_deref(), Some("true"));
    let (result, ..) = c.b.auth4("mover@contoso.com").await;
    assert_eq!(result, "true");
    assert_eq!(c.provider.calls_to("+14255550199"), 1);
    assert_eq!(c.provider.calls_to("+14255550104"), 0);
    // Blocked through B: refused by A; unblocked through A: B calls again.
    let body =
        c.b.call(
            "BlockUser",
            "<username>mover@contoso.com</username><reason>lost phone</reason>",
        )
        .await;
    assert_eq!(text_of(&body, "BlockUserResult").as_deref(), Some("true"));
    let (result, call_result, ..) = c.a.auth4("mover@contoso.com").await;
    assert_eq!((result.as_str(), call_result), ("false", 14));
    let body =
        c.a.call(
            "UnblockUser",
            "<username>mover@contoso.com</username><reason>found</reason>",
        )
        .await;
    assert_eq!(text_of(&body, "UnblockUserResult").as_deref(), Some("true"));
    let (result, ..) = c.b.auth4("mover@contoso.com").await;
    assert_eq!(result, "true");
    assert_eq!(c.provider.calls_to("+14255550199"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_fails_secure_and_both_instances_recover_by_themselves() {
    let Some(url) = testing::database_url("ha database cut") else {
        return;
    };
    let proxy = DbProxy::start(upstream(&url)).await;
    let Some(c) = Cluster::start("ha database cut", Some(&proxy)).await else {
        return;
    };
    for i in [&c.a, &c.b] {
        assert_eq!(i.get("/readyz").await, 200);
        assert_eq!(i.auth4("outage@contoso.com").await.0, "true");
    }

    proxy.cut();
    for i in [&c.a, &c.b] {
        let started = Instant::now();
        let (result, call_result, error, id) = i.auth4("outage@contoso.com").await;
        assert_eq!(
            (result.as_str(), call_result, error, id),
            ("false", 152, 503, None),
            "fail secure while the database is gone"
        );
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "answered in {:?}",
            started.elapsed()
        );
        assert_eq!(i.get("/readyz").await, 503, "not ready without a database");
        assert_eq!(i.get("/healthz").await, 200, "the process itself is alive");
    }
    // Directory writes fail too, with an answer (never a dropped connection).
    let body =
        c.a.call(
            "BlockUser",
            "<username>outage@contoso.com</username><reason>x</reason>",
        )
        .await;
    assert_eq!(text_of(&body, "BlockUserResult").as_deref(), Some("false"));
    // The audit says why.
    for i in [&c.a, &c.b] {
        let log = i.log();
        assert!(
            log.lines().any(|l| l.contains("second_factor_failed")
                && l.contains("\"call_result\":152")
                && l.contains("store unavailable")),
            "no audit event for the fail-secure answer in:\n{log}"
        );
    }
    assert_eq!(
        c.provider.calls_to("+14255550105"),
        2,
        "no call without the store"
    );

    proxy.restore();
    for (name, i) in [("a", &c.a), ("b", &c.b)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while i.get("/readyz").await != 200 {
            assert!(
                Instant::now() < deadline,
                "{name} not ready 30 s after the database came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (result, call_result, ..) = i.auth4("outage@contoso.com").await;
        assert_eq!(
            (result.as_str(), call_result),
            ("true", 2),
            "{name} serves again"
        );
    }
    assert_eq!(c.provider.calls_to("+14255550105"), 4);
}

/// Issue #23 item 4: an instance started with another secrets key than the one the database was
/// written with refuses to start, naming the problem and what to do, instead of sealing secrets
/// the other instances cannot open (and deriving other in-flight keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_another_secrets_key_refuses_to_start() {
    let Some(shared) = Shared::create("ha another secrets key").await else {
        return;
    };
    let url = testing::database_url("ha another secrets key").unwrap();
    let good = shared.config("good.toml", &url, "secrets.key", true);
    let a = Instance::spawn(&good, "a");
    std::fs::write(shared.dir.0.join("other.key"), [0x5bu8; 32]).unwrap();
    // No users file: nothing at start reads a sealed secret (seeding would stumble on one).
    let wrong = shared.config("wrong.toml", &url, "other.key", false);
    let (code, log) = Instance::refused(&wrong, "b");
    assert_eq!(code, Some(2), "exit code 2 (cannot start): {log}");
    assert!(
        log.contains("secrets key") && log.contains("does not match"),
        "the refusal names the problem: {log}"
    );
    assert!(
        log.contains("docs/ha.md"),
        "the refusal says where to read what to do: {log}"
    );
    // The instance with the right key is unaffected, and so is a second one with the same key.
    assert_eq!(a.auth4("outage@contoso.com").await.0, "true");
    let again = Instance::spawn(&good, "c");
    assert_eq!(again.auth4("outage@contoso.com").await.0, "true");
}

/// `pfgate store rotate-key` (docs/ha.md, "Rotating the secrets key"): with the instances
/// stopped, the command re-seals the secrets under the new key; afterwards the old key is refused
/// at start (and an instance left running with it is not ready), and an instance with the new key
/// opens the OATH secret sealed under the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_key_is_rotated_with_the_command() {
    let Some(shared) = Shared::create("ha rotate key").await else {
        return;
    };
    let url = testing::database_url("ha rotate key").unwrap();
    let old = shared.config("old.toml", &url, "secrets.key", true);
    let a = Instance::spawn(&old, "a"); // seeds the users, OATH secret included, under the old key
    assert_eq!(a.get("/readyz").await, 200);
    std::fs::write(shared.dir.0.join("new.key"), [0x6cu8; 32]).unwrap();
    let rotate = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_pfgate"))
            .args(["store", "rotate-key", "--config"])
            .arg(config)
            .arg("--new-key-file")
            .arg(shared.dir.0.join("new.key"))
            .output()
            .unwrap()
    };
    let rotated = rotate(&old);
    let out = String::from_utf8_lossy(&rotated.stdout);
    assert_eq!(
        rotated.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(out.contains("secrets key rotated"), "{out}");
    // An instance left running with the old key (the procedure says to stop them all) is no
    // longer ready, so a load balancer takes it out.
    assert_eq!(a.get("/readyz").await, 503, "not ready with a rotated key");
    drop(a);
    // The old key is refused now, by `serve` and by the command itself.
    let (code, log) = Instance::refused(&old, "b");
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("does not match"), "{log}");
    let again = rotate(&old);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("does not match"));
    // The new key opens what the old one sealed: the OATH user completes with a TOTP code.
    let new = shared.config("new.toml", &url, "new.key", true);
    let c = Instance::spawn(&new, "c");
    let (result, call_result, _, id) = c.auth4("oath@contoso.com").await;
    assert_eq!(
        (result.as_str(), call_result),
        ("false", 22),
        "OATH pending"
    );
    let body = c
        .call(
            "ValidateOathCode",
            &format!(
                "<username>oath@contoso.com</username><code>{}</code>\
                 <authenticationRequestId>{}</authenticationRequestId><fallback>false</fallback>",
                totp_now(),
                id.unwrap()
            ),
        )
        .await;
    assert_eq!(
        text_of(&body, "ValidateOathCodeResult").as_deref(),
        Some("true"),
        "{body}"
    );
}

/// Issue #23 item 5: an instance killed (`kill -9`) in the middle of a provider call leaves its
/// claim in the database. A login for the same user and number that was waiting on that claim on
/// the other instance is served by a fresh call once the dead owner's lease lapses — not answered
/// "timed out" (11) at its own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_instance_was_killed_is_taken_over_within_the_lease() {
    let Some(c) = Cluster::start("ha stale claim", None).await else {
        return;
    };
    let (mut a, b) = (c.a, Arc::new(c.b));
    let number = "+14255550106";
    // A places the call; the provider leaves it ringing.
    let a_addr = a.addr;
    let on_a = tokio::spawn(async move {
        let body = env11(&format!(
            r#"<PfAuthUser_5 xmlns="{NS}"><username>{STALE_USER}</username><requireUserMatch>true</requireUserMatch><mode>voiceCall</mode><countryCode>1</countryCode><phoneNumber>4255550106</phoneNumber><extension /></PfAuthUser_5>"#
        ));
        let request = format!(
            "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
             SOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            action("PfAuthUser_5"),
            body.len()
        );
        // The connection dies with the instance: whatever it gets is not looked at.
        let _ = tokio::time::timeout(STEP, async {
            let mut tcp = TcpStream::connect(a_addr).await?;
            tcp.write_all(request.as_bytes()).await?;
            let mut out = Vec::new();
            tcp.read_to_end(&mut out).await
        })
        .await;
    });
    let until = Instant::now() + STEP;
    while c.provider.calls_to(number) == 0 {
        assert!(Instant::now() < until, "A never placed the call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The retry on B joins A's call in flight (no second call while A lives)...
    let b1 = b.clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        (b1.auth5(STALE_USER, "4255550106").await, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        c.provider.calls_to(number),
        1,
        "a retry joins the call in flight"
    );
    // ... and A dies mid-call.
    let killed = Instant::now();
    a.kill();
    on_a.abort();
    let ((result, call_result, error, _), waited) = waiting.await.unwrap();
    assert_eq!(
        (result.as_str(), call_result, error),
        ("true", 2, 0),
        "served by a fresh call, not 11 after the dead claim ({waited:?})"
    );
    assert_eq!(c.provider.calls_to(number), 2, "one fresh call");
    eprintln!(
        "stale claim: served {:?} after the kill ({waited:?} after the login)",
        killed.elapsed()
    );
    // Bounded: the lease (10 s) plus a poll and the fresh call, well below the 20 s deadline.
    assert!(
        killed.elapsed() < Duration::from_secs(14),
        "taken over {:?} after the kill",
        killed.elapsed()
    );
    // A later login, after the takeover, is an ordinary one.
    let started = Instant::now();
    assert_eq!(b.auth5(STALE_USER, "4255550106").await.0, "true");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(c.provider.calls_to(number), 3);
}

/// Issue #17 item 3 across instances: the claim in the store carries who asks (principal,
/// application, initiating address), so a login from another application on the other instance
/// gets a call of its own instead of joining (and receiving) the first one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_application_on_the_other_instance_does_not_join_the_call() {
    let Some(c) = Cluster::start("ha in-flight key", None).await else {
        return;
    };
    let (a, b) = (Arc::new(c.a), Arc::new(c.b));
    let first = {
        let a = a.clone();
        tokio::spawn(async move {
            a.auth5_from("race@contoso.com", "4255550100", "MIM-PAM")
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = b
        .auth5_from("RACE@contoso.com", "4255550100", "EvilApp")
        .await;
    let first = first.await.unwrap();
    assert_eq!((first.0.as_str(), first.1), ("true", 2));
    assert_eq!((second.0.as_str(), second.1), ("true", 2));
    assert_ne!(
        first.3, second.3,
        "never the other application's request id"
    );
    assert_eq!(c.provider.calls_to("+14255550100"), 2, "a call each");
}
