//! Passwords: the rule for a new one, its argon2id hash (a PHC string, salt and parameters
//! inside), and the check at login.
//!
//! argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation) costs
//! tens of milliseconds on a PC and a few hundred on a Raspberry Pi, which is the point: a
//! stolen database is slow to guess from. The login handler runs it off the async threads and
//! at most a few at once (each takes 19 MiB).

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::secrets::{self, NoRandomness};

/// The shortest password `smshub user add` accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// The longest, in bytes (a bound, not advice).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be set or hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("{0}")]
    Random(#[from] NoRandomness),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Checks a new password against the rule.
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// The argon2id PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&secrets::salt()?).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let phc =
        Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(phc.to_string())
}

/// Whether `password` matches `stored` (a PHC string). With no stored hash (no such user) a
/// hash of the same cost is checked anyway and the answer is false, so a missing user takes as
/// long as a wrong password: timing does not tell which names exist. The comparison of the
/// computed and stored hash is constant-time (the `password-hash` crate's `Output`).
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    let dummy = dummy_hash();
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (dummy, false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!("a stored password hash cannot be read; set the password again with `smshub user add`");
        return false;
    };
    let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    real && matches
}

/// A hash of a random password, made once, for [`verify`] without a user.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = secrets::short_secret().unwrap_or_else(|_| "no randomness: any text will do".into());
        hash(&password).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", Some(&phc)));
        assert!(!verify("correct horse batterY", Some(&phc)));
        assert!(!verify("", Some(&phc)));
        assert_ne!(hash("correct horse battery").unwrap(), phc, "a fresh salt each time");
    }

    #[test]
    fn no_user_and_a_broken_hash_never_verify() {
        assert!(!verify("anything at all", None));
        assert!(!verify("anything at all", Some("not a phc string")));
        // Not even the dummy's own password could: it is random and never kept.
        assert!(!verify("", None));
    }

    #[test]
    fn new_passwords_must_be_long_enough() {
        assert!(matches!(check_new(""), Err(PasswordError::Empty)));
        assert!(matches!(check_new("short"), Err(PasswordError::TooShort)));
        assert!(matches!(check_new("ääääääääää"), Ok(())), "characters, not bytes");
        assert!(matches!(check_new(&"x".repeat(1025)), Err(PasswordError::TooLong)));
    }
}
