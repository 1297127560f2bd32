//! RFC 6238 time-based one-time passwords (HMAC-SHA1, 6 digits), as OATH hardware and software
//! tokens enrolled in MFA Server produce them. The secret is base32 (RFC 4648) as tokens print it.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;

/// Decodes RFC 4648 base32 (case-insensitive; spaces, dashes and `=` padding ignored).
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !matches!(c, ' ' | '-' | '=')) {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The code for `secret` at time step `counter`.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    let modulus = 10u32.pow(digits);
    format!("{:0width$}", bin % modulus, width = digits as usize)
}

/// Checks a 6-digit code at `now` (Unix seconds) with one step of drift either way. Returns the
/// matching time step (so a caller can refuse its replay), or `None`.
pub fn verify(secret: &[u8], code: &str, now: i64, step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) || step <= 0 {
        return None;
    }
    let current = now.div_euclid(step);
    let mut found = None;
    // Check every candidate (no early exit) so timing does not tell which step matched.
    for t in [current - 1, current, current + 1] {
        let Ok(counter) = u64::try_from(t) else {
            continue;
        };
        if hotp(secret, counter, 6)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into()
        {
            found = Some(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", 8 digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(hotp(secret, t / 30, 8), code, "T={t}");
        }
    }

    #[test]
    fn verifies_with_drift_and_refuses_others() {
        let secret = base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(secret, b"12345678901234567890");
        let now = 1_111_111_111;
        let code = hotp(&secret, (now / 30) as u64, 6);
        assert_eq!(verify(&secret, &code, now, 30), Some(now / 30));
        assert_eq!(verify(&secret, &code, now + 30, 30), Some(now / 30));
        assert_eq!(verify(&secret, &code, now + 90, 30), None);
        assert_eq!(verify(&secret, "12345", now, 30), None);
        assert_eq!(verify(&secret, "abcdef", now, 30), None);
        assert!(base32_decode("not base32!").is_none());
    }
}
