//! The HTML service help pages ASMX served on a plain `GET`: the list of operations, and for
//! `?op=Name` that operation's own page with a sample SOAP 1.1 and SOAP 1.2 request and response.
//!
//! Administrators used these pages to see what a call looks like ("if the page loads, the SDK
//! works", and the samples are what they copied into scripts), so the samples are written as ASMX
//! wrote them: every element of the contract in order, with the type's name as placeholder
//! (`string`, `int`, `boolean`), enum literals joined by ` or `, arrays with two items. They come
//! from the operation table, itself generated from `wsdl/pfwssdk-contract.json`, so they cannot
//! drift from what pfgate reads and writes. Every piece of text is HTML-escaped: the address comes
//! from the caller's `Host` header and an unknown operation name from the query.

use std::fmt::Write as _;

use super::wsdl::{classify, Kind};
use super::{complex_type_specs, enum_specs, Operation, NAMESPACE};
use crate::pfwssdk::soap::xml::escape;

/// Complex types nest at most this deep in a sample (the contract nests two levels; the bound
/// only guarantees that a future self-referencing type cannot recurse forever).
const MAX_DEPTH: usize = 6;

/// An unknown `?op=` name is echoed back at most this long.
const MAX_ECHOED_NAME: usize = 80;

const SOAP11_ENVELOPE: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_ENVELOPE: &str = "http://www.w3.org/2003/05/soap-envelope";

/// Which page a `GET` of the ASMX endpoint asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsmxPage {
    /// `?wsdl`: the service description.
    Wsdl,
    /// `?disco`: the discovery document.
    Disco,
    /// Anything else: the help page (the operation list, or `?op=Name`'s own page).
    Help,
}

/// What the ASMX endpoint answers to a `GET` (or `HEAD`): the page, its content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmxAnswer {
    /// Which page it is (for the access log and metrics).
    pub page: AsmxPage,
    /// The `Content-Type` to send.
    pub content_type: &'static str,
    /// The document.
    pub body: String,
}

/// Answers a `GET` of the ASMX path as ASMX did: `query` is the raw query string, whose first key
/// picks the page (`?wsdl`, `?disco`, else the help page with an optional `op=`). `location` is the
/// URL the caller used, for `soap:address` and the samples. This is the SOAP layer's job, not the
/// HTTP router's: what the pages say is derived from the same contract the codec follows.
pub fn asmx_get(location: &str, query: &str) -> AsmxAnswer {
    let key = query.split(['&', '=']).next().unwrap_or("");
    let xml = "text/xml; charset=utf-8";
    if key.eq_ignore_ascii_case("wsdl") {
        AsmxAnswer {
            page: AsmxPage::Wsdl,
            content_type: xml,
            body: super::wsdl::wsdl_for(location),
        }
    } else if key.eq_ignore_ascii_case("disco") {
        AsmxAnswer {
            page: AsmxPage::Disco,
            content_type: xml,
            body: super::wsdl::disco_for(location),
        }
    } else {
        AsmxAnswer {
            page: AsmxPage::Help,
            content_type: "text/html; charset=utf-8",
            body: page(location, help_operation(query).as_deref()),
        }
    }
}

/// The `op` value of a help-page query (`?op=PfAuthUser_5`), percent-decoded; the first one wins.
fn help_operation(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v.into_owned())
}

/// The page for a `GET` of the endpoint: `op` is the `?op=` value, if any.
pub fn page(location: &str, op: Option<&str>) -> String {
    match op {
        None => list_page(location, None),
        Some(name) => match Operation::from_name(name) {
            Some(operation) => operation_page(location, operation),
            None => list_page(location, Some(name)),
        },
    }
}

fn head(o: &mut String, title: &str) {
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:Verdana,sans-serif;margin:2em}} h1{{background:#003366;color:#fff;padding:.3em}} li{{margin:.2em 0}} pre{{background:#e5e5cc;padding:.5em;overflow:auto}} .note{{background:#ffd;padding:.5em;border:1px solid #cc9}}</style>
</head><body>
"#,
        title = escape(title)
    );
}

/// The list of operations; with `unknown`, a note that no operation has that name.
fn list_page(location: &str, unknown: Option<&str>) -> String {
    let loc = escape(location);
    let mut o = String::with_capacity(16 * 1024);
    head(&mut o, "PfWsSdk Web Service");
    o.push_str("<h1>PfWsSdk</h1>\n");
    if let Some(name) = unknown {
        let clipped: String = name.chars().take(MAX_ECHOED_NAME).collect();
        let _ = writeln!(
            o,
            r#"<p class="note">There is no operation named <b>{}</b>. Operation names are case-sensitive; the operations are listed below.</p>"#,
            escape(&clipped)
        );
    }
    let _ = write!(
        o,
        r#"<p>The following operations are supported. For a formal definition, please review the <a href="{loc}?WSDL">Service Description</a>.</p>
<p>Served by pfgate {version}, a drop-in replacement for the Azure Multi-Factor Authentication Server Web Service SDK.</p>
<ul>
"#,
        version = env!("CARGO_PKG_VERSION")
    );
    let mut names: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
    names.sort_unstable();
    for n in names {
        let _ = writeln!(o, r#"<li><a href="{loc}?op={n}">{n}</a></li>"#);
    }
    o.push_str("</ul>\n</body></html>\n");
    o
}

/// One operation's page: its SOAP 1.1 and SOAP 1.2 sample request and response.
fn operation_page(location: &str, op: Operation) -> String {
    let loc = escape(location);
    let (host, path) = host_and_path(location);
    let spec = op.spec();
    let name = spec.name;
    let mut o = String::with_capacity(16 * 1024);
    head(&mut o, &format!("PfWsSdk Web Service: {name}"));
    let _ = write!(
        o,
        r#"<h1>PfWsSdk</h1>
<p>Click <a href="{loc}">here</a> for a complete list of operations.</p>
<h2>{name}</h2>
<h3>Test</h3>
<p>The test form is only available for requests from the local machine.</p>
"#
    );

    let request_body = body_sample(name, &spec.inputs);
    let mut outputs = vec![(format!("{name}Result"), spec.result_type.clone())];
    outputs.extend(spec.outputs.iter().map(|(n, t)| (n.to_string(), t.clone())));
    let response_body = body_sample(&format!("{name}Response"), &outputs);

    let action = op.soap_action();
    let samples = [
        (
            "SOAP 1.1",
            "text/xml; charset=utf-8".to_string(),
            Some(format!("SOAPAction: \"{action}\"\n")),
            "soap",
            SOAP11_ENVELOPE,
        ),
        (
            "SOAP 1.2",
            "application/soap+xml; charset=utf-8".to_string(),
            None,
            "soap12",
            SOAP12_ENVELOPE,
        ),
    ];
    for (title, content_type, action_header, prefix, envelope_ns) in samples {
        let request = format!(
            "POST {path} HTTP/1.1\nHost: {host}\nContent-Type: {content_type}\nContent-Length: length\n{}\n{}",
            action_header.unwrap_or_default(),
            envelope(prefix, envelope_ns, &request_body)
        );
        let response = format!(
            "HTTP/1.1 200 OK\nContent-Type: {content_type}\nContent-Length: length\n\n{}",
            envelope(prefix, envelope_ns, &response_body)
        );
        let _ = write!(
            o,
            r#"<h3>{title}</h3>
<p>The following is a sample {title} request and response. The <b>placeholders</b> shown need to be replaced with actual values.</p>
<pre>{}</pre>
<pre>{}</pre>
"#,
            escape(&request),
            escape(&response)
        );
    }
    o.push_str("</body></html>\n");
    o
}

/// The host (with port) and path of the service address, for the sample's request line.
fn host_and_path(location: &str) -> (String, String) {
    match url::Url::parse(location) {
        Ok(u) => {
            let host = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => "host".to_string(),
            };
            (host, u.path().to_string())
        }
        Err(_) => (
            "host".to_string(),
            "/MultiFactorAuthWebServiceSdk/PfWsSdk.asmx".to_string(),
        ),
    }
}

fn envelope(prefix: &str, ns: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<{prefix}:Envelope xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:{prefix}=\"{ns}\">\n  <{prefix}:Body>\n{body}  </{prefix}:Body>\n</{prefix}:Envelope>"
    )
}

/// The operation (or response) element with one sample child per field, indented as ASMX did.
fn body_sample<N: AsRef<str>>(element: &str, fields: &[(N, String)]) -> String {
    let mut o = String::new();
    if fields.is_empty() {
        let _ = writeln!(o, "    <{element} xmlns=\"{NAMESPACE}\" />");
        return o;
    }
    let _ = writeln!(o, "    <{element} xmlns=\"{NAMESPACE}\">");
    for (name, ty) in fields {
        sample_element(&mut o, 3, name.as_ref(), ty, 0);
    }
    let _ = writeln!(o, "    </{element}>");
    o
}

/// One element with its placeholder: a primitive's type name, an enum's literals joined by
/// ` or `, a complex type's fields, or an array's item twice.
fn sample_element(o: &mut String, indent: usize, name: &str, contract_type: &str, depth: usize) {
    let pad = "  ".repeat(indent);
    match classify(contract_type) {
        Kind::Primitive(p) => {
            let _ = writeln!(o, "{pad}<{name}>{p}</{name}>");
        }
        Kind::Enum(e) => {
            let literals = enum_specs()
                .into_iter()
                .find(|(n, _)| *n == e)
                .map(|(_, l)| l.join(" or "))
                .unwrap_or_default();
            let _ = writeln!(o, "{pad}<{name}>{literals}</{name}>");
        }
        Kind::Complex(c) => {
            let fields = complex_type_specs()
                .into_iter()
                .find(|(n, _)| *n == c)
                .map(|(_, f)| f)
                .unwrap_or_default();
            if fields.is_empty() || depth >= MAX_DEPTH {
                let _ = writeln!(o, "{pad}<{name} />");
                return;
            }
            let _ = writeln!(o, "{pad}<{name}>");
            for (field, ty) in &fields {
                sample_element(o, indent + 1, field, ty, depth + 1);
            }
            let _ = writeln!(o, "{pad}</{name}>");
        }
        Kind::Array { item, .. } => {
            let _ = writeln!(o, "{pad}<{name}>");
            for _ in 0..2 {
                sample_element(o, indent + 1, item, item, depth + 1);
            }
            let _ = writeln!(o, "{pad}</{name}>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operation_is_escaped_and_clipped() {
        let page = page(
            "https://h/PfWsSdk.asmx",
            Some(&format!("<script>{}", "x".repeat(500))),
        );
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script>"));
        assert!(!page.contains(&"x".repeat(MAX_ECHOED_NAME)));
        assert!(page.contains("?op=PfAuthUser_5\">PfAuthUser_5</a>"));
    }

    #[test]
    fn placeholders_as_asmx_writes_them() {
        let page = page("https://h:8443/X/PfWsSdk.asmx", Some("PfAuthUser_5"));
        assert!(page.contains("POST /X/PfWsSdk.asmx HTTP/1.1\nHost: h:8443\n"));
        assert!(page.contains("&lt;username&gt;string&lt;/username&gt;"));
        assert!(page.contains("&lt;requireUserMatch&gt;boolean&lt;/requireUserMatch&gt;"));
        assert!(page.contains("&lt;Code&gt;int&lt;/Code&gt;"));
        assert!(page.contains(
            "&lt;mode&gt;oathToken or phoneApp or smsText or voiceCall or invalid or unspecified&lt;/mode&gt;"
        ));
        assert!(page
            .contains("SOAPAction: &quot;http://www.phonefactor.com/PfWsSdk/PfAuthUser_5&quot;"));
    }

    #[test]
    fn arrays_show_two_items() {
        let page = page("https://h/PfWsSdk.asmx", Some("FindUsers_4"));
        assert_eq!(
            page.matches("&lt;UserRow&gt;").count(),
            4,
            "two per SOAP version"
        );
        assert_eq!(
            page.matches("&lt;string&gt;string&lt;/string&gt;").count(),
            4
        );
    }
}
