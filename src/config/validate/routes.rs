//! `[[routes]]`, `[breaker]` and `[audit]`: how authentications reach the configured providers,
//! when a failing provider is skipped, and where the audit trail goes.

use std::time::Duration;

use super::Check;
use crate::config::file::{AuditSection, BreakerSection};
use crate::config::ProviderSettings;
use crate::providers::router::{BreakerSettings, RouteSettings};

/// Checks `[[routes]]` against the providers configured: every name a route gives exists, and
/// providers and routes come together.
pub(super) fn routes(
    c: &mut Check<'_>,
    routes: &[RouteSettings],
    providers: &[(String, ProviderSettings)],
) {
    let names: Vec<&str> = providers.iter().map(|(n, _)| n.as_str()).collect();
    for (i, r) in routes.iter().enumerate() {
        for (k, reason) in r.validate(&names) {
            c.problem(&format!("routes[{i}].{k}"), reason);
        }
    }
    if !providers.is_empty() && routes.is_empty() {
        c.problem(
            "routes",
            "providers are configured but no [[routes]] entry sends authentications to them",
        );
    }
    if providers.is_empty() && !routes.is_empty() {
        c.problem(
            "routes",
            "routes name providers, but no [providers.NAME] is configured",
        );
    }
}

/// `[breaker]`, with the router's defaults for what is not given (a threshold of 0 included).
pub(super) fn breaker(b: &BreakerSection) -> BreakerSettings {
    let d = BreakerSettings::default();
    BreakerSettings {
        failure_threshold: b
            .failure_threshold
            .filter(|t| *t > 0)
            .unwrap_or(d.failure_threshold),
        cooldown: b
            .cooldown_secs
            .map(Duration::from_secs)
            .unwrap_or(d.cooldown),
    }
}

/// `[audit]`: the trail file relative to the configuration, rotation defaults filled in.
pub(super) fn audit(
    c: &Check<'_>,
    a: &AuditSection,
) -> crate::telemetry::audit_trail::AuditTrailSettings {
    crate::telemetry::audit_trail::AuditTrailSettings {
        file: c.resolve(&a.file),
        max_bytes: a
            .max_bytes
            .unwrap_or(crate::telemetry::audit_trail::DEFAULT_MAX_BYTES),
        keep_files: a
            .keep_files
            .unwrap_or(crate::telemetry::audit_trail::DEFAULT_KEEP_FILES),
        max_total_bytes: a.max_total_bytes.unwrap_or(0),
    }
}
