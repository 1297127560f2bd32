//! Reading what the server answered: a SOAP fault, or the operation's response decoded by the
//! contract's types into an ordered tree that prints as text or JSON.
//!
//! Unknown elements (a newer server's additions) are kept and printed as text rather than dropped,
//! so an administrator comparing the old server with pfgate sees everything either sends.

use crate::pfwssdk::soap::xml::{parse, Element, XmlLimits};
use crate::pfwssdk::wire::{child, DecodeError, Wire};
use crate::pfwssdk::{complex_type_specs, Operation, NAMESPACE};

use super::ClientError;

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Limits for responses: a `FindUsers` page of thousands of rows is legitimate, an endless one is
/// not.
pub const RESPONSE_LIMITS: XmlLimits = XmlLimits {
    max_depth: 64,
    max_elements: 500_000,
    max_attributes: 500_000,
    ..XmlLimits::DEFAULT
};

/// A decoded value, in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent or `xsi:nil`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, as sent.
    Number(String),
    /// Text.
    Text(String),
    /// A complex value: fields in order.
    Object(Vec<(String, Value)>),
    /// An array.
    Array(Vec<Value>),
}

/// A SOAP fault as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    /// `soap:Client`, `soap:Server`, … (1.2: the `Value`).
    pub code: String,
    /// The fault string / reason.
    pub message: String,
}

impl std::fmt::Display for SoapFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SOAP fault {}: {}", self.code, self.message)
    }
}

/// The body of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `{Op}Response`, decoded: `{Op}Result` first, then the out-parameters.
    Response(Vec<(String, Value)>),
    /// A SOAP fault.
    Fault(SoapFault),
}

/// The `soap:Body`'s first child, from a complete response document.
pub fn body_element<'e, 'x>(doc: &'e Element<'x>) -> Result<&'e Element<'x>, ClientError> {
    let ns = doc.namespace.as_deref().unwrap_or("");
    if doc.name != "Envelope" || (ns != SOAP11 && ns != SOAP12) {
        return Err(ClientError::Protocol(format!(
            "the answer is not a SOAP envelope (root element <{}>)",
            doc.name
        )));
    }
    let body = doc
        .children
        .iter()
        .find(|c| c.name == "Body" && c.namespace.as_deref() == Some(ns))
        .ok_or_else(|| ClientError::Protocol("the SOAP envelope has no Body".into()))?;
    body.children
        .first()
        .ok_or_else(|| ClientError::Protocol("the SOAP Body is empty".into()))
}

/// The fault, when `el` (a Body's child) is one.
pub fn fault_of(el: &Element) -> Option<SoapFault> {
    if el.name != "Fault" {
        return None;
    }
    let find = |name: &str| el.children.iter().find(|c| c.name == name);
    // 1.1: faultcode/faultstring; 1.2: Code/Value, Reason/Text.
    let code = find("faultcode")
        .map(|c| c.text.trim().to_string())
        .or_else(|| {
            find("Code").and_then(|c| {
                c.children
                    .iter()
                    .find(|v| v.name == "Value")
                    .map(|v| v.text.trim().to_string())
            })
        })
        .unwrap_or_default();
    let message = find("faultstring")
        .map(|c| c.text.to_string())
        .or_else(|| find("Reason").and_then(|r| r.children.first().map(|t| t.text.to_string())))
        .unwrap_or_default();
    Some(SoapFault { code, message })
}

/// Decodes a response document for `op`.
pub fn decode(op: Operation, bytes: &[u8]) -> Result<Answer, ClientError> {
    let doc = parse(bytes, RESPONSE_LIMITS)
        .map_err(|e| ClientError::Protocol(format!("the answer is not well-formed XML: {e}")))?;
    let el = body_element(&doc)?;
    if let Some(f) = fault_of(el) {
        return Ok(Answer::Fault(f));
    }
    let expected = format!("{}Response", op.name());
    if !el.is(NAMESPACE, &expected) {
        return Err(ClientError::Protocol(format!(
            "expected <{expected}> in the PfWsSdk namespace, got <{}>",
            el.name
        )));
    }
    let spec = op.spec();
    let mut typed: Vec<(String, String)> = vec![(format!("{}Result", op.name()), spec.result_type)];
    typed.extend(spec.outputs.iter().map(|(n, t)| (n.to_string(), t.clone())));
    let mut out = Vec::new();
    for (name, ty) in &typed {
        if let Some(c) = el.children.iter().find(|c| c.name == *name) {
            out.push((name.clone(), value_of(c, ty)));
        }
    }
    for c in &el.children {
        if !typed.iter().any(|(n, _)| *n == c.name) {
            out.push((c.name.to_string(), untyped(c)));
        }
    }
    Ok(Answer::Response(out))
}

fn untyped(el: &Element) -> Value {
    if el.nil {
        Value::Null
    } else if el.children.is_empty() {
        Value::Text(el.text.to_string())
    } else {
        Value::Object(
            el.children
                .iter()
                .map(|c| (c.name.to_string(), untyped(c)))
                .collect(),
        )
    }
}

fn value_of(el: &Element, ty: &str) -> Value {
    if el.nil {
        return Value::Null;
    }
    if let Some(rest) = ty.strip_prefix("ArrayOf") {
        let item = rest
            .split_once("(items <")
            .and_then(|(_, r)| r.strip_suffix(">)"))
            .unwrap_or("string");
        return Value::Array(el.children.iter().map(|c| value_of(c, item)).collect());
    }
    match ty {
        "boolean" => match el.text.trim() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            other => Value::Text(other.to_string()),
        },
        "int" | "long" | "unsignedInt" | "double" => Value::Number(el.text.trim().to_string()),
        _ => match complex_type_specs().into_iter().find(|(n, _)| *n == ty) {
            Some((_, fields)) => {
                let mut obj = Vec::new();
                for (fname, fty) in &fields {
                    if let Some(c) = el.children.iter().find(|c| c.name == *fname) {
                        obj.push((fname.to_string(), value_of(c, fty)));
                    }
                }
                for c in &el.children {
                    if !fields.iter().any(|(n, _)| *n == c.name) {
                        obj.push((c.name.to_string(), untyped(c)));
                    }
                }
                Value::Object(obj)
            }
            None => Value::Text(el.text.to_string()),
        },
    }
}

/// Reads one out-parameter of a response element with the contract's decoder (for callers that
/// want typed values, such as the directory import).
pub fn field<T: Wire>(response: &Element, name: &str) -> Result<T, DecodeError> {
    T::decode(child(response, name)?)
}

impl Value {
    /// The value as JSON text.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.json_into(&mut s);
        s
    }

    fn json_into(&self, out: &mut String) {
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                // Numbers that JSON cannot carry (INF, NaN) travel as strings.
                if n.parse::<f64>().is_ok_and(f64::is_finite) {
                    out.push_str(n);
                } else {
                    out.push_str(&quote(n));
                }
            }
            Value::Text(t) => out.push_str(&quote(t)),
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&quote(k));
                    out.push(':');
                    v.json_into(out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.json_into(out);
                }
                out.push(']');
            }
        }
    }

    /// Indented text, one field per line.
    pub fn pretty(&self, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        match self {
            Value::Object(fields) => {
                for (k, v) in fields {
                    match v {
                        Value::Object(f) if !f.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            v.pretty(indent + 1, out);
                        }
                        Value::Array(items) if !items.is_empty() => {
                            out.push_str(&format!("{pad}{k}: ({} items)\n", items.len()));
                            v.pretty(indent + 1, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", v.scalar())),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::Object(_) => {
                            out.push_str(&format!("{pad}[{i}]\n"));
                            v.pretty(indent + 1, out);
                        }
                        _ => out.push_str(&format!("{pad}[{i}] {}\n", v.scalar())),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", other.scalar())),
        }
    }

    fn scalar(&self) -> String {
        match self {
            Value::Null => "(null)".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.clone(),
            Value::Text(t) if t.is_empty() => "\"\"".into(),
            Value::Text(t) => t
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
            Value::Object(_) => "{}".into(),
            Value::Array(_) => "[]".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_typed_fields_faults_and_unknown_elements() {
        let doc = format!(
            "<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><FindUsers_4Response xmlns=\"{NAMESPACE}\">\
             <FindUsers_4Result>true</FindUsers_4Result><userRows><UserRow><Username>a&amp;b</Username>\
             </UserRow></userRows><resultsComplete>false</resultsComplete><error><Code>0</Code>\
             <Description /></error><extra>x</extra></FindUsers_4Response></soap:Body></soap:Envelope>"
        );
        let Answer::Response(fields) = decode(Operation::FindUsers_4, doc.as_bytes()).unwrap()
        else {
            panic!("not a response")
        };
        let json = Value::Object(fields).to_json();
        assert_eq!(
            json,
            r#"{"FindUsers_4Result":true,"userRows":[{"Username":"a&b"}],"resultsComplete":false,"error":{"Code":0,"Description":""},"extra":"x"}"#
        );
        let fault = format!(
            "<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode>\
             <faultstring>bad</faultstring></soap:Fault></soap:Body></soap:Envelope>"
        );
        assert_eq!(
            decode(Operation::UserExists, fault.as_bytes()).unwrap(),
            Answer::Fault(SoapFault {
                code: "soap:Client".into(),
                message: "bad".into()
            })
        );
        assert!(decode(Operation::UserExists, b"<html/>").is_err());
        assert!(decode(Operation::UserExists, doc.as_bytes()).is_err());
    }
}
