//! TLS: the certificate from PEM files, or a self-signed one generated in memory for demo mode.
//!
//! rustls speaks TLS 1.2 and 1.3 only. .NET Framework callers must have TLS 1.2 enabled
//! (`SchUseStrongCrypto`), as Microsoft has required for MFA Server itself since 2018.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("TLS certificate {path}: {reason}")]
    Certificate {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
    /// The key file could not be read or holds no key.
    #[error("TLS private key {path}: {reason}")]
    Key {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the pair (e.g. key does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A ready server configuration with the leaf certificate it presents.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    /// rustls configuration.
    pub config: Arc<ServerConfig>,
    /// The leaf certificate (DER).
    pub leaf: CertificateDer<'static>,
}

impl TlsIdentity {
    /// SHA-256 fingerprint of the leaf, upper-case hex with colons (as browsers and `openssl` show it).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.leaf)
    }

    /// The leaf as PEM, so a client can trust exactly this certificate.
    pub fn leaf_pem(&self) -> String {
        use base64_pem::encode;
        encode(&self.leaf)
    }
}

/// SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

mod base64_pem {
    //! PEM armour for one certificate (RFC 7468), without another dependency.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(der: &[u8]) -> String {
        let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
        for chunk in der.chunks(3) {
            let n = chunk.len();
            let v = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= n {
                    b64.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

/// Mutual TLS: the CA client certificates must chain to, and whether one is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file with the CA certificates.
    pub ca_file: std::path::PathBuf,
    /// Refuse the handshake without a client certificate.
    pub required: bool,
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client: Option<&ClientAuth>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let bad = |reason: String| TlsError::Certificate {
                path: c.ca_file.display().to_string(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&c.ca_file).map_err(|e| bad(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| bad(e.to_string()))?)
                    .map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no CA certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if c.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            }
            .build()
            .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // .NET Framework clients speak HTTP/1.1 only; advertising exactly that keeps ALPN honest.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads a certificate chain and key from PEM files.
pub fn from_files(
    cert: &Path,
    key: &Path,
    client: Option<&ClientAuth>,
) -> Result<TlsIdentity, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    let leaf = chain
        .first()
        .cloned()
        .ok_or_else(|| TlsError::Certificate {
            path: cert.display().to_string(),
            reason: "no CERTIFICATE block found".into(),
        })?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(TlsIdentity {
        config: server_config(chain, key_der, client)?,
        leaf,
    })
}

/// A fresh self-signed certificate for `localhost`, `127.0.0.1` and `::1`, valid from now on. The
/// key lives only in memory and dies with the process.
pub fn self_signed(client: Option<&ClientAuth>) -> Result<TlsIdentity, TlsError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let leaf = certified.cert.der().clone();
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(TlsIdentity {
        config: server_config(vec![leaf.clone()], key, client)?,
        leaf,
    })
}
