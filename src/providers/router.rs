//! Routing, failover, fail mode and circuit breakers across providers.
//!
//! An ordered list of routes; the first whose matchers all fit the attempt (username pattern, user
//! group, country code, mode, calling principal) names an ordered provider list and a fail mode.
//! Providers are tried in order, moving on **only on provider failure** (`Verdict::Failed`: network
//! error, timeout, 5xx, bad signature) — never after a person answered, denied or did not answer,
//! since asking a second provider would be asking the person twice. When every provider failed,
//! `fail_mode = "secure"` (the default) denies; `"safe"` lets the request through as
//! `Verdict::FailedOpen` with a loud audit event, and must be chosen per route in so many words.
//!
//! A circuit breaker per provider stops sending to one that keeps failing: after
//! `failure_threshold` consecutive failures it opens for `cooldown`, then lets one probe through
//! (half-open); the probe's outcome closes or re-opens it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::{AuthAttempt, Blame, Provider, ProviderError, ProviderErrorKind, Verdict};
use crate::pfwssdk::wire::WireEnum;
use crate::pfwssdk::Mode3;
use crate::telemetry::metrics::{BreakerKind, ProviderMetrics};

/// What to do when every provider of a route failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Deny (fail closed).
    #[default]
    Secure,
    /// Let the request through, with an audit event (fail open).
    Safe,
}

/// One route as configured.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Username pattern (`*` wildcard, case-insensitive).
    pub match_username: Option<String>,
    /// User group (case-insensitive).
    pub match_group: Option<String>,
    /// Country calling code of the number (digits).
    pub match_country_code: Option<String>,
    /// Mode (`voiceCall`, `smsText`, `phoneApp`, `oathToken`).
    pub match_mode: Option<String>,
    /// Calling principal (`CONTOSO\mimservice`, case-insensitive; `*` wildcard).
    pub match_caller: Option<String>,
    /// Providers to try, in order.
    pub providers: Vec<String>,
    /// `secure` (default) or `safe`.
    #[serde(default)]
    pub fail_mode: FailMode,
}

/// `*`-wildcard match, case-insensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The warning for a `fail_mode = "safe"` route (route `index`, matching `description`): said at
/// `check-config`, at start, at every reload and in `/readyz`, because such a route turns a
/// provider outage — or an open breaker — into a `true` nobody gave.
pub fn fail_open_warning(index: usize, description: &str) -> String {
    format!(
        "routes[{index}] ({description}): fail_mode = \"safe\" answers true (CallResult 7, a \
         fail_open audit event) when every provider of the route failed before reaching the \
         person or its circuit is open: a provider outage is then an MFA bypass"
    )
}

/// [`fail_open_warning`] for every `safe` route of `routes`.
pub fn fail_open_warnings(routes: &[RouteSettings]) -> Vec<String> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.fail_mode == FailMode::Safe)
        .map(|(i, r)| fail_open_warning(i, &r.describe()))
        .collect()
}

impl RouteSettings {
    /// Problems for `check-config`: (key suffix, reason).
    pub fn validate(&self, known: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.providers.is_empty() {
            out.push((
                "providers".into(),
                "a route needs at least one provider".into(),
            ));
        }
        for p in &self.providers {
            if !known.contains(&p.as_str()) {
                out.push((
                    "providers".into(),
                    format!("no provider named '{p}' is configured under [providers.{p}]"),
                ));
            }
        }
        if let Some(m) = &self.match_mode {
            if Mode3::from_literal(m).is_none() {
                out.push((
                    "match_mode".into(),
                    format!("'{m}' is not one of {}", Mode3::LITERALS.join(", ")),
                ));
            }
        }
        if let Some(c) = &self.match_country_code {
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
                out.push((
                    "match_country_code".into(),
                    format!("'{c}' is not a country calling code"),
                ));
            }
        }
        out
    }

    fn matches(&self, a: &AuthAttempt) -> bool {
        self.match_username
            .as_deref()
            .is_none_or(|p| glob(p, &a.username))
            && self
                .match_group
                .as_deref()
                .is_none_or(|g| g.eq_ignore_ascii_case(&a.user_group))
            && self
                .match_country_code
                .as_deref()
                .is_none_or(|c| a.phone.e164().trim_start_matches('+').starts_with(c))
            && self
                .match_mode
                .as_deref()
                .is_none_or(|m| m == a.mode.as_str())
            && self
                .match_caller
                .as_deref()
                .is_none_or(|c| glob(c, &a.caller))
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// The state of one provider's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Calls are refused until the instant.
    Open {
        /// When a probe may go through.
        until: Instant,
    },
    /// One probe is in flight.
    HalfOpen,
}

impl BreakerState {
    /// The state without its details, as metrics and readiness report it.
    pub fn kind(&self) -> BreakerKind {
        match self {
            BreakerState::Closed { .. } => BreakerKind::Closed,
            BreakerState::Open { .. } => BreakerKind::Open,
            BreakerState::HalfOpen => BreakerKind::HalfOpen,
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: Mutex<BreakerState>,
    settings: BreakerSettings,
    /// The provider's counters (calls, verdicts, breaker state and transitions).
    metrics: Arc<ProviderMetrics>,
}

impl Breaker {
    fn new(settings: BreakerSettings, metrics: Arc<ProviderMetrics>) -> Self {
        metrics.reset_state(BreakerKind::Closed);
        Self {
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            settings,
            metrics,
        }
    }

    /// Records a change of state kind (not a failure counted while closed).
    fn moved(&self, from: BreakerState, to: BreakerState) {
        if from.kind() != to.kind() {
            self.metrics.transition(to.kind());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// True if a call may go out now (moving Open → HalfOpen when the cooldown is over).
    fn admit(&self, now: Instant) -> bool {
        let mut s = self.lock();
        match *s {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.moved(*s, BreakerState::HalfOpen);
                *s = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    /// True if a call may go out now, without taking the half-open probe slot. For asking a
    /// provider whether it runs code flows at all (`start_verification`): most answer "no"
    /// without any call, and such a question must not leave the breaker half-open with no probe
    /// in flight — that would refuse every later call for good.
    fn would_admit(&self, now: Instant) -> bool {
        match *self.lock() {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } => now >= until,
            BreakerState::HalfOpen => false,
        }
    }

    fn record(&self, ok: bool, now: Instant) {
        let mut s = self.lock();
        let next = match (*s, ok) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false)
                if failures + 1 < self.settings.failure_threshold =>
            {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => BreakerState::Open {
                until: now + self.settings.cooldown,
            },
        };
        self.moved(*s, next);
        *s = next;
    }

    /// Counts a call's verdict and feeds it to the breaker: only genuine provider-side failures
    /// count ([`counts_against_provider`]).
    fn finish(&self, verdict: &Verdict) {
        self.metrics.call(verdict.metric_label());
        self.record(!counts_against_provider(verdict), Instant::now());
    }
}

/// True for a verdict that counts toward the provider's breaker: a failure before anyone was
/// reached ([`Verdict::Failed`]: connect, timeout, 5xx, bad signature) or a provider-side failure
/// after ([`Blame::Provider`]). Never for what a caller or a link holder sends
/// ([`Blame::Caller`]), nor for a person's answer: whoever can send those could otherwise open the
/// breaker for everyone.
pub fn counts_against_provider(verdict: &Verdict) -> bool {
    match verdict {
        Verdict::Failed(_) => true,
        Verdict::Refused(r) => r.blame == Blame::Provider,
        Verdict::Approved
        | Verdict::NotAnswered
        | Verdict::HungUp
        | Verdict::Denied
        | Verdict::FailedOpen(_)
        | Verdict::AppApproved
        | Verdict::FraudReported
        | Verdict::Bypassed(_) => false,
    }
}

/// A route ready to use.
#[derive(Debug)]
struct Route {
    settings: RouteSettings,
    providers: Vec<(String, Arc<dyn Provider>)>,
}

/// The router: itself a [`Provider`], so the engine does not know routing exists.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    breakers: HashMap<String, Breaker>,
    /// Every configured provider by name, routed or not ([`Provider::member`]).
    members: HashMap<String, Arc<dyn Provider>>,
}

/// Why a router could not be built.
#[derive(Debug, thiserror::Error)]
#[error("route {index}: no provider named '{name}'")]
pub struct RouterError {
    /// Route position (0-based).
    pub index: usize,
    /// The missing name.
    pub name: String,
}

impl Router {
    /// Builds the routes over named providers.
    pub fn new(
        routes: Vec<RouteSettings>,
        providers: &HashMap<String, Arc<dyn Provider>>,
        breaker: BreakerSettings,
    ) -> Result<Self, RouterError> {
        let mut built = Vec::new();
        for (index, r) in routes.into_iter().enumerate() {
            let mut list = Vec::new();
            for name in &r.providers {
                let p = providers.get(name).ok_or_else(|| RouterError {
                    index,
                    name: name.clone(),
                })?;
                list.push((name.clone(), p.clone()));
            }
            built.push(Route {
                settings: r,
                providers: list,
            });
        }
        let breakers = providers
            .keys()
            .map(|k| {
                let metrics = crate::telemetry::metrics::global().provider(k);
                (k.clone(), Breaker::new(breaker, metrics))
            })
            .collect();
        Ok(Self {
            routes: built,
            breakers,
            members: providers.clone(),
        })
    }

    /// The breaker state of a provider (metrics, readiness, tests).
    pub fn breaker_state(&self, provider: &str) -> Option<BreakerState> {
        self.breakers.get(provider).map(|b| *b.lock())
    }
}

#[async_trait]
impl Provider for Router {
    fn name(&self) -> &str {
        "router"
    }

    fn member(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.members.get(name).cloned()
    }

    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict {
        self.route(attempt, |p, a| {
            Box::pin(async move { p.authenticate(a).await })
        })
        .await
    }

    async fn send_code(&self, attempt: &AuthAttempt, code: &str) -> Verdict {
        let code = code.to_string();
        self.route(attempt, move |p, a| {
            let code = code.clone();
            Box::pin(async move { p.send_code(a, &code).await })
        })
        .await
    }

    async fn start_verification(&self, attempt: &AuthAttempt) -> Option<(String, Verdict)> {
        let route = self.routes.iter().find(|r| r.settings.matches(attempt))?;
        let mut reasons = Vec::new();
        // The kind of the last failure (every provider skipped: a routing failure).
        let mut kind = ProviderErrorKind::Routing;
        // Skips are counted only once this question has become the call: when it answers `None`
        // the engine goes on to `authenticate`, whose `route` skips (and counts) the same
        // providers again — counting here too would count one skipped call twice.
        let mut skipped = Vec::new();
        let counted = |skipped: &[&Breaker]| skipped.iter().for_each(|b| b.metrics.skipped());
        for (name, provider) in &route.providers {
            let breaker = self.breakers.get(name);
            if let Some(b) = breaker.filter(|b| !b.would_admit(Instant::now())) {
                skipped.push(b);
                reasons.push(format!("{name}: circuit open"));
                continue;
            }
            // The route's first available provider decides whether this is a code flow.
            let (_, verdict) = provider.start_verification(attempt).await?;
            if let Some(b) = breaker {
                b.finish(&verdict);
            }
            match verdict {
                Verdict::Failed(e) => {
                    kind = e.kind();
                    reasons.push(format!("{name}: {e}"));
                }
                other => {
                    counted(&skipped);
                    return Some((name.clone(), other));
                }
            }
        }
        if reasons.len() == skipped.len() && !route.providers.iter().any(|(_, p)| p.sends_codes()) {
            // Every provider was skipped (circuit open) and none of them runs code flows: nobody
            // was asked whether this is one. `authenticate` then skips (and counts) the same
            // providers and applies the route's fail mode, as it does when they fail — an open
            // circuit must not answer otherwise than the failures that opened it.
            return None;
        }
        counted(&skipped);
        // Codes never fail open: the person must still prove something.
        Some((
            String::new(),
            Verdict::failed(
                kind,
                format!("every provider failed ({})", reasons.join("; ")),
            ),
        ))
    }

    async fn check_verification(
        &self,
        provider: &str,
        attempt: &AuthAttempt,
        code: &str,
    ) -> Verdict {
        for route in &self.routes {
            if let Some((_, p)) = route.providers.iter().find(|(n, _)| n == provider) {
                return p.check_verification(provider, attempt, code).await;
            }
        }
        Verdict::failed(
            ProviderErrorKind::Routing,
            format!("no provider named {provider}"),
        )
    }

    async fn route_health(&self) -> Option<Vec<RouteHealth>> {
        let mut checked: HashMap<&str, ProviderHealth> = HashMap::new();
        let mut out = Vec::with_capacity(self.routes.len());
        for (index, r) in self.routes.iter().enumerate() {
            let mut providers = Vec::with_capacity(r.providers.len());
            for (name, p) in &r.providers {
                let health = match checked.get(name.as_str()) {
                    Some(h) => h.clone(),
                    None => {
                        let h = self.provider_health(name, p.as_ref()).await;
                        checked.insert(name, h.clone());
                        h
                    }
                };
                providers.push(health);
            }
            out.push(RouteHealth {
                index,
                description: r.settings.describe(),
                fail_mode: r.settings.fail_mode,
                healthy: providers.iter().any(|p| p.healthy),
                providers,
            });
        }
        Some(out)
    }

    async fn healthy(&self) -> bool {
        // Ready when every route has at least one provider that answers and is not open.
        for r in &self.routes {
            let mut any = false;
            for (name, p) in &r.providers {
                let open = matches!(self.breaker_state(name), Some(BreakerState::Open { .. }));
                if !open && p.healthy().await {
                    any = true;
                    break;
                }
            }
            if !any {
                return false;
            }
        }
        true
    }
}

/// How long one provider's own health check may take in a readiness report: a provider that
/// does not answer its health check within it is reported unreachable.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One provider in a readiness report (`/readyz` on the admin listener).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderHealth {
    /// The provider's name (`[providers.NAME]`).
    pub name: String,
    /// `closed`, `open` or `half_open`; `none` for a provider without a breaker.
    pub breaker: &'static str,
    /// The provider's own health check (`null` when it was not asked: its breaker refuses calls).
    pub reachable: Option<bool>,
    /// Usable now: the breaker does not refuse calls and the health check passed.
    pub healthy: bool,
}

/// One route in a readiness report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteHealth {
    /// Position in `[[routes]]`, from 0.
    pub index: usize,
    /// What the route matches, in words.
    pub description: String,
    /// `secure` or `safe` (a `safe` route is also named in the report's warnings).
    pub fail_mode: FailMode,
    /// True when at least one of its providers is healthy.
    pub healthy: bool,
    /// Its providers, in order.
    pub providers: Vec<ProviderHealth>,
}

impl RouteSettings {
    /// What the route matches, as `match_x=value` pairs, or `every authentication`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("match_username", &self.match_username),
            ("match_group", &self.match_group),
            ("match_country_code", &self.match_country_code),
            ("match_mode", &self.match_mode),
            ("match_caller", &self.match_caller),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        if parts.is_empty() {
            "every authentication".into()
        } else {
            parts.join(" ")
        }
    }
}

impl Router {
    /// One provider's health: a breaker refusing calls (open, cooldown not over) makes it
    /// unhealthy without asking it; otherwise its own health check decides. A breaker whose
    /// cooldown is over counts as usable: the next call is its probe.
    async fn provider_health(&self, name: &str, provider: &dyn Provider) -> ProviderHealth {
        let state = self.breaker_state(name);
        let refusing =
            matches!(state, Some(BreakerState::Open { until }) if until > Instant::now());
        let reachable = if refusing {
            None
        } else {
            Some(
                tokio::time::timeout(HEALTH_CHECK_TIMEOUT, provider.healthy())
                    .await
                    .unwrap_or(false),
            )
        };
        ProviderHealth {
            name: name.to_string(),
            breaker: state.map_or("none", |s| s.kind().label()),
            reachable,
            healthy: !refusing && reachable == Some(true),
        }
    }
}

type Call<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>>;

impl Router {
    async fn route<F>(&self, attempt: &AuthAttempt, call: F) -> Verdict
    where
        F: for<'a> Fn(&'a Arc<dyn Provider>, &'a AuthAttempt) -> Call<'a>,
    {
        let Some(route) = self.routes.iter().find(|r| r.settings.matches(attempt)) else {
            return Verdict::failed(
                ProviderErrorKind::Routing,
                "no route matches this authentication",
            );
        };
        let mut reasons = Vec::new();
        // The kind of the last failure (every provider skipped: a routing failure).
        let mut kind = ProviderErrorKind::Routing;
        for (name, provider) in &route.providers {
            let breaker = self.breakers.get(name);
            if let Some(b) = breaker {
                if !b.admit(Instant::now()) {
                    b.metrics.skipped();
                    reasons.push(format!("{name}: circuit open"));
                    continue;
                }
            }
            let verdict = call(provider, attempt).await;
            if let Some(b) = breaker {
                b.finish(&verdict);
            }
            match verdict {
                Verdict::Failed(e) => {
                    tracing::warn!(target: "pfgate::providers", provider = %name, reason = %e, "provider failed; trying the next");
                    kind = e.kind();
                    reasons.push(format!("{name}: {e}"));
                }
                other => return other,
            }
        }
        let reason = reasons.join("; ");
        match route.settings.fail_mode {
            FailMode::Secure => Verdict::Failed(ProviderError::new(
                kind,
                format!("every provider failed ({reason})"),
            )),
            FailMode::Safe => Verdict::FailedOpen(format!("every provider failed ({reason})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A provider that answers from a fixed list, counting calls.
    #[derive(Debug)]
    struct Fixed {
        verdicts: Mutex<Vec<Verdict>>,
        calls: AtomicUsize,
    }

    impl Fixed {
        fn new(v: Vec<Verdict>) -> Arc<Self> {
            Arc::new(Self {
                verdicts: Mutex::new(v),
                calls: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl Provider for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        async fn authenticate(&self, _: &AuthAttempt) -> Verdict {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut v = self.verdicts.lock().unwrap();
            if v.len() > 1 {
                v.remove(0)
            } else {
                v[0].clone()
            }
        }
    }

    fn attempt(user: &str, group: &str) -> AuthAttempt {
        AuthAttempt {
            request_id: "00".into(),
            username: user.into(),
            user_group: group.into(),
            caller: "CONTOSO\\mim".into(),
            phone: crate::core::phone::E164::parse("44", "2079460000", "", "1").unwrap(),
            mode: Mode3::VoiceCall,
            application_name: String::new(),
            initiating_ip: String::new(),
            caller_ip: "127.0.0.1".parse().unwrap(),
            external_id: None,
            scripted: None,
        }
    }

    fn router(
        routes: Vec<RouteSettings>,
        ps: Vec<(&str, Arc<Fixed>)>,
        breaker: BreakerSettings,
    ) -> Router {
        let map: HashMap<String, Arc<dyn Provider>> = ps
            .into_iter()
            .map(|(n, p)| (n.to_string(), p as Arc<dyn Provider>))
            .collect();
        Router::new(routes, &map, breaker).unwrap()
    }

    fn route(ps: &[&str], fail_mode: FailMode) -> RouteSettings {
        RouteSettings {
            providers: ps.iter().map(|s| s.to_string()).collect(),
            fail_mode,
            ..RouteSettings::default()
        }
    }

    #[tokio::test]
    async fn fails_over_only_on_provider_failure() {
        let a = Fixed::new(vec![Verdict::failed(ProviderErrorKind::HttpStatus, "500")]);
        let b = Fixed::new(vec![Verdict::Approved]);
        let r = router(
            vec![route(&["a", "b"], FailMode::Secure)],
            vec![("a", a.clone()), ("b", b.clone())],
            BreakerSettings::default(),
        );
        assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);

        // A person's denial is final: the next provider is not asked.
        let a = Fixed::new(vec![Verdict::Denied]);
        let b = Fixed::new(vec![Verdict::Approved]);
        let r = router(
            vec![route(&["a", "b"], FailMode::Secure)],
            vec![("a", a.clone()), ("b", b.clone())],
            BreakerSettings::default(),
        );
        assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Denied);
        assert_eq!(b.calls.load(Ordering::SeqCst), 0);
    }

    /// Issue #23 items 1 and 2: a refusal after the person was reached never fails over or open,
    /// and only the provider's own fault counts toward its breaker.
    #[tokio::test]
    async fn refusals_are_final_and_only_provider_faults_count_toward_the_breaker() {
        use crate::providers::Refusal;
        for (refusal, counts) in [
            (Refusal::caller("invalid_grant"), false),
            (Refusal::provider("token endpoint: HTTP 503"), true),
        ] {
            let verdict = Verdict::Refused(refusal);
            let a = Fixed::new(vec![verdict.clone()]);
            let b = Fixed::new(vec![Verdict::Approved]);
            let r = router(
                vec![route(&["a", "b"], FailMode::Safe)],
                vec![("a", a.clone()), ("b", b.clone())],
                BreakerSettings {
                    failure_threshold: 2,
                    cooldown: Duration::from_secs(60),
                },
            );
            for _ in 0..2 {
                assert_eq!(r.authenticate(&attempt("u", "")).await, verdict);
            }
            assert_eq!(b.calls.load(Ordering::SeqCst), 0, "no failover");
            let open = matches!(r.breaker_state("a"), Some(BreakerState::Open { .. }));
            assert_eq!(open, counts, "{verdict:?}");
        }
    }

    #[tokio::test]
    async fn all_down_in_both_fail_modes() {
        for (mode, open) in [(FailMode::Secure, false), (FailMode::Safe, true)] {
            let a = Fixed::new(vec![Verdict::failed(
                ProviderErrorKind::Unreachable,
                "down",
            )]);
            let b = Fixed::new(vec![Verdict::failed(
                ProviderErrorKind::Unreachable,
                "down",
            )]);
            let r = router(
                vec![route(&["a", "b"], mode)],
                vec![("a", a), ("b", b)],
                BreakerSettings::default(),
            );
            let v = r.authenticate(&attempt("u", "")).await;
            assert_eq!(matches!(v, Verdict::FailedOpen(_)), open, "{v:?}");
            assert_eq!(matches!(v, Verdict::Failed(_)), !open, "{v:?}");
        }
    }

    #[tokio::test]
    async fn routes_match_in_order() {
        let fin = Fixed::new(vec![Verdict::HungUp]);
        let all = Fixed::new(vec![Verdict::Approved]);
        let first = RouteSettings {
            match_username: Some("*@contoso.com".into()),
            match_group: Some("finance".into()),
            match_country_code: Some("44".into()),
            match_mode: Some("voiceCall".into()),
            match_caller: Some("contoso\\*".into()),
            ..route(&["fin"], FailMode::Secure)
        };
        let r = router(
            vec![first, route(&["all"], FailMode::Secure)],
            vec![("fin", fin), ("all", all)],
            BreakerSettings::default(),
        );
        assert_eq!(
            r.authenticate(&attempt("Eve@Contoso.com", "Finance")).await,
            Verdict::HungUp
        );
        assert_eq!(
            r.authenticate(&attempt("eve@fabrikam.com", "Finance"))
                .await,
            Verdict::Approved
        );
        assert_eq!(
            r.authenticate(&attempt("eve@contoso.com", "Ops")).await,
            Verdict::Approved
        );
        let none = router(
            vec![RouteSettings {
                match_group: Some("x".into()),
                ..route(&["all"], FailMode::Safe)
            }],
            vec![("all", Fixed::new(vec![Verdict::Approved]))],
            BreakerSettings::default(),
        );
        assert!(
            matches!(
                none.authenticate(&attempt("u", "")).await,
                Verdict::Failed(_)
            ),
            "no route: fail secure, whatever the fail mode"
        );
    }

    #[tokio::test]
    async fn breaker_opens_skips_and_closes_after_a_good_probe() {
        let a = Fixed::new(vec![
            Verdict::failed(ProviderErrorKind::Unreachable, "1"),
            Verdict::failed(ProviderErrorKind::Unreachable, "2"),
            Verdict::Approved,
        ]);
        let b = Fixed::new(vec![Verdict::Approved]);
        let settings = BreakerSettings {
            failure_threshold: 2,
            cooldown: Duration::from_millis(200),
        };
        let r = router(
            vec![route(&["a", "b"], FailMode::Secure)],
            vec![("a", a.clone()), ("b", b.clone())],
            settings,
        );
        for _ in 0..2 {
            assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);
        }
        assert!(matches!(
            r.breaker_state("a"),
            Some(BreakerState::Open { .. })
        ));
        // Open: a is skipped.
        assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);
        assert_eq!(a.calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Half-open probe succeeds: closed again.
        assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);
        assert_eq!(a.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            r.breaker_state("a"),
            Some(BreakerState::Closed { failures: 0 })
        );
    }

    /// The engine asks `start_verification` and then, for a provider without code flows,
    /// `authenticate`: a provider skipped because its circuit is open is one skipped call in
    /// `/metrics`, not two (the soak compares these counts with what the provider fakes saw).
    #[tokio::test]
    async fn a_skip_is_counted_once_per_authentication() {
        let a = Fixed::new(vec![Verdict::failed(
            ProviderErrorKind::Unreachable,
            "down",
        )]);
        let b = Fixed::new(vec![Verdict::Approved]);
        let r = router(
            vec![route(&["skip-once-a", "skip-once-b"], FailMode::Secure)],
            vec![("skip-once-a", a.clone()), ("skip-once-b", b.clone())],
            BreakerSettings {
                failure_threshold: 1,
                cooldown: Duration::from_secs(60),
            },
        );
        // The first authentication fails over and opens a's circuit.
        assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);
        let skipped = || {
            crate::telemetry::metrics::global()
                .provider("skip-once-a")
                .skipped_count()
        };
        let before = skipped();
        for _ in 0..3 {
            assert_eq!(r.start_verification(&attempt("u", "")).await, None);
            assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);
        }
        assert_eq!(skipped() - before, 3);
        assert_eq!(a.calls.load(Ordering::SeqCst), 1);
    }

    /// A provider without code flows answers `start_verification` with `None`: that question, asked
    /// while the cooldown is over, must not leave the breaker half-open for good (it did: every
    /// later call was refused as "circuit open" after the provider's first outage).
    #[tokio::test]
    async fn asking_for_a_code_flow_does_not_take_the_probe_slot() {
        let a = Fixed::new(vec![
            Verdict::failed(ProviderErrorKind::Unreachable, "down"),
            Verdict::Approved,
        ]);
        let r = router(
            vec![route(&["a"], FailMode::Secure)],
            vec![("a", a.clone())],
            BreakerSettings {
                failure_threshold: 1,
                cooldown: Duration::from_millis(50),
            },
        );
        assert!(matches!(
            r.authenticate(&attempt("u", "")).await,
            Verdict::Failed(_)
        ));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(r.start_verification(&attempt("u", "")).await, None);
        assert_eq!(r.authenticate(&attempt("u", "")).await, Verdict::Approved);
        assert_eq!(a.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            r.breaker_state("a"),
            Some(BreakerState::Closed { failures: 0 })
        );
    }

    /// Every provider of a safe route skipped for an open circuit: the engine's first question
    /// (`start_verification`) answers `None`, so `authenticate` applies the fail mode, counting
    /// each skip once (issue #23 item 3).
    #[tokio::test]
    async fn an_open_circuit_fails_open_on_a_safe_route_and_counts_one_skip() {
        let a = Fixed::new(vec![Verdict::failed(
            ProviderErrorKind::Unreachable,
            "down",
        )]);
        let r = router(
            vec![route(&["open-safe-a"], FailMode::Safe)],
            vec![("open-safe-a", a.clone())],
            BreakerSettings {
                failure_threshold: 1,
                cooldown: Duration::from_secs(60),
            },
        );
        assert!(matches!(
            r.authenticate(&attempt("u", "")).await,
            Verdict::FailedOpen(_)
        ));
        let skipped = || {
            crate::telemetry::metrics::global()
                .provider("open-safe-a")
                .skipped_count()
        };
        let before = skipped();
        assert_eq!(r.start_verification(&attempt("u", "")).await, None);
        assert!(matches!(
            r.authenticate(&attempt("u", "")).await,
            Verdict::FailedOpen(reason) if reason.contains("circuit open")
        ));
        assert_eq!(skipped() - before, 1);
        assert_eq!(a.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn globs() {
        assert!(glob("*@contoso.com", "A@CONTOSO.COM"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b", "aXXc"));
        assert!(glob("*", ""));
        assert!(!glob("", "x"));
    }
}
