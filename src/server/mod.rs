//! Listeners, TLS, HTTP/1.1 connections, limits and shutdown.
//!
//! Each accepted socket costs one task, never a thread: a `PfAuthUser` call may wait a minute for a
//! person, and thousands may wait at once. Connections are capped by a semaphore taken *before*
//! `accept`, so excess callers queue in the kernel's backlog instead of costing memory. Every stage
//! has a deadline: the TLS handshake, the request headers (hyper's header timeout), and the body.

pub mod access_log;
pub mod caller;
pub mod http;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Settings, TlsSource};
use crate::engine::Engine;
use http::{AppState, ConnInfo};
use tls::{TlsError, TlsIdentity};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS set-up failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An NTLM account's secret could not be read.
    #[error("auth.ntlm: {0}")]
    Ntlm(String),
    /// The engine (store, users file, provider) could not be built.
    #[error(transparent)]
    Engine(#[from] crate::app::BuildError),
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// Bound TLS address.
    pub tls_addr: Option<SocketAddr>,
    /// Bound plain-HTTP address.
    pub plain_addr: Option<SocketAddr>,
    /// The TLS identity in use.
    pub tls: Option<TlsIdentity>,
    shutdown: watch::Sender<bool>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// The SDK URL on the TLS listener (`https://127.0.0.1:PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx`).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr.map(|a| format!("https://{a}{DEFAULT_PATH}"))
    }

    /// The SDK URL on the plain listener.
    pub fn plain_url(&self) -> Option<String> {
        self.plain_addr.map(|a| format!("http://{a}{DEFAULT_PATH}"))
    }

    /// Stops accepting, asks every connection to finish its in-flight request, and waits up to
    /// `grace` for them.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        let max = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(grace, self.connections.acquire_many(max)).await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period ended with connections still open");
        }
        access_log::flush();
    }
}

/// The default SDK path of an MFA Server installation.
pub const DEFAULT_PATH: &str = "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";

/// Builds the engine and starts the configured listeners.
pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    let engine = crate::app::build_engine(&settings).await?;
    start_with(settings, engine).await
}

/// Starts the listeners with an engine built by the caller (tests, embedding).
pub async fn start_with(settings: Settings, engine: Engine) -> Result<RunningServer, StartError> {
    start_serving(settings, engine, None).await
}

/// Starts the listeners; with `mock`, this server is the test double (`pfgate mock`, issue #6),
/// whose connections get the double's own service.
pub async fn start_serving(
    settings: Settings,
    engine: Engine,
    mock: Option<Arc<crate::mock::MockState>>,
) -> Result<RunningServer, StartError> {
    let client = settings
        .auth
        .client_ca_file
        .as_ref()
        .map(|ca| tls::ClientAuth {
            ca_file: ca.clone(),
            required: settings.auth.client_cert_required,
        });
    let tls = match (&settings.tls_listen, &settings.tls) {
        (None, _) => None,
        (Some(_), TlsSource::SelfSigned) => Some(tls::self_signed(client.as_ref())?),
        (Some(_), TlsSource::Files { cert, key }) => {
            Some(tls::from_files(cert, key, client.as_ref())?)
        }
    };
    let max_connections = settings.limits.max_connections;
    let connections = Arc::new(Semaphore::new(max_connections));
    let (shutdown, shutdown_rx) = watch::channel(false);

    let mut tasks = Vec::new();
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let tls_listener = match settings.tls_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let plain_listener = match settings.plain_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (tls_addr, plain_addr) = (local(&tls_listener), local(&plain_listener));

    let ntlm = match &settings.auth.ntlm {
        Some(n) => Some(caller::NtlmRuntime::new(n).map_err(StartError::Ntlm)?),
        None => None,
    };
    let state = Arc::new(AppState {
        engine,
        settings,
        ntlm,
        mock,
    });
    if let (Some(listener), Some(identity)) = (tls_listener, &tls) {
        let acceptor = TlsAcceptor::from(identity.config.clone());
        tasks.push(tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            state.clone(),
            connections.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(listener) = plain_listener {
        tasks.push(tokio::spawn(accept_loop(
            listener,
            None,
            state.clone(),
            connections.clone(),
            shutdown_rx.clone(),
        )));
    }
    Ok(RunningServer {
        tls_addr,
        plain_addr,
        tls,
        shutdown,
        connections,
        max_connections,
        tasks,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = ConnInfo {
                peer,
                local,
                tls: tls.is_some(),
            };
            serve_connection(stream, tls, conn, state, shutdown).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    conn: ConnInfo,
    state: Arc<AppState>,
    shutdown: watch::Receiver<bool>,
) {
    let limits = state.settings.limits.clone();
    match tls {
        Some(acceptor) => {
            match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(tls_stream)) => {
                    let auth = Arc::new(caller::ConnAuth::default());
                    // A verified client certificate signs the connection in as its mapped principal.
                    if let Some(leaf) = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                    {
                        match crate::auth::client_cert::map(
                            &state.settings.auth.certificate_map,
                            leaf,
                        ) {
                            Some(p) => auth.set_principal(&p),
                            None => tracing::warn!(
                                target: "pfgate::auth",
                                peer = %conn.peer,
                                sha256 = %tls::fingerprint(leaf),
                                "client certificate verified but mapped to no principal"
                            ),
                        }
                    }
                    serve_http(tls_stream, conn, state, auth, shutdown).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "pfgate::tls", peer = %conn.peer, error = %e, "TLS handshake failed")
                }
                Err(_) => {
                    tracing::debug!(target: "pfgate::tls", peer = %conn.peer, "TLS handshake timed out")
                }
            }
        }
        None => {
            let auth = Arc::new(caller::ConnAuth::default());
            serve_http(stream, conn, state, auth, shutdown).await
        }
    }
}

async fn serve_http<S>(
    stream: S,
    conn: ConnInfo,
    state: Arc<AppState>,
    auth: Arc<caller::ConnAuth>,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = state.settings.limits.clone();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    // Hook (issue #6): the test double's connections get its own service (its faults stream a body
    // or drop the connection); decided once per connection, so the gateway path is unchanged.
    if let Some(mock) = state.mock.clone() {
        let service = service_fn(move |req| {
            crate::mock::serve::handle(mock.clone(), state.clone(), conn, auth.clone(), req)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        return drive(connection, conn, shutdown).await;
    }
    let service = service_fn(move |req| http::handle(state.clone(), conn, auth.clone(), req));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    drive(connection, conn, shutdown).await
}

/// Runs one HTTP/1.1 connection until it ends or shutdown asks it to finish its request.
async fn drive<I, S, B>(
    connection: hyper::server::conn::http1::Connection<I, S>,
    conn: ConnInfo,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    tokio::select! {
        res = connection.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once shutdown is signalled; never, if the server handle was dropped without it.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
