//! Random secrets and what is stored of them: session ids, CSRF tokens and API tokens come from
//! the operating system's generator (ring's `SystemRandom`); the database keeps only their
//! SHA-256. They are 128 bits or more of randomness, so a fast hash cannot be reversed by
//! guessing, unlike a password (which gets argon2id, see [`super::password`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Every API token starts with this, so secret scanners and people can tell what it is.
pub const TOKEN_PREFIX: &str = "smshub_";

/// Length of a session id or CSRF token as text: 128 bits in unpadded base64url.
pub const SHORT_SECRET_LEN: usize = 22;

/// Length of an API token as text: the prefix and 256 bits in unpadded base64url.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;

/// The operating system gave no random bytes (it practically never happens on Linux).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct NoRandomness;

fn random<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| NoRandomness)?;
    Ok(bytes)
}

/// A fresh 128-bit secret as text (a session id, a CSRF token).
pub fn short_secret() -> Result<String, NoRandomness> {
    Ok(URL_SAFE_NO_PAD.encode(random::<16>()?))
}

/// A fresh API token: [`TOKEN_PREFIX`] and 256 random bits.
pub fn new_token() -> Result<String, NoRandomness> {
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random::<32>()?)))
}

/// Random salt bytes for a password hash.
pub fn salt() -> Result<[u8; 16], NoRandomness> {
    random()
}

/// Whether `s` could be a session id or CSRF token we made (checked before any lookup, so
/// garbage never reaches the database).
pub fn is_short_secret(s: &str) -> bool {
    s.len() == SHORT_SECRET_LEN && s.bytes().all(is_base64url)
}

/// Whether `s` could be an API token we made.
pub fn is_token(s: &str) -> bool {
    s.len() == TOKEN_LEN && s.starts_with(TOKEN_PREFIX) && s[TOKEN_PREFIX.len()..].bytes().all(is_base64url)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// SHA-256 of a secret: what the database keeps and looks up.
pub fn digest(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_secrets_have_their_shape_and_differ() {
        let (a, b) = (short_secret().unwrap(), short_secret().unwrap());
        assert!(is_short_secret(&a) && is_short_secret(&b), "{a} {b}");
        assert_ne!(a, b);
        let t = new_token().unwrap();
        assert!(is_token(&t), "{t}");
        assert!(!is_token(&a));
        assert!(!is_short_secret(&t));
        assert!(!is_short_secret("aaaaaaaaaaaaaaaaaaaaa="), "padding is not ours");
        assert!(!is_token(&format!("{TOKEN_PREFIX}{}", "é".repeat(21))), "non-ASCII of the right byte length");
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn the_digest_is_sha256() {
        let d = digest("abc");
        assert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
