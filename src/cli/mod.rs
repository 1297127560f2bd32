//! The command line: the only module that knows clap. It parses, builds typed settings, and runs.
//!
//! One file per command family (`serve`, `mock` and `record`, `users`, `store`, `init`,
//! `check-config`, `call`, `mim`, `audit`, `service`, and the small tools); each returns
//! `Result<ExitCode, CliError>` and [`CliError::report`] is the one place an error is printed.
//!
//! Exit codes: 0 success; 1 the configuration has problems (`check-config`, or `serve` refusing a
//! file); 2 usage or start-up failure (address in use, unreadable certificate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod call;
mod check;
mod docs;
mod error;
mod healthcheck;
pub(crate) mod host;
mod init;
mod mim;
mod mock;
mod serve;
mod service;
mod signal;
mod store;
mod tools;
mod users;

pub use audit::AuditAction;
pub use call::{CallArgs, SdkConnectArgs};
pub use error::CliError;
pub use init::InitArgs;
pub use mim::MimAction;
pub use mock::{MockArgs, RecordArgs};
// The Windows service manager's entry point serves through this (service/windows.rs).
#[cfg(windows)]
pub(crate) use serve::serve;
pub use serve::ServeArgs;
pub use service::ServiceAction;
use signal::StopSignal;
pub use store::StoreAction;
pub use tools::CertAction;
pub use users::UsersAction;

/// pfgate: a drop-in replacement for the Azure MFA Server Web Service SDK (PfWsSdk.asmx).
#[derive(Debug, Parser)]
#[command(name = "pfgate", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the PfWsSdk server.
    Serve(ServeArgs),
    /// Write a complete, secure starting site into a new directory for one provider: pfgate.toml
    /// with every section, a development certificate, a secrets key and secret files readable by
    /// their owner only, a users file with MIM's service account; then print the placeholders
    /// to fill and the steps left (docs/deploy.md). Never overwrites.
    Init(InitArgs),
    /// Validate a configuration file: exit 0, or 1 with one `file:key: reason` line per problem.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Manage the user directory in the configured store.
    Users {
        /// What to do.
        #[command(subcommand)]
        action: UsersAction,
    },
    /// The configured store itself (`docs/ha.md`).
    Store {
        /// What to do.
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Read a password from standard input and print its argon2id hash for `[[auth.basic]]`.
    HashPassword,
    /// Certificates for development.
    Cert {
        /// What to make.
        #[command(subcommand)]
        action: CertAction,
    },
    /// Microsoft Identity Manager: check MfaSettings.xml and point it at pfgate.
    Mim {
        /// What to do.
        #[command(subcommand)]
        action: MimAction,
    },
    /// The hash-chained audit trail (`[audit] file`).
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Run the test double: the same server and engine with a scripted provider, an in-memory
    /// store, scenarios, faults, a journal and an admin API (docs/mock.md).
    Mock(MockArgs),
    /// Record: a transparent proxy in front of a real PfWsSdk saving each SOAP exchange as a
    /// redacted golden fixture for `pfgate mock --replay` (docs/mock.md).
    Record(RecordArgs),
    /// Call one PfWsSdk operation on any endpoint (an old MFA Server or pfgate) and print the
    /// decoded answer (docs/call.md). Exit 0 success, 1 false/Error, 2 usage, 3 no answer
    /// (connection, TLS, HTTP), 4 credentials refused, 5 SOAP fault.
    Call(CallArgs),
    /// Probe a plain-HTTP health endpoint: exit 0 on `200`, 1 otherwise. For container health
    /// checks, where the image holds no curl (docs/container.md).
    Healthcheck {
        /// The URL to GET (plain `http://` only).
        #[arg(default_value = crate::cli::healthcheck::DEFAULT_URL)]
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECS", default_value_t = 3)]
        timeout: u64,
    },
    /// Windows service: install or uninstall pfgate as a service (docs/deploy.md, "Windows").
    Service {
        /// What to do.
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Print the WSDL (the committed wsdl/PfWsSdk.wsdl is this output).
    Wsdl {
        /// The service address to write into soap:address.
        #[arg(long, default_value = crate::pfwssdk::wsdl::PLACEHOLDER_LOCATION)]
        location: String,
    },
    /// Print a shell completion script (e.g. `pfgate completions bash > /etc/bash_completion.d/pfgate`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: docs::Shell,
    },
    /// Print the pfgate(1) manual page (roff; `pfgate man | man -l -`).
    Man,
}

/// Runs a parsed command line: the exit code of what the command reports, or the error that
/// stopped it, for [`CliError::report`].
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Init(args) => init::run(&args),
        Command::CheckConfig { file } => check::run(&file),
        Command::Users { action } => block_on(users::run(action)),
        Command::Store { action } => block_on(store::run(action)),
        Command::HashPassword => tools::hash_password(),
        Command::Cert { action } => tools::cert(action),
        Command::Mim { action } => mim::run(action),
        Command::Audit { action } => audit::run(action),
        Command::Mock(args) => mock::run(args),
        Command::Record(args) => mock::record(args),
        Command::Call(args) => call::run(args),
        Command::Healthcheck { url, timeout } => tools::healthcheck(&url, timeout),
        Command::Service { action } => service::run(action),
        Command::Wsdl { location } => {
            print!("{}", crate::pfwssdk::wsdl::render(&location));
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => tools::print(|out| docs::completions(shell, out)),
        Command::Man => tools::print(docs::man),
    }
}

/// A `--listen` value: `ADDR:PORT`, or `HOST:PORT` resolved to the host's first IPv4 address
/// (else its first address), so `localhost:8443` works as it does in a browser's address bar.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("'{s}' is not ADDR:PORT or HOST:PORT ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// Runs `f` on a single-threaded runtime (the `users`, `store` and `call` commands').
fn block_on<T>(f: impl std::future::Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    block_on_runtime(tokio::runtime::Builder::new_current_thread(), f)
}

/// Runs `future` on a multi-threaded runtime (the servers').
fn block_on_multi<T>(
    future: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    block_on_runtime(tokio::runtime::Builder::new_multi_thread(), future)
}

/// Runs `future` on the runtime `builder` makes.
fn block_on_runtime<T>(
    mut builder: tokio::runtime::Builder,
    future: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    let runtime = builder.enable_all().build().map_err(CliError::Runtime)?;
    runtime.block_on(future)
}
