//! Log lines written by hand, byte for byte as `tracing-subscriber`'s `fmt` layer writes them.
//!
//! The lines written for every request (the audit event, the test double's request line) cost
//! about a tenth of a request's instructions each when formatted by `tracing-subscriber`. When
//! [`crate::telemetry::init`] installed that subscriber without colours, these lines are written
//! here instead, with the same bytes, at once, in one write; otherwise (a subscriber of a test's
//! own, colours at a terminal) they go through `tracing` as before. Each user of this module
//! keeps a test that compares its line with the one `tracing-subscriber` writes.

use std::io::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::telemetry::LogFormat;

/// The format lines are written in by hand; unset, they go through `tracing`.
static DIRECT: OnceLock<LogFormat> = OnceLock::new();

/// Writes lines by hand in `format` from now on (called once by `telemetry::init`).
pub(crate) fn write_directly(format: LogFormat) {
    let _ = DIRECT.set(format);
}

/// The format to write lines in by hand, when they are.
pub(crate) fn direct() -> Option<LogFormat> {
    DIRECT.get().copied()
}

/// A value of a line, typed as `tracing` records it.
#[derive(Clone, Copy)]
pub(crate) enum Field<'a> {
    /// A `&str` recorded as itself (`Debug`: quoted and escaped in text lines).
    Text(&'a str),
    /// A value recorded with `%` (`Display`: as it is in text lines, a string in JSON).
    Display(&'a str),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float.
    Float(f64),
}

/// What every line starts with.
pub(crate) struct Head<'a> {
    /// When the event happened.
    pub now: SystemTime,
    /// `INFO`, `WARN` …
    pub level: &'a [u8],
    /// The event's target.
    pub target: &'a str,
    /// The event's message.
    pub message: &'a str,
}

/// Appends the line `tracing-subscriber` writes for an event of `head` with `fields`: `text` is
/// its default format (`Debug` of each value, `message` first, unnamed), `json` its flattened JSON
/// (serde_json's escaping and numbers). The message and target must need no escaping.
pub(crate) fn write(
    buf: &mut Vec<u8>,
    format: LogFormat,
    head: &Head<'_>,
    fields: &[(&str, Field<'_>)],
) {
    let json = format == LogFormat::Json;
    if json {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        crate::telemetry::access_log::write_rfc3339(buf, head.now);
        buf.extend_from_slice(b"\",\"level\":\"");
        buf.extend_from_slice(head.level);
        buf.extend_from_slice(b"\",\"message\":\"");
        buf.extend_from_slice(head.message.as_bytes());
        buf.push(b'"');
    } else {
        crate::telemetry::access_log::write_rfc3339(buf, head.now);
        buf.extend_from_slice(b"  ");
        buf.extend_from_slice(head.level);
        buf.push(b' ');
        buf.extend_from_slice(head.target.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(head.message.as_bytes());
    }
    for &(name, value) in fields {
        if json {
            push_json_field(buf, name, value);
        } else {
            push_text_field(buf, name, value);
        }
    }
    if json {
        buf.extend_from_slice(b",\"target\":\"");
        buf.extend_from_slice(head.target.as_bytes());
        buf.extend_from_slice(b"\"}");
    }
    buf.push(b'\n');
}

/// ` name=value` as `tracing-subscriber`'s text lines write it.
fn push_text_field(buf: &mut Vec<u8>, name: &str, value: Field<'_>) {
    buf.push(b' ');
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'=');
    match value {
        Field::Text(t) => push_debug_str(buf, t),
        Field::Display(t) => buf.extend_from_slice(t.as_bytes()),
        Field::Int(i) => buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Field::UInt(u) => buf.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
        Field::Float(f) => {
            let _ = write!(buf, "{f:?}");
        }
    }
}

/// `,"name":value` as its JSON lines write it (serde_json's escaping and numbers).
fn push_json_field(buf: &mut Vec<u8>, name: &str, value: Field<'_>) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
    let _ = match value {
        Field::Text(t) | Field::Display(t) => serde_json::to_writer(&mut *buf, t),
        Field::Int(i) => serde_json::to_writer(&mut *buf, &i),
        Field::UInt(u) => serde_json::to_writer(&mut *buf, &u),
        Field::Float(f) => serde_json::to_writer(&mut *buf, &f),
    };
}

/// A `str` as `Debug` writes it (quoted, escaped).
fn push_debug_str(buf: &mut Vec<u8>, value: &str) {
    // Printable ASCII but the quote and the backslash is what `Debug` leaves as it is.
    if value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{value:?}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::{format::Writer, time::FormatTime, MakeWriter};

    /// What `tracing-subscriber` wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The epoch, as the hand-written lines of the tests are given it.
    struct Epoch;

    impl FormatTime for Epoch {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str("1970-01-01T00:00:00.000000Z")
        }
    }

    /// What `emit` writes through `tracing`, in `format`, with the subscriber `telemetry::init`
    /// installs (no colours) and the epoch for a clock: what a hand-written line must equal.
    pub(crate) fn captured(format: LogFormat, emit: impl Fn()) -> String {
        let out = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_timer(Epoch)
            .with_writer(out.clone());
        match format {
            LogFormat::Text => tracing::subscriber::with_default(builder.finish(), emit),
            LogFormat::Json => {
                tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), emit)
            }
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }
}
