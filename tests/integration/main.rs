//! Integration tests: a real pfgate on a real socket, called over TLS by real clients.
//!
//! One test binary (one link step) with a module per concern. Interop tests that need Mono or zeep
//! skip when the tool is missing, unless `PFGATE_REQUIRE_INTEROP=1` (set by `.ci/run`), in which
//! case a missing tool fails the test.

// Tests assert by unwrapping: a panic with the value is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod architecture;
mod call;
mod callers;
mod cli;
mod cli_docs;
mod container;
mod contract;
mod endpoint;
mod engine;
mod example_config;
mod ha;
mod help_pages;
mod hostile;
mod init;
mod interop;
#[cfg(feature = "kerberos")]
mod kerberos;
mod ldap;
mod mock;
mod mock_ci;
mod mock_faults;
mod mock_interop;
mod mock_replay;
mod mock_testing;
mod ntlm;
mod oidc;
mod prodpath;
mod providers_duo;
mod providers_e2e;
mod providers_fail_modes;
mod providers_twilio;
mod providers_webhook;
mod reload;
mod security_engine;
mod security_transport;
mod standalone;
mod store_owner;
mod support;
mod users_import;
mod windows;

/// Runs last (libtest starts tests in name order) and prints, past libtest's output capture, how
/// many tests skipped for want of a tool or database and how to provide it (`pfgate::testing::test_skips`).
#[test]
fn zz_skip_summary() {
    pfgate::testing::test_skips::print_summary(std::time::Duration::from_millis(500));
}
