//! How each contract value travels: decoding from an [`Element`] and encoding as ASMX's
//! `XmlSerializer` writes it.
//!
//! The rules mirror `XmlSerializer` so that .NET proxies see exactly what they would from IIS:
//! - strings are nullable: `None` is *omitted* on output; an omitted or `xsi:nil` element decodes to
//!   `None`, an empty one (`<x />`) to `Some("")`;
//! - value types (`bool`, numbers, enums) are always written; an omitted or nil element decodes to the
//!   type's default (.NET leaves the field at its default), so callers may leave them out — except
//!   the few enum inputs whose omission means something else (`PfAuthUser_5`'s `mode`), which decode
//!   as `Option` ([`decode_sent`]);
//! - enums travel as their literal names;
//! - arrays are a wrapper element named after the parameter with one item element per entry, named
//!   after the item type (`<userRows><UserRow>…</UserRow></userRows>`, `<tagIds><string>…`).

use std::borrow::Cow;

use crate::pfwssdk::soap::xml::{escape_into, Element};

use super::NAMESPACE;

/// A request value that could not be decoded. The path names the element, for the fault text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("element <{path}>: {reason}")]
pub struct DecodeError {
    /// Slash-separated element path below the operation element.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl DecodeError {
    /// A new error at `element`.
    pub fn new(element: &str, reason: impl Into<String>) -> Self {
        Self {
            path: element.to_string(),
            reason: reason.into(),
        }
    }

    /// Prefixes the path with the parent element's name.
    pub fn within(mut self, parent: &str) -> Self {
        self.path = format!("{parent}/{}", self.path);
        self
    }
}

/// Finds the single child `name` in the contract namespace. A repeated element is refused rather
/// than resolved silently: two different values for one parameter is never an honest request.
pub fn child<'a, 'x>(
    parent: &'a Element<'x>,
    name: &'a str,
) -> Result<Option<&'a Element<'x>>, DecodeError> {
    let mut it = parent.children_named(NAMESPACE, name);
    let first = it.next();
    if it.next().is_some() {
        return Err(DecodeError::new(name, "the element appears more than once"));
    }
    Ok(first)
}

/// A value that can be read from and written to the wire.
pub trait Wire: Sized {
    /// The type as the contract names it (`string`, `boolean`, `Mode3`, `ArrayOfUserRow (items <UserRow>)`).
    fn contract_type() -> Cow<'static, str>;
    /// Decodes from the element, or from its absence (`None`).
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError>;
    /// Writes `<name>…</name>` (or nothing, for a null reference) into `out`.
    fn encode(&self, name: &str, out: &mut String);
}

/// Writes `<name>text</name>`, or `<name />` when the text is empty, as XmlSerializer does.
pub fn write_text_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    if text.is_empty() {
        out.push_str(" />");
        return;
    }
    out.push('>');
    escape_into(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn present<'a, 'x>(element: Option<&'a Element<'x>>) -> Option<&'a Element<'x>> {
    element.filter(|e| !e.nil)
}

impl Wire for Option<String> {
    fn contract_type() -> Cow<'static, str> {
        "string".into()
    }
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
        Ok(present(element).map(|e| e.text.clone().into_owned()))
    }
    fn encode(&self, name: &str, out: &mut String) {
        if let Some(s) = self {
            write_text_element(out, name, s);
        }
    }
}

impl Wire for bool {
    fn contract_type() -> Cow<'static, str> {
        "boolean".into()
    }
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
        let Some(e) = present(element) else {
            return Ok(false);
        };
        match e.text.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(DecodeError::new(
                &e.name,
                format!(
                    "'{}' is not a valid boolean (true, false, 1 or 0)",
                    clip(other)
                ),
            )),
        }
    }
    fn encode(&self, name: &str, out: &mut String) {
        write_text_element(out, name, if *self { "true" } else { "false" });
    }
}

macro_rules! wire_number {
    ($($ty:ty => $xsd:literal),+ $(,)?) => {$(
        impl Wire for $ty {
            fn contract_type() -> Cow<'static, str> {
                $xsd.into()
            }
            fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
                let Some(e) = present(element) else {
                    return Ok(Self::default());
                };
                e.text.trim().parse::<$ty>().map_err(|_| {
                    DecodeError::new(
                        &e.name,
                        format!("'{}' is not a valid {}", clip(&e.text), $xsd),
                    )
                })
            }
            fn encode(&self, name: &str, out: &mut String) {
                write_text_element(out, name, &self.to_string());
            }
        }
    )+};
}

wire_number!(i32 => "int", i64 => "long", u32 => "unsignedInt");

impl Wire for f64 {
    fn contract_type() -> Cow<'static, str> {
        "double".into()
    }
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
        let Some(e) = present(element) else {
            return Ok(0.0);
        };
        match e.text.trim() {
            "INF" => Ok(f64::INFINITY),
            "-INF" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            t => t.parse::<f64>().map_err(|_| {
                DecodeError::new(&e.name, format!("'{}' is not a valid double", clip(t)))
            }),
        }
    }
    fn encode(&self, name: &str, out: &mut String) {
        let text = if self.is_nan() {
            "NaN".to_string()
        } else if self.is_infinite() {
            if *self > 0.0 { "INF" } else { "-INF" }.to_string()
        } else {
            self.to_string()
        };
        write_text_element(out, name, &text);
    }
}

/// A contract enumeration (the macro in `macros.rs` implements it).
pub trait WireEnum: Copy + Default + 'static {
    /// The enum's contract name.
    const NAME: &'static str;
    /// The wire literals in contract order.
    const LITERALS: &'static [&'static str];
    /// The literal of this value.
    fn as_str(self) -> &'static str;
    /// The value with this literal (case-sensitive, as XmlSerializer).
    fn from_literal(s: &str) -> Option<Self>;
}

impl<T: WireEnum> Wire for T {
    fn contract_type() -> Cow<'static, str> {
        T::NAME.into()
    }
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
        let Some(e) = present(element) else {
            return Ok(T::default());
        };
        T::from_literal(e.text.trim()).ok_or_else(|| {
            DecodeError::new(
                &e.name,
                format!(
                    "'{}' is not a valid value for {} (expected one of: {})",
                    clip(&e.text),
                    T::NAME,
                    T::LITERALS.join(", ")
                ),
            )
        })
    }
    fn encode(&self, name: &str, out: &mut String) {
        write_text_element(out, name, self.as_str());
    }
}

/// An enum input that may be left out: `None` when omitted or nil, else the value (an unknown
/// literal is refused as for any enum). For the inputs where "not sent" and "sent the first value"
/// must not look alike: an explicit `<mode>oathToken</mode>` is OATH, an omitted one is not.
pub fn decode_sent<T: WireEnum>(element: Option<&Element>) -> Result<Option<T>, DecodeError> {
    match present(element) {
        None => Ok(None),
        Some(e) => T::decode(Some(e)).map(Some),
    }
}

/// A contract complex type (the macro in `macros.rs` implements it).
pub trait ComplexType: Sized + Default {
    /// The type's contract name.
    const NAME: &'static str;
    /// Reads the fields from the element's children.
    fn decode_fields(element: &Element) -> Result<Self, DecodeError>;
    /// Writes the fields in contract order.
    fn encode_fields(&self, out: &mut String);
}

fn write_complex<T: ComplexType>(value: &T, name: &str, out: &mut String) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    value.encode_fields(out);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// `Error` and `CallResult` are always written (ASMX callers read them unconditionally), so they are
/// carried without `Option`; an absent element decodes to the default.
macro_rules! always_present {
    ($($ty:ty),+) => {$(
        impl Wire for $ty {
            fn contract_type() -> Cow<'static, str> {
                <$ty as ComplexType>::NAME.into()
            }
            fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
                match present(element) {
                    None => Ok(Self::default()),
                    Some(e) => <$ty>::decode_fields(e).map_err(|err| err.within(&e.name)),
                }
            }
            fn encode(&self, name: &str, out: &mut String) {
                write_complex(self, name, out);
            }
        }
    )+};
}

always_present!(super::Error, super::CallResult);

/// Complex values that may be null travel as `Option<T>`.
impl<T: ComplexType> Wire for Option<T> {
    fn contract_type() -> Cow<'static, str> {
        T::NAME.into()
    }
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
        match present(element) {
            None => Ok(None),
            Some(e) => T::decode_fields(e)
                .map(Some)
                .map_err(|err| err.within(&e.name)),
        }
    }
    fn encode(&self, name: &str, out: &mut String) {
        if let Some(v) = self {
            write_complex(v, name, out);
        }
    }
}

/// An item of a contract array: its item element name and array type name.
pub trait ArrayItem: Sized {
    /// Item element name (`UserRow`, `string`).
    const ITEM: &'static str;
    /// Decodes one item element.
    fn decode_item(element: &Element) -> Result<Self, DecodeError>;
    /// Encodes one item element.
    fn encode_item(&self, out: &mut String);
}

impl ArrayItem for String {
    const ITEM: &'static str = "string";
    fn decode_item(element: &Element) -> Result<Self, DecodeError> {
        Ok(element.text.clone().into_owned())
    }
    fn encode_item(&self, out: &mut String) {
        write_text_element(out, Self::ITEM, self);
    }
}

impl<T: ArrayItem> Wire for Option<Vec<T>> {
    fn contract_type() -> Cow<'static, str> {
        let item = T::ITEM;
        let mut upper = item.to_string();
        if let Some(first) = upper.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        format!("ArrayOf{upper} (items <{item}>)").into()
    }
    fn decode(element: Option<&Element>) -> Result<Self, DecodeError> {
        let Some(e) = present(element) else {
            return Ok(None);
        };
        e.children_named(NAMESPACE, T::ITEM)
            .map(|item| T::decode_item(item).map_err(|err| err.within(&e.name)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
    fn encode(&self, name: &str, out: &mut String) {
        let Some(items) = self else { return };
        if items.is_empty() {
            out.push('<');
            out.push_str(name);
            out.push_str(" />");
            return;
        }
        out.push('<');
        out.push_str(name);
        out.push('>');
        for item in items {
            item.encode_item(out);
        }
        out.push_str("</");
        out.push_str(name);
        out.push('>');
    }
}

/// An operation result made from a success flag: `bool` as is, a string result as its text.
pub trait FromBool {
    /// Converts.
    fn from_bool(ok: bool) -> Self;
    /// The flag, for boolean results.
    fn as_bool(&self) -> Option<bool>;
}

impl FromBool for bool {
    fn from_bool(ok: bool) -> Self {
        ok
    }
    fn as_bool(&self) -> Option<bool> {
        Some(*self)
    }
}

impl FromBool for Option<String> {
    fn from_bool(ok: bool) -> Self {
        Some(ok.to_string())
    }
    fn as_bool(&self) -> Option<bool> {
        None
    }
}

/// Shortens echoed input so a fault message cannot be made arbitrarily large by the caller.
pub fn clip(s: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().take(MAX).collect::<String>() + "…")
    }
}
