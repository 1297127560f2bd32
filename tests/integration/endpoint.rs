//! The ASMX endpoint as callers see it: paths, WSDL/DISCO/help, SOAP 1.1 and 1.2 dispatch, every
//! operation's envelope, and the demo outcomes.

use bytes::Bytes;
use http_body_util::Full;
use pfgate::config::Settings;
use pfgate::pfwssdk::wsdl::{render, PLACEHOLDER_LOCATION};
use pfgate::pfwssdk::Operation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSDL_SOAP: &str = "http://schemas.xmlsoap.org/wsdl/soap/";

fn soap_address(wsdl: &str) -> String {
    let doc = parse_xml(wsdl);
    doc.descendants()
        .find(|n| n.has_tag_name((WSDL_SOAP, "address")))
        .and_then(|n| n.attribute("location"))
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_wsdl_for_any_case_with_the_callers_address() {
    let s = TestServer::demo().await;
    let c = s.client();
    for q in ["?WSDL", "?wsdl", "?Wsdl"] {
        let r = c.get(&format!("{SDK_PATH}{q}")).await;
        assert_eq!(r.status, 200, "{q}");
        assert!(r.header("content-type").starts_with("text/xml"), "{q}");
        assert_eq!(soap_address(&r.body), s.url(), "{q}");
        // The served document is the committed one with only the address changed.
        assert_eq!(
            r.body,
            render(PLACEHOLDER_LOCATION).replace(PLACEHOLDER_LOCATION, &s.url())
        );
    }
    // Another casing and vdir: the address follows what the caller used.
    let r = c
        .get("/multifactorauthwebservicesdk/pfwssdk.asmx?wsdl")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        soap_address(&r.body),
        format!(
            "https://localhost:{}/multifactorauthwebservicesdk/pfwssdk.asmx",
            s.addr.port()
        )
    );
}

async fn get_with(c: &Client, port: u16, headers: &[(&str, &str)]) -> Resp {
    let mut b =
        http::Request::get(format!("{SDK_PATH}?wsdl")).header("host", format!("localhost:{port}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    c.send(b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_only_from_trusted_proxies() {
    let forged = [
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
    ];

    let untrusted = TestServer::demo().await;
    let r = get_with(&untrusted.client(), untrusted.addr.port(), &forged).await;
    assert_eq!(
        soap_address(&r.body),
        untrusted.url(),
        "forged headers must be ignored"
    );

    let mut settings = Settings::demo("127.0.0.1:0".parse().unwrap());
    settings.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let trusted = TestServer::start(settings).await;
    let r = get_with(
        &trusted.client(),
        trusted.addr.port(),
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "mfa.contoso.com"),
        ],
    )
    .await;
    assert_eq!(
        soap_address(&r.body),
        "https://mfa.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx"
    );
    // A host with characters that could break out of the attribute is not believed.
    let r = get_with(
        &trusted.client(),
        trusted.addr.port(),
        &[("x-forwarded-host", "a\"><x")],
    )
    .await;
    assert_eq!(soap_address(&r.body), trusted.url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_disco_help_page_and_refuses_other_paths() {
    let s = TestServer::demo().await;
    let c = s.client();
    let r = c.get(&format!("{SDK_PATH}?disco")).await;
    assert_eq!(r.status, 200);
    let doc = parse_xml(&r.body);
    let cref = doc
        .descendants()
        .find(|n| n.has_tag_name(("http://schemas.xmlsoap.org/disco/scl/", "contractRef")))
        .unwrap();
    assert_eq!(
        cref.attribute("ref"),
        Some(format!("{}?wsdl", s.url()).as_str())
    );

    let r = c.get(SDK_PATH).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    for op in Operation::ALL {
        assert!(
            r.body.contains(&format!(">{}<", op.name())),
            "help page lists {}",
            op.name()
        );
    }

    assert_eq!(
        c.get("/MultiFactorAuthWebServiceSdk/Other.asmx")
            .await
            .status,
        404
    );
    assert_eq!(c.get("/").await.status, 404);
    let put = http::Request::put(SDK_PATH)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send(put).await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").contains("POST"));
}

fn result_and_error(body: &str, op: &str) -> (String, Option<(i64, String)>) {
    let doc = parse_xml(body);
    let resp = doc
        .descendants()
        .find(|n| n.has_tag_name((NS, format!("{op}Response").as_str())))
        .unwrap_or_else(|| panic!("no {op}Response in {body}"));
    let kids: Vec<_> = resp.children().filter(|n| n.is_element()).collect();
    assert_eq!(
        kids[0].tag_name().name(),
        format!("{op}Result"),
        "first child is the result"
    );
    let result = kids[0].text().unwrap_or("").to_string();
    let error = kids
        .iter()
        .find(|n| n.has_tag_name((NS, "error")))
        .map(|e| {
            let code = e
                .children()
                .find(|n| n.has_tag_name((NS, "Code")))
                .and_then(|n| n.text())
                .unwrap()
                .parse()
                .unwrap();
            let d = e
                .children()
                .find(|n| n.has_tag_name((NS, "Description")))
                .map(|n| n.text().unwrap_or("").to_string())
                .unwrap();
            (code, d)
        });
    (result, error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_well_formed_in_both_soap_versions() {
    let s = TestServer::demo().await;
    let c = s.client();
    let stream = c.tls().await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut not_supported = 0;
    for op in Operation::ALL {
        let name = op.name();
        let inner = format!(r#"<{name} xmlns="{NS}" />"#);
        for v12 in [false, true] {
            let req = if v12 {
                http::Request::post(SDK_PATH)
                    .header("host", "localhost")
                    .header(
                        "content-type",
                        format!(
                            "application/soap+xml; charset=utf-8; action=\"{}\"",
                            action(name)
                        ),
                    )
                    .body(Full::new(Bytes::from(env12(&inner))))
            } else {
                http::Request::post(SDK_PATH)
                    .header("host", "localhost")
                    .header("content-type", "text/xml; charset=utf-8")
                    .header("soapaction", format!("\"{}\"", action(name)))
                    .body(Full::new(Bytes::from(env11(&inner))))
            }
            .unwrap();
            // All on one keep-alive connection, as .NET clients do.
            let r = send_on(&mut sender, req).await;
            assert_eq!(r.status, 200, "{name} (1.2: {v12}): {}", r.body);
            let env_ns = if v12 { SOAP12 } else { SOAP11 };
            let doc = parse_xml(&r.body);
            assert!(
                doc.root_element().has_tag_name((env_ns, "Envelope")),
                "{name}"
            );
            let (result, error) = result_and_error(&r.body, name);
            match name {
                "TestSecurity" | "TestMasterConnection_2" => assert!(error.is_none()),
                _ => {
                    let (code, desc) =
                        error.unwrap_or_else(|| panic!("{name}: error always present"));
                    assert!(result == "true" || result == "false", "{name}: {result}");
                    if result == "true" {
                        assert_eq!((code, desc.as_str()), (0, ""), "{name}");
                    }
                    // Never implemented by pfgate (no telephony templates), always implemented.
                    if name == "EventConfirmationInitiateCall" || name == "GetTags" {
                        assert_eq!(code, 501, "{name}");
                    }
                    if name == "GetFeatures" || name == "TestMasterConnection" {
                        assert_eq!((result.as_str(), code), ("true", 0), "{name}");
                    }
                    if code == 501 {
                        assert_eq!(result, "false");
                        assert!(desc.contains(name), "{name}: '{desc}' names the operation");
                        if !v12 {
                            not_supported += 1;
                        }
                    }
                }
            }
        }
    }
    // Operations outside this version's engine answer "not supported", not a fault or 404.
    assert!(not_supported > 0, "{not_supported}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_action_quoted_unquoted_absent_and_soap12() {
    let s = TestServer::demo().await;
    let c = s.client();
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let r = c.soap11(Some(&action("TestSecurity")), &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/xml; charset=utf-8");
    assert_eq!(
        text_of(&r.body, "TestSecurityResult").as_deref(),
        Some("secure")
    );

    for soapaction in [Some(action("TestSecurity")), None, Some(String::new())] {
        let mut b = http::Request::post(SDK_PATH)
            .header("host", "localhost")
            .header("content-type", "text/xml");
        if let Some(a) = &soapaction {
            b = b.header("soapaction", a.as_str()); // unquoted, or empty
        }
        let r = c
            .send(b.body(Full::new(Bytes::from(body.clone()))).unwrap())
            .await;
        assert_eq!(r.status, 200, "{soapaction:?}: {}", r.body);
        assert_eq!(
            text_of(&r.body, "TestSecurityResult").as_deref(),
            Some("secure")
        );
    }

    let r = c
        .soap12(
            &action("TestSecurity"),
            &env12(&format!(r#"<TestSecurity xmlns="{NS}" />"#)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        "application/soap+xml; charset=utf-8"
    );
    assert!(parse_xml(&r.body)
        .root_element()
        .has_tag_name((SOAP12, "Envelope")));

    // Disagreement between SOAPAction and body is refused.
    let r = c.soap11(Some(&action("PfAuthUser_4")), &body).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        text_of(&r.body, "faultcode").as_deref(),
        Some("soap:Client")
    );
    assert!(text_of(&r.body, "faultstring")
        .unwrap()
        .contains("does not match"));
    // ...in SOAP 1.2 as a Sender fault.
    let r = c
        .soap12(
            &action("UserExists"),
            &env12(&format!(r#"<TestSecurity xmlns="{NS}" />"#)),
        )
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(text_of(&r.body, "Value").as_deref(), Some("soap:Sender"));
}

fn pf_auth_user_4(user: &str) -> String {
    env11(&format!(
        r#"<PfAuthUser_4 xmlns="{NS}"><username>{user}</username><initiatingAuthenticationType>pfsdk</initiatingAuthenticationType><initiatingIpAddress>10.0.0.5</initiatingIpAddress><applicationName>MIM</applicationName><requireUserMatch>true</requireUserMatch></PfAuthUser_4>"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_outcomes() {
    let s = TestServer::demo().await;
    let c = s.client();
    let a = action("PfAuthUser_4");
    let cases = [
        ("alice@contoso.com", "true", "2", "0"),
        ("ALICE@CONTOSO.COM", "true", "2", "0"),
        ("bob@contoso.com", "false", "11", "12"),
        ("carol@contoso.com", "false", "14", "12"),
    ];
    for (user, result, call, error) in cases {
        let r = c.soap11(Some(&a), &pf_auth_user_4(user)).await;
        assert_eq!(r.status, 200);
        let doc = parse_xml(&r.body);
        let code = |parent: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == parent)
                .and_then(|n| n.children().find(|c| c.tag_name().name() == "Code"))
                .and_then(|n| n.text())
                .unwrap()
                .to_string()
        };
        assert_eq!(
            text_of(&r.body, "PfAuthUser_4Result").as_deref(),
            Some(result),
            "{user}"
        );
        assert_eq!(code("callResult"), call, "{user}");
        assert_eq!(code("error"), error, "{user}");
        // A call was placed for alice and bob: its request id comes back. Carol is refused before.
        match text_of(&r.body, "authenticationRequestId") {
            Some(id) => {
                assert_ne!(call, "14", "{user}: no call, no id");
                assert_eq!(id.len(), 32, "{user}");
                assert!(id
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
            }
            None => assert_eq!(
                call, "14",
                "{user}: a call was placed, its id must come back"
            ),
        }
    }
    // Unknown user with requireUserMatch=true: USER_NOT_FOUND.
    let r = c
        .soap11(Some(&a), &pf_auth_user_4("nobody@contoso.com"))
        .await;
    assert_eq!(
        text_of(&r.body, "PfAuthUser_4Result").as_deref(),
        Some("false")
    );
    assert!(r.body.contains("<error><Code>10</Code>"), "{}", r.body);

    // PfAuthUser_5 decides by the number in the call, written zeep-style with prefixes.
    for (number, result) in [("4255550100", "true"), ("4255550111", "false")] {
        let body = format!(
            r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body><ns0:PfAuthUser_5 xmlns:ns0="{NS}"><ns0:username>mimservice@contoso.com</ns0:username><ns0:initiatingAuthenticationType>pfsdk</ns0:initiatingAuthenticationType><ns0:requireUserMatch>false</ns0:requireUserMatch><ns0:mode>voiceCall</ns0:mode><ns0:countryCode>1</ns0:countryCode><ns0:phoneNumber>{number}</ns0:phoneNumber><ns0:extension/></ns0:PfAuthUser_5></soap-env:Body></soap-env:Envelope>"#
        );
        let r = c.soap11(Some(&action("PfAuthUser_5")), &body).await;
        assert_eq!(
            text_of(&r.body, "PfAuthUser_5Result").as_deref(),
            Some(result),
            "{number}"
        );
    }

    // GetUserSettings_3 carries the directory's data.
    let body = env11(&format!(
        r#"<GetUserSettings_3 xmlns="{NS}"><username>alice@contoso.com</username></GetUserSettings_3>"#
    ));
    let r = c.soap11(Some(&action("GetUserSettings_3")), &body).await;
    assert_eq!(
        text_of(&r.body, "GetUserSettings_3Result").as_deref(),
        Some("true")
    );
    assert_eq!(text_of(&r.body, "FirstName").as_deref(), Some("Alice"));
    assert_eq!(text_of(&r.body, "Phone").as_deref(), Some("4255550100"));
    assert_eq!(text_of(&r.body, "Mode").as_deref(), Some("voiceCall"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_honoured() {
    let s = TestServer::demo().await;
    let mut stream = s.client().tls().await;
    let body = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let head = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{}\"\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        action("TestSecurity"),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(STEP, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(STEP, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        out.extend_from_slice(&chunk[..n]);
        if n == 0 || String::from_utf8_lossy(&out).contains("</soap:Envelope>") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("<TestSecurityResult>secure</TestSecurityResult>"));
}
