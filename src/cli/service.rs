//! `pfgate service …`: the Windows service (install, uninstall, and the entry point the service
//! manager starts). Elsewhere the command says where to look instead.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::CliError;

/// `pfgate service …` (Windows only; elsewhere it says so and exits 2).
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register this executable with the service manager (automatic start, restart on failure).
    Install {
        /// Configuration file (made absolute; check it first with `check-config`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Service name (also the log file's name, under %ProgramData%\pfgate\logs).
        #[arg(long, default_value = crate::cli::host::DEFAULT_NAME)]
        name: String,
        /// Account the service runs as: a gMSA (`CONTOSO\pfgate$`), `NT AUTHORITY\LocalService`,
        /// or a user. Default: the virtual account `NT SERVICE\<name>`.
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
        /// Environment variable holding the account's password (a user account only; never an
        /// argument, which other users can see).
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
    /// Stop the service if it runs and remove it.
    Uninstall {
        /// Service name.
        #[arg(long, default_value = crate::cli::host::DEFAULT_NAME)]
        name: String,
    },
    /// The entry point the service manager starts (not for the console).
    #[command(hide = true)]
    Run {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Service name.
        #[arg(long, default_value = crate::cli::host::DEFAULT_NAME)]
        name: String,
    },
}

/// Runs `pfgate service …`: on Windows through the service manager (which prints its own
/// messages); elsewhere exit 2 (systemd runs pfgate there: deploy/pfgate.service).
pub(super) fn run(action: ServiceAction) -> Result<ExitCode, CliError> {
    #[cfg(windows)]
    {
        Ok(crate::cli::host::windows::command(action))
    }
    #[cfg(not(windows))]
    {
        let _ = action;
        Err(CliError::failed_in(
            "pfgate service",
            "Windows services exist on Windows only; on Linux use systemd \
             (deploy/pfgate.service, docs/deploy.md)",
        ))
    }
}
