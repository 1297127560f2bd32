//! `pfgate record`: a transparent proxy in front of a real PfWsSdk that saves every SOAP exchange
//! as a golden fixture (`replay.rs` reads them back for `pfgate mock --replay`).
//!
//! This is also how an operator learns what their MIM, AD FS adapter or scripts really send before
//! cutting over (docs/protocol.md §7.2 recommends exactly that). The caller's credentials pass through
//! untouched (`Authorization` both ways, `WWW-Authenticate` back), and each downstream connection
//! gets its own upstream client, so the legs of a connection-bound handshake (NTLM) stay on one
//! upstream connection as far as the pool allows. The caller receives the upstream's bytes
//! unchanged; only what is written to disk is redacted (secrets `***`, phone numbers masked), so
//! fixtures can be committed and shared.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::faults::{self, MockBody};
use super::listener;
use super::replay::{redact_xml, Fixture, RecordedResponse};
use super::serve::{decode, respond};
use crate::net::tls::{self, TlsIdentity};
use crate::pfwssdk::soap::xml::XmlLimits;
use crate::pfwssdk::soap::SoapVersion;

/// Largest request or response body relayed (the gateway's own limit).
const MAX_BODY: usize = 1024 * 1024;

/// How long the upstream may take: longer than the 60 s an MFA call may last.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(100);

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The options are wrong.
    #[error("{0}")]
    Options(String),
    /// The output directory or the CA file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The upstream client could not be built.
    #[error("upstream client: {0}")]
    Client(String),
}

/// How to run the recorder.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Plain HTTP instead of TLS (loopback only).
    pub plain_http: bool,
    /// The real PfWsSdk (`https://mfa.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx`);
    /// requests are sent to its scheme, host and port with their own path.
    pub upstream: url::Url,
    /// PEM certificates to trust for the upstream instead of the system roots.
    pub upstream_ca: Option<PathBuf>,
    /// Where fixtures are written (created if missing).
    pub out: PathBuf,
}

/// A running recorder.
#[derive(Debug)]
pub struct RunningRecorder {
    /// Bound address.
    pub addr: SocketAddr,
    /// TLS identity (`None` with plain HTTP).
    pub tls: Option<TlsIdentity>,
    /// The proxy's listener (dropping it stops accepting).
    listener: crate::net::listener::Listeners,
    recorded: Arc<AtomicU64>,
}

impl RunningRecorder {
    /// The SDK URL on the recorder.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, crate::server::DEFAULT_PATH)
    }

    /// Exchanges written so far.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::SeqCst)
    }

    /// Stops accepting; connections end with their requests.
    pub fn stop(self) {
        drop(self.listener);
    }

    /// What `--ready-file` holds.
    pub fn ready_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url(),
            "tls": self.tls.is_some(),
            "fingerprint": self.tls.as_ref().map(|t| t.fingerprint()),
            "certificate_pem": self.tls.as_ref().map(|t| t.leaf_pem()),
            "pid": std::process::id(),
        })
    }
}

#[derive(Debug)]
struct Recorder {
    origin: String,
    roots: Option<Vec<reqwest::Certificate>>,
    loopback: bool,
    out: PathBuf,
    next: AtomicU64,
    recorded: Arc<AtomicU64>,
}

/// Starts the recorder.
pub async fn start(options: RecordOptions) -> Result<RunningRecorder, RecordError> {
    let up = &options.upstream;
    let host = up
        .host_str()
        .ok_or_else(|| RecordError::Options(format!("--upstream {up} has no host")))?;
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match up.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(RecordError::Options(format!(
                "--upstream {up}: use https (plain http only to loopback)"
            )))
        }
    }
    if options.plain_http && !options.listen.ip().is_loopback() {
        return Err(RecordError::Options(format!(
            "--plain-http serves only on loopback; {} is not",
            options.listen
        )));
    }
    let io = |p: &std::path::Path| {
        let path = p.display().to_string();
        move |source| RecordError::Io { path, source }
    };
    std::fs::create_dir_all(&options.out).map_err(io(&options.out))?;
    let existing = std::fs::read_dir(&options.out)
        .map_err(io(&options.out))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count() as u64;
    let roots = match &options.upstream_ca {
        Some(p) => {
            let pem = std::fs::read(p).map_err(io(p))?;
            Some(
                reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| RecordError::Client(format!("{}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    let port = up
        .port_or_known_default()
        .ok_or_else(|| RecordError::Options(format!("--upstream {up} has no port")))?;
    let recorded = Arc::new(AtomicU64::new(0));
    let recorder = Arc::new(Recorder {
        origin: format!("{}://{}:{port}", up.scheme(), up.host_str().unwrap_or(host)),
        roots,
        loopback,
        out: options.out.clone(),
        next: AtomicU64::new(existing + 1),
        recorded: recorded.clone(),
    });
    // Fail now, not on the first request, when the client cannot be built.
    recorder.client()?;
    let tls = if options.plain_http {
        None
    } else {
        Some(tls::self_signed(None)?)
    };
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(io(std::path::Path::new(&options.listen.to_string())))?;
    let addr = listener
        .local_addr()
        .map_err(io(std::path::Path::new("listener")))?;
    let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
    // One upstream client per downstream connection: connection-bound authentication (NTLM).
    let per_connection: listener::PerConnection = Arc::new(move || {
        let client = match recorder.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(target: "pfgate::record", error = %e, "no upstream client");
                return None;
            }
        };
        let recorder = recorder.clone();
        let handler: listener::Handler = Arc::new(move |req| {
            Box::pin(proxy(recorder.clone(), client.clone(), req)) as listener::Answer
        });
        Some(handler)
    });
    let listener = listener::spawn(listener, acceptor, "record", per_connection);
    Ok(RunningRecorder {
        addr,
        tls,
        listener,
        recorded,
    })
}

impl Recorder {
    fn client(&self) -> Result<reqwest::Client, RecordError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .pool_max_idle_per_host(1)
            .user_agent(concat!("pfgate/", env!("CARGO_PKG_VERSION"), " record"));
        if self.loopback {
            b = b.no_proxy();
        }
        if let Some(roots) = &self.roots {
            b = b.tls_certs_only(roots.clone());
        }
        b.build().map_err(|e| RecordError::Client(e.to_string()))
    }
}

/// Headers that belong to one hop, never forwarded.
fn hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "content-length"
            | "expect"
    )
}

fn plain(status: StatusCode, text: String) -> http::Response<MockBody> {
    respond(status, "text/plain; charset=utf-8", text)
}

async fn proxy(
    recorder: Arc<Recorder>,
    client: reqwest::Client,
    req: http::Request<Incoming>,
) -> http::Response<MockBody> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "pfgate record: the request body could not be read (over 1 MiB?)\n".into(),
            )
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let target = format!("{}{path}", recorder.origin);
    let mut up = client.request(parts.method.clone(), &target);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            up = up.header(name, value);
        }
    }
    let answer = match up.body(body.clone()).send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(target: "pfgate::record", error = %e, "upstream unreachable");
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("pfgate record: the upstream did not answer: {e}\n"),
            );
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let rbody = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                format!("pfgate record: the upstream's body broke off: {e}\n"),
            )
        }
    };
    if parts.method == http::Method::POST {
        if let Err(e) = save(&recorder, &parts.headers, &body, status, &headers, &rbody) {
            tracing::error!(target: "pfgate::record", error = %e, "fixture not written");
        }
    }
    let mut resp = http::Response::new(faults::full(rbody));
    *resp.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            resp.headers_mut().append(name, value.clone());
        }
    }
    resp
}

fn save(
    recorder: &Recorder,
    req_headers: &http::HeaderMap,
    req_body: &[u8],
    status: StatusCode,
    resp_headers: &http::HeaderMap,
    resp_body: &[u8],
) -> Result<(), RecordError> {
    let decoded = decode(req_headers, req_body, XmlLimits::default());
    let operation = decoded
        .as_ref()
        .and_then(|d| d.operation)
        .unwrap_or("-")
        .to_string();
    let fixture = Fixture {
        operation: operation.clone(),
        soap_version: match decoded.as_ref().map(|d| d.version) {
            Some(SoapVersion::V12) => "1.2".into(),
            _ => "1.1".into(),
        },
        soap_action: req_headers
            .get("soapaction")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        inputs: decoded
            .as_ref()
            .map(|d| super::journal::redact_map(&d.inputs))
            .unwrap_or_default(),
        request_body: redact_xml(&String::from_utf8_lossy(req_body)),
        response: RecordedResponse {
            status: status.as_u16(),
            content_type: resp_headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/xml; charset=utf-8")
                .to_string(),
            body: redact_xml(&String::from_utf8_lossy(resp_body)),
        },
    };
    let n = recorder.next.fetch_add(1, Ordering::SeqCst);
    let name: String = operation
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let path = recorder.out.join(format!("{n:04}-{name}.json"));
    let json = serde_json::to_string_pretty(&fixture).map_err(|e| RecordError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, json + "\n").map_err(|source| RecordError::Io {
        path: path.display().to_string(),
        source,
    })?;
    recorder.recorded.fetch_add(1, Ordering::SeqCst);
    tracing::info!(target: "pfgate::record", file = %path.display(), operation = %operation, status = status.as_u16(), "recorded");
    Ok(())
}
