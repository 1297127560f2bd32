//! The double's side listeners — `pfgate record`'s proxy and the admin API on an address of its
//! own — which need none of the gateway's caller authentication, limits or engine: one handler per
//! connection, served by [`crate::net::listener`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::faults::MockBody;
use crate::net::listener::{Http1, Listeners, Service, Tls};
use crate::net::ConnInfo;

/// A response in the making.
pub type Answer = Pin<Box<dyn Future<Output = http::Response<MockBody>> + Send>>;

/// What serves the requests of one connection.
pub type Handler = Arc<dyn Fn(http::Request<Incoming>) -> Answer + Send + Sync>;

/// Makes the handler of each new connection (`None` closes it: the handler could not be made).
pub type PerConnection = Arc<dyn Fn() -> Option<Handler> + Send + Sync>;

/// Connections a side listener serves at once (a CI job's handful; more wait in the backlog).
const MAX_CONNECTIONS: usize = 1024;
/// The TLS handshake's deadline.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The request headers' deadline.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until the returned set is dropped.
pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    what: &'static str,
    per_connection: PerConnection,
) -> Listeners {
    let mut listeners = Listeners::new(MAX_CONNECTIONS);
    let service = Side {
        what,
        per_connection,
    };
    listeners.serve(listener, Tls::from_acceptor(tls), Arc::new(service));
    listeners
}

/// A side listener's service: the connection's handler answers its requests.
struct Side {
    what: &'static str,
    per_connection: PerConnection,
}

impl Service for Side {
    type Conn = Handler;
    type Body = MockBody;
    type Error = Infallible;

    fn name(&self) -> &'static str {
        self.what
    }

    fn open(&self, _: &ConnInfo) -> Option<Handler> {
        (self.per_connection)()
    }

    fn handshake_timeout(&self, _: &Handler) -> Duration {
        HANDSHAKE_TIMEOUT
    }

    fn http1(&self, _: &Handler) -> Http1 {
        Http1::new(HEADER_TIMEOUT)
    }

    fn call(
        &self,
        handler: &Arc<Handler>,
        _: ConnInfo,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = Result<http::Response<MockBody>, Infallible>> + Send + use<> {
        let answer = handler(req);
        async move { Ok(answer.await) }
    }
}
