//! Record and replay: `pfgate record` in front of a local pfgate acting as the "real" PfWsSdk,
//! then `pfgate mock --replay` answering the same requests from the fixtures, byte for byte.

use std::path::Path;
use std::process::Child;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::cli::{sigterm_and_wait, temp_dir};
use crate::mock::{auth4, spawn_pfgate, wait_ready};
use crate::support::*;

/// Starts `pfgate COMMAND ARGS --ready-file …` and returns it with a client trusting its certificate.
async fn start(command: &str, args: Vec<String>, ready: &Path) -> (Child, Client, Value) {
    let ready = ready.to_path_buf();
    let command = command.to_string();
    let (child, ready_json) = tokio::task::spawn_blocking(move || {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = ready.display().to_string();
        all.extend(["--ready-file", &r]);
        let (mut child, _lines) = spawn_pfgate(&command, &all);
        let v = wait_ready(&ready, &mut child);
        (child, v)
    })
    .await
    .unwrap();
    let pem = ready_json["certificate_pem"].as_str().unwrap();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let url = ready_json["url"].as_str().unwrap();
    let addr = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (child, Client::new(addr, &der), ready_json)
}

/// (SOAP 1.2?, operation, parameters)
fn requests() -> Vec<(bool, &'static str, String)> {
    vec![
        (false, "TestSecurity", String::new()),
        (false, "PfAuthUser_4", auth4("alice@contoso.com")),
        (true, "PfAuthUser_4", auth4("bob@contoso.com")),
        // The same request again: replay answers the second recording (another request id).
        (false, "PfAuthUser_4", auth4("alice@contoso.com")),
        (
            false,
            "GetUserSettings_3",
            "<username>alice@contoso.com</username>".into(),
        ),
        (
            false,
            "ValidatePin",
            "<username>alice@contoso.com</username><pin>7391</pin>".into(),
        ),
    ]
}

async fn send(c: &Client, v12: bool, op: &str, inner: &str) -> Resp {
    let body = format!(r#"<{op} xmlns="{NS}">{inner}</{op}>"#);
    if v12 {
        c.soap12(&action(op), &env12(&body)).await
    } else {
        c.soap11(Some(&action(op)), &env11(&body)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_against_a_local_pfgate_then_replay_byte_for_byte() {
    let upstream = TestServer::demo().await;
    let dir = temp_dir("mock-record");
    let ca = dir.join("upstream.pem");
    std::fs::write(&ca, upstream.leaf_pem()).unwrap();
    let fixtures = dir.join("fixtures");
    let args = vec![
        "--upstream".to_string(),
        upstream.url(),
        "--upstream-ca".into(),
        ca.display().to_string(),
        "--out".into(),
        fixtures.display().to_string(),
    ];
    let (recorder, client, _) = start("record", args, &dir.join("record.json")).await;
    let mut recorded = Vec::new();
    for (v12, op, inner) in requests() {
        let r = send(&client, v12, op, &inner).await;
        assert_eq!(r.status, 200, "{op}: {}", r.body);
        recorded.push(r);
    }
    let ids: Vec<String> = [1, 3]
        .iter()
        .map(|i| text_of(&recorded[*i].body, "authenticationRequestId").unwrap())
        .collect();
    assert_ne!(ids[0], ids[1], "two calls, two request ids");
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(recorder))
        .await
        .unwrap();
    assert!(status.success());

    // One redacted fixture per exchange.
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "0001-TestSecurity.json",
            "0002-PfAuthUser_4.json",
            "0003-PfAuthUser_4.json",
            "0004-PfAuthUser_4.json",
            "0005-GetUserSettings_3.json",
            "0006-ValidatePin.json",
        ]
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains("7391"), "PIN in {}", f.display());
        assert!(!text.contains("4255550100"), "phone in {}", f.display());
    }
    let pin: Value = serde_json::from_str(&std::fs::read_to_string(&files[5]).unwrap()).unwrap();
    assert_eq!(pin["inputs"]["pin"], "***");
    assert_eq!(pin["operation"], "ValidatePin");
    assert!(pin["request_body"]
        .as_str()
        .unwrap()
        .contains("<pin>***</pin>"));
    let bob: Value = serde_json::from_str(&std::fs::read_to_string(&files[2]).unwrap()).unwrap();
    assert_eq!(bob["soap_version"], "1.2");

    // Replay: the same requests get the recorded bytes (a PIN other than the recorded one
    // matches its `***`).
    let args = vec!["--replay".to_string(), fixtures.display().to_string()];
    let (mock, client, _) = start("mock", args, &dir.join("mock.json")).await;
    for (i, (v12, op, inner)) in requests().into_iter().enumerate() {
        let inner = inner.replace("7391", "0000");
        let r = send(&client, v12, op, &inner).await;
        let want = &recorded[i];
        assert_eq!(r.status, want.status, "{op}");
        assert_eq!(
            r.header("content-type"),
            want.header("content-type"),
            "{op}"
        );
        if op == "GetUserSettings_3" {
            // The phone number was masked on disk, so that is what replay can answer.
            assert!(want.body.contains("<Phone>4255550100</Phone>"));
            assert_eq!(r.body, want.body.replace("4255550100", "********00"));
        } else {
            assert_eq!(r.body, want.body, "{op}: replay differs from the recording");
        }
    }
    // What was not recorded gets a fault that says so.
    let r = send(&client, false, "PfAuthUser_4", &auth4("carol@contoso.com")).await;
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("no recorded exchange matches PfAuthUser_4"),
        "{}",
        r.body
    );
    let status = tokio::task::spawn_blocking(move || sigterm_and_wait(mock))
        .await
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
