//! # pfgate
//!
//! A drop-in replacement for the Azure Multi-Factor Authentication Server **Web Service SDK**
//! (`PfWsSdk.asmx`), which stopped serving MFA on 30 September 2024 while MIM, the AD FS adapter,
//! the User Portal and admin scripts still call it. pfgate speaks the SDK exactly as the original did
//! (SOAP 1.1 and 1.2, the same WSDL, the same 105 operations) so a deployment migrates by changing
//! one URL.
//!
//! The request's path and the layers, lowest first (a module uses only those below it; the
//! architecture test in `tests/integration/architecture.rs` checks it, docs/architecture.md says
//! why):
//!
//! ```text
//! core ─ pfwssdk (contract + SOAP) ─ telemetry ─ net ─ store ─ providers ─ engine ─ auth
//!   ─ config ─ gateway (the SDK as a service) ─ server (listeners, reload) ─ mock (a layer
//!   around the gateway) ─ sdk_client ─ site ─ cli ─ testing
//! ```
//!
//! What the crate exports is what an embedding test or tool needs; the rest is private.

#![forbid(unsafe_code)]

pub mod auth;
mod cli;
pub mod config;
mod core;
pub mod engine;
mod gateway;
pub mod mock;
pub mod net;
pub mod pfwssdk;
pub mod providers;
mod sdk_client;
pub mod server;
mod site;
pub mod store;
mod telemetry;
pub mod testing;

pub use cli::{run, Cli, CliError};

/// Runs last among the library's unit tests (libtest starts tests in name order) and prints what
/// skipped and why, past the output capture (see `test_skips`).
#[cfg(test)]
mod zz_skip_summary {
    #[test]
    fn zz_skip_summary() {
        crate::core::test_skips::print_summary(std::time::Duration::from_millis(200));
    }
}
