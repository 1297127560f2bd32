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

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{PrefixDeclaration, QName};
use quick_xml::{Reader, XmlVersion};

/// XML Schema instance namespace (`xsi:nil`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Limits applied while building the tree.
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    /// Deepest element nesting accepted (the envelope counts as depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
    /// Most attributes (namespace declarations included) on one element. A SOAP element carries
    /// a handful; quick-xml's duplicate check is quadratic in this number.
    pub max_attributes_per_element: usize,
    /// Most attributes (namespace declarations included) in one document.
    pub max_attributes: usize,
    /// Most namespace declarations on one element.
    pub max_namespaces_per_element: usize,
    /// Most namespace declarations in one document. Bounds the scope list every prefix is resolved
    /// against, so resolving costs at most this many comparisons per name: the whole parse stays
    /// linear in the body's size.
    pub max_namespaces: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl XmlLimits {
    /// The defaults (`[limits]` sets depth and elements; the attribute and namespace limits are
    /// fixed: no SOAP caller comes near them).
    pub const DEFAULT: XmlLimits = XmlLimits {
        max_depth: 64,
        max_elements: 20_000,
        max_attributes_per_element: 32,
        max_attributes: 20_000,
        max_namespaces_per_element: 16,
        max_namespaces: 64,
    };
}

/// One element: its namespace URI, local name, the flags SOAP cares about, text and children.
///
/// Names and text borrow from the request body wherever they appear in it verbatim (nearly always:
/// only text with an entity reference, CDATA next to text, or a line break to normalise needs a
/// copy). A tree of owned strings cost two allocations per element, a fifth of decoding a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element<'a> {
    /// Resolved namespace URI (`None` for no namespace), borrowed from the declaring attribute.
    pub namespace: Option<Cow<'a, str>>,
    /// Local name, without prefix.
    pub name: Cow<'a, str>,
    /// `xsi:nil="true"` was present.
    pub nil: bool,
    /// A SOAP `mustUnderstand` attribute was `1` or `true` (any namespace).
    pub must_understand: bool,
    /// Concatenated character data directly inside this element (text and CDATA).
    pub text: Cow<'a, str>,
    /// Child elements in document order.
    pub children: Vec<Element<'a>>,
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
    /// More attributes than a limit (on one element, or in the document).
    #[error("the XML document has more than {limit} attributes {scope}")]
    TooManyAttributes {
        /// The limit passed.
        limit: usize,
        /// `on one element` or `in all`.
        scope: &'static str,
    },
    /// More namespace declarations than a limit (on one element, or in the document).
    #[error("the XML document has more than {limit} namespace declarations {scope}")]
    TooManyNamespaces {
        /// The limit passed.
        limit: usize,
        /// `on one element` or `in all`.
        scope: &'static str,
    },
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

impl<'a> Element<'a> {
    /// The children with this namespace and local name.
    pub fn children_named<'s>(
        &'s self,
        namespace: &'s str,
        name: &'s str,
    ) -> impl Iterator<Item = &'s Element<'a>> + 's {
        self.children
            .iter()
            .filter(move |c| c.name == name && c.namespace.as_deref() == Some(namespace))
    }

    /// True when the element is in `namespace` with local name `name`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.name == name && self.namespace.as_deref() == Some(namespace)
    }
}

/// The namespace of the `xml` prefix, bound in every document.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// One in-scope namespace declaration: `prefix` ("" for the default namespace) bound to `uri`
/// (`None` for `xmlns=""`, which takes the default namespace away) by the element at `depth`.
struct Binding<'a> {
    prefix: &'a str,
    uri: Option<Cow<'a, str>>,
    depth: usize,
}

/// Declarations in scope, innermost last. Why not quick-xml's `NsReader`: it parses every start
/// tag's attributes a second time to find declarations, and resolving through it was most of the
/// cost of decoding a request (BENCHMARKS.md); SOAP envelopes declare a handful of namespaces, so
/// a short list searched from the end is all this needs, and URIs borrow from the input.
struct Scopes<'a> {
    bindings: Vec<Binding<'a>>,
}

impl<'a> Scopes<'a> {
    /// The namespace of `prefix` (`None` = the default namespace). `Err` for an undeclared prefix.
    fn resolve(&self, prefix: Option<&str>) -> Result<Option<Cow<'a, str>>, ()> {
        let wanted = prefix.unwrap_or("");
        if let Some(b) = self.bindings.iter().rev().find(|b| b.prefix == wanted) {
            return match (&b.uri, prefix) {
                (Some(uri), _) => Ok(Some(uri.clone())),
                (None, None) => Ok(None),
                (None, Some(_)) => Err(()),
            };
        }
        match prefix {
            None => Ok(None),
            Some("xml") => Ok(Some(Cow::Borrowed(XML_NS))),
            Some(_) => Err(()),
        }
    }

    /// Ends the scope of the element at `depth`.
    fn close(&mut self, depth: usize) {
        while self.bindings.last().is_some_and(|b| b.depth >= depth) {
            self.bindings.pop();
        }
    }
}

/// Parses `bytes` into a tree, enforcing `limits`. The whole input must be one document.
pub fn parse(bytes: &[u8], limits: XmlLimits) -> Result<Element<'_>, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::InvalidUtf8(e.valid_up_to()))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().expand_empty_elements = false;
    reader.config_mut().trim_text(false);

    let mut stack: Vec<Element> = Vec::with_capacity(8);
    let mut scopes = Scopes {
        bindings: Vec::with_capacity(8),
    };
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let mut budget = AttributeBudget::new(limits);

    loop {
        let event = match reader.read_event() {
            Ok(v) => v,
            Err(e) => return Err(syntax(e, &reader)),
        };
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(malformed(&reader, "content after the root element".into()));
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                let depth = stack.len() + 1;
                if depth > limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let mut open = Open {
                    text,
                    reader: &reader,
                    scopes: &mut scopes,
                    budget: &mut budget,
                    depth,
                };
                let element = open.element(start)?;
                if matches!(event, Event::Empty(_)) {
                    scopes.close(depth);
                    attach(&mut stack, &mut root, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let depth = stack.len();
                let Some(element) = stack.pop() else {
                    return Err(XmlError::Truncated("unexpected end tag"));
                };
                scopes.close(depth);
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    match t.xml10_content() {
                        Cow::Borrowed(piece) => append(&mut top.text, borrowed(text, piece)),
                        Cow::Owned(piece) => top.text.to_mut().push_str(&piece),
                    }
                } else if !t.chars().all(char::is_whitespace) {
                    return Err(malformed(&reader, "text outside the root element".into()));
                }
            }
            Event::GeneralRef(r) => {
                let Some(top) = stack.last_mut() else {
                    return Err(XmlError::Truncated(
                        "entity reference outside the root element",
                    ));
                };
                top.text.to_mut().push(reference(&r, &reader)?);
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    append(&mut top.text, borrowed(text, &c));
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

/// The reader's error, at the position it stopped.
fn syntax(e: quick_xml::Error, reader: &Reader<&[u8]>) -> XmlError {
    malformed(reader, e.to_string())
}

/// A syntax error of pfgate's own finding, at the reader's position.
fn malformed(reader: &Reader<&[u8]>, message: String) -> XmlError {
    XmlError::Syntax {
        position: reader.buffer_position(),
        message,
    }
}

/// The character an entity or character reference stands for: only the five predefined entities
/// (no DTD can declare another) and character references.
fn reference(r: &BytesRef<'_>, reader: &Reader<&[u8]>) -> Result<char, XmlError> {
    if let Some(ch) = r.resolve_char_ref().map_err(|e| syntax(e, reader))? {
        return Ok(ch);
    }
    Ok(match &**r {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        other => return Err(malformed(reader, format!("unknown entity &{other};"))),
    })
}

/// The SOAP flags an element's attributes carried, kept with their names to resolve once every
/// declaration on the element is in scope (a declaration may follow the attribute that uses it).
#[derive(Default)]
struct Flags<'x> {
    /// A `nil` attribute and whether its value is true.
    nil: Option<(QName<'x>, bool)>,
    /// A `mustUnderstand` attribute and whether its value is true.
    must_understand: Option<(QName<'x>, bool)>,
    /// Some attribute other than a declaration has a prefix.
    prefixed: bool,
}

/// What opening one element works with: the input, the reader (for error positions), the
/// namespaces in scope, the attribute budget, and the element's depth.
struct Open<'o, 'a> {
    text: &'a str,
    reader: &'o Reader<&'a [u8]>,
    scopes: &'o mut Scopes<'a>,
    budget: &'o mut AttributeBudget,
    depth: usize,
}

impl<'a> Open<'_, 'a> {
    /// The element a start tag opens, its declarations brought into scope.
    fn element(&mut self, start: &BytesStart<'a>) -> Result<Element<'a>, XmlError> {
        let flags = self.attributes(start)?;
        if flags.prefixed {
            // Every attribute prefix must be declared, as for elements (rare: xsi:nil,
            // soap:mustUnderstand), so the attributes are walked again only then.
            for attr in start.attributes().with_checks(false).flatten() {
                if let (None, Some(p)) = (attr.key.as_namespace_binding(), attr.key.prefix()) {
                    self.prefix_namespace(p)?;
                }
            }
        }
        let qname = start.name();
        let local = borrowed(self.text, qname.local_name().into_inner());
        let namespace = self
            .scopes
            .resolve(qname.prefix().map(|p| p.into_inner()))
            .map_err(|()| XmlError::UnknownPrefix(local.to_string()))?;
        let mut element = Element {
            namespace,
            name: local,
            ..Element::default()
        };
        if let Some((key, truthy)) = flags.nil {
            // Attributes have no default namespace: an unprefixed `nil` is not xsi:nil.
            let ns = match key.prefix() {
                Some(p) => self.prefix_namespace(p)?,
                None => None,
            };
            element.nil = truthy && ns.as_deref() == Some(XSI_NS);
        }
        if let Some((key, truthy)) = flags.must_understand {
            if let Some(p) = key.prefix() {
                self.prefix_namespace(p)?;
            }
            element.must_understand = truthy;
        }
        Ok(element)
    }

    /// The namespace an attribute's prefix is bound to; an undeclared prefix is refused.
    fn prefix_namespace(
        &self,
        p: quick_xml::name::Prefix<'_>,
    ) -> Result<Option<Cow<'a, str>>, XmlError> {
        self.scopes
            .resolve(Some(p.into_inner()))
            .map_err(|()| XmlError::UnknownPrefix(p.into_inner().to_owned()))
    }

    /// One pass over the attributes (duplicates refused by quick-xml): declarations come into
    /// scope, and the two flags SOAP reads are kept to resolve afterwards.
    fn attributes<'x>(&mut self, start: &'x BytesStart<'a>) -> Result<Flags<'x>, XmlError> {
        let mut flags = Flags::default();
        self.budget.start_element();
        for attr in start.attributes() {
            // Counted before quick-xml's duplicate check looks at the attribute, so that
            // check never runs over more than the per-element limit.
            self.budget.attribute()?;
            let attr = attr.map_err(|e| malformed(self.reader, e.to_string()))?;
            if let Some(decl) = attr.key.as_namespace_binding() {
                self.declare(decl, &attr)?;
                continue;
            }
            flags.prefixed |= attr.key.prefix().is_some();
            // Only two attributes mean anything to SOAP; the value of any other is never
            // needed, so it is not normalised.
            let slot = match attr.key.local_name().into_inner() {
                "nil" => &mut flags.nil,
                "mustUnderstand" => &mut flags.must_understand,
                _ => continue,
            };
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| syntax(e, self.reader))?;
            *slot = Some((attr.key, matches!(value.trim(), "true" | "1")));
        }
        Ok(flags)
    }

    /// Brings the namespace declaration `attr` into scope.
    fn declare(
        &mut self,
        decl: PrefixDeclaration<'_>,
        attr: &Attribute<'_>,
    ) -> Result<(), XmlError> {
        self.budget.namespace()?;
        // The value as written is the URI unless it holds a reference or a character
        // that attribute-value normalisation would change.
        let value = if attr.value.contains(['&', '\t', '\n', '\r']) {
            Cow::Owned(
                attr.normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| syntax(e, self.reader))?
                    .into_owned(),
            )
        } else {
            borrowed(self.text, &attr.value)
        };
        let prefix = match decl {
            PrefixDeclaration::Default => "",
            PrefixDeclaration::Named(p) => {
                borrowed_str(self.text, p).ok_or_else(|| XmlError::UnknownPrefix(p.to_owned()))?
            }
        };
        if !prefix.is_empty() && value.is_empty() {
            return Err(malformed(
                self.reader,
                format!("the prefix '{prefix}' is bound to an empty namespace"),
            ));
        }
        let uri = (!value.is_empty()).then_some(value);
        self.scopes.bindings.push(Binding {
            prefix,
            uri,
            depth: self.depth,
        });
        Ok(())
    }
}

/// Counts attributes and namespace declarations against [`XmlLimits`]: per element and per
/// document. Why: 44,000 declarations on one element and 20,000 prefixed elements cost half a
/// second of CPU per request (issue #17, item 9): quick-xml's duplicate-attribute check is
/// quadratic per element, and each prefix was looked up in a scope list as long as the document's
/// declarations. Both are bounded by these counts.
struct AttributeBudget {
    limits: XmlLimits,
    attributes: usize,
    namespaces: usize,
    element_attributes: usize,
    element_namespaces: usize,
}

impl AttributeBudget {
    fn new(limits: XmlLimits) -> Self {
        Self {
            limits,
            attributes: 0,
            namespaces: 0,
            element_attributes: 0,
            element_namespaces: 0,
        }
    }

    fn start_element(&mut self) {
        self.element_attributes = 0;
        self.element_namespaces = 0;
    }

    fn attribute(&mut self) -> Result<(), XmlError> {
        let l = self.limits;
        count(
            (&mut self.element_attributes, l.max_attributes_per_element),
            (&mut self.attributes, l.max_attributes),
        )
        .map_err(|(limit, scope)| XmlError::TooManyAttributes { limit, scope })
    }

    fn namespace(&mut self) -> Result<(), XmlError> {
        let l = self.limits;
        count(
            (&mut self.element_namespaces, l.max_namespaces_per_element),
            (&mut self.namespaces, l.max_namespaces),
        )
        .map_err(|(limit, scope)| XmlError::TooManyNamespaces { limit, scope })
    }
}

/// Counts one more in the element's and the document's (count, limit); the limit passed and its
/// scope when either is.
fn count(
    element: (&mut usize, usize),
    document: (&mut usize, usize),
) -> Result<(), (usize, &'static str)> {
    *element.0 += 1;
    *document.0 += 1;
    if *element.0 > element.1 {
        return Err((element.1, "on one element"));
    }
    if *document.0 > document.1 {
        return Err((document.1, "in all"));
    }
    Ok(())
}

/// `piece` as a slice of `input` when it lies inside it (the reader hands out sub-slices of the
/// input for names and unmodified text), else a copy. Pointer arithmetic only locates the piece;
/// the slice itself is taken with checked indexing, so a piece from elsewhere is just copied.
fn borrowed<'a>(input: &'a str, piece: &str) -> Cow<'a, str> {
    match borrowed_str(input, piece) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(piece.to_owned()),
    }
}

/// `piece` as a slice of `input`, if it is one.
fn borrowed_str<'a>(input: &'a str, piece: &str) -> Option<&'a str> {
    let start = (piece.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
    start
        .checked_add(piece.len())
        .and_then(|end| input.get(start..end))
        .filter(|s| s.as_ptr() == piece.as_ptr())
}

/// Appends a piece of text: the first piece is kept as it is (borrowed), later ones concatenate.
fn append<'a>(text: &mut Cow<'a, str>, piece: Cow<'a, str>) {
    if text.is_empty() {
        *text = piece;
    } else {
        text.to_mut().push_str(&piece);
    }
}

fn attach<'a>(stack: &mut [Element<'a>], root: &mut Option<Element<'a>>, element: Element<'a>) {
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

    fn p(s: &str) -> Result<Element<'_>, XmlError> {
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
    fn rejects_namespace_and_attribute_floods() {
        // `<a>` around `elements` children, each with `per_element` attributes `attr(child, i)`.
        let flood = |elements: usize, per_element: usize, attr: &dyn Fn(usize, usize) -> String| {
            let child = |j| (0..per_element).map(|i| attr(j, i)).collect::<String>();
            let children: String = (0..elements).map(|j| format!("<b{}/>", child(j))).collect();
            format!("<a>{children}</a>")
        };
        let ns = |j: usize, i: usize| format!(" xmlns:p{j}x{i}=\"u{i}\"");
        let plain = |_: usize, i: usize| format!(" x{i}=\"1\"");
        let too_many_ns = |limit, scope| Err(XmlError::TooManyNamespaces { limit, scope });
        let too_many_attrs = |limit, scope| Err(XmlError::TooManyAttributes { limit, scope });
        assert_eq!(p(&flood(1, 17, &ns)), too_many_ns(16, "on one element"));
        // 16 per element is allowed, but not 65 in the document.
        assert_eq!(p(&flood(5, 13, &ns)), too_many_ns(64, "in all"));
        assert_eq!(
            p(&flood(1, 33, &plain)),
            too_many_attrs(32, "on one element")
        );
        assert_eq!(
            p(&flood(1000, 21, &plain)),
            too_many_attrs(20_000, "in all")
        );
        // Within the limits, as .NET and zeep write envelopes: accepted.
        assert!(p(&flood(4, 16, &ns)).is_ok());
    }

    #[test]
    fn escape_keeps_output_well_formed() {
        assert_eq!(escape("a<&>\"\u{1}"), "a&lt;&amp;&gt;&quot;\u{FFFD}");
    }
}
