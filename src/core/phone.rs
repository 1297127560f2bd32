//! Phone numbers: from what callers send (country code, national number, extension, in whatever
//! formatting a person typed) to one E.164 form that providers dial and the in-flight table keys on.
//!
//! Rules (MFA Server's data is split the same way; where it is silent these are pfgate's choices):
//! - every character but digits is dropped (spaces, dashes, dots, parentheses), except a leading `+`;
//! - a number starting with `+` (or `00`) already carries its country code, and the separate
//!   country code is ignored;
//! - otherwise the country code comes from the call, else from the user record, else from
//!   `default_country_code` (MIM's `DefaultCountryCode`);
//! - outside the North American plan (`1`) one national trunk `0` is dropped (`44` + `020…` → `+4420…`);
//! - the result must have 8 to 15 digits (E.164 allows at most 15); anything else is invalid, which
//!   the engine answers with CallResult 107 "Invalid Phone Number Format" without calling anyone.

/// A dialable number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164 {
    digits: String,
    extension: String,
}

/// Why a number is not dialable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// No digits at all.
    #[error("no phone number")]
    Missing,
    /// Too few or too many digits for E.164.
    #[error("a phone number must have 8 to 15 digits with its country code, this one has {0}")]
    Length(usize),
}

fn digits_of(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_digits(&mut out, s);
    out
}

/// Appends the ASCII digits of `s` to `out`.
fn push_digits(out: &mut String, s: &str) {
    out.extend(s.bytes().filter(u8::is_ascii_digit).map(char::from));
}

impl E164 {
    /// Normalises a number; `country_code` may be empty, then `default_cc` applies.
    pub fn parse(
        country_code: &str,
        number: &str,
        extension: &str,
        default_cc: &str,
    ) -> Result<Self, PhoneError> {
        let trimmed = number.trim_start();
        let national = digits_of(number);
        if national.is_empty() {
            return Err(PhoneError::Missing);
        }
        let digits = if trimmed.starts_with('+') {
            national
        } else if let Some(rest) = national
            .strip_prefix("00")
            .filter(|_| trimmed.starts_with("00"))
        {
            rest.to_string()
        } else {
            let mut digits = String::with_capacity(national.len() + 4);
            push_digits(&mut digits, country_code);
            if digits.is_empty() {
                push_digits(&mut digits, default_cc);
            }
            let national = match national.strip_prefix('0') {
                Some(rest) if digits != "1" => rest,
                _ => national.as_str(),
            };
            digits.push_str(national);
            digits
        };
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneError::Length(digits.len()));
        }
        Ok(Self {
            digits,
            extension: digits_of(extension),
        })
    }

    /// `+` and the digits, e.g. `+14255550100`.
    pub fn e164(&self) -> String {
        let mut out = String::with_capacity(self.digits.len() + 1);
        out.push('+');
        out.push_str(&self.digits);
        out
    }

    /// The extension's digits (empty when none).
    pub fn extension(&self) -> &str {
        &self.extension
    }

    /// For logs and audit: the last two digits only (`+*********00`).
    pub fn masked(&self) -> String {
        mask(&self.digits)
    }
}

/// Masks all but the last two digits of a number.
pub fn mask(number: &str) -> String {
    let count = number.bytes().filter(u8::is_ascii_digit).count();
    let hidden = count.saturating_sub(2);
    let mut out = String::with_capacity(count + 1);
    out.push('+');
    for (i, d) in number.bytes().filter(u8::is_ascii_digit).enumerate() {
        out.push(if i < hidden { '*' } else { char::from(d) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let p = |cc, n| E164::parse(cc, n, "", "1").map(|e| e.e164());
        assert_eq!(p("1", "4255550100").unwrap(), "+14255550100");
        assert_eq!(p("", "(425) 555-0100").unwrap(), "+14255550100");
        assert_eq!(p("44", "020 7946 0000").unwrap(), "+442079460000");
        assert_eq!(p("1", "+44 20 7946 0000").unwrap(), "+442079460000");
        assert_eq!(p("", "0044 20 7946 0000").unwrap(), "+442079460000");
        assert_eq!(p("1", "555").unwrap_err(), PhoneError::Length(4));
        assert_eq!(p("1", "").unwrap_err(), PhoneError::Missing);
        assert_eq!(
            p("1", "1234567890123456").unwrap_err(),
            PhoneError::Length(17)
        );
        assert_eq!(mask("+14255550100"), "+*********00");
        assert_eq!(mask("7"), "+7");
    }

    proptest! {
        // The mask as it was first written (digits, then `*` for all but the last two).
        #[test]
        fn mask_is_the_first_formula(number in "[0-9 +()\\-.a-z\u{660}-\u{669}]{0,20}") {
            let digits: String = number.chars().filter(char::is_ascii_digit).collect();
            let keep = digits.len().saturating_sub(2);
            let first = format!("+{}{}", "*".repeat(keep), &digits[keep..]);
            prop_assert_eq!(mask(&number), first);
        }

        // Whatever a person types around the digits, the same number comes out.
        #[test]
        fn formatting_does_not_change_the_number(
            national in "[2-9][0-9]{9}",
            seps in proptest::collection::vec(prop_oneof![Just(" "), Just("-"), Just("."), Just("")], 10),
        ) {
            let mut typed = String::from("(");
            for (i, c) in national.chars().enumerate() {
                typed.push(c);
                if i == 2 { typed.push(')'); }
                typed.push_str(seps[i]);
            }
            let a = E164::parse("1", &national, "", "44").unwrap();
            let b = E164::parse("", &typed, "", "1").unwrap();
            let c = E164::parse("44", &format!("+1 {typed}"), "", "44").unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&a, &c);
        }

        // Normalising an E.164 result again is the identity; output is always + and 8..=15 digits.
        #[test]
        fn normalisation_is_idempotent_and_bounded(cc in "[1-9][0-9]{0,2}", n in "[0-9 ()+-]{0,20}", dcc in "[1-9]{1,3}") {
            if let Ok(e) = E164::parse(&cc, &n, "", &dcc) {
                let s = e.e164();
                prop_assert!(s.starts_with('+'));
                let len = s.len() - 1;
                prop_assert!((8..=15).contains(&len));
                prop_assert!(s[1..].bytes().all(|b| b.is_ascii_digit()));
                let again = E164::parse("999", &s, "", "7").unwrap();
                prop_assert_eq!(again.e164(), s);
            }
        }

        // Masking never reveals more than the last two digits.
        #[test]
        fn masking_hides_all_but_two(n in "[0-9]{3,15}") {
            let m = mask(&n);
            prop_assert_eq!(m.chars().filter(|c| c.is_ascii_digit()).count(), 2);
            prop_assert!(m.ends_with(&n[n.len()-2..]));
        }
    }
}
