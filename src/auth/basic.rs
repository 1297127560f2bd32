//! HTTP Basic authentication (RFC 7617), as the AD FS adapter and the User Portal use it with a
//! "PhoneFactor Admins" account. Accepted over TLS only (or from a trusted TLS-terminating proxy),
//! checked against argon2id hashes — the configuration never holds a password.

use base64::Engine as _;
use serde::Deserialize;

/// One Basic account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAccount {
    /// The user name the caller sends (`CONTOSO\adfs-sdk` or a UPN); case-insensitive.
    pub principal: String,
    /// argon2id PHC string (`pfgate hash-password` makes one).
    pub password_hash: String,
}

/// Credentials read from an `Authorization: Basic` header.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// User name.
    pub user: String,
    /// Password (never logged; `Debug` hides it).
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses the value after `Basic `. `None` if it is not base64 of `user:password` in UTF-8.
pub fn parse(token: &str) -> Option<BasicCredentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The account the credentials prove, if any.
///
/// Every call costs exactly one argon2id verification, whether the user exists and whether the
/// password is empty, so response time does not reveal which user names exist (issue #17, item
/// 10: a known user with an empty password was refused in 0.21 ms, an unknown one in 26.9 ms).
/// CPU- and memory-heavy: call it from a password thread ([`crate::gateway::guard`]), which keeps
/// one [`PasswordMemory`] for its whole life.
pub fn verify<'a>(
    accounts: &'a [BasicAccount],
    creds: &BasicCredentials,
    memory: &mut PasswordMemory,
) -> Option<&'a BasicAccount> {
    let account = accounts
        .iter()
        .find(|a| a.principal.eq_ignore_ascii_case(&creds.user));
    let hash: &str = match account {
        Some(a) => &a.password_hash,
        None => decoy(),
    };
    let matches = memory.verify(creds.password.as_bytes(), hash);
    account.filter(|_| matches && !creds.password.is_empty())
}

/// A real argon2id hash (this build's parameters) verified when the user is unknown.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        crate::store::secrets::hash_pin("pfgate-decoy-password").unwrap_or_default()
    })
}

/// The argon2 working memory of one password thread, allocated at its first check and reused for
/// every later one. Why: argon2's own verifier allocates its ~19 MiB afresh for each check, and
/// the allocator keeps such blocks per thread; reused, the memory is one block per password thread,
/// however many checks are made.
#[derive(Default)]
pub struct PasswordMemory {
    blocks: Vec<argon2::Block>,
}

impl std::fmt::Debug for PasswordMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordMemory")
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

/// The most argon2 memory a configured hash may ask for (256 MiB): a PHC string with a larger cost
/// is refused, not computed.
const MAX_BLOCKS: usize = 256 * 1024;

impl PasswordMemory {
    /// True when `password` hashes to the PHC string `phc` (compared in constant time). A PHC
    /// string that does not parse or asks for more than [`MAX_BLOCKS`] never matches.
    pub fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        self.compute(password, phc).unwrap_or(false)
    }

    fn compute(&mut self, password: &[u8], phc: &str) -> Option<bool> {
        use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
        let hash = PasswordHash::new(phc).ok()?;
        let (salt, expected) = (hash.salt.as_ref()?, hash.hash.as_ref()?);
        let params = Params::try_from(&hash).ok()?;
        let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let blocks = params.block_count();
        if blocks > MAX_BLOCKS {
            return None;
        }
        if self.blocks.len() < blocks {
            self.blocks.resize(blocks, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut self.blocks[..blocks])
            .ok()?;
        Some(bool::from(subtle::ConstantTimeEq::ct_eq(
            out.as_slice(),
            expected.as_bytes(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_verifies() {
        let hash = crate::store::secrets::hash_pin("S3cret!pw").unwrap();
        let accounts = vec![BasicAccount {
            principal: "CONTOSO\\adfs".into(),
            password_hash: hash,
        }];
        let token = base64::engine::general_purpose::STANDARD.encode("contoso\\ADFS:S3cret!pw");
        let c = parse(&token).unwrap();
        let mut m = PasswordMemory::default();
        assert!(verify(&accounts, &c, &mut m).is_some());
        let bad = parse(&base64::engine::general_purpose::STANDARD.encode("contoso\\adfs:wrong"))
            .unwrap();
        assert!(verify(&accounts, &bad, &mut m).is_none());
        let unknown =
            parse(&base64::engine::general_purpose::STANDARD.encode("x:S3cret!pw")).unwrap();
        assert!(verify(&accounts, &unknown, &mut m).is_none());
        let empty =
            parse(&base64::engine::general_purpose::STANDARD.encode("contoso\\adfs:")).unwrap();
        assert!(verify(&accounts, &empty, &mut m).is_none());
        assert!(parse("!!!").is_none());
        assert!(parse(&base64::engine::general_purpose::STANDARD.encode("nocolon")).is_none());
        assert!(!format!("{c:?}").contains("S3cret"));
        // The reused memory agrees with argon2's own verifier, for this build's hashes and others.
        for phc in [crate::store::secrets::hash_pin("S3cret!pw").unwrap(), {
            use argon2::PasswordHasher as _;
            let params = argon2::Params::new(4096, 3, 1, None).unwrap();
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"S3cret!pw")
                .unwrap()
                .to_string()
        }] {
            for pw in ["S3cret!pw", "wrong", ""] {
                assert_eq!(
                    m.verify(pw.as_bytes(), &phc),
                    crate::store::secrets::verify_pin(pw, &phc),
                    "{phc} {pw}"
                );
            }
        }
        assert!(!m.verify(b"x", "not a phc string"));
        assert!(!m.verify(b"x", "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$F1QOtVyd+Qp0yB0ZGAhk1NHQ3tYlCo3M0BJ0wGvh4Zw"));
    }
}
