//! `pfgate init DIR --provider KIND`: a complete, secure starting site, and the placeholder check
//! that keeps it from serving before it is filled in.
//!
//! Why: the road from the demo to a real site had traps (a partial example file, a world-readable
//! key, settings spread over several documents). `init` writes every section for one provider,
//! with a development certificate, a secrets key and every secret file owner-only, and marks each
//! value only the administrator knows with a placeholder `<FILL: what>`. [`placeholders`] finds
//! them (in the configuration and in the files it names), so `check-config` lists exactly what is
//! left and `serve` refuses to start until nothing is.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::placeholders::placeholders;

/// The providers `init` can set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitProvider {
    /// Your own HTTPS service (docs/webhook.md).
    Webhook,
    /// Duo Auth API v2.
    Duo,
    /// Twilio Verify v2.
    TwilioVerify,
    /// OpenID Connect step-up (Entra ID or any OIDC IdP).
    Oidc,
}

/// Why `init` stopped: before writing anything (an existing site), or part-way (the file that
/// could not be written is named; the directory is then not empty, so a second `init` refuses it
/// rather than mixing two sites).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The directory exists and is not empty.
    #[error("{0} exists and is not empty; init never overwrites (choose a new directory)")]
    NotEmpty(PathBuf),
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The development certificate could not be made.
    #[error(transparent)]
    Cert(#[from] crate::net::devcert::DevCertError),
    /// No random bytes for the secrets key.
    #[error("cannot generate the secrets key: {0}")]
    Key(String),
}

/// One file of the site: path relative to the site, contents, owner-only or not.
struct SiteFile {
    name: &'static str,
    contents: String,
    secret: bool,
}

/// Writes the site into `dir` (created; must not exist or be empty). Returns the files written,
/// relative to `dir`.
pub fn init(
    dir: &Path,
    provider: InitProvider,
    hosts: &[String],
    state_dir: Option<&Path>,
) -> Result<Vec<String>, InitError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(InitError::NotEmpty(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for f in site_files(provider, state_dir) {
        write_new(&dir.join(f.name), f.contents.as_bytes(), f.secret)
            .map_err(io(&dir.join(f.name)))?;
        written.push(f.name.to_string());
    }
    let key = secrets_key()?;
    write_new(&dir.join("secrets.key"), &key, true).map_err(io(&dir.join("secrets.key")))?;
    written.push("secrets.key".into());
    crate::net::devcert::make(&dir.join("certs"), hosts, false)?;
    written.push("certs/ (dev-ca.pem, dev-server.pem and their keys)".into());
    Ok(written)
}

/// 32 random bytes.
fn secrets_key() -> Result<Vec<u8>, InitError> {
    use rand::TryRngCore as _;
    let mut key = vec![0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| InitError::Key(e.to_string()))?;
    Ok(key)
}

/// Creates `path` (never replacing a file), owner-readable only when `secret`.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    options.open(path)?.write_all(contents)
}

/// The configuration, users file and secret files for `provider`; the store and the audit trail
/// in `state_dir` (else next to the configuration).
fn site_files(provider: InitProvider, state_dir: Option<&Path>) -> Vec<SiteFile> {
    let (section, secret_name, secret_what) = provider_section(provider);
    let mut files = vec![
        SiteFile {
            name: "pfgate.toml",
            contents: format!(
                "{}{section}{}",
                common_config(provider, state_dir),
                ROUTES.replace("PROVIDER", provider_name(provider))
            ),
            secret: false,
        },
        SiteFile {
            name: "users.toml",
            contents: USERS.to_string(),
            secret: false,
        },
        SiteFile {
            name: "mimservice.password",
            contents: "<FILL: the MIM Service account's password (this file only; one line)>\n"
                .into(),
            secret: true,
        },
    ];
    files.push(SiteFile {
        name: secret_name,
        contents: format!("<FILL: {secret_what} (this file only; one line)>\n"),
        secret: true,
    });
    files
}

/// The name `init` gives the provider in `[providers.NAME]`.
fn provider_name(provider: InitProvider) -> &'static str {
    match provider {
        InitProvider::Webhook => "hook",
        InitProvider::Duo => "duo",
        InitProvider::TwilioVerify => "twilio",
        InitProvider::Oidc => "entra",
    }
}

/// Every section but the provider's and the routes.
fn common_config(provider: InitProvider, state_dir: Option<&Path>) -> String {
    // Debug formatting quotes and escapes as a TOML basic string does.
    let state = |name: &str| match state_dir {
        // Absolute: relative paths in the file are read relative to the file, not to where
        // `init` ran.
        Some(d) => format!(
            "{:?}",
            std::path::absolute(d.join(name))
                .unwrap_or_else(|_| d.join(name))
                .display()
                .to_string()
        ),
        None => format!("{name:?}"),
    };
    format!(
        r#"# pfgate configuration written by `pfgate init --provider {kind}`.
# Every <FILL: ...> is a value only you know: `pfgate check-config pfgate.toml` lists those left
# (here and in the files named below), and `pfgate serve` refuses to start until none is.
# Every key is explained in pfgate.example.toml. Relative paths are relative to this file.

[server]
listen = "0.0.0.0:443"
# The development certificate `init` made (30 days; names: localhost, 127.0.0.1 and --host).
# For production use a certificate for the host in MIM's URL from a CA the MIM server trusts.
tls_cert = "certs/dev-server.pem"
tls_key = "certs/dev-server-key.pem"
plain_allow_non_loopback = false
trusted_proxies = []

[limits]
max_body_bytes = 1048576
max_xml_depth = 64
max_xml_elements = 20000
header_timeout_secs = 10
body_timeout_secs = 30
tls_handshake_timeout_secs = 10
max_connections = 10000
shutdown_grace_secs = 30

[engine]
auth_timeout_secs = 60
default_country_code = "1"

[directory]
# The users: MIM's service account (MIM calls PfAuthUser_5 as it, with the end user's number).
users_file = "users.toml"

[auth]
allow_anonymous = false

# Windows authentication (NTLM), as MIM's service account calls the SDK.
[auth.ntlm]
netbios_domain = "<FILL: your NetBIOS domain name, e.g. CONTOSO>"

[[auth.ntlm.accounts]]
principal = "<FILL: MIM's service account as DOMAIN\\user, e.g. CONTOSO\\mimservice>"
password_file = "mimservice.password"

# The allow-list: MIM's service account may authenticate users, nothing else.
[[auth.principals]]
name = "<FILL: the same DOMAIN\\user as auth.ntlm.accounts principal>"
allow = ["authentication"]

[admin]
# /healthz, /readyz, /metrics on 127.0.0.1:9473 (loopback; a token_file is needed off it).
enabled = true

[store]
path = {store}
secrets_key_file = "secrets.key"

[audit]
file = {audit}
max_bytes = 67108864

"#,
        kind = provider_kind(provider),
        store = state("pfgate.db"),
        audit = state("audit.jsonl"),
    )
}

/// The `kind` value.
fn provider_kind(provider: InitProvider) -> &'static str {
    match provider {
        InitProvider::Webhook => "webhook",
        InitProvider::Duo => "duo",
        InitProvider::TwilioVerify => "twilio-verify",
        InitProvider::Oidc => "oidc",
    }
}

/// The `[providers.NAME]` section, and the secret file it reads (name, what goes in it).
fn provider_section(provider: InitProvider) -> (String, &'static str, &'static str) {
    let name = provider_name(provider);
    let kind = provider_kind(provider);
    let (body, file, what) = match provider {
        InitProvider::Webhook => (
            r#"base_url = "<FILL: your webhook service's base URL, https://...>"
secret_file = "webhook.secret"
request_timeout_secs = 10
poll_interval_ms = 1000
signature_window_secs = 300
"#,
            "webhook.secret",
            "the shared secret your webhook service signs with",
        ),
        InitProvider::Duo => (
            r#"api_host = "<FILL: the Auth API hostname, api-XXXXXXXX.duosecurity.com>"
integration_key = "<FILL: the integration key, DI...>"
secret_key_file = "duo.skey"
username_template = "{username}"
factor = "auto"
request_timeout_secs = 10
poll_interval_ms = 1000
"#,
            "duo.skey",
            "the Duo application's secret key",
        ),
        InitProvider::TwilioVerify => (
            r#"service_sid = "<FILL: the Verify Service SID, VA...>"
account_sid = "<FILL: an API key SID (SK...) or the Account SID (AC...)>"
auth_token_file = "twilio.token"
request_timeout_secs = 10
"#,
            "twilio.token",
            "the API key secret or Auth Token",
        ),
        InitProvider::Oidc => (
            r#"issuer = "<FILL: the IdP's issuer, e.g. https://login.microsoftonline.com/TENANT-ID/v2.0>"
client_id = "<FILL: the application (client) id registered at the IdP>"
client_secret_file = "oidc-client.secret"
public_url = "<FILL: where people reach the step-up pages, https://...>"
listen = "0.0.0.0:8444"
tls_cert = "certs/dev-server.pem"
tls_key = "certs/dev-server-key.pem"
username_claim = "preferred_username"
max_age_zero = true
clock_skew_secs = 60
request_timeout_secs = 10

# How the link reaches the user: a webhook (Teams/Slack-style or a relay of your own).
[providers.entra.webhook]
url = "<FILL: the delivery webhook's URL, https://...>"
"#,
            "oidc-client.secret",
            "the client secret registered at the IdP",
        ),
    };
    (
        format!("[providers.{name}]\nkind = \"{kind}\"\n{body}"),
        file,
        what,
    )
}

/// Routes and breaker: every authentication to the one provider, failing secure.
const ROUTES: &str = r#"
[[routes]]
providers = ["PROVIDER"]
fail_mode = "secure"

[breaker]
failure_threshold = 5
cooldown_secs = 30
"#;

/// The users file: MIM's service account.
const USERS: &str = r#"# pfgate's users (the format of fixtures/demo.toml). MIM calls PfAuthUser_5 as its service
# account with the end user's number: that account must be here, enabled.
[[users]]
username = "<FILL: MIM's service account UPN, as in MfaSettings.xml <Username>, e.g. mimservice@contoso.com>"
first_name = "MIM"
last_name = "Service"
mode = "voiceCall"
"#;

/// What `init` prints after writing: the files, the placeholders, and the steps left.
pub fn next_steps(dir: &Path, provider: InitProvider, written: &[String]) -> String {
    use std::fmt::Write as _;
    let config = dir.join("pfgate.toml");
    let mut out = format!(
        "pfgate init: a starting site for the {} provider in {}:\n",
        provider_kind(provider),
        dir.display()
    );
    for f in written {
        let _ = writeln!(out, "  {f}");
    }
    let _ = writeln!(
        out,
        "Secret files (secrets.key, *.password, *.secret, *.skey, *.token, certificate keys) are \
         readable by their owner only.\n\nSteps left:\n1. Fill each placeholder:"
    );
    for p in placeholders(&config) {
        let _ = writeln!(out, "   {}: {}", p.key, p.reason);
    }
    let (c, d) = (config.display(), dir.display());
    let _ = writeln!(
        out,
        "2. pfgate check-config {c}            (lists what is left; exit 0 when complete)\n\
         3. pfgate serve --config {c}\n\
         4. Verify as MIM will call (the number is a test phone):\n   \
            PFGATE_PASSWORD=... pfgate call https://localhost/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx \
         PfAuthUser_5 --ca {d}/certs/dev-ca.pem --auth ntlm --user 'CONTOSO\\mimservice' \
         --param username=mimservice@contoso.com --param countryCode=1 --param phoneNumber=4255550100 \
         --param mode=voiceCall --param requireUserMatch=true\n\
         5. Point MIM at pfgate (on a copy of MIM's MfaSettings.xml; a backup is kept):\n   \
            pfgate mim check MfaSettings.xml --url https://<this host>/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx \
         --username mimservice@contoso.com --write\n\
         docs/deploy.md walks through each step."
    );
    out
}
