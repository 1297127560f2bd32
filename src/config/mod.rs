//! Configuration: the TOML file model, its defaults, and validation into [`Settings`].
//!
//! Every problem is reported as `file:key: reason` and all of them are gathered before giving up, so
//! an administrator fixes a file in one pass (`pfgate check-config FILE`). After validation nothing
//! downstream sees raw strings.
//!
//! - `file.rs`: the file as written, one serde struct per section;
//! - `validate/`: one check per section, each turning its section into settings and adding its
//!   problems to one list (in a fixed order, which is the order they are printed in);
//! - `settings.rs`: the validated types everything else is built from;
//! - `providers.rs`: the `[providers.NAME]` tables, their kinds and checks;
//! - `problems.rs`: `file:key: reason` and the collector.

use std::net::IpAddr;
use std::path::Path;

mod file;
pub mod placeholders;
mod problems;
mod providers;
mod settings;
mod validate;

#[cfg(test)]
mod tests;

pub use file::{
    AdminSection, AuditSection, AuthSection, BreakerSection, DirectorySection, EngineSection,
    FileConfig, KerberosSection, LimitsSection, NtlmAccountSection, NtlmSection,
    PrimaryAuthSection, ServerSection, StoreSection,
};
pub use problems::{ConfigErrors, ConfigProblem};
pub use providers::ProviderSettings;
#[cfg(feature = "kerberos")]
pub use settings::KerberosAuthSettings;
pub use settings::{
    ntlm_account_hash, AdminSettings, AuthSettings, DirectorySource, EngineSettings, KeySource,
    Limits, Lockout, NtlmSettings, Settings, StoreSettings, TlsSource, UnknownUsers,
    DEFAULT_ADMIN_LISTEN, DEMO_LISTEN, NO_PROVIDER,
};
pub use validate::validate;

use crate::net::IpNet;

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let file = parse_file(path)?;
    // A site `pfgate init` wrote is not usable until its placeholders are filled: list exactly
    // those (the other problems they cause would only hide them).
    let unfilled = placeholders::placeholders(path);
    if !unfilled.is_empty() {
        return Err(ConfigErrors(unfilled));
    }
    validate(path, file)
}

/// Reads a configuration file and validates only its `[store]`: for the commands that touch only
/// the store (`users import`, `users export`), which must work from a file holding nothing else
/// (docs/migration.md, step 1). The other sections must still parse (unknown keys are errors).
pub fn load_store(path: &Path) -> Result<StoreSettings, ConfigErrors> {
    let file = parse_file(path)?;
    validate::store_only(path, &file.store)
}

/// Reads and parses (without validating) a configuration file.
fn parse_file(path: &Path) -> Result<FileConfig, ConfigErrors> {
    let problem = |reason: String| {
        ConfigErrors(vec![ConfigProblem {
            file: path.to_path_buf(),
            key: String::new(),
            reason,
        }])
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read the file: {e}")))?;
    toml::from_str(&text).map_err(|e| {
        problem(format!(
            "not valid configuration TOML: {}",
            e.to_string().trim()
        ))
    })
}

/// True when `ip` is inside one of `nets`.
pub fn is_trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}
