//! One structured audit event per decision, on the `pfgate::audit` tracing target.
//!
//! Fields: operation, caller, username, masked phone, provider, outcome, CallResult, Error, latency
//! and request id — never a PIN, code, token or full number. Second-factor completions are
//! `second_factor_completed` (what MIM logs as event 103) or `second_factor_failed` (MIM's 101), so
//! the two are told apart by the event name alone.

use std::time::Duration;

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
    if kind.is_alarm() {
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
