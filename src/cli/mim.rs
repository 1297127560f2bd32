//! `pfgate mim check`: MIM's MfaSettings.xml explained, and the change that points it at pfgate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::CliError;

/// `pfgate mim …`
#[derive(Debug, Subcommand)]
pub enum MimAction {
    /// Read MfaSettings.xml, explain what it holds (cloud SDK keys, LOCMFA, LOCMFASRV, Username,
    /// CustomPhoneProvider, DefaultCountryCode) and print the change that points MIM at pfgate.
    /// Nothing is written without --write (then a backup FILE.pfgate-backup-<time> is kept).
    /// Exit 0, or 1 when something the check cannot fill in is still missing (Username without
    /// --username), or 2 on an error (unreadable file, a URL pfgate would not serve).
    Check {
        /// MIM's MfaSettings.xml.
        file: PathBuf,
        /// pfgate's PfWsSdk URL as MIM will reach it: https, ending in /PfWsSdk.asmx.
        #[arg(long, value_name = "URL")]
        url: String,
        /// The MIM Service account's UPN to put in <Username> (the account MIM calls as; it must
        /// be a user in pfgate's directory).
        #[arg(long, value_name = "UPN")]
        username: Option<String>,
        /// Write the change (after a backup).
        #[arg(long)]
        write: bool,
    },
}

/// Runs `pfgate mim …`.
pub(super) fn run(action: MimAction) -> Result<ExitCode, CliError> {
    let MimAction::Check {
        file,
        url,
        username,
        write,
    } = action;
    check(&file, &url, username.as_deref(), write)
}

/// `pfgate mim check`: see [`MimAction::Check`] for the exit codes.
fn check(
    file: &Path,
    url: &str,
    username: Option<&str>,
    write: bool,
) -> Result<ExitCode, CliError> {
    let report = crate::site::mim::check(file, url, username).map_err(CliError::failed)?;
    print!("{}", crate::site::mim::render(&report, file));
    if !report.changes.is_empty() {
        if !write {
            println!("Nothing was written (use --write; the original is kept as a backup).");
        } else {
            let backup = crate::site::mim::write(&report, file).map_err(CliError::failed)?;
            println!(
                "Written. The original is kept as {}. Restart the MIM Service.",
                backup.display()
            );
        }
    }
    Ok(if report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
