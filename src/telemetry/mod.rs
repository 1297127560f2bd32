//! What pfgate tells operators: logging set-up (text for people, JSON lines for collectors;
//! `RUST_LOG` overrides the level), the Prometheus [`metrics`], the audit events ([`audit`]) and
//! the tamper-evident audit file they may be written to ([`audit_trail`]). Every layer records
//! into it; it imports nothing above the wire contract, so recording never creates a cycle.
//!
//! Nothing secret is ever passed to a log macro: the access log carries operation, caller address,
//! status, result and codes only.

pub mod access_log;
pub mod audit;
pub mod audit_trail;
pub(crate) mod line;
pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(format: LogFormat) {
    access_log::set_format(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal: in files and pipes they are noise (and cost).
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Only when this subscriber is the one in force: its lines are the ones to match.
    if installed.is_ok() && !ansi {
        line::write_directly(format);
    }
}

/// Installs the global subscriber writing to `file` instead of stderr, access log included: a
/// Windows service has no console (`%ProgramData%\pfgate\logs\NAME.log`). No colour codes.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn init_file(format: LogFormat, file: std::fs::File) -> std::io::Result<()> {
    access_log::set_format(format);
    access_log::set_file(file.try_clone()?);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok() {
        line::write_directly(format);
    }
    Ok(())
}
