//! Integration tests: a real pfgate on a real socket, called over TLS by real clients.
//!
//! One test binary (one link step) with a module per concern. Interop tests that need Mono or zeep
//! skip when the tool is missing, unless `PFGATE_REQUIRE_INTEROP=1` (set by `.ci/run`), in which
//! case a missing tool fails the test.

// Tests assert by unwrapping: a panic with the value is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod call;
mod callers;
mod cli;
mod contract;
mod endpoint;
mod engine;
mod ha;
mod hostile;
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
mod providers_duo;
mod providers_e2e;
mod providers_twilio;
mod providers_webhook;
mod reload;
mod support;
mod users_import;
mod windows;
