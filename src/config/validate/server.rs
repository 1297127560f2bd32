//! `[server]`: the listeners, the TLS certificate and the trusted proxies.

use std::net::SocketAddr;

use super::Check;
use crate::config::file::ServerSection;
use crate::config::settings::TlsSource;
use crate::net::IpNet;

/// The validated `[server]` section.
pub(super) struct Listeners {
    /// TLS listener.
    pub(super) tls_listen: Option<SocketAddr>,
    /// Its certificate.
    pub(super) tls: TlsSource,
    /// Plain-HTTP listener.
    pub(super) plain_listen: Option<SocketAddr>,
    /// Peers whose forwarded headers are believed.
    pub(super) trusted_proxies: Vec<IpNet>,
}

/// Checks `[server]`: at least one listener, files for TLS, plain HTTP on loopback unless allowed.
pub(super) fn server(c: &mut Check<'_>, s: &ServerSection) -> Listeners {
    let tls_listen = address(c, "server.listen", &s.listen);
    let plain_listen = address(c, "server.plain_listen", &s.plain_listen);

    let mut tls = TlsSource::SelfSigned;
    if tls_listen.is_some() {
        match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => {
                let (cert, key) = (c.resolve(cert), c.resolve(key));
                for (k, p) in [("server.tls_cert", &cert), ("server.tls_key", &key)] {
                    if !p.is_file() {
                        c.problem(k, format!("the file {} does not exist", p.display()));
                    }
                }
                tls = TlsSource::Files { cert, key };
            }
            _ => c.problem(
                "server.tls_cert",
                "server.listen needs server.tls_cert and server.tls_key (PEM files); \
                 `pfgate serve --demo` runs with a generated certificate instead",
            ),
        }
    }
    if tls_listen.is_none() && plain_listen.is_none() {
        c.problem(
            "server.listen",
            "no listener: set server.listen (TLS) and/or server.plain_listen",
        );
    }
    if let Some(addr) = plain_listen {
        if !addr.ip().is_loopback() && !s.plain_allow_non_loopback {
            c.problem(
                "server.plain_listen",
                format!(
                    "{addr} is not a loopback address; plain HTTP carries credentials in clear, so \
                     set server.plain_allow_non_loopback = true only if a TLS proxy sits in front"
                ),
            );
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, p) in s.trusted_proxies.iter().enumerate() {
        match p.parse::<IpNet>() {
            Ok(n) => trusted_proxies.push(n),
            Err(e) => c.problem(&format!("server.trusted_proxies[{i}]"), e),
        }
    }
    Listeners {
        tls_listen,
        tls,
        plain_listen,
        trusted_proxies,
    }
}

/// A listener address, if given and valid.
fn address(c: &mut Check<'_>, key: &str, v: &Option<String>) -> Option<SocketAddr> {
    v.as_ref().and_then(|s| match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.problem(
                key,
                format!("'{s}' is not an address:port such as 0.0.0.0:443"),
            );
            None
        }
    })
}
