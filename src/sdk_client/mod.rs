//! A PfWsSdk SOAP client, shared by `pfgate call` (an administrator's test of any endpoint: the old
//! MFA Server or pfgate) and `pfgate users import --from-sdk` (reading an old server's directory).
//!
//! It owns its connection (hyper's HTTP/1.1 client connection over tokio-rustls) instead of using
//! a pooled client, because NTLM authenticates a *connection*: the three legs must travel on one
//! kept-alive socket, and later requests ride on it without re-authenticating. When the server
//! closes the connection the next call opens a new one and authenticates again.
//!
//! Credentials: Basic only over TLS unless the caller explicitly accepts plain HTTP (Basic sends
//! the password itself); NTLM by [`ntlm`]; a client certificate through [`tls`]. Nothing here
//! logs a password, an NTLM message or an `Authorization` header.

pub mod command;
pub mod ntlm;
pub mod request;
pub mod response;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::pfwssdk::Operation;

pub use response::{Answer, SoapFault, Value};

/// Largest response body read (a `FindUsers` page of many thousand rows fits comfortably).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why a call did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line or a file it names is wrong.
    #[error("{0}")]
    Usage(String),
    /// No connection (refused, unreachable, timed out).
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// host:port.
        target: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed (most often: the server's certificate is not trusted). The
    /// message names the two ways to trust a server outside the system store, because that is
    /// what an administrator trying a new pfgate (a development or internal CA) hits first.
    #[error(
        "TLS handshake with {target} failed: {reason} (a server whose certificate is not from a \
         CA this system trusts: give its CA with --ca CA.pem, or pin its certificate with \
         --pin-sha256 FINGERPRINT as pfgate prints it at start)"
    )]
    Tls {
        /// host:port.
        target: String,
        /// rustls's reason.
        reason: String,
    },
    /// The server refused the credentials (401) or the caller (403).
    #[error("{0}")]
    Refused(String),
    /// The exchange broke off or the answer is not HTTP/SOAP as expected.
    #[error("{0}")]
    Protocol(String),
    /// The call took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How the client authenticates at the HTTP level.
pub enum HttpAuth {
    /// Nothing (or a client certificate only).
    None,
    /// `Authorization: Basic`.
    Basic {
        /// User name.
        user: String,
        /// Password (wiped on drop).
        password: Zeroizing<String>,
    },
    /// NTLMv2.
    Ntlm(ntlm::Credentials),
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpAuth::None => f.write_str("None"),
            HttpAuth::Basic { user, .. } => write!(f, "Basic({user})"),
            HttpAuth::Ntlm(c) => write!(f, "Ntlm({})", c.user),
        }
    }
}

/// Everything a client needs.
#[derive(Debug)]
pub struct ClientOptions {
    /// The `PfWsSdk.asmx` URL.
    pub url: url::Url,
    /// HTTP authentication.
    pub auth: HttpAuth,
    /// TLS settings (for https URLs).
    pub tls: tls::TlsOptions,
    /// Deadline of one call, connection and authentication included.
    pub timeout: Duration,
    /// Accept sending Basic credentials over plain http.
    pub insecure_plain: bool,
}

/// An HTTP reply as received.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client holding at most one connection.
pub struct SdkClient {
    opts: ClientOptions,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<SendRequest<Full<Bytes>>>,
    /// The current connection passed NTLM.
    authenticated: bool,
}

impl std::fmt::Debug for SdkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkClient")
            .field("url", &self.opts.url.as_str())
            .field("auth", &self.opts.auth)
            .finish_non_exhaustive()
    }
}

impl SdkClient {
    /// Checks the options and prepares TLS; connects on the first call.
    pub fn new(opts: ClientOptions) -> Result<Self, ClientError> {
        let tls = match opts.url.scheme() {
            "https" => Some(tokio_rustls::TlsConnector::from(Arc::new(
                tls::client_config(&opts.tls)?,
            ))),
            "http" => {
                if matches!(opts.auth, HttpAuth::Basic { .. }) && !opts.insecure_plain {
                    return Err(ClientError::Usage(
                        "refusing Basic authentication over plain http: the password would cross \
                         the network readable by anyone on the path. Use https, or pass \
                         --insecure-plain if this is a loopback or lab connection"
                            .into(),
                    ));
                }
                if opts.tls.client_cert.is_some() {
                    return Err(ClientError::Usage(
                        "a client certificate needs an https URL".into(),
                    ));
                }
                None
            }
            other => {
                return Err(ClientError::Usage(format!(
                    "unsupported URL scheme '{other}' (use https, or http)"
                )))
            }
        };
        if opts.url.host_str().is_none() {
            return Err(ClientError::Usage("the URL has no host".into()));
        }
        Ok(Self {
            opts,
            tls,
            conn: None,
            authenticated: false,
        })
    }

    /// The URL called.
    pub fn url(&self) -> &url::Url {
        &self.opts.url
    }

    fn target(&self) -> String {
        format!(
            "{}:{}",
            self.opts.url.host_str().unwrap_or(""),
            self.opts.url.port_or_known_default().unwrap_or(443)
        )
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let target = self.target();
        let host = self.opts.url.host_str().unwrap_or("").to_string();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = self.opts.url.port_or_known_default().unwrap_or(443);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ClientError::Connect {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                    ClientError::Usage(format!("'{host}' is not a valid server name: {e}"))
                })?;
                let stream = connector.connect(name, tcp).await.map_err(|e| {
                    let reason = e
                        .get_ref()
                        .map(|inner| inner.to_string())
                        .unwrap_or_else(|| e.to_string());
                    ClientError::Tls {
                        target: target.clone(),
                        reason,
                    }
                })?;
                Box::new(stream)
            }
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Protocol(format!("HTTP/1.1 with {target}: {e}")))?;
        tokio::spawn(async move {
            // The connection ends when the server closes it or the sender is dropped.
            let _ = connection.await;
        });
        self.authenticated = false;
        Ok(sender)
    }

    /// Sends one SOAP 1.1 request for `op` with this operation element (see
    /// [`request::operation_element`]) and returns the decoded answer.
    pub async fn call(
        &mut self,
        op: Operation,
        operation_element: &str,
    ) -> Result<Answer, ClientError> {
        let body = self.call_raw(op, operation_element).await?;
        response::decode(op, &body)
    }

    /// Like [`SdkClient::call`], but returns the SOAP document (status 200, or 500 which carries
    /// faults) for the caller to decode with its own types.
    pub async fn call_raw(
        &mut self,
        op: Operation,
        operation_element: &str,
    ) -> Result<Bytes, ClientError> {
        let body = Bytes::from(request::envelope(operation_element));
        let timeout = self.opts.timeout;
        let reply = match tokio::time::timeout(timeout, self.exchange(op, body)).await {
            Ok(r) => r?,
            Err(_) => {
                self.conn = None;
                return Err(ClientError::Timeout(timeout));
            }
        };
        match reply.status {
            200 | 500 => Ok(reply.body),
            401 => Err(ClientError::Refused(format!(
                "HTTP 401: the server refused the credentials{}",
                match &self.opts.auth {
                    HttpAuth::None => {
                        " (none were sent: use --auth basic|ntlm or a client certificate)"
                            .to_string()
                    }
                    HttpAuth::Basic { user, .. } => format!(" of {user} (Basic)"),
                    HttpAuth::Ntlm(c) => format!(" of {} (NTLM)", c.user),
                }
            ))),
            403 => Err(ClientError::Refused(format!(
                "HTTP 403: the server knows the caller but does not allow it this operation ({}): {}",
                op.name(),
                text_snippet(&reply.body)
            ))),
            s => Err(ClientError::Protocol(format!(
                "HTTP {s}: {}",
                text_snippet(&reply.body)
            ))),
        }
    }

    async fn exchange(&mut self, op: Operation, body: Bytes) -> Result<Reply, ClientError> {
        // A kept-alive connection the server has closed meanwhile fails on send: retry once on a
        // fresh one (the request had not been processed).
        for attempt in 0..2 {
            let fresh = self.conn.as_ref().is_none_or(SendRequest::is_closed);
            if fresh {
                self.conn = Some(self.connect().await?);
            }
            match self.authenticated_send(op, body.clone()).await {
                Err(ClientError::Protocol(m)) if !fresh && attempt == 0 => {
                    tracing::debug!(reason = %m, "kept-alive connection lost; reconnecting");
                    self.conn = None;
                }
                other => return other,
            }
        }
        Err(ClientError::Protocol(
            "the connection was lost twice".into(),
        ))
    }

    async fn authenticated_send(
        &mut self,
        op: Operation,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        match &self.opts.auth {
            HttpAuth::None => self.send(op, body, None).await,
            HttpAuth::Basic { user, password } => {
                let token = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{}", password.as_str())),
                );
                let header = Zeroizing::new(format!("Basic {}", token.as_str()));
                self.send(op, body, Some(header.as_str())).await
            }
            HttpAuth::Ntlm(_) => {
                if self.authenticated {
                    let reply = self.send(op, body.clone(), None).await?;
                    if reply.status != 401 {
                        return Ok(reply);
                    }
                    // The server wants every request authenticated: do the handshake again.
                }
                self.ntlm_handshake(op, body).await
            }
        }
    }

    async fn ntlm_handshake(&mut self, op: Operation, body: Bytes) -> Result<Reply, ClientError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let negotiate = ntlm::negotiate();
        let first = format!("NTLM {}", b64.encode(&negotiate));
        let reply = self
            .send_with_headers(op, body.clone(), Some(&first))
            .await?;
        if reply.status != 401 {
            // Authentication not required after all (or a fault before it).
            return Ok(reply.into_reply());
        }
        let challenge = reply
            .authenticate
            .iter()
            .find_map(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("NTLM")
                    .then(|| token.trim().to_string())
            })
            .ok_or_else(|| {
                ClientError::Refused(format!(
                    "HTTP 401 without an NTLM challenge: the server offers {}",
                    if reply.authenticate.is_empty() {
                        "no authentication scheme".to_string()
                    } else {
                        reply
                            .authenticate
                            .iter()
                            .map(|v| v.split(' ').next().unwrap_or("").to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ))
            })?;
        let challenge = b64
            .decode(challenge)
            .map_err(|_| ClientError::Protocol("the NTLM challenge is not base64".into()))?;
        let HttpAuth::Ntlm(creds) = &self.opts.auth else {
            return Err(ClientError::Usage(
                "NTLM handshake without NTLM credentials".into(),
            ));
        };
        let auth = ntlm::authenticate(creds, &negotiate, &challenge)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let third = Zeroizing::new(format!("NTLM {}", b64.encode(&auth)));
        let reply = self.send(op, body, Some(third.as_str())).await?;
        self.authenticated = reply.status != 401;
        Ok(reply)
    }

    async fn send(
        &mut self,
        op: Operation,
        body: Bytes,
        authorization: Option<&str>,
    ) -> Result<Reply, ClientError> {
        self.send_with_headers(op, body, authorization)
            .await
            .map(FullReply::into_reply)
    }

    async fn send_with_headers(
        &mut self,
        op: Operation,
        body: Bytes,
        authorization: Option<&str>,
    ) -> Result<FullReply, ClientError> {
        let url = &self.opts.url;
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let mut req = http::Request::post(path)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{}\"", op.soap_action()))
            .header(
                http::header::USER_AGENT,
                concat!("pfgate-call/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = authorization {
            let mut value = http::HeaderValue::from_str(a).map_err(|_| {
                ClientError::Usage("the user name cannot be sent in a header".into())
            })?;
            value.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Protocol(format!("building the request: {e}")))?;
        let sender = self
            .conn
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("no connection".into()))?;
        sender
            .ready()
            .await
            .map_err(|e| ClientError::Protocol(format!("the connection closed: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(format!("sending the request: {e}")))?;
        let status = resp.status().as_u16();
        let authenticate = resp
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(FullReply {
            status,
            authenticate,
            body,
        })
    }
}

struct FullReply {
    status: u16,
    authenticate: Vec<String>,
    body: Bytes,
}

impl FullReply {
    fn into_reply(self) -> Reply {
        Reply {
            status: self.status,
            body: self.body,
        }
    }
}

/// The start of a non-SOAP body, printable.
fn text_snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.trim().is_empty() {
        "(empty body)".into()
    } else {
        s.trim().to_string()
    }
}
