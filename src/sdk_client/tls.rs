//! How the client trusts the server and proves itself: the system trust store, a CA file, or a
//! pinned SHA-256 fingerprint of the server's certificate; optionally a client certificate.
//!
//! There is deliberately no "skip verification" switch. A self-signed test server is trusted by
//! pinning its fingerprint (which `pfgate serve` and `pfgate mock` print at start), which is as
//! convenient and still refuses a different server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::ClientError;

/// Which servers to believe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's trust store (and its revocation checks where it has them).
    System,
    /// Only certificates chaining to the CAs in this PEM file (name checked as usual).
    CaFile(PathBuf),
    /// Only a server whose leaf certificate has this SHA-256 digest (32 bytes). The name and the
    /// chain are not checked: the pin is the identity.
    Pin([u8; 32]),
}

/// TLS options of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Server verification.
    pub trust: Trust,
    /// Client certificate chain and key (PEM), for servers that map certificates to principals.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Parses a fingerprint as `openssl x509 -fingerprint -sha256` or pfgate print it (hex, colons or
/// spaces allowed, any case).
pub fn parse_pin(text: &str) -> Result<[u8; 32], ClientError> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    let bad = || {
        ClientError::Usage(format!(
            "--pin-sha256: expected 64 hexadecimal digits (colons allowed), got {} characters",
            hex.len()
        ))
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ClientError::Usage(format!("{}: not PEM certificates: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ClientError::Usage(format!(
            "{}: holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Builds the rustls client configuration.
pub fn client_config(opts: &TlsOptions) -> Result<rustls::ClientConfig, ClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Usage(format!("TLS configuration: {e}")))?;
    let builder = match &opts.trust {
        Trust::System => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| ClientError::Usage(format!("the system trust store: {e}")))?
        }
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(path)? {
                roots.add(c).map_err(|e| {
                    ClientError::Usage(format!("{}: unusable CA certificate: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::Pin(digest) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { digest: *digest })),
    };
    let mut config = match &opts.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                ClientError::Usage(format!("{}: not a PEM private key: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Usage(format!("client certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts exactly the pinned leaf certificate; signatures are still verified, so the server must
/// hold its key.
#[derive(Debug)]
struct Pinned {
    digest: [u8; 32],
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest as _;
        use subtle::ConstantTimeEq as _;
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if bool::from(got.ct_eq(&self.digest)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 fingerprint {}, not the pinned one",
                crate::net::tls::fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let hex = "AB".repeat(32);
        assert_eq!(parse_pin(&hex).unwrap(), [0xab; 32]);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
        assert!(parse_pin(&"é".repeat(32)).is_err());
    }
}
