//! The journal: every request the test double received, as a CI test asserts on it — decoded
//! operation and inputs, caller, the rule that decided it, the response and the timing.
//!
//! Secrets never enter it: PINs, passcodes, OATH codes, passwords, tokens and secret keys are
//! replaced by `***`, and phone numbers keep only their last two digits, before an entry is stored
//! (the same rules redact recorded fixtures, `src/mock/replay.rs`). The journal is bounded
//! ([`CAPACITY`] entries, oldest dropped first) so a long CI run cannot grow the double without end.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::Serialize;

use crate::pfwssdk::soap::xml::Element;
use crate::pfwssdk::Operation;

/// Entries kept; older ones are dropped first.
pub const CAPACITY: usize = 10_000;

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// Element names (compared case-insensitively) whose text is a secret wherever they appear.
const SECRET_NAMES: &[&str] = &[
    "pin",
    "userpin",
    "newpin",
    "password",
    "passcode",
    "activationcode",
    "confirmationcode",
    "secretkey",
    "oathtokensecretkey",
    "statictoken",
    "devicetoken",
    "answer",
    "cookieid",
];

/// True when the element at `path` (dotted, from the operation element) holds a secret. `code` is
/// an OATH code only as a request parameter; nested (`error.Code`, `callResult.Code`) it is a
/// result code and stays readable.
pub fn is_secret(path: &str) -> bool {
    let last = leaf_name(path);
    SECRET_NAMES.iter().any(|n| n.eq_ignore_ascii_case(last))
        || (last.eq_ignore_ascii_case("code") && !path.contains('.'))
}

/// The last name of a dotted path, without its `[n]` (compared without allocating: every journal
/// entry asks this of each of its fields).
fn leaf_name(path: &str) -> &str {
    // `.` and `[` are ASCII: the byte positions are character boundaries.
    let start = path.bytes().rposition(|b| b == b'.').map_or(0, |i| i + 1);
    let last = path.get(start..).unwrap_or(path);
    match last.bytes().position(|b| b == b'[') {
        Some(end) => last.get(..end).unwrap_or(last),
        None => last,
    }
}

/// True when the element at `path` holds a phone number (`phoneNumber`, `Phone`, `BackupPhone`,
/// `userPhone`, `phoneFilter` …; not `phoneAppMode`, `UserCanChangePhone`).
pub fn is_phone(path: &str) -> bool {
    let last = leaf_name(path);
    let ends_with_phone = last.len() >= 5
        && last
            .get(last.len() - 5..)
            .is_some_and(|t| t.eq_ignore_ascii_case("phone"));
    last.eq_ignore_ascii_case("phonenumber")
        || last.eq_ignore_ascii_case("phonefilter")
        || (ends_with_phone && !last.eq_ignore_ascii_case("usercanchangephone"))
}

/// `value` as it may be stored: secrets replaced, phone numbers masked to their last two digits.
pub fn redact_value(path: &str, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    if is_secret(path) {
        return REDACTED.into();
    }
    // A number has digits; a flag about phones (`true`) has none and stays readable.
    if is_phone(path) && value.bytes().any(|b| b.is_ascii_digit()) {
        // The digits alone, all but the last two as `*` (no other byte of UTF-8 is a digit).
        let digits = || value.bytes().filter(u8::is_ascii_digit);
        let masked = digits().count().saturating_sub(2);
        return digits()
            .enumerate()
            .map(|(i, d)| if i < masked { '*' } else { char::from(d) })
            .collect();
    }
    value.to_string()
}

/// [`redact_value`] on an owned value: kept as it is (no copy) when nothing in it is redacted.
pub fn redacted(path: &str, value: String) -> String {
    if value.is_empty() || !(is_secret(path) || is_phone(path)) {
        return value;
    }
    redact_value(path, &value)
}

/// The element's descendants as `path → text`: leaves by local name, nested ones dotted
/// (`addUserSettings.Phone`), repeated ones numbered (`tagIds.string[2]`). `xsi:nil` leaves are
/// left out (absent and nil mean the same to the engine). Not redacted: the caller decides.
pub fn flatten(el: &Element) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<(String, &Element)> = el
        .children
        .iter()
        .rev()
        .map(|c| (c.name.to_string(), c))
        .collect();
    while let Some((path, e)) = stack.pop() {
        if e.nil {
            continue;
        }
        if e.children.is_empty() {
            let mut key = path;
            let mut n = 1;
            while out.contains_key(&key) {
                n += 1;
                let base = key.split('[').next().unwrap_or(&key);
                key = format!("{base}[{n}]");
            }
            out.insert(key, e.text.to_string());
        } else {
            for c in e.children.iter().rev() {
                stack.push((format!("{path}.{}", c.name), c));
            }
        }
    }
    out
}

/// Contract types whose every value is safe to hold as it is: numbers, flags, strings (the
/// element's name decides whether a string is a secret), the result types whose nested fields
/// are only `Code` and `Description`, and the enumerations (fixed literals).
fn plain_type(contract_type: &str) -> bool {
    const PLAIN: &[&str] = &[
        "string",
        "int",
        "long",
        "unsignedInt",
        "double",
        "boolean",
        "CallResult",
        "Error",
    ];
    PLAIN.contains(&contract_type)
        || crate::pfwssdk::enum_specs()
            .iter()
            .any(|(name, _)| *name == contract_type)
}

fn plain_operations() -> HashSet<&'static str> {
    let plain = |(name, ty): &(&str, String)| plain_type(ty) && !is_secret(name) && !is_phone(name);
    Operation::ALL
        .iter()
        .map(|op| op.spec())
        .filter(|s| {
            let result = (s.name, s.result_type.clone());
            plain(&result) && s.outputs.iter().all(plain)
        })
        .map(|s| s.name)
        .collect()
}

/// True when no field of the operation's response can be a secret or a phone number (its result
/// and outputs are all of [`plain_type`]s and none is named like one): its encoded response may
/// then be kept as it is and flattened when the journal is read ([`Journal::push_answer`]).
pub fn response_is_plain(operation: &str) -> bool {
    static PLAIN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    PLAIN.get_or_init(plain_operations).contains(operation)
}

/// `map` with every value redacted, in place (only the values redaction changes are new).
pub fn redact_in_place(mut map: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (k, v) in map.iter_mut() {
        let value = std::mem::take(v);
        *v = redacted(k, value);
    }
    map
}

/// A flattened map with every value redacted.
pub fn redact_map(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), redacted(k, v.clone())))
        .collect()
}

/// Who called.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallerInfo {
    /// The caller's address.
    pub ip: String,
    /// The authenticated principal (`anonymous`, or `-` when authentication was refused).
    pub principal: String,
}

/// What the double answered.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResponseInfo {
    /// HTTP status sent (0 when the connection was dropped before the headers).
    pub status: u16,
    /// `true`, or `false/error=N/call=M`, as in the access log; `fault` for a SOAP fault.
    pub outcome: String,
    /// The response's decoded fields (redacted), e.g. `callResult.Code`, `error.Code`.
    pub fields: BTreeMap<String, String>,
}

/// One request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number, from 1, never reused (not even after a clear).
    pub seq: u64,
    /// When it arrived, milliseconds since the Unix epoch.
    pub time_unix_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// `1.1` or `1.2`, when the request was SOAP.
    pub soap_version: Option<String>,
    /// Wire operation, when the request decoded.
    pub operation: Option<String>,
    /// The `username` input, when there is one (not a secret: what tests filter on).
    pub user: Option<String>,
    /// Decoded inputs, redacted.
    pub inputs: BTreeMap<String, String>,
    /// Who called.
    pub caller: CallerInfo,
    /// The rule that decided the request; `None` = unmatched (the engine's normal behaviour).
    pub rule: Option<String>,
    /// The fault applied (`http_503`, `drop_before_headers` …).
    pub fault: Option<String>,
    /// The recorded fixture that answered (`pfgate mock --replay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_from: Option<String>,
    /// What was answered.
    pub response: ResponseInfo,
    /// Time from the request's arrival to the response headers, in milliseconds.
    pub duration_ms: u64,
}

/// A filter for listing or counting (`?operation=…&user=…`): exact operation, case-insensitive user.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Wire operation.
    pub operation: Option<String>,
    /// Username.
    pub user: Option<String>,
}

impl Filter {
    /// From a URL query string.
    pub fn from_query(query: Option<&str>) -> Self {
        let mut f = Filter::default();
        for pair in query.unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "operation" if !v.is_empty() => f.operation = Some(v),
                "user" if !v.is_empty() => f.user = Some(v),
                _ => {}
            }
        }
        f
    }

    /// True when the entry passes.
    pub fn accepts(&self, e: &Entry) -> bool {
        self.operation
            .as_ref()
            .is_none_or(|o| e.operation.as_deref() == Some(o.as_str()))
            && self.user.as_ref().is_none_or(|u| {
                e.user
                    .as_deref()
                    .is_some_and(|eu| eu.eq_ignore_ascii_case(u))
            })
    }
}

/// `%XX` and `+` decoding for query values (user names carry `@`, `\`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bounded, shared list of entries.
#[derive(Debug, Default)]
pub struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    entries: VecDeque<Stored>,
}

/// An entry as kept: its response fields either in it, or still to be read from the response
/// body (a plain operation's answer, [`response_is_plain`]).
#[derive(Debug, Clone)]
struct Stored {
    entry: Arc<Entry>,
    answer: Option<Bytes>,
}

impl Stored {
    fn entry(self, fields: fn(&[u8]) -> BTreeMap<String, String>) -> Entry {
        let mut e = Arc::unwrap_or_clone(self.entry);
        if let Some(body) = self.answer {
            e.response.fields = fields(&body);
        }
        e
    }
}

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Stores an entry (its `seq` is assigned here) and returns it as stored, shared: the caller
    /// logs it after the lock is released, without a copy.
    pub fn push(&self, entry: Entry) -> Arc<Entry> {
        self.store(entry, None)
    }

    /// [`Journal::push`] for the answer to a plain operation ([`response_is_plain`]): `answer` is
    /// the response body it sent, whose fields are read when the journal is (the request does not
    /// pay for it). The caller checks the operation is plain: its body holds no secret.
    pub fn push_answer(&self, entry: Entry, answer: Bytes) -> Arc<Entry> {
        self.store(entry, Some(answer))
    }

    fn store(&self, mut entry: Entry, answer: Option<Bytes>) -> Arc<Entry> {
        let mut g = self.lock();
        g.next += 1;
        entry.seq = g.next;
        let entry = Arc::new(entry);
        if g.entries.len() >= CAPACITY {
            g.entries.pop_front();
        }
        let stored = Stored {
            entry: entry.clone(),
            answer,
        };
        g.entries.push_back(stored);
        entry
    }

    /// The entries the filter accepts, oldest first. The deferred response fields are read after
    /// the lock is released: requests being journaled meanwhile do not wait for it.
    pub fn list(&self, filter: &Filter) -> Vec<Entry> {
        let picked: Vec<Stored> = self
            .lock()
            .entries
            .iter()
            .filter(|s| filter.accepts(&s.entry))
            .cloned()
            .collect();
        picked
            .into_iter()
            .map(|s| s.entry(super::serve::response_fields))
            .collect()
    }

    /// Forgets every entry (sequence numbers go on).
    pub fn clear(&self) {
        self.lock().entries.clear();
    }
}

/// Counts for the verification endpoint. They cover SOAP requests (`POST` to the SDK); the rest
/// (WSDL and help page fetches, which every proxy generator and zeep make) only in `other`.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Counts {
    /// SOAP requests counted.
    pub total: u64,
    /// Other requests (`GET ?WSDL`, help page, probes).
    pub other: u64,
    /// By wire operation (`-` for requests that did not decode).
    pub by_operation: BTreeMap<String, u64>,
    /// By username (case as first seen).
    pub by_user: BTreeMap<String, u64>,
    /// By operation, then user.
    pub by_operation_and_user: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests no rule matched (they got the engine's normal behaviour).
    pub unmatched: Vec<Entry>,
}

/// Counts the entries.
pub fn count(entries: &[Entry]) -> Counts {
    let mut c = Counts::default();
    for e in entries {
        if e.method != "POST" {
            c.other += 1;
            continue;
        }
        c.total += 1;
        let op = e.operation.clone().unwrap_or_else(|| "-".into());
        *c.by_operation.entry(op.clone()).or_default() += 1;
        if let Some(u) = &e.user {
            let key = c
                .by_user
                .keys()
                .find(|k| k.eq_ignore_ascii_case(u))
                .cloned()
                .unwrap_or_else(|| u.clone());
            *c.by_user.entry(key.clone()).or_default() += 1;
            *c.by_operation_and_user
                .entry(op)
                .or_default()
                .entry(key)
                .or_default() += 1;
        }
        if e.rule.is_none() {
            c.unmatched.push(e.clone());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_masks_phones() {
        assert_eq!(redact_value("pin", "2580"), REDACTED);
        assert_eq!(redact_value("code", "123456"), REDACTED);
        assert_eq!(redact_value("error.Code", "12"), "12");
        assert_eq!(redact_value("addUserSettings.Pin", "2580"), REDACTED);
        assert_eq!(redact_value("password", "hunter2"), REDACTED);
        assert_eq!(redact_value("staticToken", "tok"), REDACTED);
        assert_eq!(redact_value("phoneNumber", "425 555 0100"), "********00");
        assert_eq!(
            redact_value("userSettings.BackupPhone", "4255550177"),
            "********77"
        );
        assert_eq!(redact_value("phoneAppMode", "standard"), "standard");
        assert_eq!(redact_value("s.UserCanChangePhone", "true"), "true");
        assert_eq!(redact_value("s.KeepPhoneSynchronized", "false"), "false");
        assert_eq!(redact_value("phoneFilter", "*0100"), "**00");
        assert_eq!(redact_value("username", "alice"), "alice");
        assert_eq!(redact_value("pin", ""), "");
    }

    #[test]
    fn plain_operations_are_those_whose_answers_hold_no_secret() {
        assert!(response_is_plain("PfAuthUser_5"));
        assert!(response_is_plain("PfAuthUser_4"));
        assert!(!response_is_plain("NoSuchOperation"));
        // Operations answering user settings (PINs, phones) or secret keys are never deferred.
        for op in Operation::ALL {
            let spec = op.spec();
            if spec.outputs.iter().any(|(_, ty)| !plain_type(ty)) {
                assert!(!response_is_plain(spec.name), "{}", spec.name);
            }
        }
        // The two result types taken as plain: their nested fields are named like no secret.
        for (name, _) in crate::pfwssdk::CallResult::field_specs()
            .into_iter()
            .chain(crate::pfwssdk::Error::field_specs())
        {
            let path = format!("callResult.{name}");
            assert!(!is_secret(&path) && !is_phone(&path), "{name}");
        }
    }

    #[test]
    fn a_deferred_answer_reads_its_fields_when_listed() {
        let body = crate::pfwssdk::soap::envelope::encode_response(
            crate::pfwssdk::soap::SoapVersion::V11,
            &crate::pfwssdk::Response::failure(
                Operation::PfAuthUser_5,
                crate::pfwssdk::Error::new(12, "denied"),
            ),
        );
        let entry = Entry {
            seq: 0,
            time_unix_ms: 0,
            method: "POST".into(),
            path: "/".into(),
            soap_version: None,
            operation: Some("PfAuthUser_5".into()),
            user: None,
            inputs: BTreeMap::new(),
            caller: CallerInfo {
                ip: "127.0.0.1".into(),
                principal: "anonymous".into(),
            },
            rule: None,
            fault: None,
            replayed_from: None,
            response: ResponseInfo {
                status: 200,
                outcome: "false".into(),
                fields: BTreeMap::new(),
            },
            duration_ms: 0,
        };
        let j = Journal::default();
        let stored = j.push_answer(entry, Bytes::from(body));
        assert!(stored.response.fields.is_empty());
        let listed = j.list(&Filter::default());
        assert_eq!(listed.len(), 1);
        let fields = &listed[0].response.fields;
        assert_eq!(fields.get("error.Code").map(String::as_str), Some("12"));
        assert_eq!(
            fields.get("PfAuthUser_5Result").map(String::as_str),
            Some("false")
        );
    }

    #[test]
    fn decodes_query_filters() {
        let f = Filter::from_query(Some("operation=PfAuthUser_4&user=CONTOSO%5Cbob+x"));
        assert_eq!(f.operation.as_deref(), Some("PfAuthUser_4"));
        assert_eq!(f.user.as_deref(), Some("CONTOSO\\bob x"));
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
