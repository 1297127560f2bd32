//! The scripted provider: outcomes decided by rules instead of a phone network. It is what demo mode
//! and the test double answer with, so it is a product feature, not a test stub: per user (or per
//! call in a user's `sequence`: first call not answered, retry approved), per phone number suffix,
//! with an optional delay, and a count of calls so a test can prove how many calls an operation
//! caused. Outcomes: approve, no answer, busy, hang up, deny, fraud reported, provider error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{AuthAttempt, Provider, ProviderErrorKind, Verdict};
use crate::store::directory::{Directory, Outcome};

/// A rule set and a call counter.
#[derive(Debug, Default)]
pub struct ScriptedProvider {
    by_user: HashMap<String, (Outcome, Duration)>,
    /// Per-user call sequences, and how many calls each user had so far.
    sequences: HashMap<String, Vec<Outcome>>,
    calls_by_user: Mutex<HashMap<String, usize>>,
    directory: Directory,
    calls: AtomicUsize,
    /// One-time passcodes "sent", by E.164 number: the double's outbox, so a test can read the
    /// code a person would have received.
    outbox: Mutex<HashMap<String, String>>,
}

impl ScriptedProvider {
    /// Outcomes from a users file: each user's `outcome`/`delay_ms`, then the phone rules.
    pub fn from_directory(directory: &Directory) -> Self {
        let by_user = directory
            .users()
            .map(|u| {
                (
                    u.username.to_lowercase(),
                    (u.outcome, Duration::from_millis(u.delay_ms)),
                )
            })
            .collect();
        let sequences = directory
            .users()
            .filter(|u| !u.sequence.is_empty())
            .map(|u| (u.username.to_lowercase(), u.sequence.clone()))
            .collect();
        Self {
            by_user,
            sequences,
            calls_by_user: Mutex::new(HashMap::new()),
            directory: directory.clone(),
            calls: AtomicUsize::new(0),
            outbox: Mutex::new(HashMap::new()),
        }
    }

    /// The last passcode sent to this E.164 number (`+14255550100`).
    pub fn last_code(&self, e164: &str) -> Option<String> {
        self.outbox.lock().ok().and_then(|o| o.get(e164).cloned())
    }

    /// How many attempts were made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn decide(&self, attempt: &AuthAttempt) -> (Outcome, Duration) {
        // A user's own rule applies when the call goes to that user's number; a number given in
        // the call (PfAuthUser_5) is decided by the phone rules.
        if let Some(user) = self.directory.get(&attempt.username) {
            let own = crate::core::phone::E164::parse(&user.country_code, &user.phone, "", "1")
                .map(|p| p.e164() == attempt.phone.e164())
                .unwrap_or(false);
            if own {
                let key = attempt.username.to_lowercase();
                if let Some(rule) = self.by_user.get(&key) {
                    if let Some(seq) = self.sequences.get(&key) {
                        let n = match self.calls_by_user.lock() {
                            Ok(mut m) => {
                                let c = m.entry(key.clone()).or_insert(0);
                                *c += 1;
                                *c - 1
                            }
                            Err(_) => 0,
                        };
                        let outcome = seq.get(n).or(seq.last()).copied().unwrap_or(rule.0);
                        return (outcome, rule.1);
                    }
                    return *rule;
                }
            }
        }
        self.directory.phone_rule(&attempt.phone.e164())
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn authenticate(&self, attempt: &AuthAttempt) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (outcome, delay) = self.decide(attempt);
        // What a test (or a demo user) watches for to know a call is under way.
        tracing::debug!(
            target: "pfgate::provider::scripted",
            username = %attempt.username,
            delay_ms = delay.as_millis() as u64,
            "scripted call placed"
        );
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        verdict_of(outcome, attempt)
    }

    async fn send_code(&self, attempt: &AuthAttempt, code: &str) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.decide(attempt).0 == Outcome::Fail {
            return Verdict::failed(ProviderErrorKind::Scripted, "scripted failure");
        }
        self.deliver(attempt, code);
        Verdict::Approved
    }
}

impl ScriptedProvider {
    /// Puts a passcode in the outbox, as if it had been texted (the test double's overrides send
    /// codes through here too).
    pub fn deliver(&self, attempt: &AuthAttempt, code: &str) {
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.insert(attempt.phone.e164(), code.to_string());
        }
    }

    /// Every passcode in the outbox, by E.164 number.
    pub fn outbox(&self) -> HashMap<String, String> {
        self.outbox.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

/// The verdict a scripted outcome stands for (shared with the test double's rules and overrides).
pub fn verdict_of(outcome: Outcome, attempt: &AuthAttempt) -> Verdict {
    match outcome {
        Outcome::Approve => Verdict::Approved,
        Outcome::NoAnswer => Verdict::NotAnswered,
        Outcome::HangUp => Verdict::HungUp,
        Outcome::Deny => Verdict::Denied,
        Outcome::Busy => Verdict::NotAnswered,
        Outcome::FraudReported => {
            tracing::warn!(target: "pfgate::providers", user = %attempt.username, "scripted: fraud reported");
            Verdict::Denied
        }
        Outcome::Fail => Verdict::failed(ProviderErrorKind::Scripted, "scripted failure"),
    }
}
