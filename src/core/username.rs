//! The one canonical form of a username, used everywhere a username is compared or stored: the
//! store's key, the engine's policy (unknown, blocked, locked out), bypasses, the in-flight table
//! and anything else that keys by user.
//!
//! Why one form: two spellings that a person reads as the same name must never be two users to
//! pfgate. If `ｃａｒｏｌ@contoso.com` (full width) or `carol@contoso.com` followed by a zero-width
//! space were a different user from `carol@contoso.com`, a caller could step around carol's block
//! by spelling her name differently and be answered as for an unknown user.
//!
//! The rules ([`canonical`]), in order:
//! 1. leading and trailing white space is removed (as SOAP callers have always been forgiven);
//! 2. a name containing a control character (U+0000–U+001F, U+007F–U+009F) or an invisible code
//!    point (format characters such as zero-width spaces and joiners, bidirectional marks and
//!    overrides, the byte-order mark, soft hyphen, variation selectors, tag characters, line and
//!    paragraph separators, Hangul fillers) is **refused**, not cleaned: such a name is never
//!    typed by a person, and silently dropping the character would hide an attack in the logs;
//! 3. the name is put in Unicode normalisation form NFKC, which folds compatibility variants
//!    (full-width letters, ligatures, superscripts, non-breaking spaces) into their plain forms;
//! 4. a name longer than [`MAX_CHARS`] characters is refused.
//!
//! The result keeps the case the caller used (it is what the store shows back). Comparisons use
//! [`key`]: the canonical form in lower case (Unicode's default lower-case mapping,
//! `str::to_lowercase`), which is how the store has always looked users up.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// The longest username accepted, in characters (UPNs are at most 256 in Active Directory).
pub const MAX_CHARS: usize = 256;

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameError {
    /// A control character or an invisible code point, at this character position (0-based).
    Invisible {
        /// The code point.
        code_point: u32,
        /// Its position in the trimmed name.
        position: usize,
    },
    /// Longer than [`MAX_CHARS`].
    TooLong,
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsernameError::Invisible {
                code_point,
                position,
            } => write!(
                f,
                "the username contains a control or invisible character (U+{code_point:04X} at \
                 position {position}); usernames may not contain such characters"
            ),
            UsernameError::TooLong => {
                write!(f, "the username is longer than {MAX_CHARS} characters")
            }
        }
    }
}

impl std::error::Error for UsernameError {}

/// The canonical form of `raw` (see the module documentation), or why it cannot be a username.
/// An empty (or all-white-space) name canonicalises to the empty string; callers decide what an
/// empty name means for them.
pub fn canonical(raw: &str) -> Result<String, UsernameError> {
    let trimmed = raw.trim();
    if is_plain_ascii(trimmed) {
        // NFKC maps every printable ASCII character to itself and none of them is invisible, so
        // the full path below would return `trimmed` unchanged (proved over every printable ASCII
        // character by `ascii_fast_path_agrees_with_the_full_path`). Almost every real name takes
        // this path; NFKC of an ASCII name was ~4 % of a PfAuthUser_5's instructions (issue #21).
        if trimmed.len() > MAX_CHARS {
            return Err(UsernameError::TooLong);
        }
        return Ok(trimmed.to_string());
    }
    canonical_full(trimmed)
}

/// Printable ASCII only (U+0020–U+007E): no control character, nothing NFKC changes.
fn is_plain_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7F).contains(&b))
}

/// [`canonical`] of an already trimmed name by the full rules: NFKC and the invisible check.
fn canonical_full(trimmed: &str) -> Result<String, UsernameError> {
    if let Some((position, c)) = trimmed.chars().enumerate().find(|(_, c)| is_invisible(*c)) {
        return Err(UsernameError::Invisible {
            code_point: u32::from(c),
            position,
        });
    }
    let normal: String = trimmed.nfkc().collect();
    // NFKC can expose a character a compatibility form hid; check the result as well.
    if let Some((position, c)) = normal.chars().enumerate().find(|(_, c)| is_invisible(*c)) {
        return Err(UsernameError::Invisible {
            code_point: u32::from(c),
            position,
        });
    }
    if normal.chars().count() > MAX_CHARS {
        return Err(UsernameError::TooLong);
    }
    Ok(normal.trim().to_string())
}

/// How a username from a request is written to logs and the audit trail: its canonical form, or —
/// for a name [`canonical`] refuses — the raw text with every control and non-ASCII character
/// escaped (`\u{200b}`), so a refused name can neither forge log lines nor hide what was sent.
pub fn for_log(raw: &str) -> String {
    canonical(raw).unwrap_or_else(|_| raw.escape_default().to_string())
}

/// The comparison key of a username already in canonical form: lower case. Everything that keys
/// by user (store rows, in-flight calls, lockout counters) uses this.
pub fn key(canonical: &str) -> String {
    // Unicode's lower-case mapping of an ASCII string is its ASCII lower case; skip the per-char
    // table walk for the names that are all ASCII.
    if canonical.is_ascii() {
        return canonical.to_ascii_lowercase();
    }
    canonical.to_lowercase()
}

/// Control characters and code points that render as nothing (or reorder text), so that two names
/// that look the same differ only by them.
fn is_invisible(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    matches!(u32::from(c),
        0x00AD              // soft hyphen
        | 0x034F            // combining grapheme joiner
        | 0x061C            // Arabic letter mark
        | 0x115F | 0x1160   // Hangul choseong/jungseong fillers
        | 0x17B4 | 0x17B5   // Khmer inherent vowels
        | 0x180B..=0x180F   // Mongolian free variation selectors, vowel separator
        | 0x200B..=0x200F   // zero-width space, ZWNJ, ZWJ, LRM, RLM
        | 0x2028..=0x202E   // line/paragraph separators, bidi embeddings and overrides
        | 0x2060..=0x206F   // word joiner, invisible operators, bidi isolates, deprecated formats
        | 0x3164            // Hangul filler
        | 0xFE00..=0xFE0F   // variation selectors
        | 0xFEFF            // byte-order mark / zero-width no-break space
        | 0xFFA0            // half-width Hangul filler
        | 0xFFF0..=0xFFFB   // specials, interlinear annotation
        | 0x1BCA0..=0x1BCA3 // shorthand format controls
        | 0x1D173..=0x1D17A // musical symbol format controls
        | 0xE0000..=0xE007F // tag characters
        | 0xE0100..=0xE01EF // variation selectors supplement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`canonical`]'s ASCII fast path answers what the full rules (NFKC, the invisible check)
    /// answer: for every printable ASCII character alone, inside a name and at its ends, for a set
    /// of real-looking names, and at the length limit; and [`key`]'s ASCII lower case is Unicode's.
    #[test]
    fn ascii_fast_path_agrees_with_the_full_path() {
        let full = |raw: &str| canonical_full(raw.trim());
        for b in 0x20..0x7Fu8 {
            let c = char::from(b);
            for raw in [
                c.to_string(),
                format!("a{c}b"),
                format!("{c}carol@contoso.com"),
                format!("carol@contoso.com{c}"),
                format!("CONTOSO\\{c}{c}"),
            ] {
                assert!(is_plain_ascii(raw.trim()), "{raw:?}");
                assert_eq!(canonical(&raw), full(&raw), "{raw:?}");
                assert_eq!(key(&raw), raw.to_lowercase(), "{raw:?}");
            }
        }
        let names = [
            "",
            "   ",
            "alice@contoso.com",
            "  Alice@Contoso.com ",
            "CONTOSO\\John Smith",
            "svc-mim_01@corp.example.org",
            "O'Brien, Mary",
            "~!#$%^&*()+={}[]|:;\"<>,.?/`",
        ];
        for raw in names {
            assert_eq!(canonical(raw), full(raw), "{raw:?}");
            assert_eq!(key(raw), raw.to_lowercase(), "{raw:?}");
        }
        for len in [MAX_CHARS - 1, MAX_CHARS, MAX_CHARS + 1] {
            let raw = "x".repeat(len);
            assert_eq!(canonical(&raw), full(&raw), "length {len}");
        }
        // What leaves the fast path still takes the full rules.
        assert!(!is_plain_ascii("carol\u{7F}"));
        assert!(!is_plain_ascii("ｃａｒｏｌ"));
        assert!(!is_plain_ascii("a\tb"));
    }

    #[test]
    fn plain_names_keep_their_case_and_lose_surrounding_space() {
        assert_eq!(
            canonical("  Alice@Contoso.com\t").as_deref(),
            Ok("Alice@Contoso.com")
        );
        assert_eq!(
            canonical("CONTOSO\\John Smith").as_deref(),
            Ok("CONTOSO\\John Smith")
        );
        assert_eq!(canonical("").as_deref(), Ok(""));
        assert_eq!(key("Alice@Contoso.com"), "alice@contoso.com");
    }

    #[test]
    fn compatibility_forms_fold_to_plain_letters() {
        // Full-width letters and the full-width at sign.
        let full = "\u{FF43}\u{FF41}\u{FF52}\u{FF4F}\u{FF4C}\u{FF20}contoso.com";
        assert_eq!(canonical(full).as_deref(), Ok("carol@contoso.com"));
        // Full-width capitals fold to the same key as the plain name.
        let upper = "\u{FF23}\u{FF21}\u{FF32}\u{FF2F}\u{FF2C}@contoso.com";
        assert_eq!(
            key(&canonical(upper).unwrap()),
            key(&canonical("carol@contoso.com").unwrap())
        );
        // A non-breaking space inside a name becomes a plain space.
        assert_eq!(canonical("John\u{00A0}Smith").as_deref(), Ok("John Smith"));
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for (name, cp, pos) in [
            ("carol@contoso.com\u{200B}", 0x200B, 17),
            ("car\u{200D}ol", 0x200D, 3),
            ("\u{202E}moc.osotnoc@lorac", 0x202E, 0),
            ("carol\u{0000}", 0x0000, 5),
            ("ca\u{00AD}rol", 0x00AD, 2),
            ("\u{FEFF}carol", 0xFEFF, 0),
            ("carol\u{E0041}", 0xE0041, 5),
            ("car\u{0007}ol", 0x0007, 3),
            ("carol\u{2066}x", 0x2066, 5),
        ] {
            assert_eq!(
                canonical(name),
                Err(UsernameError::Invisible {
                    code_point: cp,
                    position: pos
                }),
                "{name:?}"
            );
        }
        let msg = canonical("a\u{200B}").unwrap_err().to_string();
        assert!(msg.contains("U+200B"), "{msg}");
        assert_eq!(
            for_log("carol\n{\"forged\":1}"),
            "carol\\n{\\\"forged\\\":1}"
        );
        assert_eq!(for_log(" Alice "), "Alice");
    }

    #[test]
    fn overlong_names_are_refused() {
        assert_eq!(
            canonical(&"a".repeat(MAX_CHARS)).map(|s| s.len()),
            Ok(MAX_CHARS)
        );
        assert_eq!(
            canonical(&"a".repeat(MAX_CHARS + 1)),
            Err(UsernameError::TooLong)
        );
    }
}
