//! Every fault kind of the test double, observed by a Rust HTTP client (hyper) on a real socket:
//! what a client's retry and timeout code meets. The same faults seen by Mono and zeep are in
//! `mock_interop.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pfgate::mock::MockOptions;

use crate::cli::temp_dir;
use crate::mock::{auth4, Mock};
use crate::support::*;

/// One rule per user, each with one fault.
pub const FAULTS_SCENARIO: &str = r#"
name = "faults"
[[users]]
username = "alice@contoso.com"
country_code = "1"
phone = "4255550100"

[[rules]]
name = "soap client"
user = "soap-client@fault.test"
fault = { kind = "soap_fault", code = "client", message = "scripted client fault" }

[[rules]]
name = "soap server"
user = "soap-server@fault.test"
fault = { kind = "soap_fault", code = "server", message = "scripted server fault" }

[[rules]]
name = "500"
user = "http500@fault.test"
fault = { kind = "http", status = 500 }

[[rules]]
name = "503"
user = "http503@fault.test"
fault = { kind = "http", status = 503 }

[[rules]]
name = "drop before"
user = "drop-before@fault.test"
fault = { kind = "drop_before_headers" }

[[rules]]
name = "drop after"
user = "drop-after@fault.test"
fault = { kind = "drop_after_headers" }

[[rules]]
name = "trickle"
user = "trickle@fault.test"
fault = { kind = "trickle", chunk_bytes = 64, interval_ms = 50 }

[[rules]]
name = "malformed"
user = "malformed@fault.test"
fault = { kind = "malformed_xml" }

[[rules]]
name = "fixed delay"
user = "slow@fault.test"
delay_ms = 700

[[rules]]
name = "random delay"
user = "random@fault.test"
delay_ms = [200, 400]
"#;

/// What a client got: the status and headers, then the body or the error that ended it.
pub struct Got {
    pub status: u16,
    pub body: Result<String, String>,
    pub elapsed: Duration,
}

/// Sends one request on a fresh connection; a transport failure is an `Err`, not a panic.
async fn try_send(client: &Client, req: http::Request<Full<Bytes>>) -> Result<Got, String> {
    let started = Instant::now();
    let stream = client.tls().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .map_err(|_| "no response in time".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = match tokio::time::timeout(STEP, resp.into_body().collect()).await {
        Err(_) => Err("body not complete in time".into()),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Ok(Ok(b)) => Ok(String::from_utf8_lossy(&b.to_bytes()).into_owned()),
    };
    Ok(Got {
        status,
        body,
        elapsed: started.elapsed(),
    })
}

fn auth_request(user: &str, v12: bool) -> http::Request<Full<Bytes>> {
    let op = "PfAuthUser_4";
    let inner = format!(r#"<{op} xmlns="{NS}">{}</{op}>"#, auth4(user));
    let b = http::Request::post(SDK_PATH).header("host", "localhost");
    let b = if v12 {
        b.header(
            "content-type",
            format!(
                "application/soap+xml; charset=utf-8; action=\"{}\"",
                action(op)
            ),
        )
        .body(Full::new(Bytes::from(env12(&inner))))
    } else {
        b.header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", format!("\"{}\"", action(op)))
            .body(Full::new(Bytes::from(env11(&inner))))
    };
    b.unwrap()
}

/// The double with [`FAULTS_SCENARIO`] (and an admin token, when given).
pub async fn faults_mock(token: Option<&str>) -> (Mock, std::path::PathBuf) {
    let dir = temp_dir("mock-faults");
    let file = dir.join("faults.toml");
    std::fs::write(&file, FAULTS_SCENARIO).unwrap();
    let mut o = MockOptions::new();
    o.scenario_files = vec![file];
    o.admin_token = token.map(str::to_string);
    (Mock::start(o).await, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_reaches_a_rust_client() {
    let (m, dir) = faults_mock(None).await;
    let c = &m.client;
    let send = |user: &str, v12: bool| try_send(c, auth_request(user, v12));

    // A normal answer, for reference: an unknown user with requireUserMatch.
    let normal = send("nobody@fault.test", false).await.unwrap();
    assert_eq!(normal.status, 200);
    let normal_body = normal.body.unwrap();
    assert!(normal_body.contains("<PfAuthUser_4Result>false</PfAuthUser_4Result>"));

    // SOAP faults of both kinds, in the request's SOAP version.
    let g = send("soap-client@fault.test", false).await.unwrap();
    assert_eq!(g.status, 500);
    let body = g.body.unwrap();
    assert_eq!(text_of(&body, "faultcode").as_deref(), Some("soap:Client"));
    assert_eq!(
        text_of(&body, "faultstring").as_deref(),
        Some("scripted client fault")
    );
    let g = send("soap-server@fault.test", true).await.unwrap();
    assert_eq!(g.status, 500);
    let body = g.body.unwrap();
    assert_eq!(
        text_of(&body, "Value").as_deref(),
        Some("soap:Receiver"),
        "{body}"
    );

    // Bare HTTP errors.
    for (user, status) in [("http500@fault.test", 500), ("http503@fault.test", 503)] {
        let g = send(user, false).await.unwrap();
        assert_eq!(g.status, status);
        assert!(g.body.unwrap().starts_with(&status.to_string()));
    }

    // The connection dropped before any header: the request fails without a response.
    let err = send("drop-before@fault.test", false)
        .await
        .err()
        .expect("no response");
    assert!(
        err.contains("IncompleteMessage") || err.contains("closed"),
        "{err}"
    );

    // After the headers: a 200 whose body ends early.
    let g = send("drop-after@fault.test", false).await.unwrap();
    assert_eq!(g.status, 200);
    let err = g.body.expect_err("the body is cut short");
    assert!(!err.is_empty());

    // Trickled: the complete normal answer, slowly.
    let g = send("trickle@fault.test", false).await.unwrap();
    assert_eq!(g.status, 200);
    let body = g.body.unwrap();
    parse_xml(&body);
    assert!(body.contains("<PfAuthUser_4Result>false</PfAuthUser_4Result>"));
    let chunks = body.len().div_ceil(64) as u32;
    assert!(
        g.elapsed >= Duration::from_millis(50) * (chunks - 1),
        "{} bytes in {:?}",
        body.len(),
        g.elapsed
    );

    // Malformed XML with a 200.
    let g = send("malformed@fault.test", false).await.unwrap();
    assert_eq!(g.status, 200);
    let body = g.body.unwrap();
    assert!(roxmltree::Document::parse(&body).is_err(), "{body}");

    // Delays: fixed, and random within bounds.
    let g = send("slow@fault.test", false).await.unwrap();
    assert!(g.elapsed >= Duration::from_millis(700), "{:?}", g.elapsed);
    let g = send("random@fault.test", false).await.unwrap();
    assert!(g.elapsed >= Duration::from_millis(200), "{:?}", g.elapsed);

    // Each is in the journal with its rule and fault.
    let journal = m.journal("").await;
    let faults: Vec<(String, String)> = journal
        .iter()
        .map(|e| {
            (
                e["rule"].as_str().unwrap_or("-").to_string(),
                e["fault"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let want = [
        ("-", "-"),
        ("soap client", "soap_fault_client"),
        ("soap server", "soap_fault_server"),
        ("500", "http_500"),
        ("503", "http_503"),
        ("drop before", "drop_before_headers"),
        ("drop after", "drop_after_headers"),
        ("trickle", "trickle"),
        ("malformed", "malformed_xml"),
        ("fixed delay", "-"),
        ("random delay", "-"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(faults, want);
    assert_eq!(journal[5]["response"]["status"], serde_json::json!(0));
    let _ = std::fs::remove_dir_all(&dir);
}
