//! `pfgate mim check`: reads MIM's `MfaSettings.xml`, says what it finds, and shows (or, with
//! `--write`, makes) the one change that points MIM at pfgate.
//!
//! The file lives in `C:\Program Files\Microsoft Forefront Identity Manager\2010\Service` and is
//! hand-edited by administrators, so the edit is made on the text itself — only the elements named
//! below change, every other byte (comments, order, indentation, line endings) stays as it was —
//! and a backup is written first. The XML is still parsed (quick-xml, DTDs refused) to read it and
//! to make sure the result is well-formed before anything is written.
//!
//! What MIM does with it (docs/protocol.md §7.1): with `<LOCMFA>true</LOCMFA>` MIM calls the on-premises
//! Web Service SDK at `<LOCMFASRV>` as `<Username>`; the cloud SDK keys (`LICENSE_KEY`,
//! `GROUP_KEY`, `CERT_PASSWORD`, `CertFilePath`) must then be empty; `<CustomPhoneProvider>`
//! (a DLL) takes precedence over both and has to go for the SDK to be used; `<DefaultCountryCode>`
//! completes numbers stored without a country code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Elements the check reads.
const CLOUD_KEYS: [&str; 4] = ["LICENSE_KEY", "GROUP_KEY", "CERT_PASSWORD", "CertFilePath"];

/// Why the file cannot be checked or changed.
#[derive(Debug, thiserror::Error)]
pub enum MimError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// `--url` is not an address pfgate would serve: `--write` would point MIM at nothing.
    #[error("--url {url}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: UrlProblem,
    },
    /// Not a well-formed XML document (or one with a DTD).
    #[error("{path}: not a usable MfaSettings.xml: {reason}")]
    Xml {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why a URL cannot be pfgate's PfWsSdk address in MIM's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    /// Not an absolute URL.
    #[error("not an absolute URL (e.g. {EXAMPLE_URL})")]
    NotAUrl,
    /// Not `https`: MIM would send its service account's credentials and the users' phone numbers
    /// in clear, and pfgate's listener for callers is TLS.
    #[error("the scheme must be https (MIM's credentials and users' numbers cross it), e.g. {EXAMPLE_URL}")]
    NotHttps,
    /// No host name.
    #[error("no host (e.g. {EXAMPLE_URL})")]
    NoHost,
    /// The path does not end in `/PfWsSdk.asmx`, the only path pfgate answers on.
    #[error("the path must end in /PfWsSdk.asmx (any case), e.g. {EXAMPLE_URL}")]
    WrongPath,
    /// A user name or password in the URL: MIM authenticates with `<Username>` and Windows
    /// authentication, and a password would sit in clear in MfaSettings.xml.
    #[error("the URL must not hold a user name or password")]
    Credentials,
    /// A query or fragment: MIM appends nothing, and the SDK is served without one.
    #[error("the URL must not have a query (?...) or fragment (#...)")]
    QueryOrFragment,
}

/// The shape of a PfWsSdk URL, in messages.
const EXAMPLE_URL: &str = "https://mfa.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";

/// Checks that `url` is one pfgate would serve: https, a host, no credentials or query, a path
/// ending in `/PfWsSdk.asmx` (matched case-insensitively, as the server does).
pub fn check_url(url: &str) -> Result<(), UrlProblem> {
    let parsed = url::Url::parse(url.trim()).map_err(|_| UrlProblem::NotAUrl)?;
    if parsed.scheme() != "https" {
        return Err(UrlProblem::NotHttps);
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlProblem::NoHost);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(UrlProblem::QueryOrFragment);
    }
    if !parsed
        .path()
        .to_ascii_lowercase()
        .ends_with("/pfwssdk.asmx")
    {
        return Err(UrlProblem::WrongPath);
    }
    Ok(())
}

/// What the check found and the edits it proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Human-readable findings, one per line.
    pub findings: Vec<String>,
    /// (element, old value or None when absent, new value).
    pub changes: Vec<(String, Option<String>, String)>,
    /// The file's text with the changes applied.
    pub updated: String,
    /// What is still missing that the check cannot fill in by itself (the element and what to
    /// give): the file does not work for MIM until these are done.
    pub missing: Vec<(String, String)>,
}

/// The text content of the first `<name>` element (empty for `<name/>`), with its byte range in
/// `text` (the content, or the whole self-closing tag).
fn element(text: &str, name: &str) -> Option<(String, std::ops::Range<usize>, bool)> {
    let open = format!("<{name}>");
    if let Some(start) = text.find(&open) {
        let content_start = start + open.len();
        let close = format!("</{name}>");
        let end = content_start + text[content_start..].find(&close)?;
        return Some((
            text[content_start..end].trim().to_string(),
            content_start..end,
            false,
        ));
    }
    for empty in [format!("<{name}/>"), format!("<{name} />")] {
        if let Some(start) = text.find(&empty) {
            return Some((String::new(), start..start + empty.len(), true));
        }
    }
    None
}

/// Escapes element text.
fn escape(s: &str) -> String {
    crate::pfwssdk::soap::xml::escape(s)
}

/// Checks that `text` is well-formed XML without a DTD.
fn well_formed(text: &str, path: &Path) -> Result<(), MimError> {
    let limits = crate::pfwssdk::soap::xml::XmlLimits::default();
    crate::pfwssdk::soap::xml::parse(text.as_bytes(), limits)
        .map(|_| ())
        .map_err(|e| MimError::Xml {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// The findings and the edits that answer them, gathered element by element (in the order they
/// are printed).
#[derive(Default)]
struct Plan {
    findings: Vec<String>,
    /// Byte range of the body and its replacement.
    edits: Vec<(std::ops::Range<usize>, String)>,
    changes: Vec<(String, Option<String>, String)>,
    missing: Vec<(String, String)>,
}

/// Reads `path` and works out the change to `url` (pfgate's PfWsSdk URL) and, when given, to
/// `username` (the MIM Service account MIM calls as).
pub fn check(path: &Path, url: &str, username: Option<&str>) -> Result<Report, MimError> {
    check_url(url).map_err(|problem| MimError::Url {
        url: url.to_string(),
        problem,
    })?;
    let raw = std::fs::read(path).map_err(|source| MimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Windows editors may write a UTF-8 byte-order mark; it is kept as it was.
    let text = String::from_utf8(raw).map_err(|_| MimError::Xml {
        path: path.to_path_buf(),
        reason: "not UTF-8".into(),
    })?;
    let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
    well_formed(body, path)?;

    let mut plan = Plan::default();
    let current = describe(&mut plan, body, url, username);
    clear_cloud_settings(&mut plan, body);
    let mut wanted = vec![
        ("LOCMFA", current.locmfa, "true"),
        ("LOCMFASRV", current.server, url),
    ];
    if let Some(want) = username {
        wanted.push(("Username", current.user, want));
    }
    set_wanted(&mut plan, body, path, wanted)?;

    // Apply from the end so earlier ranges stay valid.
    plan.edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut updated = body.to_string();
    for (range, replacement) in plan.edits {
        updated.replace_range(range, &replacement);
    }
    well_formed(&updated, path)?;
    let offset = text.len() - body.len();
    let updated = format!("{}{updated}", &text[..offset]);
    Ok(Report {
        findings: plan.findings,
        changes: plan.changes,
        updated,
        missing: plan.missing,
    })
}

/// The values of the elements [`check`] may set, as the file has them.
struct Current {
    locmfa: Option<String>,
    server: Option<String>,
    user: Option<String>,
}

/// What the file says about where and as whom MIM calls, and its country code.
fn describe(plan: &mut Plan, body: &str, url: &str, username: Option<&str>) -> Current {
    let get = |name: &str| element(body, name);
    let findings = &mut plan.findings;
    let locmfa = get("LOCMFA").map(|e| e.0);
    match locmfa.as_deref() {
        Some(v) if v.eq_ignore_ascii_case("true") => findings.push(
            "LOCMFA is true: MIM calls an on-premises Web Service SDK (MFA Server or pfgate)."
                .into(),
        ),
        Some(v) => findings.push(format!(
            "LOCMFA is '{v}': MIM uses the retired cloud SDK (pf_auth), which no longer answers."
        )),
        None => findings.push(
            "LOCMFA is absent: MIM uses the retired cloud SDK (pf_auth), which no longer answers."
                .into(),
        ),
    }
    let server = get("LOCMFASRV").map(|e| e.0);
    match server.as_deref() {
        Some(s) if s == url => findings.push(format!("LOCMFASRV already points at {url}.")),
        Some(s) if !s.is_empty() => findings.push(format!(
            "LOCMFASRV is {s}: MIM calls that server (the old MFA Server stopped serving MFA on 30 September 2024)."
        )),
        _ => findings.push("LOCMFASRV is not set.".into()),
    }
    let user = get("Username").map(|e| e.0);
    describe_username(plan, user.as_deref(), username);
    let findings = &mut plan.findings;
    if get("username").is_some_and(|e| !e.0.is_empty()) {
        findings.push(
            "username (lower case) is the retired cloud SDK's setting (any value); LOCMFA reads Username."
                .into(),
        );
    }
    match get("DefaultCountryCode").map(|e| e.0).filter(|c| !c.is_empty()) {
        Some(c) => findings.push(format!(
            "DefaultCountryCode is {c}: numbers stored without a country code are completed with it by MIM."
        )),
        None => findings.push("DefaultCountryCode is not set: numbers without a country code are sent as stored.".into()),
    }
    Current {
        locmfa,
        server,
        user,
    }
}

/// `<Username>` as found (`user`) against `--username`: missing when neither gives one.
fn describe_username(plan: &mut Plan, user: Option<&str>, username: Option<&str>) {
    let findings = &mut plan.findings;
    match (user.filter(|u| !u.is_empty()), username) {
        (Some(u), None) => findings.push(format!(
            "Username is {u}: MIM authenticates as this account; it must exist and be enabled in pfgate's directory (the numbers come from MIM)."
        )),
        (Some(u), Some(want)) if u == want => findings.push(format!(
            "Username is {u}: MIM authenticates as this account; it must exist and be enabled in pfgate's directory."
        )),
        (Some(u), Some(want)) => findings.push(format!(
            "Username is {u}: it becomes {want} (--username)."
        )),
        (None, Some(want)) => findings.push(format!(
            "Username is not set: it becomes {want} (--username)."
        )),
        (None, None) => {
            findings.push(
                "Username is not set: MIM (LOCMFA) calls as the account named there; give it with --username (the MIM Service account's UPN, e.g. mimservice@contoso.com)."
                    .into(),
            );
            plan.missing.push((
                "Username".to_string(),
                "--username <the MIM Service account's UPN>".to_string(),
            ));
        }
    }
}

/// Empties what takes precedence over the SDK or belongs to the cloud SDK: a custom phone
/// provider DLL and the cloud SDK's keys.
fn clear_cloud_settings(plan: &mut Plan, body: &str) {
    let custom = element(body, "CustomPhoneProvider");
    if let Some((dll, range, _)) = custom.as_ref().filter(|c| !c.0.is_empty()) {
        plan.findings.push(format!(
            "CustomPhoneProvider is {dll}: a custom phone provider DLL takes precedence over the SDK; it is cleared so MIM calls pfgate."
        ));
        plan.edits.push((range.clone(), String::new()));
        plan.changes.push((
            "CustomPhoneProvider".into(),
            Some(dll.clone()),
            String::new(),
        ));
    }
    for key in CLOUD_KEYS {
        if let Some((value, range, _)) = element(body, key).filter(|e| !e.0.is_empty()) {
            plan.findings.push(format!(
                "{key} holds a cloud SDK setting; with LOCMFA it must be empty and is cleared."
            ));
            // The value itself may be a secret (CERT_PASSWORD): never echoed.
            let shown = if key == "CERT_PASSWORD" {
                "(a value, not shown)".to_string()
            } else {
                value
            };
            plan.edits.push((range, String::new()));
            plan.changes.push((key.into(), Some(shown), String::new()));
        }
    }
}

/// Sets each `(element, current value, wanted value)` that differs: in place, or added before the
/// root element's end tag.
fn set_wanted(
    plan: &mut Plan,
    body: &str,
    path: &Path,
    wanted: Vec<(&str, Option<String>, &str)>,
) -> Result<(), MimError> {
    for (name, current, want) in wanted {
        if current.as_deref() == Some(want) {
            continue;
        }
        match element(body, name) {
            Some((_, range, true)) => {
                plan.edits
                    .push((range, format!("<{name}>{}</{name}>", escape(want))));
            }
            Some((_, range, false)) => plan.edits.push((range, escape(want))),
            None => {
                // Added before the root element's end tag.
                let Some(at) = body.rfind("</") else {
                    return Err(MimError::Xml {
                        path: path.to_path_buf(),
                        reason: "no root end tag to add elements before".into(),
                    });
                };
                plan.edits
                    .push((at..at, format!("<{name}>{}</{name}>\r\n", escape(want))));
            }
        }
        plan.changes.push((name.into(), current, want.to_string()));
    }
    Ok(())
}

/// The report as printed by `pfgate mim check`.
pub fn render(report: &Report, path: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}:", path.display());
    for f in &report.findings {
        let _ = writeln!(out, "  - {f}");
    }
    if report.changes.is_empty() && report.missing.is_empty() {
        let _ = writeln!(out, "No change needed: MIM already calls pfgate.");
        return out;
    }
    for (name, give) in &report.missing {
        let _ = writeln!(out, "Still to do: {name} is not set (give {give}).");
    }
    if report.changes.is_empty() {
        return out;
    }
    let _ = writeln!(out, "The change that points MIM at pfgate:");
    for (name, old, new) in &report.changes {
        let old = old.as_deref().map_or("(absent)".to_string(), |o| {
            if o.is_empty() {
                "(empty)".into()
            } else {
                o.to_string()
            }
        });
        let new = if new.is_empty() { "(empty)" } else { new };
        let _ = writeln!(out, "  {name}: {old} -> {new}");
    }
    let _ = writeln!(out, "Then restart the MIM Service.");
    out
}

/// Writes the updated file after copying the original to `PATH.pfgate-backup-<unix seconds>`;
/// returns the backup's path.
pub fn write(report: &Report, path: &Path) -> Result<PathBuf, MimError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut backup = path.as_os_str().to_owned();
    backup.push(format!(".pfgate-backup-{secs}"));
    let backup = PathBuf::from(backup);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| MimError::Io { path: p, source }
    };
    std::fs::copy(path, &backup).map_err(io(&backup))?;
    std::fs::write(path, report.updated.as_bytes()).map_err(io(path))?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mfa.contoso.com/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx";

    fn file(tag: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("pfgate-mim-{tag}-{}.xml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn cloud_sdk_file_gets_locmfa_and_loses_its_keys() {
        let original = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<MfaSettings>\r\n  <!-- keep me -->\r\n  <LICENSE_KEY>ABC</LICENSE_KEY>\r\n  <GROUP_KEY>123</GROUP_KEY>\r\n  <CERT_PASSWORD>s3cret</CERT_PASSWORD>\r\n  <CertFilePath>C:\\cert_key.p12</CertFilePath>\r\n  <Username>mimservice@contoso.com</Username>\r\n  <DefaultCountryCode>1</DefaultCountryCode>\r\n</MfaSettings>\r\n";
        let p = file("cloud", original);
        let r = check(&p, URL, None).unwrap();
        let text = render(&r, &p);
        assert!(text.contains("retired cloud SDK"), "{text}");
        assert!(
            !text.contains("s3cret"),
            "a password is never printed: {text}"
        );
        assert!(r.updated.starts_with('\u{feff}'));
        assert!(r.updated.contains("<!-- keep me -->"));
        assert!(r.updated.contains("<LICENSE_KEY></LICENSE_KEY>"));
        assert!(r.updated.contains("<CERT_PASSWORD></CERT_PASSWORD>"));
        assert!(r.updated.contains(&format!("<LOCMFASRV>{URL}</LOCMFASRV>")));
        assert!(r.updated.contains("<LOCMFA>true</LOCMFA>"));
        assert!(r
            .updated
            .contains("<Username>mimservice@contoso.com</Username>"));
        // Checking again the updated text: nothing left to change.
        let p2 = file("cloud-after", &r.updated);
        assert!(check(&p2, URL, None).unwrap().changes.is_empty());
        let backup = write(&r, &p).unwrap();
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), r.updated);
    }

    #[test]
    fn locmfa_file_is_repointed_and_a_custom_provider_cleared() {
        let p = file(
            "locmfa",
            "<MfaSettings><LOCMFA>true</LOCMFA><LOCMFASRV>https://old.contoso.com:9999/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx</LOCMFASRV><Username>mim@contoso.com</Username><CustomPhoneProvider>C:\\x.dll</CustomPhoneProvider><LICENSE_KEY/></MfaSettings>",
        );
        let r = check(&p, URL, None).unwrap();
        assert_eq!(
            r.changes.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["CustomPhoneProvider", "LOCMFASRV"]
        );
        assert!(r
            .updated
            .contains("<CustomPhoneProvider></CustomPhoneProvider>"));
        assert!(r.updated.contains("<LICENSE_KEY/>"));
        assert!(render(&r, &p).contains("old.contoso.com:9999"));
    }

    #[test]
    fn hostile_or_broken_files_are_refused() {
        let p = file("dtd", "<!DOCTYPE x [<!ENTITY a \"b\">]><MfaSettings/>");
        assert!(matches!(check(&p, URL, None), Err(MimError::Xml { .. })));
        let p = file("broken", "<MfaSettings><LOCMFA>true</MfaSettings>");
        assert!(matches!(check(&p, URL, None), Err(MimError::Xml { .. })));
    }
}
