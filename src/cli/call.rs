//! `pfgate call` (one PfWsSdk operation on any endpoint), and how it and `users import
//! --from-sdk` reach and authenticate to a PfWsSdk server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::CliError;

/// `pfgate call` options.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The PfWsSdk.asmx URL.
    pub url: String,
    /// The wire operation name (case-sensitive: `GetUserSettings_3`).
    pub operation: String,
    /// A parameter NAME=VALUE; complex fields as `addUserSettings.Mode=smsText`, string
    /// arrays by repeating `tagIds=a`, complex array items as `eventParameters[0].Name=x`.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connect: SdkConnectArgs,
}

/// Runs `pfgate call`: the exit code says how the call went (see [`super::Command::Call`]).
pub(super) fn run(args: CallArgs) -> Result<ExitCode, CliError> {
    let CallArgs {
        url,
        operation,
        params,
        json,
        connect,
    } = args;
    super::block_on(async move {
        Ok(
            crate::sdk_client::command::run_call(connect.settings(url), &operation, &params, json)
                .await,
        )
    })
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
