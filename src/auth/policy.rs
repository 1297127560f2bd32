//! Authorization: which principals may call, and which operations each may call — the
//! "PhoneFactor Admins" group of MFA Server, made finer.
//!
//! Operations fall into four groups. A principal is allowed a list of groups; `all` means every
//! group. Anything not listed is refused with 403.

use serde::Deserialize;

use crate::pfwssdk::Operation;

/// An operation group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationGroup {
    /// Second-factor authentication and its second steps, plus the health probes.
    Authentication,
    /// Reading the directory.
    DirectoryRead,
    /// Changing the directory (including blocks and one-time bypasses).
    DirectoryWrite,
    /// Server-wide settings, administrators, activation and everything else.
    Administration,
    /// Every group.
    All,
}

impl OperationGroup {
    /// The group an operation belongs to.
    pub fn of(op: Operation) -> OperationGroup {
        let n = op.name();
        let starts = |p: &str| n.starts_with(p);
        if starts("PfAuthUser")
            || starts("CombinedAuthUser")
            || starts("PrimaryAuthUser")
            || starts("Validate")
            || starts("TestSecurity")
            || starts("TestMasterConnection")
            || n == "CanonicalizeUser"
            || n == "UserExists"
        {
            OperationGroup::Authentication
        } else if starts("GetUserSettings")
            || starts("FindUsers")
            || n == "GetPhone"
            || n == "GetUserDevices"
            || n == "UserIsBlocked"
            || starts("GetSecurityQuestions")
        {
            OperationGroup::DirectoryRead
        } else if starts("AddUser")
            || starts("Change")
            || n == "DeleteUser"
            || n == "Enable"
            || n == "Disable"
            || n == "DisabledBehavior"
            || n == "BlockUser"
            || n == "UnblockUser"
            || starts("OneTimeBypass")
            || n == "ResetVoiceprint"
            || n == "DeleteUserDevice"
        {
            OperationGroup::DirectoryWrite
        } else {
            OperationGroup::Administration
        }
    }
}

/// One allowed principal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRule {
    /// `DOMAIN\user`, a UPN, a certificate-mapped name, or `anonymous`; case-insensitive.
    pub name: String,
    /// Groups this principal may call.
    pub allow: Vec<OperationGroup>,
}

/// The allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<PrincipalRule>,
}

/// Why a call is refused. `Display` is the audit trail's wording (the variant as written here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The principal is not on the list at all.
    #[error("NotListed")]
    NotListed,
    /// The principal may not call this operation's group.
    #[error("GroupNotAllowed({0:?})")]
    GroupNotAllowed(OperationGroup),
}

impl Refusal {
    /// The `reason` label of `pfgate_caller_refusals_total` this refusal counts under.
    pub fn metric_label(&self) -> crate::telemetry::metrics::RefusalReason {
        match self {
            Refusal::NotListed => crate::telemetry::metrics::RefusalReason::NotAllowed,
            Refusal::GroupNotAllowed(_) => {
                crate::telemetry::metrics::RefusalReason::OperationNotAllowed
            }
        }
    }
}

impl Policy {
    /// A policy from rules.
    pub fn new(rules: Vec<PrincipalRule>) -> Self {
        Self { rules }
    }

    /// Everyone may call everything (demo mode, explicit anonymous access).
    pub fn open() -> Self {
        Self {
            rules: vec![PrincipalRule {
                name: "*".into(),
                allow: vec![OperationGroup::All],
            }],
        }
    }

    /// True when `principal` is on the list.
    pub fn knows(&self, principal: &str) -> bool {
        self.rule(principal).is_some()
    }

    fn rule(&self, principal: &str) -> Option<&PrincipalRule> {
        self.rules
            .iter()
            .find(|r| r.name == "*" || r.name.eq_ignore_ascii_case(principal))
    }

    /// Whether `principal` may call `op`.
    pub fn check(&self, principal: &str, op: Operation) -> Result<(), Refusal> {
        let rule = self.rule(principal).ok_or(Refusal::NotListed)?;
        let group = OperationGroup::of(op);
        if rule
            .allow
            .iter()
            .any(|g| *g == OperationGroup::All || *g == group)
        {
            Ok(())
        } else {
            Err(Refusal::GroupNotAllowed(group))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_group_and_the_main_ones_are_right() {
        use OperationGroup::*;
        for (op, g) in [
            (Operation::PfAuthUser_5, Authentication),
            (Operation::ValidateOathCode, Authentication),
            (Operation::TestSecurity, Authentication),
            (Operation::GetUserSettings_3, DirectoryRead),
            (Operation::FindUsers_4, DirectoryRead),
            (Operation::AddUser_3, DirectoryWrite),
            (Operation::OneTimeBypass2, DirectoryWrite),
            (Operation::ChangePin, DirectoryWrite),
            (Operation::GetAdministrator_2, Administration),
            (Operation::GetUserPortalSettings, Administration),
        ] {
            assert_eq!(OperationGroup::of(op), g, "{}", op.name());
        }
    }

    #[test]
    fn checks_principals_and_groups() {
        let p = Policy::new(vec![PrincipalRule {
            name: "CONTOSO\\mimservice".into(),
            allow: vec![OperationGroup::Authentication],
        }]);
        assert_eq!(
            p.check("contoso\\MIMSERVICE", Operation::PfAuthUser_5),
            Ok(())
        );
        assert_eq!(
            p.check("contoso\\mimservice", Operation::AddUser_3),
            Err(Refusal::GroupNotAllowed(OperationGroup::DirectoryWrite))
        );
        assert_eq!(
            p.check("CONTOSO\\eve", Operation::PfAuthUser_5),
            Err(Refusal::NotListed)
        );
        assert!(Policy::open()
            .check("anyone", Operation::DeleteUser)
            .is_ok());
    }

    #[test]
    fn refusals_read_as_their_variant_and_count_under_their_label() {
        use crate::telemetry::metrics::RefusalReason as R;
        let group = Refusal::GroupNotAllowed(OperationGroup::DirectoryWrite);
        assert_eq!(group.to_string(), format!("{group:?}"));
        assert_eq!(group.metric_label(), R::OperationNotAllowed);
        assert_eq!(Refusal::NotListed.to_string(), "NotListed");
        assert_eq!(Refusal::NotListed.metric_label(), R::NotAllowed);
    }
}
