//! Listeners, TLS, HTTP/1.1 connections, limits and shutdown.
//!
//! Each accepted socket costs one task, never a thread: a `PfAuthUser` call may wait a minute for a
//! person, and thousands may wait at once. Connections are capped by a semaphore taken *before*
//! `accept`, so excess callers queue in the kernel's backlog instead of costing memory. Every stage
//! has a deadline: the TLS handshake, the request headers (hyper's header timeout), and the body.

pub mod access_log;
pub mod admin;
pub mod caller;
pub mod guard;
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
    /// Bound admin address (`/healthz`, `/readyz`, `/metrics`), if the admin listener runs.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    connections: Arc<Semaphore>,
    max_connections: usize,
    tasks: Vec<JoinHandle<()>>,
    live: Arc<Live>,
}

/// What every new connection and every request reads: the state in force and the TLS acceptor.
/// A reload replaces both whole ([`RunningServer::reload`]); a request that already holds the old
/// state finishes with it, and an established TLS connection keeps the session it has.
pub struct Live {
    state: std::sync::RwLock<Arc<AppState>>,
    acceptor: std::sync::RwLock<Option<TlsAcceptor>>,
    /// One reload at a time (a `SIGHUP` arriving with a file change builds once after the other).
    reloading: tokio::sync::Mutex<()>,
    /// The service wrapped around the gateway's, when there is one (`pfgate mock`); kept across
    /// reloads.
    layer: Option<Arc<dyn crate::gateway::Layer>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    fn new(
        state: Arc<AppState>,
        acceptor: Option<TlsAcceptor>,
        layer: Option<Arc<dyn crate::gateway::Layer>>,
    ) -> Self {
        Self {
            state: std::sync::RwLock::new(state),
            acceptor: std::sync::RwLock::new(acceptor),
            reloading: tokio::sync::Mutex::new(()),
            layer,
        }
    }

    /// The state in force now.
    pub fn state(&self) -> Arc<AppState> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        match self.acceptor.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in `settings`, already validated: builds everything new first (TLS identity, NTLM
    /// accounts, users, providers) and only then replaces the state in one step, so a reload that
    /// fails at any point leaves the running configuration untouched. Returns the new TLS identity,
    /// if any. Established connections keep working; their next request sees the new state.
    pub async fn reload(&self, settings: Settings) -> Result<Option<TlsIdentity>, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.state();
        let changed = restart_only_changes(&old.settings, &settings);
        if !changed.is_empty() {
            return Err(ReloadError::RestartRequired(changed.join(", ")));
        }
        // The Kerberos acceptor is built once per process (start-up); the new settings, equal by
        // configuration, take over the slot that holds it.
        #[cfg(feature = "kerberos")]
        let settings = {
            let mut settings = settings;
            settings.auth.kerberos = old.settings.auth.kerberos.clone();
            settings
        };
        let tls = match &settings.tls_listen {
            None => None,
            Some(_) => Some(tls_identity(&settings)?),
        };
        let ntlm = match &settings.auth.ntlm {
            Some(n) => Some(caller::NtlmRuntime::new(n).map_err(ReloadError::Ntlm)?),
            None => None,
        };
        let engine = crate::app::rebuild_engine(&settings, &old.settings, &old.engine).await?;
        let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
        let state = Arc::new(AppState {
            engine,
            settings,
            ntlm,
            guard: old.guard.clone(),
        });
        self.swap(state, acceptor);
        Ok(tls)
    }

    fn swap(&self, state: Arc<AppState>, acceptor: Option<TlsAcceptor>) {
        // The acceptor first: a connection accepted between the two writes then meets the new
        // certificate and, on its first request, the new state.
        match self.acceptor.write() {
            Ok(mut a) => *a = acceptor,
            Err(poisoned) => *poisoned.into_inner() = acceptor,
        }
        match self.state.write() {
            Ok(mut s) => *s = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
    }
}

/// Why a reload was refused (the configuration in force stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Keys that only take effect at start-up changed.
    #[error("{0}: changing this needs a restart")]
    RestartRequired(String),
    /// The new TLS certificate, key or client CA could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An NTLM account's secret could not be read.
    #[error("auth.ntlm: {0}")]
    Ntlm(String),
    /// The users file, a provider or primary authentication could not be built.
    #[error(transparent)]
    Engine(#[from] crate::app::BuildError),
}

/// The keys a running server cannot change: listeners, the store, the audit trail, the connection
/// cap (a semaphore sized at start), the password threads, the Kerberos acceptor (process-wide)
/// and demo mode.
fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.tls_listen != new.tls_listen {
        changed.push("server.listen");
    }
    if old.plain_listen != new.plain_listen {
        changed.push("server.plain_listen");
    }
    if old.tls_listen.is_some()
        && (old.tls == TlsSource::SelfSigned) != (new.tls == TlsSource::SelfSigned)
    {
        changed.push("server.tls_cert");
    }
    if old.store != new.store {
        changed.push("store");
    }
    if old.audit != new.audit {
        changed.push("audit");
    }
    if old.limits.max_connections != new.limits.max_connections {
        changed.push("limits.max_connections");
    }
    // The password threads and their queues are started once, with the server.
    if old.limits.password_check_threads != new.limits.password_check_threads {
        changed.push("limits.password_check_threads");
    }
    if old.limits.password_check_queue != new.limits.password_check_queue {
        changed.push("limits.password_check_queue");
    }
    #[cfg(feature = "kerberos")]
    if old.auth.kerberos != new.auth.kerberos {
        changed.push("auth.kerberos");
    }
    if old.demo != new.demo {
        changed.push("demo");
    }
    // The admin listener is bound once; its token is read per request, so it reloads.
    if old.admin.listen != new.admin.listen {
        changed.push("admin.listen");
    }
    changed
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
    ///
    /// Authentications still waiting when `grace` ends are answered with CallResult 11 "Call Timed
    /// Out" (the answer a caller gets at its deadline, so MIM shows its usual "try again"), and
    /// their connections are given [`ANSWER_WINDOW`] more to carry that answer out. A caller is
    /// never left with a connection cut in the middle of a request unless it does not read.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
        let max = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(grace, self.connections.acquire_many(max)).await;
        if drained.is_err() {
            let open = self.max_connections - self.connections.available_permits();
            tracing::warn!(
                connections = open,
                grace_secs = grace.as_secs(),
                "shutdown grace period ended: answering the authentications still waiting as timed out"
            );
            self.live.state().engine.abandon_waits();
            let answered =
                tokio::time::timeout(ANSWER_WINDOW, self.connections.acquire_many(max)).await;
            if answered.is_err() {
                tracing::warn!("connections still open after the answer window; closing them");
            }
        }
        flush_refusal_summaries(&self.live.state().guard, true);
        access_log::flush();
    }

    /// The state in force (settings, engine).
    pub fn state(&self) -> Arc<AppState> {
        self.live.state()
    }

    /// The handle a reload goes through ([`Live::reload`]).
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }
}

/// How long connections get to carry out the "timed out" answers given when a stop's grace period
/// has ended.
pub const ANSWER_WINDOW: Duration = Duration::from_secs(3);

/// The TLS identity the settings describe (with the client-certificate verifier when configured).
fn tls_identity(settings: &Settings) -> Result<TlsIdentity, TlsError> {
    let client = settings
        .auth
        .client_ca_file
        .as_ref()
        .map(|ca| tls::ClientAuth {
            ca_file: ca.clone(),
            required: settings.auth.client_cert_required,
        });
    match &settings.tls {
        TlsSource::SelfSigned => tls::self_signed(client.as_ref()),
        TlsSource::Files { cert, key } => tls::from_files(cert, key, client.as_ref()),
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

/// Starts the listeners; with a `layer`, its service wraps the gateway's on every connection (the
/// test double, `pfgate mock`, issue #6).
pub async fn start_serving(
    settings: Settings,
    engine: Engine,
    layer: Option<Arc<dyn crate::gateway::Layer>>,
) -> Result<RunningServer, StartError> {
    let tls = match &settings.tls_listen {
        None => None,
        Some(_) => Some(tls_identity(&settings)?),
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
    let admin_listener = admin::bind(&settings.admin).await?;
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (tls_addr, plain_addr) = (local(&tls_listener), local(&plain_listener));
    let admin_addr = local(&admin_listener);

    let ntlm = match &settings.auth.ntlm {
        Some(n) => Some(caller::NtlmRuntime::new(n).map_err(StartError::Ntlm)?),
        None => None,
    };
    let guard = Arc::new(guard::Guard::new(&settings.limits));
    let state = Arc::new(AppState {
        engine,
        settings,
        ntlm,
        guard: guard.clone(),
    });
    tasks.push(tokio::spawn(refusal_summaries(guard)));
    let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
    let live = Arc::new(Live::new(state, acceptor, layer));
    if let Some(listener) = tls_listener {
        tasks.push(tokio::spawn(accept_loop(
            listener,
            true,
            live.clone(),
            connections.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(listener) = plain_listener {
        tasks.push(tokio::spawn(accept_loop(
            listener,
            false,
            live.clone(),
            connections.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(listener) = admin_listener {
        tasks.push(tokio::spawn(admin::serve(listener, live.clone())));
    }
    Ok(RunningServer {
        tls_addr,
        plain_addr,
        tls,
        admin_addr,
        shutdown,
        connections,
        max_connections,
        tasks,
        live,
    })
}

/// Writes the summary records of refusals not audited one by one, once each source's minute ends.
async fn refusal_summaries(guard: Arc<guard::Guard>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        flush_refusal_summaries(&guard, false);
    }
}

fn flush_refusal_summaries(guard: &guard::Guard, all: bool) {
    for (source, count) in guard.refusals.due(all) {
        http::audit_refusal_summary(source, count);
    }
}

/// The per-connection state of a new connection from `peer`: a trusted proxy's is not bounded
/// beyond the cap; anyone else's counts as a guest until it signs in ([`guard::Connections`]).
fn admit(state: &AppState, peer: SocketAddr) -> Arc<caller::ConnAuth> {
    if crate::config::is_trusted(&state.settings.trusted_proxies, peer.ip()) {
        return Arc::new(caller::ConnAuth::default());
    }
    let (admission, slot) = state
        .guard
        .connections
        .admit(peer.ip(), &state.settings.limits);
    let probation = admission == guard::Admission::Probation;
    if probation {
        tracing::debug!(peer = %peer, "connection admitted on probation: it must sign in on its first request");
    }
    Arc::new(caller::ConnAuth::guest(slot, probation))
}

async fn accept_loop(
    listener: TcpListener,
    is_tls: bool,
    live: Arc<Live>,
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
        let live = live.clone();
        let tls = if is_tls {
            match live.acceptor() {
                Some(a) => Some(a),
                None => continue,
            }
        } else {
            None
        };
        let shutdown = shutdown.clone();
        let conn = ConnInfo {
            peer,
            local,
            tls: tls.is_some(),
        };
        let auth = admit(&live.state(), peer);
        // One task type per kind of connection: a task's memory is the size of its future, fixed
        // at compile time, and a plain connection's would otherwise be sized for the TLS one's
        // state. With thousands of callers waiting, each byte here is a byte per caller.
        match tls {
            Some(acceptor) => tokio::spawn(async move {
                serve_tls(stream, acceptor, conn, live, auth, shutdown).await;
                drop(permit);
            }),
            None => tokio::spawn(async move {
                serve_http(stream, conn, live, auth, shutdown).await;
                drop(permit);
            }),
        };
    }
}

async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    conn: ConnInfo,
    live: Arc<Live>,
    auth: Arc<caller::ConnAuth>,
    shutdown: watch::Receiver<bool>,
) {
    let state = live.state();
    let limits = &state.settings.limits;
    // A connection that has not signed in gets no longer for its handshake than it would get to
    // sit idle.
    let deadline = if auth.is_guest() {
        limits
            .tls_handshake_timeout
            .min(limits.unauthenticated_idle)
    } else {
        limits.tls_handshake_timeout
    };
    // Boxed: the handshake's state is only needed until it completes, so it should not stay in
    // the connection's task for the connection's whole life.
    let handshake = Box::pin(acceptor.accept(stream));
    match tokio::time::timeout(deadline, handshake).await {
        Ok(Ok(tls_stream)) => {
            // A verified client certificate signs the connection in as its mapped principal.
            if let Some(leaf) = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                match crate::auth::client_cert::map(&state.settings.auth.certificate_map, leaf) {
                    Some(p) => auth.set_principal(&p),
                    None => tracing::warn!(
                        target: "pfgate::auth",
                        peer = %conn.peer,
                        sha256 = %tls::fingerprint(leaf),
                        "client certificate verified but mapped to no principal"
                    ),
                }
            }
            drop(state);
            serve_http(tls_stream, conn, live, auth, shutdown).await
        }
        Ok(Err(e)) => {
            crate::metrics::global().tls_failure(crate::metrics::TlsFailure::Error);
            tracing::debug!(target: "pfgate::tls", peer = %conn.peer, error = %e, "TLS handshake failed")
        }
        Err(_) => {
            crate::metrics::global().tls_failure(crate::metrics::TlsFailure::Timeout);
            tracing::debug!(target: "pfgate::tls", peer = %conn.peer, "TLS handshake timed out")
        }
    }
}

async fn serve_http<S>(
    stream: S,
    conn: ConnInfo,
    live: Arc<Live>,
    auth: Arc<caller::ConnAuth>,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let state = live.state();
    let limits = state.settings.limits.clone();
    let idle = limits.unauthenticated_idle;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    // A layer's connections get its service (the test double's faults stream a body or drop the
    // connection); decided once per connection, so the gateway path is unchanged.
    let watched = auth.clone();
    if let Some(layer) = live.layer.clone() {
        drop(state);
        let service = service_fn(move |req| {
            let (layer, state, auth) = (layer.clone(), live.state(), auth.clone());
            async move {
                // Counted as the gateway's requests are, so the idle rule sees them.
                auth.request_started();
                let answer = layer.call(state, conn, auth.clone(), req).await;
                auth.request_ended();
                answer
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        // Boxed so that the gateway's connections are not sized for the test double's service.
        return Box::pin(drive(connection, conn, watched, idle, shutdown)).await;
    }
    drop(state);
    // The state is read per request, so a keep-alive connection (MIM keeps one open for hours)
    // follows a reload from its next request on.
    let service = service_fn(move |req| http::handle(live.state(), conn, auth.clone(), req));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    drive(connection, conn, watched, idle, shutdown).await
}

/// Runs one HTTP/1.1 connection until it ends or shutdown asks it to finish its request.
///
/// A connection that has not signed in is closed once it has had no request in progress for
/// `idle` (`limits.unauthenticated_idle_secs`): otherwise idle keep-alive connections, polling
/// `/healthz` now and then, could hold every place under the cap (issue #17, item 7).
pub(crate) async fn drive<I, S, B>(
    connection: hyper::server::conn::http1::Connection<I, S>,
    conn: ConnInfo,
    auth: Arc<caller::ConnAuth>,
    idle: Duration,
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
        _ = idle_guest(&auth, idle) => {
            tracing::debug!(peer = %conn.peer, "closing a connection that has not signed in and sat idle");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(idle, connection).await;
        }
    }
}

/// Resolves once the connection is a guest (not signed in) that has had no request in progress
/// for `idle`; never, once it has signed in.
async fn idle_guest(auth: &caller::ConnAuth, idle: Duration) {
    loop {
        if !auth.is_guest() {
            std::future::pending::<()>().await;
        }
        let wait = match auth.idle_for() {
            Some(for_) if for_ >= idle => return,
            Some(for_) => idle - for_,
            None => idle,
        };
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
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
