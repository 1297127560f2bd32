//! Reading a provider's (or the database's) secret from where the configuration names it: an
//! environment variable or a file. Secrets are never inline in the configuration and never logged;
//! the bytes live in `Zeroizing` buffers so they are wiped when dropped. Each provider checks the
//! format itself (the `check` given to [`load`]).

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

/// A provider's secret (a key, a token, a shared secret): wiped on drop, never printed — `Debug`
/// shows `Secret(<redacted>)`, so a provider deriving `Debug` cannot leak it into a log.
pub(crate) struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps checked bytes.
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The bytes, to sign or to send; never to log.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The pair of settings keys that name one secret: an environment variable's name or a file.
/// Exactly one may be given; which ones are required is the caller's to say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretKeys<'a> {
    /// The key naming the environment variable (`secret_key_env`).
    pub(crate) env_key: &'static str,
    /// Its value.
    pub(crate) env: Option<&'a str>,
    /// The key naming the file (`secret_key_file`).
    pub(crate) file_key: &'static str,
    /// Its value (already made absolute against the configuration's directory).
    pub(crate) file: Option<&'a Path>,
    /// What the secret is, for the file-permission warning (`Duo secret key`).
    pub(crate) what: &'static str,
}

/// Reads the secret `keys` name and checks it with `check` (given the raw bytes and where they
/// came from). `Ok(None)` when neither key is given — the caller decides whether that is a
/// problem; `Err((key, reason))` names the key at fault (both given: the env key).
pub(crate) fn load<T>(
    keys: SecretKeys<'_>,
    check: impl FnOnce(Zeroizing<Vec<u8>>, &str) -> Result<T, String>,
) -> Result<Option<T>, (&'static str, String)> {
    match (keys.env, keys.file) {
        (Some(_), Some(_)) => Err((
            keys.env_key,
            format!(
                "give either {} or {}, not both",
                keys.env_key, keys.file_key
            ),
        )),
        (None, None) => Ok(None),
        (Some(var), None) => from_env(var)
            .and_then(|(bytes, origin)| check(bytes, &origin))
            .map(Some)
            .map_err(|reason| (keys.env_key, reason)),
        (None, Some(path)) => from_file(path, keys.what)
            .and_then(|(bytes, origin)| check(bytes, &origin))
            .map(Some)
            .map_err(|reason| (keys.file_key, reason)),
    }
}

/// As [`load`], for a secret that must be given: neither key is reported on the env key with
/// `required` as the reason.
pub(crate) fn load_required<T>(
    keys: SecretKeys<'_>,
    required: &str,
    check: impl FnOnce(Zeroizing<Vec<u8>>, &str) -> Result<T, String>,
) -> Result<T, (&'static str, String)> {
    load(keys, check)?.ok_or_else(|| (keys.env_key, required.to_string()))
}

/// Printable ASCII without spaces, surrounding whitespace removed: the form of an API key or
/// token copied from a console. `name` and `hint` make the messages (`the token from … is
/// empty`, `… must be printable ASCII without spaces (hint)`).
pub(crate) fn printable_token(
    bytes: &[u8],
    origin: &str,
    name: &str,
    hint: &str,
) -> Result<Secret, String> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(format!("the {name} from {origin} is empty"));
    }
    if !trimmed.iter().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the {name} from {origin} must be printable ASCII without spaces ({hint})"
        ));
    }
    Ok(Secret(Zeroizing::new(trimmed.to_vec())))
}

/// The raw bytes of an environment variable, and a description of where they came from.
pub(crate) fn from_env(var: &str) -> Result<(Zeroizing<Vec<u8>>, String), String> {
    if var.is_empty() {
        return Err("the variable name is empty".into());
    }
    match std::env::var_os(var) {
        None => Err(format!("the environment variable {var} is not set")),
        Some(v) => Ok((
            Zeroizing::new(v.into_encoded_bytes()),
            format!("environment variable {var}"),
        )),
    }
}

/// The raw bytes of a file, and its path for messages. Warns when the file is readable by group or
/// others (`what` names the secret in that warning).
pub(crate) fn from_file(path: &Path, what: &str) -> Result<(Zeroizing<Vec<u8>>, String), String> {
    let bytes = std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    warn_if_exposed(path, what, "chmod 600");
    Ok((bytes, path.display().to_string()))
}

/// Warns when the file at `path` is readable by group or others: `what` names the secret,
/// `fix` says how to restrict it. Used for every secret file pfgate reads (providers' secrets,
/// the database password, the store's secrets key).
#[cfg(unix)]
pub(crate) fn warn_if_exposed(path: &Path, what: &str, fix: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the {what} file is readable by group or others; restrict it to the service user ({fix})"
            );
        }
    }
}

/// Not checked off Unix. On Windows the equivalent is the file's ACL, and reading a security
/// descriptor takes Win32 calls pfgate (which forbids `unsafe`) would make only through a
/// maintained crate, and there is none for ACLs: docs/deploy.md ("Windows") has the `icacls` step
/// that restricts `C:\ProgramData\pfgate` to SYSTEM, Administrators and the service account.
#[cfg(not(unix))]
pub(crate) fn warn_if_exposed(_path: &Path, _what: &str, _fix: &str) {}
