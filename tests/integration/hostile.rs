//! Hostile input: each gets a clear answer (SOAP fault or 4xx) within the limits, and the server
//! goes on serving the next request.

use std::time::{Duration, Instant};

use pfgate::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub(crate) async fn still_serves(c: &Client) {
    let r = c
        .soap11(
            Some(&action("TestSecurity")),
            &env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        text_of(&r.body, "TestSecurityResult").as_deref(),
        Some("secure")
    );
}

async fn expect_client_fault(c: &Client, body: &str, action_name: &str, needle: &str) {
    let r = c.soap11(Some(&action(action_name)), body).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(
        text_of(&r.body, "faultcode").as_deref(),
        Some("soap:Client"),
        "{}",
        r.body
    );
    let fs = text_of(&r.body, "faultstring").unwrap();
    assert!(
        fs.contains(needle),
        "faultstring '{fs}' should mention '{needle}'"
    );
    still_serves(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_doctype_with_entities() {
    let s = TestServer::demo().await;
    let c = s.client();
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>{}"#,
        env11(&format!(
            r#"<UserExists xmlns="{NS}"><username>&lol3;</username></UserExists>"#
        ))
    );
    expect_client_fault(&c, &laughs, "UserExists", "DTD").await;
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{}"#,
        env11(&format!(
            r#"<UserExists xmlns="{NS}"><username>&xxe;</username></UserExists>"#
        ))
    );
    expect_client_fault(&c, &xxe, "UserExists", "DTD").await;
    // An undeclared entity without a DTD is refused too, not expanded or passed through.
    let undeclared = env11(&format!(
        r#"<UserExists xmlns="{NS}"><username>&xxe;</username></UserExists>"#
    ));
    expect_client_fault(&c, &undeclared, "UserExists", "entity").await;
}

async fn raw_exchange(c: &Client, head: &str, body: &[u8]) -> String {
    let mut stream = c.tls().await;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_ten_megabyte_body() {
    let s = TestServer::demo().await;
    let c = s.client();
    let ten_mb = 10 * 1024 * 1024;
    // Announced by Content-Length, as .NET sends it (with Expect: 100-continue, and without):
    // refused before any of the body is read, so the client never has to send it.
    for expect in ["Expect: 100-continue\r\n", ""] {
        let head = format!(
            "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"{}\"\r\nContent-Length: {ten_mb}\r\n{expect}\r\n",
            action("TestSecurity")
        );
        let text = raw_exchange(&c, &head, b"").await;
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "{expect}: {}",
            &text[..text.len().min(200)]
        );
        assert!(
            !text.contains("100 Continue"),
            "no 100 Continue for a body that will be refused"
        );
    }
    // Chunked, so only counting while reading can catch it: one byte over the 1 MiB limit.
    let head = format!(
        "POST {SDK_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let over = 1024 * 1024 + 1;
    let body = format!("{over:x}\r\n{}\r\n0\r\n\r\n", "y".repeat(over));
    let text = raw_exchange(&c, &head, body.as_bytes()).await;
    assert!(
        text.starts_with("HTTP/1.1 413"),
        "{}",
        &text[..text.len().min(200)]
    );
    still_serves(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_100000_deep_nesting() {
    let s = TestServer::demo().await;
    let c = s.client();
    let depth = 100_000;
    let inner = format!(
        r#"<UserExists xmlns="{NS}"><username>{}{}</username></UserExists>"#,
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    expect_client_fault(&c, &env11(&inner), "UserExists", "nesting").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_invalid_utf8() {
    let s = TestServer::demo().await;
    let c = s.client();
    let mut body = env11(&format!(
        r#"<UserExists xmlns="{NS}"><username>ZZ</username></UserExists>"#
    ))
    .into_bytes();
    let at = body.windows(2).position(|w| w == b"ZZ").unwrap();
    body[at] = 0xff;
    body[at + 1] = 0xfe;
    let req = http::Request::post(SDK_PATH)
        .header("host", "localhost")
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", format!("\"{}\"", action("UserExists")))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, 500);
    assert!(text_of(&r.body, "faultstring").unwrap().contains("UTF-8"));
    still_serves(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_unknown_action_wrong_namespace_and_truncation() {
    let s = TestServer::demo().await;
    let c = s.client();
    let ts = env11(&format!(r#"<TestSecurity xmlns="{NS}" />"#));
    let r = c
        .soap11(Some("http://www.phonefactor.com/PfWsSdk/DropTables"), &ts)
        .await;
    assert_eq!(r.status, 500);
    assert!(text_of(&r.body, "faultstring")
        .unwrap()
        .contains("Server did not recognize the value of HTTP Header SOAPAction"));
    still_serves(&c).await;

    let wrong_ns = env11(r#"<TestSecurity xmlns="http://tempuri.org/" />"#);
    expect_client_fault(&c, &wrong_ns, "TestSecurity", "namespace").await;

    let full = env11(&format!(
        r#"<UserExists xmlns="{NS}"><username>alice@contoso.com</username></UserExists>"#
    ));
    for cut in [full.len() / 2, full.len() - 10, 60] {
        expect_client_fault(&c, &full[..cut], "UserExists", "").await;
    }
    // A body element the contract does not know, with no SOAPAction to dispatch on.
    let r = c
        .soap11(None, &env11(&format!(r#"<Nope xmlns="{NS}" />"#)))
        .await;
    assert_eq!(r.status, 500);
    assert!(text_of(&r.body, "faultstring").unwrap().contains("Nope"));
    // A value that is not valid for its type.
    let bad = env11(&format!(
        r#"<PfAuthUser_5 xmlns="{NS}"><username>a</username><mode>fax</mode></PfAuthUser_5>"#
    ));
    expect_client_fault(&c, &bad, "PfAuthUser_5", "Mode3").await;
    // Not SOAP at all.
    let req = http::Request::post(SDK_PATH)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(c.send(req).await.status, 415);
    still_serves(&c).await;
}

fn short_limits() -> Settings {
    let mut s = Settings::demo("127.0.0.1:0".parse().unwrap());
    s.limits.header_timeout = Duration::from_secs(1);
    s.limits.body_timeout = Duration::from_secs(1);
    s.limits.tls_handshake_timeout = Duration::from_secs(1);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let s = TestServer::start(short_limits()).await;
    let c = s.client();

    // Headers that never finish.
    let started = Instant::now();
    let mut stream = c.tls().await;
    stream
        .write_all(b"POST /PfWsSdk.asmx HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut sink))
        .await
        .expect("closed by the server");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // A body that stalls: 408.
    let mut stream = c.tls().await;
    stream
        .write_all(
            format!("POST {SDK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: 500\r\n\r\n<soap")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("answered");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"));

    // A TCP connection that never starts TLS.
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, tcp.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(10));

    still_serves(&c).await;
}
