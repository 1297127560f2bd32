//! `pfgate init`: a complete, secure starting site in a new directory.

use std::path::PathBuf;
use std::process::ExitCode;

use super::CliError;

/// `pfgate init` options.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The directory (created; must not exist or be empty).
    pub dir: PathBuf,
    /// Who performs the second factor.
    #[arg(long, value_enum)]
    pub provider: crate::site::init::InitProvider,
    /// Extra host names or IP addresses for the development certificate (localhost and
    /// 127.0.0.1 are always in it): the name in MIM's URL.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Where the store and the audit trail go (default: the site directory). The systemd
    /// unit can write only /var/lib/pfgate: give that when the site is /etc/pfgate.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Writes the site and prints the steps left; exit 2 when it cannot be written.
pub(super) fn run(args: &InitArgs) -> Result<ExitCode, CliError> {
    let written = crate::site::init::init(
        &args.dir,
        args.provider,
        &args.hosts,
        args.state_dir.as_deref(),
    )
    .map_err(|e| CliError::failed_in("pfgate init", e))?;
    print!(
        "{}",
        crate::site::init::next_steps(&args.dir, args.provider, &written)
    );
    Ok(ExitCode::SUCCESS)
}
