//! The client side of NTLMv2 ([MS-NLMP]) for `pfgate call` and `users import --from-sdk`: an
//! old MFA Server behind IIS with Windows authentication accepts nothing else.
//!
//! Written apart from pfgate's acceptor (`src/auth/ntlm.rs`) on purpose: the tests run this client
//! against that acceptor, and two halves sharing one key-derivation function would agree on any
//! mistake in it.
//!
//! What this client sends (§3.1.5.1.2): an NTLMv2 response over the server's AV_PAIRs plus
//! `MsvAvFlags` 0x2 and a MIC over the three messages, so a server that checks the MIC can detect a
//! tampered NEGOTIATE or CHALLENGE; with `NTLMSSP_NEGOTIATE_KEY_EXCH` a random exported session key.
//! The LM response is zeros when the server sent a time stamp (§3.1.5.1.2, as Windows does). No
//! signing or sealing follows: HTTP authentication needs neither.
//!
//! Nothing here is ever logged: not the password, the NT hash, the responses nor the session key.
//! The buffers holding them are zeroised on drop.

use hmac::{Hmac, KeyInit, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use rand::RngCore;
use zeroize::Zeroizing;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// Negotiate flags this client asks for (§2.2.2.5).
mod flags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const KEY_EXCH: u32 = 0x4000_0000;
    pub const N56: u32 = 0x8000_0000;
}

/// AV_PAIR ids (§2.2.2.1).
mod av {
    pub const EOL: u16 = 0;
    pub const FLAGS: u16 = 6;
    pub const TIMESTAMP: u16 = 7;
    pub const FLAG_MIC_PRESENT: u32 = 0x2;
}

/// AUTHENTICATE header with Version and MIC: the payload starts here.
const AUTH_HEADER: usize = 88;
const MIC_OFFSET: usize = 72;

/// Why the handshake could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtlmClientError {
    /// The user name is not `DOMAIN\user` or a UPN.
    #[error("NTLM needs a user as DOMAIN\\user or user@domain, got '{0}'")]
    BadUser(String),
    /// The server's CHALLENGE message is malformed.
    #[error("the server's NTLM challenge is malformed: {0}")]
    BadChallenge(&'static str),
}

/// The credentials of one account. `Debug` shows the user only.
pub struct Credentials {
    /// User name as given, for messages.
    pub user: String,
    domain: String,
    account: String,
    /// The NT hash: MD4 of the UTF-16LE password.
    nt_hash: Zeroizing<[u8; 16]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let Ok(mut mac) = <Hmac<Md5> as KeyInit>::new_from_slice(key) else {
        return [0; 16];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Credentials {
    /// `DOMAIN\user` (or `user@dns.domain`, sent with an empty domain as Windows does for UPNs)
    /// and its password.
    pub fn new(user: &str, password: &str) -> Result<Self, NtlmClientError> {
        let (domain, account) = if let Some((d, a)) = user.split_once('\\') {
            (d.to_string(), a.to_string())
        } else if user.contains('@') {
            (String::new(), user.to_string())
        } else {
            return Err(NtlmClientError::BadUser(user.to_string()));
        };
        if account.is_empty() {
            return Err(NtlmClientError::BadUser(user.to_string()));
        }
        let pw = Zeroizing::new(utf16le(password));
        let mut nt_hash = Zeroizing::new([0u8; 16]);
        nt_hash.copy_from_slice(&Md4::digest(pw.as_slice()));
        Ok(Self {
            user: user.to_string(),
            domain,
            account,
            nt_hash,
        })
    }

    /// NTOWFv2 (§3.3.2): HMAC_MD5(NT hash, UTF-16LE(UPPER(user) ‖ domain)).
    fn ntowf_v2(&self) -> Zeroizing<[u8; 16]> {
        let id = utf16le(&format!("{}{}", self.account.to_uppercase(), self.domain));
        Zeroizing::new(hmac_md5(self.nt_hash.as_slice(), &[&id]))
    }
}

/// The NEGOTIATE message (§2.2.1.1): flags, empty domain and workstation, a version.
pub fn negotiate() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    let f = flags::UNICODE
        | flags::REQUEST_TARGET
        | flags::NTLM
        | flags::ALWAYS_SIGN
        | flags::EXTENDED_SESSIONSECURITY
        | flags::TARGET_INFO
        | flags::VERSION
        | flags::N128
        | flags::KEY_EXCH
        | flags::N56;
    m.extend_from_slice(&f.to_le_bytes());
    m.extend_from_slice(&[0; 16]); // domain and workstation fields: empty
    m.extend_from_slice(&VERSION);
    m
}

/// Windows 10 build 19041, NTLM revision 15: what the Version field usually says.
const VERSION: [u8; 8] = [10, 0, 0x61, 0x4a, 0, 0, 0, 15];

/// What this client needs from a CHALLENGE message.
struct Challenge<'a> {
    flags: u32,
    server_challenge: [u8; 8],
    target_info: &'a [u8],
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(m.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(m: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(m.get(at..at + 4)?.try_into().ok()?))
}

fn parse_challenge(m: &[u8]) -> Result<Challenge<'_>, NtlmClientError> {
    if m.get(..8) != Some(SIGNATURE.as_slice()) || u32_at(m, 8) != Some(2) {
        return Err(NtlmClientError::BadChallenge(
            "not an NTLM CHALLENGE message",
        ));
    }
    let flags = u32_at(m, 20).ok_or(NtlmClientError::BadChallenge("truncated"))?;
    let server_challenge: [u8; 8] = m
        .get(24..32)
        .and_then(|s| s.try_into().ok())
        .ok_or(NtlmClientError::BadChallenge("truncated"))?;
    let len = usize::from(u16_at(m, 40).ok_or(NtlmClientError::BadChallenge("truncated"))?);
    let off = u32_at(m, 44).ok_or(NtlmClientError::BadChallenge("truncated"))? as usize;
    let target_info = off.checked_add(len).and_then(|end| m.get(off..end)).ok_or(
        NtlmClientError::BadChallenge("target info outside the message"),
    )?;
    if flags & flags::TARGET_INFO == 0 || target_info.is_empty() {
        // Without target info there is no NTLMv2 to speak; NTLMv1 is never offered.
        return Err(NtlmClientError::BadChallenge(
            "no target information (the server offers only NTLMv1, which this client refuses)",
        ));
    }
    Ok(Challenge {
        flags,
        server_challenge,
        target_info,
    })
}

/// The server's AV_PAIRs without the terminator, the time stamp if any, and whether the list is
/// well-formed.
fn scan_av_pairs(info: &[u8]) -> Result<(Vec<u8>, Option<[u8; 8]>), NtlmClientError> {
    let mut out = Vec::with_capacity(info.len() + 8);
    let mut timestamp = None;
    let mut at = 0;
    loop {
        let id = u16_at(info, at).ok_or(NtlmClientError::BadChallenge("AV_PAIR truncated"))?;
        let len = usize::from(
            u16_at(info, at + 2).ok_or(NtlmClientError::BadChallenge("AV_PAIR truncated"))?,
        );
        let value = info
            .get(at + 4..at + 4 + len)
            .ok_or(NtlmClientError::BadChallenge("AV_PAIR truncated"))?;
        if id == av::EOL {
            return Ok((out, timestamp));
        }
        if id == av::TIMESTAMP {
            timestamp = value.try_into().ok();
        }
        if id != av::FLAGS {
            out.extend_from_slice(&info[at..at + 4 + len]);
        }
        at += 4 + len;
    }
}

/// Windows FILETIME now (100 ns since 1601).
fn filetime_now() -> [u8; 8] {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() / 100)
        .unwrap_or(0);
    let ft = u64::try_from(unix).unwrap_or(0) + 116_444_736_000_000_000;
    ft.to_le_bytes()
}

/// The AUTHENTICATE message (§2.2.1.3) answering `challenge` for `creds`; `negotiate_msg` is the
/// message sent first (the MIC covers it).
pub fn authenticate(
    creds: &Credentials,
    negotiate_msg: &[u8],
    challenge_msg: &[u8],
) -> Result<Vec<u8>, NtlmClientError> {
    let ch = parse_challenge(challenge_msg)?;
    let (mut pairs, server_time) = scan_av_pairs(ch.target_info)?;
    // Announce the MIC, then terminate the list (§3.1.5.1.2).
    pairs.extend_from_slice(&av::FLAGS.to_le_bytes());
    pairs.extend_from_slice(&4u16.to_le_bytes());
    pairs.extend_from_slice(&av::FLAG_MIC_PRESENT.to_le_bytes());
    pairs.extend_from_slice(&[0; 4]);

    let mut client_challenge = [0u8; 8];
    rand::rng().fill_bytes(&mut client_challenge);
    let timestamp = server_time.unwrap_or_else(filetime_now);

    let ntowf = creds.ntowf_v2();
    let mut temp = Vec::with_capacity(28 + pairs.len() + 4);
    temp.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    temp.extend_from_slice(&timestamp);
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(&pairs);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(ntowf.as_slice(), &[&ch.server_challenge, &temp]);
    let mut nt_response = Zeroizing::new(Vec::with_capacity(16 + temp.len()));
    nt_response.extend_from_slice(&proof);
    nt_response.extend_from_slice(&temp);
    let lm_response: Vec<u8> = if server_time.is_some() {
        vec![0; 24]
    } else {
        let mut lm =
            hmac_md5(ntowf.as_slice(), &[&ch.server_challenge, &client_challenge]).to_vec();
        lm.extend_from_slice(&client_challenge);
        lm
    };
    let session_base_key = Zeroizing::new(hmac_md5(ntowf.as_slice(), &[&proof]));

    let negotiated = ch.flags;
    let (exported, encrypted_key) = if negotiated & flags::KEY_EXCH != 0 {
        let mut exported = Zeroizing::new([0u8; 16]);
        rand::rng().fill_bytes(exported.as_mut_slice());
        let mut enc = *exported;
        rc4_apply(session_base_key.as_slice(), &mut enc);
        (exported, enc.to_vec())
    } else {
        (session_base_key.clone(), Vec::new())
    };

    let domain = utf16le(&creds.domain);
    let user = utf16le(&creds.account);
    let workstation = utf16le("PFGATE-CALL");
    let fields: [&[u8]; 6] = [
        &lm_response,
        &nt_response,
        &domain,
        &user,
        &workstation,
        &encrypted_key,
    ];
    let mut header = Vec::with_capacity(AUTH_HEADER);
    header.extend_from_slice(SIGNATURE);
    header.extend_from_slice(&3u32.to_le_bytes());
    let mut payload = Vec::new();
    let mut offset = AUTH_HEADER;
    for f in fields {
        let len = u16::try_from(f.len()).map_err(|_| {
            NtlmClientError::BadChallenge("target information too long for a response")
        })?;
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&(offset as u32).to_le_bytes());
        payload.extend_from_slice(f);
        offset += f.len();
    }
    let answered = (negotiated
        & (flags::UNICODE
            | flags::NTLM
            | flags::ALWAYS_SIGN
            | flags::EXTENDED_SESSIONSECURITY
            | flags::TARGET_INFO
            | flags::N128
            | flags::KEY_EXCH
            | flags::N56))
        | flags::VERSION;
    header.extend_from_slice(&answered.to_le_bytes());
    header.extend_from_slice(&VERSION);
    header.extend_from_slice(&[0; 16]); // MIC, filled below
    let mut msg = header;
    msg.extend_from_slice(&payload);
    let mic = hmac_md5(exported.as_slice(), &[negotiate_msg, challenge_msg, &msg]);
    msg[MIC_OFFSET..MIC_OFFSET + 16].copy_from_slice(&mic);
    Ok(msg)
}

fn rc4_apply(key: &[u8], data: &mut [u8]) {
    use rc4::{KeyInit as _, StreamCipher as _};
    if let Ok(mut cipher) = rc4::Rc4::new_from_slice(key) {
        cipher.apply_keystream(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MS-NLMP] §4.2.4.1.1: NTOWFv2 of User/Domain/Password.
    #[test]
    fn ntowf_v2_matches_the_specification() {
        let c = Credentials::new("Domain\\User", "Password").unwrap();
        assert_eq!(
            c.ntowf_v2().as_slice(),
            &[
                0x0c, 0x86, 0x8a, 0x40, 0x3b, 0xfd, 0x7a, 0x93, 0xa3, 0x00, 0x1e, 0xf2, 0x2e, 0xf0,
                0x2e, 0x3f
            ]
        );
    }

    #[test]
    fn refuses_names_without_a_domain_and_bad_challenges() {
        assert!(Credentials::new("alice", "x").is_err());
        assert!(Credentials::new("CONTOSO\\", "x").is_err());
        let c = Credentials::new("alice@contoso.com", "x").unwrap();
        assert!(authenticate(&c, &negotiate(), b"NTLMSSP\0\x02\0\0\0").is_err());
        // Target info pointing outside the message.
        let mut ch = Vec::from(&SIGNATURE[..]);
        ch.extend_from_slice(&2u32.to_le_bytes());
        ch.extend_from_slice(&[0; 8]);
        ch.extend_from_slice(&flags::TARGET_INFO.to_le_bytes());
        ch.extend_from_slice(&[1; 8]);
        ch.extend_from_slice(&[0; 8]);
        ch.extend_from_slice(&200u16.to_le_bytes());
        ch.extend_from_slice(&200u16.to_le_bytes());
        ch.extend_from_slice(&48u32.to_le_bytes());
        assert!(authenticate(&c, &negotiate(), &ch).is_err());
    }
}
