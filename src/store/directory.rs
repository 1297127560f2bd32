//! The user directory as a users file describes it (`fixtures/demo.toml` is one), with the scripted
//! outcome each user's authentication has. This is the demo and test-double directory; the persistent
//! store replaces it for production use.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::pfwssdk::{AuthResult, Mode3};

/// What the scripted provider does when a user or number is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered and approved.
    #[default]
    Approve,
    /// Not answered.
    NoAnswer,
    /// The user hung up.
    HangUp,
    /// The user explicitly denied.
    Deny,
    /// The line was busy (answered as "not answered": CallResult 11).
    Busy,
    /// The user reported fraud (answered as a denial: CallResult 150, with the reason in the log).
    FraudReported,
    /// The provider could not place the call.
    Fail,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Username (UPN or `DOMAIN\user`); matched case-insensitively.
    pub username: String,
    /// First name.
    #[serde(default)]
    pub first_name: String,
    /// Last name.
    #[serde(default)]
    pub last_name: String,
    /// Email address.
    #[serde(default)]
    pub email: String,
    /// User group.
    #[serde(default)]
    pub group: String,
    /// Country calling code of the primary phone.
    #[serde(default)]
    pub country_code: String,
    /// National number of the primary phone.
    #[serde(default)]
    pub phone: String,
    /// Extension of the primary phone.
    #[serde(default)]
    pub extension: String,
    /// Authentication mode (wire literal of `Mode3`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What authentication does while disabled (`fail` or `succeed`).
    #[serde(default = "default_disabled")]
    pub disabled_behavior: String,
    /// Blocked.
    #[serde(default)]
    pub blocked: bool,
    /// Why blocked.
    #[serde(default)]
    pub blocked_reason: String,
    /// Scripted outcome.
    #[serde(default)]
    pub outcome: Outcome,
    /// Scripted delay before the outcome, in milliseconds (a person taking time to answer).
    #[serde(default)]
    pub delay_ms: u64,
    /// Outcomes of successive calls (first call, second call, …); the last one repeats. When set,
    /// it replaces `outcome` — e.g. `["no_answer", "approve"]`: the first call is not answered, the
    /// retry is approved.
    #[serde(default)]
    pub sequence: Vec<Outcome>,
    /// PIN to store (hashed) when the directory is loaded into the store.
    #[serde(default)]
    pub pin: String,
    /// OATH secret (base32) to store (encrypted).
    #[serde(default)]
    pub oath_secret: String,
    /// Static token to store (encrypted).
    #[serde(default)]
    pub static_token: String,
    /// The identity the organisation's IdP gives this person (Entra ID's `oid`, an OpenID Connect
    /// `sub`), for the OIDC step-up provider's `match = "external_id"`; compared without regard
    /// to case, unique in the file. Stored like every field here only when the user is added.
    #[serde(default)]
    pub external_id: String,
}

fn default_mode() -> String {
    "voiceCall".into()
}
fn default_disabled() -> String {
    "fail".into()
}
fn yes() -> bool {
    true
}

impl User {
    /// The mode as the contract enum.
    pub fn mode(&self) -> Mode3 {
        use crate::pfwssdk::wire::WireEnum;
        Mode3::from_literal(&self.mode).unwrap_or(Mode3::VoiceCall)
    }

    /// The disabled behaviour as the contract enum.
    pub fn disabled_behavior(&self) -> AuthResult {
        if self.disabled_behavior == "succeed" {
            AuthResult::Succeed
        } else {
            AuthResult::Fail
        }
    }
}

/// A phone-number rule for operations that carry the number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneRule {
    /// Digits the number ends with.
    pub suffix: String,
    /// What happens.
    pub outcome: Outcome,
    /// Delay before the outcome, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    phone_rules: Vec<PhoneRule>,
    #[serde(default)]
    default_phone_outcome: Outcome,
}

/// Why a users file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Not readable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid.
    #[error("{path}: {reason}")]
    Invalid {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// The directory: users by lower-cased username, and the phone rules.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: HashMap<String, User>,
    order: Vec<String>,
    phone_rules: Vec<PhoneRule>,
    default_phone_outcome: Outcome,
}

/// The embedded demo directory source.
pub const DEMO_TOML: &str = include_str!("../../fixtures/demo.toml");

impl Directory {
    /// The embedded demo directory.
    pub fn demo() -> Result<Self, DirectoryError> {
        Self::from_toml("fixtures/demo.toml (embedded)", DEMO_TOML)
    }

    /// Reads a users file.
    pub fn from_file(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    /// Parses a users file's text.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self, DirectoryError> {
        let invalid = |reason: String| DirectoryError::Invalid {
            path: origin.to_string(),
            reason,
        };
        let file: UsersFile =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
        Self::from_parts(
            origin,
            file.users,
            file.phone_rules,
            file.default_phone_outcome,
        )
    }

    /// A directory from parsed parts, validated as a users file is: the test double's scenarios
    /// (`src/mock/scenario.rs`) carry users and phone rules beside keys a users file does not have.
    pub fn from_parts(
        origin: &str,
        users_in: Vec<User>,
        phone_rules: Vec<PhoneRule>,
        default_phone_outcome: Outcome,
    ) -> Result<Self, DirectoryError> {
        let invalid = |reason: String| DirectoryError::Invalid {
            path: origin.to_string(),
            reason,
        };
        let mut users = HashMap::new();
        let mut order = Vec::new();
        // Normalised external id → the user who has it: one IdP identity, one user.
        let mut external_ids: HashMap<String, String> = HashMap::new();
        for mut u in users_in {
            use crate::pfwssdk::wire::WireEnum;
            // The one canonical form (src/core/username.rs), so the file cannot hold a name the SDK
            // would refuse or spell one user two ways.
            u.username = crate::core::username::canonical(&u.username)
                .map_err(|e| invalid(format!("user {:?}: {e}", u.username)))?;
            if Mode3::from_literal(&u.mode).is_none() {
                return Err(invalid(format!(
                    "user {}: unknown mode '{}'",
                    u.username, u.mode
                )));
            }
            if !matches!(u.disabled_behavior.as_str(), "fail" | "succeed") {
                return Err(invalid(format!(
                    "user {}: disabled_behavior must be fail or succeed",
                    u.username
                )));
            }
            if let Some(reason) = crate::store::external_id_problem(&u.external_id) {
                return Err(invalid(format!("user {}: {reason}", u.username)));
            }
            if let Some(id) = crate::store::normalize_external_id(&u.external_id) {
                if let Some(first) = external_ids.insert(id, u.username.clone()) {
                    return Err(invalid(format!(
                        "user {}: external_id is also user {first}'s (one identity maps to one \
                         user)",
                        u.username
                    )));
                }
            }
            let key = u.username.to_lowercase();
            if users.contains_key(&key) {
                return Err(invalid(format!("user {} appears twice", u.username)));
            }
            order.push(key.clone());
            users.insert(key, u);
        }
        Ok(Self {
            users,
            order,
            phone_rules,
            default_phone_outcome,
        })
    }

    /// The user with this name (case-insensitive).
    pub fn get(&self, username: &str) -> Option<&User> {
        self.users.get(&username.to_lowercase())
    }

    /// All users in file order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.order.iter().filter_map(|k| self.users.get(k))
    }

    /// The outcome for a phone number (digits are compared; other characters are ignored).
    pub fn phone_outcome(&self, number: &str) -> Outcome {
        self.phone_rule(number).0
    }

    /// Outcome and delay for a phone number.
    pub fn phone_rule(&self, number: &str) -> (Outcome, std::time::Duration) {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        self.phone_rules
            .iter()
            .find(|r| digits.ends_with(&r.suffix))
            .map(|r| (r.outcome, std::time::Duration::from_millis(r.delay_ms)))
            .unwrap_or((self.default_phone_outcome, std::time::Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_directory_has_the_documented_users() {
        let d = Directory::demo().unwrap();
        assert_eq!(
            d.get("ALICE@contoso.com").unwrap().outcome,
            Outcome::Approve
        );
        assert_eq!(d.get("bob@contoso.com").unwrap().outcome, Outcome::NoAnswer);
        assert!(d.get("carol@contoso.com").unwrap().blocked);
        assert_eq!(d.phone_outcome("425 555 0100"), Outcome::Approve);
        assert_eq!(d.phone_outcome("4255550111"), Outcome::NoAnswer);
        assert_eq!(d.phone_outcome("4255550105"), Outcome::HangUp);
    }

    #[test]
    fn refuses_bad_files() {
        assert!(Directory::from_toml("t", "[[users]]\nusername='a'\nmode='fax'").is_err());
        assert!(
            Directory::from_toml("t", "[[users]]\nusername='a'\n[[users]]\nusername='A'").is_err()
        );
        assert!(Directory::from_toml("t", "[[users]]\nname='a'").is_err());
    }

    #[test]
    fn external_ids_are_read_and_unique_whatever_their_case() {
        let d = Directory::from_toml(
            "t",
            "[[users]]\nusername='a'\nexternal_id='6F9619FF-8B86-D011-B42D-00C04FC964FF'\n\
             [[users]]\nusername='b'",
        )
        .unwrap();
        assert_eq!(
            d.get("a").unwrap().external_id,
            "6F9619FF-8B86-D011-B42D-00C04FC964FF"
        );
        assert_eq!(d.get("b").unwrap().external_id, "");
        let err = Directory::from_toml(
            "t",
            "[[users]]\nusername='a'\nexternal_id='6F9619FF-8B86-D011-B42D-00C04FC964FF'\n\
             [[users]]\nusername='b'\nexternal_id=' 6f9619ff-8b86-d011-b42d-00c04fc964ff'",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("user b: external_id is also user a's"),
            "{err}"
        );
        let err = Directory::from_toml("t", "[[users]]\nusername='a'\nexternal_id=\"x\\u0007y\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("control characters"), "{err}");
    }
}
