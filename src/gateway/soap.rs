//! The stages of a SOAP POST: the head (`Content-Type`, `SOAPAction`), the body within its limits,
//! the decode, the operation policy, the engine and the encode. A layer in front of the gateway
//! (the test double) that has read and decoded the body itself enters at [`answer`].

use std::net::IpAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};

use super::front::header;
use super::reply::{fault_response, forbidden, plain, respond, too_large};
use super::{AppState, Handled, Refusal, Routed, SdkOutcome};
use crate::engine::CallContext;
use crate::gateway::caller;
use crate::pfwssdk::soap::envelope::{read_head, RequestHead, SoapVersion};
use crate::pfwssdk::soap::xml::XmlLimits;
use crate::pfwssdk::soap::{decode_request, encode_response, DecodedCall, Fault};
use crate::store::directory::Outcome;
use crate::telemetry::audit::AuditKind;

/// The whole POST up to the engine, as the gateway serves it: an answer already, or the call the
/// engine is to decide.
pub(crate) async fn post<B>(
    state: &AppState,
    req: http::Request<B>,
    caller: IpAddr,
    principal: &str,
) -> Result<EngineCall, Routed>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let head = head(req.headers())?;
    let body = read_body(state, req.into_body()).await?;
    let decoded = decode_request(&head, &body, xml_limits(state));
    // The body's bytes are a view of hyper's read buffer: released here, hyper can reuse that
    // buffer while this call waits (an authentication waits up to a minute) instead of allocating
    // a second one for its end-of-stream check — 8 KB less per waiting caller (BENCHMARKS.md).
    drop(body);
    prepare(state, caller, principal, head.version, decoded, None)
}

/// The SOAP head of a request; a 415 when the headers do not announce SOAP.
// The error is the answer itself, moved out once: boxing it would cost an allocation per
// refused request for nothing.
#[allow(clippy::result_large_err)]
pub fn head(headers: &http::HeaderMap) -> Result<RequestHead, Routed> {
    read_head(
        header(headers, CONTENT_TYPE.as_str()),
        header(headers, "soapaction"),
    )
    .map_err(|e| {
        let r = plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string());
        Routed::without_operation(r, Handled::UnsupportedMediaType)
    })
}

/// The XML limits of the settings in force.
pub fn xml_limits(state: &AppState) -> XmlLimits {
    let limits = &state.settings.limits;
    XmlLimits {
        max_depth: limits.max_xml_depth,
        max_elements: limits.max_xml_elements,
        ..XmlLimits::DEFAULT
    }
}

/// Reads the body within `limits.max_body_bytes` and `limits.body_timeout`.
async fn read_body<B>(state: &AppState, body: B) -> Result<Bytes, Routed>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &state.settings.limits;
    let limited = Limited::new(body, limits.max_body_bytes as usize);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Err(_) => {
            let text = "The request body was not received in time.";
            let r = plain(StatusCode::REQUEST_TIMEOUT, text);
            Err(Routed::without_operation(r, Handled::BodyTimeout))
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large(limits.max_body_bytes));
            }
            let r = plain(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
            );
            Err(Routed::without_operation(r, Handled::BodyError))
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The stages after the decode: a fault for an envelope that did not decode, the operation
/// policy, the engine, the encode. `scripted` is an outcome decided in advance for the provider
/// call the request causes (the test double's matched rule; `None` on the gateway).
pub async fn answer(
    state: &AppState,
    caller: IpAddr,
    principal: &str,
    version: SoapVersion,
    decoded: Result<DecodedCall, Fault>,
    scripted: Option<Outcome>,
) -> Routed {
    match prepare(state, caller, principal, version, decoded, scripted) {
        Ok(call) => call.run(&state.engine).await,
        Err(routed) => routed,
    }
}

/// A SOAP call that passed every stage before the engine: all a caller keeps while the engine
/// decides. An authentication waits up to a minute on the provider, so with thousands waiting
/// each byte here counts; the request's headers, its body and every earlier stage's state are
/// gone by then (issue #21, goal 4: BENCHMARKS.md).
#[derive(Debug)]
pub struct EngineCall {
    ctx: CallContext,
    request: crate::pfwssdk::Request,
    version: SoapVersion,
    operation: &'static str,
}

impl EngineCall {
    /// The engine's decision, encoded.
    ///
    /// Not an `async fn`: one would keep this call (the request's parameters) beside the engine's
    /// boxed future for the whole wait; this hands both to the engine first and keeps the box.
    pub fn run(
        self,
        engine: &crate::engine::Engine,
    ) -> impl std::future::Future<Output = Routed> + Send + '_ {
        let EngineCall {
            ctx,
            request,
            version,
            operation,
        } = self;
        let decided = engine.handle(ctx, request);
        async move {
            let response = decided.await;
            let xml = encode_response(version, &response);
            Routed {
                response: respond(StatusCode::OK, version.content_type(), xml),
                operation: Some(operation),
                handled: Handled::Answered(SdkOutcome::of(&response)),
            }
        }
    }
}

/// The stages between the decode and the engine: a fault for an envelope that did not decode,
/// then the operation policy. `Ok` is the call for the engine.
// The error is the answer itself, moved out once: boxing it would cost an allocation per
// refused request for nothing.
#[allow(clippy::result_large_err)]
fn prepare(
    state: &AppState,
    caller: IpAddr,
    principal: &str,
    version: SoapVersion,
    decoded: Result<DecodedCall, Fault>,
    scripted: Option<Outcome>,
) -> Result<EngineCall, Routed> {
    let call = match decoded {
        Ok(c) => c,
        Err(fault) => {
            tracing::warn!(target: "pfgate::soap", caller = %caller, fault = %fault.message, "request refused");
            let answer = fault_response(version, &fault);
            return Err(Routed::without_operation(answer, Handled::Fault));
        }
    };
    let operation = call.request.operation().name();
    if let Err(refusal) = authorise(state, principal, &call) {
        caller::audit_refusal(
            AuditKind::CallerForbidden,
            principal,
            operation,
            &refusal.to_string(),
        );
        return Err(Routed {
            response: forbidden(),
            operation: Some(operation),
            handled: Handled::Forbidden,
        });
    }
    Ok(EngineCall {
        ctx: CallContext {
            caller_ip: caller,
            caller: principal.to_string(),
            scripted,
        },
        request: call.request,
        version: call.version,
        operation,
    })
}

/// The operation policy: may `principal` call this operation? Counted in the refusal metric.
fn authorise(state: &AppState, principal: &str, call: &DecodedCall) -> Result<(), Refusal> {
    let operation = call.request.operation();
    let checked = state.settings.auth.policy.check(principal, operation);
    checked.map_err(|r| {
        let refusal = Refusal::Operation(r);
        crate::telemetry::metrics::global().refusal(refusal.metric_label());
        refusal
    })
}
