//! `AccountName`: the name of a user or a token, checked once where it enters (the CLI, the
//! login form).

use std::fmt;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A user or token name: 1 to 64 ASCII letters, digits, `.`, `_`, `-` or `@`, starting with a
/// letter or a digit. Names appear in logs, the status page and `smshub user list`, so nothing
/// that could be mistaken for markup, a path or a second field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountName(String);

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error("the name must start with a letter or a digit and hold only letters, digits, '.', '_', '-' and '@'")]
    Characters,
}

impl AccountName {
    pub fn parse(name: &str) -> Result<AccountName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let first_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !first_ok || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
            return Err(NameError::Characters);
        }
        Ok(AccountName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_ascii() {
        for ok in ["anna", "reception-1", "dr.virtanen@clinic", "0", &"a".repeat(64)] {
            assert_eq!(AccountName::parse(ok).map(|n| n.to_string()), Ok(ok.to_string()));
        }
        assert_eq!(AccountName::parse(""), Err(NameError::Empty));
        assert_eq!(AccountName::parse(&"a".repeat(65)), Err(NameError::TooLong));
        for bad in ["-anna", ".x", "an na", "anna<script>", "änna", "a/b", "a\n", "a;b"] {
            assert_eq!(AccountName::parse(bad), Err(NameError::Characters), "{bad:?}");
        }
    }
}
