//! One structured audit event per decision, on the `pfgate::audit` tracing target.
//!
//! Fields: operation, caller, username, masked phone, provider, outcome, CallResult, Error, latency
//! and request id — never a PIN, code, token or full number. Second-factor completions are
//! `second_factor_completed` (what MIM logs as event 103) or `second_factor_failed` (MIM's 101), so
//! the two are told apart by the event name alone.

use std::time::{Duration, SystemTime};

use crate::telemetry::line::{self, Field};
use crate::telemetry::LogFormat;

/// What kind of decision this was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A second factor was completed successfully.
    SecondFactorCompleted,
    /// A second factor was attempted and not completed.
    SecondFactorFailed,
    /// A second step is pending (OATH code awaited).
    SecondFactorPending,
    /// A directory change (add, change, delete, block, bypass…).
    DirectoryChange,
    /// A directory change that was refused.
    DirectoryChangeRefused,
    /// Every provider failed and `fail_mode = "safe"` let the request through (logged at WARN).
    FailOpen,
    /// A provider let the person through without asking them (Duo preauth `allow`), and its
    /// settings allow that (logged at WARN).
    ProviderBypass,
    /// A caller without valid credentials was refused (401).
    CallerUnauthenticated,
    /// A known caller was refused an operation outside its allow-list (403).
    CallerForbidden,
    /// The person reported a request as not theirs (the OIDC step-up's "This wasn't me").
    FraudReported,
    /// Repeated failed attempts locked a user (`[engine] lockout_*`).
    UserLockedOut,
    /// A new configuration was put in force while serving (`SIGHUP` or a changed file).
    ConfigReloaded,
    /// A new configuration was refused; the one in force stayed.
    ConfigRefused,
}

impl AuditKind {
    fn as_str(self) -> &'static str {
        match self {
            AuditKind::SecondFactorCompleted => "second_factor_completed",
            AuditKind::SecondFactorFailed => "second_factor_failed",
            AuditKind::SecondFactorPending => "second_factor_pending",
            AuditKind::DirectoryChange => "directory_change",
            AuditKind::DirectoryChangeRefused => "directory_change_refused",
            AuditKind::FailOpen => "fail_open",
            AuditKind::ProviderBypass => "provider_bypass",
            AuditKind::CallerUnauthenticated => "caller_unauthenticated",
            AuditKind::CallerForbidden => "caller_forbidden",
            AuditKind::FraudReported => "fraud_reported",
            AuditKind::UserLockedOut => "user_locked_out",
            AuditKind::ConfigReloaded => "config_reloaded",
            AuditKind::ConfigRefused => "config_refused",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent<'a> {
    /// Wire operation.
    pub operation: &'a str,
    /// Caller identity.
    pub caller: &'a str,
    /// User concerned.
    pub username: &'a str,
    /// Masked phone number, if a call was involved.
    pub phone: Option<String>,
    /// Provider name, if one was asked.
    pub provider: Option<&'a str>,
    /// CallResult code.
    pub call_result: Option<i32>,
    /// Error code.
    pub error: i32,
    /// Time the decision took.
    pub latency: Duration,
    /// `authenticationRequestId`.
    pub request_id: Option<&'a str>,
    /// Free-text reason (never a secret).
    pub reason: Option<&'a str>,
}

impl AuditKind {
    /// A `true` that no person gave (fail open, a provider's bypass): WARN, so that it stands out
    /// in a log filtered to warnings, with its cause in `reason`.
    fn is_alarm(self) -> bool {
        matches!(self, AuditKind::FailOpen | AuditKind::ProviderBypass)
    }
}

/// One `pfgate::audit` line at `level` (a macro: `tracing` takes the level as a constant).
macro_rules! log_event {
    ($level:expr, $kind:expr, $e:expr) => {
        tracing::event!(
            target: "pfgate::audit",
            $level,
            event = $kind.as_str(),
            operation = $e.operation,
            caller = $e.caller,
            username = $e.username,
            phone = $e.phone.as_deref().unwrap_or("-"),
            provider = $e.provider.unwrap_or("-"),
            call_result = $e.call_result.unwrap_or(-1),
            error = $e.error,
            latency_ms = $e.latency.as_secs_f64() * 1000.0,
            request_id = $e.request_id.unwrap_or("-"),
            reason = $e.reason.unwrap_or("-"),
            "audit"
        )
    };
}

/// Emits the event.
pub fn emit(kind: AuditKind, e: &AuditEvent<'_>) {
    let alarm = kind.is_alarm();
    if let Some(format) = line::direct() {
        // The same switch as the `tracing` event: `RUST_LOG` on the `pfgate::audit` target.
        let on = if alarm {
            tracing::enabled!(target: "pfgate::audit", tracing::Level::WARN)
        } else {
            tracing::enabled!(target: "pfgate::audit", tracing::Level::INFO)
        };
        if on {
            let mut line = Vec::with_capacity(512);
            write_line(&mut line, format, SystemTime::now(), kind, e);
            crate::telemetry::access_log::write_out(&line);
        }
    } else if alarm {
        log_event!(tracing::Level::WARN, kind, e);
    } else {
        log_event!(tracing::Level::INFO, kind, e);
    }
    if crate::telemetry::audit_trail::installed() {
        crate::telemetry::audit_trail::record(&trail_fields(kind, e));
    }
}

/// The event's fields as the inside of a JSON object, for the hash-chained audit trail
/// (`src/telemetry/audit_trail.rs`). Absent values are `null`, not `"-"`, so a reader can tell them apart.
fn trail_fields(kind: AuditKind, e: &AuditEvent<'_>) -> String {
    let opt = |v: Option<&str>| v.map_or(serde_json::Value::Null, |s| s.into());
    let fields = serde_json::json!({
        "event": kind.as_str(),
        "operation": e.operation,
        "caller": e.caller,
        "username": e.username,
        "phone": opt(e.phone.as_deref()),
        "provider": opt(e.provider),
        "call_result": e.call_result,
        "error": e.error,
        "latency_ms": (e.latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "request_id": opt(e.request_id),
        "reason": opt(e.reason),
    });
    let text = fields.to_string();
    // `{…}` → `…`: the trail adds seq, time, prev and hash around these.
    text.strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or("")
        .to_string()
}

/// Appends the line `tracing-subscriber` writes for [`log_event!`] (no colours), byte for byte
/// ([`line::write`]).
fn write_line(
    buf: &mut Vec<u8>,
    format: LogFormat,
    now: SystemTime,
    kind: AuditKind,
    e: &AuditEvent<'_>,
) {
    let level: &[u8] = if kind.is_alarm() { b"WARN" } else { b"INFO" };
    let fields = [
        ("event", Field::Text(kind.as_str())),
        ("operation", Field::Text(e.operation)),
        ("caller", Field::Text(e.caller)),
        ("username", Field::Text(e.username)),
        ("phone", Field::Text(e.phone.as_deref().unwrap_or("-"))),
        ("provider", Field::Text(e.provider.unwrap_or("-"))),
        (
            "call_result",
            Field::Int(i64::from(e.call_result.unwrap_or(-1))),
        ),
        ("error", Field::Int(i64::from(e.error))),
        ("latency_ms", Field::Float(e.latency.as_secs_f64() * 1000.0)),
        ("request_id", Field::Text(e.request_id.unwrap_or("-"))),
        ("reason", Field::Text(e.reason.unwrap_or("-"))),
    ];
    let head = line::Head {
        now,
        level,
        target: "pfgate::audit",
        message: "audit",
    };
    line::write(buf, format, &head, &fields);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::line::tests::captured;
    use std::time::UNIX_EPOCH;

    /// The line the `tracing` path writes for the event, in `format`, with the subscriber
    /// `telemetry::init` installs (no colours).
    fn through_tracing(format: LogFormat, kind: AuditKind, e: &AuditEvent<'_>) -> String {
        captured(format, || {
            if kind.is_alarm() {
                log_event!(tracing::Level::WARN, kind, e);
            } else {
                log_event!(tracing::Level::INFO, kind, e);
            }
        })
    }

    fn by_hand(format: LogFormat, kind: AuditKind, e: &AuditEvent<'_>) -> String {
        let mut b = Vec::new();
        write_line(&mut b, format, UNIX_EPOCH, kind, e);
        String::from_utf8(b).unwrap()
    }

    fn completed() -> AuditEvent<'static> {
        AuditEvent {
            operation: "PfAuthUser_5",
            caller: "anonymous",
            username: "mimservice@contoso.com",
            phone: Some("+1******0100".into()),
            provider: Some("demo"),
            call_result: Some(2),
            error: 0,
            latency: Duration::from_micros(1234),
            request_id: Some("0123456789ABCDEF0123456789ABCDEF"),
            reason: None,
        }
    }

    #[test]
    fn the_line_is_the_one_tracing_writes() {
        let odd = AuditEvent {
            caller: "CONTOSO\\svc-mim",
            username: "a \"quoted\"\nname\u{7f}é\u{200b}",
            phone: None,
            provider: None,
            call_result: None,
            error: -3,
            latency: Duration::from_nanos(1),
            request_id: None,
            reason: Some("tab\there {brace} = x"),
            ..completed()
        };
        let latencies = [
            0,
            1,
            999,
            1_000_000,
            123_456_789,
            3_600_000_000_000,
            u64::MAX / 4,
        ];
        let events: Vec<AuditEvent<'_>> = latencies
            .iter()
            .map(|&n| AuditEvent {
                latency: Duration::from_nanos(n),
                ..completed()
            })
            .chain([odd])
            .collect();
        for format in [LogFormat::Text, LogFormat::Json] {
            for kind in [
                AuditKind::SecondFactorCompleted,
                AuditKind::FailOpen,
                AuditKind::UserLockedOut,
            ] {
                for e in &events {
                    let expected = through_tracing(format, kind, e);
                    assert!(expected.ends_with('\n'), "{expected}");
                    assert_eq!(by_hand(format, kind, e), expected);
                }
            }
        }
    }

    #[test]
    fn the_text_line_written_out() {
        // Written by hand, in the layout of the `tracing-subscriber` lines pfgate wrote before.
        assert_eq!(
            by_hand(
                LogFormat::Text,
                AuditKind::SecondFactorCompleted,
                &completed()
            ),
            "1970-01-01T00:00:00.000000Z  INFO pfgate::audit: audit \
             event=\"second_factor_completed\" operation=\"PfAuthUser_5\" caller=\"anonymous\" \
             username=\"mimservice@contoso.com\" phone=\"+1******0100\" provider=\"demo\" \
             call_result=2 error=0 latency_ms=1.234 \
             request_id=\"0123456789ABCDEF0123456789ABCDEF\" reason=\"-\"\n"
        );
    }
}
