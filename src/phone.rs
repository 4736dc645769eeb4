//! Phone numbers: parsed once at the edge into [`PhoneNumber`], and masked for logs.
//!
//! smshub accepts E.164 (`+358401234567`, also written `00358…` or with spaces, dashes and
//! parentheses) or a national number (`040 123 4567`) when the config names a default
//! country calling code. Anything else is refused with a message that says why, because a
//! wrongly guessed number means an SMS to a stranger.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An E.164 number, stored as `+` followed by 8 to 15 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// Why a string is not a phone number we can send to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("empty phone number")]
    Empty,
    #[error("phone number {0:?} contains {1:?}: only digits, a leading + and the separators space - . ( ) are allowed")]
    BadCharacter(String, char),
    #[error(
        "phone number {0:?} is national (no + or 00 prefix) and no default country is configured: write it as +<country><number>"
    )]
    NationalWithoutCountry(String),
    #[error("phone number {0:?} has {1} digits: E.164 numbers have 8 to 15 digits including the country code")]
    BadLength(String, usize),
    #[error("{0:?} is a short code (at most 6 digits): it is not given a country code and cannot be sent to")]
    ShortCode(String),
}

impl PhoneNumber {
    /// Parses `input`. `default_country` is a calling code like `"358"` used for national numbers
    /// (a single leading trunk `0` is dropped, as in `040 123 4567` → `+35840 1234567`).
    pub fn parse(input: &str, default_country: Option<&str>) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let mut digits = String::with_capacity(trimmed.len());
        let mut plus = false;
        for (i, c) in trimmed.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => plus = true,
                ' ' | '-' | '.' | '(' | ')' => {}
                other => return Err(PhoneError::BadCharacter(trimmed.to_string(), other)),
            }
        }
        let international = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else {
            if digits.len() <= 6 {
                return Err(PhoneError::ShortCode(trimmed.to_string()));
            }
            let Some(cc) = default_country else {
                return Err(PhoneError::NationalWithoutCountry(trimmed.to_string()));
            };
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            format!("{}{}", cc.trim_start_matches('+'), national)
        };
        if !(8..=15).contains(&international.len()) || international.starts_with('0') {
            return Err(PhoneError::BadLength(trimmed.to_string(), international.len()));
        }
        Ok(PhoneNumber(format!("+{international}")))
    }

    /// The number as `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form for logs at info level and above: see [`mask_number`].
    pub fn masked(&self) -> String {
        mask_number(&self.0)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PhoneNumber::parse(&value, None)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

/// Masks any number-like string for logs: `+358401234567` → `+35840****567`. Keeps the first 6
/// and last 3 characters of a number of 12 or more characters, fewer for shorter ones, always
/// writes four stars (so the length is not told), and leaves short codes of up to 4 digits as
/// they are. A clean alphanumeric sender name (up to 11 ASCII letters, digits and spaces, with a
/// letter) is kept: it is a public brand name, not personal data. Anything else (a number with
/// `*` or `#`, control characters, a line feed, a long text) is not a clean number and is
/// masked whole as `****`, so it can neither leak a number nor break a log line.
pub fn mask_number(number: &str) -> String {
    let is_number = !number.is_empty()
        && number.chars().enumerate().all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == '+'))
        && number != "+";
    if !is_number {
        let brand = (1..=11).contains(&number.chars().count())
            && number.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
            && number.chars().any(|c| c.is_ascii_alphabetic());
        return if brand { number.to_string() } else { "****".to_string() };
    }
    let chars: Vec<char> = number.chars().collect();
    let (head, tail) = match chars.len() {
        0..=4 => return number.to_string(),
        5..=9 => (2, 2),
        10..=11 => (4, 3),
        _ => (6, 3),
    };
    let mut out: String = chars[..head].iter().collect();
    out.push_str("****");
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Masks every phone-number-like run (an optional `+` and 7 or more digits, spaces allowed
/// inside) in free text such as an error message, for logs at info and above.
pub fn mask_numbers_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number =
            chars[i].is_ascii_digit() || (chars[i] == '+' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()));
        if !starts_number {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len()
            && (chars[j].is_ascii_digit() || (chars[j] == ' ' && chars.get(j + 1).is_some_and(|c| c.is_ascii_digit())))
        {
            j += 1;
        }
        let run: String = chars[i..j].iter().filter(|c| **c != ' ').collect();
        if run.trim_start_matches('+').len() >= 7 {
            out.push_str(&mask_number(&run));
        } else {
            out.extend(&chars[i..j]);
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_forms_are_normalised() {
        for input in ["+358401234567", "+358 40 123 4567", "00358401234567", "+358-40-(123)-4567"] {
            assert_eq!(PhoneNumber::parse(input, None).unwrap().as_str(), "+358401234567", "{input}");
        }
    }

    #[test]
    fn national_numbers_use_the_default_country() {
        let n = PhoneNumber::parse("040 123 4567", Some("358")).unwrap();
        assert_eq!(n.as_str(), "+358401234567");
        let n = PhoneNumber::parse("0412345678", Some("+61")).unwrap();
        assert_eq!(n.as_str(), "+61412345678");
    }

    #[test]
    fn bad_numbers_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("+358 40 abc", "contains 'a'"),
            ("0401234567", "no default country"),
            ("+12345", "has 5 digits"),
            ("+1234567890123456", "has 16 digits"),
            ("35+8401234567", "contains '+'"),
            ("16400", "short code"),
        ];
        for (input, expected) in cases {
            let err = PhoneNumber::parse(input, None).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn a_short_code_never_gets_a_country_code() {
        for code in ["16400", "112", "123456", "0 16400"] {
            let err = PhoneNumber::parse(code, Some("358")).unwrap_err();
            assert!(matches!(err, PhoneError::ShortCode(_)), "{code}: {err}");
        }
        assert_eq!(PhoneNumber::parse("0401234", Some("358")).unwrap().as_str(), "+358401234");
    }

    #[test]
    fn anything_that_is_not_a_clean_number_or_brand_name_is_masked_whole() {
        assert_eq!(mask_number("+35840*1234567"), "****");
        assert_eq!(mask_number("#31#0401234567"), "****");
        assert_eq!(mask_number("Vet\nINFO forged line"), "****");
        assert_eq!(mask_number("\u{1b}]0;x\u{7}"), "****");
        assert_eq!(mask_number(""), "****");
        assert_eq!(mask_number("+"), "****");
        assert_eq!(mask_number("ExampleVet"), "ExampleVet");
        assert_eq!(mask_number("Vet Clinic"), "Vet Clinic");
        assert_eq!(mask_number("A very long sender name"), "****");
    }

    #[test]
    fn numbers_inside_free_text_are_masked() {
        assert_eq!(
            mask_numbers_in("phone number \"040 123 4567\" is national; part 2 of 3, +CMS ERROR: 304"),
            "phone number \"0401****567\" is national; part 2 of 3, +CMS ERROR: 304"
        );
        assert_eq!(mask_numbers_in("to +358401234567."), "to +35840****567.");
        assert_eq!(mask_numbers_in("no numbers here"), "no numbers here");
    }

    #[test]
    fn masking_hides_the_middle_of_numbers_only() {
        assert_eq!(mask_number("+358401234567"), "+35840****567");
        assert_eq!(mask_number("0401234567"), "0401****567");
        assert_eq!(mask_number("12345"), "12****45");
        assert_eq!(mask_number("1234"), "1234");
        assert_eq!(mask_number("ExampleVet"), "ExampleVet");
        assert_eq!(PhoneNumber::parse("+358401234567", None).unwrap().masked(), "+35840****567");
    }
}
