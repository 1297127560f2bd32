//! `pfgate mock` (the test double) and `pfgate record` (the recording proxy that feeds its
//! `--replay`): both print where they listen, optionally write a ready file for CI, and run until
//! a stop signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{parse_listen, CliError, StopSignal};
use crate::telemetry::{self, LogFormat};

/// `pfgate mock` options.
#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Scenario file (TOML); repeat to merge several. Without one: the demo directory.
    #[arg(long = "scenario", value_name = "FILE")]
    pub scenarios: Vec<PathBuf>,
    /// Listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Write the URL, fingerprint and admin URL here as JSON once accepting connections.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Plain HTTP instead of TLS (loopback only: for CI on one machine).
    #[arg(long)]
    pub plain_http: bool,
    /// Admin API path prefix.
    #[arg(long, value_name = "PREFIX", default_value = crate::mock::DEFAULT_ADMIN_PREFIX)]
    pub admin_prefix: String,
    /// File holding the admin API bearer token (else the PFGATE_MOCK_ADMIN_TOKEN variable);
    /// required when the admin API listens on a non-loopback address.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve the admin API on this address of its own instead of the main listener.
    #[arg(long, value_name = "ADDR:PORT")]
    pub admin_listen: Option<SocketAddr>,
    /// Answer from exchanges recorded by `pfgate record` in this directory.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `pfgate record` options.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The real PfWsSdk URL (https; plain http only to loopback).
    #[arg(long, value_name = "URL")]
    pub upstream: url::Url,
    /// Directory for the fixtures (created if missing; numbering continues).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// PEM certificates to trust for the upstream instead of the system roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Plain HTTP instead of TLS (loopback only).
    #[arg(long)]
    pub plain_http: bool,
    /// Write the URL and certificate here as JSON once accepting connections.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The prefix of `pfgate mock`'s errors.
const MOCK: &str = "pfgate mock";
/// The prefix of `pfgate record`'s errors.
const RECORD: &str = "pfgate record";

/// Runs `pfgate mock`: exit 2 when it cannot start.
pub(super) fn run(args: MockArgs) -> Result<ExitCode, CliError> {
    telemetry::init(args.log_format);
    let admin_token =
        admin_token(args.admin_token_file.as_deref()).map_err(|e| CliError::failed_in(MOCK, e))?;
    let options = crate::mock::MockOptions {
        listen: args.listen,
        plain_http: args.plain_http,
        scenario_files: args.scenarios,
        admin_prefix: args.admin_prefix,
        admin_token,
        admin_listen: args.admin_listen,
        replay: args.replay,
        plain_http_any_address: std::env::var(crate::mock::ANY_ADDRESS_ENV)
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
    };
    super::block_on_multi(mock(options, args.ready_file))
}

/// Runs `pfgate record`: exit 2 when it cannot start.
pub(super) fn record(args: RecordArgs) -> Result<ExitCode, CliError> {
    telemetry::init(args.log_format);
    let options = crate::mock::record::RecordOptions {
        listen: args.listen,
        plain_http: args.plain_http,
        upstream: args.upstream,
        upstream_ca: args.upstream_ca,
        out: args.out,
    };
    super::block_on_multi(recording(options, args.ready_file))
}

/// The admin token: from the file when given, else from `PFGATE_MOCK_ADMIN_TOKEN`, else none.
fn admin_token(file: Option<&Path>) -> Result<Option<String>, String> {
    let token = match file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the admin token file {}: {e}", p.display()))?,
        ),
        None => std::env::var(crate::mock::ADMIN_TOKEN_ENV).ok(),
    };
    match token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => Err("the admin token is empty".into()),
        other => Ok(other),
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so a CI script polling for
/// the file never reads half of it.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-pfgate");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

async fn mock(
    options: crate::mock::MockOptions,
    ready_file: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let stop = StopSignal::install();
    let running = crate::mock::start(options)
        .await
        .map_err(|e| CliError::failed_in(MOCK, e))?;
    let plain = if running.server.tls.is_none() {
        " (plain HTTP)"
    } else {
        ""
    };
    println!(
        "pfgate {} mock listening on {}{plain}",
        env!("CARGO_PKG_VERSION"),
        running.url()
    );
    if let Some(fp) = running.fingerprint() {
        println!("TLS certificate SHA-256 fingerprint: {fp}");
    }
    println!("admin API: {}", running.admin_url());
    if let Some(path) = ready_file {
        let json = running.ready_json().to_string();
        if let Err(e) = write_atomically(&path, &json) {
            running.shutdown(Duration::from_millis(10)).await;
            let reason = format!("cannot write {}: {e}", path.display());
            return Err(CliError::failed_in(MOCK, reason));
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    stop.wait().await;
    tracing::info!("shutting down");
    let grace = running.server_grace();
    running.shutdown(grace).await;
    Ok(ExitCode::SUCCESS)
}

async fn recording(
    options: crate::mock::record::RecordOptions,
    ready_file: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let stop = StopSignal::install();
    let upstream = options.upstream.clone();
    let out = options.out.clone();
    let running = crate::mock::record::start(options)
        .await
        .map_err(|e| CliError::failed_in(RECORD, e))?;
    println!(
        "pfgate {} record listening on {} -> {upstream}, fixtures in {}",
        env!("CARGO_PKG_VERSION"),
        running.url(),
        out.display()
    );
    if let Some(tls) = &running.tls {
        println!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint());
    }
    if let Some(path) = ready_file {
        if let Err(e) = write_atomically(&path, &running.ready_json().to_string()) {
            let reason = format!("cannot write {}: {e}", path.display());
            return Err(CliError::failed_in(RECORD, reason));
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    stop.wait().await;
    // The count is the command's result, not an error.
    eprintln!("pfgate record: {} exchanges recorded", running.recorded());
    running.stop();
    Ok(ExitCode::SUCCESS)
}
