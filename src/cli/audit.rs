//! `pfgate audit …`: checking the hash-chained audit trail.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::CliError;

/// `pfgate audit …`
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the chain: exit 0 and print the record count and newest hash, or exit 1 naming the
    /// first broken line. One FILE: the current trail file, its rotated files (FILE.<20 digits>)
    /// are found and checked first. Several FILEs: checked in the order given.
    Verify {
        /// Trail file(s).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs `pfgate audit …`.
pub(super) fn run(action: AuditAction) -> Result<ExitCode, CliError> {
    let AuditAction::Verify { files } = action;
    let files = match files.as_slice() {
        [one] => crate::telemetry::audit_trail::chain_files(one),
        _ => files,
    };
    let summary = crate::telemetry::audit_trail::verify(&files).map_err(CliError::ChainBroken)?;
    println!(
        "chain intact: {} records in {} file(s); newest hash {}",
        summary.records,
        files.len(),
        summary.last_hash
    );
    if let Some((seq, prev)) = &summary.continues_from {
        println!("older records removed by retention: the chain continues from record {seq}, whose predecessor's hash is {prev}");
    }
    Ok(ExitCode::SUCCESS)
}
