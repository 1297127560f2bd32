//! `pfgate healthcheck`: one plain-HTTP `GET` of a health endpoint, exit 0 on `200`.
//!
//! The container image is `FROM scratch`: it holds no shell and no curl, so a Docker
//! `HEALTHCHECK`, a GitHub Actions service's `--health-cmd` or a Kubernetes `exec` probe can only
//! run pfgate itself. This is deliberately tiny: plain `http://` only (the probe runs inside the
//! container, next to the listener), one request, a hard timeout, and the status line is all it
//! reads — it never follows a redirect and never prints what the server sent.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The image's default: the mock's plain listener.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/healthz";

/// How much of the answer is read: the status line fits many times over.
const MAX_READ: usize = 1024;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not a plain `http://host[:port]/path` URL.
    #[error("{0}")]
    Url(String),
    /// No connection, or the connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Nothing within the timeout.
    #[error("no answer within {0} s")]
    Timeout(u64),
    /// An answer that is not `200`.
    #[error("answered: {0}")]
    Status(String),
}

/// One `GET`; `Ok` only for a `200` status line.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let (authority, path) = split(url)?;
    let secs = timeout.as_secs();
    tokio::time::timeout(timeout, exchange(&authority, &path))
        .await
        .map_err(|_| ProbeError::Timeout(secs))?
}

async fn exchange(authority: &str, path: &str) -> Result<(), ProbeError> {
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while answer.len() < MAX_READ && !answer.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let status_line = answer
        .split(|&b| b == b'\r')
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    let mut parts = status_line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(()),
        _ if status_line.is_empty() => Err(ProbeError::Status("nothing".into())),
        _ => Err(ProbeError::Status(
            status_line
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect(),
        )),
    }
}

/// `http://host[:port][/path]` into (`host:port`, `/path`).
fn split(url: &str) -> Result<(String, String), ProbeError> {
    let parsed = url::Url::parse(url).map_err(|e| ProbeError::Url(e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(ProbeError::Url(
            "only plain http:// (the probe runs next to the listener; TLS listeners have the plain admin listener's /healthz)".into(),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| ProbeError::Url("no host".into()))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok((authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_probed() {
        assert!(matches!(
            split("https://127.0.0.1/healthz"),
            Err(ProbeError::Url(_))
        ));
        assert!(matches!(split("not a url"), Err(ProbeError::Url(_))));
        let (a, p) = split("http://127.0.0.1:8080/healthz").unwrap();
        assert_eq!((a.as_str(), p.as_str()), ("127.0.0.1:8080", "/healthz"));
        let (a, p) = split("http://[::1]/x?y=1").unwrap();
        assert_eq!((a.as_str(), p.as_str()), ("[::1]:80", "/x?y=1"));
    }
}
