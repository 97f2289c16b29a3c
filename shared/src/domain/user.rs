//! End users and their passwords (argon2id, DESIGN invariant 1).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

use super::secret::random_bytes;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub email: Option<String>,
    /// The base32 TOTP secret (RFC 6238) when the user enrolled a second factor.
    #[serde(skip_serializing, default)]
    pub totp_secret: Option<String>,
    pub created_at: i64,
}

impl User {
    pub fn has_mfa(&self) -> bool {
        self.totp_secret.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the system random source failed")]
    Random,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes a password with argon2id and a fresh 128-bit salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt_bytes = random_bytes::<16>().map_err(|_| PasswordError::Random)?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Verifies a password against a stored PHC string. An unreadable hash
/// verifies nothing.
pub fn verify_password(stored: &str, password: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A fixed argon2id hash to verify against when the username is unknown, so
/// that a wrong username costs the same time as a wrong password.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dG9rZW5mbi1kdW1teQ$4TLmIS9Q3yRw7KbTfO2VSsD0tIY7LURbsAJIPYy0X/8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b);
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "wrong horse"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn dummy_hash_parses_and_matches_nothing_common() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password(DUMMY_HASH, "password"));
    }
}
