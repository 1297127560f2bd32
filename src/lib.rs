//! # pfgate
//!
//! A drop-in replacement for the Azure Multi-Factor Authentication Server **Web Service SDK**
//! (`PfWsSdk.asmx`), which stopped serving MFA on 30 September 2024 while MIM, the AD FS adapter,
//! the User Portal and admin scripts still call it. pfgate speaks the SDK exactly as the original did
//! (SOAP 1.1 and 1.2, the same WSDL, the same 105 operations) so a deployment migrates by changing
//! one URL.
//!
//! The path of a request, one module per stage:
//!
//! ```text
//! server (TCP, TLS, HTTP/1.1, limits) ─► soap (envelope, dispatch, faults)
//!   ─► pfwssdk (typed request) ─► engine (MFA Server semantics) ─► pfwssdk (typed response)
//!   ─► soap (ASMX-exact envelope)
//! ```
//!
//! Data flows one way: the SOAP layer knows nothing of providers, the engine nothing of SOAP.

pub mod app;
pub mod auth;
pub mod cli;
pub mod cli_docs;
pub mod config;
pub mod core;
pub mod engine;
pub mod gateway;
pub mod healthcheck;
mod init;
pub mod mim;
pub mod mock;
pub mod net;
pub mod pfwssdk;
pub mod providers;
pub mod reload;
pub mod sdk_client;
pub mod server;
pub mod service;
pub mod store;
mod telemetry;
pub mod testing;
pub mod users_csv;
pub mod users_import;

/// Runs last among the library's unit tests (libtest starts tests in name order) and prints what
/// skipped and why, past the output capture (see `test_skips`).
#[cfg(test)]
mod zz_skip_summary {
    #[test]
    fn zz_skip_summary() {
        crate::core::test_skips::print_summary(std::time::Duration::from_millis(200));
    }
}
