//! Proof Key for Code Exchange (RFC 7636), S256 only: `plain` offers no
//! protection against a leaked authorization request (RFC 9700 §2.1.1).

use super::OAuthError;
use super::secret::{b64url, ct_eq, sha256};

/// Checks a `code_challenge` as received at the authorization endpoint:
/// base64url of a SHA-256 digest is 43 characters (§4.2).
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), OAuthError> {
    match method {
        Some("S256") => {}
        // §4.3: an absent method means `plain`, which we do not accept.
        None | Some("plain") => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "unsupported code_challenge_method; use S256",
            ));
        }
    }
    if challenge.len() != 43 || !challenge.bytes().all(is_b64url) {
        return Err(OAuthError::invalid_request(
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        ));
    }
    Ok(())
}

/// Checks a `code_verifier` against the stored challenge (§4.6).
pub fn verify(challenge: &str, verifier: &str) -> Result<(), OAuthError> {
    // §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return Err(OAuthError::invalid_grant("malformed code_verifier"));
    }
    if ct_eq(&b64url(&sha256(verifier.as_bytes())), challenge) {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ))
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        check_challenge(CHALLENGE, Some("S256")).unwrap();
        verify(CHALLENGE, VERIFIER).unwrap();
    }

    #[test]
    fn plain_and_missing_method_are_refused() {
        assert!(check_challenge(CHALLENGE, Some("plain")).is_err());
        assert!(check_challenge(CHALLENGE, None).is_err());
    }

    #[test]
    fn wrong_or_malformed_verifier_is_invalid_grant() {
        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj";
        assert_eq!(
            verify(CHALLENGE, wrong).unwrap_err().code.as_str(),
            "invalid_grant"
        );
        assert!(verify(CHALLENGE, "short").is_err());
    }
}
