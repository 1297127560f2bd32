//! Request envelopes for any contract operation from `name=value` parameters.
//!
//! Addressing (what `pfgate call --param` takes):
//! - a simple parameter by its element name: `username=alice@contoso.com`, `mode=smsText`,
//!   `resultLimit=50` (an empty value sends an empty element, `<x />`; a parameter not given is
//!   omitted, which ASMX reads as null or the type's default);
//! - a field of a complex parameter by a dotted path: `addUserSettings.Mode=smsText`;
//! - an array of strings by repeating the parameter: `tagIds=a --param tagIds=b`;
//! - an item of an array of complex values by its index: `eventParameters[0].Name=amount`
//!   (indices need not be contiguous; items are sent in index order).
//!
//! Names are the wire names, case-sensitive as ASMX reads them. Values are checked by decoding the
//! finished request with the same decoder the server uses, so a wrong enum literal or a number
//! that does not parse is refused here with the contract's own wording, before anything is sent.

use std::collections::BTreeMap;

use crate::pfwssdk::soap::xml::{parse, XmlLimits};
use crate::pfwssdk::{complex_type_specs, Operation, Request, NAMESPACE};

use super::ClientError;

/// A value being assembled.
#[derive(Debug)]
enum Node {
    Text(String),
    Complex(BTreeMap<String, Node>),
    Array(BTreeMap<usize, Node>),
}

/// What a contract type string says about how a value is built.
enum Shape {
    Simple,
    Complex(&'static str),
    Array { item: String },
}

fn shape(contract_type: &str) -> Shape {
    if let Some(rest) = contract_type.strip_prefix("ArrayOf") {
        let item = rest
            .split_once("(items <")
            .and_then(|(_, r)| r.strip_suffix(">)"))
            .unwrap_or("string")
            .to_string();
        return Shape::Array { item };
    }
    match complex_type_specs()
        .into_iter()
        .find(|(name, _)| *name == contract_type)
    {
        Some((name, _)) => Shape::Complex(name),
        None => Shape::Simple,
    }
}

fn fields_of(complex: &str) -> Vec<(&'static str, String)> {
    complex_type_specs()
        .into_iter()
        .find(|(n, _)| *n == complex)
        .map(|(_, f)| f)
        .unwrap_or_default()
}

/// Splits `name[3]` into (`name`, Some(3)).
fn segment(seg: &str) -> Result<(&str, Option<usize>), ClientError> {
    match seg.split_once('[') {
        None => Ok((seg, None)),
        Some((name, rest)) => {
            let idx = rest
                .strip_suffix(']')
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| *i < 10_000)
                .ok_or_else(|| {
                    ClientError::Usage(format!(
                        "'{seg}': an index is a number below 10000 in brackets"
                    ))
                })?;
            Ok((name, Some(idx)))
        }
    }
}

/// Places `value` at `path` (segments already split) below `slot`, whose type is `ty`.
fn place(
    slot: &mut Option<Node>,
    ty: &str,
    full: &str,
    index: Option<usize>,
    rest: &[&str],
    value: &str,
) -> Result<(), ClientError> {
    let usage = |m: String| ClientError::Usage(format!("--param {full}: {m}"));
    match shape(ty) {
        Shape::Simple => {
            if index.is_some() || !rest.is_empty() {
                return Err(usage(format!("this is a simple value of type {ty}")));
            }
            if slot.is_some() {
                return Err(usage("given twice".into()));
            }
            *slot = Some(Node::Text(value.to_string()));
            Ok(())
        }
        Shape::Complex(name) => {
            if index.is_some() {
                return Err(usage(format!("{name} is not an array")));
            }
            let Some((first, deeper)) = rest.split_first() else {
                let names: Vec<&str> = fields_of(name).iter().map(|(n, _)| *n).collect();
                return Err(usage(format!(
                    "{name} is a complex type: address its fields as {full}.FIELD ({})",
                    names.join(", ")
                )));
            };
            let (field, idx) = segment(first)?;
            let fields = fields_of(name);
            let Some((_, fty)) = fields.iter().find(|(n, _)| *n == field) else {
                let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                return Err(usage(format!(
                    "{name} has no field '{field}' (fields: {})",
                    names.join(", ")
                )));
            };
            let node = slot.get_or_insert_with(|| Node::Complex(BTreeMap::new()));
            let Node::Complex(map) = node else {
                return Err(usage("mixes a value and fields".into()));
            };
            let mut child = map.remove(field);
            let r = place(&mut child, fty, full, idx, deeper, value);
            if let Some(c) = child {
                map.insert(field.to_string(), c);
            }
            r
        }
        Shape::Array { item } => {
            let node = slot.get_or_insert_with(|| Node::Array(BTreeMap::new()));
            let Node::Array(items) = node else {
                return Err(usage("mixes a value and items".into()));
            };
            let at = match index {
                Some(i) => i,
                None if rest.is_empty() => items.keys().next_back().map_or(0, |k| k + 1),
                None => {
                    return Err(usage(format!(
                        "an array of {item}: address an item as NAME[0].FIELD"
                    )))
                }
            };
            if items.len() >= 10_000 {
                return Err(usage("too many items".into()));
            }
            let item_ty = if item == "string" {
                "string".to_string()
            } else {
                item.clone()
            };
            let mut child = items.remove(&at);
            let r = place(&mut child, &item_ty, full, None, rest, value);
            if let Some(c) = child {
                items.insert(at, c);
            }
            r
        }
    }
}

fn write(out: &mut String, name: &str, ty: &str, node: &Node) {
    match (node, shape(ty)) {
        (Node::Text(t), _) => crate::pfwssdk::wire::write_text_element(out, name, t),
        (Node::Complex(map), Shape::Complex(cname)) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for (field, fty) in fields_of(cname) {
                if let Some(n) = map.get(field) {
                    write(out, field, &fty, n);
                }
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        (Node::Array(items), Shape::Array { item }) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for n in items.values() {
                write(out, &item, &item, n);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        // `place` builds nodes from the same shapes; a mismatch cannot be produced.
        _ => {}
    }
}

/// Splits `--param` text at the first `=`.
pub fn split_param(text: &str) -> Result<(String, String), ClientError> {
    let (k, v) = text.split_once('=').ok_or_else(|| {
        ClientError::Usage(format!(
            "--param '{}': expected NAME=VALUE",
            crate::pfwssdk::wire::clip(text)
        ))
    })?;
    Ok((k.trim().to_string(), v.to_string()))
}

/// The operation element `<Op xmlns="…">…</Op>` for these parameters, checked by the contract
/// decoder.
pub fn operation_element(
    op: Operation,
    params: &[(String, String)],
) -> Result<String, ClientError> {
    let spec = op.spec();
    let mut slots: Vec<Option<Node>> = spec.inputs.iter().map(|_| None).collect();
    for (path, value) in params {
        let segs: Vec<&str> = path.split('.').collect();
        let (first, rest) = segs
            .split_first()
            .ok_or_else(|| ClientError::Usage("--param with an empty name".into()))?;
        let (name, idx) = segment(first)?;
        let Some(pos) = spec.inputs.iter().position(|(n, _)| *n == name) else {
            let names: Vec<String> = spec
                .inputs
                .iter()
                .map(|(n, t)| format!("{n} ({t})"))
                .collect();
            return Err(ClientError::Usage(format!(
                "{} has no parameter '{name}'; its parameters: {}",
                op.name(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        place(&mut slots[pos], &spec.inputs[pos].1, path, idx, rest, value)?;
    }
    let mut out = String::with_capacity(256);
    out.push('<');
    out.push_str(op.name());
    out.push_str(" xmlns=\"");
    out.push_str(NAMESPACE);
    out.push_str("\">");
    for ((name, ty), slot) in spec.inputs.iter().zip(&slots) {
        if let Some(node) = slot {
            write(&mut out, name, ty, node);
        }
    }
    out.push_str("</");
    out.push_str(op.name());
    out.push('>');
    // The server's own decoder is the judge of types and literals.
    let limits = XmlLimits {
        max_depth: 64,
        max_elements: 200_000,
        max_attributes: 200_000,
        ..XmlLimits::DEFAULT
    };
    let el = parse(out.as_bytes(), limits)
        .map_err(|e| ClientError::Usage(format!("the request is not well-formed: {e}")))?;
    Request::decode(op, &el).map_err(|e| ClientError::Usage(format!("{}: {e}", op.name())))?;
    Ok(out)
}

/// A SOAP 1.1 envelope around `operation_element`.
pub fn envelope(operation_element: &str) -> String {
    let mut s = String::with_capacity(operation_element.len() + 300);
    s.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body>",
    );
    s.push_str(operation_element);
    s.push_str("</soap:Body></soap:Envelope>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Vec<(String, String)> {
        list.iter().map(|t| split_param(t).unwrap()).collect()
    }

    #[test]
    fn builds_simple_complex_and_array_parameters_in_contract_order() {
        let x = operation_element(
            Operation::AddUser_3,
            &p(&[
                "sendEmail=false",
                "addUserSettings.Phone=4255550100",
                "addUserSettings.Mode=smsText",
                "username=a&b@contoso.com",
            ]),
        )
        .unwrap();
        assert_eq!(
            x,
            format!(
                "<AddUser_3 xmlns=\"{NAMESPACE}\"><username>a&amp;b@contoso.com</username>\
                 <addUserSettings><Phone>4255550100</Phone><Mode>smsText</Mode></addUserSettings>\
                 <sendEmail>false</sendEmail></AddUser_3>"
            )
        );
        let x = operation_element(Operation::FindUsers_4, &p(&["tagIds=a", "tagIds=b"])).unwrap();
        assert!(x.contains("<tagIds><string>a</string><string>b</string></tagIds>"));
    }

    #[test]
    fn refuses_unknown_names_bad_values_and_misplaced_paths() {
        let e = operation_element(Operation::UserExists, &p(&["user=a"])).unwrap_err();
        assert!(e.to_string().contains("username (string)"), "{e}");
        let e = operation_element(Operation::PfAuthUser_5, &p(&["mode=fax"])).unwrap_err();
        assert!(e.to_string().contains("Mode3"), "{e}");
        let e = operation_element(Operation::FindUsers_4, &p(&["resultLimit=-1"])).unwrap_err();
        assert!(e.to_string().contains("unsignedInt"), "{e}");
        let e = operation_element(Operation::AddUser_3, &p(&["addUserSettings=x"])).unwrap_err();
        assert!(e.to_string().contains("FIELD"), "{e}");
        let e =
            operation_element(Operation::AddUser_3, &p(&["addUserSettings.Nope=x"])).unwrap_err();
        assert!(e.to_string().contains("no field 'Nope'"), "{e}");
        let e = operation_element(Operation::UserExists, &p(&["username=a", "username=b"]))
            .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        assert!(split_param("novalue").is_err());
    }
}
