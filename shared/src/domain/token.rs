//! The tokens tokenfn mints: JWT access tokens (RFC 9068) and ID tokens
//! (OIDC Core §2), as claims plus the JWS compact form around a signature
//! that a Signer makes (RFC 7515 §7.1).

use serde::Serialize;

use super::Grant;
use super::secret::b64url;

/// JOSE header of a token.
#[derive(Debug, Serialize)]
pub struct Header<'a> {
    pub alg: &'a str,
    pub typ: &'a str,
    pub kid: &'a str,
}

/// RFC 9068 §2.2 claims of an access token.
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub client_id: &'a str,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The grant this token was issued under (absent for client_credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// OIDC Core §2 and §5.1 claims of an ID token.
#[derive(Debug, Serialize)]
pub struct IdClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub azp: &'a str,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    /// Only in the ID token of the authorization response (§12.2: not on refresh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub amr: &'a [String],
}

impl<'a> IdClaims<'a> {
    /// The ID token for `grant`. Profile and email claims are not
    /// in it: with an access token issued they come from UserInfo (OIDC Core §5.4).
    pub fn for_grant(
        issuer: &'a str,
        grant: &'a Grant,
        nonce: Option<&'a str>,
        now: i64,
        lifetime: i64,
    ) -> Self {
        Self {
            iss: issuer,
            sub: &grant.user_id,
            aud: &grant.client_id,
            azp: &grant.client_id,
            exp: now + lifetime,
            iat: now,
            auth_time: grant.auth_time,
            nonce,
            amr: &grant.amr,
        }
    }
}

/// `BASE64URL(header) '.' BASE64URL(claims)`: what gets signed.
pub fn signing_input<H: Serialize, C: Serialize>(
    header: &H,
    claims: &C,
) -> Result<String, serde_json::Error> {
    Ok(format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header)?),
        b64url(&serde_json::to_vec(claims)?)
    ))
}

/// The compact JWS: signing input and signature.
pub fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", b64url(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_input_is_two_base64url_parts() {
        let input = signing_input(
            &Header {
                alg: "ES256",
                typ: "JWT",
                kid: "k",
            },
            &serde_json::json!({"a": 1}),
        )
        .unwrap();
        let parts: Vec<&str> = input.split('.').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], "eyJhIjoxfQ");
        assert_eq!(compact(&input, &[0xff]), format!("{input}._w"));
    }
}
