//! The leaf of the house: small types and functions every layer may use and that use nothing of
//! pfgate's own — the clock ([`clock`]) and phone numbers ([`phone`]). Providers, the engine and
//! the store meet on these without importing one another.

pub mod clock;
pub mod phone;
