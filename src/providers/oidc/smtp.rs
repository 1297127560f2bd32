//! The e-mail channel: a minimal SMTP submission client (RFC 5321 / 6409) that always upgrades
//! with STARTTLS (RFC 3207) before it says anything but `EHLO`, verifies the server's certificate
//! (a CA file, or the system's trust store) and optionally authenticates with `AUTH PLAIN`.
//!
//! Hand-written rather than a mail crate: pfgate sends one short plain-text message per step-up,
//! and a dozen commands over the project's own rustls/aws-lc-rs stack keep OpenSSL and a second TLS
//! stack out of the build. A server that does not offer STARTTLS is refused: the message carries a
//! live step-up link and must never cross the network in clear.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::core::secret;
use crate::providers::common::settings::resolve_paths;

/// `[providers.<name>.email]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// The submission server's host name (checked against its certificate).
    pub host: String,
    /// Port (default 587, submission with STARTTLS).
    pub port: Option<u16>,
    /// The sender address (`From` and `MAIL FROM`).
    pub from: String,
    /// The recipient, from the username: `{user}` (default: UPNs that are mail addresses) or e.g.
    /// `{local}@mail.contoso.com` (`{local}` is the part before `@`).
    pub to_template: Option<String>,
    /// Subject (default "Confirm your sign-in").
    pub subject: Option<String>,
    /// PEM CA certificate(s) trusted for the server; default the system trust store.
    pub ca_file: Option<PathBuf>,
    /// `AUTH PLAIN` user name (optional).
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// A built e-mail channel.
pub(crate) struct Mailer {
    host: String,
    port: u16,
    from: String,
    to_template: String,
    subject: String,
    tls: Arc<rustls::ClientConfig>,
    login: Option<(String, Zeroizing<Vec<u8>>)>,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mailer({}:{})", self.host, self.port)
    }
}

/// An address pfgate will put in a command: no spaces, controls or angle brackets, one `@`.
fn plain_address(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 254
        && a.matches('@').count() == 1
        && !a.starts_with('@')
        && !a.ends_with('@')
        && a.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"<>()[],;:\"\\".contains(c))
}

impl EmailChannel {
    pub(crate) fn resolve_relative_to(&mut self, base: &Path) {
        resolve_paths(base, [&mut self.ca_file, &mut self.password_file]);
    }

    pub(crate) fn build(&self, timeout: Duration) -> Result<Mailer, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        if ServerName::try_from(self.host.clone()).is_err() || self.host.is_empty() {
            problems.push(("host".into(), "a host name or IP address".into()));
        }
        if !plain_address(&self.from) {
            problems.push((
                "from".into(),
                "a plain address such as mfa@contoso.com".into(),
            ));
        }
        let to_template = self.to_template.clone().unwrap_or_else(|| "{user}".into());
        if !to_template.contains("{user}") && !to_template.contains("{local}") {
            problems.push((
                "to_template".into(),
                "must contain {user} or {local}".into(),
            ));
        }
        let subject = self
            .subject
            .clone()
            .unwrap_or_else(|| "Confirm your sign-in".into());
        if subject.chars().any(char::is_control) {
            problems.push(("subject".into(), "one line".into()));
        }
        let password = match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                problems.push((
                    "password_env".into(),
                    "give either password_env or password_file".into(),
                ));
                None
            }
            (Some(v), None) => secret::from_env(v)
                .map_err(|e| problems.push(("password_env".into(), e)))
                .ok()
                .map(|(b, _)| b),
            (None, Some(f)) => secret::from_file(f, "SMTP password")
                .map_err(|e| problems.push(("password_file".into(), e)))
                .ok()
                .map(|(b, _)| Zeroizing::new(b.trim_ascii_end().to_vec())),
            (None, None) => None,
        };
        let login = match (&self.username, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (None, None) => None,
            _ => {
                problems.push((
                    "username".into(),
                    "username and a password go together".into(),
                ));
                None
            }
        };
        let tls = match self.tls_config() {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(("ca_file".into(), e));
                None
            }
        };
        match (tls, problems.is_empty()) {
            (Some(tls), true) => Ok(Mailer {
                host: self.host.clone(),
                port: self.port.unwrap_or(587),
                from: self.from.clone(),
                to_template,
                subject,
                tls,
                login,
                timeout,
            }),
            _ => Err(problems),
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let config = match &self.ca_file {
            Some(path) => {
                use rustls_pki_types::pem::PemObject as _;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no PEM CERTIFICATE found", path.display()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                use rustls_platform_verifier::BuilderVerifierExt;
                builder
                    .with_platform_verifier()
                    .map_err(|e| format!("the system trust store: {e}"))?
                    .with_no_client_auth()
            }
        };
        Ok(Arc::new(config))
    }
}

/// One SMTP reply: its code and the text of its last line.
async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Result<(u16, String), String> {
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        let n = AsyncReadExt::take(&mut *r, 1001)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the reply: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let bytes = line.as_bytes();
        if bytes.len() < 4 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err("not an SMTP reply".into());
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| "not an SMTP reply".to_string())?;
        if bytes[3] != b'-' {
            return Ok((code, line[4..].trim_end().chars().take(120).collect()));
        }
        // A continuation line ("250-…"): the reply goes on.
    }
    Err("an endless SMTP reply".into())
}

/// EHLO; true when the server offers STARTTLS.
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>) -> Result<bool, String> {
    s.get_mut()
        .write_all(b"EHLO pfgate\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut starttls = false;
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        let n = AsyncReadExt::take(&mut *s, 1001)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("reading the EHLO reply: {e}"))?;
        if n == 0 || line.len() < 4 || !line.starts_with("250") {
            return Err(format!(
                "EHLO refused: {}",
                line.trim_end().chars().take(120).collect::<String>()
            ));
        }
        if line[4..].trim_end().eq_ignore_ascii_case("STARTTLS") {
            starttls = true;
        }
        if line.as_bytes()[3] != b'-' {
            return Ok(starttls);
        }
    }
    Err("an endless EHLO reply".into())
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
    want: &[u16],
    what: &str,
) -> Result<(), String> {
    s.get_mut()
        .write_all(line.as_bytes())
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let (code, text) = reply(s).await.map_err(|e| format!("{what}: {e}"))?;
    if want.contains(&code) {
        Ok(())
    } else {
        Err(format!("{what}: the server answered {code} {text}"))
    }
}

impl Mailer {
    /// The recipient for `username`, or why there is none.
    fn recipient(&self, username: &str) -> Result<String, String> {
        let local = username.split('@').next().unwrap_or("");
        let to = self
            .to_template
            .replace("{user}", username)
            .replace("{local}", local);
        if plain_address(&to) {
            Ok(to)
        } else {
            Err("the user has no usable e-mail address (to_template)".into())
        }
    }

    /// Sends `text` to the user's address.
    pub(crate) async fn send(&self, username: &str, text: &str) -> Result<(), String> {
        let to = self.recipient(username)?;
        tokio::time::timeout(self.timeout * 3, self.session(&to, text))
            .await
            .map_err(|_| "the SMTP session timed out".to_string())?
    }

    async fn session(&self, to: &str, text: &str) -> Result<(), String> {
        let tcp = tokio::time::timeout(
            self.timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| format!("cannot connect: {e}"))?;
        let mut plain = BufReader::new(tcp);
        let (code, text0) = reply(&mut plain).await?;
        if code != 220 {
            return Err(format!("greeting {code} {text0}"));
        }
        if !ehlo(&mut plain).await? {
            return Err(
                "the server does not offer STARTTLS; the link is never sent in clear".into(),
            );
        }
        command(&mut plain, "STARTTLS\r\n", &[220], "STARTTLS").await?;
        let name = ServerName::try_from(self.host.clone()).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = connector
            .connect(name, plain.into_inner())
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let mut s = BufReader::new(tls);
        ehlo(&mut s).await?;
        if let Some((user, password)) = &self.login {
            let mut cred = Zeroizing::new(Vec::with_capacity(user.len() * 2 + password.len() + 2));
            cred.push(0);
            cred.extend_from_slice(user.as_bytes());
            cred.push(0);
            cred.extend_from_slice(password);
            let line = Zeroizing::new(format!(
                "AUTH PLAIN {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(&cred[..])
            ));
            command(&mut s, &line, &[235], "AUTH").await?;
        }
        command(
            &mut s,
            &format!("MAIL FROM:<{}>\r\n", self.from),
            &[250],
            "MAIL FROM",
        )
        .await?;
        command(
            &mut s,
            &format!("RCPT TO:<{to}>\r\n"),
            &[250, 251],
            "RCPT TO",
        )
        .await?;
        command(&mut s, "DATA\r\n", &[354], "DATA").await?;
        let message = Zeroizing::new(self.message(to, text));
        command(&mut s, &message, &[250], "the message").await?;
        let _ = s.get_mut().write_all(b"QUIT\r\n").await;
        let _ = s.get_mut().shutdown().await;
        Ok(())
    }

    /// The message in DATA form: headers, CRLF lines, dot-stuffed, ending with `.`.
    fn message(&self, to: &str, text: &str) -> String {
        let date = httpdate(std::time::SystemTime::now());
        let mut m = format!(
            "From: <{}>\r\nTo: <{to}>\r\nSubject: {}\r\nDate: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
            self.from,
            encode_subject(&self.subject)
        );
        for line in text.lines() {
            if line.starts_with('.') {
                m.push('.');
            }
            m.push_str(line);
            m.push_str("\r\n");
        }
        m.push_str(".\r\n");
        m
    }
}

/// RFC 2047 for a non-ASCII subject.
fn encode_subject(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        )
    }
}

/// An RFC 5322 date in UTC (`Wed, 25 Nov 2026 20:00:00 +0000`).
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        MONTHS[(dt.month() as usize).saturating_sub(1)],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_inject_commands_are_refused() {
        assert!(plain_address("alice@contoso.com"));
        for bad in [
            "alice@contoso.com>\r\nRCPT TO:<x@y",
            "a b@c",
            "<a@b>",
            "ab",
            "a@b@c",
            "",
        ] {
            assert!(!plain_address(bad), "{bad:?}");
        }
    }
}
