//! `[engine]`, `[directory]` and `[primary_auth]`: how authentications behave, whom they know, and
//! the LDAP bind of the combined operations.

use std::time::Duration;

use super::Check;
use crate::config::file::{DirectorySection, EngineSection, PrimaryAuthSection};
use crate::config::settings::{DirectorySource, EngineSettings, Lockout, UnknownUsers};

/// Checks `[engine]`.
pub(super) fn engine(c: &mut Check<'_>, e: &EngineSection) -> EngineSettings {
    let de = EngineSettings::default();
    EngineSettings {
        auth_timeout: match e.auth_timeout_secs {
            Some(s) if s == 0 || s >= 100 => {
                c.problem(
                    "engine.auth_timeout_secs",
                    format!("{s} is out of range: it must be 1..=99, below the 100 s HTTP timeout of .NET callers"),
                );
                de.auth_timeout
            }
            Some(s) => Duration::from_secs(s),
            None => de.auth_timeout,
        },
        default_country_code: match &e.default_country_code {
            Some(cc)
                if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) =>
            {
                c.problem(
                    "engine.default_country_code",
                    format!("'{cc}' is not a country calling code (1 to 3 digits, e.g. 1 or 44)"),
                );
                de.default_country_code
            }
            Some(cc) => cc.clone(),
            None => de.default_country_code,
        },
        unknown_users: match e.unknown_users.as_deref() {
            None | Some("deny") => UnknownUsers::Deny,
            Some("caller") => UnknownUsers::Caller,
            Some(other) => {
                c.problem(
                    "engine.unknown_users",
                    format!("'{other}' is not \"deny\" or \"caller\""),
                );
                de.unknown_users
            }
        },
        lockout: lockout(c, e, de.lockout),
        call_only_stored_numbers: e.call_only_stored_numbers.unwrap_or(false),
    }
}

/// `[engine] lockout_*`, each in range or `d`'s value.
fn lockout(c: &mut Check<'_>, e: &EngineSection, d: Lockout) -> Lockout {
    Lockout {
        threshold: match e.lockout_threshold {
            Some(t) if !(1..=100).contains(&t) => {
                c.problem(
                    "engine.lockout_threshold",
                    format!("{t} is out of range: it must be 1..=100"),
                );
                d.threshold
            }
            Some(t) => t,
            None => d.threshold,
        },
        window: lockout_secs(
            c,
            e.lockout_window_secs,
            d.window,
            "engine.lockout_window_secs",
        ),
        duration: lockout_secs(c, e.lockout_secs, d.duration, "engine.lockout_secs"),
    }
}

/// A lockout duration: 1 second to 1 day.
fn lockout_secs(c: &mut Check<'_>, v: Option<u64>, default: Duration, key: &str) -> Duration {
    match v {
        Some(s) if !(1..=86_400).contains(&s) => {
            c.problem(
                key,
                format!("{s} is out of range: it must be 1..=86400 seconds"),
            );
            default
        }
        Some(s) => Duration::from_secs(s),
        None => default,
    }
}

/// Checks `[directory]`: a users file must exist and load.
pub(super) fn directory(c: &mut Check<'_>, d: &DirectorySection) -> DirectorySource {
    match &d.users_file {
        Some(p) => {
            let p = c.resolve(p);
            if !p.is_file() {
                c.problem(
                    "directory.users_file",
                    format!("the file {} does not exist", p.display()),
                );
            } else if let Err(e) = crate::store::directory::Directory::from_file(&p) {
                c.problem("directory.users_file", e.to_string());
            }
            DirectorySource::File(p)
        }
        None => DirectorySource::Empty,
    }
}

/// Checks `[primary_auth]` (the LDAP settings say what is wrong with them).
pub(super) fn primary_auth(
    c: &mut Check<'_>,
    p: &PrimaryAuthSection,
) -> crate::engine::primary::LdapSettings {
    let settings = crate::engine::primary::LdapSettings {
        url: p.ldap_url.clone(),
        bind_dn_template: p.bind_dn_template.clone(),
        start_tls: p.start_tls,
        ca_file: p.ca_file.as_deref().map(|f| c.resolve(f)),
        timeout: Duration::from_secs(p.timeout_secs.unwrap_or(10)),
    };
    if let Err(e) = settings.validate() {
        c.problem("primary_auth", e);
    }
    settings
}
