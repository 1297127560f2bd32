//! The shapes every provider's settings share: problems collected as `(key, reason)` (all of
//! them, for `pfgate check-config`, not just the first), relative paths made absolute against
//! the configuration file's directory, and the one error a provider's build fails with.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A settings problem: the key under `[providers.<name>]` and the reason.
pub type Problem = (String, String);

/// The problems found while checking one provider's settings.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem with `key`.
    pub(crate) fn push(&mut self, key: &str, reason: impl Into<String>) {
        self.0.push((key.to_string(), reason.into()));
    }

    /// The value of `r`, or `None` with its `(key, reason)` recorded.
    pub(crate) fn take<T>(&mut self, r: Result<T, (&'static str, String)>) -> Option<T> {
        r.map_err(|(key, reason)| self.push(key, reason)).ok()
    }

    /// The value of `r`, or `None` with its reason recorded under `key`.
    pub(crate) fn take_as<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|reason| self.push(key, reason)).ok()
    }

    /// Records each of `nested` under `prefix.` (a sub-table's problems).
    pub(crate) fn extend_under(&mut self, prefix: &str, nested: Vec<Problem>) {
        for (k, r) in nested {
            self.0.push((format!("{prefix}.{k}"), r));
        }
    }

    /// `v` when it lies in `range`, `default` when absent; out of range, `default` with
    /// "must be between lo and hi unit" recorded under `key`.
    pub(crate) fn bounded(
        &mut self,
        key: &str,
        v: Option<u64>,
        range: RangeInclusive<u64>,
        default: u64,
        unit: &str,
    ) -> u64 {
        match v {
            Some(x) if !range.contains(&x) => {
                let (lo, hi) = (range.start(), range.end());
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                self.push(key, format!("must be between {lo} and {hi}{unit}"));
                default
            }
            Some(x) => x,
            None => default,
        }
    }

    /// `request_timeout_secs`, the timeout of one HTTP request: 1–60 s, `default` when absent.
    pub(crate) fn request_timeout(&mut self, v: Option<u64>, default: Duration) -> Duration {
        let secs = self.bounded(
            "request_timeout_secs",
            v,
            1..=60,
            default.as_secs(),
            "seconds",
        );
        Duration::from_secs(secs)
    }

    /// `poll_interval_ms`, the wait between two status questions: 100–10000 ms, `default` when
    /// absent.
    pub(crate) fn poll_interval(&mut self, v: Option<u64>, default: Duration) -> Duration {
        let default = u64::try_from(default.as_millis()).unwrap_or(1000);
        let ms = self.bounded("poll_interval_ms", v, 100..=10_000, default, "milliseconds");
        Duration::from_millis(ms)
    }

    /// `Ok(value)` when nothing was recorded and `value` is there, else every problem.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Problem>> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(self.0),
        }
    }
}

/// Makes each relative path of `paths` relative to `dir` (the configuration file's directory),
/// so a provider reads the same file whatever directory pfgate was started from.
pub(crate) fn resolve_paths<'a>(
    dir: &Path,
    paths: impl IntoIterator<Item = &'a mut Option<PathBuf>>,
) {
    for p in paths.into_iter().flatten() {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
}

/// Why a provider could not be built. The texts name no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The settings have problems (the same as the provider's `validate`).
    #[error("invalid {provider} provider settings: {}", join(problems))]
    Invalid {
        /// The kind of provider (`Duo`, `webhook`).
        provider: &'static str,
        /// Every problem, as `(key, reason)`.
        problems: Vec<Problem>,
    },
    /// The HTTP client could not be made.
    #[error("cannot create the {provider} HTTP client: {detail}")]
    Client {
        /// The kind of provider.
        provider: &'static str,
        /// What the HTTP library said.
        detail: String,
    },
    /// The provider could not start what it runs (the OIDC step-up's TLS material or listener,
    /// its identity provider client); the text names the key at fault.
    #[error("{0}")]
    Start(String),
}

impl BuildError {
    /// The problems of a provider kind's settings.
    pub(crate) fn invalid(provider: &'static str) -> impl FnOnce(Vec<Problem>) -> Self {
        move |problems| Self::Invalid { provider, problems }
    }

    /// A client that could not be made.
    pub(crate) fn client(provider: &'static str) -> impl FnOnce(reqwest::Error) -> Self {
        move |e| Self::Client {
            provider,
            detail: e.to_string(),
        }
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|(k, r)| format!("{k}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}
