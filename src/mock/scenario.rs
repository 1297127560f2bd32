//! Scenarios: what the test double answers, written by a CI engineer as TOML (`fixtures/mock-*.toml`
//! are documented examples; `docs/mock.md` is the reference).
//!
//! A scenario is a users file (the same `[[users]]`, `[[phone_rules]]` and `default_phone_outcome`
//! as `fixtures/demo.toml`, so the engine's policy — unknown, blocked, disabled, bypass — applies as
//! on the gateway) plus ordered `[[rules]]`. A rule matches on operation, user, phone pattern,
//! caller, any decoded input element and the call number; the first rule that matches decides the
//! provider's outcome, a delay and a fault. A request no rule matches gets the engine's normal
//! behaviour, and is listed as unmatched by the verification endpoint, so a test can see a call its
//! scenario did not foresee.
//!
//! Everything is validated when loaded (an unknown operation name, an impossible status, a delay
//! longer than a client would wait), so a typo fails the start or the reload, not a CI run later.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pfwssdk::Operation;
use crate::store::directory::{Directory, DirectoryError, Outcome, PhoneRule, User};

/// The longest delay a rule may ask for: past 100 s a .NET client has given up long ago, so a
/// longer one is a typo.
pub const MAX_DELAY_MS: u64 = 100_000;

/// Why a scenario was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{origin}: {reason}")]
    Syntax {
        /// File (or `admin API`).
        origin: String,
        /// The parser's message.
        reason: String,
    },
    /// A rule is inconsistent.
    #[error("{origin}: rules[{index}] ({name}): {reason}")]
    Rule {
        /// File.
        origin: String,
        /// Position of the rule in its file.
        index: usize,
        /// The rule's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The users or phone rules are invalid.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// A delay: fixed (`delay_ms = 200`) or random within bounds (`delay_ms = [100, 900]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum DelaySpec {
    /// Always this many milliseconds.
    Fixed(u64),
    /// Uniformly between the two bounds (inclusive), in milliseconds.
    Range([u64; 2]),
}

impl DelaySpec {
    /// The delay to apply now.
    pub fn pick(self) -> Duration {
        match self {
            DelaySpec::Fixed(ms) => Duration::from_millis(ms),
            DelaySpec::Range([lo, hi]) => {
                use rand::Rng;
                Duration::from_millis(rand::rng().random_range(lo..=hi.max(lo)))
            }
        }
    }

    fn check(self) -> Result<(), String> {
        let (lo, hi) = match self {
            DelaySpec::Fixed(ms) => (ms, ms),
            DelaySpec::Range([lo, hi]) => (lo, hi),
        };
        if lo > hi {
            return Err(format!("delay_ms range [{lo}, {hi}] is reversed"));
        }
        if hi > MAX_DELAY_MS {
            return Err(format!(
                "delay_ms {hi} is longer than {MAX_DELAY_MS} ms (a .NET client gives up at 100 s)"
            ));
        }
        Ok(())
    }
}

/// Which side a scripted SOAP fault blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultSide {
    /// `soap:Client` (1.2 `soap:Sender`): the request was wrong.
    Client,
    /// `soap:Server` (1.2 `soap:Receiver`): the service failed.
    #[default]
    Server,
}

/// What goes wrong instead of (or on the way to) a normal answer: what a client's retry and timeout
/// code must be tested against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// An HTTP 500 SOAP fault, in the SOAP version of the request.
    SoapFault {
        /// `client` or `server` (default).
        #[serde(default)]
        code: FaultSide,
        /// The `faultstring`.
        #[serde(default = "default_fault_message")]
        message: String,
    },
    /// A bare HTTP error (500, 503 …) with a plain-text body, as a load balancer or a broken IIS
    /// answers.
    Http {
        /// The status, 400–599.
        status: u16,
    },
    /// The connection is closed before any response header is sent.
    DropBeforeHeaders,
    /// The headers (with the real `Content-Length`) and part of the body are sent, then the
    /// connection is closed.
    DropAfterHeaders,
    /// The real response, sent a few bytes at a time.
    Trickle {
        /// Bytes per chunk.
        #[serde(default = "default_chunk")]
        chunk_bytes: usize,
        /// Pause between chunks, in milliseconds.
        #[serde(default = "default_interval")]
        interval_ms: u64,
    },
    /// HTTP 200 with `text/xml` whose XML is not well-formed (a mismatched end tag).
    MalformedXml,
}

fn default_fault_message() -> String {
    "Server was unable to process request. ---> scripted fault (pfgate mock)".into()
}
fn default_chunk() -> usize {
    16
}
fn default_interval() -> u64 {
    200
}

impl FaultSpec {
    /// The short name used in the journal (`soap_fault`, `http_503`, `drop_before_headers` …).
    pub fn label(&self) -> String {
        match self {
            FaultSpec::SoapFault { code, .. } => match code {
                FaultSide::Client => "soap_fault_client".into(),
                FaultSide::Server => "soap_fault_server".into(),
            },
            FaultSpec::Http { status } => format!("http_{status}"),
            FaultSpec::DropBeforeHeaders => "drop_before_headers".into(),
            FaultSpec::DropAfterHeaders => "drop_after_headers".into(),
            FaultSpec::Trickle { .. } => "trickle".into(),
            FaultSpec::MalformedXml => "malformed_xml".into(),
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            FaultSpec::Http { status } if !(400..=599).contains(status) => Err(format!(
                "fault status {status} is not an HTTP error (400-599)"
            )),
            FaultSpec::Trickle {
                chunk_bytes,
                interval_ms,
            } => {
                if *chunk_bytes == 0 {
                    Err("trickle chunk_bytes must be at least 1".into())
                } else if *interval_ms > 10_000 {
                    Err("trickle interval_ms must be at most 10000".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// One or several strings (`operation = "PfAuthUser_4"` or `operation = ["PfAuthUser_4", …]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// One rule as written. Every matcher given must fit; an absent matcher fits anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A name for the journal and the verification report (default `FILE#N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Wire operation names or patterns (`PfAuthUser*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OneOrMany>,
    /// The request's `username`, a pattern (`*@contoso.com`), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The digits of the number called (country code and number, e.g. `1425555*`): the request's
    /// `countryCode` + `phoneNumber` when it carries one (`PfAuthUser_5`), otherwise the user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The authenticated caller (`anonymous` when callers are not authenticated), a pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Any decoded input element by name (nested ones dotted, e.g. `addUserSettings.Mode`), each a
    /// pattern. An element the request does not carry matches only `""`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// Only the Nth request the other matchers accepted (1 = the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<u64>,
    /// Only these request numbers (as `call`, several).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<u64>,
    /// Stop matching after this many uses (wiremock's `up_to_n_times`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// The provider's outcome for the call this request causes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Outcomes of successive uses of this rule; the last repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequence: Vec<Outcome>,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<DelaySpec>,
    /// Answer with this fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultSpec>,
    /// How many times the rule must be used, checked by the verification endpoint (and by
    /// `pfgate::testing::MockServer` on drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // documentation for the reader of the file; accepted, not used
    description: Option<String>,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    phone_rules: Vec<PhoneRule>,
    #[serde(default)]
    default_phone_outcome: Option<Outcome>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// A rule with its counters.
#[derive(Debug)]
pub struct Rule {
    /// As written.
    pub spec: RuleSpec,
    /// Its name (given, or `FILE#N`).
    pub name: String,
    /// Requests the matchers other than `call`/`calls`/`times` accepted.
    seen: AtomicU64,
    /// Requests the rule decided.
    used: AtomicU64,
    /// The `phone` matcher's digits and wildcards, worked out once.
    phone_pattern: Option<String>,
}

impl Rule {
    /// How many requests this rule decided.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }
}

/// The facts of one request a rule can match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Wire operation, `None` when the request could not be decoded.
    pub operation: Option<&'a str>,
    /// Decoded inputs (flattened, unredacted: matching happens before anything is recorded).
    pub inputs: &'a BTreeMap<String, String>,
    /// The authenticated caller.
    pub caller: &'a str,
}

/// What the rule that matched decided.
#[derive(Debug, Clone)]
pub struct Matched {
    /// The rule's name.
    pub name: String,
    /// The provider's outcome, when the rule gives one.
    pub outcome: Option<Outcome>,
    /// The delay to apply before answering.
    pub delay: Duration,
    /// The fault, when the rule gives one.
    pub fault: Option<FaultSpec>,
}

/// A loaded scenario: the directory, the rules, and where they came from.
#[derive(Debug)]
pub struct Scenario {
    /// Names of the scenario files (or `demo`, `admin API`).
    pub sources: Vec<String>,
    /// The `name`s the files gave.
    pub names: Vec<String>,
    /// Users and phone rules.
    pub directory: Directory,
    /// Rules in order.
    pub rules: Vec<Rule>,
    /// The rule index: for each wire operation, the positions (in order) of the rules whose
    /// `operation` matcher can fit it (rules without one fit every operation).
    by_operation: HashMap<&'static str, Vec<usize>>,
    /// The positions of the rules without an `operation` matcher: all a request that did not
    /// decode can match.
    any_operation: Vec<usize>,
}

impl Scenario {
    /// The demo directory and no rule: what `pfgate mock` answers without `--scenario`.
    pub fn demo() -> Result<Self, ScenarioError> {
        Ok(Self::assemble(
            vec!["fixtures/demo.toml (embedded)".into()],
            vec!["demo".into()],
            Directory::demo()?,
            Vec::new(),
        ))
    }

    /// Reads and merges scenario files, in order.
    pub fn from_files(paths: &[std::path::PathBuf]) -> Result<Self, ScenarioError> {
        let mut sources = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|source| ScenarioError::Io {
                path: p.display().to_string(),
                source,
            })?;
            sources.push((p.display().to_string(), text));
        }
        Self::from_sources(&sources)
    }

    /// Parses and merges `(origin, TOML text)` pairs: users and rules are concatenated in order
    /// (a user given twice is refused); the last `default_phone_outcome` given wins (default
    /// `approve`).
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, ScenarioError> {
        let mut users = Vec::new();
        let mut phone_rules = Vec::new();
        let mut default_phone = Outcome::Approve;
        let mut rules = Vec::new();
        let mut names = Vec::new();
        for (origin, text) in sources {
            let file: ScenarioFile = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
                origin: origin.clone(),
                reason: e.to_string().trim().to_string(),
            })?;
            if let Some(n) = file.name {
                names.push(n);
            }
            users.extend(file.users);
            phone_rules.extend(file.phone_rules);
            if let Some(d) = file.default_phone_outcome {
                default_phone = d;
            }
            for (index, spec) in file.rules.into_iter().enumerate() {
                rules.push(Rule::new(origin, index, spec)?);
            }
        }
        let origin = sources
            .iter()
            .map(|(o, _)| o.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let directory = Directory::from_parts(&origin, users, phone_rules, default_phone)?;
        let sources = sources.iter().map(|(o, _)| o.clone()).collect();
        Ok(Self::assemble(sources, names, directory, rules))
    }

    /// A scenario from rules built in code (`pfgate::testing`), over `directory`.
    pub fn from_rules(
        origin: &str,
        directory: Directory,
        specs: Vec<RuleSpec>,
    ) -> Result<Self, ScenarioError> {
        let rules = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| Rule::new(origin, i, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::assemble(
            vec![origin.to_string()],
            Vec::new(),
            directory,
            rules,
        ))
    }

    /// This scenario with one more rule at the end; the existing rules keep their counters (what
    /// `pfgate::testing::MockServer::mock` mounts while requests may already have been counted).
    pub fn with_rule(&self, origin: &str, spec: RuleSpec) -> Result<Self, ScenarioError> {
        let mut rules: Vec<Rule> = self
            .rules
            .iter()
            .map(|r| Rule {
                spec: r.spec.clone(),
                name: r.name.clone(),
                seen: AtomicU64::new(r.seen.load(Ordering::SeqCst)),
                used: AtomicU64::new(r.used()),
                phone_pattern: r.phone_pattern.clone(),
            })
            .collect();
        rules.push(Rule::new(origin, rules.len(), spec)?);
        Ok(Self::assemble(
            self.sources.clone(),
            self.names.clone(),
            self.directory.clone(),
            rules,
        ))
    }

    /// A scenario over `rules`, with its rule index.
    fn assemble(
        sources: Vec<String>,
        names: Vec<String>,
        directory: Directory,
        rules: Vec<Rule>,
    ) -> Self {
        let any_operation = (0..rules.len())
            .filter(|&i| rules[i].spec.operation.is_none())
            .collect();
        let by_operation = Operation::ALL
            .iter()
            .map(|op| {
                let name = op.name();
                let fits = (0..rules.len()).filter(|&i| rules[i].fits_operation(name));
                (name, fits.collect())
            })
            .collect();
        Self {
            sources,
            names,
            directory,
            rules,
            by_operation,
            any_operation,
        }
    }

    /// The first rule that matches this request, its counters advanced; `None` when none does.
    /// Only the rules the index lists for the request's operation are tried, in order: a rule
    /// for another operation is never looked at (nor its counters advanced, as before).
    pub fn find(&self, facts: &RequestFacts<'_>) -> Option<Matched> {
        let candidates = match facts.operation {
            Some(op) => self.by_operation.get(op).unwrap_or(&self.any_operation),
            None => &self.any_operation,
        };
        let mut phone: Option<Option<String>> = None;
        for rule in candidates.iter().filter_map(|&i| self.rules.get(i)) {
            let phone = match (&rule.phone_pattern, &phone) {
                (None, _) => None,
                (Some(_), Some(p)) => p.as_deref(),
                (Some(_), None) => phone.insert(self.phone_digits(facts.inputs)).as_deref(),
            };
            if let Some(m) = rule.try_match(facts, phone) {
                return Some(m);
            }
        }
        None
    }

    /// The digits of the number this request calls: the request's own number, else the user's.
    fn phone_digits(&self, inputs: &BTreeMap<String, String>) -> Option<String> {
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        if let Some(n) = inputs.get("phoneNumber").filter(|n| !n.is_empty()) {
            let cc = inputs.get("countryCode").map(String::as_str).unwrap_or("");
            return Some(format!("{}{}", digits(cc), digits(n)));
        }
        let user = self.directory.get(inputs.get("username")?)?;
        Some(format!(
            "{}{}",
            digits(&user.country_code),
            digits(&user.phone)
        ))
    }
}

impl Rule {
    fn new(origin: &str, index: usize, spec: RuleSpec) -> Result<Self, ScenarioError> {
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{origin}#{}", index + 1));
        let bad = |reason: String| ScenarioError::Rule {
            origin: origin.to_string(),
            index,
            name: name.clone(),
            reason,
        };
        if let Some(ops) = &spec.operation {
            for op in ops.items() {
                let pattern = op.contains(['*', '?']);
                if !pattern && Operation::from_name(op).is_none() {
                    let near = Operation::similar(op);
                    let hint = if near.is_empty() {
                        String::new()
                    } else {
                        format!("; did you mean: {}", near.join(", "))
                    };
                    return Err(bad(format!(
                        "operation '{op}' is not a PfWsSdk operation (names are case-sensitive, e.g. PfAuthUser_4){hint}"
                    )));
                }
            }
        }
        if spec.outcome.is_some() && !spec.sequence.is_empty() {
            return Err(bad("give outcome or sequence, not both".into()));
        }
        if spec.call == Some(0) || spec.calls.contains(&0) {
            return Err(bad("call numbers start at 1".into()));
        }
        if spec.times == Some(0) {
            return Err(bad("times must be at least 1".into()));
        }
        if let Some(d) = spec.delay_ms {
            d.check().map_err(bad)?;
        }
        if let Some(f) = &spec.fault {
            f.check().map_err(bad)?;
        }
        let phone_pattern = spec.phone.as_ref().map(|p| {
            p.chars()
                .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '?'))
                .collect()
        });
        Ok(Self {
            spec,
            name,
            seen: AtomicU64::new(0),
            used: AtomicU64::new(0),
            phone_pattern,
        })
    }

    /// True when the rule's `operation` matcher (if any) fits the wire operation `op`.
    fn fits_operation(&self, op: &str) -> bool {
        self.spec
            .operation
            .as_ref()
            .is_none_or(|ops| ops.items().iter().any(|p| glob(p, op, false)))
    }

    fn try_match(&self, facts: &RequestFacts<'_>, phone: Option<&str>) -> Option<Matched> {
        let s = &self.spec;
        if s.operation.is_some() && !self.fits_operation(facts.operation?) {
            return None;
        }
        if let Some(u) = &s.user {
            let user = facts.inputs.get("username")?;
            if !glob(u, user, true) {
                return None;
            }
        }
        if let Some(pattern) = &self.phone_pattern {
            if !glob(pattern, phone?, false) {
                return None;
            }
        }
        if let Some(c) = &s.caller {
            if !glob(c, facts.caller, true) {
                return None;
            }
        }
        for (k, pattern) in &s.inputs {
            let v = facts.inputs.get(k).map(String::as_str).unwrap_or("");
            if !glob(pattern, v, true) {
                return None;
            }
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if s.call.is_some_and(|c| c != n) || (!s.calls.is_empty() && !s.calls.contains(&n)) {
            return None;
        }
        // Claim a use atomically, so `times` holds under concurrent requests.
        let claimed = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                s.times.is_none_or(|t| u < t).then_some(u + 1)
            });
        let used = claimed.ok()? + 1;
        let outcome = s.outcome.or_else(|| {
            let i = usize::try_from(used - 1).unwrap_or(usize::MAX);
            s.sequence.get(i).or(s.sequence.last()).copied()
        });
        Some(Matched {
            name: self.name.clone(),
            outcome,
            delay: s.delay_ms.map(DelaySpec::pick).unwrap_or(Duration::ZERO),
            fault: s.fault.clone(),
        })
    }
}

/// `*` (any run) and `?` (one character) patterns, optionally ignoring ASCII case. Iterative, so
/// a hostile pattern costs time linear in pattern × text, never a stack.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    // Nearly every pattern is a plain name or number: compared as it is, without the loop.
    if !pattern.contains(['*', '?']) {
        return if ignore_case {
            pattern.eq_ignore_ascii_case(text)
        } else {
            pattern == text
        };
    }
    let fold = |c: char| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob("PfAuthUser*", "PfAuthUser_4", false));
        assert!(!glob("pfauthuser*", "PfAuthUser_4", false));
        assert!(glob("*@CONTOSO.com", "alice@contoso.com", true));
        assert!(glob("1425555010?", "14255550101", false));
        assert!(!glob("1425555010?", "142555501011", false));
        assert!(glob("*", "", false));
        assert!(glob("a*b*c", "aXXbYYc", false));
        assert!(!glob("a*b*c", "aXXbYY", false));
    }

    fn facts<'a>(op: &'a str, inputs: &'a BTreeMap<String, String>) -> RequestFacts<'a> {
        RequestFacts {
            operation: Some(op),
            inputs,
            caller: "anonymous",
        }
    }

    #[test]
    fn rules_match_in_order_with_call_numbers_and_times() {
        let s = Scenario::from_sources(&[(
            "t.toml".into(),
            r#"
[[users]]
username = "alice@contoso.com"
country_code = "1"
phone = "4255550100"

[[rules]]
name = "second call approved"
user = "alice@contoso.com"
call = 2
outcome = "approve"

[[rules]]
name = "phone"
phone = "+1 425 555 01*"
outcome = "no_answer"
times = 2
"#
            .into(),
        )])
        .unwrap();
        let inputs: BTreeMap<String, String> =
            [("username".to_string(), "ALICE@contoso.com".to_string())].into();
        let f = facts("PfAuthUser_4", &inputs);
        assert_eq!(s.find(&f).unwrap().name, "phone");
        assert_eq!(s.find(&f).unwrap().name, "second call approved");
        assert_eq!(s.find(&f).unwrap().name, "phone");
        assert!(s.find(&f).is_none(), "times = 2 reached");
    }

    #[test]
    fn refuses_typos() {
        let bad = |t: &str| Scenario::from_sources(&[("t".into(), t.into())]).unwrap_err();
        assert!(bad("[[rules]]\noperation = \"PfAuthUser4\"")
            .to_string()
            .contains("not a PfWsSdk operation"));
        assert!(bad("[[rules]]\nfault = { kind = \"http\", status = 200 }")
            .to_string()
            .contains("not an HTTP error"));
        assert!(bad("[[rules]]\ndelay_ms = [500, 100]")
            .to_string()
            .contains("reversed"));
        assert!(bad("[[rules]]\nusr = \"a\"").to_string().contains("usr"));
        assert!(bad("[[rules]]\nfault = { kind = \"explode\" }")
            .to_string()
            .contains("explode"));
    }
}
