//! The access log: one line per HTTP request, written off the request path.
//!
//! Why not a `tracing` event: formatting a structured event through `tracing-subscriber` and writing
//! it to stderr with its own system call cost about 10 µs per request — more than pfgate's SOAP
//! decoding and engine together (BENCHMARKS.md). An access log is a stream of its own (IIS writes
//! its W3C log apart from the event log), so it gets a cheaper path: the request formats its line
//! by hand into a shared buffer, and one background thread writes the buffer to stderr every
//! [`FLUSH_INTERVAL`] in a single write. A request never waits for the terminal or the pipe unless
//! the buffer reaches [`MAX_PENDING`] (the writer is stuck): then the request writes the buffer
//! itself, so a stuck stderr slows callers down instead of growing memory without bound or
//! dropping lines silently.
//!
//! What stays the same as a `tracing` event: the switch (`RUST_LOG`; the target is
//! `pfgate::access` at `info`, so `RUST_LOG=warn` or `pfgate::access=off` turns it off), the
//! format (`--log-format text|json`, the same layout and field names as the other lines) and the
//! contents (method, path, caller address, operation, status, outcome, latency — never a secret:
//! no query string, no header, no body). Lines reach stderr up to [`FLUSH_INTERVAL`] late; each
//! carries its own timestamp, and [`flush`] writes what is pending at shutdown.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::caller::{NotSignedIn, RefusalStatus};
use crate::telemetry::metrics::Outcome;
use crate::telemetry::LogFormat;

/// How long a line may wait in the buffer before the writer thread writes it.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes pending above which the writer is woken early.
const WAKE_AT: usize = 64 * 1024;
/// Bytes pending above which a request writes the buffer itself (back-pressure).
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

/// What a request to a service listener ended as: the access log's `outcome` (its `Display`,
/// [`Handled::text`]) and the metrics' `outcome` and `operation` labels ([`Handled::metric_outcome`],
/// [`Handled::operation_label`]), decided where the answer is made. Never a secret: SOAP answers
/// carry only their result and codes.
#[derive(Debug)]
pub enum Handled {
    /// `/healthz` or `/readyz`.
    Probe(Probe),
    /// Not the SDK path (404).
    NotFound,
    /// An ASMX page (200).
    Page(Page),
    /// The caller is not signed in: refused, or a handshake step (401, or 400/429/503).
    Unauthenticated(NotSignedIn),
    /// The caller is not allowed (403): the principal, or this operation for it.
    Forbidden,
    /// The request was refused before it was read as a call (another 4xx).
    Rejected(Rejection),
    /// A SOAP fault (500): the request could not be read as a call.
    Fault,
    /// A SOAP answer (200).
    Answered(Answer),
}

/// A probe's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: the process serves.
    Live,
    /// `/readyz`: the store answers.
    Ready,
    /// `/readyz` answering 503: the store does not answer.
    NotReady,
}

/// An ASMX page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `?wsdl`.
    Wsdl,
    /// `?disco`.
    Disco,
    /// The help page (any other GET).
    Help,
}

/// Why a request was refused before it was read as a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 413: the body is over the limit.
    TooLarge,
    /// 405: not GET, HEAD or POST.
    MethodNotAllowed,
    /// 415: not a SOAP media type.
    UnsupportedMediaType,
    /// 408: the body did not arrive in time.
    BodyTimeout,
    /// 400: the body could not be read.
    BodyError,
}

/// A SOAP answer's result and codes (`Response::outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// The boolean result, when the operation has one.
    pub result: Option<bool>,
    /// The error code, when the response carries one.
    pub error: Option<i32>,
    /// The call result code, when the response carries one.
    pub call: Option<i32>,
}

impl Handled {
    /// The access log's text: `true`, `false/error=N/call=M`, `fault`, `forbidden`,
    /// `unauthenticated: <reason>`, … Borrowed for every fixed text, so the common answers cost no
    /// allocation.
    pub fn text(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Handled::Probe(Probe::Live) => "healthz",
            Handled::Probe(Probe::Ready) => "readyz",
            Handled::Probe(Probe::NotReady) => "not-ready",
            Handled::NotFound => "not-found",
            Handled::Page(Page::Wsdl) => "wsdl",
            Handled::Page(Page::Disco) => "disco",
            Handled::Page(Page::Help) => "help-page",
            Handled::Unauthenticated(reason) => {
                return Cow::Owned(format!("unauthenticated: {reason}"))
            }
            Handled::Forbidden => "forbidden",
            Handled::Rejected(Rejection::TooLarge) => "too-large",
            Handled::Rejected(Rejection::MethodNotAllowed) => "method-not-allowed",
            Handled::Rejected(Rejection::UnsupportedMediaType) => "unsupported-media-type",
            Handled::Rejected(Rejection::BodyTimeout) => "body-timeout",
            Handled::Rejected(Rejection::BodyError) => "body-error",
            Handled::Fault => "fault",
            Handled::Answered(a) => return a.text(),
        })
    }

    /// The `outcome` label of `pfgate_requests_total`.
    pub fn metric_outcome(&self) -> Outcome {
        match self {
            Handled::Probe(Probe::Live | Probe::Ready) | Handled::Page(_) => Outcome::True,
            Handled::Probe(Probe::NotReady) => Outcome::Unavailable,
            Handled::NotFound => Outcome::NotFound,
            Handled::Unauthenticated(reason) => match reason.status() {
                RefusalStatus::Unauthorized => Outcome::Unauthenticated,
                RefusalStatus::BadRequest | RefusalStatus::TooManyAttempts { .. } => {
                    Outcome::Rejected
                }
                RefusalStatus::Busy => Outcome::Unavailable,
            },
            Handled::Forbidden => Outcome::Forbidden,
            Handled::Rejected(_) => Outcome::Rejected,
            Handled::Fault => Outcome::Fault,
            Handled::Answered(a) if a.result == Some(false) => Outcome::False,
            Handled::Answered(_) => Outcome::True,
        }
    }

    /// The `operation` label: the SDK operation, or what the request was (`wsdl`, `disco`,
    /// `help_page`, `probe` for `/healthz` and `/readyz`, else `none`).
    pub fn operation_label(&self, operation: Option<&'static str>) -> &'static str {
        match (operation, self) {
            (Some(op), _) => op,
            (None, Handled::Page(Page::Wsdl)) => "wsdl",
            (None, Handled::Page(Page::Disco)) => "disco",
            (None, Handled::Page(Page::Help)) => "help_page",
            (None, Handled::Probe(_)) => "probe",
            (None, _) => "none",
        }
    }
}

impl std::fmt::Display for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl Answer {
    /// `true`, or `false/error=N/call=M` (a zero error code is left out).
    fn text(&self) -> Cow<'static, str> {
        use std::fmt::Write as _;
        let (result, error, call) = (self.result, self.error, self.call);
        if result != Some(false) && error.unwrap_or(0) == 0 && call.is_none() {
            return Cow::Borrowed("true");
        }
        let mut s = String::with_capacity(32);
        s.push_str(if result == Some(false) {
            "false"
        } else {
            "true"
        });
        if let Some(e) = error.filter(|e| *e != 0) {
            let _ = write!(s, "/error={e}");
        }
        if let Some(c) = call {
            let _ = write!(s, "/call={c}");
        }
        s.into()
    }
}

/// One request as the access log records it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Request path (no query string: a query could carry anything).
    pub path: &'a str,
    /// The caller's address (the forwarded one when a trusted proxy sent it).
    pub caller: IpAddr,
    /// The SOAP operation, when the request got as far as decoding one.
    pub operation: Option<&'static str>,
    /// HTTP status sent.
    pub status: u16,
    /// Short outcome: `true`, `false/error=N/call=M`, `fault`, `forbidden`, …
    pub outcome: &'a str,
    /// Time from the request head to the response, in microseconds.
    pub latency_us: u64,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    format: LogFormat,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static FORMAT: OnceLock<LogFormat> = OnceLock::new();
/// Where lines go instead of stderr: the Windows service's log file (a service has no console).
static FILE: OnceLock<std::fs::File> = OnceLock::new();

/// Sends the lines to `file` instead of stderr. Called once, before the first line, by
/// `telemetry::init_file`; later calls are ignored.
pub fn set_file(file: std::fs::File) {
    let _ = FILE.set(file);
}

/// Writes `bytes` in one call to the log file, or to stderr.
fn write_out(bytes: &[u8]) {
    let _ = match FILE.get() {
        Some(mut f) => f.write_all(bytes),
        None => std::io::stderr().lock().write_all(bytes),
    };
}

/// Sets the line format (from `--log-format`). Called once by `telemetry::init`; later calls and
/// calls after the first line are ignored.
pub fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

/// True when access lines are wanted (`pfgate::access` enabled at `info`).
pub fn enabled() -> bool {
    tracing::enabled!(target: "pfgate::access", tracing::Level::INFO)
}

/// Records one request, if the access log is enabled.
pub fn record(entry: &Entry<'_>) {
    if !enabled() {
        return;
    }
    let shared = shared();
    let now = SystemTime::now();
    let Ok(mut pending) = shared.pending.lock() else {
        return;
    };
    write_line(&mut pending, shared.format, now, entry);
    let len = pending.len();
    if len >= MAX_PENDING {
        // The writer thread has not kept up: write here, under the lock, so memory stays bounded.
        write_out(&pending);
        pending.clear();
    } else if len >= WAKE_AT {
        shared.wake.notify_one();
    }
}

/// Writes every pending line now (at shutdown, before the process exits).
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        if let Ok(mut pending) = shared.pending.lock() {
            if !pending.is_empty() {
                write_out(&pending);
                pending.clear();
            }
        }
    }
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("pfgate-access-log".into())
            .spawn(writer_loop);
        if spawned.is_err() {
            // Without the thread, lines are still written: by requests, when MAX_PENDING is reached,
            // and by `flush` at shutdown.
            tracing::warn!("the access-log writer thread could not be started");
        }
        Shared {
            pending: Mutex::new(Vec::with_capacity(WAKE_AT * 2)),
            wake: Condvar::new(),
            format: FORMAT.get().copied().unwrap_or_default(),
        }
    })
}

/// The writer thread: every interval (or when woken), swap the buffer out and write it in one go,
/// outside the lock, so requests only ever wait for a memcpy.
fn writer_loop() {
    let shared = shared();
    let mut out: Vec<u8> = Vec::with_capacity(WAKE_AT * 2);
    loop {
        {
            let Ok(guard) = shared.pending.lock() else {
                return;
            };
            let Ok((mut guard, _)) = shared.wake.wait_timeout(guard, FLUSH_INTERVAL) else {
                return;
            };
            if guard.is_empty() {
                continue;
            }
            std::mem::swap(&mut *guard, &mut out);
        }
        write_out(&out);
        out.clear();
        if out.capacity() > MAX_PENDING {
            out.shrink_to(WAKE_AT * 2);
        }
    }
}

/// Appends one line in `format`, laid out as `tracing-subscriber`'s own lines.
fn write_line(buf: &mut Vec<u8>, format: LogFormat, now: SystemTime, e: &Entry<'_>) {
    let mut num = itoa::Buffer::new();
    match format {
        LogFormat::Text => {
            write_timestamp(buf, now);
            buf.extend_from_slice(b"  INFO pfgate::access: request method=");
            buf.extend_from_slice(e.method.as_bytes());
            buf.extend_from_slice(b" path=");
            push_text(buf, e.path);
            buf.extend_from_slice(b" caller=");
            let _ = write!(buf, "{}", e.caller);
            buf.extend_from_slice(b" operation=");
            buf.extend_from_slice(e.operation.unwrap_or("-").as_bytes());
            buf.extend_from_slice(b" status=");
            buf.extend_from_slice(num.format(e.status).as_bytes());
            buf.extend_from_slice(b" outcome=");
            push_text(buf, e.outcome);
            buf.extend_from_slice(b" latency_us=");
            buf.extend_from_slice(num.format(e.latency_us).as_bytes());
        }
        LogFormat::Json => {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(buf, now);
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"");
            push_json(buf, e.method);
            buf.extend_from_slice(b"\",\"path\":\"");
            push_json(buf, e.path);
            buf.extend_from_slice(b"\",\"caller\":\"");
            let _ = write!(buf, "{}", e.caller);
            buf.extend_from_slice(b"\",\"operation\":\"");
            buf.extend_from_slice(e.operation.unwrap_or("-").as_bytes());
            buf.extend_from_slice(b"\",\"status\":");
            buf.extend_from_slice(num.format(e.status).as_bytes());
            buf.extend_from_slice(b",\"outcome\":\"");
            push_json(buf, e.outcome);
            buf.extend_from_slice(b"\",\"latency_us\":");
            buf.extend_from_slice(num.format(e.latency_us).as_bytes());
            buf.extend_from_slice(b",\"target\":\"pfgate::access\"}");
        }
    }
    buf.push(b'\n');
}

/// Text fields: printed as they are, except that anything that could break the line apart or fake
/// another field (control characters, spaces) is escaped. A URI path cannot hold them today; this
/// keeps it true if a caller of this module ever passes something else.
fn push_text(buf: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b <= b' ' || b == 0x7f || b >= 0x80) {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        if c.is_control() || c == ' ' {
            let _ = write!(buf, "\\u{{{:x}}}", c as u32);
        } else {
            let mut tmp = [0u8; 4];
            buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
    }
}

/// A JSON string body (without the quotes).
fn push_json(buf: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
}

/// RFC 3339 UTC with microseconds, for other hand-written lines (the audit trail).
pub fn write_rfc3339(buf: &mut Vec<u8>, now: SystemTime) {
    write_timestamp(buf, now);
}

/// RFC 3339 UTC with microseconds (`2026-11-25T17:20:00.123456Z`), as `tracing-subscriber` writes.
/// Digits are written by hand: `write!` with padded integers cost more than the rest of the line.
fn write_timestamp(buf: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, u64::from(month));
    put(8, 2, u64::from(day));
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 6, u64::from(since.subsec_micros()));
    buf.extend_from_slice(&out);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a str, outcome: &'a str) -> Entry<'a> {
        Entry {
            method: "POST",
            path,
            caller: "192.0.2.7".parse().unwrap(),
            operation: Some("PfAuthUser"),
            status: 200,
            outcome,
            latency_us: 1234,
        }
    }

    #[test]
    fn outcomes_follow_the_answer() {
        use crate::auth::refusal::SignInRefusal;
        let answered = |result, error, call| {
            Handled::Answered(Answer {
                result,
                error,
                call,
            })
        };
        for (handled, text, outcome) in [
            (answered(Some(true), None, None), "true", Outcome::True),
            (answered(None, Some(0), None), "true", Outcome::True),
            (
                answered(Some(false), Some(503), None),
                "false/error=503",
                Outcome::False,
            ),
            (
                answered(Some(false), Some(0), Some(5)),
                "false/call=5",
                Outcome::False,
            ),
            (
                answered(Some(true), None, Some(2)),
                "true/call=2",
                Outcome::True,
            ),
            (Handled::Fault, "fault", Outcome::Fault),
            (
                Handled::Unauthenticated(NotSignedIn::Refused(SignInRefusal::WrongPassword)),
                "unauthenticated: wrong user name or password",
                Outcome::Unauthenticated,
            ),
            (
                Handled::Unauthenticated(NotSignedIn::Refused(
                    SignInRefusal::DuplicateAuthorization,
                )),
                "unauthenticated: duplicate Authorization headers",
                Outcome::Rejected,
            ),
            (
                Handled::Unauthenticated(NotSignedIn::Refused(SignInRefusal::PasswordChecksBusy)),
                "unauthenticated: password checks busy",
                Outcome::Unavailable,
            ),
            (
                Handled::Rejected(Rejection::TooLarge),
                "too-large",
                Outcome::Rejected,
            ),
            (
                Handled::Probe(Probe::NotReady),
                "not-ready",
                Outcome::Unavailable,
            ),
            (Handled::Forbidden, "forbidden", Outcome::Forbidden),
            (Handled::NotFound, "not-found", Outcome::NotFound),
        ] {
            assert_eq!(handled.to_string(), text);
            assert_eq!(handled.metric_outcome(), outcome, "{text}");
        }
    }

    #[test]
    fn pseudo_operations_name_what_the_request_was() {
        for (handled, label) in [
            (Handled::Page(Page::Wsdl), "wsdl"),
            (Handled::Page(Page::Disco), "disco"),
            (Handled::Page(Page::Help), "help_page"),
            (Handled::Probe(Probe::Live), "probe"),
            (Handled::Probe(Probe::Ready), "probe"),
            (Handled::Probe(Probe::NotReady), "probe"),
            (Handled::NotFound, "none"),
            (Handled::Rejected(Rejection::TooLarge), "none"),
        ] {
            assert_eq!(handled.operation_label(None), label, "{handled}");
        }
        assert_eq!(
            Handled::Forbidden.operation_label(Some("PfAuthUser_5")),
            "PfAuthUser_5"
        );
    }

    #[test]
    fn dates_match_known_days() {
        // Independent reference points: the epoch, a leap day, the 2000 leap-century, and a date
        // computed with `date -u -d @1795615200` (2026-11-25 14:00:00 UTC).
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let mut b = Vec::new();
        write_timestamp(
            &mut b,
            UNIX_EPOCH + Duration::from_micros(1_795_615_200_000_042),
        );
        assert_eq!(String::from_utf8(b).unwrap(), "2026-11-25T14:00:00.000042Z");
    }

    #[test]
    fn text_line_has_every_field() {
        let mut b = Vec::new();
        write_line(
            &mut b,
            LogFormat::Text,
            UNIX_EPOCH,
            &entry("/x/PfWsSdk.asmx", "true"),
        );
        let line = String::from_utf8(b).unwrap();
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000000Z  INFO pfgate::access: request method=POST \
             path=/x/PfWsSdk.asmx caller=192.0.2.7 operation=PfAuthUser status=200 \
             outcome=true latency_us=1234\n"
        );
    }

    #[test]
    fn json_line_parses_and_escapes() {
        let mut b = Vec::new();
        write_line(
            &mut b,
            LogFormat::Json,
            UNIX_EPOCH,
            &entry("/a\"b\\c\n", "x y"),
        );
        let line = String::from_utf8(b).unwrap();
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\n");
        assert_eq!(v["outcome"], "x y");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_us"], 1234);
        assert_eq!(v["target"], "pfgate::access");
        assert_eq!(v["caller"], "192.0.2.7");
    }

    #[test]
    fn text_fields_cannot_split_the_line() {
        let mut b = Vec::new();
        write_line(
            &mut b,
            LogFormat::Text,
            UNIX_EPOCH,
            &entry("/p\nstatus=500 x", "ok"),
        );
        let line = String::from_utf8(b).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains("path=/p\\u{a}status=500\\u{20}x"));
    }
}
