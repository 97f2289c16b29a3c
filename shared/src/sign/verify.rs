//! Verifying the access tokens this server signed (RFC 9068), for
//! introspection and UserInfo: against the published keys only, with the
//! algorithm each key is for, `typ: at+jwt`, our issuer and an unexpired `exp`.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The claims of a verified access token.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessToken {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(default)]
    pub grant_id: Option<String>,
}

/// Why a token was refused; said to the caller as `invalid_token`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("the token is not a JWT this server issued")]
    Malformed,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature or claims do not verify")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

pub struct AccessVerifier {
    issuer: String,
    keys: Vec<(String, Algorithm, DecodingKey)>,
}

impl AccessVerifier {
    /// From the signer's JWK Set. Keys it cannot read are left out (and
    /// so verify nothing).
    pub fn new(issuer: &str, jwks: &serde_json::Value) -> Self {
        let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap_or(JwkSet { keys: vec![] });
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    _ => return None,
                };
                Some((kid, alg, DecodingKey::from_jwk(jwk).ok()?))
            })
            .collect();
        Self {
            issuer: issuer.to_owned(),
            keys,
        }
    }

    /// Verifies `token` at `now` (our own clock signed it: no skew allowed).
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessToken, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(Refused::WrongType);
        }
        let kid = header.kid.ok_or(Refused::UnknownKey)?;
        let (_, alg, key) = self
            .keys
            .iter()
            .find(|(k, _, _)| *k == kid)
            .ok_or(Refused::UnknownKey)?;
        if header.alg != *alg {
            return Err(Refused::Invalid);
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false;
        // `exp` is checked below against the service clock.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<AccessToken>(token, key, &validation)
            .map_err(|_| Refused::Invalid)?;
        if data.claims.exp <= now {
            return Err(Refused::Expired);
        }
        Ok(data.claims)
    }
}
