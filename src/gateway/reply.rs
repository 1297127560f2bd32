//! The few shapes of answer the gateway writes itself (everything else is an SOAP envelope).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::Full;

use super::{Handled, HttpResponse, Routed};
use crate::pfwssdk::soap::envelope::SoapVersion;
use crate::pfwssdk::soap::Fault;

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn plain(status: StatusCode, text: &str) -> HttpResponse {
    respond(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

pub(crate) fn fault_response(version: SoapVersion, fault: &Fault) -> HttpResponse {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        version.content_type(),
        fault.to_envelope(version),
    )
}

/// The 403 of a caller the policy refuses; the same text whatever the reason.
pub(crate) fn forbidden() -> HttpResponse {
    plain(StatusCode::FORBIDDEN, "403 - Forbidden: Access is denied.")
}

pub(crate) fn too_large(max: u64) -> Routed {
    Routed::without_operation(
        closing(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("The request body is larger than the limit of {max} bytes."),
        )),
        Handled::TooLarge,
    )
}

/// Marks a response as the last on its connection: the request body was not (fully) read, so the
/// connection cannot be reused, and the client should learn that now rather than by a reset.
pub(crate) fn closing(mut r: HttpResponse) -> HttpResponse {
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}
