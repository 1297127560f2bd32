//! `pfgate serve`: the settings from a file (or demo mode), adjusted by `--listen`, served until a
//! stop signal, reloaded on `SIGHUP` and when the file changes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{parse_listen, CliError, StopSignal};
use crate::config::{self, Settings, DEMO_LISTEN};
use crate::server;
use crate::telemetry::{self, LogFormat};

/// `pfgate serve` options.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (see pfgate.example.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "demo")]
    pub config: Option<PathBuf>,
    /// Demo mode: no file, no external service; self-signed TLS on 127.0.0.1:8443, demo users,
    /// scripted outcomes, callers NOT authenticated.
    #[arg(long)]
    pub demo: bool,
    /// Listen address (overrides the configuration's TLS listener; port 0 picks a free port);
    /// a host name such as localhost:8443 listens on its first address (IPv4 first).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Runs `pfgate serve`: exit 1 when the file has problems, 2 when the server cannot start.
pub(super) fn run(args: ServeArgs) -> Result<ExitCode, CliError> {
    let ServeArgs {
        config,
        demo,
        listen,
        log_format,
    } = args;
    telemetry::init(log_format);
    let settings = match (config.clone(), demo) {
        (Some(path), _) => {
            let mut s = config::load(&path)?;
            apply_listen(&mut s, listen);
            s
        }
        (None, true) => {
            let addr = listen.unwrap_or_else(|| {
                DEMO_LISTEN
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)))
            });
            let mut s = Settings::demo(addr);
            // Demo mode has the admin listener too, on loopback: metrics are part of trying pfgate out.
            s.admin = config::AdminSettings::default_on();
            s
        }
        (None, false) => {
            return Err(CliError::failed_in(
                "pfgate serve",
                "give --config FILE, or --demo to run on embedded defaults",
            ))
        }
    };
    let reload = config.map(|path| {
        let adjust: server::reload::Adjust =
            Box::new(move |s: &mut Settings| apply_listen(s, listen));
        (path, adjust)
    });
    super::block_on_multi(async move {
        // Inside the runtime and before serve prints its listening lines (see StopSignal).
        let life = crate::cli::host::Lifecycle::console(StopSignal::install().wait());
        serving(settings, reload, life).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `--listen` replaces the configured TLS listener, or the plain one when there is no TLS one.
fn apply_listen(s: &mut Settings, listen: Option<SocketAddr>) {
    if let Some(addr) = listen {
        if s.tls_listen.is_some() {
            s.tls_listen = Some(addr);
        } else {
            s.plain_listen = Some(addr);
        }
    }
}

/// [`serving`] for the Windows service manager's entry point, which has its own report of how
/// the service ended: the error is printed here, the exit code returned.
#[cfg_attr(not(windows), allow(dead_code))] // called by service/windows.rs only
pub(crate) async fn serve(
    settings: Settings,
    reload: Option<(PathBuf, server::reload::Adjust)>,
    life: crate::cli::host::Lifecycle,
) -> ExitCode {
    match serving(settings, reload, life).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

/// Serves until `life.stop` resolves (`SIGTERM`/Ctrl-C, or the Windows service manager's stop);
/// with `reload` (the configuration file and how the command line adjusted it), also reloads on
/// `SIGHUP` (or `paramchange`) and when the file changes. An error is also reported to `life`.
async fn serving(
    settings: Settings,
    reload: Option<(PathBuf, server::reload::Adjust)>,
    life: crate::cli::host::Lifecycle,
) -> Result<(), CliError> {
    let demo = settings.demo;
    let anonymous = settings.allow_anonymous;
    let failed = |e: &dyn std::fmt::Display| {
        let reason = e.to_string();
        (life.report)(crate::cli::host::Event::Failed(&reason));
        CliError::failed(reason)
    };
    if let Some(audit) = &settings.audit {
        // Opened before the listeners: a trail that cannot be continued stops the start, rather
        // than serving authentications nobody can account for.
        let trail = telemetry::audit_trail::AuditTrail::open(audit).map_err(|e| failed(&e))?;
        telemetry::audit_trail::install(trail);
    }
    // Before the listening lines: a SIGHUP sent as soon as they appear must find its handler.
    let hangup = server::reload::Hangup::listen(life.param_change.clone());
    let reload = reload.map(|(path, adjust)| (path, adjust, hangup));
    let running = server::start(settings).await.map_err(|e| failed(&e))?;
    if let Some(url) = running.tls_url() {
        println!("pfgate {} listening on {url}", env!("CARGO_PKG_VERSION"));
    }
    if let Some(url) = running.plain_url() {
        println!(
            "pfgate {} listening on {url} (plain HTTP)",
            env!("CARGO_PKG_VERSION")
        );
    }
    if let Some(tls) = &running.tls {
        println!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint());
    }
    if let Some(addr) = running.admin_addr {
        println!("pfgate admin listener on http://{addr} (/healthz, /readyz, /metrics)");
    }
    if demo {
        tracing::warn!(
            "DEMO MODE: callers are NOT authenticated, the certificate is self-signed and every \
             outcome is scripted from the embedded fixtures/demo.toml. Never expose this to a network."
        );
    } else if anonymous {
        tracing::warn!("auth.allow_anonymous = true: callers are NOT authenticated by pfgate");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let watcher = reload.map(|(path, adjust, hangup)| {
        tokio::spawn(server::reload::watch(running.live(), path, adjust, hangup))
    });
    (life.report)(crate::cli::host::Event::Started);
    life.stop.await;
    if let Some(w) = watcher {
        w.abort();
    }
    // The grace period in force now (a reload may have changed it).
    let grace = running.state().settings.limits.shutdown_grace;
    (life.report)(crate::cli::host::Event::Stopping(grace));
    tracing::info!(grace_secs = grace.as_secs(), "shutting down");
    running.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(())
}
