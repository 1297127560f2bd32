//! `pfgate.example.toml` is the whole story (issue #18, items 1 and 2): every key the
//! configuration structs accept is in it, commented or not, and every commented block parses
//! once uncommented.
//!
//! The keys are derived from the structs themselves: a deserializer that, instead of reading a
//! document, answers each `deserialize_struct` with every field the struct names (serde passes
//! them), descending into each one. A key added to a struct without a line in the example fails
//! the test, naming the key.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use pfgate::config::FileConfig;

const EXAMPLE: &str = include_str!("../../pfgate.example.toml");

/// The provider kinds and their settings' keys (the kind dispatch of `config::validate`).
fn provider_kinds() -> Vec<(&'static str, BTreeSet<String>)> {
    vec![
        (
            "webhook",
            keys_of::<pfgate::providers::webhook::WebhookSettings>(),
        ),
        ("duo", keys_of::<pfgate::providers::duo::DuoSettings>()),
        (
            "twilio-verify",
            keys_of::<pfgate::providers::twilio::TwilioSettings>(),
        ),
        ("oidc", keys_of::<pfgate::providers::oidc::OidcSettings>()),
        ("scripted", BTreeSet::new()),
    ]
}

/// Every dotted key `T` accepts (array-of-tables elements share their array's name).
fn keys_of<T: DeserializeOwned>() -> BTreeSet<String> {
    let keys = Rc::new(RefCell::new(BTreeSet::new()));
    let _ = T::deserialize(KeyTracer {
        prefix: String::new(),
        keys: keys.clone(),
    });
    let out = keys.borrow().clone();
    out
}

/// Every key of the configuration file, `providers.<kind>.<key>` for each provider kind.
fn code_keys() -> BTreeSet<String> {
    let mut keys = keys_of::<FileConfig>();
    for (kind, fields) in provider_kinds() {
        keys.insert(format!("providers.{kind}"));
        keys.insert(format!("providers.{kind}.kind"));
        keys.extend(fields.iter().map(|f| format!("providers.{kind}.{f}")));
    }
    keys
}

/// Walks a type's `Deserialize` impl, recording every struct field under `prefix`.
struct KeyTracer {
    prefix: String,
    keys: Rc<RefCell<BTreeSet<String>>>,
}

impl KeyTracer {
    fn child(&self, field: &str) -> Self {
        let prefix = if self.prefix.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.prefix)
        };
        Self {
            prefix,
            keys: self.keys.clone(),
        }
    }
}

#[derive(Debug)]
struct TraceError(String);

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TraceError {}
impl de::Error for TraceError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// A string most string-typed settings accept (a `SocketAddr` too), so that a field's parse does
/// not stop the walk of its siblings.
const LEAF: &str = "127.0.0.1:1";

impl<'de> de::Deserializer<'de> for KeyTracer {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_str(LEAF)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_bool(false)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(1)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(1)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_f64(1.0)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_seq(OneElement(Some(self)))
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_map(Fields {
            parent: self,
            fields: &[],
            next: 0,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        for f in fields {
            self.keys.borrow_mut().insert(self.child(f).prefix);
        }
        v.visit_map(Fields {
            parent: self,
            fields,
            next: 0,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        let first: &str = variants.first().copied().unwrap_or("");
        v.visit_enum(IntoDeserializer::<TraceError>::into_deserializer(first))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, TraceError> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_unit()
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(1)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(1)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(1)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(1)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(1)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_i64(1)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 f32 char str string bytes byte_buf unit_struct tuple tuple_struct identifier
        ignored_any
    }
}

/// A sequence of one element (so a `Vec<Struct>`'s struct is walked).
struct OneElement(Option<KeyTracer>);

impl<'de> de::SeqAccess<'de> for OneElement {
    type Error = TraceError;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TraceError> {
        self.0.take().map(|t| seed.deserialize(t)).transpose()
    }
}

/// A struct's fields, each with a tracer for its value.
struct Fields {
    parent: KeyTracer,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = TraceError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.fields.get(self.next) {
            Some(f) => seed
                .deserialize(IntoDeserializer::<TraceError>::into_deserializer(*f))
                .map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let field = self.fields.get(self.next).copied().unwrap_or("");
        self.next += 1;
        seed.deserialize(self.parent.child(field))
    }
}

/// A commented line that is configuration (a table header or `key = value`), uncommented.
fn commented_config(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('#')?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    is_config(rest).then_some(rest)
}

/// A table header or a `key = value` line.
fn is_config(line: &str) -> bool {
    let t = line.trim();
    if let Some(h) = t.strip_prefix('[') {
        let name = h.trim_start_matches('[');
        let end = name.find(']').unwrap_or(0);
        // After the closing bracket(s): nothing, or a comment (else it is prose).
        let after = name[end..].trim_start_matches(']').trim_start();
        return end > 0
            && (after.is_empty() || after.starts_with('#'))
            && name[..end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    }
    match t.split_once('=') {
        Some((k, v)) => {
            let k = k.trim();
            !k.is_empty()
                && !v.trim().is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The dotted name of a header line (`[[auth.basic]]` gives `auth.basic`).
fn header_name(line: &str) -> Option<String> {
    let t = line.trim();
    if !t.starts_with('[') {
        return None;
    }
    let name = t.trim_start_matches('[');
    name.find(']').map(|end| name[..end].to_string())
}

/// Every key the example names, commented or not, with `providers.NAME` replaced by the
/// provider's kind (from its `kind = "…"` line).
fn example_keys() -> BTreeSet<String> {
    // First pass: each provider name's kind.
    let mut kinds = std::collections::HashMap::new();
    let mut section = String::new();
    for line in EXAMPLE.lines() {
        let line = commented_config(line).unwrap_or(line);
        if let Some(h) = header_name(line) {
            section = h;
        } else if let Some(("kind", v)) = line.split_once('=').map(|(k, v)| (k.trim(), v)) {
            if let Some(name) = section.strip_prefix("providers.") {
                let kind = v.split('#').next().unwrap_or("").trim().trim_matches('"');
                kinds.insert(name.to_string(), kind.to_string());
            }
        }
    }
    let by_kind = |path: &str| -> String {
        match path.strip_prefix("providers.") {
            Some(rest) => {
                let (name, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let kind = kinds.get(name).cloned().unwrap_or(format!("?{name}"));
                if tail.is_empty() {
                    format!("providers.{kind}")
                } else {
                    format!("providers.{kind}.{tail}")
                }
            }
            None => path.to_string(),
        }
    };
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for raw in EXAMPLE.lines() {
        let line = match commented_config(raw) {
            Some(l) => l,
            None if raw.trim_start().starts_with('#') => continue,
            None => raw,
        };
        if let Some(h) = header_name(line) {
            let mut prefix = String::new();
            for part in h.split('.') {
                prefix = if prefix.is_empty() {
                    part.to_string()
                } else {
                    format!("{prefix}.{part}")
                };
                keys.insert(by_kind(&prefix));
            }
            section = h;
        } else if let Some((k, _)) = line.split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                let path = if section.is_empty() {
                    k.to_string()
                } else {
                    format!("{section}.{k}")
                };
                keys.insert(by_kind(&path));
            }
        }
    }
    keys
}

/// Every key of every configuration struct is in pfgate.example.toml (commented or not). Derived
/// from the structs: a key added in code fails here by name until the example documents it.
#[test]
fn example_documents_every_configuration_key() {
    let code = code_keys();
    assert!(
        code.contains("server.listen") && code.contains("providers.duo.integration_key"),
        "the key walk found too little: {code:?}"
    );
    let example = example_keys();
    let missing: Vec<&String> = code.difference(&example).collect();
    assert!(
        missing.is_empty(),
        "pfgate.example.toml does not document these configuration keys (add each, commented, \
         with its default, in its section):\n  {}",
        missing
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    // And the example names nothing the code does not know (a misspelt or removed key).
    let unknown: Vec<&String> = example.difference(&code).collect();
    assert!(
        unknown.is_empty(),
        "pfgate.example.toml names keys no configuration struct has: {unknown:?}"
    );
}

/// One commented block, uncommented in place (its commented section header with it), parses as
/// a configuration file: TOML syntax, known keys, the right types; a provider's settings parse as
/// its kind's. `what` names the block in failures.
fn parse_with_block(lines: &[&str], block: &[usize], what: &str) -> Result<(), String> {
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = if block.contains(&i) {
                commented_config(l).unwrap_or(l)
            } else {
                l
            };
            format!("{l}\n")
        })
        .collect();
    let file: FileConfig =
        toml::from_str(&text).map_err(|e| format!("{what}: {}", e.to_string().trim()))?;
    let kinds = provider_kinds();
    for (name, table) in &file.providers {
        let mut table = table.clone();
        let kind = table
            .remove("kind")
            .and_then(|k| k.as_str().map(str::to_string))
            .unwrap_or_default();
        let value = toml::Value::Table(table);
        let parsed = match kind.as_str() {
            "webhook" => value
                .try_into::<pfgate::providers::webhook::WebhookSettings>()
                .map(|_| ()),
            "duo" => value
                .try_into::<pfgate::providers::duo::DuoSettings>()
                .map(|_| ()),
            "twilio-verify" => value
                .try_into::<pfgate::providers::twilio::TwilioSettings>()
                .map(|_| ()),
            "oidc" => value
                .try_into::<pfgate::providers::oidc::OidcSettings>()
                .map(|_| ()),
            "scripted" => Ok(()),
            other => {
                return Err(format!(
                    "{what}: providers.{name}: kind '{other}' is not one of {:?}",
                    kinds.iter().map(|k| k.0).collect::<Vec<_>>()
                ))
            }
        };
        parsed.map_err(|e| format!("{what}: providers.{name}: {}", e.to_string().trim()))?;
    }
    Ok(())
}

/// The commented blocks: a commented section (its header to the next header, its sub-tables
/// included) is one block; under an active header, each run of commented configuration lines is
/// one.
fn commented_blocks(lines: &[&str]) -> Vec<Vec<usize>> {
    let mut blocks: Vec<Vec<usize>> = Vec::new();
    // The header of the commented section being read, if any.
    let mut section: Option<String> = None;
    let mut run: Vec<usize> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let commented = commented_config(l);
        let header = commented.and_then(header_name);
        let sub_table =
            matches!((&section, &header), (Some(s), Some(h)) if h.starts_with(&format!("{s}.")));
        match (commented, header) {
            (Some(_), Some(h)) if !sub_table => {
                if !run.is_empty() {
                    blocks.push(std::mem::take(&mut run));
                }
                section = Some(h);
                run.push(i);
            }
            (Some(_), _) => run.push(i),
            (None, _) if header_name(l).is_some() => {
                section = None;
                if !run.is_empty() {
                    blocks.push(std::mem::take(&mut run));
                }
            }
            // Prose inside a commented section stays in its block.
            (None, _) if section.is_some() => {}
            (None, _) => {
                if !run.is_empty() {
                    blocks.push(std::mem::take(&mut run));
                }
            }
        }
    }
    if !run.is_empty() {
        blocks.push(run);
    }
    blocks
}

/// The example parses as it is, and with each commented block uncommented: a sample an
/// administrator uncomments must not be a parse error (the `"CONTOSO\adfs-sdk"` single backslash
/// was). A block is a commented section, or a run of commented keys under an active section.
#[test]
fn every_commented_block_of_the_example_parses_once_uncommented() {
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    parse_with_block(&lines, &[], "the example as shipped").unwrap();
    let blocks = commented_blocks(&lines);
    assert!(blocks.len() >= 10, "too few blocks found: {blocks:?}");
    let failures: Vec<String> = blocks
        .iter()
        .filter_map(|b| {
            let what = format!(
                "lines {}-{}",
                b.first().map_or(0, |i| i + 1),
                b.last().map_or(0, |i| i + 1)
            );
            parse_with_block(&lines, b, &what).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checks can fail: a key removed from the example is reported by name, and a block with a
/// single backslash in a basic string is reported by its lines.
#[test]
fn the_example_checks_catch_a_missing_key_and_a_bad_block() {
    let lines: Vec<&str> = "[server]\n# listen = \"0.0.0.0:443\"\n# [[auth.principals]]\n# name = \"CONTOSO\\adfs-sdk\"\n# allow = [\"all\"]\n"
        .lines()
        .collect();
    let blocks = commented_blocks(&lines);
    assert_eq!(blocks, vec![vec![1], vec![2, 3, 4]]);
    assert!(parse_with_block(&lines, &blocks[0], "a").is_ok());
    let err = parse_with_block(&lines, &blocks[1], "lines 3-5").unwrap_err();
    assert!(err.starts_with("lines 3-5:"), "{err}");
    assert!(code_keys().contains("auth.principals.name"));
    assert!(!example_keys().contains("server.no_such_key"));
}
