//! The HTTPS side every HTTP provider shares: which base URLs are acceptable (https, or plain
//! http to a loopback address only — tests and a local relay — never credentials in the URL) and
//! how the client is made (no redirects, bounded timeouts, no proxy for loopback traffic).

use std::time::Duration;

use url::Url;

use crate::providers::{ProviderError, ProviderErrorKind};

/// A checked `base_url`.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    /// The URL as parsed.
    pub(crate) url: Url,
    /// Its host is `127.0.0.0/8`, `[::1]` or `localhost`: plain http is allowed and no proxy is
    /// used.
    pub(crate) loopback: bool,
}

/// What one provider accepts in a `base_url` beyond the common rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BaseUrlRules {
    /// Appended in parentheses to the refusal of a user name or password in the URL: where the
    /// credentials go instead. Empty for none.
    pub(crate) credentials_hint: &'static str,
    /// `Some(why)`: scheme, host and port only — no path either (Duo signs the request path, so a
    /// prefix would break every signature); `why` ends the message. `None`: a path prefix is
    /// allowed (the endpoints are appended to it).
    pub(crate) root_only: Option<&'static str>,
}

/// True for `127.0.0.0/8`, `[::1]` and `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks a `base_url`: https, or http to a loopback address; a host; no credentials, query or
/// fragment; and `rules`. The error is the reason for `pfgate check-config`.
pub(crate) fn check_base_url(s: &str, rules: BaseUrlRules) -> Result<BaseUrl, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(format!("'{s}' has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(match rules.credentials_hint {
            "" => "must not contain a user name or password".to_string(),
            hint => format!("must not contain a user name or password ({hint})"),
        });
    }
    match rules.root_only {
        Some(why) if url.query().is_some() || url.fragment().is_some() || url.path() != "/" => {
            return Err(format!(
                "'{s}' must be scheme, host and port only (no path, query or fragment): {why}"
            ));
        }
        None if url.query().is_some() || url.fragment().is_some() => {
            return Err(format!("'{s}' must not have a query or fragment"));
        }
        _ => {}
    }
    let loopback = is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "'{s}' must use https:// (plain http:// is allowed only to 127.0.0.1, [::1] or \
                 localhost)"
            ))
        }
        other => return Err(format!("'{s}': the scheme must be https, not {other}")),
    }
    Ok(BaseUrl { url, loopback })
}

/// The client builder every provider starts from: redirects never followed (an answer is read
/// where it was asked), `connect_timeout` and `timeout` set, the user agent `pfgate/<version>
/// <agent>`, https only unless `loopback` — and then no proxy from the environment, which must
/// not see (or break) loopback traffic. The provider adds its own TLS material and builds it.
pub(crate) fn client_builder(
    agent: &str,
    connect_timeout: Duration,
    timeout: Duration,
    loopback: bool,
) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(format!("pfgate/{} {agent}", env!("CARGO_PKG_VERSION")))
        .https_only(!loopback);
    if loopback {
        builder.no_proxy()
    } else {
        builder
    }
}

/// A transport failure as a [`ProviderError`]: `{prefix}: could not connect (…)`, `broken
/// response body`, `request failed` — the innermost cause, clipped, in parentheses. With
/// `timeout`, a timeout reads `{prefix}: no answer within N s`; without, `{prefix}: timed out
/// (…)`. The URL's query is never in the text (the prefix names the request).
pub(crate) fn transport_error(
    e: &reqwest::Error,
    prefix: &str,
    timeout: Option<Duration>,
) -> ProviderError {
    let (what, kind) = if e.is_timeout() {
        if let Some(t) = timeout {
            return ProviderError::new(
                ProviderErrorKind::Timeout,
                format!("{prefix}: no answer within {} s", t.as_secs()),
            );
        }
        ("timed out", ProviderErrorKind::Timeout)
    } else if e.is_connect() {
        ("could not connect", ProviderErrorKind::Unreachable)
    } else if e.is_body() || e.is_decode() {
        ("broken response body", ProviderErrorKind::BadAnswer)
    } else {
        ("request failed", ProviderErrorKind::Unreachable)
    };
    let mut detail = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    let detail: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect();
    if detail.is_empty() {
        ProviderError::new(kind, format!("{prefix}: {what}"))
    } else {
        ProviderError::new(kind, format!("{prefix}: {what} ({detail})"))
    }
}

/// The longest cause taken into a transport failure's text (characters).
const MAX_DETAIL_CHARS: usize = 200;

/// A response body over `max` bytes, as a [`ProviderError`].
pub(crate) fn oversized(prefix: &str, max: usize) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::BadAnswer,
        format!("{prefix}: response body over {max} bytes"),
    )
}

/// Reads `response`'s body, at most `max` bytes; a larger body or a broken one is the error.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    prefix: &str,
    max: usize,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, ProviderError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(&e, prefix, timeout))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(oversized(prefix, max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
