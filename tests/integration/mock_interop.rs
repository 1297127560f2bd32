//! The test double through real SOAP clients: a proxy Mono's `wsdl` generated from the double's
//! own WSDL (the .NET Framework stack MIM and PowerShell use) and zeep. Both meet every fault kind
//! of `mock_faults::FAULTS_SCENARIO`, and what they sent is then read back from the journal and the
//! verification endpoint — zeep's script reads them itself, with the bearer token, as a CI job would.
//!
//! Mandatory in CI (`PFGATE_REQUIRE_INTEROP=1`); skipped with a `SKIP` line where the tools are
//! missing.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::interop::{
    in_dir, interop_available, interop_source, mono_available, run, TempDir, TOOL_TIMEOUT,
};
use crate::mock::Mock;
use crate::mock_faults::faults_mock;
use crate::support::*;

const TOKEN: &str = "ci-admin-token-7f3a";

/// The SDK URL by name (zeep checks the certificate's name; the double's covers `localhost`).
fn url(m: &Mock) -> String {
    let addr = m.running.as_ref().unwrap().server.tls_addr.unwrap();
    format!("https://localhost:{}{SDK_PATH}", addr.port())
}

/// What the journal says each fault user received: (rule, fault, requests).
async fn journal_by_user(m: &Mock) -> BTreeMap<String, (String, String, usize)> {
    // The request the client gave up on (300 ms against a 700 ms delay) is journaled when the
    // double has finished it.
    let deadline = std::time::Instant::now() + STEP;
    while m.journal("?user=slow@fault.test").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "slow@fault.test never journaled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut by_user = BTreeMap::new();
    for e in m.journal("?operation=PfAuthUser_4").await {
        let user = e["user"].as_str().unwrap().to_string();
        let entry = by_user.entry(user).or_insert((
            e["rule"].as_str().unwrap_or("-").to_string(),
            e["fault"].as_str().unwrap_or("-").to_string(),
            0,
        ));
        entry.2 += 1;
        assert_eq!(e["caller"]["principal"], json!("anonymous"), "{e}");
        assert_eq!(e["inputs"]["applicationName"], json!("ADFS"), "{e}");
    }
    by_user
}

/// Every fault user of the scenario was received at least once, under its rule and fault.
fn assert_all_faults_journaled(by_user: &BTreeMap<String, (String, String, usize)>) {
    for (user, rule, fault) in [
        ("alice@contoso.com", "-", "-"),
        ("soap-client@fault.test", "soap client", "soap_fault_client"),
        ("soap-server@fault.test", "soap server", "soap_fault_server"),
        ("http500@fault.test", "500", "http_500"),
        ("http503@fault.test", "503", "http_503"),
        (
            "drop-before@fault.test",
            "drop before",
            "drop_before_headers",
        ),
        ("drop-after@fault.test", "drop after", "drop_after_headers"),
        ("trickle@fault.test", "trickle", "trickle"),
        ("malformed@fault.test", "malformed", "malformed_xml"),
        ("slow@fault.test", "fixed delay", "-"),
    ] {
        let got = by_user
            .get(user)
            .unwrap_or_else(|| panic!("{user} not in the journal: {by_user:?}"));
        assert_eq!((got.0.as_str(), got.1.as_str()), (rule, fault), "{user}");
        assert!(got.2 >= 1, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mono_proxy_meets_every_fault_and_the_journal_shows_its_calls() {
    if !mono_available("mono_proxy_meets_every_fault_and_the_journal_shows_its_calls").await {
        return;
    }
    let (m, scenario_dir) = faults_mock(Some(TOKEN)).await;
    let dir = TempDir::new("mock-mono");
    let wsdl = m.client.get(&format!("{SDK_PATH}?WSDL")).await;
    assert_eq!(wsdl.status, 200);
    dir.write("PfWsSdk.wsdl", &wsdl.body);
    std::fs::copy(interop_source("MonoMock.cs"), dir.path().join("Client.cs")).unwrap();
    run(
        in_dir(
            "wsdl",
            dir.path(),
            &["-nologo", "-n:PfGateMock", "-o:Proxy.cs", "PfWsSdk.wsdl"],
        ),
        TOOL_TIMEOUT,
    )
    .await
    .expect_success();
    run(
        in_dir(
            "mcs",
            dir.path(),
            &[
                "-nologo",
                "-out:mockclient.exe",
                "-r:System.Web.Services.dll",
                "Client.cs",
                "Proxy.cs",
            ],
        ),
        TOOL_TIMEOUT,
    )
    .await
    .expect_success();
    let fp = m.running.as_ref().unwrap().fingerprint().unwrap();
    let out = run(
        in_dir("mono", dir.path(), &["mockclient.exe", &url(&m), &fp]),
        TOOL_TIMEOUT,
    )
    .await
    .expect_success();
    eprintln!("{}", out.stdout);
    let mut got: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.last().copied(), Some("done"), "{}", out.report());
    for line in &lines[..lines.len() - 1] {
        let mut parts = line.split('\t');
        let label = parts.next().unwrap().to_string();
        let fields = parts
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k != "ms")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        got.insert(label, fields);
    }
    let f = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let web = "System.Net.WebException";
    let soap = "System.Web.Services.Protocols.SoapException";
    let invalid = "System.InvalidOperationException";
    let xml = "System.Xml.XmlException";
    let expected: BTreeMap<String, BTreeMap<String, String>> = [
        (
            "alice",
            f(&[("outcome", "ok"), ("result", "true"), ("call", "2")]),
        ),
        (
            "soap-client",
            f(&[("outcome", "exception"), ("type", soap), ("soap", "Client")]),
        ),
        (
            "soap-server",
            f(&[("outcome", "exception"), ("type", soap), ("soap", "Server")]),
        ),
        // A 500 that is not a SOAP fault: the proxy refuses its text/plain content type.
        ("http500", f(&[("outcome", "exception"), ("type", invalid)])),
        (
            "http503",
            f(&[
                ("outcome", "exception"),
                ("type", web),
                ("status", "ProtocolError"),
                ("http", "503"),
            ]),
        ),
        (
            "drop-before",
            f(&[
                ("outcome", "exception"),
                ("type", web),
                ("status", "ReceiveFailure"),
            ]),
        ),
        // Mono reads the short body as a truncated document (.NET Framework would rather raise an
        // IOException inside): either way the proxy's caller gets an exception, never a result.
        (
            "drop-after",
            f(&[("outcome", "exception"), ("type", invalid), ("inner", xml)]),
        ),
        (
            "trickle",
            f(&[("outcome", "ok"), ("result", "false"), ("call", "0")]),
        ),
        (
            "malformed",
            f(&[("outcome", "exception"), ("type", invalid), ("inner", xml)]),
        ),
        (
            "slow-timeout",
            f(&[
                ("outcome", "exception"),
                ("type", web),
                ("status", "Timeout"),
            ]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, expected, "{}", out.report());

    let by_user = journal_by_user(&m).await;
    assert_all_faults_journaled(&by_user);
    let (status, v) = m.admin("GET", "verify", "").await;
    assert_eq!(status, 200);
    assert!(
        v["by_operation"]["PfAuthUser_4"].as_u64().unwrap() >= 10,
        "{v}"
    );
    assert_eq!(v["by_user"]["alice@contoso.com"], json!(1));
    // alice and the unknown users: no rule matched them.
    let unmatched: Vec<&str> = v["unmatched"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["user"].as_str())
        .collect();
    assert_eq!(unmatched, ["alice@contoso.com"], "{v}");
    let _ = std::fs::remove_dir_all(&scenario_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeep_meets_every_fault_and_reads_the_journal_with_the_token() {
    if !interop_available(
        "zeep_meets_every_fault_and_reads_the_journal_with_the_token",
        pfgate::testing::test_skips::Needs::Zeep,
        &["python3"],
        &[&["python3", "-c", "import zeep"]],
    )
    .await
    {
        return;
    }
    let (m, scenario_dir) = faults_mock(Some(TOKEN)).await;
    let dir = TempDir::new("mock-zeep");
    let running = m.running.as_ref().unwrap();
    let leaf = dir.write("leaf.pem", &running.server.tls.as_ref().unwrap().leaf_pem());
    let sdk = url(&m);
    let admin = sdk.replace(SDK_PATH, pfgate::mock::DEFAULT_ADMIN_PREFIX);
    let mut cmd = in_dir(
        "python3",
        dir.path(),
        &[
            interop_source("zeep_mock_client.py").to_str().unwrap(),
            &sdk,
            &admin,
            TOKEN,
        ],
    );
    cmd.env("REQUESTS_CA_BUNDLE", &leaf)
        .env("CURL_CA_BUNDLE", &leaf)
        .env("SSL_CERT_FILE", &leaf)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(cmd, TOOL_TIMEOUT).await.expect_success();
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", out.report()));
    eprintln!("{:#}", doc["calls"]);
    let calls = &doc["calls"];
    let exc = |t: &str| json!({"outcome": "exception", "type": t});
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("detail");
        }
        v
    };
    assert_eq!(
        calls["alice"],
        json!({"outcome": "ok", "result": true, "call": 2})
    );
    assert_eq!(strip(&calls["soap-client"]), exc("zeep.exceptions.Fault"));
    assert_eq!(calls["soap-client"]["detail"], json!("soap:Client"));
    assert_eq!(calls["soap-server"]["detail"], json!("soap:Server"));
    assert_eq!(
        strip(&calls["http503"]),
        exc("zeep.exceptions.TransportError")
    );
    assert_eq!(calls["http503"]["detail"], json!("503"));
    assert_eq!(
        strip(&calls["drop-before"]),
        exc("requests.exceptions.ConnectionError")
    );
    assert_eq!(
        calls["trickle"],
        json!({"outcome": "ok", "result": false, "call": 0})
    );
    // zeep reports an unparseable body as a transport error carrying the status it came with.
    assert_eq!(
        strip(&calls["malformed"]),
        exc("zeep.exceptions.TransportError")
    );
    assert_eq!(calls["malformed"]["detail"], json!("200"));
    assert_eq!(
        strip(&calls["http500"]),
        exc("zeep.exceptions.TransportError")
    );
    assert_eq!(calls["http500"]["detail"], json!("500"));
    assert_eq!(
        strip(&calls["drop-after"]),
        exc("requests.exceptions.ChunkedEncodingError")
    );
    assert!(
        calls["drop-after"]["detail"]
            .as_str()
            .unwrap()
            .contains("IncompleteRead"),
        "{calls:#}"
    );
    assert_eq!(
        strip(&calls["slow-timeout"]),
        exc("requests.exceptions.ReadTimeout")
    );
    // What zeep read through the admin API with the token (and without: refused).
    assert_eq!(doc["without_token"], json!(401));
    let v = &doc["verify"];
    assert_eq!(v["by_user"]["alice@contoso.com"], json!(1), "{v:#}");
    assert!(
        v["by_operation"]["PfAuthUser_4"].as_u64().unwrap() >= 10,
        "{v:#}"
    );
    let entries = doc["journal"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["operation"], json!("PfAuthUser_4"));
    assert_eq!(
        entries[0]["inputs"]["initiatingAuthenticationType"],
        json!("pfsdk")
    );
    assert_eq!(
        entries[0]["response"]["fields"]["PfAuthUser_4Result"],
        json!("true")
    );
    assert_all_faults_journaled(&journal_by_user(&m).await);
    let _ = std::fs::remove_dir_all(&scenario_dir);
}
