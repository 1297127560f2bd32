//! The Windows service: `pfgate service install|uninstall`, and `service run`, the entry point the
//! service control manager (SCM) starts. Stop and shutdown run the same graceful drain as
//! `SIGTERM`; `paramchange` reloads as `SIGHUP` does (the file watcher runs too); a failed start
//! ends the service with a service-specific exit code and the reason in the log file,
//! `%ProgramData%\pfgate\logs\NAME.log`.
//!
//! The SCM's callbacks are reached through the `windows-service` crate (Mullvad), whose
//! `define_windows_service!` holds the only `unsafe` (in the crate, not here).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{action_for, Action, Control, Event, Failure, Lifecycle};
use crate::cli::ServiceAction as Cmd;

/// What `service run` was started with, for the service's main function (which the SCM calls on
/// a thread of its own with only the arguments of `sc start`).
struct RunArgs {
    name: String,
    config: PathBuf,
}

static RUN_ARGS: OnceLock<RunArgs> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Runs `pfgate service …`.
pub fn command(action: Cmd) -> ExitCode {
    let result = match action {
        Cmd::Install {
            config,
            name,
            account,
            password_env,
        } => install(&config, &name, account, password_env.as_deref()),
        Cmd::Uninstall { name } => uninstall(&name),
        Cmd::Run { config, name } => return run(config, name),
    };
    match result {
        Ok(message) => {
            // Done whether or not anyone reads it (`| head` closing the pipe is not a failure).
            let _ = writeln!(std::io::stdout(), "{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pfgate service: {e}");
            ExitCode::from(2)
        }
    }
}

impl From<ServiceControl> for Control {
    fn from(c: ServiceControl) -> Self {
        match c {
            ServiceControl::Stop => Control::Stop,
            ServiceControl::Shutdown => Control::Shutdown,
            ServiceControl::Preshutdown => Control::Preshutdown,
            ServiceControl::ParamChange => Control::ParamChange,
            ServiceControl::Interrogate => Control::Interrogate,
            _ => Control::Other,
        }
    }
}

fn install(
    config: &Path,
    name: &str,
    account: Option<String>,
    password_env: Option<&str>,
) -> Result<String, String> {
    if !super::valid_name(name) {
        return Err(format!(
            "{name:?} is not a usable service name (1-64 letters, digits, '-', '_', '.')"
        ));
    }
    let config = std::path::absolute(config)
        .map_err(|e| format!("cannot resolve {}: {e}", config.display()))?;
    if let Err(errors) = crate::config::load(&config) {
        let problems: Vec<String> = errors.0.iter().map(|p| p.to_string()).collect();
        return Err(format!(
            "the configuration is refused; fix it first:\n{}",
            problems.join("\n")
        ));
    }
    let password = match password_env {
        Some(var) => Some(
            std::env::var_os(var)
                .ok_or_else(|| format!("the environment variable {var} is not set"))?,
        ),
        None => None,
    };
    let account = account.unwrap_or_else(|| super::default_account(name));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let manager =
        ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CREATE_SERVICE)
            .map_err(|e| format!("cannot open the service manager (run as Administrator): {e}"))?;
    let info = ServiceInfo {
        name: name.into(),
        display_name: format!("pfgate ({name})").into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments: super::launch_arguments(&config, name),
        dependencies: Vec::new(),
        account_name: Some(account.clone().into()),
        account_password: password,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(|e| format!("cannot create service {name}: {e}"))?;
    let _ = service
        .set_description("pfgate: the Azure MFA Server Web Service SDK (PfWsSdk.asmx) replacement");
    // Restart after a crash or a failed start: twice after a minute, then every ten minutes.
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    let failure_actions = ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart(60), restart(60), restart(600)]),
    };
    if let Err(e) = service.update_failure_actions(failure_actions) {
        eprintln!("pfgate service: restart-on-failure not set ({e}); set it in services.msc");
    }
    // Made here, by the administrator: the service account can then be given write access to
    // this directory alone.
    let log_dir = super::log_dir(std::env::var_os("ProgramData"));
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!("pfgate service: cannot create {}: {e}", log_dir.display());
    }
    let log = super::log_file(&log_dir, name);
    Ok(format!(
        "installed service {name} ({} {}) running as {account}; logs: {}\n\
         Give {account} read access to the configuration and secret files and write access to \
         the store, audit and log directories, then: sc start {name}",
        exe.display(),
        join_args(&info.launch_arguments),
        log.display()
    ))
}

fn join_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn uninstall(name: &str) -> Result<String, String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| format!("cannot open the service manager (run as Administrator): {e}"))?;
    let service = manager
        .open_service(
            name,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|e| format!("cannot open service {name}: {e}"))?;
    let running = service
        .query_status()
        .map(|s| s.current_state != ServiceState::Stopped)
        .unwrap_or(false);
    if running {
        service
            .stop()
            .map_err(|e| format!("cannot stop service {name}: {e}"))?;
        // The drain takes up to limits.shutdown_grace_secs; the SCM removes the service once it
        // stopped (delete only marks it).
    }
    service
        .delete()
        .map_err(|e| format!("cannot remove service {name}: {e}"))?;
    Ok(format!(
        "service {name} removed{}",
        if running { " (stopping)" } else { "" }
    ))
}

/// `service run`: hands the thread to the SCM's dispatcher, which calls [`service_main`].
fn run(config: PathBuf, name: String) -> ExitCode {
    let _ = RUN_ARGS.set(RunArgs {
        name: name.clone(),
        config,
    });
    match service_dispatcher::start(&name, ffi_service_main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "pfgate service run: not started by the service manager ({e}); \
                 on the console use `pfgate serve --config FILE`"
            );
            ExitCode::from(2)
        }
    }
}

/// Status reports to the SCM.
#[derive(Clone, Copy)]
struct Scm(service_control_handler::ServiceStatusHandle);

impl Scm {
    fn set(&self, state: ServiceState, exit: ServiceExitCode, wait_hint: Duration) {
        let controls = match state {
            ServiceState::Running => {
                ServiceControlAccept::STOP
                    | ServiceControlAccept::SHUTDOWN
                    | ServiceControlAccept::PARAM_CHANGE
            }
            _ => ServiceControlAccept::empty(),
        };
        let status = ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: controls,
            exit_code: exit,
            checkpoint: 0,
            wait_hint,
            process_id: None,
        };
        if let Err(e) = self.0.set_service_status(status) {
            tracing::error!(error = %e, "cannot report the service status");
        }
    }
}

/// The service's main function: called by the SCM on its own thread.
fn service_main(_arguments: Vec<OsString>) {
    let Some(args) = RUN_ARGS.get() else {
        return;
    };
    let log = open_log(&args.name);
    let stop = Arc::new(Notify::new());
    let param_change = Arc::new(Notify::new());
    let handler = {
        let (stop, param_change) = (stop.clone(), param_change.clone());
        move |control: ServiceControl| match action_for(control.into()) {
            Action::Drain => {
                stop.notify_one();
                ServiceControlHandlerResult::NoError
            }
            Action::Reload => {
                param_change.notify_one();
                ServiceControlHandlerResult::NoError
            }
            Action::Acknowledge => ServiceControlHandlerResult::NoError,
            Action::Refuse => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let scm = match service_control_handler::register(&args.name, handler) {
        Ok(h) => Scm(h),
        Err(e) => {
            tracing::error!(error = %e, "cannot register with the service manager");
            return;
        }
    };
    scm.set(
        ServiceState::StartPending,
        ServiceExitCode::NO_ERROR,
        Duration::from_secs(30),
    );
    let result = log.and_then(|()| serve(args, scm, stop, param_change));
    let exit = match &result {
        Ok(()) => {
            tracing::info!(service = %args.name, "service stopped");
            ServiceExitCode::NO_ERROR
        }
        Err(failure) => {
            tracing::error!(service = %args.name, "{failure}");
            ServiceExitCode::ServiceSpecific(failure.code())
        }
    };
    crate::telemetry::access_log::flush();
    scm.set(ServiceState::Stopped, exit, Duration::ZERO);
}

/// Sends the logs to `%ProgramData%\pfgate\logs\NAME.log` (appending; the directory is created).
fn open_log(name: &str) -> Result<(), Failure> {
    let dir = super::log_dir(std::env::var_os("ProgramData"));
    let path = super::log_file(&dir, name);
    let opened = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    });
    let file = opened.map_err(|e| Failure::Runtime(format!("log {}: {e}", path.display())))?;
    crate::telemetry::init_file(crate::telemetry::LogFormat::Text, file)
        .map_err(|e| Failure::Runtime(format!("log {}: {e}", path.display())))
}

/// Loads the configuration and serves until the SCM's stop; start-up failures come back typed.
fn serve(
    args: &RunArgs,
    scm: Scm,
    stop: Arc<Notify>,
    param_change: Arc<Notify>,
) -> Result<(), Failure> {
    let settings = crate::config::load(&args.config).map_err(|errors| {
        let problems: Vec<String> = errors.0.iter().map(|p| p.to_string()).collect();
        Failure::Config(problems.join("\n"))
    })?;
    tracing::info!(
        service = %args.name,
        config = %args.config.display(),
        version = env!("CARGO_PKG_VERSION"),
        "service starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("async runtime: {e}")))?;
    // The first failure `serve` reports (it also returns exit code 2 then).
    let failed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let report = {
        let failed = failed.clone();
        move |event: Event<'_>| match event {
            Event::Started => scm.set(
                ServiceState::Running,
                ServiceExitCode::NO_ERROR,
                Duration::ZERO,
            ),
            Event::Failed(reason) => {
                if let Ok(mut f) = failed.lock() {
                    f.get_or_insert_with(|| reason.to_string());
                }
            }
            // The SCM waits this long before deciding the service hangs.
            Event::Stopping(grace) => scm.set(
                ServiceState::StopPending,
                ServiceExitCode::NO_ERROR,
                grace + Duration::from_secs(10),
            ),
        }
    };
    let life = Lifecycle {
        stop: Box::pin(async move { stop.notified().await }),
        param_change: Some(param_change),
        report: Box::new(report),
    };
    let reload: crate::server::reload::Adjust = Box::new(|_| {});
    let code = runtime.block_on(crate::cli::serve(
        settings,
        Some((args.config.clone(), reload)),
        life,
    ));
    let reason = failed.lock().ok().and_then(|mut f| f.take());
    match reason {
        Some(reason) => Err(Failure::Start(reason)),
        None if code == ExitCode::SUCCESS => Ok(()),
        None => Err(Failure::Start("serve ended with an error".into())),
    }
}
