//! The leaf of the house: small types and functions every layer may use and that use nothing of
//! pfgate's own — the clock ([`clock`]) and phone numbers ([`phone`]). Providers, the engine and
//! the store meet on these without importing one another. Also the canonical user name
//! ([`username`]), files written at rest ([`at_rest`]), secrets read from the environment or a file
//! ([`secret`]) and the record of skipped tests ([`test_skips`]).

pub mod at_rest;
pub mod clock;
pub mod phone;
pub mod secret;
#[doc(hidden)]
pub mod test_skips;
pub mod username;
