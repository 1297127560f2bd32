//! The small tools: `cert dev`, `hash-password`, `healthcheck`, and printing the generated
//! documents (`wsdl`, `completions`, `man`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::CliError;

/// `pfgate cert …`
#[derive(Debug, Subcommand)]
pub enum CertAction {
    /// A development CA and a server certificate it signs (dev-ca.pem, dev-server.pem and their
    /// keys, owner-readable only) for `server.tls_cert`/`tls_key`; give clients dev-ca.pem.
    /// Development only: 30-day server certificate; `*.pem` is ignored by git.
    Dev {
        /// Directory to write to.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
        /// Extra host names or IP addresses for the server certificate (localhost and 127.0.0.1
        /// are always in it).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// `pfgate cert dev`: writes the files and prints the `[server]` lines that use them.
pub(super) fn cert(action: CertAction) -> Result<ExitCode, CliError> {
    let CertAction::Dev { dir, hosts, force } = action;
    let files = crate::net::devcert::make(&dir, &hosts, force).map_err(CliError::failed)?;
    // Absolute: the configuration resolves relative paths against its own directory, not
    // against the directory this command ran in.
    let shown = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    println!(
        "CA certificate (give it to clients): {}",
        shown(&files.ca_cert)
    );
    println!(
        "CA key:                              {}",
        shown(&files.ca_key)
    );
    println!("[server]");
    println!("tls_cert = {:?}", shown(&files.server_cert));
    println!("tls_key = {:?}", shown(&files.server_key));
    Ok(ExitCode::SUCCESS)
}

/// `pfgate hash-password`: one line of standard input in, its argon2id hash out.
pub(super) fn hash_password() -> Result<ExitCode, CliError> {
    let mut line = String::new();
    io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::failed(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CliError::failed("the password is empty"));
    }
    let hash = crate::store::secrets::hash_pin(password).map_err(CliError::failed)?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// `pfgate healthcheck`: prints `ok` on `200`; anything else is exit 1.
pub(super) fn healthcheck(url: &str, timeout_secs: u64) -> Result<ExitCode, CliError> {
    const COMMAND: &str = "pfgate healthcheck";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::rejected(COMMAND, e))?;
    runtime
        .block_on(crate::cli::healthcheck::probe(
            url,
            Duration::from_secs(timeout_secs),
        ))
        .map_err(|e| CliError::rejected(COMMAND, format!("{url}: {e}")))?;
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

/// Runs `write` on standard output; a closed pipe (`pfgate man | head`) is not a failure: the
/// reader has what it wanted.
pub(super) fn print(
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<ExitCode, CliError> {
    match write(&mut io::stdout().lock()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::failed(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}
