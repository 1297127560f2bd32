//! `pfgate store …` (the store itself: rotating the secrets key), and opening the store a
//! configuration names for the commands that work on it without serving (`users …`, `store …`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use super::CliError;
use crate::config;

/// `pfgate store …`
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Change the secrets key: re-seal every OATH secret and static token under the new key and
    /// record its check value, in one transaction. Stop every pfgate instance that uses the store
    /// first, then give them all the new key (docs/ha.md, "Rotating the secrets key").
    RotateKey {
        /// Configuration naming the store and its current key.
        #[arg(long)]
        config: PathBuf,
        /// File holding the new key (as `store.secrets_key_file`).
        #[arg(
            long,
            required_unless_present = "new_key_env",
            conflicts_with = "new_key_env"
        )]
        new_key_file: Option<PathBuf>,
        /// Environment variable holding the new key (as `store.secrets_key_env`).
        #[arg(long)]
        new_key_env: Option<String>,
    },
}

/// Runs `pfgate store …`.
pub(super) async fn run(action: StoreAction) -> Result<ExitCode, CliError> {
    match action {
        StoreAction::RotateKey {
            config,
            new_key_file,
            new_key_env,
        } => rotate_key(&config, new_key_file, new_key_env).await,
    }
}

/// Opens the store `config` names. Only `[store]` is validated: these commands serve nothing,
/// so a file holding only `[store]` is enough (docs/migration.md, step 1).
pub(super) async fn store_for(config: &Path) -> Result<Arc<dyn crate::store::Store>, CliError> {
    let settings = config::load_store(config)?;
    if settings.path.is_none() && settings.postgres.is_none() {
        return Err(CliError::config(
            config,
            "store.path",
            "the configuration has no store file or database; users imported into memory \
             would be lost",
        ));
    }
    crate::server::app::open_store_with(&settings)
        .await
        .map_err(CliError::failed)
}

/// `pfgate store rotate-key`: exit 0 rotated, 1 configuration problem, 2 the store or a key refused
/// (the current key is checked against the database's key check value before anything changes).
async fn rotate_key(
    config: &Path,
    new_key_file: Option<PathBuf>,
    new_key_env: Option<String>,
) -> Result<ExitCode, CliError> {
    use crate::store::secrets::SecretKey;
    let settings = config::load(config)?;
    if settings.store.postgres.is_none() && settings.store.path.is_none() {
        return Err(CliError::config(
            config,
            "store",
            "the configuration names no store file or database to rotate",
        ));
    }
    let new_key = match (&new_key_file, &new_key_env) {
        (Some(file), _) => SecretKey::from_file(file),
        (None, Some(var)) => SecretKey::from_env(var),
        // clap requires one of them; said all the same, as a problem with what was given.
        (None, None) => {
            return Err(CliError::rejected(
                "pfgate",
                "give the new key with --new-key-file or --new-key-env",
            ))
        }
    };
    let new_key = new_key.map_err(|e| CliError::failed(format!("new key: {e}")))?;
    let store = crate::server::app::open_store(&settings)
        .await
        .map_err(CliError::failed)?;
    let n = store.rotate_key(new_key).await.map_err(|e| {
        CliError::failed(format!(
            "rotating the secrets key: {e} (nothing was changed)"
        ))
    })?;
    println!(
        "secrets key rotated: {n} users' secrets re-sealed, the store now accepts only the \
         new key; give it to every instance (store.secrets_key_file or \
         store.secrets_key_env) and start them"
    );
    Ok(ExitCode::SUCCESS)
}
