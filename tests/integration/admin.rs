//! The admin listener (`docs/operations.md`): a real `pfgate serve` process per test, so its
//! process-wide counters see only the test's own traffic and every comparison is exact.
//!
//! - metrics change after traffic: requests by operation and outcome, the latency histogram (its
//!   buckets cumulative, `+Inf` equal to `_count`), in-flight authentications while a provider is
//!   slow, provider calls, refusals by reason, TLS handshake failures; the exposition parsed line
//!   by line against the text format;
//! - readiness flips to 503 when a provider goes away (a TCP proxy in front of a fake webhook
//!   service, cut) with the JSON naming it and its open breaker, and back to 200 when it returns;
//! - readiness flips when the PostgreSQL store goes away and comes back (skipped without
//!   `PFGATE_TEST_DATABASE_URL`, which `.ci/run` sets);
//! - the admin paths are not served on the SDK listeners, nor the SDK on the admin listener; a
//!   token is required when configured; a non-loopback address without one is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::callers::{basic, post};
use crate::cli::{bin, sigterm_and_wait, spawn_serve_logging, temp_dir, write_cert, Served};
use crate::ha::{
    http_exchange, upstream, with_port, DbProxy, FakeProvider, PREFIX, USERS, WEBHOOK_SECRET,
};
use crate::support::{text_of, Client, STEP};

/// One `pfgate serve` process; SIGTERM and wait on drop.
struct Gate {
    served: Option<Served>,
    admin: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(s) = self.served.take() {
            let _ = sigterm_and_wait(s.child);
        }
        if std::env::var_os("PFGATE_KEEP_LOG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Gate {
    /// Writes `config` as `pfgate.toml` in `dir` and starts pfgate on it; `lines` is how many
    /// lines it prints (the admin line last).
    async fn start(dir: std::path::PathBuf, config: &str, lines: usize) -> Self {
        let path = dir.join("pfgate.toml");
        std::fs::write(&path, config).unwrap();
        let cfg = path.display().to_string();
        // The log goes to a file in the test's directory (`PFGATE_KEEP_LOG=1` keeps it).
        let log = std::fs::File::create(dir.join("pfgate.log")).unwrap();
        let served = tokio::task::spawn_blocking(move || {
            spawn_serve_logging(&["serve", "--config", &cfg], lines, log.into())
        })
        .await
        .unwrap();
        let admin = address_after(&served, "pfgate admin listener on http://");
        Self {
            served: Some(served),
            admin,
            dir,
        }
    }

    fn line_address(&self, prefix: &str) -> SocketAddr {
        address_after(self.served.as_ref().unwrap(), prefix)
    }

    async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path, "").await
    }

    /// `/metrics`, checked against the text format and parsed.
    async fn metrics(&self) -> Exposition {
        let (status, body) = self.admin_get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        Exposition::parse(&body)
    }

    /// `/readyz`: (status, parsed JSON).
    async fn readyz(&self) -> (u16, serde_json::Value) {
        let (status, body) = self.admin_get("/readyz").await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/readyz is not JSON ({e}): {body}"));
        (status, json)
    }

    /// Polls `/metrics` until `done` holds (the server records some events just after the client
    /// sees their effect, e.g. a TLS handshake it closed), failing after 20 s.
    async fn metrics_until(&self, what: &str, done: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + STEP;
        loop {
            let m = self.metrics().await;
            if done(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never seen in\n{}",
                m.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/readyz` until it answers `status`, failing after 30 s.
    async fn readyz_until(&self, status: u16) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, json) = self.readyz().await;
            if s == status {
                return json;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz did not answer {status} within 30 s: {s} {json}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The address in the printed line starting with `prefix`.
fn address_after(served: &Served, prefix: &str) -> SocketAddr {
    let line = served
        .lines
        .iter()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("no line with {prefix:?} in {:?}", served.lines));
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    rest.split(['/', ' ']).next().unwrap().parse().unwrap()
}

/// One GET on a fresh plain-HTTP connection: (status, body).
async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"),
    )
    .await
}

async fn http_raw(addr: SocketAddr, request: &str) -> (u16, String) {
    http_exchange(addr, request).await
}

/// A parsed `/metrics` answer: every sample by its series (`name{labels}`), checked on the way
/// against the text format 0.0.4 as a scraper reads it.
struct Exposition {
    text: String,
    samples: HashMap<String, f64>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    types.insert(name.into(), kind.into()).is_none(),
                    "TYPE twice: {line}"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(
                !line.is_empty() && !line.starts_with('#'),
                "stray line {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                    check_labels(&labels[1..labels.len() - 1], line);
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(name);
            let kind = types
                .get(family)
                .unwrap_or_else(|| panic!("no # TYPE before {line}"));
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "twice: {line}"
            );
        }
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// A series' value, 0 when absent (series without observations are not written).
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// Checks the histogram of `operation` and returns its `_count`.
    fn histogram_count(&self, operation: &str) -> f64 {
        let prefix =
            format!("pfgate_request_duration_seconds_bucket{{operation=\"{operation}\",le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                Some((le, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 1, "no buckets for {operation}");
        assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
        for w in buckets.windows(2) {
            assert!(
                w[0].1 <= w[1].1,
                "buckets not cumulative for {operation}: {buckets:?}"
            );
        }
        let count = self.get(&format!(
            "pfgate_request_duration_seconds_count{{operation=\"{operation}\"}}"
        ));
        assert_eq!(buckets.last().unwrap().1, count, "+Inf bucket != _count");
        let sum = self.get(&format!(
            "pfgate_request_duration_seconds_sum{{operation=\"{operation}\"}}"
        ));
        assert!(sum >= 0.0 && sum.is_finite());
        count
    }
}

/// `name="value",…` with values escaped as the format requires.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    let (_, c) = chars.next().unwrap_or_else(|| panic!("{line}"));
                    assert!(matches!(c, '\\' | '"' | 'n'), "bad escape in {line}");
                }
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => panic!("unterminated label value in {line}"),
                Some(_) => {}
            }
        };
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", l.join(","))
}

fn requests(op: &str, outcome: &str) -> String {
    series(
        "pfgate_requests_total",
        &[("operation", op), ("outcome", outcome)],
    )
}

fn refusals(reason: &str) -> String {
    series("pfgate_caller_refusals_total", &[("reason", reason)])
}

fn provider(name: &str, p: &str, extra: &[(&str, &str)]) -> String {
    let mut l = vec![("provider", p)];
    l.extend_from_slice(extra);
    series(name, &l)
}

/// The webhook provider section for a fake at `addr`.
fn hook_section(addr: &str) -> String {
    format!(
        "[providers.hook]\nkind = \"webhook\"\nbase_url = \"http://{addr}{PREFIX}\"\n\
         secret_file = \"webhook.secret\"\npoll_interval_ms = 100\n\
         [[routes]]\nproviders = [\"hook\"]\n"
    )
}

fn dir_with_files(tag: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("webhook.secret"), WEBHOOK_SECRET).unwrap();
    std::fs::write(dir.join("users.toml"), USERS).unwrap();
    dir
}

/// `PfAuthUser_4` over plain HTTP without credentials (`allow_anonymous`): the result text.
async fn auth4_plain(addr: SocketAddr, user: &str) -> String {
    let op = "PfAuthUser_4";
    let body = crate::support::env11(&format!(
        r#"<{op} xmlns="{}"><username>{user}</username><requireUserMatch>true</requireUserMatch></{op}>"#,
        crate::support::NS
    ));
    let (status, text) = http_raw(
        addr,
        &format!(
            "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\n\
             SOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            crate::support::SDK_PATH,
            crate::support::action(op),
            body.len()
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    text_of(&text, "PfAuthUser_4Result").unwrap_or_else(|| panic!("no result in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_inflight_providers_refusals_and_tls_failures() {
    let dir = dir_with_files("admin-metrics");
    let (cert, _) = write_cert(&dir);
    let (fake, fake_addr) = FakeProvider::start(Duration::from_secs(2)).await;
    let hash = |pw: &str| pfgate::store::secrets::hash_pin(pw).unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         plain_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [directory]\nusers_file = \"users.toml\"\n\
         [[auth.basic]]\nprincipal = 'CONTOSO\\adfs-sdk'\npassword_hash = '{}'\n\
         [[auth.basic]]\nprincipal = 'CONTOSO\\stranger'\npassword_hash = '{}'\n\
         [[auth.principals]]\nname = 'CONTOSO\\adfs-sdk'\nallow = [\"authentication\"]\n{}",
        hash("Adfs&Pa55"),
        hash("Str4nger!"),
        hook_section(&fake_addr.to_string())
    );
    let gate = Gate::start(dir, &config, 4).await;
    let tls_addr = gate.line_address("listening on https://");
    let plain_addr = gate.line_address("listening on http://");
    let der = CertificateDer::from_pem_slice(&std::fs::read(&cert).unwrap()).unwrap();
    let client = Client::new(tls_addr, &der);
    let adfs = basic("CONTOSO\\adfs-sdk", "Adfs&Pa55");

    let before = gate.metrics().await;
    assert_eq!(
        before.get(&format!(
            "pfgate_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(before.get("pfgate_authentications_in_flight"), 0.0);
    let base_count = before
        .samples
        .get("pfgate_request_duration_seconds_count{operation=\"TestSecurity\"}");
    assert!(base_count.is_none(), "no TestSecurity yet: {}", before.text);

    // Three good calls.
    for _ in 0..3 {
        let r = post(&client, "TestSecurity", "", Some(&adfs)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Refused callers, one per reason.
    let r = post(&client, "TestSecurity", "", None).await;
    assert_eq!(r.status, 401);
    let r = post(
        &client,
        "TestSecurity",
        "",
        Some(&basic("CONTOSO\\adfs-sdk", "wrong")),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post(
        &client,
        "TestSecurity",
        "",
        Some(&basic("CONTOSO\\stranger", "Str4nger!")),
    )
    .await;
    assert_eq!(r.status, 403, "not on the allow-list");
    let r = post(&client, "BlockUser", "<username>u</username>", Some(&adfs)).await;
    assert_eq!(r.status, 403, "not allowed this operation");
    let (status, _) = http_raw(
        plain_addr,
        &format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: {adfs}\r\nConnection: close\r\n\r\n",
            crate::support::SDK_PATH
        ),
    )
    .await;
    assert_eq!(status, 401, "Basic over plain HTTP");
    // A client that does not speak TLS to the TLS port.
    let (_, _) = tokio::time::timeout(STEP, async {
        let mut tcp = TcpStream::connect(tls_addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tcp.read_to_end(&mut out).await;
        (0, out)
    })
    .await
    .unwrap();

    let after = gate
        .metrics_until("the TLS handshake failure", |m| {
            m.get("pfgate_tls_handshake_failures_total{reason=\"error\"}") >= 1.0
        })
        .await;
    assert_eq!(
        after.get("pfgate_tls_handshake_failures_total{reason=\"error\"}"),
        1.0
    );
    assert_eq!(after.get(&requests("TestSecurity", "true")), 3.0);
    assert_eq!(after.histogram_count("TestSecurity"), 3.0);
    assert_eq!(
        after.get(&requests("none", "unauthenticated")),
        3.0,
        "no credentials, wrong password, Basic over plain HTTP"
    );
    assert_eq!(after.get(&requests("none", "forbidden")), 1.0);
    assert_eq!(after.get(&requests("BlockUser", "forbidden")), 1.0);
    for (reason, n) in [
        ("no_credentials", 1.0),
        ("wrong_password", 1.0),
        ("basic_over_plain_http", 1.0),
        ("not_allowed", 1.0),
        ("operation_not_allowed", 1.0),
        ("ntlm_refused", 0.0),
    ] {
        assert_eq!(after.get(&refusals(reason)), n, "{reason}\n{}", after.text);
    }

    // An authentication the provider takes two seconds over: in flight meanwhile.
    let slow = {
        let client = client.clone();
        let adfs = adfs.clone();
        tokio::spawn(async move {
            post(
                &client,
                "PfAuthUser_4",
                "<username>race@contoso.com</username><requireUserMatch>true</requireUserMatch>",
                Some(&adfs),
            )
            .await
        })
    };
    gate.metrics_until("an authentication in flight", |m| {
        m.get("pfgate_authentications_in_flight") == 1.0
    })
    .await;
    let r = slow.await.unwrap();
    assert_eq!(
        text_of(&r.body, "PfAuthUser_4Result").as_deref(),
        Some("true"),
        "{}",
        r.body
    );
    assert_eq!(fake.calls_to("+14255550100"), 1);
    let done = gate.metrics().await;
    assert_eq!(done.get("pfgate_authentications_in_flight"), 0.0);
    assert_eq!(done.get(&requests("PfAuthUser_4", "true")), 1.0);
    assert_eq!(done.histogram_count("PfAuthUser_4"), 1.0);
    assert!(
        done.get("pfgate_request_duration_seconds_bucket{operation=\"PfAuthUser_4\",le=\"1\"}")
            == 0.0,
        "a two-second authentication is not in the one-second bucket\n{}",
        done.text
    );
    assert_eq!(
        done.get(&provider(
            "pfgate_provider_calls_total",
            "hook",
            &[("verdict", "approved")]
        )),
        1.0
    );
    assert_eq!(
        done.get(&provider("pfgate_provider_errors_total", "hook", &[])),
        0.0
    );
    assert_eq!(
        done.get(&provider("pfgate_provider_breaker_state", "hook", &[])),
        0.0
    );
    // Earlier counters did not move.
    assert_eq!(done.get(&requests("TestSecurity", "true")), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_when_a_provider_goes_away_and_comes_back() {
    let dir = dir_with_files("admin-provider");
    let (_fake, fake_addr) = FakeProvider::start(Duration::from_secs(1)).await;
    let proxy = DbProxy::start(fake_addr.to_string()).await;
    let config = format!(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nallow_anonymous = true\n[directory]\nusers_file = \"users.toml\"\n\
         [breaker]\nfailure_threshold = 1\ncooldown_secs = 1\n{}",
        hook_section(&format!("127.0.0.1:{}", proxy.port))
    );
    let gate = Gate::start(dir, &config, 2).await;
    let plain = gate.line_address("listening on http://");

    let (status, json) = gate.readyz().await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["ready"], true);
    assert_eq!(json["store"]["healthy"], true);
    let hook = &json["routes"][0]["providers"][0];
    assert_eq!(
        (
            &hook["name"],
            &hook["breaker"],
            &hook["reachable"],
            &hook["healthy"]
        ),
        (&"hook".into(), &"closed".into(), &true.into(), &true.into()),
        "{json}"
    );
    assert_eq!(json["not_ready"], serde_json::json!([]));
    assert_eq!(auth4_plain(plain, "mover@contoso.com").await, "true");

    // The provider goes away: its health check fails at once, and a call opens its breaker.
    proxy.cut();
    let (status, json) = gate.readyz().await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["ready"], false);
    assert_eq!(json["routes"][0]["healthy"], false);
    assert_eq!(json["routes"][0]["providers"][0]["reachable"], false);
    let why = json["not_ready"][0].as_str().unwrap();
    assert!(why.contains("route 0") && why.contains("hook"), "{json}");
    assert_eq!(
        auth4_plain(plain, "mover@contoso.com").await,
        "false",
        "fail secure"
    );
    let (status, json) = gate.readyz().await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(
        json["routes"][0]["providers"][0]["breaker"], "open",
        "{json}"
    );
    let m = gate.metrics().await;
    assert_eq!(
        m.get(&provider("pfgate_provider_breaker_state", "hook", &[])),
        1.0
    );
    assert_eq!(
        m.get(&provider("pfgate_provider_errors_total", "hook", &[])),
        1.0
    );
    assert_eq!(
        m.get(&provider(
            "pfgate_provider_breaker_transitions_total",
            "hook",
            &[("to", "open")]
        )),
        1.0
    );
    assert_eq!(m.get(&requests("PfAuthUser_4", "false")), 1.0);

    // It comes back: ready again once the cooldown is over, and the next call closes the breaker.
    proxy.restore();
    let json = gate.readyz_until(200).await;
    assert_eq!(json["ready"], true, "{json}");
    assert_eq!(auth4_plain(plain, "mover@contoso.com").await, "true");
    let m = gate.metrics().await;
    assert_eq!(
        m.get(&provider("pfgate_provider_breaker_state", "hook", &[])),
        0.0
    );
    for (to, n) in [("open", 1.0), ("half_open", 1.0), ("closed", 1.0)] {
        assert_eq!(
            m.get(&provider(
                "pfgate_provider_breaker_transitions_total",
                "hook",
                &[("to", to)]
            )),
            n,
            "to {to}\n{}",
            m.text
        );
    }
    assert_eq!(
        m.get(&provider(
            "pfgate_provider_calls_total",
            "hook",
            &[("verdict", "approved")]
        )),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_flips_when_the_store_goes_away_and_comes_back() {
    let Some(url) = pfgate::store::postgres::testing::database_url("admin readiness store") else {
        return;
    };
    let schema = pfgate::store::postgres::testing::TestSchema::create(&url)
        .await
        .unwrap();
    let proxy = DbProxy::start(upstream(&url)).await;
    let dir = dir_with_files("admin-store");
    std::fs::write(dir.join("secrets.key"), [0x5au8; 32]).unwrap();
    let config = format!(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nallow_anonymous = true\n[directory]\nusers_file = \"users.toml\"\n\
         [store]\nurl = \"{}\"\nschema = \"{}\"\npool_size = 2\nsecrets_key_file = \"secrets.key\"\n\
         [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
        with_port(&url, proxy.port),
        schema.name()
    );
    let gate = Gate::start(dir, &config, 2).await;
    let (status, json) = gate.readyz().await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["store"]["healthy"], true);
    // The scripted provider, named in the configuration, is the one provider.
    assert_eq!(json["routes"][0]["providers"][0]["name"], "demo", "{json}");

    proxy.cut();
    let (status, json) = gate.readyz().await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["store"]["healthy"], false);
    assert!(json["store"]["error"].as_str().is_some(), "{json}");
    let why = json["not_ready"][0].as_str().unwrap();
    assert!(why.starts_with("store: "), "{json}");
    // The SDK listener's probe agrees.
    let plain = gate.line_address("listening on http://");
    assert_eq!(http_get(plain, "/readyz", "").await.0, 503);

    proxy.restore();
    let json = gate.readyz_until(200).await;
    assert_eq!(json["store"]["healthy"], true, "{json}");
    assert_eq!(json["not_ready"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_stay_on_the_admin_listener_and_the_token_is_enforced() {
    let dir = dir_with_files("admin-token");
    std::fs::write(
        dir.join("admin.token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let config = "[server]\nplain_listen = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
         [auth]\nallow_anonymous = true\n[directory]\nusers_file = \"users.toml\"\n\
         [providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n";
    let gate = Gate::start(dir.clone(), config, 2).await;
    let plain = gate.line_address("listening on http://");
    let bearer = "Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n";

    // Liveness needs no token; readiness and metrics do.
    assert_eq!(gate.admin_get("/healthz").await.0, 200);
    assert_eq!(gate.admin_get("/metrics").await.0, 401);
    assert_eq!(gate.admin_get("/readyz").await.0, 401);
    let wrong = "Authorization: Bearer 0123456789abcdef0123456789abcdeX\r\n";
    assert_eq!(http_get(gate.admin, "/metrics", wrong).await.0, 401);
    let (status, body) = http_get(gate.admin, "/metrics", bearer).await;
    assert_eq!(status, 200);
    Exposition::parse(&body);
    assert_eq!(http_get(gate.admin, "/readyz", bearer).await.0, 200);

    // The SDK is not on the admin listener, and metrics are not on the SDK listener.
    assert_eq!(
        http_get(gate.admin, crate::support::SDK_PATH, bearer)
            .await
            .0,
        404
    );
    let (status, _) = http_raw(
        gate.admin,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
    let (status, body) = http_get(plain, "/metrics", bearer).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("pfgate_"), "{body}");
    // The SDK listener keeps its own probes (load balancers use them).
    assert_eq!(http_get(plain, "/healthz", "").await.0, 200);
    assert_eq!(http_get(plain, "/readyz", "").await.0, 200);

    // A reload (SIGHUP) takes a new token and keeps every counter.
    let (_, body) = http_get(gate.admin, "/metrics", bearer).await;
    assert_eq!(
        Exposition::parse(&body).get(&requests("probe", "true")),
        2.0
    );
    std::fs::write(
        dir.join("admin.token"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    let pid = gate.served.as_ref().unwrap().child.id().to_string();
    assert!(bin_kill("-HUP", &pid));
    let renewed = "Authorization: Bearer fedcba9876543210fedcba9876543210\r\n";
    let deadline = Instant::now() + STEP;
    let body = loop {
        let (status, body) = http_get(gate.admin, "/metrics", renewed).await;
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the new token was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        Exposition::parse(&body).get(&requests("probe", "true")),
        2.0,
        "counters survive a reload"
    );
    assert_eq!(http_get(gate.admin, "/metrics", bearer).await.0, 401);

    // Off the loopback without a token: check-config refuses; with one it accepts; off is off.
    let check = |body: &str, name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        bin().arg("check-config").arg(&p).output().unwrap()
    };
    let out = check(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
         [admin]\nlisten = \"0.0.0.0:9473\"\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
        "open.toml",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(":admin.listen: 0.0.0.0:9473 is not a loopback address"),
        "{problems:?}"
    );
    let out = check(
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
         [admin]\nlisten = \"0.0.0.0:9473\"\ntoken_file = \"admin.token\"\n[providers.demo]\nkind = \"scripted\"\n[[routes]]\nproviders = [\"demo\"]\n",
        "tokened.toml",
    );
    assert!(out.status.success(), "{out:?}");
    let off = dir.join("off.toml");
    std::fs::write(
        &off,
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n\
         [admin]\nenabled = false\n",
    )
    .unwrap();
    assert_eq!(pfgate::config::load(&off).unwrap().admin.listen, None);
    let default = dir.join("default.toml");
    std::fs::write(
        &default,
        "[server]\nplain_listen = \"127.0.0.1:0\"\n[auth]\nallow_anonymous = true\n",
    )
    .unwrap();
    let s = pfgate::config::load(&default).unwrap();
    assert_eq!(s.admin.listen, Some(pfgate::config::DEFAULT_ADMIN_LISTEN));
    assert!(!s.admin.required);
}

fn bin_kill(signal: &str, pid: &str) -> bool {
    std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .unwrap()
        .success()
}
