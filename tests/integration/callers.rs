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
        ..AuthSettings::default()
    };
    s
}

pub(crate) fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

pub(crate) async fn post(c: &Client, op: &str, inner: &str, authz: Option<&str>) -> Resp {
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
        pfgate::testing::test_skips::skip(
            pfgate::testing::test_skips::Needs::Tools("curl"),
            "curl_with_basic_credentials",
            "not installed",
        );
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

/// A CA and certificates it signs, made at run time (nothing of value is committed).
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A client certificate; `expired` dates it in the past.
    pub(crate) fn client(&self, cn: &str, expired: bool) -> (Vec<u8>, String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), cert.pem(), key.serialize_pem())
    }
}

fn mtls_client(server: &TestServer, cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.leaf.clone()).unwrap();
    let certs =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Sends TestSecurity over a connection made by `connector`; the HTTP status, or None when the
/// TLS handshake (or the connection) was refused.
async fn status_with(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .ok()?
        .ok()?;
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let req = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nSOAPAction: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        action("TestSecurity"),
        body.len()
    );
    tls.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.get(9..12).and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_map_one_to_one() {
    let pki = Pki::new("Contoso Issuing CA");
    let other = Pki::new("Evil CA");
    let dir = std::env::temp_dir().join(format!("pfgate-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    let (good_der, good_pem, good_key) = pki.client("adfs01.contoso.com", false);
    let (_, unmapped_pem, unmapped_key) = pki.client("someone-else", false);
    let (_, expired_pem, expired_key) = pki.client("adfs01.contoso.com", true);
    let (_, evil_pem, evil_key) = other.client("adfs01.contoso.com", false);

    let mut settings = auth_settings();
    settings.auth.client_ca_file = Some(ca_file);
    settings.auth.certificate_map = vec![pfgate::auth::client_cert::CertificateMapping {
        principal: "CONTOSO\\adfs-sdk".into(),
        sha256: Some(pfgate::net::tls::fingerprint(&good_der)),
        sha1: None,
        subject: None,
        upn: None,
    }];
    let s = TestServer::start(settings).await;

    assert_eq!(
        status_with(&mtls_client(&s, &good_pem, &good_key), s.addr).await,
        Some(200)
    );
    // Verified by the CA but mapped to nobody: no principal, 401.
    assert_eq!(
        status_with(&mtls_client(&s, &unmapped_pem, &unmapped_key), s.addr).await,
        Some(401)
    );
    // Another CA, or expired: the handshake itself is refused.
    assert_eq!(
        status_with(&mtls_client(&s, &evil_pem, &evil_key), s.addr).await,
        None
    );
    assert_eq!(
        status_with(&mtls_client(&s, &expired_pem, &expired_key), s.addr).await,
        None
    );
    // No certificate (optional here): falls back to other methods, so 401 without credentials.
    let r = post(&s.client(), "TestSecurity", "", None).await;
    assert_eq!(r.status, 401);
}

/// The load-balancer probes answer without credentials (a balancer has none), tell nothing but a
/// status, and do not open anything else: the SDK next to them still refuses the anonymous caller,
/// and a POST to a probe path is not a probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_without_credentials_and_open_nothing_else() {
    let s = TestServer::start(auth_settings()).await;
    let c = s.client();
    let r = c.get("/healthz").await;
    assert_eq!((r.status, r.body.trim()), (200, "ok"));
    let r = c.get("/readyz").await;
    assert_eq!((r.status, r.body.trim()), (200, "ready"));
    assert_eq!(c.get(SDK_PATH).await.status, 401);
    assert_eq!(c.get("/readyz/../PfWsSdk.asmx").await.status, 401);
    let r = c
        .send(
            http::Request::post("/readyz")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 404);
}
