//! Golden fixtures: exchanges recorded by `pfgate record` (`src/mock/record.rs`), replayed by
//! `pfgate mock --replay DIR`.
//!
//! One JSON file per exchange (`0001-PfAuthUser_4.json`): operation, SOAP version and action, the
//! decoded inputs and the request body, and the response's status, content type and body — with
//! secrets replaced by `***` and phone numbers masked to their last two digits before anything is
//! written (the journal's rules, `journal::redact_value`). Replay matches a request on its
//! operation and its inputs redacted the same way (so any PIN matches a recorded `***`), and answers
//! the recorded bytes exactly. Several recordings of the same request answer in recorded order, the
//! last one repeating; a request nothing matches gets a `soap:Server` fault naming what was asked.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::faults::MockBody;
use super::journal;
use super::serve::{push, respond, Seen};
use super::MockState;
use crate::pfwssdk::soap::{Fault, SoapVersion};

/// Why the fixtures could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file or the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A file is not a fixture.
    #[error("{path}: not a pfgate fixture: {reason}")]
    Invalid {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// The recorded response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body, redacted.
    pub body: String,
}

/// One recorded exchange.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Wire operation (`-` when the request did not decode).
    pub operation: String,
    /// `1.1` or `1.2`.
    pub soap_version: String,
    /// The SOAPAction the caller sent, if any.
    #[serde(default)]
    pub soap_action: Option<String>,
    /// Decoded inputs, redacted.
    pub inputs: BTreeMap<String, String>,
    /// The request body, redacted (for the reader: replay matches on `operation` and `inputs`).
    pub request_body: String,
    /// What the upstream answered.
    pub response: RecordedResponse,
}

/// Rewrites the text of every secret or phone element of a SOAP envelope (paths counted from the
/// operation element, as in the journal). Everything else is copied byte for byte; a body that is
/// not XML is returned unchanged.
pub fn redact_xml(xml: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut out = String::with_capacity(xml.len());
    let mut stack: Vec<String> = Vec::new();
    let mut last = 0usize;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match reader.read_event() {
            Ok(Event::Eof) | Err(_) => break,
            Ok(Event::Start(e)) => {
                stack.push(e.local_name().into_inner().to_string());
            }
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Text(t)) if stack.len() > 3 => {
                let path = stack[3..].join(".");
                let raw: String = t.chars().collect();
                let redacted = journal::redact_value(&path, &raw);
                if redacted != raw {
                    let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                    if before < last || end > xml.len() || before > end {
                        continue;
                    }
                    out.push_str(&xml[last..before]);
                    out.push_str(&redacted);
                    last = end;
                }
            }
            Ok(_) => {}
        }
    }
    out.push_str(&xml[last.min(xml.len())..]);
    out
}

/// The key replay matches on.
fn key(operation: &str, inputs: &BTreeMap<String, String>) -> String {
    let mut k = operation.to_string();
    for (name, v) in inputs {
        k.push('\u{1f}');
        k.push_str(name);
        k.push('=');
        k.push_str(v);
    }
    k
}

/// The fixtures of a directory, by key, in file-name order.
#[derive(Debug, Default)]
pub struct Fixtures {
    by_key: HashMap<String, Vec<(String, Fixture)>>,
    used: Mutex<HashMap<String, usize>>,
    /// How many were loaded.
    pub count: usize,
}

impl Fixtures {
    /// Reads every `*.json` file of `dir`.
    pub fn load(dir: &Path) -> Result<Self, ReplayError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ReplayError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut fx = Fixtures::default();
        for p in files {
            let text = std::fs::read_to_string(&p).map_err(io(&p))?;
            let f: Fixture = serde_json::from_str(&text).map_err(|e| ReplayError::Invalid {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            fx.by_key
                .entry(key(&f.operation, &f.inputs))
                .or_default()
                .push((name, f));
            fx.count += 1;
        }
        Ok(fx)
    }

    /// The fixture for this request (the next one in recorded order for a repeated request).
    pub fn find(
        &self,
        operation: &str,
        inputs: &BTreeMap<String, String>,
    ) -> Option<&(String, Fixture)> {
        let k = key(operation, &journal::redact_map(inputs));
        let list = self.by_key.get(&k)?;
        let mut used = match self.used.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = used.entry(k).or_insert(0);
        let i = (*n).min(list.len().saturating_sub(1));
        *n += 1;
        list.get(i)
    }
}

/// Answers a request from the fixtures and journals it.
pub fn answer(
    mock: &MockState,
    fixtures: &Fixtures,
    seen: &Seen,
    version: SoapVersion,
) -> http::Response<MockBody> {
    let empty = BTreeMap::new();
    let (operation, inputs) = match &seen.decoded {
        Some(d) => (d.operation.unwrap_or("-"), &d.inputs),
        None => ("-", &empty),
    };
    match fixtures.find(operation, inputs) {
        Some((name, f)) => {
            let status = StatusCode::from_u16(f.response.status).unwrap_or(StatusCode::OK);
            let mut e = seen.entry(
                Some(name.clone()),
                None,
                status.as_u16(),
                "replayed",
                f.response.body.as_bytes(),
            );
            e.replayed_from = Some(name.clone());
            push(mock, e);
            respond(status, &f.response.content_type, f.response.body.clone())
        }
        None => {
            let fault = Fault::server(format!(
                "pfgate mock --replay: no recorded exchange matches {operation} with these inputs."
            ))
            .to_envelope(version);
            push(mock, seen.entry(None, None, 500, "fault", fault.as_bytes()));
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                version.content_type(),
                fault,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_and_phone_elements_only() {
        let xml = r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><ValidatePin xmlns="y"><username>a</username><pin>2580</pin><phoneNumber>4255550100</phoneNumber></ValidatePin></s:Body></s:Envelope>"#;
        let out = redact_xml(xml);
        assert_eq!(
            out,
            xml.replace(">2580<", ">***<")
                .replace(">4255550100<", ">********00<")
        );
        let resp = r#"<s:Envelope xmlns:s="x"><s:Body><R><error><Code>12</Code></error></R></s:Body></s:Envelope>"#;
        assert_eq!(redact_xml(resp), resp);
        assert_eq!(redact_xml("not xml"), "not xml");
    }
}
