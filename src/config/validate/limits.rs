//! `[limits]`: what a single caller may cost. Every value has a range; a value outside it is a
//! problem and the default stands in for it while the rest of the file is checked.

use std::time::Duration;

use super::{in_range, secs, Check, Wording};
use crate::config::file::LimitsSection;
use crate::config::settings::Limits;

/// Checks `[limits]`.
pub(super) fn limits(c: &mut Check<'_>, l: &LimitsSection) -> Limits {
    let d = Limits::default();
    let transport = Limits {
        max_body_bytes: in_range(
            c,
            l.max_body_bytes,
            d.max_body_bytes,
            1024..=64 * 1024 * 1024,
            "limits.max_body_bytes",
            Wording::Between,
        ),
        max_xml_depth: in_range(
            c,
            l.max_xml_depth,
            d.max_xml_depth,
            8..=1024,
            "limits.max_xml_depth",
            Wording::Between,
        ),
        max_xml_elements: in_range(
            c,
            l.max_xml_elements,
            d.max_xml_elements,
            100..=1_000_000,
            "limits.max_xml_elements",
            Wording::Between,
        ),
        header_timeout: secs(
            c,
            l.header_timeout_secs,
            d.header_timeout,
            "limits.header_timeout_secs",
        ),
        body_timeout: secs(
            c,
            l.body_timeout_secs,
            d.body_timeout,
            "limits.body_timeout_secs",
        ),
        tls_handshake_timeout: secs(
            c,
            l.tls_handshake_timeout_secs,
            d.tls_handshake_timeout,
            "limits.tls_handshake_timeout_secs",
        ),
        max_connections: match l.max_connections {
            Some(0) => {
                c.problem("limits.max_connections", "must be at least 1");
                d.max_connections
            }
            Some(v) => v,
            None => d.max_connections,
        },
        shutdown_grace: match l.shutdown_grace_secs {
            Some(v) if v > 3600 => {
                c.problem(
                    "limits.shutdown_grace_secs",
                    format!("{v} is out of range: it must be 0..=3600"),
                );
                d.shutdown_grace
            }
            Some(v) => Duration::from_secs(v),
            None => d.shutdown_grace,
        },
        ..d
    };
    sign_ins(c, l, transport)
}

/// `d` with the limits that protect the password checks and the connection table from callers
/// who have not signed in (the `[limits]` keys after `shutdown_grace_secs`, checked after them).
fn sign_ins(c: &mut Check<'_>, l: &LimitsSection, d: Limits) -> Limits {
    Limits {
        password_check_threads: in_range(
            c,
            l.password_check_threads,
            d.password_check_threads,
            1..=64,
            "limits.password_check_threads",
            Wording::OutOfRange,
        ),
        password_check_queue: in_range(
            c,
            l.password_check_queue,
            d.password_check_queue,
            1..=100_000,
            "limits.password_check_queue",
            Wording::OutOfRange,
        ),
        failed_sign_ins_per_address: in_range(
            c,
            l.failed_sign_ins_per_address,
            d.failed_sign_ins_per_address,
            1..=1_000_000,
            "limits.failed_sign_ins_per_address",
            Wording::OutOfRange,
        ),
        failed_sign_in_window: secs(
            c,
            l.failed_sign_in_window_secs,
            d.failed_sign_in_window,
            "limits.failed_sign_in_window_secs",
        ),
        max_unauthenticated_per_address: in_range(
            c,
            l.max_unauthenticated_connections_per_address,
            d.max_unauthenticated_per_address,
            1..=1_000_000,
            "limits.max_unauthenticated_connections_per_address",
            Wording::OutOfRange,
        ),
        unauthenticated_idle: secs(
            c,
            l.unauthenticated_idle_secs,
            d.unauthenticated_idle,
            "limits.unauthenticated_idle_secs",
        ),
        reserved_connections_percent: in_range(
            c,
            l.reserved_connections_percent,
            d.reserved_connections_percent,
            0..=90,
            "limits.reserved_connections_percent",
            Wording::OutOfRange,
        ),
        audited_refusals_per_minute: in_range(
            c,
            l.audited_refusals_per_source_per_minute,
            d.audited_refusals_per_minute,
            1..=1_000_000,
            "limits.audited_refusals_per_source_per_minute",
            Wording::OutOfRange,
        ),
        ..d
    }
}
