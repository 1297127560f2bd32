//! The SDK as a service: one HTTP request to the `PfWsSdk.asmx` endpoint, in small typed stages —
//!
//! 1. [`front::preflight`]: probes, other paths and bodies announced over the limit, answered
//!    before anyone signs in;
//! 2. [`caller::identify`] (who called) and [`front::admit`] (the allow-list);
//! 3. the ASMX pages for a `GET` ([`crate::pfwssdk::help::asmx_get`]), or for a `POST` the SOAP
//!    stages of [`soap`]: head, body, decode, operation policy, engine, encode.
//!
//! Every stage that ends a request returns a [`Routed`]: the answer, the operation and a typed
//! [`Handled`] that the access log and metrics read. A [`Layer`] wraps the whole service (the test
//! double, `pfgate mock`) and re-uses the stages; this module knows nothing of what it wraps.

pub mod caller;
mod front;
pub mod guard;
mod outcome;
mod reply;
pub mod soap;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW};
use http::{Method, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::Full;
use hyper::body::Incoming;

use crate::config::Settings;
use crate::engine::Engine;
use crate::telemetry::access_log;
use caller::ConnAuth;

pub use front::{admit, audit_refusal_summary, caller_ip, is_sdk_path, preflight};
pub use outcome::{Handled, Refusal, Routed, SdkOutcome};

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// Validated settings.
    pub settings: Settings,
    /// NTLM acceptor parts, when Windows authentication is configured.
    pub ntlm: Option<caller::NtlmRuntime>,
    /// The server's guards against unauthenticated load (kept across reloads).
    pub guard: Arc<guard::Guard>,
}

pub use crate::net::ConnInfo;

/// The gateway's answer: always a complete body.
pub type HttpResponse = http::Response<Full<Bytes>>;

/// The body of a [`Layer`]'s answer: streamed, so a layer can trickle or cut it.
pub type LayerBody = BoxBody<Bytes, std::io::Error>;

/// What a [`Layer`]'s answer future resolves to; an `Err` makes the connection close without an
/// answer.
pub type LayerResult = Result<http::Response<LayerBody>, NoAnswer>;

/// A layer's decision to close the connection without answering (the test double's
/// `drop_before_headers` fault); the text is for the connection's debug log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(pub &'static str);

/// A service wrapped around the gateway's: when a server is started with one, its connections
/// call it instead of [`handle`], with the same state; it calls the gateway's stages itself.
/// The test double (`pfgate mock`) is the one layer, so the server never names it.
pub trait Layer: Send + Sync + std::fmt::Debug + 'static {
    /// Answers one request.
    fn call(
        &self,
        state: Arc<AppState>,
        conn: ConnInfo,
        auth: Arc<ConnAuth>,
        req: http::Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = LayerResult> + Send>>;
}

/// Handles one request. Never fails: every problem becomes an HTTP answer.
///
/// Not an `async fn`, and in two boxed steps, because this future is what hyper keeps for each
/// request in flight, and an authentication waits up to a minute for a person: with thousands
/// waiting, each byte of it is a byte per caller (issue #21, goal 4; BENCHMARKS.md). The stages
/// before the engine (the request moved through each, the body, the decode) run in a box of their
/// own, freed once they end; the engine's call is another box ([`soap::EngineCall::run`]); what
/// stays inline is the little the access log and metrics need.
pub fn handle(
    state: Arc<AppState>,
    conn: ConnInfo,
    auth: Arc<ConnAuth>,
    req: http::Request<Incoming>,
) -> impl Future<Output = Result<HttpResponse, Infallible>> + Send {
    let started = Instant::now();
    auth.request_started();
    let caller = caller_ip(&state, &conn, req.headers());
    let method = req.method().clone();
    // Kept before `route` consumes the request; only for the access log, so only when it is on.
    let path = access_log::enabled().then(|| req.uri().path().to_owned());
    let stages = Box::pin(route_owned(state.clone(), conn, auth.clone(), req, caller));
    async move {
        // Not `Step::finish`: an `async fn` taking the step would hold the call's request beside
        // the engine's box for the whole wait; `EngineCall::run` hands it over first.
        let routed = match stages.await {
            Step::Done(routed) => routed,
            Step::Engine(call, admitted) => admitted.finish(call.run(&state.engine).await),
        };
        auth.request_ended();
        Ok(logged(routed, &auth, started, method, path, caller))
    }
}

/// [`route`] on owned handles, so that its future can be boxed apart from [`handle`]'s.
async fn route_owned(
    state: Arc<AppState>,
    conn: ConnInfo,
    auth: Arc<ConnAuth>,
    req: http::Request<Incoming>,
    caller: IpAddr,
) -> Step {
    route(&state, &conn, &auth, req, caller).await
}

/// The end of a request: the connection's closing header when it must close, the metrics and the
/// access log line.
fn logged(
    routed: Routed,
    auth: &ConnAuth,
    started: Instant,
    method: Method,
    path: Option<String>,
    caller: IpAddr,
) -> HttpResponse {
    let Routed {
        mut response,
        operation,
        handled,
    } = routed;
    if auth.must_close() {
        response = reply::closing(response);
    }
    let status = response.status().as_u16();
    crate::telemetry::metrics::global().request(
        handled.operation_label(operation),
        handled.metric_outcome(),
        started.elapsed(),
    );
    if let Some(path) = path {
        access_log::record(&access_log::Entry {
            method: method.as_str(),
            path: &path,
            caller,
            operation,
            status,
            outcome: &handled.text(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
    response
}

/// Where the stages before the engine left a request.
// Returned once by the stages and taken apart at once: boxing the large variant would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// Answered already.
    Done(Routed),
    /// For the engine to decide, with what the sign-in owes the answer.
    Engine(soap::EngineCall, front::Admitted),
}

impl Step {
    /// The answer: the engine's, when the request got that far.
    pub async fn finish(self, state: &AppState) -> Routed {
        match self {
            Step::Done(routed) => routed,
            Step::Engine(call, admitted) => admitted.finish(call.run(&state.engine).await),
        }
    }
}

/// The gateway's stages for one request, in order: preflight, identify, admit, then the pages or
/// the SOAP stages up to the engine.
async fn route<B>(
    state: &AppState,
    conn: &ConnInfo,
    auth: &ConnAuth,
    req: http::Request<B>,
    caller: IpAddr,
) -> Step
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let req = match preflight(state, req).await {
        Ok(req) => req,
        Err(routed) => return Step::Done(routed),
    };
    let identified = caller::identify(state, conn, caller, req.headers(), auth).await;
    stages_identified(state, conn, req, caller, identified).await
}

/// The stages after identification, for a request that passed [`preflight`]: a layer that
/// identified the caller itself (the test double journals who called) enters here, so the caller
/// is identified once.
pub async fn route_identified<B>(
    state: &AppState,
    conn: &ConnInfo,
    req: http::Request<B>,
    caller: IpAddr,
    identified: Result<caller::Identified, caller::Unauthenticated>,
) -> Routed
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let step = stages_identified(state, conn, req, caller, identified).await;
    step.finish(state).await
}

/// [`route_identified`]'s stages up to the engine.
async fn stages_identified<B>(
    state: &AppState,
    conn: &ConnInfo,
    req: http::Request<B>,
    caller: IpAddr,
    identified: Result<caller::Identified, caller::Unauthenticated>,
) -> Step
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let admitted = match admit(state, conn, caller, identified) {
        Ok(a) => a,
        Err(turned) => return Step::Done(turned.dispose(req.into_body(), &state.settings).await),
    };
    let routed = match *req.method() {
        Method::GET | Method::HEAD => pages(state, conn, &req),
        Method::POST => match soap::post(state, req, caller, &admitted.principal).await {
            Ok(call) => return Step::Engine(call, admitted),
            Err(routed) => routed,
        },
        _ => method_not_allowed(),
    };
    Step::Done(admitted.finish(routed))
}

/// A `GET` (or `HEAD`: hyper sends the headers and omits the body) of the endpoint: the SOAP
/// layer's ASMX pages, addressed as the caller addressed this server.
fn pages<B>(state: &AppState, conn: &ConnInfo, req: &http::Request<B>) -> Routed {
    let location = front::public_location(state, conn, req.headers(), req.uri().path());
    let page = crate::pfwssdk::help::asmx_get(&location, req.uri().query().unwrap_or(""));
    Routed::without_operation(
        reply::respond(StatusCode::OK, page.content_type, page.body),
        Handled::Page(page.page),
    )
}

/// Neither GET, HEAD nor POST.
pub fn method_not_allowed() -> Routed {
    let mut r = reply::plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "Use GET (WSDL, help page) or POST (SOAP).",
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
    Routed::without_operation(r, Handled::MethodNotAllowed)
}
