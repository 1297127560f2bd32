//! The step-up pages: small, server-rendered, accessible HTML with no external assets (start,
//! done, denied, fraud recorded, expired). Every value is HTML-escaped; the only style is one inline
//! `<style>` allowed by its hash in the Content-Security-Policy, so no script or other inline
//! content can run even if escaping were ever missed.

use aws_lc_rs::digest;
use base64::Engine as _;

use super::Request;
use crate::providers::display::clean;

/// The one stylesheet (allowed by hash in the CSP).
pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#111;background:#fff}h1{font-size:1.4rem}dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem}dt{font-weight:600}button{font-size:1rem;padding:.6rem 1rem;margin:.3rem .5rem .3rem 0;border-radius:.3rem;border:1px solid #333;cursor:pointer}button.primary{background:#0b5cad;color:#fff;border-color:#0b5cad}button:focus{outline:3px solid #f90;outline-offset:2px}.warn{color:#8a1c00}";

/// `'sha256-…'` of [`STYLE`], for `style-src`.
pub(crate) fn style_hash() -> String {
    let d = digest::digest(&digest::SHA256, STYLE.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    )
}

/// HTML-escapes text for element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// What is asked: the caller's words cleaned of hidden characters ([`clean`]), the IP only if it
/// was one (`Request::ip`), all HTML-escaped.
fn facts(r: &Request) -> String {
    let app = clean(&r.application);
    let app = if app.is_empty() {
        "(not named by the application)".to_string()
    } else {
        app
    };
    format!(
        "<dl><dt>Application</dt><dd id=\"application\">{}</dd><dt>User</dt><dd id=\"user\">{}</dd><dt>Requested from IP address</dt><dd id=\"ip\">{}</dd></dl>",
        esc(&app),
        esc(&clean(&r.username)),
        esc(&r.ip)
    )
}

/// The start page: what is asked, and three answers. `action` is the form's own URL path.
pub(crate) fn start(r: &Request, action: &str, csrf: &str) -> String {
    page(
        "Confirm your sign-in",
        &format!(
            "<h1>Confirm your sign-in</h1><p>An application asks you to confirm that it is really you. Check the details: if you did not just try to sign in or activate a role, choose <strong>This wasn't me</strong>.</p>{}\
<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button class=\"primary\" type=\"submit\" name=\"action\" value=\"continue\" id=\"continue\">Continue to sign in</button>\
<button type=\"submit\" name=\"action\" value=\"deny\" id=\"deny\">Deny</button>\
<button type=\"submit\" name=\"action\" value=\"fraud\" id=\"fraud\" class=\"warn\">This wasn't me</button></form>\
<p>Continuing takes you to your organisation's sign-in page, where you sign in again with multi-factor authentication.</p>",
            facts(r),
            esc(action),
            esc(csrf)
        ),
    )
}

/// Signed in and verified.
pub(crate) fn done(r: &Request) -> String {
    page(
        "Sign-in confirmed",
        &format!(
            "<h1 id=\"outcome\" data-outcome=\"approved\">Sign-in confirmed</h1>{}<p>You can close this page and return to the application.</p>",
            facts(r)
        ),
    )
}

/// Refused: by the person, or because the sign-in did not prove what was needed.
pub(crate) fn denied(r: Option<&Request>, why: &str) -> String {
    page(
        "Sign-in not confirmed",
        &format!(
            "<h1 id=\"outcome\" data-outcome=\"denied\">Sign-in not confirmed</h1>{}<p id=\"reason\">{}</p><p>The request was refused. If you need access, start again from the application.</p>",
            r.map(facts).unwrap_or_default(),
            esc(why)
        ),
    )
}

/// "This wasn't me" recorded.
pub(crate) fn fraud(r: &Request) -> String {
    page(
        "Reported",
        &format!(
            "<h1 id=\"outcome\" data-outcome=\"fraud\">Thank you — reported</h1>{}<p>The request was refused and recorded as not yours. Your security team can see this report. Consider changing your password.</p>",
            facts(r)
        ),
    )
}

/// Unknown, used or expired link or sign-in.
pub(crate) fn expired() -> String {
    page(
        "Link expired",
        "<h1 id=\"outcome\" data-outcome=\"expired\">This link has expired or was already used</h1><p>Each link works once and only for a short time. If you still need access, start again from the application.</p>",
    )
}

/// Something was wrong with the request itself (a form without its token, a missing parameter).
pub(crate) fn bad_request(why: &str) -> String {
    page(
        "Request refused",
        &format!(
            "<h1 id=\"outcome\" data-outcome=\"refused\">Request refused</h1><p id=\"reason\">{}</p>",
            esc(why)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_hostile_application_names() {
        let r = Request {
            request_id: "1".into(),
            username: "a\"<b>".into(),
            application: "<script>alert(1)</script>".into(),
            ip: "10.0.0.1".into(),
            issued_unix: 0,
            external_id: None,
        };
        let html = start(&r, "/stepup/l/x", "c\"sr<f");
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&quot;&lt;b&gt;"));
        assert!(html.contains("value=\"c&quot;sr&lt;f\""));
    }
}
