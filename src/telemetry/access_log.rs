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

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::telemetry::LogFormat;

/// How long a line may wait in the buffer before the writer thread writes it.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes pending above which the writer is woken early.
const WAKE_AT: usize = 64 * 1024;
/// Bytes pending above which a request writes the buffer itself (back-pressure).
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

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
#[cfg_attr(not(windows), allow(dead_code))]
pub fn set_file(file: std::fs::File) {
    let _ = FILE.set(file);
}

/// Writes `bytes` in one call to the log file, or to stderr (also the audit lines written
/// without `tracing`, [`crate::telemetry::audit`]).
pub(crate) fn write_out(bytes: &[u8]) {
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
