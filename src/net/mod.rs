//! The network edge every listener shares: binding, the accept loop, connection caps, TLS with a
//! handshake deadline, HTTP/1.1 connections and their graceful end ([`listener`]); the TLS
//! identities they present ([`tls`]); the trusted-proxy networks ([`IpNet`]).
//!
//! It knows nothing of SOAP, callers or the test double: what a connection serves is a
//! [`listener::Service`] given by the listener's owner (the SDK gateway, the admin listener, the
//! double's side listeners, the OIDC step-up pages). So a fix to accepting, capping or draining
//! connections is made once, for every port pfgate opens.

pub mod devcert;
mod ipnet;
pub mod listener;
pub mod tls;

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use http_body_util::Full;

pub use ipnet::IpNet;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Remote address.
    pub peer: SocketAddr,
    /// Local address.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// A response with a complete body, its status and its `Content-Type`: the one shape every
/// listener's fixed answers take (the caller adds any other header).
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
