//! Problems found in a configuration file, each reported as `file:key: reason`, and the collector
//! every section's check adds to: all problems are gathered before giving up, so an administrator
//! fixes a file in one pass (`pfgate check-config FILE`).

use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file.
    pub file: PathBuf,
    /// Dotted key (`server.listen`), or empty for the whole file.
    pub key: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// All problems found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

/// The problems found so far in one file, in the order the checks ran (the order `check-config`
/// prints them in).
#[derive(Debug)]
pub(crate) struct Problems {
    file: PathBuf,
    found: Vec<ConfigProblem>,
}

impl Problems {
    /// No problems yet in `file`.
    pub(crate) fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            found: Vec::new(),
        }
    }

    /// Records that `key` (dotted, or empty for the whole file) is wrong for `reason`.
    pub(crate) fn add(&mut self, key: &str, reason: impl Into<String>) {
        self.found.push(ConfigProblem {
            file: self.file.clone(),
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    /// `value` when nothing was found, else every problem.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.found))
        }
    }
}
