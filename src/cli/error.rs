//! The one error type of the command line, and the one place that prints an error and picks the
//! exit code ([`CliError::report`]).
//!
//! A command returns `Ok(code)` for every outcome it reports itself — on standard output, or row by
//! row on standard error — including the unhappy ones that are answers, not failures (rows an
//! import refused, `mim check` finding something still missing, `call` answering false). It returns
//! `Err` when it stops: that error is printed here, once, as one or more lines on standard error.

use std::fmt::Display;
use std::process::ExitCode;

use crate::config::{ConfigErrors, ConfigProblem};

/// Why a command stopped. Exit codes: 1 for problems in what the command was given (a
/// configuration file, a CSV file, an audit chain, a health endpoint), 2 for failing to run at all
/// (usage, start-up, a file or the store refusing).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A configuration file has problems: one `file:key: reason` line each. Exit 1.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// `audit verify`: the hash chain is broken at this line. Exit 1.
    #[error("chain broken at {0}")]
    ChainBroken(crate::telemetry::audit_trail::ChainBreak),
    /// What the command was given is wrong as a whole (a CSV file that is not one, a health
    /// endpoint that does not answer `200`). Printed as `context: reason`. Exit 1.
    #[error("{context}: {reason}")]
    Rejected {
        /// The file, or the command (`pfgate healthcheck`).
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// The command could not run or finish: usage, start-up, a file, the store. Printed as
    /// `pfgate: reason` or `pfgate COMMAND: reason`. Exit 2.
    #[error("{command}: {reason}")]
    Failed {
        /// `pfgate`, or `pfgate mock` and the like for commands that name themselves.
        command: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The async runtime did not start. Exit 2.
    #[error("pfgate: cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl CliError {
    /// `pfgate: {reason}`, exit 2.
    pub(crate) fn failed(reason: impl Display) -> Self {
        Self::failed_in("pfgate", reason)
    }

    /// `{command}: {reason}`, exit 2.
    pub(crate) fn failed_in(command: &'static str, reason: impl Display) -> Self {
        Self::Failed {
            command,
            reason: reason.to_string(),
        }
    }

    /// `{context}: {reason}`, exit 1.
    pub(crate) fn rejected(context: impl Display, reason: impl Display) -> Self {
        Self::Rejected {
            context: context.to_string(),
            reason: reason.to_string(),
        }
    }

    /// One configuration problem outside what [`crate::config::load`] checks: `file:key: reason`,
    /// exit 1.
    pub(crate) fn config(file: &std::path::Path, key: &str, reason: impl Display) -> Self {
        Self::Config(ConfigErrors(vec![ConfigProblem {
            file: file.to_path_buf(),
            key: key.to_string(),
            reason: reason.to_string(),
        }]))
    }

    /// The process's exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::ChainBroken(_) | CliError::Rejected { .. } => {
                ExitCode::from(1)
            }
            CliError::Failed { .. } | CliError::Runtime(_) => ExitCode::from(2),
        }
    }

    /// Prints the error on standard error (a configuration's problems one line each) and returns
    /// the exit code: the only place the command line prints an error.
    pub fn report(&self) -> ExitCode {
        match self {
            CliError::Config(errors) => {
                for p in &errors.0 {
                    eprintln!("{p}");
                }
            }
            other => eprintln!("{other}"),
        }
        self.exit_code()
    }
}
