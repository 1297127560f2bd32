//! Benchmark baseline: the least a hyper 1 + rustls server can do for a PfWsSdk call.
//!
//! It answers every POST with the fixed SOAP 1.1 `TestSecurity` response pfgate sends (same bytes,
//! same `Content-Type`, same status), over the same stack pfgate uses: a multi-threaded tokio runtime,
//! one task per connection, rustls with the aws-lc-rs provider (TLS 1.3 and 1.2, ALPN `http/1.1`),
//! and hyper's HTTP/1.1 connection with keep-alive, the tokio timer and a header-read timeout. What it
//! leaves out is everything pfgate adds per request: routing, SOAP/XML decoding, the engine, response
//! encoding and the access log. `bench/run.sh` measures pfgate against it in the same run.
//!
//! A `PfAuthUser_5` call (by its `SOAPAction`) gets pfgate's 586-byte answer to the benchmark's
//! request instead (`bench/soap/PfAuthUser_5.response.xml`, captured from `pfgate serve`), so both
//! requests compare against a reply of the same size.
//!
//! Usage: `cargo run --release --example bench-baseline -- --listen 127.0.0.1:18444 [--plain]
//! [--current-thread]` (prints `listening on https://ADDR` or `http://ADDR` once bound).
//! `--plain` serves HTTP without TLS (issue #21 measures plain HTTP against it); `--current-thread`
//! runs one current-thread runtime instead of pfgate's multi-threaded one (the least a hyper server
//! can do on one core: the bar of issue #21).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The SOAP 1.1 envelope pfgate answers `TestSecurity` with, byte for byte (381 bytes).
const TEST_SECURITY_RESPONSE: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema">"#,
    r#"<soap:Body><TestSecurityResponse xmlns="http://www.phonefactor.com/PfWsSdk">"#,
    r#"<TestSecurityResult>secure</TestSecurityResult>"#,
    r#"</TestSecurityResponse></soap:Body></soap:Envelope>"#,
);

/// The upper bound on a request body the baseline reads (pfgate's default limit is larger; the
/// benchmark bodies are well under 1 KiB).
const MAX_BODY: usize = 1024 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// pfgate's answer to `bench/soap/PfAuthUser_5.xml` (demo directory, scripted provider).
const PFAUTHUSER_5_RESPONSE: &str = include_str!("soap/PfAuthUser_5.response.xml");

fn usage() -> BoxError {
    "usage: bench-baseline --listen ADDR [--plain] [--current-thread] (e.g. 127.0.0.1:18444)".into()
}

/// What the command line asks for.
struct Args {
    listen: SocketAddr,
    plain: bool,
    current_thread: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    let (mut plain, mut current_thread) = (false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plain" => plain = true,
            "--current-thread" => current_thread = true,
            "--listen" => {
                let value = args.next().ok_or_else(usage)?;
                listen = Some(value.parse::<SocketAddr>().map_err(|e| {
                    BoxError::from(format!("bench-baseline: bad --listen {value:?}: {e}"))
                })?);
            }
            _ => {
                if let Some(value) = arg.strip_prefix("--listen=") {
                    listen = Some(value.parse::<SocketAddr>().map_err(|e| {
                        BoxError::from(format!("bench-baseline: bad --listen {value:?}: {e}"))
                    })?);
                } else {
                    return Err(usage());
                }
            }
        }
    }
    Ok(Args {
        listen: listen.ok_or_else(usage)?,
        plain,
        current_thread,
    })
}

/// A self-signed certificate for localhost, configured exactly as `src/net/tls.rs` does.
fn tls_config() -> Result<Arc<ServerConfig>, BoxError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let leaf: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![leaf], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn fixed(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        let mut response = fixed(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"POST only.\n"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(response);
    }
    let reply = match req.headers().get("soapaction") {
        Some(action) if action.as_bytes().ends_with(b"/PfAuthUser_5\"") => PFAUTHUSER_5_RESPONSE,
        _ => TEST_SECURITY_RESPONSE,
    };
    // Read the whole body, as a real endpoint must, but ignore what it says.
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    if limited.collect().await.is_err() {
        return Ok(fixed(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"The request body could not be read.\n"),
        ));
    }
    Ok(fixed(
        StatusCode::OK,
        "text/xml; charset=utf-8",
        Bytes::from_static(reply.as_bytes()),
    ))
}

async fn serve_connection(stream: TcpStream, acceptor: Option<TlsAcceptor>) {
    let Some(acceptor) = acceptor else {
        return serve_http(stream).await;
    };
    let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
    // A failed or slow handshake only ends this connection.
    if let Ok(Ok(tls)) = handshake {
        serve_http(tls).await;
    }
}

async fn serve_http<I>(io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    // Errors here are the peer going away mid-request; nothing to do but drop the connection.
    let _ = builder
        .serve_connection(TokioIo::new(io), service_fn(handle))
        .await;
}

async fn serve(listener: TcpListener, acceptor: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // Typically EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, acceptor.clone()));
    }
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let acceptor = if args.plain {
        None
    } else {
        Some(TlsAcceptor::from(tls_config()?))
    };
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let scheme = if args.plain { "http" } else { "https" };
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        println!("listening on {scheme}://{}", listener.local_addr()?);
        serve(listener, acceptor).await;
        Ok(())
    })
}
