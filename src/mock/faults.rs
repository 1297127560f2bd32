//! Fault bodies: how the test double sends a response slowly, half of one, or a broken one.
//!
//! The gateway answers with a complete in-memory body (`Full<Bytes>`); the double needs bodies that
//! arrive over time or stop, so its connections use [`MockBody`], a boxed body. A dropped connection
//! *before* the headers is not a body at all: the service returns an error ([`Dropped`]) and hyper
//! closes the socket without writing anything.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};

/// The double's response body.
pub type MockBody = BoxBody<Bytes, std::io::Error>;

/// Returned by the double's service to make hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("pfgate mock: connection dropped on purpose (scripted fault)")]
pub struct Dropped;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> MockBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body fed by a task: it announces its exact length (so hyper sends `Content-Length`, as ASMX
/// does, and a client can tell a short body from a complete one).
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    len: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// `bytes`, `chunk` bytes at a time with `interval` between chunks.
pub fn trickle(bytes: Bytes, chunk: usize, interval: Duration) -> MockBody {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let len = bytes.len() as u64;
    tokio::spawn(async move {
        let mut rest = bytes;
        while !rest.is_empty() {
            let piece = rest.split_to(chunk.min(rest.len()));
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
            if !rest.is_empty() {
                tokio::time::sleep(interval).await;
            }
        }
    });
    ChannelBody { rx, len }.boxed()
}

/// The first half of `bytes` under a `Content-Length` announcing all of them, then an error, which
/// makes hyper close the connection: the client has the headers and an incomplete body.
pub fn drop_after_headers(bytes: Bytes) -> MockBody {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let len = bytes.len() as u64;
    tokio::spawn(async move {
        let half = bytes.slice(..bytes.len() / 2);
        if tx.send(Ok(half)).await.is_err() {
            return;
        }
        // Let hyper flush the headers and the half before the error closes the socket.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx
            .send(Err(std::io::Error::other(
                "pfgate mock: connection dropped after the headers (scripted fault)",
            )))
            .await;
    });
    ChannelBody { rx, len }.boxed()
}

/// `xml` made not well-formed: the body's end tag is misspelt, so a parser fails near the end of an
/// otherwise plausible envelope (the case a client's error handling most often misses).
pub fn malformed(xml: &str) -> String {
    for tag in ["</soap:Body>", "</soap12:Body>"] {
        if xml.contains(tag) {
            return xml.replacen(tag, "</soap:Bdy>", 1);
        }
    }
    format!("{xml}<unclosed>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_is_not_well_formed() {
        let ok = crate::pfwssdk::soap::envelope::wrap_body(
            crate::pfwssdk::soap::SoapVersion::V11,
            "<a>1</a>",
        );
        let bad = malformed(&ok);
        assert_ne!(ok, bad);
        assert!(crate::pfwssdk::soap::xml::parse(bad.as_bytes(), Default::default()).is_err());
        assert!(crate::pfwssdk::soap::xml::parse(ok.as_bytes(), Default::default()).is_ok());
    }
}
