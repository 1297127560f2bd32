//! What every provider's settings and client need, written once: reading a secret from the
//! environment or a file ([`secret`]), checking a service's base URL and making its HTTPS client
//! ([`http`]), and collecting settings problems as `(key, reason)` with the build error that
//! carries them ([`settings`]).
//!
//! Providers differ in what they talk to, not in how a secret is read or how a plain-HTTP URL to
//! a non-loopback host is refused; keeping those rules here means a fix (a permission warning, a
//! proxy that must not see loopback traffic) reaches every provider at once.

pub(crate) mod http;
// Also read by the PostgreSQL store for its password (`store.password_env` / `password_file`).

pub(crate) mod settings;

pub use settings::BuildError;
