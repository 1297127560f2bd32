//! `pfgate call`: one operation against any PfWsSdk endpoint, printed decoded; and the connection
//! settings it shares with `pfgate users import --from-sdk`.
//!
//! Exit codes (documented in docs/call.md): 0 the call succeeded (`true`, Error 0); 1 the server
//! answered but reported failure (`false` or a non-zero `Error`/`CallResult` error); 2 usage (unknown
//! operation, bad parameter, unreadable file); 3 no answer (connection, TLS verification, HTTP,
//! timeout); 4 the server refused the credentials or the caller (HTTP 401/403); 5 a SOAP fault.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use zeroize::Zeroizing;

use super::tls::{parse_pin, TlsOptions, Trust};
use super::{request, Answer, ClientError, ClientOptions, HttpAuth, SdkClient, Value};
use crate::pfwssdk::Operation;

/// The environment variable the password is read from unless `--password-env` names another.
pub const DEFAULT_PASSWORD_ENV: &str = "PFGATE_PASSWORD";

/// How to authenticate, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No HTTP authentication.
    None,
    /// Basic.
    Basic,
    /// NTLMv2.
    Ntlm,
    /// A client certificate only (requires `client_cert`).
    Cert,
}

/// Connection settings as given on the command line.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// The `PfWsSdk.asmx` URL.
    pub url: String,
    /// Authentication.
    pub auth: AuthKind,
    /// User for Basic/NTLM.
    pub user: Option<String>,
    /// Variable holding the password.
    pub password_env: String,
    /// File holding the password (`-`: standard input).
    pub password_file: Option<PathBuf>,
    /// CA file instead of the system roots.
    pub ca: Option<PathBuf>,
    /// Pinned SHA-256 fingerprint of the server certificate.
    pub pin_sha256: Option<String>,
    /// Client certificate (PEM).
    pub client_cert: Option<PathBuf>,
    /// Its key (PEM).
    pub client_key: Option<PathBuf>,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Allow Basic over http.
    pub insecure_plain: bool,
}

fn read_password(s: &ConnectSettings) -> Result<Zeroizing<String>, ClientError> {
    let raw = match &s.password_file {
        Some(p) if p.as_os_str() == "-" => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| ClientError::Usage(format!("reading the password from stdin: {e}")))?;
            line
        }
        Some(p) => Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
            ClientError::Usage(format!(
                "cannot read the password file {}: {e}",
                p.display()
            ))
        })?),
        None => match std::env::var(&s.password_env) {
            Ok(v) => Zeroizing::new(v),
            Err(_) => {
                return Err(ClientError::Usage(format!(
                    "no password: set the environment variable {} or give --password-file FILE \
                     (or - for standard input). Passwords are never taken as an argument, where \
                     `ps` and shell history would show them",
                    s.password_env
                )))
            }
        },
    };
    let trimmed = raw.strip_suffix('\n').unwrap_or(&raw);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// Builds a client from command-line settings.
pub fn client(s: &ConnectSettings) -> Result<SdkClient, ClientError> {
    let url = url::Url::parse(&s.url)
        .map_err(|e| ClientError::Usage(format!("'{}' is not a URL: {e}", s.url)))?;
    let trust = match (&s.ca, &s.pin_sha256) {
        (Some(_), Some(_)) => {
            return Err(ClientError::Usage(
                "--ca and --pin-sha256 are alternatives: give one".into(),
            ))
        }
        (Some(ca), None) => Trust::CaFile(ca.clone()),
        (None, Some(pin)) => Trust::Pin(parse_pin(pin)?),
        (None, None) => Trust::System,
    };
    let client_cert = match (&s.client_cert, &s.client_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => {
            return Err(ClientError::Usage(
                "--client-cert and --client-key go together".into(),
            ))
        }
    };
    let user = || {
        s.user
            .clone()
            .ok_or_else(|| ClientError::Usage("--auth basic and --auth ntlm need --user".into()))
    };
    let auth = match s.auth {
        AuthKind::None => HttpAuth::None,
        AuthKind::Cert => {
            if client_cert.is_none() {
                return Err(ClientError::Usage(
                    "--auth cert needs --client-cert and --client-key".into(),
                ));
            }
            HttpAuth::None
        }
        AuthKind::Basic => HttpAuth::Basic {
            user: user()?,
            password: read_password(s)?,
        },
        AuthKind::Ntlm => {
            let u = user()?;
            let pw = read_password(s)?;
            HttpAuth::Ntlm(
                super::ntlm::Credentials::new(&u, &pw)
                    .map_err(|e| ClientError::Usage(e.to_string()))?,
            )
        }
    };
    if matches!(auth, HttpAuth::Ntlm(_)) && url.scheme() == "http" {
        eprintln!(
            "pfgate: warning: NTLM over plain http: the exchange can be captured and the password \
             attacked offline; prefer https"
        );
    }
    SdkClient::new(ClientOptions {
        url,
        auth,
        tls: TlsOptions { trust, client_cert },
        timeout: s.timeout,
        insecure_plain: s.insecure_plain,
    })
}

/// The exit code for a client error.
pub fn exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Usage(_) => 2,
        ClientError::Refused(_) => 4,
        ClientError::Connect { .. }
        | ClientError::Tls { .. }
        | ClientError::Protocol(_)
        | ClientError::Timeout(_) => 3,
    }
}

/// Whether a decoded response reports success: the result is not `false` and no `error` or
/// `callResult`-level `Error` has a non-zero code.
pub fn succeeded(fields: &[(String, Value)]) -> bool {
    let result_false = fields
        .first()
        .is_some_and(|(_, v)| matches!(v, Value::Bool(false)));
    let error_code = fields.iter().any(|(name, v)| {
        name == "error"
            && matches!(v, Value::Object(f) if f.iter().any(|(k, c)| k == "Code" && !matches!(c, Value::Number(n) if n == "0")))
    });
    !result_false && !error_code
}

/// Runs `pfgate call`.
pub async fn run_call(
    settings: ConnectSettings,
    operation: &str,
    params: &[String],
    json: bool,
) -> ExitCode {
    let Some(op) = Operation::from_name(operation) else {
        let near = Operation::similar(operation);
        eprintln!(
            "pfgate call: '{}' is not a PfWsSdk operation (names are case-sensitive){}",
            crate::pfwssdk::wire::clip(operation),
            if near.is_empty() {
                String::new()
            } else {
                format!("; did you mean: {}", near.join(", "))
            }
        );
        return ExitCode::from(2);
    };
    let parsed: Result<Vec<(String, String)>, ClientError> =
        params.iter().map(|p| request::split_param(p)).collect();
    let element = match parsed.and_then(|p| request::operation_element(op, &p)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pfgate call: {e}");
            return ExitCode::from(exit_code(&e));
        }
    };
    let mut client = match client(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pfgate call: {e}");
            return ExitCode::from(exit_code(&e));
        }
    };
    match client.call(op, &element).await {
        Ok(Answer::Response(fields)) => {
            let ok = succeeded(&fields);
            let value = Value::Object(fields);
            if json {
                println!("{}", value.to_json());
            } else {
                let mut out = String::new();
                value.pretty(0, &mut out);
                print!("{out}");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Ok(Answer::Fault(f)) => {
            if json {
                println!(
                    "{}",
                    Value::Object(vec![(
                        "fault".into(),
                        Value::Object(vec![
                            ("code".into(), Value::Text(f.code.clone())),
                            ("message".into(), Value::Text(f.message.clone())),
                        ])
                    )])
                    .to_json()
                );
            } else {
                println!("{f}");
            }
            ExitCode::from(5)
        }
        Err(e) => {
            eprintln!("pfgate call: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
