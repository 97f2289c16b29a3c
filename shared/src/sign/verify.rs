//! Verifying the access tokens this server signed (RFC 9068), for
//! introspection and UserInfo: against the published keys only, with the
//! algorithm each key is for, `typ: at+jwt`, our issuer and an unexpired `exp`.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The claims of a verified access token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::secret::b64url;
    use crate::domain::token::{Header, compact, signing_input};
    use crate::ports::Signer;
    use crate::sign::LocalSigner;

    const ISSUER: &str = "https://id.example";
    const NOW: i64 = 1_700_000_000;

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "sub": "u1", "aud": "app", "client_id": "app",
            "scope": "openid", "iat": NOW, "exp": NOW + 300, "jti": "j1", "grant_id": "g1",
        })
    }

    async fn signed(signer: &LocalSigner, typ: &str, claims: &Value) -> String {
        let keys = signer.keys().await.unwrap();
        let header = Header {
            alg: keys.alg,
            typ,
            kid: &keys.kid,
        };
        let input = signing_input(&header, claims).unwrap();
        compact(&input, &signer.sign(input.as_bytes()).await.unwrap())
    }

    fn with_header(token: &str, header: &Value) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        let encoded = b64url(header.to_string().as_bytes());
        parts[0] = &encoded;
        parts.join(".")
    }

    #[tokio::test]
    async fn accepts_our_access_tokens_and_refuses_every_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = LocalSigner::load_or_create(dir.path()).unwrap();
        let keys = signer.keys().await.unwrap();
        let verifier = AccessVerifier::new(ISSUER, &keys.jwks);
        let good = signed(&signer, "at+jwt", &claims()).await;
        let at = verifier.verify(&good, NOW).unwrap();
        assert_eq!(
            (at.sub.as_str(), at.grant_id.as_deref()),
            ("u1", Some("g1"))
        );

        // Expired: exp is not after now (no skew: our own clock signed it).
        assert_eq!(verifier.verify(&good, NOW + 300), Err(Refused::Expired));
        // An ID token (typ JWT) is not an access token.
        let id = signed(&signer, "JWT", &claims()).await;
        assert_eq!(verifier.verify(&id, NOW), Err(Refused::WrongType));
        // Another issuer.
        let mut other = claims();
        other["iss"] = "https://evil.example".into();
        let other = signed(&signer, "at+jwt", &other).await;
        assert_eq!(verifier.verify(&other, NOW), Err(Refused::Invalid));

        // alg none, with or without a signature.
        let kid = keys.kid.as_str();
        let none = with_header(&good, &json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
        assert!(verifier.verify(&none, NOW).is_err());
        let unsigned = format!("{}.", none.rsplit_once('.').unwrap().0);
        assert!(verifier.verify(&unsigned, NOW).is_err());
        // HS256 keyed with the public key (the algorithm confusion attack).
        let jwks = keys.jwks.to_string();
        let hs_header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        let input = format!(
            "{}.{}",
            b64url(hs_header.to_string().as_bytes()),
            good.split('.').nth(1).unwrap()
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, jwks.as_bytes());
        let mac = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let hs = format!("{input}.{}", b64url(mac.as_ref()));
        assert_eq!(verifier.verify(&hs, NOW), Err(Refused::Invalid));
        // A kid we do not publish.
        let unknown = with_header(
            &good,
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"}),
        );
        assert_eq!(verifier.verify(&unknown, NOW), Err(Refused::UnknownKey));
        // A key of another server, with our kid.
        let other_dir = tempfile::tempdir().unwrap();
        let (stranger, _) = LocalSigner::load_or_create(other_dir.path()).unwrap();
        let foreign = signed(&stranger, "at+jwt", &claims()).await;
        let foreign = with_header(
            &foreign,
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
        );
        assert_eq!(verifier.verify(&foreign, NOW), Err(Refused::Invalid));
        // Changed claims break the signature; garbage is malformed.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut widened = claims();
        widened["scope"] = "openid admin".into();
        parts[1] = b64url(widened.to_string().as_bytes());
        assert_eq!(
            verifier.verify(&parts.join("."), NOW),
            Err(Refused::Invalid)
        );
        assert_eq!(verifier.verify("not a jwt", NOW), Err(Refused::Malformed));
    }
}
