//! What the person sees of caller-supplied text (issue #23 item 9): the application name and the
//! IP address a `PfAuthUser*` call reports are the caller's words, shown on the OIDC step-up page,
//! in the delivered message and in a Duo push as if pfgate vouched for them. So:
//!
//! - control, bidi and invisible format characters are dropped ([`clean`]): a right-to-left
//!   override (U+202E) before `evorppa` makes it read "approve", a zero-width character hide
//!   a difference, a newline start a line of its own;
//! - an IP address is shown only when it parses as one ([`shown_ip`]): "10.0.0.1 (your usual
//!   office - approve)" is an instruction to the person, not an address;
//! - in a chat message the text is escaped for chat markdown ([`escape_chat`]), so a name cannot
//!   become a link, a mention or bold "approve now" text. E-mail and SMS are plain text.

use std::net::IpAddr;

/// The longest caller-supplied text shown (characters).
pub(crate) const MAX_SHOWN: usize = 100;

/// True for characters that change how text around them reads without being seen: C0/C1
/// controls, the bidi marks, embeddings, overrides and isolates, zero-width and other invisible
/// format characters.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// `s` without hidden characters ([`hidden`]), whitespace runs made one space, trimmed, at most
/// [`MAX_SHOWN`] characters.
pub(crate) fn clean(s: &str) -> String {
    let visible: String = s
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !hidden(*c))
        .collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_SHOWN)
        .collect()
}

/// The address to show for a request: the caller's `initiatingIpAddress` when it parses as an IP
/// address (in its canonical form); the calling system's address when none was given; otherwise
/// a fixed text, never the caller's words.
pub(crate) fn shown_ip(initiating: &str, caller: IpAddr) -> String {
    let given = initiating.trim();
    if given.is_empty() {
        return caller.to_string();
    }
    match given.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => "not given (the application sent no valid IP address)".into(),
    }
}

/// [`clean`] text escaped for chat markdown (Teams, Slack and the like): `&`, `<`, `>` as HTML
/// entities (Slack's link and mention syntax), the characters that make emphasis, code, links,
/// headings and tables behind a backslash. ([`clean`] leaves no line break, so nothing starts a
/// line: list and quote markers need no escape.) Some chat services show the backslash: a
/// visible `\` beats a hidden link.
pub(crate) fn escape_chat(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '(' | ')' | '#' | '|' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `template` with each `{key}` replaced by its value, in one pass: a value that contains
/// `{link}` or `{user}` stays as it is (replacing one placeholder after another would fill
/// placeholders smuggled in by an earlier value).
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        match values.iter().find(|(k, _)| {
            after
                .strip_prefix('{')
                .and_then(|a| a.strip_prefix(k))
                .is_some_and(|a| a.starts_with('}'))
        }) {
            Some((k, v)) => {
                out.push_str(v);
                rest = &after[k.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_dropped() {
        assert_eq!(clean("MIM\u{202E}evorppa\u{202C}"), "MIMevorppa");
        assert_eq!(clean("a\u{200B}b\u{2066}c\u{FEFF}d\u{7}\r\ne"), "abcd e");
        assert_eq!(clean("  Self   service\tportal "), "Self service portal");
        assert_eq!(clean(&"x".repeat(500)).len(), MAX_SHOWN);
        assert_eq!(clean("Ünïcödé アプリ"), "Ünïcödé アプリ");
    }

    #[test]
    fn only_an_ip_is_shown_as_one() {
        let caller: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(shown_ip(" 10.0.0.1 ", caller), "10.0.0.1");
        assert_eq!(shown_ip("2001:DB8::1", caller), "2001:db8::1");
        assert_eq!(shown_ip("", caller), "192.0.2.9");
        for text in [
            "10.0.0.1 (your usual office - approve)",
            "10.0.0.1\u{202E}",
            "localhost",
        ] {
            let shown = shown_ip(text, caller);
            assert!(
                !shown.contains("10.0.0.1") && !shown.contains("office"),
                "{shown}"
            );
        }
    }

    #[test]
    fn chat_markdown_is_escaped() {
        assert_eq!(
            escape_chat("*now* [ok](https://x) <!channel> a_b"),
            r"\*now\* \[ok\]\(https://x\) &lt;\!channel&gt; a\_b"
        );
    }

    #[test]
    fn placeholders_are_filled_once() {
        let t = fill(
            "{application}: {user} {link} {unknown}",
            &[("application", "{link}"), ("user", "bob"), ("link", "L")],
        );
        assert_eq!(t, "{link}: bob L {unknown}");
    }
}
