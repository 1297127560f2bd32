//! The SDK server: its listeners (served by [`crate::net::listener`]), the state a reload swaps,
//! the per-connection caller guard, and shutdown.
//!
//! Connections share one cap (`limits.max_connections`) over the TLS and plain listeners; every
//! stage has a deadline: the TLS handshake, the request headers (hyper's header timeout), and the
//! body ([`http`]).

pub mod admin;
pub mod app;
pub mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{Settings, TlsSource};
use crate::engine::Engine;
use crate::gateway::{self as http, caller, guard, AppState};
use crate::net::listener::{BoxError, HandshakeFailure, Http1, Listeners, Service, Tls};
use crate::net::tls::{self, TlsError, TlsIdentity};
use crate::net::ConnInfo;
use crate::telemetry::access_log;

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
    Engine(#[from] app::BuildError),
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
    /// The SDK listeners (one cap over both) and the refusal-summary task.
    listeners: Listeners,
    /// The admin listener's own set (its own small cap), when it runs.
    admin: Option<Listeners>,
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
        let engine = app::rebuild_engine(&settings, &old.settings, &old.engine).await?;
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
    Engine(#[from] app::BuildError),
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
    pub async fn shutdown(mut self, grace: Duration) {
        // The admin listener stops accepting with the others; its connections are not waited for.
        drop(self.admin.take());
        self.listeners.stop();
        if !self.listeners.drained(grace).await {
            tracing::warn!(
                connections = self.listeners.open(),
                grace_secs = grace.as_secs(),
                "shutdown grace period ended: answering the authentications still waiting as timed out"
            );
            self.live.state().engine.abandon_waits();
            if !self.listeners.drained(ANSWER_WINDOW).await {
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
    let engine = app::build_engine(&settings).await?;
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
    let mut listeners = Listeners::new(settings.limits.max_connections);
    let state = Arc::new(AppState {
        engine,
        settings,
        ntlm,
        guard: guard.clone(),
    });
    listeners.spawn(refusal_summaries(guard));
    let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
    let live = Arc::new(Live::new(state, acceptor, layer));
    let gateway = Arc::new(Gateway { live: live.clone() });
    if let Some(listener) = tls_listener {
        let current = live.clone();
        let tls = Tls::Current(Arc::new(move || current.acceptor()));
        listeners.serve(listener, tls, gateway.clone());
    }
    if let Some(listener) = plain_listener {
        listeners.serve(listener, Tls::Plain, gateway);
    }
    let admin = admin_listener.map(|listener| admin::serve(listener, live.clone()));
    Ok(RunningServer {
        tls_addr,
        plain_addr,
        tls,
        admin_addr,
        listeners,
        admin,
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
fn admit(state: &AppState, peer: SocketAddr) -> caller::ConnAuth {
    if crate::config::is_trusted(&state.settings.trusted_proxies, peer.ip()) {
        return caller::ConnAuth::default();
    }
    let (admission, slot) = state
        .guard
        .connections
        .admit(peer.ip(), &state.settings.limits);
    let probation = admission == guard::Admission::Probation;
    if probation {
        tracing::debug!(peer = %peer, "connection admitted on probation: it must sign in on its first request");
    }
    caller::ConnAuth::guest(slot, probation)
}

/// The SDK listeners' service: the gateway, or the layer wrapped around it (`pfgate mock`).
/// The state is read per request, so a keep-alive connection (MIM keeps one open for hours)
/// follows a reload from its next request on.
struct Gateway {
    live: Arc<Live>,
}

/// A gateway response, or the double's (issue #6: its faults stream a body or drop the
/// connection).
type GatewayBody =
    http_body_util::Either<http_body_util::Full<bytes::Bytes>, crate::gateway::LayerBody>;

impl Service for Gateway {
    /// Who the connection has signed in as, and its place under the guest rules.
    type Conn = caller::ConnAuth;
    type Body = GatewayBody;
    type Error = BoxError;

    fn name(&self) -> &'static str {
        "sdk"
    }

    fn open(&self, info: &ConnInfo) -> Option<caller::ConnAuth> {
        Some(admit(&self.live.state(), info.peer))
    }

    /// A connection that has not signed in gets no longer for its handshake than it would get to
    /// sit idle.
    fn handshake_timeout(&self, auth: &caller::ConnAuth) -> Duration {
        let state = self.live.state();
        let limits = &state.settings.limits;
        if auth.is_guest() {
            limits
                .tls_handshake_timeout
                .min(limits.unauthenticated_idle)
        } else {
            limits.tls_handshake_timeout
        }
    }

    /// A verified client certificate signs the connection in as its mapped principal.
    fn handshaken(&self, auth: &caller::ConnAuth, info: &ConnInfo, tls: &rustls::ServerConnection) {
        let Some(leaf) = tls.peer_certificates().and_then(|c| c.first()) else {
            return;
        };
        let state = self.live.state();
        match crate::auth::client_cert::map(&state.settings.auth.certificate_map, leaf) {
            Some(p) => auth.set_principal(&p),
            None => tracing::warn!(
                target: "pfgate::auth",
                peer = %info.peer,
                sha256 = %tls::fingerprint(leaf),
                "client certificate verified but mapped to no principal"
            ),
        }
    }

    fn handshake_failed(&self, info: &ConnInfo, why: HandshakeFailure) {
        match why {
            HandshakeFailure::Error => {
                crate::telemetry::metrics::global()
                    .tls_failure(crate::telemetry::metrics::TlsFailure::Error);
                tracing::debug!(target: "pfgate::tls", peer = %info.peer, "TLS handshake failed")
            }
            HandshakeFailure::Timeout => {
                crate::telemetry::metrics::global()
                    .tls_failure(crate::telemetry::metrics::TlsFailure::Timeout);
                tracing::debug!(target: "pfgate::tls", peer = %info.peer, "TLS handshake timed out")
            }
        }
    }

    fn http1(&self, _: &caller::ConnAuth) -> Http1 {
        Http1::new(self.live.state().settings.limits.header_timeout).max_buf_size(64 * 1024)
    }

    /// A connection that has not signed in is closed once it has had no request in progress for
    /// `limits.unauthenticated_idle_secs`: otherwise idle keep-alive connections, polling
    /// `/healthz` now and then, could hold every place under the cap (issue #17, item 7).
    fn idle(&self, auth: &caller::ConnAuth) -> impl Future<Output = Duration> + Send {
        let idle = self.live.state().settings.limits.unauthenticated_idle;
        async move {
            idle_guest(auth, idle).await;
            idle
        }
    }

    fn call(
        &self,
        auth: &Arc<caller::ConnAuth>,
        info: ConnInfo,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = Result<hyper::Response<GatewayBody>, BoxError>> + Send + use<> {
        let state = self.live.state();
        let auth = auth.clone();
        // Chosen before the answer's future is built, so that future does not hold the request
        // (hyper keeps it for each request in flight: with thousands of callers waiting, its size
        // is memory per caller).
        match &self.live.layer {
            // A layer around the gateway (the test double) answers in its place, with the same
            // state; the server does not know what it is. Counted as the gateway's requests
            // are, so the idle rule sees them.
            Some(layer) => {
                auth.request_started();
                Answer::Layer {
                    answer: layer.call(state, info, auth.clone(), req),
                    auth,
                }
            }
            None => Answer::Gateway {
                answer: http::handle(state, info, auth, req),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Who answers a request: a layer (its boxed future, and the connection's sign-in state to
    /// count the request's end on) or the gateway. A future of its own rather than an `async`
    /// block that awaits one of the two: such a block would store the chosen future twice (as the
    /// value it captured and as the one it awaits), and hyper keeps this future for each request
    /// in flight.
    #[project = AnswerProj]
    enum Answer<L, G> {
        Layer { answer: L, auth: Arc<caller::ConnAuth> },
        Gateway { #[pin] answer: G },
    }
}

impl<L, G> Future for Answer<L, G>
where
    L: Future<Output = crate::gateway::LayerResult> + Unpin,
    G: Future<Output = Result<crate::gateway::HttpResponse, std::convert::Infallible>>,
{
    type Output = Result<hyper::Response<GatewayBody>, BoxError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        match self.project() {
            AnswerProj::Layer { answer, auth } => match std::pin::Pin::new(answer).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(answer) => {
                    auth.request_ended();
                    Poll::Ready(
                        answer
                            .map(|r| r.map(http_body_util::Either::Right))
                            .map_err(BoxError::from),
                    )
                }
            },
            AnswerProj::Gateway { answer } => match answer.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(r)) => Poll::Ready(Ok(r.map(http_body_util::Either::Left))),
                Poll::Ready(Err(never)) => match never {},
            },
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
