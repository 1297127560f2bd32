//! ID token validation: the JWS signature against the issuer's JWKS, then the claims an OpenID
//! Connect relying party must check (OpenID Connect Core §3.1.3.7), then the step-up's own demands
//! (MFA in `amr`/`acr`/`acrs`, a sign-in after the link was issued).
//!
//! Signatures are verified with aws-lc-rs directly rather than through a JWT crate: the project
//! already ships aws-lc-rs for rustls, the algorithms an IdP uses for ID tokens are few (Entra,
//! Okta, Ping and Keycloak sign with RS256 by default; ES256 and PS256 are the common others), and
//! a hand-written allow-list makes the refusals explicit: `alg=none`, every `HS*` (an HMAC "signed"
//! with a public key anyone can fetch) and any algorithm not listed are refused before a key is
//! looked at. A key is used only for the algorithm family of its `kty` (RSA for RS/PS, EC P-256
//! for ES256), and a JWK that declares `use` other than `sig` or an `alg` other than the token's is
//! skipped.

use std::time::Duration;

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// The longest ID token accepted (bytes). Entra's are 1–3 KiB; 16 KiB leaves room for group
/// claims without letting a hostile IdP make pfgate decode megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why an ID token was refused. The texts never contain the token or a claim value that could be
/// a secret (the nonce); usernames are named, since the audit log names them anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, or too long.
    #[error("the ID token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, `HS*` or not one pfgate verifies.
    #[error("the ID token's algorithm {0:?} is refused (RS256, PS256 and ES256 are accepted)")]
    Algorithm(String),
    /// No key in the JWKS has the token's `kid` (after one refetch).
    #[error("no key in the issuer's JWKS matches the ID token (kid {0:?})")]
    UnknownKey(Option<String>),
    /// The signature does not verify.
    #[error("the ID token's signature does not verify")]
    BadSignature,
    /// A claim is wrong or missing.
    #[error("the ID token's {claim} claim is not acceptable: {why}")]
    Claim {
        /// The claim's name.
        claim: &'static str,
        /// Why (never the value of a secret claim).
        why: String,
    },
}

impl TokenError {
    fn claim(claim: &'static str, why: impl Into<String>) -> Self {
        TokenError::Claim {
            claim,
            why: why.into(),
        }
    }
}

/// The signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Alg {
    fn parse(alg: &str) -> Result<Self, TokenError> {
        match alg {
            "RS256" => Ok(Alg::Rs256),
            "PS256" => Ok(Alg::Ps256),
            "ES256" => Ok(Alg::Es256),
            other => Err(TokenError::Algorithm(other.chars().take(20).collect())),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// One public key of a JWKS, decoded.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and exponent (big-endian bytes).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// P-256 point, uncompressed (`04 || x || y`).
    P256(Vec<u8>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicKey::Rsa { n, .. } => write!(f, "Rsa({} bits)", n.len() * 8),
            PublicKey::P256(_) => f.write_str("P256"),
        }
    }
}

/// A key with the JWK metadata that decides where it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, when given.
    pub kid: Option<String>,
    /// `alg`, when the JWK pins one.
    pub alg: Option<String>,
    /// The key.
    pub key: PublicKey,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

/// Parses a JWKS document. Keys pfgate cannot use (other types, curves, `use = "enc"`, bad
/// encodings) are skipped, not fatal: a JWKS often carries encryption keys or keys for other
/// algorithms beside the signing keys.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let raw: RawJwks =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not a JWK set: {e}"))?;
    let b64 = |v: &Value, name: &str| -> Option<Vec<u8>> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.get(name)?.as_str()?.trim_end_matches('='))
            .ok()
    };
    let mut keys = Vec::new();
    for k in raw.keys.iter().take(100) {
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let key = match k.get("kty").and_then(Value::as_str) {
            Some("RSA") => match (b64(k, "n"), b64(k, "e")) {
                (Some(n), Some(e)) if n.len() >= 256 => PublicKey::Rsa { n, e },
                _ => continue,
            },
            Some("EC") if k.get("crv").and_then(Value::as_str) == Some("P-256") => {
                match (b64(k, "x"), b64(k, "y")) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut point = Vec::with_capacity(65);
                        point.push(4);
                        point.extend_from_slice(&x);
                        point.extend_from_slice(&y);
                        PublicKey::P256(point)
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        keys.push(Jwk {
            kid: k.get("kid").and_then(Value::as_str).map(str::to_string),
            alg: k.get("alg").and_then(Value::as_str).map(str::to_string),
            key,
        });
    }
    Ok(keys)
}

/// A token split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Unverified {
    /// The algorithm from the header (already on the allow-list).
    pub alg: Alg,
    /// The `kid` from the header.
    pub kid: Option<String>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    /// The claims (not to be trusted before [`Unverified::verify`]).
    claims: serde_json::Map<String, Value>,
}

/// Splits a compact JWS and checks its header. Nothing is trusted yet.
pub fn decode(token: &str) -> Result<Unverified, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "not three dot-separated parts (JWE is not accepted)",
        ));
    };
    let b64 = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed("a part is not base64url"))
    };
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&b64(h)?)
        .map_err(|_| TokenError::Malformed("the header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("the header has critical extensions"));
    }
    let alg = Alg::parse(header.get("alg").and_then(Value::as_str).unwrap_or(""))?;
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(&b64(p)?)
        .map_err(|_| TokenError::Malformed("the payload is not a JSON object"))?;
    Ok(Unverified {
        alg,
        kid: header
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string),
        signing_input: format!("{h}.{p}").into_bytes(),
        signature: b64(s)?,
        claims,
    })
}

impl Unverified {
    /// The keys of `jwks` this token could be signed with: the same `kid` (any key when the
    /// token has none), the algorithm's key type, and no contradicting JWK `alg`.
    pub fn candidates<'a>(&'a self, jwks: &'a [Jwk]) -> impl Iterator<Item = &'a Jwk> + 'a {
        jwks.iter().filter(move |k| {
            (self.kid.is_none() || k.kid == self.kid)
                && k.alg.as_deref().is_none_or(|a| a == self.alg.name())
                && matches!(
                    (&k.key, self.alg),
                    (PublicKey::Rsa { .. }, Alg::Rs256 | Alg::Ps256)
                        | (PublicKey::P256(_), Alg::Es256)
                )
        })
    }

    /// Verifies the signature with one of `jwks`; the claims on success.
    pub fn verify(self, jwks: &[Jwk]) -> Result<serde_json::Map<String, Value>, TokenError> {
        let mut any = false;
        let mut verified = false;
        for k in self.candidates(jwks) {
            any = true;
            let ok = match (&k.key, self.alg) {
                (PublicKey::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                    .verify(
                        &signature::RSA_PKCS1_2048_8192_SHA256,
                        &self.signing_input,
                        &self.signature,
                    )
                    .is_ok(),
                (PublicKey::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                    .verify(
                        &signature::RSA_PSS_2048_8192_SHA256,
                        &self.signing_input,
                        &self.signature,
                    )
                    .is_ok(),
                (PublicKey::P256(point), Alg::Es256) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(&self.signing_input, &self.signature)
                        .is_ok()
                }
                _ => false,
            };
            if ok {
                verified = true;
                break;
            }
        }
        if verified {
            Ok(self.claims)
        } else if any {
            Err(TokenError::BadSignature)
        } else {
            Err(TokenError::UnknownKey(self.kid))
        }
    }
}

/// What the claims must say.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// The issuer, exactly as the discovery document gave it.
    pub issuer: &'a str,
    /// pfgate's client id.
    pub client_id: &'a str,
    /// The nonce sent in the authorization request.
    pub nonce: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// Allowed clock difference between pfgate and the IdP, for `exp` and `iat`; for `auth_time`
    /// only as far as `iat` shows the IdP's clock to be behind (never extra time to sign in
    /// before the link).
    pub skew: Duration,
    /// The sign-in must have happened at or after this (Unix seconds): the link's issue time.
    pub not_before_auth: i64,
    /// `amr` must contain one of these (empty: not checked).
    pub amr_any: &'a [String],
    /// `acr` must be one of these (empty: not checked).
    pub acr_any: &'a [String],
    /// Entra's `acrs` must contain this authentication context (e.g. `c1`).
    pub acrs: Option<&'a str>,
}

/// Checks the claims of a token whose signature verified. Returns the claims for the identity
/// check.
pub fn check_claims(
    claims: &serde_json::Map<String, Value>,
    x: &Expect<'_>,
) -> Result<(), TokenError> {
    let skew = i64::try_from(x.skew.as_secs()).unwrap_or(300);
    let str_claim = |name: &'static str| claims.get(name).and_then(Value::as_str);
    let int_claim = |name: &'static str| claims.get(name).and_then(Value::as_i64);
    if str_claim("iss") != Some(x.issuer) {
        return Err(TokenError::claim("iss", "not the configured issuer"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == x.client_id,
        Some(Value::Array(list)) => {
            let has = list.iter().any(|a| a.as_str() == Some(x.client_id));
            // Several audiences: the token must say it was issued to pfgate (Core §3.1.3.7 #4-5).
            has && (list.len() == 1 || str_claim("azp") == Some(x.client_id))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::claim("aud", "does not name this client"));
    }
    if let Some(azp) = str_claim("azp") {
        if azp != x.client_id {
            return Err(TokenError::claim("azp", "names another client"));
        }
    }
    let exp = int_claim("exp").ok_or_else(|| TokenError::claim("exp", "missing"))?;
    if exp + skew <= x.now {
        return Err(TokenError::claim("exp", "the token has expired"));
    }
    let iat = int_claim("iat").ok_or_else(|| TokenError::claim("iat", "missing"))?;
    if iat > x.now + skew {
        return Err(TokenError::claim("iat", "issued in the future"));
    }
    if iat + skew < x.not_before_auth {
        return Err(TokenError::claim("iat", "issued before the step-up link"));
    }
    let nonce = str_claim("nonce").ok_or_else(|| TokenError::claim("nonce", "missing"))?;
    if !crate::providers::oidc::ct_eq(nonce.as_bytes(), x.nonce.as_bytes()) {
        return Err(TokenError::claim("nonce", "does not match this sign-in"));
    }
    let auth_time = int_claim("auth_time")
        .ok_or_else(|| TokenError::claim("auth_time", "missing (max_age was requested)"))?;
    // The sign-in must come after the link was issued. The skew covers a clock difference, not
    // time: an IdP whose clock is behind pfgate's shows it in `iat` (the token is used moments
    // after it was issued), so `auth_time` may be that much earlier, at most the skew — and not
    // a second when the clocks agree.
    let idp_clock_behind = (x.now - iat).clamp(0, skew);
    if auth_time + idp_clock_behind < x.not_before_auth {
        return Err(TokenError::claim(
            "auth_time",
            "the sign-in happened before the step-up link was issued (a remembered session, not a fresh sign-in)",
        ));
    }
    if auth_time > x.now + skew {
        return Err(TokenError::claim("auth_time", "in the future"));
    }
    if !x.amr_any.is_empty() {
        let amr: Vec<&str> = match claims.get("amr") {
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !amr.iter().any(|m| x.amr_any.iter().any(|w| w == m)) {
            return Err(TokenError::claim(
                "amr",
                format!(
                    "no multi-factor method ({}) in [{}]",
                    x.amr_any.join(", "),
                    amr.iter()
                        .take(10)
                        .map(|m| m.chars().take(20).collect::<String>())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if !x.acr_any.is_empty() {
        let acr = str_claim("acr").unwrap_or("");
        if !x.acr_any.iter().any(|a| a == acr) {
            return Err(TokenError::claim(
                "acr",
                "not one of the configured acr_values",
            ));
        }
    }
    if let Some(want) = x.acrs {
        let has = match claims.get("acrs") {
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want)),
            Some(Value::String(s)) => s == want,
            _ => false,
        };
        if !has {
            return Err(TokenError::claim(
                "acrs",
                format!("the authentication context {want} was not satisfied"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn refuses_alg_none_and_hmac() {
        for alg in ["none", "HS256", "HS512", "", "RS1"] {
            let t = format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": alg})),
                b64(&serde_json::json!({}))
            );
            assert!(matches!(decode(&t), Err(TokenError::Algorithm(_))), "{alg}");
        }
    }

    #[test]
    fn refuses_jwe_and_oversize() {
        assert!(matches!(decode("a.b.c.d.e"), Err(TokenError::Malformed(_))));
        assert!(matches!(
            decode(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_kid_is_not_a_bad_signature() {
        let t = format!(
            "{}.{}.AAAA",
            b64(&serde_json::json!({"alg": "RS256", "kid": "k2"})),
            b64(&serde_json::json!({}))
        );
        let jwks = vec![Jwk {
            kid: Some("k1".into()),
            alg: None,
            key: PublicKey::Rsa {
                n: vec![1; 256],
                e: vec![1, 0, 1],
            },
        }];
        assert_eq!(
            decode(&t).and_then(|u| u.verify(&jwks)),
            Err(TokenError::UnknownKey(Some("k2".into())))
        );
    }

    fn expect<'a>(amr: &'a [String]) -> Expect<'a> {
        Expect {
            issuer: "https://op",
            client_id: "pfgate",
            nonce: "n0",
            now: 1_000_000,
            skew: Duration::from_secs(60),
            not_before_auth: 999_000,
            amr_any: amr,
            acr_any: &[],
            acrs: None,
        }
    }

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn claims_checked_one_by_one() {
        let mfa = vec!["mfa".to_string()];
        let good = serde_json::json!({"iss": "https://op", "aud": "pfgate", "exp": 1_000_300,
            "iat": 999_990, "nonce": "n0", "auth_time": 999_980, "amr": ["pwd", "mfa"]});
        assert_eq!(check_claims(&claims(good.clone()), &expect(&mfa)), Ok(()));
        let cases: [(&str, Value, &str); 8] = [
            ("iss", "https://evil".into(), "iss"),
            ("aud", "other".into(), "aud"),
            ("aud", serde_json::json!(["pfgate", "other"]), "aud"),
            ("exp", 999_000.into(), "exp"),
            ("nonce", "n1".into(), "nonce"),
            ("auth_time", 998_000.into(), "auth_time"),
            ("amr", serde_json::json!(["pwd"]), "amr"),
            ("iat", 1_000_500.into(), "iat"),
        ];
        for (k, v, claim) in cases {
            let mut c = claims(good.clone());
            c.insert(k.into(), v);
            match check_claims(&c, &expect(&mfa)) {
                Err(TokenError::Claim { claim: got, .. }) => assert_eq!(got, claim, "{k}"),
                other => panic!("{k}: {other:?}"),
            }
        }
        let mut c = claims(good);
        c.remove("auth_time");
        assert!(check_claims(&c, &expect(&mfa)).is_err());
    }

    /// Issue #23 item 10: the skew excuses a clock difference only, as `iat` shows it.
    #[test]
    fn a_sign_in_before_the_link_is_stale_unless_the_idp_clock_is_behind() {
        let mfa = vec!["mfa".to_string()];
        let x = Expect {
            not_before_auth: 999_900,
            ..expect(&mfa)
        };
        let at = |iat: i64, auth_time: i64| {
            let c = claims(serde_json::json!({"iss": "https://op", "aud": "pfgate",
                "exp": 1_000_300, "iat": iat, "nonce": "n0", "auth_time": auth_time,
                "amr": ["mfa"]}));
            check_claims(&c, &x)
        };
        // Clocks agree (iat = now): 30 s before the link is stale; at the link's second, fresh.
        assert!(at(1_000_000, 999_870).is_err());
        assert_eq!(at(1_000_000, 999_900), Ok(()));
        // The IdP's clock 40 s behind (iat 40 s ago): its auth_time 30 s "before" is fresh…
        assert_eq!(at(999_960, 999_870), Ok(()));
        // …but never more than the skew (60 s), however far behind iat says it is.
        assert!(at(999_860, 999_830).is_err());
    }
}
