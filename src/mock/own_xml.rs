//! The journal's response fields, read from an envelope this process encoded itself — in one pass
//! over the text, without building a tree.
//!
//! Why not the request parser (`soap::xml::parse` and `journal::flatten`): it is made for hostile
//! input (namespaces resolved, limits counted, a tree allocated) and cost the double as much as
//! the whole user look-up, on every request, for a document whose shape we wrote. This reader
//! accepts only the plain subset our encoder writes (elements, `xmlns`/`xml:lang` attributes, the
//! five entities and character references, no comments, CDATA, DOCTYPE or carriage returns); on
//! anything else it gives up (`None`) and the caller falls back to the full parser, so the fields
//! are always what the full parser would have flattened. The equivalence is tested below on every
//! operation's response, both SOAP versions, faults and the malformed-XML fault.

use std::collections::BTreeMap;

use super::journal;
use crate::pfwssdk::soap::xml::{self, XmlLimits};

/// The decoded, redacted fields of a response envelope (empty when it is not XML): [`fields`],
/// else the full parser.
pub fn response_fields(body: &[u8]) -> BTreeMap<String, String> {
    if let Some(fields) = fields(body) {
        return fields;
    }
    xml::parse(body, XmlLimits::default())
        .ok()
        .and_then(|root| super::serve::operation_element(&root).map(journal::flatten))
        .map(|m| journal::redact_map(&m))
        .unwrap_or_default()
}

/// One open element.
struct Open<'a> {
    /// Its name as written (prefix included), for the end tag.
    qname: &'a str,
    /// It has a child element (its own text is then not a field).
    parent: bool,
    /// Its text, unescaped.
    text: String,
    /// The length of the field path before this element's name was added.
    path_len: usize,
}

/// The walk's state.
#[derive(Default)]
struct Walk<'a> {
    stack: Vec<Open<'a>>,
    /// The dotted path of the open element below the operation element.
    path: String,
    /// The root has been closed.
    done: bool,
    /// The first `Body` of the envelope has been entered; `in_body`: it is open; `op_seen`: its
    /// first child was entered.
    body_seen: bool,
    in_body: bool,
    op_seen: bool,
    /// The stack depth of the operation element while it is open.
    op_depth: Option<usize>,
    fields: BTreeMap<String, String>,
}

/// The flattened, redacted fields of `body`, as `journal::flatten` and `journal::redact_value`
/// give them from the full parse; `None` when the body is not in the subset this reader accepts.
pub fn fields(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text.trim_start();
    if let Some(after) = rest.strip_prefix("<?xml") {
        rest = after.split_once("?>")?.1;
    }
    let mut w = Walk::default();
    while let Some(lt) = rest.find('<') {
        w.text(&rest[..lt])?;
        rest = &rest[lt + 1..];
        let gt = tag_end(rest)?;
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        match tag.strip_prefix('/') {
            Some(name) => w.close(name.trim_end())?,
            None => w.open(tag)?,
        }
    }
    w.text(rest)?;
    (w.done && w.stack.is_empty()).then_some(w.fields)
}

/// The index of the `>` that ends the tag `s` starts (after its `<`), quotes respected.
fn tag_end(s: &str) -> Option<usize> {
    let gt = s.find('>')?;
    if !s[..gt].contains(['"', '\'', '<']) {
        return Some(gt); // nearly every tag: no attribute
    }
    let mut quote = None;
    for (i, b) in s.bytes().enumerate() {
        match (quote, b) {
            (None, b'>') => return Some(i),
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'<') => return None,
            (Some(q), c) if q == c => quote = None,
            _ => {}
        }
    }
    None
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

impl<'a> Walk<'a> {
    fn inside_op(&self) -> bool {
        self.op_depth.is_some_and(|d| self.stack.len() > d)
    }

    fn text(&mut self, piece: &str) -> Option<()> {
        if piece.contains('\r') {
            return None; // the full parser normalises line ends
        }
        let below_op = self.op_depth.is_some_and(|d| self.stack.len() > d + 1);
        match self.stack.last_mut() {
            None if piece.trim().is_empty() => Some(()),
            None => None,
            Some(top) if below_op => unescape_into(&mut top.text, piece),
            // Not a field's text, but a bad reference still makes the document one to refuse.
            Some(_) if piece.contains('&') => unescape_into(&mut String::new(), piece),
            Some(_) => Some(()),
        }
    }

    fn open(&mut self, tag: &'a str) -> Option<()> {
        if matches!(tag.as_bytes().first(), Some(b'!' | b'?')) || self.done {
            return None;
        }
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let qname = tag.split(|c: char| c.is_ascii_whitespace()).next()?;
        let attributes = &tag[qname.len()..];
        if !name_ok(qname) || attributes.contains("nil") {
            return None;
        }
        let name = local(qname);
        match self.stack.len() {
            0 if name != "Envelope" => return None,
            1 if name == "Body" && !self.body_seen => {
                self.body_seen = true;
                self.in_body = true;
            }
            2 if self.in_body && !self.op_seen => {
                self.op_seen = true;
                self.op_depth = Some(2);
            }
            _ => {}
        }
        let path_len = self.path.len();
        if self.inside_op() {
            if let Some(top) = self.stack.last_mut() {
                top.parent = true;
            }
            if self.stack.len() > self.op_depth.unwrap_or(usize::MAX) + 1 {
                self.path.push('.');
            }
            self.path.push_str(name);
        }
        self.stack.push(Open {
            qname,
            parent: false,
            text: String::new(),
            path_len,
        });
        if empty {
            self.close(qname)?;
        }
        Some(())
    }

    fn close(&mut self, qname: &str) -> Option<()> {
        let top = self.stack.pop()?;
        if top.qname != qname {
            return None;
        }
        if self.inside_op() && !top.parent {
            let mut key = self.path.clone();
            let mut n = 1;
            while self.fields.contains_key(&key) {
                n += 1;
                key = format!("{}[{n}]", self.path);
            }
            let value = journal::redacted(&key, top.text);
            self.fields.insert(key, value);
        }
        self.path.truncate(top.path_len);
        if self.op_depth == Some(self.stack.len()) {
            self.op_depth = None;
        }
        if self.stack.len() == 1 {
            self.in_body = false;
        }
        self.done = self.stack.is_empty();
        Some(())
    }
}

/// Appends `s` with its entity and character references expanded; `None` for any other `&`.
fn unescape_into(out: &mut String, s: &str) -> Option<()> {
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let (entity, after) = rest[amp + 1..].split_once(';')?;
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = match entity.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(n)?
            }
        };
        out.push(c);
        rest = after;
    }
    out.push_str(rest);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfwssdk::soap::envelope::{encode_response, SoapVersion};
    use crate::pfwssdk::soap::Fault;
    use crate::pfwssdk::{Error, Operation, Response};

    /// What the full parser gives: the reference.
    fn full(body: &str) -> BTreeMap<String, String> {
        xml::parse(body.as_bytes(), Default::default())
            .ok()
            .and_then(|root| super::super::serve::operation_element(&root).map(journal::flatten))
            .map(|m| journal::redact_map(&m))
            .unwrap_or_default()
    }

    fn same(body: &str) {
        let fast = fields(body.as_bytes());
        assert_eq!(fast.as_ref(), Some(&full(body)), "{body}");
    }

    #[test]
    fn every_operation_and_version_reads_as_the_full_parse() {
        for version in [SoapVersion::V11, SoapVersion::V12] {
            for &op in Operation::ALL {
                let error = Error::new(501, "a <b> & \"c\"\tfive");
                same(&encode_response(version, &Response::failure(op, error)));
                same(&encode_response(
                    version,
                    &Response::status(op, true, Error::ok()),
                ));
            }
            let fault = Fault::client("bad <input> & \"quotes\"\r\nline".to_string());
            same(&fault.to_envelope(version));
            same(&Fault::server(String::new()).to_envelope(version));
        }
    }

    #[test]
    fn a_plain_operations_answer_has_nothing_to_redact() {
        // What justifies keeping its body until the journal is read: redaction changes nothing.
        for &op in Operation::ALL {
            if !journal::response_is_plain(op.name()) {
                continue;
            }
            let error = Error::new(12, "denied");
            let body = encode_response(SoapVersion::V11, &Response::failure(op, error));
            let root = xml::parse(body.as_bytes(), Default::default()).unwrap();
            let element = super::super::serve::operation_element(&root).unwrap();
            // Every field given a value redaction would change were its name a secret's or a
            // phone's (the encoded defaults are mostly empty, and an empty value stays empty).
            let mut raw = journal::flatten(element);
            raw.values_mut().for_each(|v| *v = "4255550100".into());
            assert_eq!(journal::redact_map(&raw), raw, "{}", op.name());
        }
    }

    #[test]
    fn text_with_references_secrets_and_repeats_reads_as_the_full_parse() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><XResponse xmlns=\"urn:x\"><a>1 &lt; 2 &amp;&#65;&#x42;</a><pin>2580</pin><userSettings><Phone>4255550177</Phone><Code>7</Code></userSettings><s><string>x</string><string>y</string></s><e /></XResponse><Second><z>1</z></Second></soap:Body></soap:Envelope>";
        same(body);
        let f = fields(body.as_bytes()).unwrap();
        assert_eq!(f.get("pin").map(String::as_str), Some(journal::REDACTED));
        assert_eq!(
            f.get("userSettings.Phone").map(String::as_str),
            Some("********77")
        );
        assert_eq!(f.get("s.string[2]").map(String::as_str), Some("y"));
        assert!(!f.contains_key("z"));
    }

    #[test]
    fn what_it_does_not_accept_falls_back() {
        let ok = encode_response(
            SoapVersion::V11,
            &Response::failure(Operation::ALL[0], Error::ok()),
        );
        let malformed = super::super::faults::malformed(&ok);
        assert_eq!(fields(malformed.as_bytes()), None);
        assert_eq!(full(&malformed), BTreeMap::new());
        for bad in [
            ok.replacen("<soap:Body>", "<soap:Body><!-- c -->", 1),
            ok.replacen("<soap:Body>", "<soap:Body><x xsi:nil=\"true\" />", 1),
            format!("{ok}<again />"),
            format!("{ok}text"),
            ok[..ok.len() - 3].to_string(),
            ok.replacen("</soap:Body>", "&bogus;</soap:Body>", 1),
            "plain text".to_string(),
            String::new(),
        ] {
            assert_eq!(fields(bad.as_bytes()), None, "{bad}");
        }
    }
}
