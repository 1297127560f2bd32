//! Caller authentication and the allow-list: Basic over TLS (with curl, a real client), a trusted
//! proxy's identity header, and every refusal answered as IIS would (401/403, not a SOAP fault).

use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use pfgate::auth::basic::BasicAccount;
use pfgate::auth::policy::{OperationGroup, Policy, PrincipalRule};
use pfgate::config::{AuthSettings, Settings};

use crate::support::*;

fn auth_settings() -> Settings {
    let mut s = Settings::demo("127.0.0.1:0".parse().unwrap());
    s.allow_anonymous = false;
    s.auth = AuthSettings {
        allow_anonymous: false,
        proxy_identity_header: None,
        basic: vec![
            BasicAccount {
                principal: "CONTOSO\\adfs-sdk".into(),
                password_hash: pfgate::store::secrets::hash_pin("Adfs&Pa55").unwrap(),
            },
            BasicAccount {
                principal: "CONTOSO\\stranger".into(),
                password_hash: pfgate::store::secrets::hash_pin("Str4nger!").unwrap(),
            },
        ],
        policy: Policy::new(vec![PrincipalRule {
            name: "contoso\\ADFS-SDK".into(),
            allow: vec![
                OperationGroup::Authentication,
                OperationGroup::DirectoryRead,
            ],
        }]),
    };
    s
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

async fn post(c: &Client, op: &str, inner: &str, authz: Option<&str>) -> Resp {
    let mut b = http::Request::post(SDK_PATH)
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{}\"", action(op)));
    if let Some(a) = authz {
        b = b.header("authorization", a);
    }
    c.send(
        b.body(Full::new(Bytes::from(env11(&format!(
            r#"<{op} xmlns="{NS}">{inner}</{op}>"#
        )))))
        .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_over_tls_and_the_allow_list() {
    let s = TestServer::start(auth_settings()).await;
    let c = s.client();
    let pf4 = "<username>alice@contoso.com</username><requireUserMatch>true</requireUserMatch>";

    let r = post(&c, "PfAuthUser_4", pf4, None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate").starts_with("Basic realm="),
        "{:?}",
        r.headers
    );
    assert!(
        !r.body.contains("Envelope"),
        "401 is plain HTTP, not a SOAP fault"
    );

    for (user, pw) in [
        ("CONTOSO\\adfs-sdk", "wrong"),
        ("CONTOSO\\nobody", "Adfs&Pa55"),
        ("CONTOSO\\adfs-sdk", ""),
    ] {
        let r = post(&c, "PfAuthUser_4", pf4, Some(&basic(user, pw))).await;
        assert_eq!(r.status, 401, "{user}");
    }
    let r = post(&c, "PfAuthUser_4", pf4, Some("Digest username=\"x\"")).await;
    assert_eq!(r.status, 401);

    let good = basic("contoso\\ADFS-SDK", "Adfs&Pa55");
    let r = post(&c, "PfAuthUser_4", pf4, Some(&good)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        text_of(&r.body, "PfAuthUser_4Result").as_deref(),
        Some("true")
    );
    let r = post(
        &c,
        "GetUserSettings_3",
        "<username>alice@contoso.com</username>",
        Some(&good),
    )
    .await;
    assert_eq!(r.status, 200);
    // Directory writes are outside this caller's groups.
    let r = post(
        &c,
        "DeleteUser",
        "<username>alice@contoso.com</username>",
        Some(&good),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = post(
        &c,
        "UserExists",
        "<username>alice@contoso.com</username>",
        Some(&good),
    )
    .await;
    assert_eq!(
        text_of(&r.body, "UserExistsResult").as_deref(),
        Some("true"),
        "the delete did not happen"
    );
    // A valid account that is not on the allow-list.
    let r = post(
        &c,
        "PfAuthUser_4",
        pf4,
        Some(&basic("CONTOSO\\stranger", "Str4nger!")),
    )
    .await;
    assert_eq!(r.status, 403);
    // The WSDL needs authentication too, as on an IIS site without anonymous access.
    assert_eq!(c.get(&format!("{SDK_PATH}?WSDL")).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_basic_credentials() {
    if Command::new("curl").arg("--version").output().is_err() {
        if std::env::var("PFGATE_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("curl is required (PFGATE_REQUIRE_INTEROP=1)");
        }
        eprintln!("SKIP curl_with_basic_credentials: curl not installed");
        return;
    }
    let s = TestServer::start(auth_settings()).await;
    let dir = std::env::temp_dir().join(format!("pfgate-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("leaf.pem");
    std::fs::write(&ca, s.leaf_pem()).unwrap();
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let url = s.url();
    let run = move |user: &'static str| {
        let ca = ca.clone();
        let url = url.clone();
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "20",
                    "-o",
                    "-",
                    "-w",
                    "\n%{http_code}",
                    "--cacert",
                ])
                .arg(&ca)
                .args(["-u", user, "-H", "Content-Type: text/xml; charset=utf-8"])
                .args(["-H", &format!("SOAPAction: \"{}\"", action("TestSecurity"))])
                .args(["--data-binary", &body, &url])
                .env_remove("CURL_CA_BUNDLE")
                .output()
                .unwrap()
        })
    };
    let ok = run("CONTOSO\\adfs-sdk:Adfs&Pa55").await.unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        text.trim_end().ends_with("200"),
        "{text} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("<TestSecurityResult>secure</TestSecurityResult>"));
    let bad = run("CONTOSO\\adfs-sdk:nope").await.unwrap();
    assert!(String::from_utf8_lossy(&bad.stdout)
        .trim_end()
        .ends_with("401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_header_only_from_trusted_proxies() {
    for (trusted, expect) in [("127.0.0.1", 200), ("192.0.2.10", 401)] {
        let mut settings = auth_settings();
        settings.trusted_proxies = vec![trusted.parse().unwrap()];
        settings.auth.proxy_identity_header = Some("x-forwarded-user".into());
        let s = TestServer::start(settings).await;
        let c = s.client();
        let req = http::Request::post(SDK_PATH)
            .header("host", "localhost")
            .header("content-type", "text/xml")
            .header("soapaction", action("TestSecurity"))
            .header("x-forwarded-user", "CONTOSO\\adfs-sdk")
            .body(Full::new(Bytes::from(env11(&format!(
                r#"<TestSecurity xmlns="{NS}" />"#
            )))))
            .unwrap();
        let r = c.send(req).await;
        assert_eq!(r.status, expect, "trusted proxy {trusted}");
    }
}
