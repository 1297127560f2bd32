//! `[admin]`: the admin listener (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;

use super::Check;
use crate::config::file::AdminSection;
use crate::config::settings::{AdminSettings, DEFAULT_ADMIN_LISTEN};

/// `[admin]`: on by default on loopback; off the loopback only with a bearer token, because
/// metrics and readiness name providers, routes and traffic (no user data, but a map of the
/// service for anyone who can reach it).
pub(super) fn admin(c: &mut Check<'_>, a: &AdminSection) -> AdminSettings {
    if a.enabled == Some(false) {
        return AdminSettings::default();
    }
    let listen = match &a.listen {
        None => DEFAULT_ADMIN_LISTEN,
        Some(s) => match s.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                c.problem(
                    "admin.listen",
                    format!("'{s}' is not an address:port such as 127.0.0.1:9473"),
                );
                return AdminSettings::default();
            }
        },
    };
    let token = match &a.token_file {
        None => None,
        Some(p) => match std::fs::read_to_string(c.resolve(p)) {
            Ok(t) if t.trim().len() >= 16 => Some(t.trim().to_string()),
            Ok(_) => {
                c.problem(
                    "admin.token_file",
                    "the token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                );
                None
            }
            Err(e) => {
                c.problem(
                    "admin.token_file",
                    format!("cannot read {}: {e}", c.resolve(p).display()),
                );
                None
            }
        },
    };
    if !listen.ip().is_loopback() && token.is_none() && a.token_file.is_none() {
        c.problem(
            "admin.listen",
            format!(
                "{listen} is not a loopback address: set admin.token_file (a bearer token every \
                 request must send) or listen on 127.0.0.1"
            ),
        );
    }
    AdminSettings {
        listen: Some(listen),
        required: a.listen.is_some(),
        token,
    }
}
