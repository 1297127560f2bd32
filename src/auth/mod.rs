//! Caller authentication: who is calling pfgate, proven the way the old callers prove it
//! (NTLM/Negotiate, client certificates, Basic, a trusted proxy's identity header), and whether that
//! principal may call the operation.

pub mod basic;
pub mod client_cert;
#[cfg(feature = "kerberos")]
pub mod kerberos;
pub mod ntlm;
pub mod policy;
pub mod refusal;
pub mod spnego;
