//! The admin listener: `/healthz`, `/readyz` and `/metrics` on an address of their own.
//!
//! Separate from the SDK listeners so that monitoring never needs SDK credentials, never shows up
//! in the access log as SDK traffic, and can stay on the loopback interface while the SDK faces the
//! network. Plain HTTP: on loopback nothing crosses a wire. Bound elsewhere, the configuration
//! insists on a bearer token (`[admin] token_file`), because the readiness report names providers
//! and routes and the metrics show traffic — no user data, but a map of the service.
//!
//! - `/healthz`: 200 while the process serves (never needs the token: it says nothing).
//! - `/readyz`: 200 or 503 with a JSON report — the store, and each route with its providers; not
//!   ready when the store does not answer or a route has no healthy provider. Stricter than the
//!   SDK listener's `/readyz` (store only), which is the one for load-balancer rotation: taking
//!   every instance out because a shared provider is down would turn a degraded service into none.
//! - `/metrics`: [`crate::telemetry::metrics`] in the Prometheus text format 0.0.4.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;
use tokio::net::TcpListener;

use super::{Live, StartError};
use crate::config::AdminSettings;
use crate::engine::Engine;
use crate::gateway::caller::ConnAuth;
use crate::gateway::{AppState, HttpResponse};
use crate::net::listener::{Http1, Listeners, Service, Tls};
use crate::net::{respond, ConnInfo};
use crate::providers::router::{
    fail_open_warning, FailMode, ProviderHealth, RouteHealth, HEALTH_CHECK_TIMEOUT,
};

/// Connections the admin listener serves at once: scrapers and probes, not traffic.
const MAX_CONNECTIONS: usize = 16;
/// Request headers must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin listener's guest rules (as the SDK listeners', [`crate::gateway::guard::Connections`]): a
/// connection that has not shown the token is closed after this long idle, one address holds at
/// most [`MAX_GUESTS_PER_ADDRESS`] of them, and a quarter of the places are kept for connections
/// that have; past those, a connection is served one request and closed. Without a configured
/// token, every connection is a guest. Sixteen held keep-alive connections made `/metrics` time
/// out (issue #17, item 7).
fn guest_limits() -> crate::config::Limits {
    crate::config::Limits {
        max_connections: MAX_CONNECTIONS,
        reserved_connections_percent: 25,
        max_unauthenticated_per_address: MAX_GUESTS_PER_ADDRESS,
        unauthenticated_idle: Duration::from_secs(5),
        ..crate::config::Limits::default()
    }
}

/// Guest connections one address may hold on the admin listener.
const MAX_GUESTS_PER_ADDRESS: usize = 8;

/// Binds the admin listener. A configured address that cannot be bound stops the start; the
/// default one only warns (another instance on the host may hold it) and runs without.
pub async fn bind(settings: &AdminSettings) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) if settings.required => Err(StartError::Bind { addr, source }),
        Err(e) => {
            tracing::warn!(
                target: "pfgate::admin",
                addr = %addr,
                error = %e,
                "admin listener (default address) not started; set [admin] listen to choose another"
            );
            Ok(None)
        }
    }
}

/// Serves admin connections until the returned set is dropped. Each request reads the state in
/// force (a reload swaps it: the new token, engine and routes answer from the next request on).
pub fn serve(listener: TcpListener, live: Arc<Live>) -> Listeners {
    let mut listeners = Listeners::new(MAX_CONNECTIONS);
    let service = Admin {
        live,
        guests: Arc::new(crate::gateway::guard::Connections::default()),
        limits: guest_limits(),
    };
    listeners.serve(listener, Tls::Plain, Arc::new(service));
    listeners
}

/// The admin listener's service.
struct Admin {
    live: Arc<Live>,
    /// Connections that have not shown the token.
    guests: Arc<crate::gateway::guard::Connections>,
    limits: crate::config::Limits,
}

impl Service for Admin {
    type Conn = ConnAuth;
    type Body = Full<Bytes>;
    type Error = Infallible;

    fn name(&self) -> &'static str {
        "admin"
    }

    fn open(&self, info: &ConnInfo) -> Option<ConnAuth> {
        let (admission, slot) = self.guests.admit(info.peer.ip(), &self.limits);
        Some(ConnAuth::guest(
            slot,
            admission == crate::gateway::guard::Admission::Probation,
        ))
    }

    fn handshake_timeout(&self, _: &ConnAuth) -> Duration {
        // Plain HTTP only: no handshake.
        HEADER_TIMEOUT
    }

    fn http1(&self, _: &ConnAuth) -> Http1 {
        Http1::new(HEADER_TIMEOUT)
    }

    fn idle(&self, auth: &ConnAuth) -> impl Future<Output = Duration> + Send {
        let idle = self.limits.unauthenticated_idle;
        async move {
            super::idle_guest(auth, idle).await;
            idle
        }
    }

    fn call(
        &self,
        auth: &Arc<ConnAuth>,
        _: ConnInfo,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = Result<HttpResponse, Infallible>> + Send + use<> {
        let (state, auth) = (self.live.state(), Arc::clone(auth));
        async move { Ok(guarded(&state, &auth, req).await) }
    }
}

/// One admin request on a connection counted as a guest until it shows the configured token.
async fn guarded<B>(state: &AppState, auth: &ConnAuth, req: http::Request<B>) -> HttpResponse {
    auth.request_started();
    let token = state.settings.admin.token.as_deref();
    if token.is_some() && authorized(token, &req) {
        auth.mark_signed_in();
    }
    let mut r = handle(state, req).await;
    auth.request_ended();
    if auth.must_close() {
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    respond(status, "text/plain; charset=utf-8", body)
}

/// True when the request carries the configured bearer token (or none is configured).
/// Compared in constant time.
fn authorized<B>(token: Option<&str>, req: &http::Request<B>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = token else {
        return true;
    };
    let Some(sent) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
        })
    else {
        return false;
    };
    bool::from(sent.as_bytes().ct_eq(token.as_bytes()))
}

async fn handle<B>(state: &AppState, req: http::Request<B>) -> HttpResponse {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Use GET.\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if !matches!(path, "/readyz" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "Not found. The admin listener serves /healthz, /readyz and /metrics.\n",
        );
    }
    if !authorized(state.settings.admin.token.as_deref(), &req) {
        let mut r = text(StatusCode::UNAUTHORIZED, "A bearer token is required.\n");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pfgate-admin\""),
        );
        return r;
    }
    if path == "/metrics" {
        return respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::telemetry::metrics::global().render(),
        );
    }
    let report = readiness(&state.engine).await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => respond(status, "application/json", body),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "report not serialisable\n",
        ),
    }
}

/// The store part of a readiness report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// The store answered its health check.
    pub healthy: bool,
    /// Why not (the store's own error text; never a credential), when not.
    pub error: Option<String>,
}

/// What `/readyz` on the admin listener answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// The store answers and every route has a healthy provider.
    pub ready: bool,
    /// The store.
    pub store: StoreHealth,
    /// Every route with its providers (one route, `every authentication`, when no providers are
    /// configured and the users file's scripted outcomes answer).
    pub routes: Vec<RouteHealth>,
    /// One line per reason the service is not ready; empty when ready.
    pub not_ready: Vec<String>,
    /// One line per configured risk that does not stop readiness: each `fail_mode = "safe"`
    /// route, which lets authentications through when its providers fail.
    pub warnings: Vec<String>,
}

/// Checks the store and every route's providers (each provider's own check at most once, each
/// within [`HEALTH_CHECK_TIMEOUT`]).
pub async fn readiness(engine: &Engine) -> Readiness {
    let store = match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, engine.store().health()).await {
        Ok(Ok(())) => StoreHealth {
            healthy: true,
            error: None,
        },
        Ok(Err(e)) => StoreHealth {
            healthy: false,
            error: Some(e.to_string()),
        },
        Err(_) => StoreHealth {
            healthy: false,
            error: Some(format!(
                "no answer within {} s",
                HEALTH_CHECK_TIMEOUT.as_secs()
            )),
        },
    };
    let provider = engine.provider();
    let routes = match provider.route_health().await {
        Some(routes) => routes,
        None => {
            let reachable = tokio::time::timeout(HEALTH_CHECK_TIMEOUT, provider.healthy())
                .await
                .unwrap_or(false);
            vec![RouteHealth {
                index: 0,
                description: "every authentication".into(),
                fail_mode: FailMode::Secure,
                healthy: reachable,
                providers: vec![ProviderHealth {
                    name: provider.name().to_string(),
                    breaker: "none",
                    reachable: Some(reachable),
                    healthy: reachable,
                }],
            }]
        }
    };
    let mut not_ready = Vec::new();
    if let Some(e) = &store.error {
        not_ready.push(format!("store: {e}"));
    }
    for r in routes.iter().filter(|r| !r.healthy) {
        let why: Vec<String> = r
            .providers
            .iter()
            .map(|p| match (p.breaker, p.reachable) {
                ("open", None) => format!("{}: breaker open", p.name),
                (_, Some(false)) => format!("{}: health check failed", p.name),
                _ => format!("{}: unhealthy", p.name),
            })
            .collect();
        not_ready.push(format!(
            "route {} ({}): no healthy provider ({})",
            r.index,
            r.description,
            why.join("; ")
        ));
    }
    let warnings = routes
        .iter()
        .filter(|r| r.fail_mode == FailMode::Safe)
        .map(|r| fail_open_warning(r.index, &r.description))
        .collect();
    Readiness {
        ready: not_ready.is_empty(),
        store,
        routes,
        not_ready,
        warnings,
    }
}
