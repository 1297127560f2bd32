//! `[providers.<name>]` as one tagged enum, [`ProviderSettings`], and the trait each kind's
//! settings implement, [`ProviderConfig`]: what configuration parsing, `pfgate check-config` and
//! start-up need from a provider, asked in one place instead of matched on `kind` in three.
//!
//! **Adding a provider** is one file (its settings struct implementing [`ProviderConfig`], its
//! [`Provider`]) plus one line in the [`provider_settings!`] list below: the `kind` value, the
//! enum variant and the settings type. Parsing, the list of kinds in error messages, validation
//! and building all follow from that line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::common::settings::Problem;
use super::common::BuildError;
use super::scripted::ScriptedProvider;
use super::Provider;
use crate::store::directory::Directory;

/// What building a provider may need besides its own settings.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The provider's name (`[providers.<name>]`), for logs and audit.
    pub name: &'a str,
    /// The engine's deadline for one authentication (`engine.auth_timeout_secs`): the webhook
    /// tells it to the service, the OIDC step-up bounds its links by it.
    pub auth_timeout: Duration,
    /// The users file, for the scripted provider's outcomes.
    pub directory: &'a Directory,
}

/// One kind of provider's settings, as configured under `[providers.<name>]`.
pub trait ProviderConfig: Send + Sync {
    /// Makes relative file paths relative to `dir` (the configuration file's directory).
    fn resolve_relative_to(&mut self, dir: &Path);
    /// Every problem, as `(key, reason)` under `providers.<name>` for `pfgate check-config`.
    /// Secrets and certificate files are read, so a missing one is reported now.
    fn validate(&self) -> Vec<Problem>;
    /// The running provider.
    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError>;
}

impl<T: ProviderConfig + ?Sized> ProviderConfig for Box<T> {
    fn resolve_relative_to(&mut self, dir: &Path) {
        (**self).resolve_relative_to(dir);
    }
    fn validate(&self) -> Vec<Problem> {
        (**self).validate()
    }
    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        (**self).build(cx)
    }
}

/// `kind = "scripted"`: outcomes from the users file (demo, test double). It has no settings of
/// its own; other keys in its table are ignored, as they always were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptedSettings;

impl ProviderConfig for ScriptedSettings {
    fn resolve_relative_to(&mut self, _dir: &Path) {}
    fn validate(&self) -> Vec<Problem> {
        Vec::new()
    }
    fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(ScriptedProvider::from_directory(cx.directory)))
    }
}

/// The settings of `kind` from `table` (without its `kind` key), paths resolved against `base`.
fn parse_table<T: DeserializeOwned + ProviderConfig>(
    table: toml::Table,
    base: &Path,
) -> Result<T, String> {
    let mut settings: T = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    settings.resolve_relative_to(base);
    Ok(settings)
}

/// Declares [`ProviderSettings`] from one line per kind: `"kind" => Variant(SettingsType)`.
macro_rules! provider_settings {
    ($( $(#[doc = $doc:literal])* $kind:literal => $variant:ident($ty:ty), )*) => {
        /// One configured provider: `[providers.<name>]` by its `kind`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ProviderSettings {
            /// Outcomes from the users file (demo, test double): `kind = "scripted"`.
            Scripted,
            $( $(#[doc = $doc])* $variant($ty), )*
        }

        impl ProviderSettings {
            /// Every `kind` value, in the order error messages list them.
            pub const KINDS: &'static [&'static str] = &[$($kind,)* "scripted"];

            /// The settings of `kind` from `table`; `None` for a kind pfgate does not know.
            fn parse_kind(
                kind: &str,
                table: toml::Table,
                base: &Path,
            ) -> Option<Result<Self, String>> {
                match kind {
                    "scripted" => Some(Ok(Self::Scripted)),
                    $( $kind => Some(parse_table::<$ty>(table, base).map(Self::$variant)), )*
                    _ => None,
                }
            }

            /// The kind's settings, to validate or build.
            pub fn config(&self) -> &dyn ProviderConfig {
                match self {
                    Self::Scripted => &ScriptedSettings,
                    $( Self::$variant(s) => s, )*
                }
            }
        }
    };
}

provider_settings! {
    /// The webhook adapter: `kind = "webhook"`.
    "webhook" => Webhook(super::webhook::WebhookSettings),
    /// Duo Auth API v2: `kind = "duo"`.
    "duo" => Duo(super::duo::DuoSettings),
    /// Twilio Verify v2 (provider-checked SMS and voice codes): `kind = "twilio-verify"`.
    "twilio-verify" => Twilio(super::twilio::TwilioSettings),
    /// OpenID Connect step-up (Entra ID, any OIDC IdP): `kind = "oidc"`.
    "oidc" => Oidc(Box<super::oidc::OidcSettings>),
}

impl ProviderSettings {
    /// A `[providers.<name>]` table: its `kind` decides the settings type; relative paths are
    /// resolved against `base`. The error is the reason for `providers.<name>`.
    pub fn parse(mut table: toml::Table, base: &Path) -> Result<Self, String> {
        let kind = table.remove("kind");
        match kind.as_ref().and_then(|k| k.as_str()) {
            Some(kind) => Self::parse_kind(kind, table, base).unwrap_or_else(|| {
                Err(format!(
                    "kind '{kind}' is not one of {}",
                    Self::KINDS.join(", ")
                ))
            }),
            None => Err(format!("needs kind = {}", quoted_list(Self::KINDS))),
        }
    }

    /// The settings' problems ([`ProviderConfig::validate`]).
    pub fn validate(&self) -> Vec<Problem> {
        self.config().validate()
    }

    /// The running provider ([`ProviderConfig::build`]).
    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Arc<dyn Provider>, BuildError> {
        self.config().build(cx)
    }
}

/// `"a", "b" or "c"`.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|k| format!("\"{k}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_before() {
        assert_eq!(
            ProviderSettings::KINDS.join(", "),
            "webhook, duo, twilio-verify, oidc, scripted"
        );
        assert_eq!(
            quoted_list(ProviderSettings::KINDS),
            "\"webhook\", \"duo\", \"twilio-verify\", \"oidc\" or \"scripted\""
        );
    }

    #[test]
    fn unknown_and_missing_kinds_are_refused() {
        let table = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
        let base = Path::new("/etc/pfgate");
        assert_eq!(
            ProviderSettings::parse(table("kind = \"sms\""), base),
            Err("kind 'sms' is not one of webhook, duo, twilio-verify, oidc, scripted".into())
        );
        assert!(ProviderSettings::parse(table("x = 1"), base)
            .is_err_and(|e| e.starts_with("needs kind = \"webhook\"")));
        assert_eq!(
            ProviderSettings::parse(table("kind = \"scripted\"\nanything = 1"), base),
            Ok(ProviderSettings::Scripted)
        );
    }
}
