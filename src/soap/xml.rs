//! A small, bounded, namespace-aware XML tree for SOAP request bodies.
//!
//! Why a tree and not serde: SOAP callers choose prefixes freely (.NET writes a default namespace,
//! zeep writes `ns0:`), so every decision here is keyed on the *namespace URI* and local name, never
//! on a prefix. quick-xml's serde mode ignores namespaces entirely, so it cannot be trusted with that.
//!
//! Why bounded: this parser faces unauthenticated input. It refuses any DOCTYPE (so no entity can be
//! declared, let alone expanded), expands only the five predefined entities and character references,
//! caps nesting depth and the number of elements, and never recurses on input (the parse is a loop with
//! an explicit stack), so hostile documents end in a typed error, not a crash or an allocation storm.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

/// XML Schema instance namespace (`xsi:nil`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Limits applied while building the tree.
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    /// Deepest element nesting accepted (the envelope counts as depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_elements: 20_000,
        }
    }
}

/// One element: its namespace URI, local name, the flags SOAP cares about, text and children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// Resolved namespace URI (`None` for no namespace). Shared: a document names few namespaces
    /// but many elements, so each URI is allocated once per document.
    pub namespace: Option<std::sync::Arc<str>>,
    /// Local name, without prefix.
    pub name: String,
    /// `xsi:nil="true"` was present.
    pub nil: bool,
    /// A SOAP `mustUnderstand` attribute was `1` or `true` (any namespace).
    pub must_understand: bool,
    /// Concatenated character data directly inside this element (text and CDATA).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// A `<!DOCTYPE …>` was present. DTDs are never processed.
    #[error("DTDs are not allowed: the request contains a DOCTYPE declaration")]
    Doctype,
    /// Nesting went deeper than the limit.
    #[error("XML nesting is deeper than the limit of {0} levels")]
    TooDeep(usize),
    /// More elements than the limit.
    #[error("the XML document has more than {0} elements")]
    TooManyElements(usize),
    /// The bytes are not UTF-8.
    #[error("the request body is not valid UTF-8 (byte offset {0})")]
    InvalidUtf8(usize),
    /// An element prefix that no `xmlns:` declares.
    #[error("undeclared namespace prefix on element <{0}>")]
    UnknownPrefix(String),
    /// The document ended before the root element was closed, or had no root.
    #[error("the XML document is incomplete: {0}")]
    Truncated(&'static str),
    /// Anything else the XML reader reports (mismatched tags, bad entity, bad syntax).
    #[error("malformed XML at byte {position}: {message}")]
    Syntax {
        /// Byte offset where the reader stopped.
        position: u64,
        /// The reader's description.
        message: String,
    },
}

impl Element {
    /// The children with this namespace and local name.
    pub fn children_named<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name == name && c.namespace.as_deref() == Some(namespace))
    }

    /// True when the element is in `namespace` with local name `name`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.name == name && self.namespace.as_deref() == Some(namespace)
    }
}

/// Parses `bytes` into a tree, enforcing `limits`. The whole input must be one document.
pub fn parse(bytes: &[u8], limits: XmlLimits) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::InvalidUtf8(e.valid_up_to()))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().expand_empty_elements = false;
    reader.config_mut().trim_text(false);

    let mut stack: Vec<Element> = Vec::new();
    let mut namespaces: Vec<std::sync::Arc<str>> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;

    loop {
        let syntax = |e: quick_xml::Error, r: &NsReader<&[u8]>| XmlError::Syntax {
            position: r.buffer_position(),
            message: e.to_string(),
        };
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(v) => v,
            Err(e) => return Err(syntax(e, &reader)),
        };
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(XmlError::Syntax {
                        position: reader.buffer_position(),
                        message: "content after the root element".into(),
                    });
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let local = start.local_name().as_ref().to_string();
                let namespace = match resolved {
                    ResolveResult::Bound(ns) => {
                        let uri = ns.as_ref();
                        Some(match namespaces.iter().find(|n| &***n == uri) {
                            Some(n) => n.clone(),
                            None => {
                                let n: std::sync::Arc<str> = uri.into();
                                namespaces.push(n.clone());
                                n
                            }
                        })
                    }
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(_) => return Err(XmlError::UnknownPrefix(local)),
                };
                let mut element = Element {
                    namespace,
                    name: local,
                    ..Element::default()
                };
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| XmlError::Syntax {
                        position: reader.buffer_position(),
                        message: e.to_string(),
                    })?;
                    let (attr_ns, attr_local) = reader.resolver().resolve_attribute(attr.key);
                    // Only two attributes mean anything to SOAP; the value of any other (namespace
                    // declarations above all) is never needed, so it is not normalised.
                    let flag = match (&attr_ns, attr_local.as_ref()) {
                        (ResolveResult::Unknown(p), _) => {
                            return Err(XmlError::UnknownPrefix(p.clone()))
                        }
                        (ResolveResult::Bound(ns), "nil") if ns.as_ref() == XSI_NS => Some(true),
                        (_, "mustUnderstand") => Some(false),
                        _ => None,
                    };
                    if let Some(is_nil) = flag {
                        let value = attr
                            .normalized_value(XmlVersion::Implicit1_0)
                            .map_err(|e| syntax(e, &reader))?;
                        let truthy = matches!(value.trim(), "true" | "1");
                        if is_nil {
                            element.nil = truthy;
                        } else {
                            element.must_understand = truthy;
                        }
                    }
                }
                if matches!(event, Event::Empty(_)) {
                    attach(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let Some(element) = stack.pop() else {
                    return Err(XmlError::Truncated("unexpected end tag"));
                };
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                } else if !t.chars().all(char::is_whitespace) {
                    return Err(XmlError::Syntax {
                        position: reader.buffer_position(),
                        message: "text outside the root element".into(),
                    });
                }
            }
            Event::GeneralRef(r) => {
                let Some(top) = stack.last_mut() else {
                    return Err(XmlError::Truncated(
                        "entity reference outside the root element",
                    ));
                };
                if let Some(ch) = r.resolve_char_ref().map_err(|e| syntax(e, &reader))? {
                    top.text.push(ch);
                } else {
                    let ch = match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(XmlError::Syntax {
                                position: reader.buffer_position(),
                                message: format!("unknown entity &{other};"),
                            })
                        }
                    };
                    top.text.push(ch);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c);
                }
            }
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(XmlError::Truncated("the root element is not closed"));
                }
                return root.ok_or(XmlError::Truncated("no root element"));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Escapes text for element content or a double-quoted attribute, and replaces characters XML 1.0
/// cannot carry (most C0 controls) with U+FFFD so the output is always well-formed.
pub fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' => out.push(ch),
            '\r' => out.push_str("&#xD;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// [`escape_into`] returning a new string.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    escape_into(&mut s, text);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, XmlError> {
        parse(s.as_bytes(), XmlLimits::default())
    }

    #[test]
    fn resolves_namespaces_not_prefixes() {
        let a = p(r#"<a:x xmlns:a="urn:n"><a:y>1</a:y></a:x>"#).unwrap();
        let b = p(r#"<x xmlns="urn:n"><y>1</y></x>"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.namespace.as_deref(), Some("urn:n"));
    }

    #[test]
    fn rejects_doctype() {
        let e = p(r#"<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>"#).unwrap_err();
        assert_eq!(e, XmlError::Doctype);
    }

    #[test]
    fn rejects_unknown_entity() {
        assert!(matches!(p("<x>&lol;</x>"), Err(XmlError::Syntax { .. })));
    }

    #[test]
    fn expands_predefined_and_char_refs() {
        let e = p("<x>a&amp;b&#65;&#x42;&lt;</x>").unwrap();
        assert_eq!(e.text, "a&bAB<");
    }

    #[test]
    fn rejects_deep_nesting_without_recursion() {
        let depth = 100_000;
        let doc = "<a>".repeat(depth) + &"</a>".repeat(depth);
        assert_eq!(p(&doc).unwrap_err(), XmlError::TooDeep(64));
    }

    #[test]
    fn rejects_truncated() {
        assert!(matches!(p("<a><b></b>"), Err(XmlError::Truncated(_))));
        assert!(p("<a><b></a>").is_err());
        assert!(matches!(p(""), Err(XmlError::Truncated(_))));
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert_eq!(
            parse(b"<a>\xff</a>", XmlLimits::default()).unwrap_err(),
            XmlError::InvalidUtf8(3)
        );
    }

    #[test]
    fn reads_nil_and_must_understand() {
        let e = p(r#"<a xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="urn:s"><b i:nil="true"/><c s:mustUnderstand="1"/></a>"#).unwrap();
        assert!(e.children[0].nil);
        assert!(e.children[1].must_understand);
    }

    #[test]
    fn rejects_element_flood() {
        let doc = format!("<a>{}</a>", "<b/>".repeat(30_000));
        assert_eq!(p(&doc).unwrap_err(), XmlError::TooManyElements(20_000));
    }

    #[test]
    fn escape_keeps_output_well_formed() {
        assert_eq!(escape("a<&>\"\u{1}"), "a&lt;&amp;&gt;&quot;\u{FFFD}");
    }
}
