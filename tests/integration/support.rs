//! Test support: a real pfgate on 127.0.0.1:0 and a TLS client that trusts exactly its certificate.
//! Every wait has a timeout, so a hung server fails a test instead of hanging the suite.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use pfgate::config::Settings;
use pfgate::server::{self, RunningServer};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Waits at most this long for any single network step.
pub const STEP: Duration = Duration::from_secs(20);

pub const SDK_PATH: &str = "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";
pub const NS: &str = "http://www.phonefactor.com/PfWsSdk";

pub struct TestServer {
    pub running: Option<RunningServer>,
    pub addr: SocketAddr,
    pub leaf: CertificateDer<'static>,
    /// The `pfgate serve --demo` process, when `PFGATE_TEST_BIN` names an executable to test.
    pub process: Option<std::process::Child>,
}

impl TestServer {
    /// The demo server on a free port: in this process, or `PFGATE_TEST_BIN serve --demo` (run
    /// through `PFGATE_TEST_BIN_WRAPPER`, e.g. the Windows build under wine) when that is set.
    pub async fn demo() -> Self {
        if std::env::var_os(TEST_BIN).is_some() {
            return tokio::task::spawn_blocking(Self::demo_process)
                .await
                .expect("demo process started");
        }
        Self::start(Settings::demo("127.0.0.1:0".parse().unwrap())).await
    }

    /// `pfgate serve --demo` as a process: its address and fingerprint from its first lines, its
    /// certificate from a handshake, checked against that fingerprint.
    fn demo_process() -> Self {
        let mut cmd = pfgate_command();
        cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0"]);
        let (child, addr, fingerprint) = spawn_serving(cmd);
        let leaf = peer_certificate(addr);
        assert_eq!(
            pfgate::net::tls::fingerprint(&leaf),
            fingerprint,
            "the certificate served is not the one the process printed"
        );
        Self {
            running: None,
            addr,
            leaf,
            process: Some(child),
        }
    }

    /// A server with these settings (the TLS listener must be configured).
    pub async fn start(settings: Settings) -> Self {
        Self::from_running(server::start(settings).await.expect("server starts"))
    }

    /// Wraps a server started by the test.
    pub fn from_running(running: RunningServer) -> Self {
        let addr = running.tls_addr.expect("TLS listener");
        let leaf = running.tls.as_ref().expect("TLS identity").leaf.clone();
        Self {
            running: Some(running),
            addr,
            leaf,
            process: None,
        }
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}{SDK_PATH}", self.addr.port())
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.leaf)
    }

    pub fn leaf_pem(&self) -> String {
        match &self.running {
            Some(r) => r.tls.as_ref().unwrap().leaf_pem(),
            None => pem_of(&self.leaf),
        }
    }

    pub fn fingerprint(&self) -> String {
        pfgate::net::tls::fingerprint(&self.leaf)
    }
}

/// The environment variable naming a pfgate executable for [`TestServer::demo`] and
/// [`pfgate_command`] (the Windows build's `pfgate.exe` in `.ci/windows`).
pub const TEST_BIN: &str = "PFGATE_TEST_BIN";
/// The program that runs [`TEST_BIN`] (`wine`), if any.
pub const TEST_BIN_WRAPPER: &str = "PFGATE_TEST_BIN_WRAPPER";
/// How long a pfgate process may take to print its listening lines (wine starts slowly).
pub const PROCESS_START: Duration = Duration::from_secs(90);

/// A command running the pfgate under test: `PFGATE_TEST_BIN` through `PFGATE_TEST_BIN_WRAPPER`
/// when set, else this build's binary.
pub fn pfgate_command() -> std::process::Command {
    let bin = std::env::var_os(TEST_BIN).unwrap_or_else(|| env!("CARGO_BIN_EXE_pfgate").into());
    match std::env::var_os(TEST_BIN_WRAPPER).filter(|w| !w.is_empty()) {
        Some(wrapper) => {
            let mut cmd = std::process::Command::new(wrapper);
            cmd.arg(bin);
            cmd
        }
        None => std::process::Command::new(bin),
    }
}

/// Starts `cmd` (a `pfgate serve`) and reads its first lines for the TLS address and the
/// certificate fingerprint it prints; panics (after killing it) when they do not come in
/// [`PROCESS_START`]. Its standard error is discarded (wine's own messages included).
pub fn spawn_serving(mut cmd: std::process::Command) -> (std::process::Child, SocketAddr, String) {
    use std::io::BufRead as _;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start the pfgate process");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut addr, mut fingerprint) = (None, None);
    let deadline = std::time::Instant::now() + PROCESS_START;
    while addr.is_none() || fingerprint.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ended or did not print its address and fingerprint within {PROCESS_START:?}");
        };
        if let Some(rest) = line.split(" listening on https://").nth(1) {
            addr = rest
                .split('/')
                .next()
                .and_then(|a| a.parse::<SocketAddr>().ok());
        }
        if let Some(fp) = line.strip_prefix("TLS certificate SHA-256 fingerprint: ") {
            fingerprint = Some(fp.trim().to_string());
        }
    }
    (child, addr.unwrap(), fingerprint.unwrap())
}

/// A certificate as PEM.
pub fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The certificate the TLS server at `addr` presents (not trusted: the caller checks it against
/// the fingerprint the server printed).
fn peer_certificate(addr: SocketAddr) -> CertificateDer<'static> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let capture = Arc::new(Capture {
        leaf: std::sync::Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, STEP).expect("connect");
    tcp.set_read_timeout(Some(STEP)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("handshake");
    }
    let leaf = capture.leaf.lock().unwrap().take();
    leaf.expect("the server presented a certificate")
}

/// Accepts any server certificate and keeps it (see [`peer_certificate`]); signatures are still
/// verified, so the peer holds the certificate's key.
#[derive(Debug)]
struct Capture {
    leaf: std::sync::Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.leaf.lock().unwrap() = Some(end_entity.clone().into_owned());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            // Only this process, by its own handle.
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(r) = self.running.take() {
            // Stop the listeners; connections end with the test's runtime.
            drop(tokio::spawn(r.shutdown(Duration::from_millis(10))));
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    connector: TlsConnector,
}

impl Client {
    pub fn new(addr: SocketAddr, leaf: &CertificateDer<'static>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(leaf.clone())
            .expect("certificate accepted as a root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            addr,
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    pub async fn tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(self.addr))
            .await
            .expect("connect in time")
            .expect("connect");
        self.handshake(tcp).await
    }

    /// A TLS connection from `source`, another loopback address (127.0.0.2, …): a caller other
    /// than the one at 127.0.0.1, for limits kept per source address.
    pub async fn tls_from(
        &self,
        source: std::net::IpAddr,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.handshake(connect_from(source, self.addr).await).await
    }

    async fn handshake(&self, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(STEP, self.connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake")
    }

    /// The TLS handshake on `tcp`; `None` if the server refused or closed it.
    pub async fn handshake_on(
        &self,
        tcp: TcpStream,
    ) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.ok()
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request on a fresh connection with hyper's client.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Resp {
        let stream = self.tls().await;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("http handshake");
        tokio::spawn(conn);
        send_on(&mut sender, req).await
    }

    pub async fn get(&self, path_and_query: &str) -> Resp {
        self.send(
            http::Request::get(path_and_query)
                .header("host", format!("localhost:{}", self.addr.port()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
    }

    /// POSTs a SOAP 1.1 envelope; `action` is sent quoted, as .NET does.
    pub async fn soap11(&self, action: Option<&str>, envelope: &str) -> Resp {
        let mut b = http::Request::post(SDK_PATH)
            .header("host", format!("localhost:{}", self.addr.port()))
            .header("content-type", "text/xml; charset=utf-8");
        if let Some(a) = action {
            b = b.header("soapaction", format!("\"{a}\""));
        }
        self.send(
            b.body(Full::new(Bytes::from(envelope.to_string())))
                .unwrap(),
        )
        .await
    }

    /// POSTs a SOAP 1.2 envelope with `action=` in the content type.
    pub async fn soap12(&self, action: &str, envelope: &str) -> Resp {
        let req = http::Request::post(SDK_PATH)
            .header("host", format!("localhost:{}", self.addr.port()))
            .header(
                "content-type",
                format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
            )
            .body(Full::new(Bytes::from(envelope.to_string())))
            .unwrap();
        self.send(req).await
    }
}

/// A TCP connection to `addr` from the local address `source`.
pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

pub async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Resp {
    tokio::time::timeout(STEP, sender.ready())
        .await
        .expect("connection ready in time")
        .expect("connection still open (keep-alive)");
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 response"),
    }
}

/// A SOAP 1.1 envelope around `inner`, written the way .NET's XmlSerializer writes it.
pub fn env11(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>{inner}</soap:Body></soap:Envelope>"#
    )
}

/// A SOAP 1.2 envelope around `inner`.
pub fn env12(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope"><soap12:Body>{inner}</soap12:Body></soap12:Envelope>"#
    )
}

pub fn action(op: &str) -> String {
    format!("{NS}/{op}")
}

/// The text of the first element with this local name (any prefix), or None.
pub fn text_of(xml: &str, local: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == local)
        .map(|n| n.text().unwrap_or("").to_string())
}

/// Parses a response body as XML with an independent parser (roxmltree), so a malformed envelope
/// fails the test whatever pfgate's own writer believes.
pub fn parse_xml(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("response is not well-formed XML: {e}\n{xml}"))
}
