//! `[auth]`: who may call. At least one way for callers to authenticate (or anonymous callers
//! explicitly), an allow-list when they can, and each method's own settings: NTLM accounts,
//! Kerberos keytab, client certificates, Basic accounts, the trusted proxies' identity header.

use super::Check;
use crate::config::file::{AuthSection, NtlmAccountSection, NtlmSection};
#[cfg(feature = "kerberos")]
use crate::config::settings::KerberosAuthSettings;
use crate::config::settings::{ntlm_account_hash, AuthSettings, NtlmSettings};

/// Checks `[auth]`; `trusted_proxies` is `[server] trusted_proxies` as written (an identity
/// header needs them).
pub(super) fn auth(c: &mut Check<'_>, a: &AuthSection, trusted_proxies: &[String]) -> AuthSettings {
    let methods = !a.basic.is_empty()
        || a.proxy_identity_header.is_some()
        || !a.certificate_map.is_empty()
        || a.ntlm.as_ref().is_some_and(|n| !n.accounts.is_empty())
        || a.kerberos.is_some();
    #[cfg(not(feature = "kerberos"))]
    if a.kerberos.is_some() {
        c.problem(
            "auth.kerberos",
            "this pfgate was built without Kerberos support: build it with `cargo build \
             --release --features kerberos` (docs/kerberos.md), or remove [auth.kerberos]",
        );
    }
    #[cfg(feature = "kerberos")]
    let kerberos = a.kerberos.as_ref().map(|k| kerberos(c, k));
    let ntlm = a.ntlm.as_ref().map(|n| ntlm(c, n));
    client_certificates(c, a);
    if !a.allow_anonymous && !methods {
        c.problem(
            "auth",
            "no caller authentication is configured: add [auth.ntlm] with \
             [[auth.ntlm.accounts]] (Windows authentication, what MIM's service account \
             uses), client certificates ([[auth.certificate_map]] with auth.client_ca_file), \
             [[auth.basic]] accounts, or auth.proxy_identity_header (with \
             server.trusted_proxies); or set auth.allow_anonymous = true to accept \
             unauthenticated callers (only behind a proxy that authenticates them)",
        );
    }
    if methods && a.principals.is_empty() {
        c.problem(
            "auth.principals",
            "callers can authenticate but none is allowed: list them in [[auth.principals]] \
             with the operation groups each may call",
        );
    }
    basic_and_proxy(c, a, trusted_proxies);
    let policy = if a.principals.is_empty() && a.allow_anonymous {
        crate::auth::policy::Policy::open()
    } else {
        crate::auth::policy::Policy::new(a.principals.clone())
    };
    AuthSettings {
        allow_anonymous: a.allow_anonymous,
        proxy_identity_header: a
            .proxy_identity_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
        basic: a.basic.clone(),
        policy,
        client_ca_file: a.client_ca_file.as_deref().map(|p| c.resolve(p)),
        client_cert_required: a.client_cert_required,
        certificate_map: a.certificate_map.clone(),
        ntlm,
        #[cfg(feature = "kerberos")]
        kerberos,
    }
}

/// `[auth.kerberos]`: the keytab must be readable, the service principal complete.
#[cfg(feature = "kerberos")]
fn kerberos(c: &mut Check<'_>, k: &crate::config::file::KerberosSection) -> KerberosAuthSettings {
    let keytab = c.resolve(&k.keytab);
    if let Err(e) = std::fs::File::open(&keytab) {
        c.problem(
            "auth.kerberos.keytab",
            format!("cannot read {}: {e}", keytab.display()),
        );
    }
    if let Some(spn) = &k.service_principal {
        if let Some(reason) = service_principal_problem(spn) {
            c.problem("auth.kerberos.service_principal", reason);
        }
    }
    KerberosAuthSettings::new(keytab, k.service_principal.clone())
}

/// Why `spn` is not a usable `[auth.kerberos] service_principal`, if it is not. The realm is
/// required: pfgate needs no `krb5.conf`, so there may be no default realm to complete it with.
#[cfg(feature = "kerberos")]
fn service_principal_problem(spn: &str) -> Option<String> {
    let example = "e.g. HTTP/mfa.contoso.com@CONTOSO.COM";
    if spn.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Some(format!("'{spn}' contains whitespace ({example})"));
    }
    match spn.rsplit_once('@') {
        Some((name, realm)) if name.contains('/') && !realm.is_empty() => None,
        _ => Some(format!("'{spn}' is not SERVICE/host@REALM ({example})")),
    }
}

/// `[auth.ntlm]`: a domain, and accounts named `DOMAIN\user` whose secret can be read now.
fn ntlm(c: &mut Check<'_>, n: &NtlmSection) -> NtlmSettings {
    if n.netbios_domain.trim().is_empty() {
        c.problem("auth.ntlm.netbios_domain", "must not be empty");
    }
    let accounts: Vec<NtlmAccountSection> = n
        .accounts
        .iter()
        .map(|acc| NtlmAccountSection {
            password_file: acc.password_file.as_deref().map(|p| c.resolve(p)),
            nt_hash_file: acc.nt_hash_file.as_deref().map(|p| c.resolve(p)),
            ..acc.clone()
        })
        .collect();
    for (i, acc) in accounts.iter().enumerate() {
        if !acc.principal.contains('\\') {
            c.problem(
                &format!("auth.ntlm.accounts[{i}].principal"),
                "must be DOMAIN\\user",
            );
        }
        if let Err(e) = ntlm_account_hash(acc) {
            c.problem(&format!("auth.ntlm.accounts[{i}]"), e);
        }
    }
    NtlmSettings {
        netbios_domain: n.netbios_domain.to_ascii_uppercase(),
        netbios_computer: n
            .netbios_computer
            .clone()
            .unwrap_or_else(|| "PFGATE".into()),
        dns_domain: n.dns_domain.clone().unwrap_or_default(),
        dns_computer: n.dns_computer.clone().unwrap_or_default(),
        accounts,
    }
}

/// Mutual TLS: the client CA file exists, and what needs it has it.
fn client_certificates(c: &mut Check<'_>, a: &AuthSection) {
    if let Some(ca) = &a.client_ca_file {
        if !c.resolve(ca).is_file() {
            let shown = c.resolve(ca).display().to_string();
            c.problem(
                "auth.client_ca_file",
                format!("the file {shown} does not exist"),
            );
        }
    }
    if !a.certificate_map.is_empty() && a.client_ca_file.is_none() {
        c.problem(
            "auth.certificate_map",
            "certificate mapping needs auth.client_ca_file (the CA client certificates chain to)",
        );
    }
    if a.client_cert_required && a.client_ca_file.is_none() {
        c.problem("auth.client_cert_required", "needs auth.client_ca_file");
    }
    for (i, m) in a.certificate_map.iter().enumerate() {
        if let Some(reason) = m.validate() {
            c.problem(&format!("auth.certificate_map[{i}]"), reason);
        }
    }
}

/// Basic accounts hold argon2 hashes and principals; an identity header is a header name that
/// trusted proxies send.
fn basic_and_proxy(c: &mut Check<'_>, a: &AuthSection, trusted_proxies: &[String]) {
    for (i, b) in a.basic.iter().enumerate() {
        if !b.password_hash.starts_with("$argon2") {
            c.problem(
                &format!("auth.basic[{i}].password_hash"),
                "must be an argon2 PHC string; make one with `pfgate hash-password`",
            );
        }
        if b.principal.trim().is_empty() {
            c.problem(&format!("auth.basic[{i}].principal"), "must not be empty");
        }
    }
    if let Some(h) = &a.proxy_identity_header {
        if trusted_proxies.is_empty() {
            c.problem(
                "auth.proxy_identity_header",
                "an identity header needs server.trusted_proxies: from anyone else it is ignored",
            );
        }
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            c.problem(
                "auth.proxy_identity_header",
                format!("'{h}' is not a header name"),
            );
        }
    }
}
