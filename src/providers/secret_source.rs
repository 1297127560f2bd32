//! Reading a provider's (or the database's) secret from where the configuration names it: an
//! environment variable or a file. Secrets are never inline in the configuration and never logged;
//! the bytes live in `Zeroizing` buffers so they are wiped when dropped. Each provider checks the
//! format itself.

use std::path::Path;

use zeroize::Zeroizing;

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
    warn_if_exposed(path, what);
    Ok((bytes, path.display().to_string()))
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the {what} file is readable by group or others; restrict it to the service user (chmod 600)"
            );
        }
    }
}

/// Not checked off Unix. On Windows the equivalent is the file's ACL, and reading a security
/// descriptor takes Win32 calls pfgate (which forbids `unsafe`) would make only through a
/// maintained crate, and there is none for ACLs: docs/deploy.md ("Windows") has the `icacls` step
/// that restricts `C:\ProgramData\pfgate` to SYSTEM, Administrators and the service account.
#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path, _what: &str) {}
