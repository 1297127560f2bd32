//! An in-process PfWsSdk double for Rust tests, in the style of the `wiremock` crate: start one per
//! test, mount rules, drive it with the client under test, and let it verify its expectations when
//! it is dropped.
//!
//! ```no_run
//! # async fn example() {
//! use pfgate::testing::{MockServer, Outcome, Rule};
//!
//! let server = MockServer::start().await; // demo directory, TLS with a fresh certificate
//! server
//!     .mock(
//!         Rule::new()
//!             .operation("PfAuthUser_4")
//!             .user("alice@contoso.com")
//!             .outcome(Outcome::NoAnswer)
//!             .named("alice does not answer")
//!             .expect(1),
//!     )
//!     .await;
//! // … point the client under test at server.url(), trusting server.certificate_pem() …
//! // On drop: panics unless "alice does not answer" was used exactly once, listing the journal.
//! # }
//! ```
//!
//! It is the same double as `pfgate mock` (`crate::mock`): the real server, SOAP layer and engine,
//! a scripted provider, an in-memory store; bound to `127.0.0.1:0`, so tests run in parallel.

#[doc(hidden)]
pub use crate::core::test_skips;
/// The audit trail's files, for tests that check its chain on disk.
#[doc(hidden)]
pub use crate::telemetry::audit_trail;

use std::time::Duration;

pub use crate::mock::journal::Entry;
pub use crate::mock::scenario::{DelaySpec, FaultSide, FaultSpec as Fault};
pub use crate::store::directory::Outcome;

use crate::mock::scenario::{OneOrMany, RuleSpec, Scenario};
use crate::mock::{MockError, MockOptions, RunningMock};

/// A rule under construction: every matcher given must fit, an absent one fits anything.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    spec: RuleSpec,
}

impl Rule {
    /// A rule that matches every SOAP request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this wire operation (or pattern, `PfAuthUser*`); repeat for several.
    pub fn operation(mut self, op: &str) -> Self {
        self.spec.operation = Some(match self.spec.operation.take() {
            None => OneOrMany::One(op.to_string()),
            Some(OneOrMany::One(first)) => OneOrMany::Many(vec![first, op.to_string()]),
            Some(OneOrMany::Many(mut v)) => {
                v.push(op.to_string());
                OneOrMany::Many(v)
            }
        });
        self
    }

    /// Only requests whose `username` fits this pattern (case-insensitive).
    pub fn user(mut self, pattern: &str) -> Self {
        self.spec.user = Some(pattern.to_string());
        self
    }

    /// Only calls to numbers (country code + number, digits) fitting this pattern.
    pub fn phone(mut self, pattern: &str) -> Self {
        self.spec.phone = Some(pattern.to_string());
        self
    }

    /// Only this authenticated caller (pattern; `anonymous` when callers are not authenticated).
    pub fn caller(mut self, pattern: &str) -> Self {
        self.spec.caller = Some(pattern.to_string());
        self
    }

    /// Only requests whose decoded input `name` (dotted when nested) fits `pattern`.
    pub fn input(mut self, name: &str, pattern: &str) -> Self {
        self.spec
            .inputs
            .insert(name.to_string(), pattern.to_string());
        self
    }

    /// Only the Nth request the other matchers accept (from 1).
    pub fn call(mut self, n: u64) -> Self {
        self.spec.call = Some(n);
        self
    }

    /// At most `n` uses (wiremock's `up_to_n_times`).
    pub fn times(mut self, n: u64) -> Self {
        self.spec.times = Some(n);
        self
    }

    /// The provider's outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.spec.outcome = Some(outcome);
        self
    }

    /// Outcomes of successive uses; the last repeats.
    pub fn sequence(mut self, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        self.spec.sequence = outcomes.into_iter().collect();
        self
    }

    /// Wait this long before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.spec.delay_ms = Some(DelaySpec::Fixed(millis(d)));
        self
    }

    /// Wait a random time between the bounds before answering.
    pub fn delay_between(mut self, lo: Duration, hi: Duration) -> Self {
        self.spec.delay_ms = Some(DelaySpec::Range([millis(lo), millis(hi)]));
        self
    }

    /// Answer with this fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.spec.fault = Some(fault);
        self
    }

    /// A name for the journal and failure messages.
    pub fn named(mut self, name: &str) -> Self {
        self.spec.name = Some(name.to_string());
        self
    }

    /// The rule must be used exactly `n` times by the time the server is dropped.
    pub fn expect(mut self, n: u64) -> Self {
        self.spec.expect = Some(n);
        self
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Builds a [`MockServer`] with a directory other than the demo one.
#[derive(Debug, Default)]
pub struct MockServerBuilder {
    scenario: Option<String>,
    rules: Vec<Rule>,
    plain_http: bool,
}

impl MockServerBuilder {
    /// Users, phone rules and rules from scenario TOML (the format of `fixtures/mock-*.toml`).
    pub fn scenario_toml(mut self, toml: &str) -> Self {
        self.scenario = Some(toml.to_string());
        self
    }

    /// Plain HTTP on loopback instead of TLS.
    pub fn plain_http(mut self) -> Self {
        self.plain_http = true;
        self
    }

    /// A rule mounted from the start.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Starts the server; panics with the reason when the scenario is invalid (a test set-up
    /// mistake), like wiremock's builder.
    pub async fn start(self) -> MockServer {
        match self.try_start().await {
            Ok(s) => s,
            Err(e) => panic!("pfgate::testing::MockServer could not start: {e}"),
        }
    }

    /// Starts the server, or says why it could not.
    pub async fn try_start(self) -> Result<MockServer, MockError> {
        let (directory, mut specs) = match &self.scenario {
            Some(text) => {
                let s = Scenario::from_sources(&[("scenario_toml".to_string(), text.clone())])?;
                let specs = s.rules.iter().map(|r| r.spec.clone()).collect::<Vec<_>>();
                (s.directory, specs)
            }
            None => (Scenario::demo()?.directory, Vec::new()),
        };
        specs.extend(self.rules.into_iter().map(|r| r.spec));
        let mut options = MockOptions::new();
        options.plain_http = self.plain_http;
        let running = crate::mock::start_built(options, directory, specs).await?;
        Ok(MockServer {
            running: Some(running),
        })
    }
}

/// A running double, verified when dropped.
#[derive(Debug)]
pub struct MockServer {
    running: Option<RunningMock>,
}

impl MockServer {
    /// The demo directory (`fixtures/demo.toml`), no rule, TLS on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A builder for other set-ups.
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::default()
    }

    fn running(&self) -> Option<&RunningMock> {
        self.running.as_ref()
    }

    /// Mounts a rule after the ones already mounted (the first matching rule decides). Panics when
    /// the rule is invalid (an unknown operation name, an impossible fault).
    pub async fn mock(&self, rule: Rule) {
        if let Some(r) = self.running() {
            if let Err(e) = r.state.add_rule(rule.spec) {
                panic!("pfgate::testing: invalid rule: {e}");
            }
        }
    }

    /// The SDK URL (`https://127.0.0.1:PORT/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx`).
    pub fn url(&self) -> String {
        self.running().map(RunningMock::url).unwrap_or_default()
    }

    /// The address the server listens on.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        let r = self.running()?;
        r.server.tls_addr.or(r.server.plain_addr)
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        self.running()
            .map(RunningMock::admin_url)
            .unwrap_or_default()
    }

    /// The server certificate (DER), for a client to trust exactly it.
    pub fn certificate_der(&self) -> Option<Vec<u8>> {
        Some(self.running()?.server.tls.as_ref()?.leaf.to_vec())
    }

    /// The server certificate (PEM).
    pub fn certificate_pem(&self) -> Option<String> {
        Some(self.running()?.server.tls.as_ref()?.leaf_pem())
    }

    /// The certificate's SHA-256 fingerprint (`AA:BB:…`).
    pub fn fingerprint(&self) -> Option<String> {
        self.running()?.fingerprint()
    }

    /// Every request received so far (secrets redacted), oldest first.
    pub fn received_requests(&self) -> Vec<Entry> {
        self.running()
            .map(|r| r.state.journal.list(&Default::default()))
            .unwrap_or_default()
    }

    /// How many requests for `operation` were received.
    pub fn received(&self, operation: &str) -> usize {
        self.received_requests()
            .iter()
            .filter(|e| e.operation.as_deref() == Some(operation))
            .count()
    }

    /// The last one-time passcode "texted" to this E.164 number (`+14255550100`).
    pub fn last_code(&self, e164: &str) -> Option<String> {
        self.running()?.state.loaded().scripted.last_code(e164)
    }

    /// Checks every rule's `expect`; the report lists each unmet one and the journal.
    pub fn check(&self) -> Result<(), String> {
        let Some(r) = self.running() else {
            return Ok(());
        };
        let (_, unmet) = crate::mock::admin::rule_report(&r.state);
        if unmet.is_empty() {
            return Ok(());
        }
        let mut msg = String::from("pfgate::testing::MockServer: expectations not met:\n");
        for u in &unmet {
            msg.push_str(&format!(
                "  - rule {}: expected {} use(s), got {}\n",
                u["name"], u["expect"], u["used"]
            ));
        }
        msg.push_str("requests received (secrets redacted):\n");
        let entries = self.received_requests();
        if entries.is_empty() {
            msg.push_str("  (none)\n");
        }
        for e in entries {
            msg.push_str(&format!(
                "  #{} {} user={} rule={} status={} outcome={} inputs={}\n",
                e.seq,
                e.operation.as_deref().unwrap_or("-"),
                e.user.as_deref().unwrap_or("-"),
                e.rule.as_deref().unwrap_or("(unmatched)"),
                e.response.status,
                e.response.outcome,
                serde_json::to_string(&e.inputs).unwrap_or_default()
            ));
        }
        Err(msg)
    }

    /// Panics with [`Self::check`]'s report when an expectation is not met.
    pub fn verify(&self) {
        if let Err(msg) = self.check() {
            panic!("{msg}");
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let result = self.check();
        if let Some(r) = self.running.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                drop(handle.spawn(r.shutdown(Duration::from_millis(10))));
            }
        }
        if let Err(msg) = result {
            if !std::thread::panicking() {
                panic!("{msg}");
            }
        }
    }
}
