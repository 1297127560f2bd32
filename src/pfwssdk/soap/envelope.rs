//! Reading a SOAP request into a typed [`Request`] and writing a typed [`Response`] back.

use super::fault::{Fault, FaultCode};
use super::xml::{self, Element, XmlLimits};
use crate::pfwssdk::wire::clip;
use crate::pfwssdk::{Operation, Request, Response, NAMESPACE, SOAP_ACTION_PREFIX};

/// SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The SOAP version of a request, as its `Content-Type` announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    /// `text/xml` + `SOAPAction` header.
    V11,
    /// `application/soap+xml; action="…"`.
    V12,
}

impl SoapVersion {
    /// Envelope namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    /// Response `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// What the HTTP layer learned from the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The version.
    pub version: SoapVersion,
    /// The action (SOAPAction header for 1.1, `action` parameter for 1.2), unquoted; `None` if absent
    /// or empty.
    pub action: Option<String>,
}

/// Why the headers do not describe a SOAP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The content type is neither `text/xml` nor `application/soap+xml`.
    #[error("unsupported Content-Type '{0}': use text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2)")]
    UnsupportedMediaType(String),
    /// A charset other than UTF-8 was announced.
    #[error("unsupported charset '{0}': pfgate reads UTF-8 requests only")]
    UnsupportedCharset(String),
}

/// Reads version and action from `Content-Type` and `SOAPAction`.
pub fn read_head(
    content_type: Option<&str>,
    soap_action: Option<&str>,
) -> Result<RequestHead, HeadError> {
    let ct = content_type.unwrap_or("");
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    let mut action = None;
    for param in parts {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let key = k.trim();
        let value = unquote(v.trim());
        if key.eq_ignore_ascii_case("charset") {
            if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                return Err(HeadError::UnsupportedCharset(clip(value).into_owned()));
            }
        } else if key.eq_ignore_ascii_case("action") {
            action = Some(value.to_string());
        }
    }
    // Compared without case and without allocating a lowercase copy (this runs on every request).
    let version = if media.eq_ignore_ascii_case("text/xml") {
        SoapVersion::V11
    } else if media.eq_ignore_ascii_case("application/soap+xml") {
        SoapVersion::V12
    } else {
        return Err(HeadError::UnsupportedMediaType(clip(ct).into_owned()));
    };
    let action = match version {
        SoapVersion::V11 => soap_action.map(|a| unquote(a.trim()).to_string()),
        SoapVersion::V12 => action.or_else(|| soap_action.map(|a| unquote(a.trim()).to_string())),
    }
    .filter(|a| !a.is_empty());
    Ok(RequestHead { version, action })
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// A request decoded and dispatched.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedCall {
    /// SOAP version to answer in.
    pub version: SoapVersion,
    /// The typed request.
    pub request: Request,
}

/// Parses the envelope, checks it against the head, dispatches and decodes.
pub fn decode_request(
    head: &RequestHead,
    body: &[u8],
    limits: XmlLimits,
) -> Result<DecodedCall, Fault> {
    decode_envelope(head, &parse_envelope(body, limits)?)
}

/// Parses a request body into its XML tree, the first half of [`decode_request`]: a layer that
/// also reads the tree itself (the test double matches its rules on it) parses once and decodes
/// with [`decode_envelope`].
pub fn parse_envelope(body: &[u8], limits: XmlLimits) -> Result<Element<'_>, Fault> {
    xml::parse(body, limits)
        .map_err(|e| Fault::client(format!("Server was unable to read request. ---> {e}")))
}

/// Checks a parsed envelope against the head, dispatches and decodes (the second half of
/// [`decode_request`]).
pub fn decode_envelope(head: &RequestHead, root: &Element<'_>) -> Result<DecodedCall, Fault> {
    let env_ns = head.version.namespace();
    if root.name != "Envelope" || root.namespace.as_deref() != Some(env_ns) {
        let other = match head.version {
            SoapVersion::V11 => SOAP12_NS,
            SoapVersion::V12 => SOAP11_NS,
        };
        if root.name == "Envelope" && root.namespace.as_deref() == Some(other) {
            return Err(Fault {
                code: FaultCode::VersionMismatch,
                message: format!(
                    "The SOAP envelope namespace '{other}' does not match the Content-Type, which announced '{env_ns}'."
                ),
            });
        }
        return Err(Fault::client(format!(
            "The root element must be an Envelope in namespace '{env_ns}', found <{}> in namespace '{}'.",
            clip(&root.name),
            clip(root.namespace.as_deref().unwrap_or(""))
        )));
    }
    if let Some(header) = root.children_named(env_ns, "Header").next() {
        if let Some(h) = header.children.iter().find(|h| h.must_understand) {
            return Err(Fault {
                code: FaultCode::MustUnderstand,
                message: format!("SOAP header {} was not understood.", clip(&h.name)),
            });
        }
    }
    let mut bodies = root.children_named(env_ns, "Body");
    let body_el = bodies
        .next()
        .ok_or_else(|| Fault::client("The SOAP envelope has no Body."))?;
    if bodies.next().is_some() {
        return Err(Fault::client("The SOAP envelope has more than one Body."));
    }
    let op_el = match body_el.children.as_slice() {
        [one] => one,
        [] => return Err(Fault::client("The SOAP Body is empty: it must contain one operation element.")),
        _ => {
            return Err(Fault::client(
                "The SOAP Body contains more than one element: it must contain exactly one operation element.",
            ))
        }
    };
    let operation = dispatch(head.action.as_deref(), op_el)?;
    let request = Request::decode(operation, op_el).map_err(|e| {
        Fault::client(format!(
            "Server was unable to read request. ---> There is an error in XML document: {e}"
        ))
    })?;
    Ok(DecodedCall {
        version: head.version,
        request,
    })
}

fn dispatch(action: Option<&str>, op_el: &Element) -> Result<Operation, Fault> {
    if op_el.namespace.as_deref() != Some(NAMESPACE) {
        return Err(Fault::client(format!(
            "The operation element <{}> is in namespace '{}'; PfWsSdk operations are in '{NAMESPACE}'.",
            clip(&op_el.name),
            clip(op_el.namespace.as_deref().unwrap_or(""))
        )));
    }
    match action {
        Some(action) => {
            let op = action
                .strip_prefix(SOAP_ACTION_PREFIX)
                .and_then(Operation::from_name)
                .ok_or_else(|| {
                    Fault::client(format!(
                        "Server did not recognize the value of HTTP Header SOAPAction: {}.",
                        clip(action)
                    ))
                })?;
            if op.name() != op_el.name {
                return Err(Fault::client(format!(
                    "The SOAPAction '{}' does not match the body element <{}>.",
                    clip(action),
                    clip(&op_el.name)
                )));
            }
            Ok(op)
        }
        None => Operation::from_name(&op_el.name).ok_or_else(|| {
            Fault::client(format!(
                "Server did not recognize the request element <{}>.",
                clip(&op_el.name)
            ))
        }),
    }
}

/// Wraps a body fragment in the envelope ASMX writes.
pub fn wrap_body(version: SoapVersion, body: &str) -> String {
    let mut out = String::with_capacity(300 + body.len());
    open_envelope(&mut out, version);
    out.push_str(body);
    close_envelope(&mut out);
    out
}

fn open_envelope(out: &mut String, version: SoapVersion) {
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap=""#);
    out.push_str(version.namespace());
    out.push_str(r#"" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>"#);
}

fn close_envelope(out: &mut String) {
    out.push_str("</soap:Body></soap:Envelope>");
}

/// Encodes a response envelope, in one buffer (no second copy of the body).
pub fn encode_response(version: SoapVersion, response: &Response) -> String {
    let mut out = String::with_capacity(1024);
    open_envelope(&mut out, version);
    response.encode(&mut out);
    close_envelope(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_head_variants() {
        let h = read_head(Some("text/xml; charset=utf-8"), Some("\"http://x/y\"")).unwrap();
        assert_eq!(h.version, SoapVersion::V11);
        assert_eq!(h.action.as_deref(), Some("http://x/y"));
        let h = read_head(Some("text/xml"), Some("http://x/y")).unwrap();
        assert_eq!(h.action.as_deref(), Some("http://x/y"));
        let h = read_head(Some("text/xml"), Some("\"\"")).unwrap();
        assert_eq!(h.action, None);
        let h = read_head(
            Some("application/soap+xml; charset=utf-8; action=\"http://a/b\""),
            None,
        )
        .unwrap();
        assert_eq!(h.version, SoapVersion::V12);
        assert_eq!(h.action.as_deref(), Some("http://a/b"));
        assert!(matches!(
            read_head(Some("application/json"), None),
            Err(HeadError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            read_head(Some("text/xml; charset=utf-16"), None),
            Err(HeadError::UnsupportedCharset(_))
        ));
    }
}
