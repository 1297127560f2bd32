//! Wiring: from validated [`Settings`] to a running engine — open the store, load the users file,
//! seed the store from it, and pick the provider. Nothing here decides anything; it only connects.

use std::sync::Arc;

use std::collections::HashMap;

use crate::config::{DirectorySource, KeySource, ProviderSettings, Settings, StoreSettings};
use crate::engine::Engine;
use crate::providers::router::Router;
use crate::providers::scripted::ScriptedProvider;
use crate::store::directory::{Directory, DirectoryError};
use crate::store::postgres::PostgresStore;
use crate::store::secrets::SecretKey;
use crate::store::sqlite::{FileUse, SqliteStore};
use crate::store::{Cause, Phone, Store, StoreError, UserRecord};

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The users file is invalid.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The store could not be opened or seeded.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The SQLite file is served from by another process ([`crate::store::Cause::FileInUse`]).
    #[error("store.path: {0}")]
    StoreInUse(StoreError),
    /// The secrets key could not be read.
    #[error("secrets key: {0}")]
    Key(String),
    /// A provider could not be set up (missing secret, bad certificate…).
    #[error("providers.{0}: {1}")]
    Provider(String, String),
    /// LDAP primary authentication could not be set up.
    #[error("primary_auth: {0}")]
    Primary(String),
    /// No provider is configured outside demo mode ([`crate::config::NO_PROVIDER`]).
    #[error("providers: {}", crate::config::NO_PROVIDER)]
    NoProvider,
    /// The Kerberos acceptor could not be built (keytab unreadable, no key for the service
    /// principal, `KRB5_KTNAME` naming another keytab).
    #[error("auth.kerberos: {0}")]
    Kerberos(String),
}

/// Builds the Kerberos acceptor of `[auth.kerberos]` (feature `kerberos`), once per process.
///
/// Here, at start-up, because building it may set `KRB5_KTNAME` for the whole process (the only
/// way `libgssapi` 0.11 lets MIT krb5 find the keytab without `unsafe`; `docs/kerberos.md`), and
/// because a keytab without the configured key must stop the start, not fail every request.
pub fn wire_kerberos(settings: &Settings) -> Result<(), BuildError> {
    #[cfg(feature = "kerberos")]
    if let Some(k) = &settings.auth.kerberos {
        k.install()
            .map_err(|e| BuildError::Kerberos(e.to_string()))?;
        tracing::info!(
            target: "pfgate::auth",
            keytab = %k.keytab.display(),
            service_principal = k.service_principal.as_deref().unwrap_or("(any in the keytab)"),
            "Kerberos acceptor ready"
        );
    }
    #[cfg(not(feature = "kerberos"))]
    let _ = settings;
    Ok(())
}

/// Opens the configured store to serve from: a SQLite file is locked, owned by this process or
/// shared as `store.shared_file` says ([`FileUse`]).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, BuildError> {
    let how = if settings.store.shared_file {
        FileUse::Shared
    } else {
        FileUse::Owned
    };
    open_store_as(&settings.store, how).await
}

/// Opens the store `[store]` names (what `pfgate users` needs, without the rest of a server). A
/// SQLite file is not locked: these commands make no provider calls, and must work beside the
/// server that owns the file.
pub async fn open_store_with(store: &StoreSettings) -> Result<Arc<dyn Store>, BuildError> {
    open_store_as(store, FileUse::Unlocked).await
}

/// Opens the store `[store]` names, a SQLite file locked as `how` says.
async fn open_store_as(store: &StoreSettings, how: FileUse) -> Result<Arc<dyn Store>, BuildError> {
    let key = match &store.key {
        KeySource::File(p) => {
            SecretKey::from_file(p).map_err(|e| BuildError::Key(e.to_string()))?
        }
        KeySource::Env(v) => SecretKey::from_env(v).map_err(|e| BuildError::Key(e.to_string()))?,
        KeySource::Ephemeral => SecretKey::generate(),
    };
    let opened: Arc<dyn Store> = match (&store.postgres, &store.path) {
        (Some(pg), _) => Arc::new(PostgresStore::connect(pg, key).await?),
        (None, Some(path)) => Arc::new(SqliteStore::open_as(path, key, how).await.map_err(
            |e| match &e {
                StoreError::Unavailable(u) if matches!(u.cause, Cause::FileInUse { .. }) => {
                    BuildError::StoreInUse(e)
                }
                _ => BuildError::Store(e),
            },
        )?),
        (None, None) => Arc::new(SqliteStore::in_memory(key).await?),
    };
    Ok(opened)
}

/// The users file the settings name (the embedded demo one in demo mode).
pub fn directory(settings: &Settings) -> Result<Directory, BuildError> {
    Ok(match &settings.directory {
        DirectorySource::EmbeddedDemo => Directory::demo()?,
        DirectorySource::File(p) => Directory::from_file(p)?,
        DirectorySource::Empty => Directory::default(),
    })
}

/// The store record a users-file entry describes.
pub fn record_of(u: &crate::store::directory::User) -> Result<UserRecord, StoreError> {
    let mut r = UserRecord::new(u.username.clone());
    r.first_name = u.first_name.clone();
    r.last_name = u.last_name.clone();
    r.email = u.email.clone();
    r.user_group = u.group.clone();
    r.phone = Phone {
        country_code: u.country_code.clone(),
        number: u.phone.clone(),
        extension: u.extension.clone(),
    };
    r.mode = u.mode();
    r.enabled = u.enabled;
    r.disabled_behavior = u.disabled_behavior();
    if !u.pin.is_empty() {
        r.pin_hash = Some(
            crate::store::secrets::hash_pin(&u.pin)
                .map_err(|e| StoreError::unavailable_while("hashing a PIN", Cause::Secrets(e)))?,
        );
    }
    r.oath_secret = (!u.oath_secret.is_empty()).then(|| u.oath_secret.clone());
    r.static_token = (!u.static_token.is_empty()).then(|| u.static_token.clone());
    r.external_id = crate::store::normalize_external_id(&u.external_id);
    Ok(r)
}

/// Adds the users of `directory` that the store does not hold yet (and their blocks). Existing
/// users are left as they are, so restarting never overwrites changes made through the SDK. Several
/// instances sharing a database may seed at once: a user another one added meanwhile is left to it.
pub async fn seed(store: &dyn Store, directory: &Directory) -> Result<usize, StoreError> {
    let mut added = 0;
    for u in directory.users() {
        if store.get_user(&u.username).await?.is_some() {
            continue;
        }
        match store.add_user(&record_of(u)?).await {
            Err(StoreError::Duplicate(_)) => continue,
            other => other?,
        }
        if u.blocked {
            store
                .block_user(&u.username, &u.blocked_reason, "seed")
                .await?;
        }
        added += 1;
    }
    Ok(added)
}

/// The provider the settings describe: a [`Router`] over the named providers; in demo mode without
/// providers, the scripted one of the users file. Outside demo mode a configuration without
/// providers is refused ([`BuildError::NoProvider`]): the scripted provider is never a silent
/// default.
pub fn provider(
    settings: &Settings,
    directory: &Directory,
) -> Result<Arc<dyn crate::providers::Provider>, BuildError> {
    provider_keeping(settings, directory, HashMap::new())
}

/// As [`provider`], with `kept` providers used as they are instead of being built again.
fn provider_keeping(
    settings: &Settings,
    directory: &Directory,
    mut kept: HashMap<String, Arc<dyn crate::providers::Provider>>,
) -> Result<Arc<dyn crate::providers::Provider>, BuildError> {
    if settings.providers.is_empty() {
        if !settings.demo {
            return Err(BuildError::NoProvider);
        }
        return Ok(Arc::new(ScriptedProvider::from_directory(directory)));
    }
    let mut named: HashMap<String, Arc<dyn crate::providers::Provider>> = HashMap::new();
    for (name, p) in &settings.providers {
        if let Some(running) = kept.remove(name) {
            named.insert(name.clone(), running);
            continue;
        }
        let cx = crate::providers::BuildContext {
            name,
            auth_timeout: settings.engine.auth_timeout,
            directory,
        };
        let built = p
            .build(&cx)
            .map_err(|e| BuildError::Provider(name.clone(), e.to_string()))?;
        named.insert(name.clone(), built);
    }
    let router = Router::new(settings.routes.clone(), &named, settings.breaker)
        .map_err(|e| BuildError::Provider("routes".into(), e.to_string()))?;
    Ok(Arc::new(router))
}

/// Logs [`Settings::warnings`] (a loosened secure default, a `fail_mode = "safe"` route) at start
/// and at every reload: a setting that can turn a provider outage or an unknown user into a `true`
/// must not go unnoticed.
fn warn_loosened(settings: &Settings) {
    for w in settings.warnings() {
        tracing::warn!(target: "pfgate::engine", "{w}");
    }
}

/// Builds the engine the settings describe.
pub async fn build_engine(settings: &Settings) -> Result<Engine, BuildError> {
    // First: it may write the process environment, which is best done before anything else runs.
    wire_kerberos(settings)?;
    warn_loosened(settings);
    let directory = directory(settings)?;
    let store = open_store(settings).await?;
    let added = seed(store.as_ref(), &directory).await?;
    if added > 0 {
        tracing::info!(users = added, "seeded the store from the users file");
    }
    let provider = provider(settings, &directory)?;
    let primary = match &settings.primary_auth {
        Some(ldap) => Some(Arc::new(
            crate::engine::primary::PrimaryAuth::new(ldap.clone())
                .map_err(|e| BuildError::Primary(e.to_string()))?,
        )),
        None => None,
    };
    Ok(Engine::new(store, provider, settings.engine.clone()).with_primary(primary))
}

/// The engine a reload swaps in (the store and the calls in flight carried over from `engine`):
/// the users file is read again and its new users added to the store (existing ones are left as
/// they are, as at start-up); the providers are rebuilt only when `[providers]`, `[[routes]]`,
/// `[breaker]` or, for the scripted provider, the users file changed, so circuit breakers keep
/// their state across a reload that did not touch them.
pub async fn rebuild_engine(
    settings: &Settings,
    old: &Settings,
    engine: &Engine,
) -> Result<Engine, BuildError> {
    warn_loosened(settings);
    let directory = directory(settings)?;
    let unchanged_providers = !settings.providers.is_empty()
        && settings.providers == old.providers
        && settings.routes == old.routes
        && settings.breaker == old.breaker;
    let provider = if unchanged_providers {
        engine.provider().clone()
    } else {
        // An OIDC step-up provider whose own settings did not change is kept as it runs: built
        // again it could not bind its listener a second time (the reload would be refused), and
        // its pending step-ups (links already delivered) would be lost.
        let kept = settings
            .providers
            .iter()
            .filter(|(name, p)| {
                matches!(p, ProviderSettings::Oidc(_))
                    && old.providers.iter().any(|(n, o)| n == name && o == p)
            })
            .filter_map(|(name, _)| Some((name.clone(), engine.provider().member(name)?)))
            .collect();
        provider_keeping(settings, &directory, kept)?
    };
    let primary = match &settings.primary_auth {
        Some(ldap) => Some(Arc::new(
            crate::engine::primary::PrimaryAuth::new(ldap.clone())
                .map_err(|e| BuildError::Primary(e.to_string()))?,
        )),
        None => None,
    };
    let added = seed(engine.store().as_ref(), &directory).await?;
    if added > 0 {
        tracing::info!(users = added, "reload: added new users from the users file");
    }
    Ok(engine.reconfigured(provider, settings.engine.clone(), primary))
}
