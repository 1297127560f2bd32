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
        /// Listen address (overrides the configuration's TLS listener; port 0 picks a free port);
        /// a host name such as localhost:8443 listens on its first address (IPv4 first).
        #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Write a complete, secure starting site into a new directory for one provider: pfgate.toml
    /// with every section, a development certificate, a secrets key and secret files readable by
    /// their owner only, a users file with MIM's service account; then print the placeholders
    /// to fill and the steps left (docs/deploy.md). Never overwrites.
    Init {
        /// The directory (created; must not exist or be empty).
        dir: PathBuf,
        /// Who performs the second factor.
        #[arg(long, value_enum)]
        provider: crate::init::InitProvider,
        /// Extra host names or IP addresses for the development certificate (localhost and
        /// 127.0.0.1 are always in it): the name in MIM's URL.
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Where the store and the audit trail go (default: the site directory). The systemd
        /// unit can write only /var/lib/pfgate: give that when the site is /etc/pfgate.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
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
    Mock {
        /// Scenario file (TOML); repeat to merge several. Without one: the demo directory.
        #[arg(long = "scenario", value_name = "FILE")]
        scenarios: Vec<PathBuf>,
        /// Listen address (port 0 picks a free port).
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0", value_parser = parse_listen)]
        listen: SocketAddr,
        /// Write the URL, fingerprint and admin URL here as JSON once accepting connections.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Plain HTTP instead of TLS (loopback only: for CI on one machine).
        #[arg(long)]
        plain_http: bool,
        /// Admin API path prefix.
        #[arg(long, value_name = "PREFIX", default_value = crate::mock::DEFAULT_ADMIN_PREFIX)]
        admin_prefix: String,
        /// File holding the admin API bearer token (else the PFGATE_MOCK_ADMIN_TOKEN variable);
        /// required when the admin API listens on a non-loopback address.
        #[arg(long, value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
        /// Serve the admin API on this address of its own instead of the main listener.
        #[arg(long, value_name = "ADDR:PORT")]
        admin_listen: Option<SocketAddr>,
        /// Answer from exchanges recorded by `pfgate record` in this directory.
        #[arg(long, value_name = "DIR")]
        replay: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Record: a transparent proxy in front of a real PfWsSdk saving each SOAP exchange as a
    /// redacted golden fixture for `pfgate mock --replay` (docs/mock.md).
    Record {
        /// The real PfWsSdk URL (https; plain http only to loopback).
        #[arg(long, value_name = "URL")]
        upstream: url::Url,
        /// Directory for the fixtures (created if missing; numbering continues).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// PEM certificates to trust for the upstream instead of the system roots.
        #[arg(long, value_name = "FILE")]
        upstream_ca: Option<PathBuf>,
        /// Listen address (port 0 picks a free port).
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0", value_parser = parse_listen)]
        listen: SocketAddr,
        /// Plain HTTP instead of TLS (loopback only).
        #[arg(long)]
        plain_http: bool,
        /// Write the URL and certificate here as JSON once accepting connections.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Call one PfWsSdk operation on any endpoint (an old MFA Server or pfgate) and print the
    /// decoded answer (docs/call.md). Exit 0 success, 1 false/Error, 2 usage, 3 no answer
    /// (connection, TLS, HTTP), 4 credentials refused, 5 SOAP fault.
    Call {
        /// The PfWsSdk.asmx URL.
        url: String,
        /// The wire operation name (case-sensitive: `GetUserSettings_3`).
        operation: String,
        /// A parameter NAME=VALUE; complex fields as `addUserSettings.Mode=smsText`, string
        /// arrays by repeating `tagIds=a`, complex array items as `eventParameters[0].Name=x`.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: SdkConnectArgs,
    },
    /// Probe a plain-HTTP health endpoint: exit 0 on `200`, 1 otherwise. For container health
    /// checks, where the image holds no curl (docs/container.md).
    Healthcheck {
        /// The URL to GET (plain `http://` only).
        #[arg(default_value = crate::healthcheck::DEFAULT_URL)]
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
        shell: crate::cli_docs::Shell,
    },
    /// Print the pfgate(1) manual page (roff; `pfgate man | man -l -`).
    Man,
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

/// How `pfgate call` and `users import --from-sdk` reach and authenticate to a PfWsSdk server.
#[derive(Debug, clap::Args)]
pub struct SdkConnectArgs {
    /// HTTP authentication: none, basic (TLS only), ntlm, or cert (a client certificate only).
    #[arg(long, value_enum, default_value_t = SdkAuth::None)]
    pub auth: SdkAuth,
    /// User for basic/ntlm (`CONTOSO\svc-mfa` or a UPN).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Environment variable holding the password (never an argument: `ps` would show it).
    #[arg(long, value_name = "VAR", default_value = crate::sdk_client::command::DEFAULT_PASSWORD_ENV)]
    pub password_env: String,
    /// File holding the password on its first line (`-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Trust only CA certificates in this PEM file (instead of the system trust store).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Trust only a server certificate with this SHA-256 fingerprint (as pfgate prints it).
    #[arg(long, value_name = "HEX")]
    pub pin_sha256: Option<String>,
    /// Client certificate (PEM) for servers that map certificates to callers.
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Seconds one call may take (the .NET proxies' default is 100).
    #[arg(long, value_name = "SECS", default_value_t = 100)]
    pub timeout: u64,
    /// Allow Basic credentials over plain http (loopback or lab only).
    #[arg(long)]
    pub insecure_plain: bool,
}

/// `--auth` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SdkAuth {
    /// No HTTP authentication.
    None,
    /// Basic.
    Basic,
    /// NTLMv2.
    Ntlm,
    /// A client certificate only.
    Cert,
}

impl SdkConnectArgs {
    /// The settings for `url`.
    pub fn settings(&self, url: String) -> crate::sdk_client::command::ConnectSettings {
        use crate::sdk_client::command::AuthKind;
        crate::sdk_client::command::ConnectSettings {
            url,
            auth: match self.auth {
                SdkAuth::None => AuthKind::None,
                SdkAuth::Basic => AuthKind::Basic,
                SdkAuth::Ntlm => AuthKind::Ntlm,
                SdkAuth::Cert => AuthKind::Cert,
            },
            user: self.user.clone(),
            password_env: self.password_env.clone(),
            password_file: self.password_file.clone(),
            ca: self.ca.clone(),
            pin_sha256: self.pin_sha256.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            timeout: Duration::from_secs(self.timeout.max(1)),
            insecure_plain: self.insecure_plain,
        }
    }
}

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

/// `pfgate mim …`
#[derive(Debug, Subcommand)]
pub enum MimAction {
    /// Read MfaSettings.xml, explain what it holds (cloud SDK keys, LOCMFA, LOCMFASRV, Username,
    /// CustomPhoneProvider, DefaultCountryCode) and print the change that points MIM at pfgate.
    /// Nothing is written without --write (then a backup FILE.pfgate-backup-<time> is kept).
    /// Exit 0, or 1 when something the check cannot fill in is still missing (Username without
    /// --username), or 2 on an error (unreadable file, a URL pfgate would not serve).
    Check {
        /// MIM's MfaSettings.xml.
        file: PathBuf,
        /// pfgate's PfWsSdk URL as MIM will reach it: https, ending in /PfWsSdk.asmx.
        #[arg(long, value_name = "URL")]
        url: String,
        /// The MIM Service account's UPN to put in <Username> (the account MIM calls as; it must
        /// be a user in pfgate's directory).
        #[arg(long, value_name = "UPN")]
        username: Option<String>,
        /// Write the change (after a backup).
        #[arg(long)]
        write: bool,
    },
}

/// `pfgate audit …`
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the chain: exit 0 and print the record count and newest hash, or exit 1 naming the
    /// first broken line. One FILE: the current trail file, its rotated files (FILE.<20 digits>)
    /// are found and checked first. Several FILEs: checked in the order given.
    Verify {
        /// Trail file(s).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `pfgate store …`
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Change the secrets key: re-seal every OATH secret and static token under the new key and
    /// record its check value, in one transaction. Stop every pfgate instance that uses the store
    /// first, then give them all the new key (docs/ha.md, "Rotating the secrets key").
    RotateKey {
        /// Configuration naming the store and its current key.
        #[arg(long)]
        config: PathBuf,
        /// File holding the new key (as `store.secrets_key_file`).
        #[arg(
            long,
            required_unless_present = "new_key_env",
            conflicts_with = "new_key_env"
        )]
        new_key_file: Option<PathBuf>,
        /// Environment variable holding the new key (as `store.secrets_key_env`).
        #[arg(long)]
        new_key_env: Option<String>,
    },
}

/// `pfgate service …` (Windows only; elsewhere it says so and exits 2).
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Register this executable with the service manager (automatic start, restart on failure).
    Install {
        /// Configuration file (made absolute; check it first with `check-config`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Service name (also the log file's name, under %ProgramData%\pfgate\logs).
        #[arg(long, default_value = crate::service::DEFAULT_NAME)]
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
        #[arg(long, default_value = crate::service::DEFAULT_NAME)]
        name: String,
    },
    /// The entry point the service manager starts (not for the console).
    #[command(hide = true)]
    Run {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Service name.
        #[arg(long, default_value = crate::service::DEFAULT_NAME)]
        name: String,
    },
}

/// Runs `pfgate service …`: on Windows through the service manager; elsewhere exit 2 (systemd
/// runs pfgate there: deploy/pfgate.service).
fn service_command(action: ServiceAction) -> ExitCode {
    #[cfg(windows)]
    {
        crate::service::windows::command(action)
    }
    #[cfg(not(windows))]
    {
        let _ = action;
        eprintln!(
            "pfgate service: Windows services exist on Windows only; on Linux use systemd \
             (deploy/pfgate.service, docs/deploy.md)"
        );
        ExitCode::from(2)
    }
}

/// `pfgate users …`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process: the size does not matter
pub enum UsersAction {
    /// Import users from a CSV file (columns: see the README), or with --from-sdk URL straight
    /// from an old MFA Server's Web Service SDK (docs/migration.md); existing users are skipped.
    Import {
        /// The CSV file (not with --from-sdk).
        #[arg(required_unless_present = "from_sdk", conflicts_with = "from_sdk")]
        file: Option<PathBuf>,
        /// Configuration naming the store (`[store] path`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Update users that already exist instead of skipping them: the columns the file has
        /// are written, the others keep their stored values (with --from-sdk: the fields that
        /// differ from the old server's).
        #[arg(long)]
        update: bool,
        /// Read the users from this PfWsSdk.asmx URL (an old MFA Server) instead of a CSV file.
        #[arg(long, value_name = "URL")]
        from_sdk: Option<String>,
        /// Write nothing, print what would change (each user and the totals).
        #[arg(long)]
        dry_run: bool,
        /// With --from-sdk: record progress here and continue after the last user it names.
        #[arg(long, value_name = "FILE", requires = "from_sdk")]
        since_checkpoint: Option<PathBuf>,
        /// With --from-sdk: rows asked for per FindUsers call (slices are split until complete).
        #[arg(long, value_name = "N", default_value_t = 500, requires = "from_sdk")]
        page_size: u32,
        /// With --from-sdk: stop after N users (continue later with --since-checkpoint).
        #[arg(long, value_name = "N", requires = "from_sdk")]
        max_users: Option<usize>,
        /// With --from-sdk: the CSV of problems (users not imported, PINs and OATH secrets not
        /// migrated, differences).
        #[arg(
            long,
            value_name = "FILE",
            default_value = "pfgate-import-problems.csv"
        )]
        problems: PathBuf,
        #[command(flatten)]
        connect: SdkConnectArgs,
    },
    /// Export users as CSV (without PINs, OATH secrets or static tokens).
    Export {
        /// Configuration naming the store.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Init {
            dir,
            provider,
            hosts,
            state_dir,
        } => match crate::init::init(&dir, provider, &hosts, state_dir.as_deref()) {
            Ok(written) => {
                print!("{}", crate::init::next_steps(&dir, provider, &written));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pfgate init: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(settings) if !settings.serve_problems().is_empty() => {
                for (key, reason) in settings.serve_problems() {
                    eprintln!("{}:{key}: {reason}", file.display());
                }
                ExitCode::from(1)
            }
            Ok(settings) => {
                println!("{}: OK", file.display());
                for w in settings.warnings() {
                    eprintln!("{}: warning: {w}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for p in &errors.0 {
                    eprintln!("{p}");
                }
                ExitCode::from(1)
            }
        },
        Command::Call {
            url,
            operation,
            params,
            json,
            connect,
        } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("pfgate: cannot start the async runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            runtime.block_on(crate::sdk_client::command::run_call(
                connect.settings(url),
                &operation,
                &params,
                json,
            ))
        }
        Command::Store {
            action:
                StoreAction::RotateKey {
                    config,
                    new_key_file,
                    new_key_env,
                },
        } => block_on(rotate_key(config, new_key_file, new_key_env)),
        Command::Users { action } => block_on(users(action)),
        Command::Cert {
            action: CertAction::Dev { dir, hosts, force },
        } => match crate::devcert::make(&dir, &hosts, force) {
            Ok(files) => {
                // Absolute: the configuration resolves relative paths against its own directory,
                // not against the directory this command ran in.
                let shown = |p: &std::path::Path| {
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
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("pfgate: {e}");
                ExitCode::from(2)
            }
        },
        Command::Mim {
            action:
                MimAction::Check {
                    file,
                    url,
                    username,
                    write,
                },
        } => mim_check(&file, &url, username.as_deref(), write),
        Command::Audit {
            action: AuditAction::Verify { files },
        } => {
            let files = match files.as_slice() {
                [one] => crate::audit_trail::chain_files(one),
                _ => files,
            };
            match crate::audit_trail::verify(&files) {
                Ok(summary) => {
                    println!(
                        "chain intact: {} records in {} file(s); newest hash {}",
                        summary.records,
                        files.len(),
                        summary.last_hash
                    );
                    if let Some((seq, prev)) = &summary.continues_from {
                        println!("older records removed by retention: the chain continues from record {seq}, whose predecessor's hash is {prev}");
                    }
                    ExitCode::SUCCESS
                }
                Err(brk) => {
                    eprintln!("chain broken at {brk}");
                    ExitCode::from(1)
                }
            }
        }
        Command::HashPassword => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("pfgate: cannot read the password: {e}");
                return ExitCode::from(2);
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("pfgate: the password is empty");
                return ExitCode::from(2);
            }
            match crate::store::secrets::hash_pin(password) {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pfgate: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Healthcheck { url, timeout } => crate::healthcheck::run(&url, timeout),
        Command::Completions { shell } => {
            crate::cli_docs::print(|out| crate::cli_docs::completions(shell, out))
        }
        Command::Man => crate::cli_docs::print(crate::cli_docs::man),
        Command::Service { action } => service_command(action),
        Command::Wsdl { location } => {
            print!("{}", crate::pfwssdk::wsdl::render(&location));
            ExitCode::SUCCESS
        }
        Command::Mock {
            scenarios,
            listen,
            ready_file,
            plain_http,
            admin_prefix,
            admin_token_file,
            admin_listen,
            replay,
            log_format,
        } => {
            telemetry::init(log_format);
            let admin_token = match admin_token(admin_token_file.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("pfgate mock: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = crate::mock::MockOptions {
                listen,
                plain_http,
                scenario_files: scenarios,
                admin_prefix,
                admin_token,
                admin_listen,
                replay,
                plain_http_any_address: std::env::var(crate::mock::ANY_ADDRESS_ENV)
                    .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            };
            block_on_multi(mock(options, ready_file))
        }
        Command::Record {
            upstream,
            out,
            upstream_ca,
            listen,
            plain_http,
            ready_file,
            log_format,
        } => {
            telemetry::init(log_format);
            let options = crate::mock::record::RecordOptions {
                listen,
                plain_http,
                upstream,
                upstream_ca,
                out,
            };
            block_on_multi(record(options, ready_file))
        }
        Command::Serve {
            config,
            demo,
            listen,
            log_format,
        } => {
            telemetry::init(log_format);
            let settings = match (config.clone(), demo) {
                (Some(path), _) => match config::load(&path) {
                    Ok(mut s) => {
                        apply_listen(&mut s, listen);
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
                    let mut s = Settings::demo(addr);
                    // Demo mode has the admin listener too, on loopback: metrics are part of trying pfgate out.
                    s.admin = config::AdminSettings::default_on();
                    s
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
            let reload = config.map(|path| {
                let adjust: crate::reload::Adjust =
                    Box::new(move |s: &mut Settings| apply_listen(s, listen));
                (path, adjust)
            });
            runtime.block_on(async move {
                // Inside the runtime and before serve prints its listening lines (see StopSignal).
                let life = crate::service::Lifecycle::console(StopSignal::install().wait());
                serve(settings, reload, life).await
            })
        }
    }
}

/// Opens the store `config` names. Only `[store]` is validated: these commands serve nothing,
/// so a file holding only `[store]` is enough (docs/migration.md, step 1).
async fn store_for(
    config: &std::path::Path,
) -> Result<std::sync::Arc<dyn crate::store::Store>, ExitCode> {
    let settings = match config::load_store(config) {
        Ok(s) => s,
        Err(errors) => {
            for p in &errors.0 {
                eprintln!("{p}");
            }
            return Err(ExitCode::from(1));
        }
    };
    if settings.path.is_none() && settings.postgres.is_none() {
        eprintln!(
            "{}:store.path: the configuration has no store file or database; users imported into \
             memory would be lost",
            config.display()
        );
        return Err(ExitCode::from(1));
    }
    crate::app::open_store_with(&settings).await.map_err(|e| {
        eprintln!("pfgate: {e}");
        ExitCode::from(2)
    })
}

/// Runs `f` on a single-threaded runtime (the `users` and `store` commands'); exit 2 when it
/// cannot start.
fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    block_on_runtime(tokio::runtime::Builder::new_current_thread(), f)
}

/// `pfgate store rotate-key`: exit 0 rotated, 1 configuration problem, 2 the store or a key refused
/// (the current key is checked against the database's key check value before anything changes).
async fn rotate_key(
    config: PathBuf,
    new_key_file: Option<PathBuf>,
    new_key_env: Option<String>,
) -> ExitCode {
    use crate::store::secrets::SecretKey;
    let settings = match config::load(&config) {
        Ok(s) => s,
        Err(errors) => {
            for p in &errors.0 {
                eprintln!("{p}");
            }
            return ExitCode::from(1);
        }
    };
    if settings.store.postgres.is_none() && settings.store.path.is_none() {
        eprintln!(
            "{}:store: the configuration names no store file or database to rotate",
            config.display()
        );
        return ExitCode::from(1);
    }
    let new_key = match (&new_key_file, &new_key_env) {
        (Some(file), _) => SecretKey::from_file(file),
        (None, Some(var)) => SecretKey::from_env(var),
        (None, None) => {
            eprintln!("pfgate: give the new key with --new-key-file or --new-key-env");
            return ExitCode::from(1);
        }
    };
    let new_key = match new_key {
        Ok(k) => k,
        Err(e) => {
            eprintln!("pfgate: new key: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match crate::app::open_store(&settings).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pfgate: {e}");
            return ExitCode::from(2);
        }
    };
    match store.rotate_key(new_key).await {
        Ok(n) => {
            println!(
                "secrets key rotated: {n} users' secrets re-sealed, the store now accepts only the \
                 new key; give it to every instance (store.secrets_key_file or \
                 store.secrets_key_env) and start them"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pfgate: rotating the secrets key: {e} (nothing was changed)");
            ExitCode::from(2)
        }
    }
}

async fn users(action: UsersAction) -> ExitCode {
    match action {
        UsersAction::Import {
            from_sdk: Some(url),
            config,
            update,
            dry_run,
            since_checkpoint,
            page_size,
            max_users,
            problems,
            connect,
            ..
        } => {
            let store = match store_for(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let opts = crate::users_import::ImportOptions {
                page_size,
                dry_run,
                update,
                checkpoint: since_checkpoint,
                problems,
                max_users,
            };
            crate::users_import::command(connect.settings(url), store.as_ref(), &opts).await
        }
        UsersAction::Import {
            file,
            config,
            update,
            dry_run,
            ..
        } => {
            let Some(file) = file else {
                eprintln!("pfgate: users import needs a CSV file or --from-sdk URL");
                return ExitCode::from(2);
            };
            let store = match store_for(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let input = match std::fs::File::open(&file) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("pfgate: cannot read {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            let (rows, row_errors) = match crate::users_csv::read(input) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::from(1);
                }
            };
            if dry_run {
                return csv_dry_run(store.as_ref(), &file, &rows, &row_errors, update).await;
            }
            let report = match crate::users_csv::import(store.as_ref(), rows, update).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("pfgate: import stopped: {e}");
                    return ExitCode::from(2);
                }
            };
            // Rows the file got wrong, then rows the store refused (an external id another user
            // holds), in line order.
            let mut refused: Vec<_> = row_errors.iter().chain(&report.errors).collect();
            refused.sort_by_key(|e| e.line);
            for e in &refused {
                eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
            }
            println!(
                "imported: {} added, {} updated, {} already present, {} rows refused",
                report.added,
                report.updated,
                report.skipped,
                refused.len()
            );
            if refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        UsersAction::Export { config, output } => {
            let store = match store_for(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let result = match &output {
                Some(path) => match std::fs::File::create(path) {
                    Ok(f) => crate::users_csv::export(store.as_ref(), f).await,
                    Err(e) => Err(format!("cannot write {}: {e}", path.display())),
                },
                None => crate::users_csv::export(store.as_ref(), std::io::stdout().lock()).await,
            };
            match result {
                Ok(n) => {
                    eprintln!("exported {n} users");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pfgate: export failed: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `users import FILE --dry-run`: prints what the import would do and writes nothing (exit 1 when
/// rows would be refused, as the import itself).
async fn csv_dry_run(
    store: &dyn crate::store::Store,
    file: &std::path::Path,
    rows: &[crate::users_csv::ImportRow],
    row_errors: &[crate::users_csv::RowError],
    update: bool,
) -> ExitCode {
    use crate::users_csv::RowAction;
    let plan = match crate::users_csv::preview(store, rows, update).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pfgate: dry run stopped: {e}");
            return ExitCode::from(2);
        }
    };
    for e in row_errors {
        eprintln!("{}:{}: {}", file.display(), e.line, e.reason);
    }
    let (mut added, mut updated, mut skipped) = (0, 0, 0);
    for (line, user, action) in &plan {
        let (verb, count) = match action {
            RowAction::Add => ("would add", &mut added),
            RowAction::Update => ("would update", &mut updated),
            RowAction::Skip => ("already present", &mut skipped),
        };
        *count += 1;
        println!("{}:{line}: {verb} {user}", file.display());
    }
    println!(
        "dry run, nothing written: {added} would be added, {updated} updated, {skipped} already \
         present, {} rows refused",
        row_errors.len()
    );
    if row_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `pfgate mim check`: see [`MimAction::Check`] for the exit codes.
fn mim_check(file: &std::path::Path, url: &str, username: Option<&str>, write: bool) -> ExitCode {
    let report = match crate::mim::check(file, url, username) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pfgate: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", crate::mim::render(&report, file));
    if !report.changes.is_empty() {
        if !write {
            println!("Nothing was written (use --write; the original is kept as a backup).");
        } else {
            match crate::mim::write(&report, file) {
                Ok(backup) => println!(
                    "Written. The original is kept as {}. Restart the MIM Service.",
                    backup.display()
                ),
                Err(e) => {
                    eprintln!("pfgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    if report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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

/// Serves until `life.stop` resolves (`SIGTERM`/Ctrl-C, or the Windows service manager's stop);
/// with `reload` (the configuration file and how the command line adjusted it), also reloads on
/// `SIGHUP` (or `paramchange`) and when the file changes.
pub(crate) async fn serve(
    settings: Settings,
    reload: Option<(PathBuf, crate::reload::Adjust)>,
    life: crate::service::Lifecycle,
) -> ExitCode {
    let demo = settings.demo;
    let anonymous = settings.allow_anonymous;
    if let Some(audit) = &settings.audit {
        // Opened before the listeners: a trail that cannot be continued stops the start, rather
        // than serving authentications nobody can account for.
        match crate::audit_trail::AuditTrail::open(audit) {
            Ok(trail) => {
                crate::audit_trail::install(trail);
            }
            Err(e) => {
                eprintln!("pfgate: {e}");
                (life.report)(crate::service::Event::Failed(&e.to_string()));
                return ExitCode::from(2);
            }
        }
    }
    // Before the listening lines: a SIGHUP sent as soon as they appear must find its handler.
    let hangup = crate::reload::Hangup::listen(life.param_change.clone());
    let reload = reload.map(|(path, adjust)| (path, adjust, hangup));
    let running = match server::start(settings).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pfgate: {e}");
            (life.report)(crate::service::Event::Failed(&e.to_string()));
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
        tokio::spawn(crate::reload::watch(running.live(), path, adjust, hangup))
    });
    (life.report)(crate::service::Event::Started);
    life.stop.await;
    if let Some(w) = watcher {
        w.abort();
    }
    // The grace period in force now (a reload may have changed it).
    let grace = running.state().settings.limits.shutdown_grace;
    (life.report)(crate::service::Event::Stopping(grace));
    tracing::info!(grace_secs = grace.as_secs(), "shutting down");
    running.shutdown(grace).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Runs `future` on a multi-threaded runtime; exit 2 when the runtime cannot start.
fn block_on_multi(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    block_on_runtime(tokio::runtime::Builder::new_multi_thread(), future)
}

/// Runs `future` on the runtime `builder` makes; exit 2 when it cannot start.
fn block_on_runtime(
    mut builder: tokio::runtime::Builder,
    future: impl std::future::Future<Output = ExitCode>,
) -> ExitCode {
    match builder.enable_all().build() {
        Ok(r) => r.block_on(future),
        Err(e) => {
            eprintln!("pfgate: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// The admin token: from the file when given, else from `PFGATE_MOCK_ADMIN_TOKEN`, else none.
fn admin_token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
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
fn write_atomically(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-pfgate");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

async fn mock(options: crate::mock::MockOptions, ready_file: Option<PathBuf>) -> ExitCode {
    let stop = StopSignal::install();
    let running = match crate::mock::start(options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pfgate mock: {e}");
            return ExitCode::from(2);
        }
    };
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
            eprintln!("pfgate mock: cannot write {}: {e}", path.display());
            running.shutdown(Duration::from_millis(10)).await;
            return ExitCode::from(2);
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    stop.wait().await;
    tracing::info!("shutting down");
    let grace = running.server_grace();
    running.shutdown(grace).await;
    ExitCode::SUCCESS
}

async fn record(
    options: crate::mock::record::RecordOptions,
    ready_file: Option<PathBuf>,
) -> ExitCode {
    let stop = StopSignal::install();
    let upstream = options.upstream.clone();
    let out = options.out.clone();
    let running = match crate::mock::record::start(options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pfgate record: {e}");
            return ExitCode::from(2);
        }
    };
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
            eprintln!("pfgate record: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    stop.wait().await;
    eprintln!("pfgate record: {} exchanges recorded", running.recorded());
    running.stop();
    ExitCode::SUCCESS
}

/// SIGTERM and Ctrl-C (SIGINT) — on Windows Ctrl-C, Ctrl-Break, the console window closing and
/// the machine shutting down — listened for from creation: made before the listening lines are
/// printed, so a supervisor (or a test) that stops pfgate as soon as it says it listens gets the
/// graceful stop, not the default action of a signal nobody handles yet. (As a Windows service,
/// the SCM's stop arrives through [`crate::service::Lifecycle`] instead.)
pub(crate) struct StopSignal {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    #[cfg(windows)]
    signals: Option<WindowsConsoleSignals>,
}

#[cfg(windows)]
type WindowsConsoleSignals = (
    tokio::signal::windows::CtrlC,
    tokio::signal::windows::CtrlBreak,
    tokio::signal::windows::CtrlClose,
    tokio::signal::windows::CtrlShutdown,
);

impl StopSignal {
    /// Installs the handlers (inside a runtime).
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::terminate())
                .and_then(|t| signal(SignalKind::interrupt()).map(|i| (t, i)))
                .ok();
            Self { signals }
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};
            let signals = match (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_shutdown()) {
                (Ok(c), Ok(b), Ok(close), Ok(shutdown)) => Some((c, b, close, shutdown)),
                _ => None,
            };
            Self { signals }
        }
        #[cfg(not(any(unix, windows)))]
        Self {}
    }

    /// Until one of the signals arrives.
    pub(crate) async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        #[cfg(windows)]
        if let Some((mut c, mut brk, mut close, mut shutdown)) = self.signals {
            tokio::select! {
                _ = c.recv() => {}
                _ = brk.recv() => {}
                _ = close.recv() => {}
                _ = shutdown.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
