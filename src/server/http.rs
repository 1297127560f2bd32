//! Moved to [`crate::gateway`]; these names stay here while the server's other modules migrate.

pub use crate::gateway::{audit_refusal_summary, handle, AppState, ConnInfo, HttpResponse};
