//! Counters, gauges and histograms for `/metrics` (Prometheus text exposition format 0.0.4).
//!
//! A small hand-written registry of atomics rather than the `prometheus-client` crate: every label
//! set pfgate records per request is known in advance (the SDK's operations, a fixed list of
//! outcomes and refusal reasons), so each observation is an index computation and one relaxed
//! `fetch_add` — no label hashing, no lock, no allocation on the request path. Providers, whose
//! names come from the configuration, get their counters once when the router is built, so a
//! provider call costs an atomic add too. The registry is one process-wide static: a configuration
//! reload builds new settings, engine and router but never resets a counter (Prometheus treats a
//! counter that goes down as a restart). See `docs/operations.md` for every metric.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::pfwssdk::Operation;

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// What an HTTP request to a service listener ended as: the `outcome` label of
/// `pfgate_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// A SOAP answer whose result is true (or carries no boolean result), or a 200 that is not
    /// SOAP (WSDL, help page, probes).
    True,
    /// A SOAP answer whose result is false (denied, not answered, unknown user, an error code).
    False,
    /// A SOAP fault (the request could not be read as a call).
    Fault,
    /// 401: the caller was not authenticated (includes handshake legs of NTLM and Negotiate).
    Unauthenticated,
    /// 403: the caller is not allowed (the principal, or this operation for it).
    Forbidden,
    /// 404: not the SDK path.
    NotFound,
    /// Any other 4xx: body too large or too slow, wrong media type or method, unreadable body.
    Rejected,
    /// 503: `/readyz` answering not ready.
    Unavailable,
    /// Any other status (none today; kept so a new answer is counted, not lost).
    Other,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::True,
        Outcome::False,
        Outcome::Fault,
        Outcome::Unauthenticated,
        Outcome::Forbidden,
        Outcome::NotFound,
        Outcome::Rejected,
        Outcome::Unavailable,
        Outcome::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::True => "true",
            Outcome::False => "false",
            Outcome::Fault => "fault",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not_found",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable => "unavailable",
            Outcome::Other => "other",
        }
    }
}

/// Requests that are not an SDK operation get one of these in the `operation` label.
const PSEUDO_OPERATIONS: [&str; 5] = ["none", "wsdl", "disco", "help_page", "probe"];

/// Why a caller was refused: the `reason` label of `pfgate_caller_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RefusalReason {
    /// No `Authorization` header, no client certificate, no identity header, anonymous off.
    NoCredentials,
    /// Basic with a wrong user name or password.
    WrongPassword,
    /// Basic over plain HTTP from a peer that is not a trusted proxy.
    BasicOverPlainHttp,
    /// A Basic or Windows token that does not decode.
    MalformedCredentials,
    /// An authentication scheme this server does not offer.
    SchemeNotEnabled,
    /// NTLM (raw or inside Negotiate) refused: wrong password, unknown account, replay, …
    NtlmRefused,
    /// Kerberos refused (bad ticket, replay, wrong service) or not set up.
    KerberosRefused,
    /// A Kerberos token where only NTLM is offered (the client is told to use NTLM).
    KerberosNotSupported,
    /// Authenticated, but the principal is not in the allow-list (403).
    NotAllowed,
    /// Authenticated and allowed, but not for this operation (403).
    OperationNotAllowed,
    /// Anything else.
    Other,
}

impl RefusalReason {
    const ALL: [RefusalReason; 11] = [
        RefusalReason::NoCredentials,
        RefusalReason::WrongPassword,
        RefusalReason::BasicOverPlainHttp,
        RefusalReason::MalformedCredentials,
        RefusalReason::SchemeNotEnabled,
        RefusalReason::NtlmRefused,
        RefusalReason::KerberosRefused,
        RefusalReason::KerberosNotSupported,
        RefusalReason::NotAllowed,
        RefusalReason::OperationNotAllowed,
        RefusalReason::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            RefusalReason::NoCredentials => "no_credentials",
            RefusalReason::WrongPassword => "wrong_password",
            RefusalReason::BasicOverPlainHttp => "basic_over_plain_http",
            RefusalReason::MalformedCredentials => "malformed_credentials",
            RefusalReason::SchemeNotEnabled => "scheme_not_enabled",
            RefusalReason::NtlmRefused => "ntlm_refused",
            RefusalReason::KerberosRefused => "kerberos_refused",
            RefusalReason::KerberosNotSupported => "kerberos_not_supported",
            RefusalReason::NotAllowed => "not_allowed",
            RefusalReason::OperationNotAllowed => "operation_not_allowed",
            RefusalReason::Other => "other",
        }
    }
}

/// Why a TLS handshake failed: the `reason` label of `pfgate_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum TlsFailure {
    /// The handshake failed (not TLS, no common version or cipher, a refused client certificate).
    Error,
    /// The client did not finish the handshake within `limits.tls_handshake_timeout`.
    Timeout,
}

/// A provider's verdict: the `verdict` label of `pfgate_provider_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum VerdictLabel {
    /// The person approved (or the code was sent).
    Approved,
    /// Nobody answered.
    NotAnswered,
    /// The person hung up.
    HungUp,
    /// The person denied.
    Denied,
    /// The provider failed (network, timeout, 5xx, bad signature): counts toward its breaker.
    Failed,
}

impl VerdictLabel {
    const ALL: [VerdictLabel; 5] = [
        VerdictLabel::Approved,
        VerdictLabel::NotAnswered,
        VerdictLabel::HungUp,
        VerdictLabel::Denied,
        VerdictLabel::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            VerdictLabel::Approved => "approved",
            VerdictLabel::NotAnswered => "not_answered",
            VerdictLabel::HungUp => "hung_up",
            VerdictLabel::Denied => "denied",
            VerdictLabel::Failed => "failed",
        }
    }
}

/// A breaker's state as the `pfgate_provider_breaker_state` gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerKind {
    /// 0: calls go through.
    Closed = 0,
    /// 1: calls are refused until the cooldown ends.
    Open = 1,
    /// 2: one probe call is in flight.
    HalfOpen = 2,
}

impl BreakerKind {
    const ALL: [BreakerKind; 3] = [
        BreakerKind::Closed,
        BreakerKind::Open,
        BreakerKind::HalfOpen,
    ];

    /// The label value (`closed`, `open`, `half_open`).
    pub fn label(self) -> &'static str {
        match self {
            BreakerKind::Closed => "closed",
            BreakerKind::Open => "open",
            BreakerKind::HalfOpen => "half_open",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds: from a millisecond (`TestSecurity`) to
/// two minutes (a phone call a person takes their time with).
const BUCKETS_US: [u64; 15] = [
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
];
/// Buckets per operation: the bounded ones and `+Inf`.
const SLOTS: usize = BUCKETS_US.len() + 1;

/// One provider's counters; the router holds an `Arc` so a call costs an atomic add.
#[derive(Debug)]
pub struct ProviderMetrics {
    name: String,
    calls: [AtomicU64; 5],
    skipped: AtomicU64,
    breaker: AtomicU8,
    transitions: [AtomicU64; 3],
}

impl ProviderMetrics {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            calls: Default::default(),
            skipped: AtomicU64::new(0),
            breaker: AtomicU8::new(BreakerKind::Closed as u8),
            transitions: Default::default(),
        }
    }

    /// A call ended with this verdict.
    pub fn call(&self, verdict: VerdictLabel) {
        self.calls[verdict as usize].fetch_add(1, Relaxed);
    }

    /// A call was not made because the breaker is open.
    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Relaxed);
    }

    /// Calls skipped so far (tests read it; `/metrics` renders the same counter).
    #[cfg(test)]
    pub fn skipped_count(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    /// The breaker moved to `to` (counted as a transition).
    pub fn transition(&self, to: BreakerKind) {
        self.breaker.store(to as u8, Relaxed);
        self.transitions[to as usize].fetch_add(1, Relaxed);
    }

    /// A new breaker starts in `state` (a new router after a reload): not a transition.
    pub fn reset_state(&self, state: BreakerKind) {
        self.breaker.store(state as u8, Relaxed);
    }
}

/// Decrements the in-flight gauge when dropped (also when the request is cancelled).
#[derive(Debug)]
pub struct InflightGuard(&'static AtomicI64);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The registry.
#[derive(Debug)]
pub struct Metrics {
    /// Operation names, sorted, for a binary search from a name to its row.
    names: Vec<&'static str>,
    /// `[row * outcomes + outcome]`.
    requests: Box<[AtomicU64]>,
    /// `[row * SLOTS + bucket]`, not cumulative (made cumulative when written).
    latency: Box<[AtomicU64]>,
    /// Microseconds, per row.
    latency_sum_us: Box<[AtomicU64]>,
    inflight: AtomicI64,
    refusals: [AtomicU64; 11],
    tls_failures: [AtomicU64; 2],
    providers: Mutex<Vec<Arc<ProviderMetrics>>>,
}

impl Metrics {
    fn new() -> Self {
        let mut names: Vec<&'static str> = Operation::ALL.iter().map(|o| o.name()).collect();
        names.extend(PSEUDO_OPERATIONS);
        names.sort_unstable();
        names.dedup();
        let rows = names.len();
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Self {
            requests: zeros(rows * Outcome::ALL.len()),
            latency: zeros(rows * SLOTS),
            latency_sum_us: zeros(rows),
            names,
            inflight: AtomicI64::new(0),
            refusals: Default::default(),
            tls_failures: Default::default(),
            providers: Mutex::new(Vec::new()),
        }
    }

    fn row(&self, operation: &str) -> usize {
        // Every name the server passes is an operation or a pseudo-operation; anything else
        // (impossible today) is counted as "none" rather than lost.
        self.names
            .binary_search(&operation)
            .or_else(|_| self.names.binary_search(&"none"))
            .unwrap_or(0)
    }

    /// One request answered by a service listener. `operation` is the SDK operation, or one of
    /// `none`, `wsdl`, `disco`, `help_page`, `probe`.
    pub fn request(&self, operation: &str, outcome: Outcome, elapsed: Duration) {
        let row = self.row(operation);
        self.requests[row * Outcome::ALL.len() + outcome as usize].fetch_add(1, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.latency[row * SLOTS + bucket].fetch_add(1, Relaxed);
        self.latency_sum_us[row].fetch_add(us, Relaxed);
    }

    /// An authentication started; the gauge goes down when the guard is dropped.
    pub fn auth_started(&'static self) -> InflightGuard {
        self.inflight.fetch_add(1, Relaxed);
        InflightGuard(&self.inflight)
    }

    /// A caller was refused.
    pub fn refusal(&self, reason: RefusalReason) {
        self.refusals[reason as usize].fetch_add(1, Relaxed);
    }

    /// A TLS handshake failed.
    pub fn tls_failure(&self, why: TlsFailure) {
        self.tls_failures[why as usize].fetch_add(1, Relaxed);
    }

    /// The counters of the provider named `name` (created on first use, then shared: a router
    /// built again after a reload continues the same counters).
    pub fn provider(&self, name: &str) -> Arc<ProviderMetrics> {
        let mut list = match self.providers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(p) = list.iter().find(|p| p.name == name) {
            return p.clone();
        }
        let p = Arc::new(ProviderMetrics::new(name));
        list.push(p.clone());
        p
    }

    /// The whole registry in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_requests(&mut out);
        self.render_callers(&mut out);
        let providers: Vec<Arc<ProviderMetrics>> = match self.providers.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        render_providers(&mut out, &providers);
        out
    }

    /// The build, and the requests: counts by operation and outcome, latency histograms.
    fn render_requests(&self, out: &mut String) {
        family(
            out,
            "pfgate_build_info",
            "gauge",
            "Always 1; the version label says which pfgate answers.",
        );
        let _ = writeln!(
            out,
            "pfgate_build_info{{version=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION"))
        );

        family(
            out,
            "pfgate_requests_total",
            "counter",
            "Requests answered on the service listeners, by SDK operation and outcome.",
        );
        let outcomes = Outcome::ALL.len();
        for (row, op) in self.names.iter().enumerate() {
            for o in Outcome::ALL {
                let n = self.requests[row * outcomes + o as usize].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "pfgate_requests_total{{operation=\"{op}\",outcome=\"{}\"}} {n}",
                        o.label()
                    );
                }
            }
        }

        family(
            out,
            "pfgate_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its answer, by SDK operation.",
        );
        for (row, op) in self.names.iter().enumerate() {
            let slots = &self.latency[row * SLOTS..(row + 1) * SLOTS];
            let counts: Vec<u64> = slots.iter().map(|a| a.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, c) in counts.iter().enumerate() {
                cumulative += c;
                let le = match BUCKETS_US.get(i) {
                    Some(us) => seconds(*us),
                    None => "+Inf".to_string(),
                };
                let _ = writeln!(
                    out,
                    "pfgate_request_duration_seconds_bucket{{operation=\"{op}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = self.latency_sum_us[row].load(Relaxed);
            let _ = writeln!(
                out,
                "pfgate_request_duration_seconds_sum{{operation=\"{op}\"}} {}",
                seconds(sum)
            );
            // The count is the buckets' total, so `_count` always equals the `+Inf` bucket even
            // while requests are being recorded.
            let _ = writeln!(
                out,
                "pfgate_request_duration_seconds_count{{operation=\"{op}\"}} {total}"
            );
        }
    }

    /// Authentications in flight, refused callers, failed TLS handshakes.
    fn render_callers(&self, out: &mut String) {
        family(
            out,
            "pfgate_authentications_in_flight",
            "gauge",
            "Second-factor authentications being decided now (waiting for a person or a provider).",
        );
        let _ = writeln!(
            out,
            "pfgate_authentications_in_flight {}",
            self.inflight.load(Relaxed).max(0)
        );

        family(
            out,
            "pfgate_caller_refusals_total",
            "counter",
            "Callers refused (401 or 403), by reason; handshake legs of NTLM and Negotiate are not refusals.",
        );
        for r in RefusalReason::ALL {
            let _ = writeln!(
                out,
                "pfgate_caller_refusals_total{{reason=\"{}\"}} {}",
                r.label(),
                self.refusals[r as usize].load(Relaxed)
            );
        }

        family(
            out,
            "pfgate_tls_handshake_failures_total",
            "counter",
            "TLS handshakes on the service listener that failed or timed out.",
        );
        for (reason, i) in [
            ("error", TlsFailure::Error),
            ("timeout", TlsFailure::Timeout),
        ] {
            let _ = writeln!(
                out,
                "pfgate_tls_handshake_failures_total{{reason=\"{reason}\"}} {}",
                self.tls_failures[i as usize].load(Relaxed)
            );
        }
    }
}

/// Each provider's calls, errors, skipped calls and circuit breaker.
fn render_providers(out: &mut String, providers: &[Arc<ProviderMetrics>]) {
    family(
        out,
        "pfgate_provider_calls_total",
        "counter",
        "Calls to a provider, by provider and verdict.",
    );
    for p in providers {
        for v in VerdictLabel::ALL {
            let _ = writeln!(
                out,
                "pfgate_provider_calls_total{{provider=\"{}\",verdict=\"{}\"}} {}",
                escape(&p.name),
                v.label(),
                p.calls[v as usize].load(Relaxed)
            );
        }
    }
    family(
            out,
            "pfgate_provider_errors_total",
            "counter",
            "Provider calls that failed (network error, timeout, 5xx, bad signature): the calls a breaker counts.",
        );
    for p in providers {
        let _ = writeln!(
            out,
            "pfgate_provider_errors_total{{provider=\"{}\"}} {}",
            escape(&p.name),
            p.calls[VerdictLabel::Failed as usize].load(Relaxed)
        );
    }
    family(
        out,
        "pfgate_provider_skipped_total",
        "counter",
        "Calls not made to a provider because its circuit breaker was open.",
    );
    for p in providers {
        let _ = writeln!(
            out,
            "pfgate_provider_skipped_total{{provider=\"{}\"}} {}",
            escape(&p.name),
            p.skipped.load(Relaxed)
        );
    }
    family(
        out,
        "pfgate_provider_breaker_state",
        "gauge",
        "A provider's circuit breaker: 0 closed, 1 open, 2 half-open.",
    );
    for p in providers {
        let _ = writeln!(
            out,
            "pfgate_provider_breaker_state{{provider=\"{}\"}} {}",
            escape(&p.name),
            p.breaker.load(Relaxed)
        );
    }
    family(
        out,
        "pfgate_provider_breaker_transitions_total",
        "counter",
        "Changes of a provider's circuit breaker, by the state it moved to.",
    );
    for p in providers {
        for k in BreakerKind::ALL {
            let _ = writeln!(
                out,
                "pfgate_provider_breaker_transitions_total{{provider=\"{}\",to=\"{}\"}} {}",
                escape(&p.name),
                k.label(),
                p.transitions[k as usize].load(Relaxed)
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Microseconds as seconds, exactly (`0.001`, `2.5`, `120`).
fn seconds(us: u64) -> String {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A label value escaped as the text format requires: backslash, double quote and line feed.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut s = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(1_000), "0.001");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(120_000_000), "120");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_234_567), "1.234567");
    }

    #[test]
    fn a_private_registry_renders_histograms_consistently() {
        let m = Metrics::new();
        m.request("TestSecurity", Outcome::True, Duration::from_micros(800));
        m.request("TestSecurity", Outcome::True, Duration::from_millis(3));
        m.request("TestSecurity", Outcome::False, Duration::from_secs(500));
        m.request("NoSuchThing", Outcome::NotFound, Duration::ZERO);
        let p = m.provider("odd \"name\"");
        p.call(VerdictLabel::Failed);
        p.transition(BreakerKind::Open);
        let text = m.render();
        for line in [
            "pfgate_requests_total{operation=\"TestSecurity\",outcome=\"true\"} 2",
            "pfgate_requests_total{operation=\"TestSecurity\",outcome=\"false\"} 1",
            "pfgate_requests_total{operation=\"none\",outcome=\"not_found\"} 1",
            "pfgate_request_duration_seconds_bucket{operation=\"TestSecurity\",le=\"0.001\"} 1",
            "pfgate_request_duration_seconds_bucket{operation=\"TestSecurity\",le=\"0.005\"} 2",
            "pfgate_request_duration_seconds_bucket{operation=\"TestSecurity\",le=\"120\"} 2",
            "pfgate_request_duration_seconds_bucket{operation=\"TestSecurity\",le=\"+Inf\"} 3",
            "pfgate_request_duration_seconds_count{operation=\"TestSecurity\"} 3",
            "pfgate_request_duration_seconds_sum{operation=\"TestSecurity\"} 500.0038",
            "pfgate_provider_errors_total{provider=\"odd \\\"name\\\"\"} 1",
            "pfgate_provider_breaker_state{provider=\"odd \\\"name\\\"\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let guard = global().auth_started();
        assert!(global().inflight.load(Relaxed) >= 1);
        drop(guard);
    }
}
