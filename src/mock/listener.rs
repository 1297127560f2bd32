//! A small HTTP/1.1 listener for the double's side services — `pfgate record`'s proxy and the admin
//! API on an address of its own — which need none of the gateway's caller authentication, limits or
//! engine: accept, TLS (with a deadline), one handler per connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::faults::MockBody;

/// A response in the making.
pub type Answer = Pin<Box<dyn Future<Output = http::Response<MockBody>> + Send>>;

/// What serves the requests of one connection.
pub type Handler = Arc<dyn Fn(http::Request<Incoming>) -> Answer + Send + Sync>;

/// Makes the handler of each new connection (`None` closes it: the handler could not be made).
pub type PerConnection = Arc<dyn Fn() -> Option<Handler> + Send + Sync>;

/// Serves `listener` until the returned task is aborted.
pub fn spawn(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    what: &'static str,
    per_connection: PerConnection,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(handler) = per_connection() else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30));
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => {
                                let _ = builder.serve_connection(TokioIo::new(s), service).await;
                            }
                            _ => tracing::debug!(%peer, "{what}: TLS handshake failed"),
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    })
}
