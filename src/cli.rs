//! The command line: the only module that knows clap. It parses, builds typed settings, and runs.
//!
//! Exit codes: 0 success; 1 the configuration has problems (`check-config`, or `serve` refusing a
//! file); 2 usage or start-up failure (address in use, unreadable certificate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Settings, DEMO_LISTEN};
use crate::server;
use crate::telemetry::{self, LogFormat};

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
    Serve {
        /// Configuration file (see pfgate.example.toml).
        #[arg(long, value_name = "FILE", conflicts_with = "demo")]
        config: Option<PathBuf>,
        /// Demo mode: no file, no external service; self-signed TLS on 127.0.0.1:8443, demo users,
        /// scripted outcomes, callers NOT authenticated.
        #[arg(long)]
        demo: bool,
        /// Listen address (overrides the configuration's TLS listener; port 0 picks a free port).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a configuration file: exit 0, or 1 with one `file:key: reason` line per problem.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Print the WSDL (the committed wsdl/PfWsSdk.wsdl is this output).
    Wsdl {
        /// The service address to write into soap:address.
        #[arg(long, default_value = crate::pfwssdk::wsdl::PLACEHOLDER_LOCATION)]
        location: String,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for p in &errors.0 {
                    eprintln!("{p}");
                }
                ExitCode::from(1)
            }
        },
        Command::Wsdl { location } => {
            print!("{}", crate::pfwssdk::wsdl::render(&location));
            ExitCode::SUCCESS
        }
        Command::Serve {
            config,
            demo,
            listen,
            log_format,
        } => {
            telemetry::init(log_format);
            let settings = match (config, demo) {
                (Some(path), _) => match config::load(&path) {
                    Ok(mut s) => {
                        if let Some(addr) = listen {
                            if s.tls_listen.is_some() {
                                s.tls_listen = Some(addr);
                            } else {
                                s.plain_listen = Some(addr);
                            }
                        }
                        s
                    }
                    Err(errors) => {
                        for p in &errors.0 {
                            eprintln!("{p}");
                        }
                        return ExitCode::from(1);
                    }
                },
                (None, true) => {
                    let addr = listen.unwrap_or_else(|| {
                        DEMO_LISTEN
                            .parse()
                            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443)))
                    });
                    Settings::demo(addr)
                }
                (None, false) => {
                    eprintln!(
                        "pfgate serve: give --config FILE, or --demo to run on embedded defaults"
                    );
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("pfgate: cannot start the async runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime.block_on(serve(settings))
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let demo = settings.demo;
    let anonymous = settings.allow_anonymous;
    let grace = settings.engine.auth_timeout + Duration::from_secs(5);
    let running = match server::start(settings).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pfgate: {e}");
            return ExitCode::from(2);
        }
    };
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
    wait_for_signal().await;
    tracing::info!(grace_secs = grace.as_secs(), "shutting down");
    running.shutdown(grace).await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
