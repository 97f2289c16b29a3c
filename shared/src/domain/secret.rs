//! Secrets: 256-bit random values handed out once and kept only as SHA-256
//! (DESIGN invariant 1), compared in constant time.

use aws_lc_rs::{digest, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// Error from the system's random source; nothing can be issued without it.
#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomError;

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    rand::fill(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

/// A fresh opaque secret: 256 random bits, base64url without padding (43 chars).
pub fn new_secret() -> Result<String, RandomError> {
    Ok(b64url(&random_bytes::<32>()?))
}

/// A fresh public identifier: 128 random bits (22 chars).
pub fn new_id() -> Result<String, RandomError> {
    Ok(b64url(&random_bytes::<16>()?))
}

/// What is stored in place of a secret: base64url(SHA-256(secret)).
pub fn hash(secret: &str) -> String {
    b64url(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Constant-time equality of two strings (their lengths are not secret).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The first characters of a hash, enough to correlate log lines and never
/// enough to matter (DESIGN invariant 8).
pub fn log_prefix(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bit_and_distinct() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256_base64url() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(hash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert!(ct_eq(&hash("x"), &hash("x")));
        assert!(!ct_eq(&hash("x"), &hash("y")));
    }
}
