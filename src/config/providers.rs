//! `[providers.NAME]`: each table's `kind` picks the provider settings it is read into, and each
//! provider's settings check themselves. Kept in one file so a provider kind is added in one place.

use std::collections::BTreeMap;

use super::validate::Check;

/// One configured provider.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderSettings {
    /// Outcomes from the users file (demo, test double).
    Scripted,
    /// The webhook adapter.
    Webhook(crate::providers::webhook::WebhookSettings),
    /// Duo Auth API v2.
    Duo(crate::providers::duo::DuoSettings),
    /// Twilio Verify v2 (provider-checked SMS and voice codes).
    Twilio(crate::providers::twilio::TwilioSettings),
    /// OpenID Connect step-up (Entra ID, any OIDC IdP).
    Oidc(Box<crate::providers::oidc::OidcSettings>),
}

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
        let mut table = table.clone();
        let kind = table.remove("kind");
        let parsed = match kind.as_ref().and_then(|k| k.as_str()) {
            Some("scripted") => Ok(ProviderSettings::Scripted),
            Some("webhook") => toml::Value::Table(table)
                .try_into::<crate::providers::webhook::WebhookSettings>()
                .map(|mut w| {
                    w.resolve_relative_to(c.base());
                    ProviderSettings::Webhook(w)
                })
                .map_err(|e| e.to_string()),
            Some("duo") => toml::Value::Table(table)
                .try_into::<crate::providers::duo::DuoSettings>()
                .map(|mut d| {
                    d.resolve_relative_to(c.base());
                    ProviderSettings::Duo(d)
                })
                .map_err(|e| e.to_string()),
            Some("twilio-verify") => toml::Value::Table(table)
                .try_into::<crate::providers::twilio::TwilioSettings>()
                .map(|mut t| {
                    t.resolve_relative_to(c.base());
                    ProviderSettings::Twilio(t)
                })
                .map_err(|e| e.to_string()),
            Some("oidc") => toml::Value::Table(table)
                .try_into::<crate::providers::oidc::OidcSettings>()
                .map(|mut o| {
                    o.resolve_relative_to(c.base());
                    ProviderSettings::Oidc(Box::new(o))
                })
                .map_err(|e| e.to_string()),
            Some(other) => Err(format!(
                "kind '{other}' is not one of webhook, duo, twilio-verify, oidc, scripted"
            )),
            None => Err(
                "needs kind = \"webhook\", \"duo\", \"twilio-verify\", \"oidc\" or \"scripted\""
                    .into(),
            ),
        };
        match parsed {
            Ok(p) => {
                let issues = match &p {
                    ProviderSettings::Scripted => Vec::new(),
                    ProviderSettings::Webhook(w) => w.validate(),
                    ProviderSettings::Duo(d) => d.validate(),
                    ProviderSettings::Twilio(t) => t.validate(),
                    ProviderSettings::Oidc(o) => o.validate(),
                };
                for (k, reason) in issues {
                    c.problem(&format!("{key}.{k}"), reason);
                }
                providers.push((name.clone(), p));
            }
            Err(reason) => c.problem(&key, reason.trim().to_string()),
        }
    }
    providers
}
