//! `[store]`: the SQLite file or PostgreSQL database, and the secrets key. Also checked alone by
//! [`crate::config::load_store`], for the commands that touch only the store.

use super::Check;
use crate::config::file::StoreSection;
use crate::config::settings::{KeySource, StoreSettings};

/// Validated `[store]`: the SQLite file or PostgreSQL database and the secrets key. Shared by
/// `serve` and the commands that touch only the store ([`crate::config::load_store`]).
pub(super) fn store(c: &mut Check<'_>, section: &StoreSection) -> StoreSettings {
    let path = section.path.as_deref().map(|p| c.resolve(p));
    let postgres = postgres(c, section);
    let key = match (&section.secrets_key_file, &section.secrets_key_env) {
        (Some(_), Some(_)) => {
            c.problem(
                "store.secrets_key_env",
                "give either store.secrets_key_file or store.secrets_key_env, not both",
            );
            KeySource::Ephemeral
        }
        (Some(f), None) => {
            let f = c.resolve(f);
            if let Err(e) = crate::store::secrets::SecretKey::from_file_quiet(&f) {
                c.problem("store.secrets_key_file", e.to_string());
            }
            KeySource::File(f)
        }
        (None, Some(var)) => {
            if let Err(e) = crate::store::secrets::SecretKey::from_env(var) {
                c.problem("store.secrets_key_env", e.to_string());
            }
            KeySource::Env(var.clone())
        }
        (None, None) => {
            if path.is_some() || postgres.is_some() {
                c.problem(
                    "store.secrets_key_file",
                    "a store file or database needs a secrets key (store.secrets_key_file or \
                     store.secrets_key_env) so OATH secrets and static tokens stay encrypted \
                     across restarts (every instance sharing a database needs the same one); \
                     create one readable only by its owner with \
                     `(umask 077; head -c 32 /dev/urandom > secrets.key)`",
                );
            }
            KeySource::Ephemeral
        }
    };
    if section.shared_file.is_some() && section.path.is_none() {
        c.problem(
            "store.shared_file",
            "only for a SQLite store file: set store.path",
        );
    }
    StoreSettings {
        path,
        shared_file: section.shared_file.unwrap_or(false),
        postgres,
        key,
    }
}

/// The PostgreSQL settings of `[store]`, if `url` is given; problems are reported by key.
fn postgres(
    c: &mut Check<'_>,
    section: &StoreSection,
) -> Option<crate::store::postgres::PostgresSettings> {
    use crate::store::postgres::{PasswordSource, PostgresSettings, DEFAULT_POOL_SIZE};
    let Some(url) = &section.url else {
        for (key, set) in [
            ("schema", section.schema.is_some()),
            ("pool_size", section.pool_size.is_some()),
            ("password_file", section.password_file.is_some()),
            ("password_env", section.password_env.is_some()),
            ("tls_ca_file", section.tls_ca_file.is_some()),
        ] {
            if set {
                c.problem(
                    &format!("store.{key}"),
                    "only for a PostgreSQL store: set store.url",
                );
            }
        }
        return None;
    };
    if section.path.is_some() {
        c.problem(
            "store.url",
            "give either store.path (SQLite) or store.url (PostgreSQL), not both",
        );
    }
    let password = match (&section.password_file, &section.password_env) {
        (Some(_), Some(_)) => {
            c.problem(
                "store.password_env",
                "give either store.password_file or store.password_env, not both",
            );
            None
        }
        (Some(f), None) => Some(PasswordSource::File(c.resolve(f))),
        (None, Some(v)) => Some(PasswordSource::Env(v.clone())),
        (None, None) => None,
    };
    let settings = PostgresSettings {
        url: url.clone(),
        password,
        schema: section.schema.clone(),
        pool_size: section.pool_size.unwrap_or(DEFAULT_POOL_SIZE),
        tls_ca_file: section.tls_ca_file.as_deref().map(|p| c.resolve(p)),
    };
    for (key, reason) in settings.validate() {
        c.problem(&format!("store.{key}"), reason);
    }
    Some(settings)
}
