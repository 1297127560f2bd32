//! Client certificates (mutual TLS) mapped one-to-one to principals, the way IIS's
//! `iisClientCertificateMappingAuthentication` let the AD FS adapter and MS-IT's scripts sign in.
//!
//! rustls verifies the chain against the configured CA certificates during the handshake; this
//! module then maps the verified leaf to a principal by its SHA-256 or SHA-1 thumbprint (what the
//! AD FS adapter's `WebServiceSdkCertificateThumbprint` names), its subject, or the UPN in its
//! subject alternative name. A verified certificate that maps to nobody gives no principal.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One mapping rule: exactly one of the matchers must be set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateMapping {
    /// The principal the certificate signs in as.
    pub principal: String,
    /// SHA-256 thumbprint (hex; colons and spaces ignored).
    pub sha256: Option<String>,
    /// SHA-1 thumbprint, as Windows shows it (hex; colons and spaces ignored).
    pub sha1: Option<String>,
    /// Subject distinguished name as RFC 4514 text (`CN=adfs01.contoso.com, O=Contoso`).
    pub subject: Option<String>,
    /// User principal name in the subject alternative name.
    pub upn: Option<String>,
}

impl CertificateMapping {
    /// Problems for `check-config`.
    pub fn validate(&self) -> Option<String> {
        let set = [&self.sha256, &self.sha1, &self.subject, &self.upn]
            .iter()
            .filter(|m| m.is_some())
            .count();
        (set != 1).then(|| "give exactly one of sha256, sha1, subject, upn".to_string())
    }
}

fn normalise_hex(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// What is known of a verified leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// SHA-256 thumbprint, upper-case hex.
    pub sha256: String,
    /// SHA-1 thumbprint, upper-case hex.
    pub sha1: String,
    /// Subject as RFC 4514 text.
    pub subject: String,
    /// UPNs from the subject alternative name.
    pub upns: Vec<String>,
}

/// Reads the facts the mapping uses from a DER certificate.
pub fn facts(der: &[u8]) -> Option<LeafFacts> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut upns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::OtherName(oid, value) = name {
                if oid.to_id_string() == "1.3.6.1.4.1.311.20.2.3" {
                    if let Some(u) = der_utf8_inside(value) {
                        upns.push(u);
                    }
                }
            }
        }
    }
    let sha1 = {
        use sha1_digest::sha1;
        hex(&sha1(der))
    };
    Some(LeafFacts {
        sha256: hex(&Sha256::digest(der)),
        sha1,
        subject: cert.subject().to_string(),
        upns,
    })
}

/// The UTF8String inside an `[0] EXPLICIT` otherName value (or a bare one).
fn der_utf8_inside(value: &[u8]) -> Option<String> {
    let mut v = value;
    // Skip up to two wrappers ([0] EXPLICIT, then the UTF8String tag 0x0C).
    for _ in 0..2 {
        let (&tag, rest) = v.split_first()?;
        let (len, rest) = der_len(rest)?;
        let body = rest.get(..len)?;
        if tag == 0x0C {
            return String::from_utf8(body.to_vec()).ok();
        }
        v = body;
    }
    None
}

fn der_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = b.split_first()?;
    if first < 0x80 {
        return Some((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 2 || rest.len() < n {
        return None;
    }
    let len = rest[..n]
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
    Some((len, &rest[n..]))
}

mod sha1_digest {
    //! SHA-1 for Windows-style thumbprints only (identification, not security), via aws-lc-rs.
    pub(super) fn sha1(data: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
            .as_ref()
            .to_vec()
    }
}

/// The principal a verified leaf maps to.
pub fn map(mappings: &[CertificateMapping], der: &[u8]) -> Option<String> {
    let f = facts(der)?;
    mappings
        .iter()
        .find(|m| {
            m.sha256
                .as_deref()
                .is_some_and(|t| normalise_hex(t) == f.sha256)
                || m.sha1
                    .as_deref()
                    .is_some_and(|t| normalise_hex(t) == f.sha1)
                || m.subject.as_deref().is_some_and(|s| s.trim() == f.subject)
                || m.upn
                    .as_deref()
                    .is_some_and(|u| f.upns.iter().any(|x| x.eq_ignore_ascii_case(u.trim())))
        })
        .map(|m| m.principal.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_by_thumbprint_and_subject() {
        let cert = rcgen::generate_simple_self_signed(vec!["adfs01.contoso.com".into()]).unwrap();
        let der = cert.cert.der().to_vec();
        let f = facts(&der).unwrap();
        assert_eq!(f.sha256.len(), 64);
        assert_eq!(f.sha1.len(), 40);
        let by = |sha256: Option<String>, sha1: Option<String>, subject: Option<String>| {
            CertificateMapping {
                principal: "CONTOSO\\adfs".into(),
                sha256,
                sha1,
                subject,
                upn: None,
            }
        };
        let colons: String = f
            .sha1
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_lowercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            map(&[by(None, Some(colons), None)], &der).as_deref(),
            Some("CONTOSO\\adfs")
        );
        assert_eq!(
            map(&[by(Some(f.sha256.clone()), None, None)], &der).as_deref(),
            Some("CONTOSO\\adfs")
        );
        assert_eq!(
            map(&[by(None, None, Some(f.subject.clone()))], &der).as_deref(),
            Some("CONTOSO\\adfs")
        );
        assert_eq!(map(&[by(Some("00".repeat(32)), None, None)], &der), None);
        assert!(by(None, None, None).validate().is_some());
    }

    #[test]
    fn reads_upn_from_other_name() {
        // [0] EXPLICIT { UTF8String "svc@contoso.com" }
        let upn = b"svc@contoso.com";
        let mut v = vec![0xA0, (upn.len() + 2) as u8, 0x0C, upn.len() as u8];
        v.extend_from_slice(upn);
        assert_eq!(der_utf8_inside(&v).as_deref(), Some("svc@contoso.com"));
        assert_eq!(der_utf8_inside(&[0xA0, 0x05, 0x0C]), None);
    }
}
