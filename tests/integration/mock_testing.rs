//! `pfgate::testing::MockServer`: the in-process double for Rust tests, in wiremock's style.

use std::time::Duration;

use pfgate::testing::{Fault, MockServer, Outcome, Rule};
use rustls::pki_types::CertificateDer;

use crate::mock::auth4;
use crate::support::*;

fn client(server: &MockServer) -> Client {
    let der = CertificateDer::from(server.certificate_der().unwrap());
    Client::new(server.address().unwrap(), &der)
}

async fn pf_auth4(c: &Client, user: &str) -> Resp {
    let op = "PfAuthUser_4";
    c.soap11(
        Some(&action(op)),
        &env11(&format!(r#"<{op} xmlns="{NS}">{}</{op}>"#, auth4(user))),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_server_answers_by_its_rules_and_verifies_on_drop() {
    let server = MockServer::start().await;
    server
        .mock(
            Rule::new()
                .operation("PfAuthUser_4")
                .user("alice@contoso.com")
                .sequence([Outcome::NoAnswer, Outcome::Approve])
                .named("alice: second call approved")
                .expect(2),
        )
        .await;
    server
        .mock(
            Rule::new()
                .user("bob@*")
                .fault(Fault::Http { status: 503 })
                .times(1),
        )
        .await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    assert!(server.fingerprint().unwrap().len() == 95);
    let c = client(&server);
    let r = pf_auth4(&c, "alice@contoso.com").await;
    assert_eq!(
        text_of(&r.body, "PfAuthUser_4Result").as_deref(),
        Some("false")
    );
    let r = pf_auth4(&c, "alice@contoso.com").await;
    assert_eq!(
        text_of(&r.body, "PfAuthUser_4Result").as_deref(),
        Some("true")
    );
    assert_eq!(pf_auth4(&c, "bob@contoso.com").await.status, 503);
    // `times(1)`: bob's next call gets the demo directory's answer (not answered).
    let r = pf_auth4(&c, "bob@contoso.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(server.received("PfAuthUser_4"), 4);
    assert!(server.check().is_ok());
    // Dropped here: expectations met, no panic.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_server_reports_unmet_expectations_with_the_journal() {
    let server = MockServer::builder()
        .scenario_toml(
            "[[users]]\nusername = \"gina@contoso.com\"\ncountry_code = \"1\"\nphone = \"4255550160\"\npin = \"2580\"\n",
        )
        .rule(
            Rule::new()
                .operation("ValidatePin")
                .delay(Duration::from_millis(10))
                .named("pin checked twice")
                .expect(2),
        )
        .start()
        .await;
    let c = client(&server);
    let op = "ValidatePin";
    let r = c
        .soap11(
            Some(&action(op)),
            &env11(&format!(
                r#"<{op} xmlns="{NS}"><username>gina@contoso.com</username><pin>2580</pin></{op}>"#
            )),
        )
        .await;
    assert_eq!(
        text_of(&r.body, "ValidatePinResult").as_deref(),
        Some("true")
    );
    let report = server.check().unwrap_err();
    assert!(
        report.contains("rule \"pin checked twice\": expected 2 use(s), got 1"),
        "{report}"
    );
    assert!(
        report.contains("#1 ValidatePin user=gina@contoso.com rule=pin checked twice"),
        "{report}"
    );
    assert!(report.contains(r#""pin":"***""#), "{report}");
    assert!(!report.contains("2580"), "{report}");
    let dropped = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(server)))
    });
    let panic = dropped
        .await
        .unwrap()
        .expect_err("drop panics on an unmet expectation");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("expectations not met"), "{msg}");
}
