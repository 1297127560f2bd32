//! `[providers.NAME]`: each table's `kind` picks the provider settings it is read into, and each
//! provider's settings check themselves. The kinds are declared with the providers
//! (`providers::settings`), so a provider kind is added in one place.

use std::collections::BTreeMap;

use super::validate::Check;

/// One configured provider: defined with the providers (one enum arm per kind).
pub use crate::providers::ProviderSettings;

/// Reads and checks every `[providers.NAME]` table, in name order. A table that does not read is
/// left out (its problem is reported); one that reads but has problems is kept, so routes naming
/// it are not reported as well.
pub(super) fn providers(
    c: &mut Check<'_>,
    tables: &BTreeMap<String, toml::Table>,
) -> Vec<(String, ProviderSettings)> {
    let mut providers = Vec::new();
    for (name, table) in tables {
        let key = format!("providers.{name}");
        match ProviderSettings::parse(table.clone(), c.base()) {
            Ok(p) => {
                for (k, reason) in p.validate() {
                    c.problem(&format!("{key}.{k}"), reason);
                }
                providers.push((name.clone(), p));
            }
            Err(reason) => c.problem(&key, reason.trim().to_string()),
        }
    }
    providers
}
