//! Time-based one-time passwords (RFC 6238): the second factor users enrol
//! with `tokenfn user mfa enroll`. SHA-1, 6 digits, 30-second steps: what
//! every authenticator app reads from an `otpauth://` URI.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use super::secret::random_bytes;

const DIGITS: usize = 6;
const STEP: u64 = 30;
/// One step either side of now: clocks drift and people type slowly.
const SKEW: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("the system random source failed")]
    Random,
    #[error("the stored TOTP secret is unreadable")]
    BadSecret,
}

/// A fresh 160-bit secret (RFC 4226 §4 recommends 160 bits), base32.
pub fn new_secret() -> Result<String, TotpError> {
    let bytes = random_bytes::<20>().map_err(|_| TotpError::Random)?;
    match Secret::Raw(bytes.to_vec()).to_encoded() {
        Secret::Encoded(s) => Ok(s),
        Secret::Raw(_) => Err(TotpError::BadSecret),
    }
}

fn totp(secret: &str, issuer: &str, account: &str) -> Result<TOTP, TotpError> {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .map_err(|_| TotpError::BadSecret)?;
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        SKEW as u8,
        STEP,
        bytes,
        Some(issuer.to_owned()),
        account.to_owned(),
    )
    .map_err(|_| TotpError::BadSecret)
}

/// The `otpauth://totp/...` URI an authenticator app enrols from.
pub fn uri(secret: &str, issuer: &str, account: &str) -> Result<String, TotpError> {
    Ok(totp(secret, issuer, account)?.get_url())
}

/// The code for `now` (tests and the playground's demo user).
pub fn code_at(secret: &str, now: i64) -> Result<String, TotpError> {
    Ok(totp(secret, "tokenfn", "user")?.generate(now.max(0) as u64))
}

/// Checks `code` against the steps around `now` and returns the step it
/// matched, so that the caller can refuse a second use of the same step
/// (RFC 6238 §5.2). Spaces in the code are ignored.
pub fn verify(secret: &str, code: &str, now: i64) -> Result<Option<i64>, TotpError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(secret, "tokenfn", "user")?;
    let current = now.max(0) as u64 / STEP;
    let mut matched = None;
    // Every candidate is computed and compared, whichever matches.
    for step in current.saturating_sub(SKEW)..=current + SKEW {
        let expected = totp.generate(step * STEP);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(step as i64);
        }
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 key "12345678901234567890", last 6 digits.
    const RFC_KEY: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn matches_rfc_6238_vectors() {
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(RFC_KEY, t).unwrap(), code, "t={t}");
        }
    }

    #[test]
    fn accepts_one_step_either_side_and_names_it() {
        let secret = new_secret().unwrap();
        let now = 1_700_000_015;
        let step = now / 30;
        let prev = code_at(&secret, now - 30).unwrap();
        assert_eq!(verify(&secret, &prev, now).unwrap(), Some(step - 1));
        let this = code_at(&secret, now).unwrap();
        assert_eq!(verify(&secret, &this, now).unwrap(), Some(step));
        let spaced = format!("{} {}", &this[..3], &this[3..]);
        assert_eq!(verify(&secret, &spaced, now).unwrap(), Some(step));
        let old = code_at(&secret, now - 90).unwrap();
        assert_eq!(verify(&secret, &old, now).unwrap(), None);
        assert_eq!(verify(&secret, "12345", now).unwrap(), None);
        assert_eq!(verify(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), 32);
        let uri = uri(&secret, "tokenfn", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/tokenfn:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    }
}
