//! The test double (`pfgate mock`): the same server, SOAP layer and engine as the gateway, with a
//! scripted provider, an in-memory store, and what a CI test needs around them — scenarios of rules
//! (`scenario`), faults (`faults`), a journal of every request (`journal`), an admin API to read it,
//! verify counts, override outcomes and reload scenarios (`admin`), and replay of recorded
//! exchanges (`replay`). `docs/mock.md` is the user's reference.
//!
//! Why the real engine and not canned XML: a client tested against the double must meet the same
//! envelopes, codes, in-flight sharing and deadlines it will meet in production; only who answers
//! the phone is scripted. The double is a layer around the gateway's service
//! ([`serve::MockLayer`]), handed to `server::start_serving`: the server and the gateway never name
//! it, and a server started without a layer pays nothing for it.

pub mod admin;
pub mod faults;
pub mod journal;
pub mod listener;
pub mod record;
pub mod replay;
pub mod scenario;
pub mod serve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::engine::Engine;
use crate::providers::scripted::{verdict_of, ScriptedProvider};
use crate::providers::{AuthAttempt, Provider, Verdict};
use crate::server::{RunningServer, StartError};
use crate::store::directory::Outcome;
use journal::Journal;
use scenario::{Scenario, ScenarioError};

/// The default admin API prefix.
pub const DEFAULT_ADMIN_PREFIX: &str = "/__pfgate/";

/// The environment variable `pfgate mock` reads the admin token from (never a command-line
/// argument: those are visible to every user of the machine).
pub const ADMIN_TOKEN_ENV: &str = "PFGATE_MOCK_ADMIN_TOKEN";

/// Why the double could not start or a scenario could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// A scenario file is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The recorded fixtures could not be read.
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    /// The in-memory store could not be opened or seeded.
    #[error("store: {0}")]
    Store(String),
    /// The listeners could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The options contradict each other.
    #[error("{0}")]
    Options(String),
}

/// How to run the double.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Plain HTTP instead of TLS with a fresh self-signed certificate (loopback only).
    pub plain_http: bool,
    /// Scenario files, merged in order; none = the demo directory.
    pub scenario_files: Vec<PathBuf>,
    /// Admin API path prefix (normalised to start and end with `/`).
    pub admin_prefix: String,
    /// Bearer token the admin API requires; required when the admin API's listener is not
    /// loopback.
    pub admin_token: Option<String>,
    /// Serve the admin API on this address of its own (same TLS identity) instead of the main
    /// listener.
    pub admin_listen: Option<SocketAddr>,
    /// Answer from recorded exchanges in this directory (`pfgate record`).
    pub replay: Option<PathBuf>,
    /// Allow `plain_http` on a non-loopback address. Off by default: plain HTTP off the machine
    /// would carry the admin token and SOAP bodies in the clear. The container image turns it on
    /// ([`ANY_ADDRESS_ENV`]) because there the listener is in the container's own network
    /// namespace and `0.0.0.0` is how a CI service container is reached from the job at all.
    pub plain_http_any_address: bool,
}

/// The environment variable that sets [`MockOptions::plain_http_any_address`] (`1` or `true`);
/// the container image sets it.
pub const ANY_ADDRESS_ENV: &str = "PFGATE_MOCK_PLAIN_HTTP_ANY_ADDRESS";

impl MockOptions {
    /// Defaults: loopback, port 0, TLS, demo directory, `/__pfgate/`, no token.
    pub fn new() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            plain_http: false,
            scenario_files: Vec::new(),
            admin_prefix: DEFAULT_ADMIN_PREFIX.into(),
            admin_token: None,
            admin_listen: None,
            replay: None,
            plain_http_any_address: false,
        }
    }
}

impl Default for MockOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the scenario a reset returns to comes from.
#[derive(Debug, Clone)]
enum Initial {
    /// The embedded demo directory.
    Demo,
    /// Scenario files as read at start: a reset does not depend on the files staying unchanged.
    Sources(Vec<(String, String)>),
    /// Built in code (`pfgate::testing`).
    Built(crate::store::directory::Directory, Vec<scenario::RuleSpec>),
}

impl Initial {
    fn load(&self) -> Result<Scenario, ScenarioError> {
        match self {
            Initial::Demo => Scenario::demo(),
            Initial::Sources(s) => Scenario::from_sources(s),
            Initial::Built(d, r) => Scenario::from_rules("pfgate::testing", d.clone(), r.clone()),
        }
    }
}

/// A scenario and the scripted provider over its directory, swapped together.
#[derive(Debug)]
pub struct Loaded {
    /// The scenario.
    pub scenario: Scenario,
    /// Outcomes by user, sequence and phone rule for requests no rule decides.
    pub scripted: Arc<ScriptedProvider>,
}

impl Loaded {
    fn new(scenario: Scenario) -> Arc<Self> {
        let scripted = Arc::new(ScriptedProvider::from_directory(&scenario.directory));
        Arc::new(Self { scenario, scripted })
    }
}

/// An outcome imposed on the next calls of a user through the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The user (case-insensitive).
    pub user: String,
    /// The outcome of the user's next calls.
    pub outcome: Outcome,
    /// How many calls; counts down with each provider call.
    #[serde(default = "one")]
    pub count: u64,
    /// Delay before the outcome, in milliseconds (a person taking time to answer).
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u64 {
    1
}

/// Everything the double shares between its connections, its provider and its admin API.
#[derive(Debug)]
pub struct MockState {
    admin_prefix: String,
    /// SHA-256 of the admin token: compared in constant time, and the token itself is not kept.
    admin_token: Option<[u8; 32]>,
    scenario_files: Vec<PathBuf>,
    initial: Mutex<Initial>,
    current: RwLock<Arc<Loaded>>,
    /// Every request received.
    pub journal: Journal,
    overrides: Mutex<BTreeMap<String, Override>>,
    replay: Option<replay::Fixtures>,
    /// The engine's store, where a new scenario's users are added.
    store: std::sync::OnceLock<Arc<dyn crate::store::Store>>,
    /// False when the admin API has a listener of its own.
    admin_on_main: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The digest the admin token is kept and compared as.
fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl MockState {
    fn new(
        options: &MockOptions,
        initial: Initial,
        replay: Option<replay::Fixtures>,
    ) -> Result<Arc<Self>, MockError> {
        let loaded = Loaded::new(initial.load()?);
        let mut prefix = options.admin_prefix.trim().to_string();
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        if prefix == "/" || crate::gateway::is_sdk_path(prefix.trim_end_matches('/')) {
            return Err(MockError::Options(format!(
                "admin prefix '{prefix}' would hide the SDK endpoint"
            )));
        }
        Ok(Arc::new(Self {
            admin_prefix: prefix,
            admin_token: options.admin_token.as_deref().map(token_digest),
            scenario_files: options.scenario_files.clone(),
            initial: Mutex::new(initial),
            current: RwLock::new(loaded),
            journal: Journal::default(),
            overrides: Mutex::new(BTreeMap::new()),
            replay,
            store: std::sync::OnceLock::new(),
            admin_on_main: options.admin_listen.is_none(),
        }))
    }

    /// The admin API prefix (`/__pfgate/`).
    pub fn admin_prefix(&self) -> &str {
        &self.admin_prefix
    }

    /// True when the main listener serves the admin API (no `admin_listen`).
    pub fn admin_on_main(&self) -> bool {
        self.admin_on_main
    }

    /// True when the admin API wants a bearer token.
    pub fn token_required(&self) -> bool {
        self.admin_token.is_some()
    }

    /// True when `Authorization: Bearer …` carries the token (or none is required).
    pub fn token_ok(&self, authorization: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(want) = &self.admin_token else {
            return true;
        };
        let Some(given) = authorization.and_then(|a| {
            let (scheme, rest) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        }) else {
            return false;
        };
        bool::from(token_digest(given).ct_eq(want))
    }

    /// The scenario in force. A request keeps the `Arc` it took for its whole life, so a reload
    /// never changes the rule a request in flight is answered by.
    pub fn loaded(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Puts `scenario` in force (it was validated when built) and adds its new users to the store.
    pub async fn apply(&self, scenario: Scenario) -> Result<(), MockError> {
        if let Some(store) = self.store.get() {
            crate::server::app::seed(store.as_ref(), &scenario.directory)
                .await
                .map_err(|e| MockError::Store(e.to_string()))?;
        }
        let loaded = Loaded::new(scenario);
        match self.current.write() {
            Ok(mut g) => *g = loaded,
            Err(p) => *p.into_inner() = loaded,
        }
        Ok(())
    }

    /// Appends a rule to the scenario in force, keeping the counters of the others.
    pub fn add_rule(&self, spec: scenario::RuleSpec) -> Result<(), MockError> {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // Same directory: the scripted provider (its sequences and outbox) carries on.
        let scenario = g.scenario.with_rule("pfgate::testing", spec)?;
        let scripted = g.scripted.clone();
        *g = Arc::new(Loaded { scenario, scripted });
        Ok(())
    }

    /// Re-reads the scenario files given at start (the demo directory when there were none).
    pub fn reread(&self) -> Result<Scenario, MockError> {
        if self.scenario_files.is_empty() {
            return Ok(lock(&self.initial).load()?);
        }
        let mut sources = Vec::new();
        for p in &self.scenario_files {
            let text = std::fs::read_to_string(p).map_err(|source| ScenarioError::Io {
                path: p.display().to_string(),
                source,
            })?;
            sources.push((p.display().to_string(), text));
        }
        let scenario = Scenario::from_sources(&sources)?;
        *lock(&self.initial) = Initial::Sources(sources);
        Ok(scenario)
    }

    /// The scenario a reset returns to, fresh (counters at zero).
    pub fn initial(&self) -> Result<Scenario, MockError> {
        Ok(lock(&self.initial).load()?)
    }

    /// The outcome the provider must give the call `attempt` describes: an override of its user
    /// first (counting down), then the outcome the matched rule of the request that caused the
    /// call put on the attempt.
    fn decide(&self, attempt: &AuthAttempt) -> Option<(Outcome, Duration)> {
        let key = attempt.username.to_lowercase();
        let mut overrides = lock(&self.overrides);
        if let Some(o) = overrides.get_mut(&key) {
            let picked = (o.outcome, Duration::from_millis(o.delay_ms));
            o.count = o.count.saturating_sub(1);
            if o.count == 0 {
                overrides.remove(&key);
            }
            return Some(picked);
        }
        attempt.scripted.map(|outcome| (outcome, Duration::ZERO))
    }

    /// Adds (or replaces) an override.
    pub fn set_override(&self, o: Override) {
        lock(&self.overrides).insert(o.user.to_lowercase(), o);
    }

    /// The overrides still in force.
    pub fn overrides(&self) -> Vec<Override> {
        lock(&self.overrides).values().cloned().collect()
    }

    /// Removes every override.
    pub fn clear_overrides(&self) {
        lock(&self.overrides).clear();
    }

    /// The recorded exchanges, in replay mode.
    pub fn replay(&self) -> Option<&replay::Fixtures> {
        self.replay.as_ref()
    }
}

/// The double's provider: overrides, then the matched rule's outcome, then the scenario's scripted
/// outcomes (per user, `sequence`, phone rules).
#[derive(Debug)]
pub struct MockProvider {
    state: Arc<MockState>,
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        "mock"
    }

    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict {
        let loaded = self.state.loaded();
        match self.state.decide(attempt) {
            Some((outcome, delay)) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                verdict_of(outcome, attempt)
            }
            None => loaded.scripted.authenticate(attempt).await,
        }
    }

    async fn send_code(&self, attempt: &AuthAttempt, code: &str) -> Verdict {
        let loaded = self.state.loaded();
        match self.state.decide(attempt) {
            Some((Outcome::Fail, _)) => Verdict::failed(
                crate::providers::ProviderErrorKind::Scripted,
                "scripted failure",
            ),
            Some(_) => {
                loaded.scripted.deliver(attempt, code);
                Verdict::Approved
            }
            None => loaded.scripted.send_code(attempt, code).await,
        }
    }
}

/// A running double.
#[derive(Debug)]
pub struct RunningMock {
    /// The server (listeners, TLS identity).
    pub server: RunningServer,
    /// The double's state (journal, scenario, overrides).
    pub state: Arc<MockState>,
    /// The admin API's own listener, when it has one.
    pub admin_addr: Option<SocketAddr>,
    admin_listener: Option<crate::net::listener::Listeners>,
}

impl RunningMock {
    /// The SDK URL.
    pub fn url(&self) -> String {
        self.server
            .tls_url()
            .or_else(|| self.server.plain_url())
            .unwrap_or_default()
    }

    /// The admin API's base URL (ends with `/`).
    pub fn admin_url(&self) -> String {
        let scheme = if self.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let addr = self
            .admin_addr
            .or(self.server.tls_addr)
            .or(self.server.plain_addr);
        match addr {
            Some(a) => format!("{scheme}://{a}{}", self.state.admin_prefix),
            None => String::new(),
        }
    }

    /// Stops the admin listener and the server, waiting up to `grace` for requests in flight.
    pub async fn shutdown(mut self, grace: Duration) {
        drop(self.admin_listener.take());
        self.server.shutdown(grace).await;
    }

    /// The TLS certificate's SHA-256 fingerprint (`None` with plain HTTP).
    pub fn fingerprint(&self) -> Option<String> {
        self.server.tls.as_ref().map(|t| t.fingerprint())
    }

    /// What `--ready-file` holds: one JSON object a CI script can wait for and read.
    pub fn ready_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url(),
            "admin_url": self.admin_url(),
            "fingerprint": self.fingerprint(),
            "certificate_pem": self.server.tls.as_ref().map(|t| t.leaf_pem()),
            "tls": self.server.tls.is_some(),
            "admin_token_required": self.state.token_required(),
            "pid": std::process::id(),
        })
    }
}

/// Starts the double.
pub async fn start(options: MockOptions) -> Result<RunningMock, MockError> {
    let initial = if options.scenario_files.is_empty() {
        Initial::Demo
    } else {
        let mut sources = Vec::new();
        for p in &options.scenario_files {
            let text = std::fs::read_to_string(p).map_err(|source| ScenarioError::Io {
                path: p.display().to_string(),
                source,
            })?;
            sources.push((p.display().to_string(), text));
        }
        Initial::Sources(sources)
    };
    let replay = match &options.replay {
        Some(dir) => Some(replay::Fixtures::load(dir)?),
        None => None,
    };
    start_with_initial(options, initial, replay).await
}

/// Starts the double over a directory and rules built in code (`pfgate::testing`).
pub async fn start_built(
    options: MockOptions,
    directory: crate::store::directory::Directory,
    rules: Vec<scenario::RuleSpec>,
) -> Result<RunningMock, MockError> {
    start_with_initial(options, Initial::Built(directory, rules), None).await
}

async fn start_with_initial(
    mut options: MockOptions,
    initial: Initial,
    replay: Option<replay::Fixtures>,
) -> Result<RunningMock, MockError> {
    let loopback = options.listen.ip().is_loopback();
    let admin_at = options.admin_listen.unwrap_or(options.listen);
    if !admin_at.ip().is_loopback()
        && options.admin_token.is_none()
        && options.plain_http_any_address
    {
        // The container's default command: the double must start without a token, and an admin
        // API nobody can use is the safe way to do that (a token-less one would let anyone on the
        // CI network rewrite the scenario).
        tracing::warn!(target: "pfgate::mock", "no admin token ({ADMIN_TOKEN_ENV}): the admin API on {admin_at} refuses every request");
        options.admin_token = Some(crate::engine::new_request_id());
    }
    if !admin_at.ip().is_loopback() && options.admin_token.is_none() {
        return Err(MockError::Options(format!(
            "the admin API on {admin_at} is not loopback-only: it then needs a token (set {ADMIN_TOKEN_ENV} or --admin-token-file)"
        )));
    }
    if options.plain_http && !loopback && !options.plain_http_any_address {
        return Err(MockError::Options(format!(
            "--plain-http serves only on loopback (for CI on one machine); {} is not (in a container's own network namespace set {ANY_ADDRESS_ENV}=1, as the pfgate image does)",
            options.listen
        )));
    }
    let state = MockState::new(&options, initial, replay)?;
    let mut settings = Settings::demo(options.listen);
    settings.demo = false;
    if options.plain_http {
        settings.tls_listen = None;
        settings.plain_listen = Some(options.listen);
    }
    let store = crate::server::app::open_store(&settings)
        .await
        .map_err(|e| MockError::Store(e.to_string()))?;
    crate::server::app::seed(store.as_ref(), &state.loaded().scenario.directory)
        .await
        .map_err(|e| MockError::Store(e.to_string()))?;
    let _ = state.store.set(store.clone());
    let provider = Arc::new(MockProvider {
        state: state.clone(),
    });
    let engine = Engine::new(store, provider, settings.engine.clone());
    let layer: Arc<dyn crate::gateway::Layer> = Arc::new(serve::MockLayer::new(state.clone()));
    let server = crate::server::start_serving(settings, engine, Some(layer)).await?;
    let (admin_addr, admin_listener) = match options.admin_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?;
            let bound = listener.local_addr().ok();
            let tls = server
                .tls
                .as_ref()
                .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
            let mock = state.clone();
            let handler: listener::Handler = Arc::new(move |req| {
                let mock = mock.clone();
                Box::pin(async move { admin::handle_own_listener(&mock, req).await })
                    as listener::Answer
            });
            let per_connection: listener::PerConnection = Arc::new(move || Some(handler.clone()));
            let served = listener::spawn(listener, tls, "admin API", per_connection);
            (bound, Some(served))
        }
        None => (None, None),
    };
    Ok(RunningMock {
        server,
        state,
        admin_addr,
        admin_listener,
    })
}

impl RunningMock {
    /// How long a shutdown waits for requests in flight: the longest a rule may delay, plus the
    /// engine's deadline, is more than a CI job wants to wait, so a few seconds.
    pub fn server_grace(&self) -> Duration {
        Duration::from_secs(5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt of `user` to `e164`, carrying the outcome its request's rule decided.
    fn attempt(user: &str, e164: &str, scripted: Option<Outcome>) -> AuthAttempt {
        AuthAttempt {
            request_id: "r".into(),
            username: user.into(),
            user_group: String::new(),
            caller: "MIMService@contoso.com".into(),
            phone: crate::engine::phone::E164::parse("", e164, "", "1").unwrap(),
            mode: crate::pfwssdk::Mode3::VoiceCall,
            application_name: String::new(),
            initiating_ip: String::new(),
            caller_ip: [127, 0, 0, 1].into(),
            external_id: None,
            scripted,
        }
    }

    #[test]
    fn a_rule_outcome_goes_to_the_call_to_its_number() {
        let state = MockState::new(&MockOptions::new(), Initial::Demo, None).unwrap();
        let user = "MIMService@contoso.com";
        // Concurrent requests of one service account: each call gets its own request's outcome,
        // carried on the attempt.
        let to_42 = attempt(user, "+14255550142", Some(Outcome::HangUp));
        let to_43 = attempt(user, "+14255550143", Some(Outcome::Deny));
        assert_eq!(state.decide(&to_43), Some((Outcome::Deny, Duration::ZERO)));
        assert_eq!(
            state.decide(&to_42),
            Some((Outcome::HangUp, Duration::ZERO))
        );
        // A call whose request matched no rule with an outcome: the scripted provider decides.
        assert_eq!(state.decide(&attempt(user, "+14255550142", None)), None);
        // Overrides come first and count down.
        state.set_override(Override {
            user: user.into(),
            outcome: Outcome::Fail,
            count: 1,
            delay_ms: 5,
        });
        let approved = attempt(
            "mimservice@contoso.com",
            "+14255550144",
            Some(Outcome::Approve),
        );
        assert_eq!(
            state.decide(&approved),
            Some((Outcome::Fail, Duration::from_millis(5)))
        );
        assert!(state.overrides().is_empty());
        assert_eq!(
            state.decide(&approved),
            Some((Outcome::Approve, Duration::ZERO))
        );
    }

    #[test]
    fn admin_token_is_checked_as_a_bearer_token() {
        let mut o = MockOptions::new();
        o.admin_token = Some("t0ken".into());
        let state = MockState::new(&o, Initial::Demo, None).unwrap();
        assert!(state.token_ok(Some("Bearer t0ken")));
        assert!(state.token_ok(Some("bearer  t0ken ")));
        assert!(!state.token_ok(Some("Bearer t0ke")));
        assert!(!state.token_ok(Some("Basic t0ken")));
        assert!(!state.token_ok(Some("t0ken")));
        assert!(!state.token_ok(None));
        let open = MockState::new(&MockOptions::new(), Initial::Demo, None).unwrap();
        assert!(open.token_ok(None));
        let mut bad = MockOptions::new();
        bad.admin_prefix = "/".into();
        assert!(MockState::new(&bad, Initial::Demo, None).is_err());
    }
}
