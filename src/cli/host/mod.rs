//! How a `serve` starts, reloads and stops: on the console (signals) or as a Windows service (the
//! service control manager, SCM). The decisions — which control drains, which reloads, which exit
//! code a failed start reports, where the service logs — are here, portable, so they are
//! unit-tested on every platform; `windows` (compiled on Windows only) connects them to the SCM
//! through the `windows-service` crate.
//!
//! docs/deploy.md ("Windows") says how to install the service and what was verified under wine.

// The service's pieces run only in the Windows build; their unit tests exercise them everywhere.
#![cfg_attr(not(windows), allow(dead_code))]

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

#[cfg(windows)]
pub mod windows;

/// The service name `service install` uses without `--name`.
pub const DEFAULT_NAME: &str = "pfgate";

/// What happened to a `serve`, for whoever started it (the SCM wants to know; the console's
/// messages are already printed by `serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The listeners are bound and the engine is built: requests are answered.
    Started,
    /// The start failed, for this reason (no secret: the messages `serve` prints).
    Failed(&'a str),
    /// A stop was asked for: draining for at most this long.
    Stopping(Duration),
}

/// Reports [`Event`]s to whoever started `serve`.
pub type Reporter = Box<dyn Fn(Event<'_>) + Send + Sync>;

/// How one `serve` ends, reloads, and reports.
pub struct Lifecycle {
    /// Resolves when the server must drain and stop (SIGTERM/Ctrl-C, or the SCM's stop).
    pub stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Notified by the SCM's `paramchange`: reload, as `SIGHUP` does.
    pub param_change: Option<Arc<Notify>>,
    /// Told of each [`Event`].
    pub report: Reporter,
}

impl Lifecycle {
    /// The console: stop on `stop` (the signals), no `paramchange`, nothing more to report.
    pub fn console(stop: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            stop: Box::pin(stop),
            param_change: None,
            report: Box::new(|_| {}),
        }
    }
}

/// A control the SCM sends (the subset of `SERVICE_CONTROL_*` pfgate distinguishes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `SERVICE_CONTROL_STOP` (`sc stop`, `net stop`, the Services console).
    Stop,
    /// `SERVICE_CONTROL_SHUTDOWN`: the machine is shutting down.
    Shutdown,
    /// `SERVICE_CONTROL_PRESHUTDOWN` (only sent to services that accept it).
    Preshutdown,
    /// `SERVICE_CONTROL_PARAMCHANGE` (`sc control NAME paramchange`).
    ParamChange,
    /// `SERVICE_CONTROL_INTERROGATE`: report the current status.
    Interrogate,
    /// Anything else (pause, continue, device and session events).
    Other,
}

/// What the service does on a [`Control`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The graceful drain `SIGTERM` runs: stop accepting, let authentications in flight finish
    /// for `limits.shutdown_grace_secs`, answer the rest "Call Timed Out", exit.
    Drain,
    /// Reload the configuration, as `SIGHUP` does (a refused file keeps the running one).
    Reload,
    /// Nothing to do; the SCM gets the current status.
    Acknowledge,
    /// Not supported (`ERROR_CALL_NOT_IMPLEMENTED`): pfgate does not pause.
    Refuse,
}

/// The action for `control`. Shutdown drains like stop: Windows gives a service about 20 seconds
/// at shutdown (`WaitToKillServiceTimeout`), so calls in flight get their answers if they finish
/// by then.
pub fn action_for(control: Control) -> Action {
    match control {
        Control::Stop | Control::Shutdown | Control::Preshutdown => Action::Drain,
        Control::ParamChange => Action::Reload,
        Control::Interrogate => Action::Acknowledge,
        Control::Other => Action::Refuse,
    }
}

/// Why a service run ended badly, as reported to the SCM: the service's exit code is
/// `ERROR_SERVICE_SPECIFIC_ERROR` (1066) with [`Failure::code`] as the service-specific code
/// (`sc query NAME` shows both); the reason itself is in the log file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The configuration file was refused (the problems, one per line).
    #[error("the configuration was refused:\n{0}")]
    Config(String),
    /// The server did not start (address in use, unreadable certificate, store…).
    #[error("the server did not start: {0}")]
    Start(String),
    /// No async runtime or no log file: nothing could run.
    #[error("cannot run: {0}")]
    Runtime(String),
}

impl Failure {
    /// The service-specific exit code: 1 as `check-config`'s, 2 as `serve`'s start-up failures.
    pub fn code(&self) -> u32 {
        match self {
            Failure::Config(_) => 1,
            Failure::Start(_) => 2,
            Failure::Runtime(_) => 3,
        }
    }
}

/// The arguments the SCM starts `pfgate.exe` with (after the executable's path): the hidden
/// `service run` entry point, the configuration's absolute path (a service starts in
/// `C:\Windows\System32`, where a relative path would mean nothing) and the service's name.
pub fn launch_arguments(config: &Path, name: &str) -> Vec<OsString> {
    vec![
        "service".into(),
        "run".into(),
        "--config".into(),
        config.as_os_str().to_owned(),
        "--name".into(),
        name.into(),
    ]
}

/// The account the service runs as without `--account`: the service's own virtual account
/// (`NT SERVICE\NAME`), which has no password, no network identity and no rights but those the
/// administrator grants (read on the configuration and secret files, write on the data directory).
pub fn default_account(name: &str) -> String {
    format!("NT SERVICE\\{name}")
}

/// The directory the service logs to: `%ProgramData%\pfgate\logs` (`C:\ProgramData\…` when the
/// variable is missing, as it can be for a service with an empty environment). A directory of its
/// own, so the service account can be given write access there and read-only access to the
/// configuration and secrets beside it.
pub fn log_dir(program_data: Option<OsString>) -> PathBuf {
    let base = program_data
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
    base.join("pfgate").join("logs")
}

/// The log file of service `name` in `dir`.
pub fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// A service name the SCM and a file name both accept: 1 to 64 ASCII letters, digits, `-`, `_`
/// or `.` (the SCM allows more, but the name is also the log file's name).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_shutdown_drain_paramchange_reloads() {
        assert_eq!(action_for(Control::Stop), Action::Drain);
        assert_eq!(action_for(Control::Shutdown), Action::Drain);
        assert_eq!(action_for(Control::Preshutdown), Action::Drain);
        assert_eq!(action_for(Control::ParamChange), Action::Reload);
        assert_eq!(action_for(Control::Interrogate), Action::Acknowledge);
        assert_eq!(action_for(Control::Other), Action::Refuse);
    }

    #[test]
    fn failures_have_distinct_codes_like_the_cli() {
        assert_eq!(Failure::Config("x".into()).code(), 1);
        assert_eq!(Failure::Start("x".into()).code(), 2);
        assert_eq!(Failure::Runtime("x".into()).code(), 3);
    }

    #[test]
    fn the_scm_starts_the_hidden_entry_point_with_the_config_and_name() {
        let args = launch_arguments(Path::new(r"C:\pfgate\pfgate.toml"), "pfgate-test");
        let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            args,
            [
                "service",
                "run",
                "--config",
                r"C:\pfgate\pfgate.toml",
                "--name",
                "pfgate-test"
            ]
        );
    }

    #[test]
    fn logs_go_under_program_data() {
        let under = |base: &str| PathBuf::from(base).join("pfgate").join("logs");
        assert_eq!(log_dir(Some(r"D:\Data".into())), under(r"D:\Data"));
        assert_eq!(log_dir(None), under(r"C:\ProgramData"));
        assert_eq!(log_dir(Some("".into())), under(r"C:\ProgramData"));
        assert_eq!(
            log_file(Path::new("x"), "pfgate"),
            Path::new("x").join("pfgate.log")
        );
    }

    #[test]
    fn names_are_plain() {
        assert!(valid_name("pfgate"));
        assert!(valid_name("pfgate-2_b.x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(r"..\x"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("with space"));
        assert!(!valid_name(&"a".repeat(65)));
        assert_eq!(default_account("pfgate"), r"NT SERVICE\pfgate");
    }
}
