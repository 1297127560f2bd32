//! Files pfgate writes that hold what an attacker on the host would like to read: the SQLite
//! database (sealed secrets, but also every user name and phone number, in the clear) with its WAL
//! and shared-memory companions, and the audit trail (who signed in, when, from where). Created
//! owner-only (0600) on Unix whatever the umask; an existing file that group or others can read is
//! kept (an operator may have reasons) but warned about at every start, as the secrets key file is.

use std::path::Path;

/// Creates `path` empty and owner-only if it does not exist yet; an existing file is left as it
/// is. Errors are the caller's to report (opening the file afterwards names the same problem).
pub fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// True when `path` exists and its group or others may read or write it.
#[cfg(unix)]
pub fn exposed(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// Never on Windows: its ACLs are not modes, and the service account's profile is private.
#[cfg(not(unix))]
pub fn exposed(_path: &Path) -> bool {
    false
}

/// Warns (once per call) when `path` is readable by group or others; `what` names the file.
pub fn warn_if_exposed(path: &Path, what: &str) {
    if exposed(path) {
        tracing::warn!(
            path = %path.display(),
            "the {what} is readable by group or others; restrict it to the service user (chmod 600)"
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn creates_owner_only_and_leaves_an_existing_file_alone() {
        let dir = std::env::temp_dir().join(format!("pfgate-at-rest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let new = dir.join("new");
        create_owner_only(&new).unwrap();
        let mode = std::fs::metadata(&new).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!exposed(&new));
        let old = dir.join("old");
        std::fs::write(&old, "kept").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_owner_only(&old).unwrap();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "kept");
        assert!(exposed(&old));
        assert!(!exposed(&dir.join("missing")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
