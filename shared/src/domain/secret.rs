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

/// Hex digits of a refresh token's locator: microseconds since the Unix
/// epoch, zero-padded so that locators sort as their instants do.
const LOCATOR_DIGITS: usize = 14;

/// A fresh refresh token, `LOCATOR.SECRET`: the instant it was made (see
/// [`refresh_key`]) and a [`new_secret`]. Only the secret is secret; the
/// locator tells its holder when the token was issued, which the holder
/// knows anyway.
pub fn new_refresh_token() -> Result<String, RandomError> {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    Ok(format!(
        "{micros:0width$x}.{}",
        new_secret()?,
        width = LOCATOR_DIGITS
    ))
}

/// The key a refresh token is stored under: `LOCATOR.HASH` for a token made
/// by [`new_refresh_token`], where HASH is the [`hash`] of the whole token;
/// the bare hash for any other string (tokens issued before locators).
/// Keys made one after another sort one after another, so a store's index
/// of them grows at its end instead of at random places: under steady
/// rotation SQLite rewrites a few tail pages instead of a page per token.
pub fn refresh_key(token: &str) -> String {
    match token.split_once('.') {
        Some((locator, _))
            if locator.len() == LOCATOR_DIGITS
                && locator
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            format!("{locator}.{}", hash(token))
        }
        _ => hash(token),
    }
}

/// The first characters of a hash, enough to correlate log lines and never
/// enough to matter (DESIGN invariant 8). A [`refresh_key`]'s locator is
/// skipped: it only says when.
pub fn log_prefix(hash: &str) -> &str {
    let hash = hash.rsplit_once('.').map_or(hash, |(_, h)| h);
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
    fn refresh_tokens_carry_a_locator_and_a_secret() {
        let token = new_refresh_token().unwrap();
        let (locator, secret) = token.split_once('.').unwrap();
        assert_eq!(locator.len(), LOCATOR_DIGITS);
        assert!(u64::from_str_radix(locator, 16).is_ok(), "{locator}");
        assert_eq!(secret.len(), 43);
        assert_eq!(refresh_key(&token), format!("{locator}.{}", hash(&token)));
        assert_eq!(log_prefix(&refresh_key(&token)), &hash(&token)[..8]);
    }

    #[test]
    fn refresh_keys_sort_as_their_tokens_were_made() {
        let keys: Vec<String> = (0..50)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_micros(2));
                refresh_key(&new_refresh_token().unwrap())
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn other_strings_are_keyed_by_their_bare_hash() {
        // Tokens issued before locators, and anything a client makes up.
        for token in [
            "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6",
            "0006a3f9c4e1b2f.a-locator-too-long",
            "0006A3F9C4E1B2.secret",
            "06a3f9c4e1b2.a-locator-too-short",
            "0006a3f9c4e1b2",
            ".",
            "",
        ] {
            assert_eq!(refresh_key(token), hash(token), "{token:?}");
        }
        assert_eq!(
            refresh_key("0006a3f9c4e1b2.x"),
            format!("0006a3f9c4e1b2.{}", hash("0006a3f9c4e1b2.x"))
        );
    }

    #[test]
    fn hash_is_sha256_base64url() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(hash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert!(ct_eq(&hash("x"), &hash("x")));
        assert!(!ct_eq(&hash("x"), &hash("y")));
    }
}
