//! Secrets at rest: the store's encryption key, sealing of OATH secrets and static tokens, PIN and
//! one-time-code hashing.
//!
//! This module owns every cryptographic decision of the store so the backends only move opaque text:
//!
//! - [`SecretKey`]: the 32-byte AES-256 key from a file or an environment variable (or random, for
//!   in-memory demo stores). It is never printed and is wiped from memory on drop.
//! - [`seal`] / [`open`]: AES-256-GCM with a fresh random 96-bit nonce per value, written as
//!   `v1:<base64(nonce || ciphertext || tag)>`. The associated data ([`aad`]) names the field and the
//!   user, so a sealed value copied into another user's row (or another column) fails to open.
//! - [`hash_pin`] / [`verify_pin`]: argon2id PHC strings (OWASP parameters), for PINs and for the
//!   SMS one-time codes a transaction waits for.
//! - [`code_digest`]: a keyed digest of an accepted one-time code, so replay protection never stores
//!   the code itself.
//!
//! Errors never carry key material, plaintexts, PINs or codes.

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::TryRngCore as _;
use zeroize::{Zeroize, Zeroizing};

/// Length of a [`SecretKey`] in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Prefix of the current sealed format.
const SEALED_V1: &str = "v1:";

/// Length of the GCM authentication tag.
const TAG_LEN: usize = 16;

/// argon2id memory cost in KiB (OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1).
const ARGON2_M_COST_KIB: u32 = 19 * 1024;
/// argon2id iterations.
const ARGON2_T_COST: u32 = 2;
/// argon2id parallelism.
const ARGON2_P_COST: u32 = 1;

/// Label of the HMAC subkey that [`code_digest`] uses (distinct from the AES use of the key).
const CODE_DIGEST_LABEL: &[u8] = b"pfgate/store/used-code-digest/v1";

/// Label whose HMAC under the key is the key check value ([`key_check`]); distinct from
/// [`CODE_DIGEST_LABEL`], so the stored check value is no subkey of anything.
const KEY_CHECK_LABEL: &[u8] = b"pfgate/store/key-check/v1";

/// Why a secrets operation failed. Messages never contain key material, plaintexts, PINs or codes.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file could not be read.
    #[error("cannot read the secrets key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key environment variable is unset or not Unicode.
    #[error("the secrets key environment variable {var} is {problem}")]
    KeyEnv {
        /// The variable name.
        var: String,
        /// `unset`, `not valid Unicode`.
        problem: &'static str,
    },
    /// The key material has none of the accepted formats.
    #[error(
        "the secrets key from {origin} is not {expected} (generate one with `openssl rand -hex 32`)"
    )]
    KeyFormat {
        /// Where the key came from (a file path or an environment variable name).
        origin: String,
        /// The accepted formats for that origin.
        expected: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the random number generator failed")]
    Rng,
    /// Encryption failed (it cannot, short of a broken crypto library).
    #[error("sealing a secret failed")]
    Seal,
    /// A sealed value could not be opened.
    #[error("cannot open a sealed secret: {0}")]
    Open(&'static str),
    /// PIN hashing failed.
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// The 32-byte key that seals secrets at rest.
///
/// Loaded from a file ([`SecretKey::from_file`]: 32 raw bytes, 64 hex characters or base64 of 32
/// bytes, trailing newline allowed) or an environment variable ([`SecretKey::from_env`]: hex or
/// base64), or random ([`SecretKey::generate`]) for stores that do not outlive the process. The
/// bytes are wiped on drop and never printed.
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
}

impl SecretKey {
    /// A key from its raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self { bytes }
    }

    /// A fresh random key from the operating system's RNG (for in-memory and demo stores: whatever
    /// it seals is unreadable once the key is gone).
    ///
    /// # Panics
    ///
    /// If the operating system's RNG fails (as `rand::rng()` does): no key can be made safely then.
    /// [`SecretKey::try_generate`] reports the failure instead.
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(key) => key,
            Err(e) => panic!("cannot generate a secrets key: {e}"),
        }
    }

    /// A fresh random key from the operating system's RNG, or [`SecretsError::Rng`].
    pub fn try_generate() -> Result<Self, SecretsError> {
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| SecretsError::Rng)?;
        Ok(Self { bytes })
    }

    /// Reads the key from a file: exactly 32 raw bytes, or 64 hex characters, or base64 of 32
    /// bytes (the text forms may be surrounded by whitespace, e.g. a trailing newline).
    ///
    /// On Unix, a key file readable by group or others is accepted but logged as a warning.
    pub fn from_file(path: &Path) -> Result<Self, SecretsError> {
        let key = Self::from_file_quiet(path)?;
        warn_if_exposed(path);
        Ok(key)
    }

    /// As [`SecretKey::from_file`] without the permissions warning: configuration validation
    /// reads the key only to check it, and the store that opens it warns (once per start).
    pub fn from_file_quiet(path: &Path) -> Result<Self, SecretsError> {
        let content =
            Zeroizing::new(std::fs::read(path).map_err(|source| SecretsError::KeyFile {
                path: path.to_path_buf(),
                source,
            })?);
        let key = if content.len() == KEY_LEN {
            let mut bytes = [0u8; KEY_LEN];
            bytes.copy_from_slice(&content);
            Some(Self { bytes })
        } else {
            std::str::from_utf8(&content).ok().and_then(parse_text)
        };
        key.ok_or_else(|| SecretsError::KeyFormat {
            origin: format!("file {}", path.display()),
            expected: "32 raw bytes, 64 hex characters or base64 of 32 bytes",
        })
    }

    /// Reads the key from an environment variable holding 64 hex characters or base64 of 32 bytes.
    pub fn from_env(var: &str) -> Result<Self, SecretsError> {
        let value = match std::env::var(var) {
            Ok(v) => Zeroizing::new(v),
            Err(std::env::VarError::NotPresent) => {
                return Err(SecretsError::KeyEnv {
                    var: var.to_owned(),
                    problem: "unset",
                })
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(SecretsError::KeyEnv {
                    var: var.to_owned(),
                    problem: "not valid Unicode",
                })
            }
        };
        parse_text(&value).ok_or_else(|| SecretsError::KeyFormat {
            origin: format!("environment variable {var}"),
            expected: "64 hex characters or base64 of 32 bytes",
        })
    }

    /// Parses the text form of a key: 64 hex characters or base64 of 32 bytes, surrounding
    /// whitespace ignored.
    pub fn from_text(text: &str) -> Option<Self> {
        parse_text(text)
    }

    fn aead(&self) -> Result<RandomizedNonceKey, SecretsError> {
        RandomizedNonceKey::new(&AES_256_GCM, &self.bytes).map_err(|_| SecretsError::Seal)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// Hex (64 characters) or base64 (standard alphabet, padded or not) of 32 bytes.
fn parse_text(text: &str) -> Option<SecretKey> {
    let text = text.trim();
    let mut bytes = [0u8; KEY_LEN];
    if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            bytes[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        return Some(SecretKey { bytes });
    }
    let decoded = Zeroizing::new(
        BASE64
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .ok()?,
    );
    if decoded.len() != KEY_LEN {
        return None;
    }
    bytes.copy_from_slice(&decoded);
    Some(SecretKey { bytes })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Warns when the key file is readable by group or others (as for every secret file).
fn warn_if_exposed(path: &Path) {
    crate::core::secret::warn_if_exposed(
        path,
        "secrets key",
        "chmod 600 FILE; create keys with `(umask 077; head -c 32 /dev/urandom > FILE)`",
    );
}

/// The associated data that binds a sealed value to its field and user: `"<field>:<lowercase
/// username>"`. The same user under any letter case gives the same AAD.
pub fn aad(field: &str, username: &str) -> String {
    format!("{field}:{}", username.to_lowercase())
}

/// Encrypts `plaintext` with AES-256-GCM under `key` and a fresh random nonce, bound to `aad`
/// (see [`aad`]); returns `v1:<base64(nonce || ciphertext || tag)>`.
pub fn seal(key: &SecretKey, plaintext: &str, aad: &str) -> Result<String, SecretsError> {
    let aead = key.aead()?;
    let mut in_out = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    in_out.extend_from_slice(plaintext.as_bytes());
    let nonce = aead
        .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut *in_out)
        .map_err(|_| SecretsError::Seal)?;
    let mut blob = Vec::with_capacity(NONCE_LEN + in_out.len());
    blob.extend_from_slice(nonce.as_ref());
    blob.extend_from_slice(&in_out);
    Ok(format!("{SEALED_V1}{}", BASE64.encode(&blob)))
}

/// Decrypts a value written by [`seal`]; fails when the text is malformed or was sealed under
/// another key or another `aad`, or was altered.
pub fn open(key: &SecretKey, sealed: &str, aad: &str) -> Result<String, SecretsError> {
    let body = sealed
        .strip_prefix(SEALED_V1)
        .ok_or(SecretsError::Open("unknown format version"))?;
    let mut blob = Zeroizing::new(
        BASE64
            .decode(body)
            .map_err(|_| SecretsError::Open("malformed encoding"))?,
    );
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(SecretsError::Open("too short"));
    }
    let nonce = Nonce::try_assume_unique_for_key(&blob[..NONCE_LEN])
        .map_err(|_| SecretsError::Open("malformed nonce"))?;
    let aead = key.aead()?;
    let plaintext = aead
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut blob[NONCE_LEN..])
        .map_err(|_| {
            SecretsError::Open("authentication failed (wrong key, wrong user or field, or altered)")
        })?;
    let text = std::str::from_utf8(plaintext)
        .map_err(|_| SecretsError::Open("plaintext is not UTF-8"))?
        .to_owned();
    Ok(text)
}

fn argon2id() -> Result<Argon2<'static>, SecretsError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| SecretsError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) of a PIN or one-time code, with a
/// random salt. CPU- and memory-heavy by design: call it from blocking context.
pub fn hash_pin(pin: &str) -> Result<String, SecretsError> {
    let hash = argon2id()?
        .hash_password(pin.as_bytes())
        .map_err(|e| SecretsError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// True when `pin` matches the PHC string `phc` (written by [`hash_pin`]; the parameters are read
/// from the string). A malformed `phc` never matches. The comparison is constant-time.
pub fn verify_pin(pin: &str, phc: &str) -> bool {
    // Verification uses the algorithm and parameters recorded in `phc`, not those of the instance.
    Argon2::default()
        .verify_password(pin.as_bytes(), phc)
        .is_ok()
}

/// A keyed digest (HMAC-SHA-256, hex) of an accepted one-time code, for replay protection without
/// storing the code. Keyed rather than a bare hash because a 6-digit code's plain hash is reversed
/// by trying all million codes; independent of the username so it survives a rename (the stores
/// scope it by user).
pub fn code_digest(key: &SecretKey, code: &str) -> String {
    let master = hmac::Key::new(hmac::HMAC_SHA256, &key.bytes);
    let subkey = Zeroizing::new(hmac::sign(&master, CODE_DIGEST_LABEL).as_ref().to_vec());
    let digest = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &subkey), code.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The key check value of `key` (HMAC-SHA-256 of a fixed label, hex), which a database keeps to
/// tell at start whether an instance has the key its secrets were sealed with. It identifies the
/// key without revealing it: recovering the key from it is as hard as breaking HMAC-SHA-256.
pub fn key_check(key: &SecretKey) -> String {
    let master = hmac::Key::new(hmac::HMAC_SHA256, &key.bytes);
    let check = hmac::sign(&master, KEY_CHECK_LABEL);
    check.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; KEY_LEN])
    }

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "pfgate-secrets-{}-{}-{name}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ))
    }

    #[test]
    fn seal_open_round_trip() {
        let k = key(7);
        let a = aad("oath_secret", "Alice@Contoso.com");
        let sealed = seal(&k, "JBSWY3DPEHPK3PXP", &a).unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(open(&k, &sealed, &a).unwrap(), "JBSWY3DPEHPK3PXP");
        // The AAD is case-insensitive in the username.
        assert_eq!(
            open(&k, &sealed, &aad("oath_secret", "alice@contoso.com")).unwrap(),
            "JBSWY3DPEHPK3PXP"
        );
        // Fresh nonce every time.
        assert_ne!(seal(&k, "JBSWY3DPEHPK3PXP", &a).unwrap(), sealed);
        // Empty plaintext works too.
        let empty = seal(&k, "", &a).unwrap();
        assert_eq!(open(&k, &empty, &a).unwrap(), "");
    }

    #[test]
    fn wrong_key_fails() {
        let a = aad("static_token", "bob");
        let sealed = seal(&key(1), "123456", &a).unwrap();
        let err = open(&key(2), &sealed, &a).unwrap_err();
        assert!(matches!(err, SecretsError::Open(_)));
        assert!(!err.to_string().contains("123456"));
    }

    #[test]
    fn wrong_aad_fails() {
        let k = key(3);
        let sealed = seal(&k, "secret", &aad("oath_secret", "alice")).unwrap();
        assert!(open(&k, &sealed, &aad("oath_secret", "mallory")).is_err());
        assert!(open(&k, &sealed, &aad("static_token", "alice")).is_err());
    }

    #[test]
    fn tampered_text_fails() {
        let k = key(4);
        let a = aad("oath_secret", "alice");
        let sealed = seal(&k, "secret value", &a).unwrap();
        let mut blob = BASE64.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, blob.len() - 1] {
            blob[i] ^= 1;
            let tampered = format!("v1:{}", BASE64.encode(&blob));
            assert!(
                open(&k, &tampered, &a).is_err(),
                "flipped byte {i} accepted"
            );
            blob[i] ^= 1;
        }
        assert!(open(&k, &format!("v2:{}", &sealed[3..]), &a).is_err());
        assert!(open(&k, "v1:!!!", &a).is_err());
        assert!(open(&k, "v1:AAAA", &a).is_err());
        assert!(open(&k, "", &a).is_err());
        // Truncated (tag cut off).
        let short = BASE64.encode(&blob[..blob.len() - 1]);
        assert!(open(&k, &format!("v1:{short}"), &a).is_err());
    }

    #[test]
    fn key_file_formats() {
        let raw: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8 * 7 + 1);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = BASE64.encode(raw);
        let reference = SecretKey::from_bytes(raw);
        let sealed = seal(&reference, "x", "a").unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("raw", raw.to_vec()),
            ("hex", hex.clone().into_bytes()),
            ("hex-newline", format!("{hex}\n").into_bytes()),
            (
                "hex-upper-crlf",
                format!("{}\r\n", hex.to_uppercase()).into_bytes(),
            ),
            ("base64", b64.clone().into_bytes()),
            ("base64-newline", format!("{b64}\n").into_bytes()),
            (
                "base64-nopad",
                format!("{}\n", b64.trim_end_matches('=')).into_bytes(),
            ),
        ];
        for (name, content) in cases {
            let path = temp_path(name);
            std::fs::write(&path, &content).unwrap();
            let loaded = SecretKey::from_file(&path);
            std::fs::remove_file(&path).unwrap();
            let loaded = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(open(&loaded, &sealed, "a").unwrap(), "x", "{name}");
        }
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("short-raw", raw[..31].to_vec()),
            ("long-raw", [raw.as_slice(), &[0u8]].concat()),
            ("short-hex", hex.as_bytes()[..62].to_vec()),
            ("bad-hex", format!("{}zz", &hex[..62]).into_bytes()),
            ("base64-16", BASE64.encode([1u8; 16]).into_bytes()),
            ("empty", Vec::new()),
        ];
        for (name, content) in bad {
            let path = temp_path(name);
            std::fs::write(&path, &content).unwrap();
            let loaded = SecretKey::from_file(&path);
            std::fs::remove_file(&path).unwrap();
            let err = loaded.expect_err(name);
            assert!(
                matches!(err, SecretsError::KeyFormat { .. }),
                "{name}: {err}"
            );
            if name == "short-hex" || name == "bad-hex" {
                assert!(
                    !err.to_string().contains(&hex[..62]),
                    "key material in error"
                );
            }
        }
        let missing = SecretKey::from_file(&temp_path("missing")).unwrap_err();
        assert!(matches!(missing, SecretsError::KeyFile { .. }));
    }

    #[test]
    fn key_from_env_and_text() {
        let raw = [0x5au8; KEY_LEN];
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let var = format!("PFGATE_TEST_SECRETS_KEY_{}", std::process::id());
        std::env::set_var(&var, format!("{hex}\n"));
        let from_env = SecretKey::from_env(&var).unwrap();
        std::env::set_var(&var, "not a key");
        let err = SecretKey::from_env(&var).unwrap_err();
        assert!(matches!(err, SecretsError::KeyFormat { .. }));
        assert!(!err.to_string().contains("not a key"));
        std::env::remove_var(&var);
        assert!(matches!(
            SecretKey::from_env(&var),
            Err(SecretsError::KeyEnv {
                problem: "unset",
                ..
            })
        ));

        let sealed = seal(&SecretKey::from_bytes(raw), "v", "a").unwrap();
        assert_eq!(open(&from_env, &sealed, "a").unwrap(), "v");
        let from_b64 = SecretKey::from_text(&BASE64.encode(raw)).unwrap();
        assert_eq!(open(&from_b64, &sealed, "a").unwrap(), "v");
        // Raw bytes are a file-only format.
        assert!(SecretKey::from_text(&"k".repeat(KEY_LEN)).is_none());
    }

    #[test]
    fn generated_keys_differ_and_debug_is_redacted() {
        let a = SecretKey::generate();
        let b = SecretKey::try_generate().unwrap();
        assert_ne!(a.bytes, b.bytes);
        let shown = format!("{a:?}");
        assert_eq!(shown, "SecretKey(<redacted>)");
        let hex: String = a.bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex));
    }

    #[test]
    fn hash_and_verify_pin() {
        let phc = hash_pin("4711").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("4711"));
        assert!(verify_pin("4711", &phc));
        assert!(!verify_pin("4712", &phc));
        assert!(!verify_pin("", &phc));
        assert!(!verify_pin("4711", "not a phc string"));
        assert!(!verify_pin("4711", ""));
    }

    #[test]
    fn key_check_identifies_the_key_and_is_no_subkey() {
        let check = key_check(&key(9));
        assert_eq!(check.len(), 64);
        assert_eq!(check, key_check(&key(9)));
        assert_ne!(check, key_check(&key(10)));
        let hex: String = key(9).bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(check, hex, "never the key itself");
        // Not the subkey of code_digest (which would let anyone reading the database compute
        // used-code digests).
        let master = hmac::Key::new(hmac::HMAC_SHA256, &key(9).bytes);
        let subkey: String = hmac::sign(&master, CODE_DIGEST_LABEL)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(check, subkey);
    }

    #[test]
    fn code_digest_is_keyed_and_stable() {
        let d = code_digest(&key(9), "123456");
        assert_eq!(d.len(), 64);
        assert!(!d.contains("123456"));
        assert_eq!(d, code_digest(&key(9), "123456"));
        assert_ne!(d, code_digest(&key(9), "123457"));
        assert_ne!(d, code_digest(&key(10), "123456"));
    }
}
