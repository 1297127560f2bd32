//! The one accept loop: every port pfgate opens is served by [`Listeners::serve`].
//!
//! Each accepted socket costs one task, never a thread: a `PfAuthUser` call may wait a minute for a
//! person, and thousands may wait at once. Connections are capped by a semaphore taken *before*
//! `accept`, so excess callers queue in the kernel's backlog instead of costing memory. Every stage
//! has a deadline: the TLS handshake ([`Service::handshake_timeout`]) and the request headers
//! (hyper's header timeout, [`Http1::header_timeout`]); the service bounds the body.
//!
//! What a connection serves is a [`Service`]: per-connection state made when the connection is
//! accepted (the SDK's caller guard, the record proxy's upstream client), then one call per
//! request. A set of listeners stopped together ([`Listeners`]) shares one cap and one shutdown
//! signal: stopping asks every connection to finish its request in flight ([`Listeners::drained`]
//! waits for them), and dropping the set stops accepting at once, so an owner that goes away (an
//! OIDC provider replaced by a reload) takes its port with it.
//!
//! Shutdown and the idle rule call hyper's `graceful_shutdown` on the connection directly:
//! `hyper_util`'s `GracefulShutdown` wraps a connection so that only its own signal can reach it
//! (its `GracefulConnection` trait is sealed), and a connection here has two reasons to end
//! gracefully (the server stops; a guest sat idle).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ConnInfo;

/// An error that ends a connection (hyper closes the socket without answering).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the loop waits after a failed `accept` (typically `EMFILE`) before trying again,
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The HTTP/1.1 settings of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Http1 {
    /// The request headers must arrive within this.
    pub header_timeout: Duration,
    /// hyper's read buffer limit (the largest request head).
    pub max_buf_size: Option<usize>,
}

impl Http1 {
    /// Headers within `header_timeout`, hyper's default buffer.
    pub fn new(header_timeout: Duration) -> Self {
        Self {
            header_timeout,
            max_buf_size: None,
        }
    }

    /// The same, with a read buffer of at most `bytes`.
    pub fn max_buf_size(self, bytes: usize) -> Self {
        Self {
            max_buf_size: Some(bytes),
            ..self
        }
    }

    fn builder(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .keep_alive(true);
        if let Some(max) = self.max_buf_size {
            builder.max_buf_size(max);
        }
        builder
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The peer sent something TLS refuses (or closed the connection).
    Error,
    /// The handshake did not finish within [`Service::handshake_timeout`].
    Timeout,
}

/// What a listener serves. Implemented by each listener's owner; the loop does the rest.
pub trait Service: Send + Sync + 'static {
    /// What the service keeps for one connection (`()` when nothing).
    type Conn: Send + Sync + 'static;
    /// The response body.
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
    /// An error that closes the connection without an answer (`Infallible` when never).
    type Error: Into<BoxError> + 'static;

    /// The label of this listener in logs (`admin`, `record`, …).
    fn name(&self) -> &'static str;

    /// A connection was accepted: its state, or `None` to close it unserved.
    fn open(&self, info: &ConnInfo) -> Option<Self::Conn>;

    /// How long this connection's TLS handshake may take.
    fn handshake_timeout(&self, conn: &Self::Conn) -> Duration;

    /// A TLS handshake completed (the client certificate is known now).
    fn handshaken(&self, conn: &Self::Conn, info: &ConnInfo, tls: &rustls::ServerConnection) {
        let _ = (conn, info, tls);
    }

    /// A TLS handshake failed.
    fn handshake_failed(&self, info: &ConnInfo, why: HandshakeFailure) {
        tracing::debug!(listener = self.name(), peer = %info.peer, ?why, "TLS handshake failed");
    }

    /// The HTTP/1.1 settings of this connection.
    fn http1(&self, conn: &Self::Conn) -> Http1;

    /// Resolves when the connection should end though the server runs (a guest that sat idle),
    /// with how long it then gets to finish; never, by default.
    fn idle(&self, conn: &Self::Conn) -> impl Future<Output = Duration> + Send {
        let _ = conn;
        std::future::pending()
    }

    /// Answers one request.
    fn call(
        &self,
        conn: &Arc<Self::Conn>,
        info: ConnInfo,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = Result<http::Response<Self::Body>, Self::Error>> + Send + use<Self>;
}

/// Where a listener's TLS acceptor comes from.
#[derive(Clone)]
pub enum Tls {
    /// Plain HTTP.
    Plain,
    /// One acceptor for the listener's life.
    Fixed(TlsAcceptor),
    /// The acceptor in force when a connection arrives (a reload swaps certificates); `None`
    /// closes the connection.
    Current(Arc<dyn Fn() -> Option<TlsAcceptor> + Send + Sync>),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tls::Plain => "Plain",
            Tls::Fixed(_) => "Fixed",
            Tls::Current(_) => "Current",
        })
    }
}

impl Tls {
    /// `Fixed` with an acceptor, `Plain` without.
    pub fn from_acceptor(acceptor: Option<TlsAcceptor>) -> Self {
        acceptor.map_or(Tls::Plain, Tls::Fixed)
    }

    /// The acceptor for a new connection: `Ok(None)` for plain HTTP, `Err` when the connection
    /// cannot be served.
    fn acceptor(&self) -> Result<Option<TlsAcceptor>, ()> {
        match self {
            Tls::Plain => Ok(None),
            Tls::Fixed(a) => Ok(Some(a.clone())),
            Tls::Current(current) => current().map(Some).ok_or(()),
        }
    }
}

/// Listeners stopped together: one connection cap, one shutdown signal. Dropping it stops
/// accepting and asks open connections to finish.
pub struct Listeners {
    connections: Arc<Semaphore>,
    max: usize,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("max", &self.max)
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// At most `max_connections` connections at once over every listener of the set.
    pub fn new(max_connections: usize) -> Self {
        // The semaphore's own limit is far above any configurable cap.
        let max = max_connections.clamp(1, u32::MAX as usize);
        Self {
            connections: Arc::new(Semaphore::new(max)),
            max,
            shutdown: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// Accepts on `listener` and serves each connection with `service`, until the set is
    /// stopped or dropped.
    pub fn serve<S: Service>(&mut self, listener: TcpListener, tls: Tls, service: Arc<S>) {
        let task = accept_loop(
            listener,
            tls,
            service,
            self.connections.clone(),
            self.shutdown.subscribe(),
        );
        self.tasks.push(tokio::spawn(task));
    }

    /// Runs `task` alongside the listeners; it is aborted when they stop.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.connections.available_permits()
    }

    /// Stops accepting and asks every connection to end after its request in flight.
    pub fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Waits up to `within` for every connection to end; false when some are still open.
    pub async fn drained(&self, within: Duration) -> bool {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(within, self.connections.acquire_many(all))
            .await
            .is_ok()
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop<S: Service>(
    listener: TcpListener,
    tls: Tls,
    service: Arc<S>,
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
                tracing::warn!(listener = service.name(), error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(acceptor) = tls.acceptor() else {
            continue;
        };
        let info = ConnInfo {
            peer,
            local,
            tls: acceptor.is_some(),
        };
        let Some(conn) = service.open(&info) else {
            continue;
        };
        let (service, shutdown) = (service.clone(), shutdown.clone());
        // One task type per kind of connection: a task's memory is the size of its future, fixed
        // at compile time, and a plain connection's would otherwise be sized for the TLS one's
        // state. With thousands of callers waiting, each byte here is a byte per caller.
        match acceptor {
            Some(acceptor) => tokio::spawn(async move {
                serve_tls(stream, acceptor, info, service, Arc::new(conn), shutdown).await;
                drop(permit);
            }),
            None => tokio::spawn(async move {
                serve_http(stream, info, service, Arc::new(conn), shutdown).await;
                drop(permit);
            }),
        };
    }
}

async fn serve_tls<S: Service>(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    info: ConnInfo,
    service: Arc<S>,
    conn: Arc<S::Conn>,
    shutdown: watch::Receiver<bool>,
) {
    let deadline = service.handshake_timeout(&conn);
    // Boxed: the handshake's state is only needed until it completes, so it should not stay in
    // the connection's task for the connection's whole life.
    let handshake = Box::pin(acceptor.accept(stream));
    match tokio::time::timeout(deadline, handshake).await {
        Ok(Ok(tls_stream)) => {
            service.handshaken(&conn, &info, tls_stream.get_ref().1);
            // Boxed: the served connection, TLS state included, in an allocation of its own
            // size, rather than laid out in this task beside the handshake's states for as long
            // as the connection lives (issue #21: memory per waiting caller over TLS).
            Box::pin(serve_http(tls_stream, info, service, conn, shutdown)).await
        }
        Ok(Err(_)) => service.handshake_failed(&info, HandshakeFailure::Error),
        Err(_) => service.handshake_failed(&info, HandshakeFailure::Timeout),
    }
}

async fn serve_http<S: Service, I>(
    stream: I,
    info: ConnInfo,
    service: Arc<S>,
    conn: Arc<S::Conn>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = service.http1(&conn);
    let for_requests = (service.clone(), conn.clone());
    let http = service_fn(move |req| {
        let (service, conn) = &for_requests;
        service.call(conn, info, req)
    });
    let connection = builder
        .builder()
        .serve_connection(TokioIo::new(stream), http);
    tokio::pin!(connection);
    tokio::select! {
        res = connection.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(listener = service.name(), peer = %info.peer, error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
        within = service.idle(&conn) => {
            tracing::debug!(listener = service.name(), peer = %info.peer, "closing a connection that has not signed in and sat idle");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(within, connection).await;
        }
    }
}

/// Resolves once shutdown is signalled; never, if the listeners were dropped without it.
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

/// A service from a closure, for listeners without per-connection state: every request is
/// answered by `answer`, connections are plain HTTP/1.1 with `http1`'s settings and a TLS
/// handshake (if any) gets `handshake_timeout`.
pub struct FnService<F> {
    name: &'static str,
    http1: Http1,
    handshake_timeout: Duration,
    answer: F,
}

impl<F> FnService<F> {
    /// The service `answer` under `name`.
    pub fn new(name: &'static str, http1: Http1, handshake_timeout: Duration, answer: F) -> Self {
        Self {
            name,
            http1,
            handshake_timeout,
            answer,
        }
    }
}

impl<F, Fut, B> Service for FnService<F>
where
    F: Fn(ConnInfo, http::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    type Conn = ();
    type Body = B;
    type Error = Infallible;

    fn name(&self) -> &'static str {
        self.name
    }

    fn open(&self, _: &ConnInfo) -> Option<()> {
        Some(())
    }

    fn handshake_timeout(&self, _: &()) -> Duration {
        self.handshake_timeout
    }

    fn http1(&self, _: &()) -> Http1 {
        self.http1
    }

    fn call(
        &self,
        _: &Arc<()>,
        info: ConnInfo,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = Result<http::Response<B>, Infallible>> + Send + use<F, Fut, B> {
        let answer = (self.answer)(info, req);
        async move { Ok(answer.await) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn listening(delay: Duration) -> (Listeners, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = FnService::new(
            "test",
            Http1::new(Duration::from_secs(5)),
            Duration::from_secs(5),
            move |_: ConnInfo, _req| async move {
                tokio::time::sleep(delay).await;
                super::super::respond(http::StatusCode::OK, "text/plain", "answered\n")
            },
        );
        let mut listeners = Listeners::new(4);
        listeners.serve(listener, Tls::Plain, Arc::new(service));
        (listeners, addr)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let read = s.read_to_string(&mut out);
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the answer arrives within 5 s")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn serves_a_request_and_dropping_the_set_closes_the_port() {
        let (listeners, addr) = listening(Duration::ZERO).await;
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("answered\n"), "{answer}");
        drop(listeners);
        let closed = async {
            while TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(2), closed)
            .await
            .expect("the port is closed within 2 s of dropping its listeners");
    }

    #[tokio::test]
    async fn stopping_lets_the_request_in_flight_finish_and_then_drains() {
        let (mut listeners, addr) = listening(Duration::from_millis(300)).await;
        let request = tokio::spawn(get(addr));
        while listeners.open() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        listeners.stop();
        assert!(listeners.drained(Duration::from_secs(3)).await);
        let answer = request.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(listeners.open(), 0);
    }
}
