//! The test double (`pfgate mock`, issue #6): the command, scenarios, faults, the journal and the
//! admin API, driven over real sockets. Real SOAP clients (Mono, zeep) against the double are in
//! `mock_interop.rs`; record and replay in `mock_replay.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use pfgate::mock::{self, MockOptions, RunningMock};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::{bin, sigterm_and_wait, temp_dir, test_security_over};
use crate::support::*;

/// The repository's `fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A double started in this process, and a TLS client that trusts exactly its certificate.
pub struct Mock {
    pub running: Option<RunningMock>,
    pub client: Client,
    pub token: Option<String>,
}

impl Mock {
    pub async fn start(options: MockOptions) -> Self {
        let token = options.admin_token.clone();
        let running = mock::start(options).await.expect("the double starts");
        let addr = running.server.tls_addr.expect("TLS listener");
        let leaf = running
            .server
            .tls
            .as_ref()
            .expect("TLS identity")
            .leaf
            .clone();
        Self {
            client: Client::new(addr, &leaf),
            running: Some(running),
            token,
        }
    }

    pub async fn with_scenarios(files: &[PathBuf]) -> Self {
        let mut o = MockOptions::new();
        o.scenario_files = files.to_vec();
        Self::start(o).await
    }

    /// A call to the admin API with the configured token (if any).
    pub async fn admin(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let token = self.token.clone();
        self.admin_as(method, path, body, token.as_deref()).await
    }

    pub async fn admin_as(
        &self,
        method: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", mock::DEFAULT_ADMIN_PREFIX))
            .header("host", "localhost");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .client
            .send(b.body(Full::new(Bytes::from(body.to_string()))).unwrap())
            .await;
        let v = serde_json::from_str(&resp.body)
            .unwrap_or_else(|e| panic!("admin {method} {path}: not JSON ({e}): {}", resp.body));
        (resp.status, v)
    }

    pub async fn journal(&self, query: &str) -> Vec<Value> {
        let (status, v) = self.admin("GET", &format!("journal{query}"), "").await;
        assert_eq!(status, 200, "{v}");
        v["entries"].as_array().unwrap().clone()
    }

    pub async fn soap(&self, op: &str, inner: &str) -> Resp {
        self.client
            .soap11(
                Some(&action(op)),
                &env11(&format!(r#"<{op} xmlns="{NS}">{inner}</{op}>"#)),
            )
            .await
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            drop(tokio::spawn(r.shutdown(Duration::from_millis(10))));
        }
    }
}

/// A `PfAuthUser_5` body as MIM sends it: its service account and the end user's number.
pub fn auth5(country: &str, number: &str, mode: &str) -> String {
    format!(
        "<username>mimservice@contoso.com</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType>\
         <initiatingIpAddress>10.0.0.5</initiatingIpAddress><applicationName>MIM</applicationName>\
         <requireUserMatch>true</requireUserMatch><countryCode>{country}</countryCode>\
         <phoneNumber>{number}</phoneNumber><extension /><mode>{mode}</mode>"
    )
}

pub fn auth4(user: &str) -> String {
    format!(
        "<username>{user}</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType>\
         <initiatingIpAddress>10.0.0.5</initiatingIpAddress><applicationName>ADFS</applicationName>\
         <requireUserMatch>true</requireUserMatch>"
    )
}

/// `(result, callResult code)` of an authentication response.
fn verdict(op: &str, r: &Resp) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = parse_xml(&r.body);
    let result = doc
        .descendants()
        .find(|n| n.tag_name().name() == format!("{op}Result"))
        .and_then(|n| n.text())
        .unwrap_or("")
        .to_string();
    let call = doc
        .descendants()
        .find(|n| n.tag_name().name() == "callResult")
        .and_then(|n| n.children().find(|c| c.tag_name().name() == "Code"))
        .and_then(|n| n.text())
        .unwrap_or("")
        .to_string();
    (result, call)
}

fn pair(result: &str, call: &str) -> (String, String) {
    (result.to_string(), call.to_string())
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

/// Waits for the ready file and parses it.
pub fn wait_ready(path: &Path, child: &mut Child) -> Value {
    let deadline = Instant::now() + STEP;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("pfgate mock exited before it was ready: {status:?}");
        }
        assert!(Instant::now() < deadline, "no ready file after {STEP:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_mock(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    spawn_pfgate("mock", args)
}

/// Starts `pfgate COMMAND ARGS…`; stdout lines arrive on the channel.
pub fn spawn_pfgate(command: &str, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = bin()
        .arg(command)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    (child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_command_prints_its_url_and_fingerprint_and_writes_the_ready_file() {
    let dir = temp_dir("mock-ready");
    let ready = dir.join("ready.json");
    let ready_arg = ready.display().to_string();
    let started = Instant::now();
    let (mut child, lines) = spawn_mock(&[
        "--scenario",
        &fixture("mock-mim-pam.toml").display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        &ready_arg,
    ]);
    let (ready_json, child) = tokio::task::spawn_blocking(move || {
        let v = wait_ready(&ready, &mut child);
        (v, child)
    })
    .await
    .unwrap();
    let startup = started.elapsed();
    eprintln!("  pfgate mock ready after {startup:.2?}");
    assert!(startup < Duration::from_secs(5), "slow start: {startup:?}");
    let printed: Vec<String> = (0..3)
        .map(|_| lines.recv_timeout(STEP).expect("a line on stdout"))
        .collect();
    let url = ready_json["url"].as_str().unwrap().to_string();
    let fp = ready_json["fingerprint"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with(SDK_PATH),
        "{url}"
    );
    assert!(printed[0].ends_with(&url), "{printed:?}");
    assert_eq!(
        printed[1],
        format!("TLS certificate SHA-256 fingerprint: {fp}")
    );
    assert_eq!(ready_json["tls"], json!(true));
    assert_eq!(ready_json["admin_token_required"], json!(false));
    assert!(ready_json["admin_url"]
        .as_str()
        .unwrap()
        .ends_with("/__pfgate/"));
    assert!(printed[2].ends_with(ready_json["admin_url"].as_str().unwrap()));
    let addr = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let answer = test_security_over(&addr, &fp).await;
    assert!(
        answer.contains("<TestSecurityResult>secure</TestSecurityResult>"),
        "{answer}"
    );
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(child))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_plain_http_serves_on_loopback_only() {
    let dir = temp_dir("mock-plain");
    let ready = dir.join("ready.json");
    let ready_arg = ready.display().to_string();
    let (child, _lines) = spawn_mock(&["--plain-http", "--ready-file", &ready_arg]);
    let (v, child) = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let v = wait_ready(&ready, &mut child);
        (v, child)
    })
    .await
    .unwrap();
    assert_eq!(v["tls"], json!(false));
    assert_eq!(v["fingerprint"], Value::Null);
    let url = v["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let addr = url.trim_start_matches("http://").split('/').next().unwrap();
    let body = env11(&format!(
        r#"<PfAuthUser_4 xmlns="{NS}">{}</PfAuthUser_4>"#,
        auth4("alice@contoso.com")
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
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("<PfAuthUser_4Result>true</PfAuthUser_4Result>"),
        "the demo directory answers without a scenario: {text}"
    );
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(child))
        .await
        .unwrap();
    assert!(status.success());

    // Plain HTTP off loopback, or a non-loopback admin API without a token, is refused.
    for args in [
        &["--plain-http", "--listen", "0.0.0.0:0"][..],
        &["--listen", "0.0.0.0:0"][..],
    ] {
        let out = bin()
            .arg("mock")
            .args(args)
            .env_remove(mock::ADMIN_TOKEN_ENV)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback"), "{args:?}: {err}");
    }
    // A broken scenario stops the start with the file and the reason.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[rules]]\noperation = \"PfAuthUser9\"\n").unwrap();
    let out = bin()
        .args(["mock", "--scenario"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("PfAuthUser9"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Scenarios, journal, verification
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mim_pam_scenario_decides_by_number_and_the_journal_shows_what_was_asked() {
    let m = Mock::with_scenarios(&[fixture("mock-mim-pam.toml")]).await;
    let op = "PfAuthUser_5";
    // The first call to 0142 is not answered, the retry is approved.
    let first = m.soap(op, &auth5("1", "425 555 0142", "voiceCall")).await;
    assert_eq!(verdict(op, &first), pair("false", "11"));
    let second = m.soap(op, &auth5("1", "4255550142", "voiceCall")).await;
    assert_eq!(verdict(op, &second), pair("true", "2"));
    // 0143: the hang-up rule (phone pattern and an input pattern).
    let r = m.soap(op, &auth5("1", "4255550143", "voiceCall")).await;
    assert_eq!(verdict(op, &r), pair("false", "108"));
    // Fraud reported: a denial (CallResult 150).
    let r = m.soap(op, &auth5("1", "4255550144", "voiceCall")).await;
    assert_eq!(verdict(op, &r), pair("false", "150"));
    // No rule: default_phone_outcome approves.
    let r = m.soap(op, &auth5("1", "4255550777", "voiceCall")).await;
    assert_eq!(verdict(op, &r), pair("true", "2"));
    // 503 from the overloaded host.
    let r = m.soap(op, &auth5("1", "4255550150", "voiceCall")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // A secret in a request: journaled as ***.
    let r = m
        .soap(
            "ValidatePin",
            "<username>mimservice@contoso.com</username><pin>2580</pin>",
        )
        .await;
    assert_eq!(r.status, 200);

    let all = m.journal("").await;
    assert_eq!(all.len(), 7, "{all:#?}");
    let text = serde_json::to_string(&all).unwrap();
    for secret in ["2580", "4255550142", "425 555 0142", "4255550777"] {
        assert!(!text.contains(secret), "{secret} is in the journal: {text}");
    }
    let e = &all[0];
    assert_eq!(e["seq"], json!(1));
    assert_eq!(e["operation"], json!(op));
    assert_eq!(e["soap_version"], json!("1.1"));
    assert_eq!(e["user"], json!("mimservice@contoso.com"));
    assert_eq!(e["inputs"]["phoneNumber"], json!("********42"));
    assert_eq!(e["inputs"]["mode"], json!("voiceCall"));
    assert_eq!(e["inputs"]["applicationName"], json!("MIM"));
    assert_eq!(e["caller"]["ip"], json!("127.0.0.1"));
    assert_eq!(e["caller"]["principal"], json!("anonymous"));
    assert_eq!(
        e["rule"],
        json!("pam: first call to 0142 not answered, retry approved")
    );
    assert_eq!(e["response"]["status"], json!(200));
    assert_eq!(e["response"]["outcome"], json!("false/error=12/call=11"));
    assert_eq!(e["response"]["fields"]["callResult.Code"], json!("11"));
    assert!(e["duration_ms"].as_u64().is_some());
    assert_eq!(all[4]["rule"], Value::Null, "0777 matched no rule");
    assert_eq!(all[5]["fault"], json!("http_503"));
    assert_eq!(all[6]["inputs"]["pin"], json!("***"));

    // Filters.
    assert_eq!(m.journal("?operation=ValidatePin").await.len(), 1);
    assert_eq!(
        m.journal("?operation=PfAuthUser_5&user=MIMSERVICE%40contoso.com")
            .await
            .len(),
        6
    );
    assert_eq!(m.journal("?user=nobody").await.len(), 0);

    // Verification: counts by operation and user, the unmatched requests, rule uses.
    let (status, v) = m.admin("GET", "verify", "").await;
    assert_eq!(status, 200);
    assert_eq!(v["total"], json!(7));
    assert_eq!(v["by_operation"][op], json!(6));
    assert_eq!(v["by_operation"]["ValidatePin"], json!(1));
    assert_eq!(v["by_user"]["mimservice@contoso.com"], json!(7));
    assert_eq!(
        v["by_operation_and_user"][op]["mimservice@contoso.com"],
        json!(6)
    );
    let unmatched: Vec<&str> = v["unmatched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(unmatched, ["PfAuthUser_5", "ValidatePin"]);
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules[0]["used"], json!(2));

    // Clear.
    let (status, _) = m.admin("DELETE", "journal", "").await;
    assert_eq!(status, 200);
    assert!(m.journal("").await.is_empty());
    let r = m.soap("TestSecurity", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(m.journal("").await[0]["seq"], json!(8), "numbers go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_decide_the_next_n_calls_of_a_user() {
    let m = Mock::with_scenarios(&[fixture("mock-adfs-adapter.toml")]).await;
    let op = "PfAuthUser_4";
    let (status, v) = m
        .admin(
            "POST",
            "overrides",
            r#"{"user": "ALICE@contoso.com", "outcome": "hang_up", "count": 2}"#,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    for _ in 0..2 {
        let r = m.soap(op, &auth4("alice@contoso.com")).await;
        assert_eq!(verdict(op, &r), pair("false", "108"));
    }
    let r = m.soap(op, &auth4("alice@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("true", "2"), "back to the scenario");
    let (_, v) = m.admin("GET", "overrides", "").await;
    assert_eq!(v["overrides"], json!([]));
    // Bob's per-user sequence, erin's rule, carol's block: the engine's policy still applies.
    let r = m.soap(op, &auth4("bob@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("false", "11"));
    let r = m.soap(op, &auth4("bob@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("true", "2"));
    let r = m.soap(op, &auth4("erin@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("false", "150"));
    let (_, _) = m
        .admin(
            "POST",
            "overrides",
            r#"{"user": "carol@contoso.com", "outcome": "approve"}"#,
        )
        .await;
    let r = m.soap(op, &auth4("carol@contoso.com")).await;
    assert_eq!(
        verdict(op, &r),
        pair("false", "14"),
        "blocked before any call"
    );
    let (status, v) = m
        .admin("POST", "overrides", r#"{"user": "x", "outcome": "maybe"}"#)
        .await;
    assert_eq!(status, 400, "{v}");
}

// ---------------------------------------------------------------------------------------------
// Admin API protection, scenario replacement and reload
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_a_missing_or_wrong_token() {
    let mut o = MockOptions::new();
    o.admin_token = Some("s3cret-token".into());
    let m = Mock::start(o).await;
    for (token, what) in [
        (None, "no token"),
        (Some("wrong"), "a wrong token"),
        (Some("s3cret-token-and-more"), "a longer token"),
        (Some(""), "an empty token"),
    ] {
        for (method, path) in [("GET", "journal"), ("GET", "verify"), ("POST", "reset")] {
            let (status, v) = m.admin_as(method, path, "", token).await;
            assert_eq!(status, 401, "{what} on {method} {path}: {v}");
        }
    }
    // The SDK itself needs no token.
    assert_eq!(m.soap("TestSecurity", "").await.status, 200);
    let (status, v) = m.admin("GET", "journal", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    // Basic or a bare token are not bearer tokens.
    let resp = m
        .client
        .send(
            http::Request::get("/__pfgate/journal")
                .header("host", "localhost")
                .header("authorization", "s3cret-token")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.header("www-authenticate"),
        "Bearer realm=\"pfgate mock\""
    );
    let (status, _) = m.admin("GET", "nothing-here", "").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_a_listener_of_its_own() {
    let mut o = MockOptions::new();
    o.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    o.admin_token = Some("own-listener-token".into());
    let m = Mock::start(o).await;
    let running = m.running.as_ref().unwrap();
    let admin_addr = running.admin_addr.expect("admin listener bound");
    assert_ne!(Some(admin_addr), running.server.tls_addr);
    assert_eq!(
        running.admin_url(),
        format!("https://{admin_addr}/__pfgate/")
    );
    assert_eq!(m.soap("TestSecurity", "").await.status, 200);
    // The main listener no longer serves the admin API.
    let (status, _) = {
        let r = m.client.get("/__pfgate/journal").await;
        (r.status, r.body)
    };
    assert_eq!(status, 404);
    // Its own listener does, with the same certificate and the token.
    let leaf = running.server.tls.as_ref().unwrap().leaf.clone();
    let admin = Client::new(admin_addr, &leaf);
    let get = |path: &str, token: Option<&str>| {
        let mut b = http::Request::get(path).header("host", "localhost");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    let r = admin.send(get("/__pfgate/journal", None)).await;
    assert_eq!(r.status, 401);
    let r = admin
        .send(get("/__pfgate/journal", Some("own-listener-token")))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["entries"][0]["operation"], json!("TestSecurity"));
    let r = admin.send(get(SDK_PATH, Some("own-listener-token"))).await;
    assert_eq!(r.status, 404, "only the admin API there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_reload_does_not_drop_requests_in_flight() {
    let dir = temp_dir("mock-reload");
    let file = dir.join("scenario.toml");
    let users = "[[users]]\nusername = \"alice@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550100\"\n";
    std::fs::write(
        &file,
        format!("{users}[[rules]]\nname = \"slow approve\"\nuser = \"alice@contoso.com\"\ndelay_ms = 1500\noutcome = \"approve\"\n"),
    )
    .unwrap();
    let m = Mock::with_scenarios(std::slice::from_ref(&file)).await;
    let op = "PfAuthUser_4";
    let client = m.client.clone();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move {
        let r = client
            .soap11(
                Some(&action(op)),
                &env11(&format!(
                    r#"<{op} xmlns="{NS}">{}</{op}>"#,
                    auth4("alice@contoso.com")
                )),
            )
            .await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        &file,
        format!("{users}[[rules]]\nname = \"deny now\"\nuser = \"alice@contoso.com\"\noutcome = \"deny\"\n"),
    )
    .unwrap();
    let (status, v) = m.admin("POST", "scenario/reload", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rules"][0]["name"], json!("deny now"));
    // A request after the reload gets the new rule at once...
    let r = m.soap(op, &auth4("alice@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("false", "150"));
    // ... while the one in flight finishes with the rule that matched it.
    let (r, took) = tokio::time::timeout(STEP, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verdict(op, &r), pair("true", "2"));
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    let journal = m.journal("").await;
    let rules: Vec<&str> = journal
        .iter()
        .map(|e| e["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["deny now", "slow approve"], "in order of answer");

    // An invalid scenario is refused and changes nothing.
    let (status, v) = m
        .admin(
            "PUT",
            "scenario",
            "[[rules]]\nfault = { kind = \"http\", status = 99 }\n",
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("admin API"), "{v}");
    let r = m.soap(op, &auth4("alice@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("false", "150"));
    // A valid one replaces it; reset goes back to the start scenario and clears the journal.
    let (status, _) = m
        .admin(
            "PUT",
            "scenario",
            &format!(
                "{users}[[rules]]\nname = \"hang up\"\nuser = \"alice*\"\noutcome = \"hang_up\"\n"
            ),
        )
        .await;
    assert_eq!(status, 200);
    let r = m.soap(op, &auth4("alice@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("false", "108"));
    let (status, v) = m.admin("POST", "reset", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rules"][0]["name"],
        json!("deny now"),
        "the file as last read"
    );
    assert!(m.journal("").await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_sspr_and_adfs_scenarios_do_what_their_comments_say() {
    let op = "PfAuthUser_5";
    let m = Mock::with_scenarios(&[fixture("mock-sspr-phone-gate.toml")]).await;
    // SMS gate (mode smsText) to a UK number: approved, CallResult 19 (SMS).
    let r = m.soap(op, &auth5("44", "2079460222", "smsText")).await;
    assert_eq!(verdict(op, &r), pair("true", "19"));
    // Phone gate to the UK number that never answers.
    let r = m.soap(op, &auth5("44", "2079460111", "voiceCall")).await;
    assert_eq!(verdict(op, &r), pair("false", "11"));
    // The flaky host: a SOAP fault, then a dropped connection, then a normal answer.
    let r = m.soap(op, &auth5("1", "4255550160", "voiceCall")).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        text_of(&r.body, "faultcode").as_deref(),
        Some("soap:Server")
    );
    let stream = m.client.tls().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = env11(&format!(
        r#"<{op} xmlns="{NS}">{}</{op}>"#,
        auth5("1", "4255550160", "voiceCall")
    ));
    let dropped = sender
        .send_request(
            http::Request::post(SDK_PATH)
                .header("host", "localhost")
                .header("content-type", "text/xml; charset=utf-8")
                .header("soapaction", action(op))
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await;
    assert!(dropped.is_err(), "the second call is dropped");
    let r = m.soap(op, &auth5("1", "4255550160", "voiceCall")).await;
    assert_eq!(verdict(op, &r), pair("true", "2"));
    let (_, v) = m.admin("GET", "verify", "").await;
    assert_eq!(v["unmatched"].as_array().unwrap().len(), 1, "{v:#}");

    let m = Mock::with_scenarios(&[fixture("mock-adfs-adapter.toml")]).await;
    let op = "PfAuthUser_4";
    let started = Instant::now();
    let r = m.soap(op, &auth4("frank@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("true", "2"));
    // 32 bytes every 250 ms: the answer's ~500 bytes take seconds.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "trickled: {:?}",
        started.elapsed()
    );
    let r = m.soap(op, &auth4("zoe@fabrikam.com")).await;
    assert_eq!(r.status, 200);
    assert!(roxmltree::Document::parse(&r.body).is_err(), "{}", r.body);
    let r = m.soap(op, &auth4("carol@contoso.com")).await;
    assert_eq!(verdict(op, &r), pair("false", "14"));
}
