//! `pfgate check-config FILE`: every problem as `file:key: reason`, or `OK` and the warnings.

use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::config::{self, ConfigErrors, ConfigProblem};

/// Exit 0 with `FILE: OK` (and any warnings on standard error), or 1 with the problems: those of
/// the file, or what stops it from serving.
pub(super) fn run(file: &Path) -> Result<ExitCode, CliError> {
    let settings = config::load(file)?;
    let refusals = settings.serve_problems();
    if !refusals.is_empty() {
        let problems = refusals
            .into_iter()
            .map(|(key, reason)| ConfigProblem {
                file: file.to_path_buf(),
                key: key.to_string(),
                reason: reason.to_string(),
            })
            .collect();
        return Err(CliError::Config(ConfigErrors(problems)));
    }
    println!("{}: OK", file.display());
    // Allowed, so not an error: said after the verdict.
    for w in settings.warnings() {
        eprintln!("{}: warning: {w}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
