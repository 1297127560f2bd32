//! `pfgate cert dev`: a development CA and a server certificate it signs, written as PEM files.
//!
//! Why a CA and not one self-signed certificate: clients that verify properly (Mono, zeep,
//! PowerShell) are then tested the way production works — trust one root, accept any server it
//! signs — instead of pinning a leaf. The files are for development only: a 30-day server
//! certificate, a 90-day CA, private keys written with owner-only permissions, and `*.pem` is
//! ignored by git (`.gitignore`), so nothing of value lands in the repository.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why the files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    /// A file exists and `--force` was not given.
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// The files written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// CA certificate (give this to clients).
    pub ca_cert: PathBuf,
    /// CA private key.
    pub ca_key: PathBuf,
    /// Server certificate (`server.tls_cert`).
    pub server_cert: PathBuf,
    /// Server private key (`server.tls_key`).
    pub server_key: PathBuf,
}

fn gen(e: rcgen::Error) -> DevCertError {
    DevCertError::Generate(e.to_string())
}

/// Writes `contents` to `path`; keys (`secret`) readable by the owner only.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), DevCertError> {
    let io = |source| DevCertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    // Elsewhere (Windows) a key gets the directory's ACL: docs/deploy.md ("Windows") has the
    // `icacls` step; pfgate does not write ACLs (no maintained crate does it without `unsafe`).
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = options.open(path).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)
}

/// Makes the CA and a server certificate for `hosts` (DNS names or IP addresses; `localhost` and
/// `127.0.0.1` are always included) in `dir`.
pub fn make(dir: &Path, hosts: &[String], force: bool) -> Result<DevCerts, DevCertError> {
    let files = DevCerts {
        ca_cert: dir.join("dev-ca.pem"),
        ca_key: dir.join("dev-ca-key.pem"),
        server_cert: dir.join("dev-server.pem"),
        server_key: dir.join("dev-server-key.pem"),
    };
    for f in [
        &files.ca_cert,
        &files.ca_key,
        &files.server_cert,
        &files.server_key,
    ] {
        if f.exists() && !force {
            return Err(DevCertError::Exists(f.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let now = time::OffsetDateTime::now_utc();

    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pfgate development CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = now + time::Duration::days(90);
    let ca_key = rcgen::KeyPair::generate().map_err(gen)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(gen)?;

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for h in hosts {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.clone());
        }
    }
    let mut server = rcgen::CertificateParams::new(names).map_err(gen)?;
    server.distinguished_name.push(
        rcgen::DnType::CommonName,
        hosts.first().map_or("localhost", String::as_str),
    );
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - time::Duration::minutes(5);
    server.not_after = now + time::Duration::days(30);
    let server_key = rcgen::KeyPair::generate().map_err(gen)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_cert = server.signed_by(&server_key, &issuer).map_err(gen)?;

    write_file(&files.ca_cert, &ca_cert.pem(), false)?;
    write_file(&files.ca_key, &issuer.key().serialize_pem(), true)?;
    write_file(&files.server_cert, &server_cert.pem(), false)?;
    write_file(&files.server_key, &server_key.serialize_pem(), true)?;
    Ok(files)
}
