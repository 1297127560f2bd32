//! `pfgate call`, the real binary, against a running pfgate: Basic over TLS, NTLMv2 (pfgate's
//! `[auth.ntlm]` acceptor), a client certificate; wrong passwords, refused callers, an operation
//! that does not exist, bad parameters, a SOAP fault, a business error, and TLS verification
//! failures (unknown issuer, wrong pin, wrong CA). Expected values come from the demo directory
//! (`fixtures/demo.toml`), not from the client's own decoding.

use std::path::{Path, PathBuf};
use std::process::Output;

use pfgate::auth::basic::BasicAccount;
use pfgate::auth::policy::{OperationGroup, Policy, PrincipalRule};
use pfgate::config::{AuthSettings, Settings};
use pfgate::testing::{Fault, FaultSide, MockServer, Rule};

use crate::callers::Pki;
use crate::cli::temp_dir;
use crate::ntlm::{ntlm_server, PASSWORD};
use crate::support::*;

const BASIC_PW: &str = "Adfs&Pa55 w0rd";

/// Runs the binary off the runtime's worker threads (the server under test runs on them).
pub(crate) async fn pfgate(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pfgate"));
        cmd.args(&args).env_remove("PFGATE_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn pw(p: &str) -> Vec<(String, String)> {
    vec![("PFGATE_PASSWORD".into(), p.into())]
}

fn basic_server_settings() -> Settings {
    let mut s = Settings::demo("127.0.0.1:0".parse().unwrap());
    s.allow_anonymous = false;
    s.auth = AuthSettings {
        basic: vec![
            BasicAccount {
                principal: "CONTOSO\\adfs-sdk".into(),
                password_hash: pfgate::store::secrets::hash_pin(BASIC_PW).unwrap(),
            },
            BasicAccount {
                principal: "CONTOSO\\stranger".into(),
                password_hash: pfgate::store::secrets::hash_pin("Str4nger!").unwrap(),
            },
        ],
        policy: Policy::new(vec![PrincipalRule {
            name: "CONTOSO\\adfs-sdk".into(),
            allow: vec![
                OperationGroup::Authentication,
                OperationGroup::DirectoryRead,
            ],
        }]),
        ..AuthSettings::default()
    };
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_over_tls_prints_the_decoded_answer_and_refusals_exit_4() {
    let s = TestServer::start(basic_server_settings()).await;
    let fp = s.fingerprint();
    let base = |user: &str| {
        args(&[
            "call",
            &s.url(),
            "GetUserSettings_3",
            "--param",
            "username=alice@contoso.com",
            "--auth",
            "basic",
            "--user",
            user,
            "--pin-sha256",
            &fp,
        ])
    };
    let out = pfgate(base("CONTOSO\\adfs-sdk"), pw(BASIC_PW)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for line in [
        "GetUserSettings_3Result: true",
        "  FirstName: Alice",
        "  Phone: 4255550100",
        "  UserGroup: Finance",
        "  Mode: voiceCall",
        "  Code: 0",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?}:\n{stdout}"
        );
    }

    // The password from a file works the same, and `-` reads standard input is documented.
    let d = temp_dir("call-basic");
    let file = d.join("pw");
    std::fs::write(&file, format!("{BASIC_PW}\n")).unwrap();
    let mut a = base("CONTOSO\\adfs-sdk");
    a.extend(args(&["--password-file", file.to_str().unwrap(), "--json"]));
    let out = pfgate(a, vec![]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["GetUserSettings_3Result"], true);
    assert_eq!(v["userSettings"]["LastName"], "Anderson");
    assert_eq!(v["error"]["Code"], 0);

    // Wrong password: 401, exit 4, and the password is not echoed.
    let out = pfgate(base("CONTOSO\\adfs-sdk"), pw("wrong-Pa55")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("CONTOSO\\adfs-sdk"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-Pa55") && !stdout.contains("wrong-Pa55"));

    // Authenticated but not on the allow-list: 403, exit 4.
    let out = pfgate(base("CONTOSO\\stranger"), pw("Str4nger!")).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("HTTP 403"), "{stderr}");

    // No password anywhere: a usage error naming the variable, nothing sent.
    let out = pfgate(base("CONTOSO\\adfs-sdk"), vec![]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PFGATE_PASSWORD"), "{stderr}");

    // Basic over plain http is refused before any connection (the port is the TLS one).
    let plain = format!("http://127.0.0.1:{}{SDK_PATH}", s.addr.port());
    let out = pfgate(
        args(&[
            "call",
            &plain,
            "UserExists",
            "--auth",
            "basic",
            "--user",
            "CONTOSO\\adfs-sdk",
        ]),
        pw(BASIC_PW),
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing Basic"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_v2_against_pfgates_acceptor_and_a_wrong_password() {
    let d = temp_dir("call-ntlm");
    let s = ntlm_server(&d).await;
    let fp = s.fingerprint();
    let call = |user: &str| {
        args(&[
            "call",
            &s.url(),
            "CanonicalizeUser",
            "--param",
            "username=BOB@contoso.com",
            "--auth",
            "ntlm",
            "--user",
            user,
            "--pin-sha256",
            &fp,
            "--json",
        ])
    };
    let out = pfgate(call("CONTOSO\\mimservice"), pw(PASSWORD)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["CanonicalizeUserResult"], true);
    assert_eq!(v["canonicalUsername"], "bob@contoso.com");

    // The user name is case-insensitive for NTLM (NTOWFv2 upper-cases it).
    let out = pfgate(call("contoso\\MIMService"), pw(PASSWORD)).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    let out = pfgate(call("CONTOSO\\mimservice"), pw("M1m-Service!pW")).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("NTLM"),
        "{stderr}"
    );
    assert!(!stderr.contains("M1m-Service"));

    let out = pfgate(call("CONTOSO\\nobody"), pw(PASSWORD)).await;
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));

    // No credentials at all: the server's 401 is reported, exit 4.
    let out = pfgate(
        args(&["call", &s.url(), "UserExists", "--pin-sha256", &fp]),
        vec![],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("none were sent"), "{stderr}");
}

/// A client certificate of `pki` written to `dir` as PEM files: (DER, certificate, key).
fn client_cert(pki: &Pki, cn: &str, dir: &Path) -> (Vec<u8>, PathBuf, PathBuf) {
    let (der, pem, key) = pki.client(cn, false);
    let (c, k) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")));
    std::fs::write(&c, pem).unwrap();
    std::fs::write(&k, key).unwrap();
    (der, c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_maps_to_a_principal_and_an_unmapped_one_is_refused() {
    let d = temp_dir("call-cert");
    let pki = Pki::new("Contoso Issuing CA");
    let ca_file = d.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let (der, cert, key) = client_cert(&pki, "adfs01.contoso.com", &d);
    let (_, other_cert, other_key) = client_cert(&pki, "someone-else", &d);
    let mut settings = basic_server_settings();
    settings.auth.client_ca_file = Some(ca_file);
    settings.auth.certificate_map = vec![pfgate::auth::client_cert::CertificateMapping {
        principal: "CONTOSO\\adfs-sdk".into(),
        sha256: Some(pfgate::net::tls::fingerprint(&der)),
        sha1: None,
        subject: None,
        upn: None,
    }];
    let s = TestServer::start(settings).await;
    let fp = s.fingerprint();
    let call = |c: &Path, k: &Path| {
        args(&[
            "call",
            &s.url(),
            "UserExists",
            "--param",
            "username=carol@contoso.com",
            "--auth",
            "cert",
            "--client-cert",
            c.to_str().unwrap(),
            "--client-key",
            k.to_str().unwrap(),
            "--pin-sha256",
            &fp,
        ])
    };
    let out = pfgate(call(&cert, &key), vec![]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("UserExistsResult: true"), "{stdout}");

    let out = pfgate(call(&other_cert, &other_key), vec![]).await;
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));

    // --auth cert without a certificate is a usage error.
    let out = pfgate(
        args(&[
            "call",
            &s.url(),
            "UserExists",
            "--auth",
            "cert",
            "--pin-sha256",
            &fp,
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_operations_bad_parameters_faults_and_business_errors() {
    let mock = MockServer::builder()
        .rule(
            Rule::new()
                .operation("GetUserSettings_3")
                .fault(Fault::SoapFault {
                    code: FaultSide::Client,
                    message: "Server did not recognize the value of HTTP Header SOAPAction: \
                              http://www.phonefactor.com/PfWsSdk/GetUserSettings_3."
                        .into(),
                }),
        )
        .start()
        .await;
    let url = mock.url();
    let fp = mock.fingerprint().unwrap();

    let out = pfgate(
        args(&["call", &url, "GetUserSettings_4", "--pin-sha256", &fp]),
        vec![],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'GetUserSettings_4' is not a PfWsSdk operation"),
        "{stderr}"
    );

    for (param, expect) in [
        ("user=alice", "its parameters: username (string)"),
        ("username", "expected NAME=VALUE"),
    ] {
        let out = pfgate(
            args(&[
                "call",
                &url,
                "UserExists",
                "--param",
                param,
                "--pin-sha256",
                &fp,
            ]),
            vec![],
        )
        .await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
    }
    let out = pfgate(
        args(&[
            "call",
            &url,
            "PfAuthUser_5",
            "--param",
            "mode=fax",
            "--pin-sha256",
            &fp,
        ]),
        vec![],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Mode3") && stderr.contains("smsText"),
        "{stderr}"
    );
    // Nothing of the above reached the server.
    assert_eq!(mock.received_requests().len(), 0);

    let out = pfgate(
        args(&[
            "call",
            &url,
            "GetUserSettings_3",
            "--param",
            "username=alice@contoso.com",
            "--pin-sha256",
            &fp,
        ]),
        vec![],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "SOAP fault soap:Client: Server did not recognize the value of HTTP Header SOAPAction"
        ),
        "{stdout}"
    );

    // A business error: false and Error 10, exit 1.
    let out = pfgate(
        args(&[
            "call",
            &url,
            "GetPhone",
            "--param",
            "username=nobody@contoso.com",
            "--pin-sha256",
            &fp,
        ]),
        vec![],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("GetPhoneResult: false"), "{stdout}");
    assert!(stdout.contains("Code: 10"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_verification_never_skipped() {
    let s = TestServer::demo().await;
    let d = temp_dir("call-tls");
    let call = |extra: &[&str]| {
        let mut a = args(&[
            "call",
            &s.url(),
            "UserExists",
            "--param",
            "username=alice@contoso.com",
        ]);
        a.extend(args(extra));
        a
    };
    // System roots: the self-signed certificate is not trusted.
    let out = pfgate(call(&[]), vec![]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("certificate"),
        "{stderr}"
    );

    // A pin of another certificate.
    let other = "00:".repeat(31) + "00";
    let out = pfgate(call(&["--pin-sha256", &other]), vec![]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not the pinned one"), "{stderr}");

    // A CA file holding another CA; then one holding the server's certificate.
    let wrong = d.join("wrong.pem");
    std::fs::write(&wrong, Pki::new("Other CA").ca_pem).unwrap();
    let out = pfgate(call(&["--ca", wrong.to_str().unwrap()]), vec![]).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let right = d.join("right.pem");
    std::fs::write(&right, s.leaf_pem()).unwrap();
    let out = pfgate(call(&["--ca", right.to_str().unwrap()]), vec![]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");

    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = pfgate(
        args(&[
            "call",
            &format!("https://localhost:{port}{SDK_PATH}"),
            "UserExists",
            "--pin-sha256",
            &other,
        ]),
        vec![],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
