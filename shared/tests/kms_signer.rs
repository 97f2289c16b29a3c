//! The KMS signer against moto's server (DESIGN "Tests": no mocks of our own
//! for AWS). Tokens are checked with jsonwebtoken and the served JWKS, never
//! with KMS Verify, which in moto agrees with moto's own signing.

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokenfn_core::domain::token::{Header, compact, signing_input};
use tokenfn_core::ports::{Signer, SigningKeys, StoreError};
use tokenfn_core::sign::KmsSigner;
use tokenfn_core::sign::kms::KmsInitError;

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "client-1";

/// A KMS client for moto. The SDK reads `AWS_ENDPOINT_URL` itself.
async fn kms() -> Client {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: these tests need moto's server running \
         (scripts/test.sh starts it and sets AWS_ENDPOINT_URL)"
    );
    Client::new(&aws_config::defaults(BehaviorVersion::latest()).load().await)
}

async fn create_key(client: &Client, spec: KeySpec, usage: KeyUsageType) -> String {
    let out = client
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .expect("CreateKey");
    out.key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned()
}

async fn signing_key(client: &Client, spec: KeySpec) -> String {
    create_key(client, spec, KeyUsageType::SignVerify).await
}

/// A JWT signed by `signer`, the way the token service makes one.
async fn token(signer: &dyn Signer, sub: &str) -> String {
    let keys = signer.keys().await.unwrap();
    let header = Header {
        alg: keys.alg,
        typ: "JWT",
        kid: &keys.kid,
    };
    let claims = json!({
        "iss": ISSUER, "sub": sub, "aud": AUDIENCE,
        "iat": 1_700_000_000, "exp": 4_000_000_000i64,
    });
    let input = signing_input(&header, &claims).unwrap();
    let signature = signer.sign(input.as_bytes()).await.unwrap();
    if keys.alg == "ES256" {
        assert_eq!(signature.len(), 64, "RFC 7518 §3.4: r||s");
    }
    compact(&input, &signature)
}

/// The keys of a signer whose keys were read.
async fn keys(signer: &KmsSigner) -> SigningKeys {
    signer.keys().await.unwrap().clone()
}

/// RFC 7638 §3: the thumbprint from the JWK's required members, computed here
/// independently of the code under test.
fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str().unwrap() {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap(),
            jwk["n"].as_str().unwrap()
        ),
        other => panic!("unexpected kty {other}"),
    };
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies `token` the way a resource server would: pick the JWK by the
/// header's kid, build the key from its public members, check the signature
/// and the claims. Returns the claims.
fn verify(token: &str, jwks: &Value) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.expect("a kid in the header");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    assert_eq!(thumbprint(jwk), kid, "kid is the RFC 7638 thumbprint");
    assert_eq!(jwk["use"], "sig");
    let (key, alg) = match jwk["kty"].as_str().unwrap() {
        "EC" => {
            assert_eq!(jwk["crv"], "P-256");
            let key = DecodingKey::from_ec_components(
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap(),
            )?;
            (key, Algorithm::ES256)
        }
        "RSA" => {
            let key = DecodingKey::from_rsa_components(
                jwk["n"].as_str().unwrap(),
                jwk["e"].as_str().unwrap(),
            )?;
            (key, Algorithm::RS256)
        }
        other => panic!("unexpected kty {other}"),
    };
    assert_eq!(jwk["alg"], format!("{alg:?}"));
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

/// The same token with another `sub` and the original signature.
fn tampered(token: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    let forged = B64.encode(serde_json::to_vec(&claims).unwrap());
    parts[1] = &forged;
    parts.join(".")
}

#[tokio::test]
async fn es256_tokens_verify_with_the_served_jwk() {
    let client = kms().await;
    let key = signing_key(&client, KeySpec::EccNistP256).await;
    let signer = KmsSigner::new(client, &[key]).await.unwrap();
    let SigningKeys { alg, kid, jwks } = keys(&signer).await;
    assert_eq!(alg, "ES256");
    assert_eq!(kids(&jwks), [kid]);
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    assert_eq!(B64.decode(jwk["y"].as_str().unwrap()).unwrap().len(), 32);

    // Several tokens: ECDSA is randomised, so r and s vary in DER length.
    for i in 0..8 {
        let sub = format!("user-{i}");
        let token = token(&signer, &sub).await;
        let claims = verify(&token, &jwks).unwrap();
        assert_eq!(claims["sub"], sub.as_str());
        assert!(verify(&tampered(&token), &jwks).is_err());
    }
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_served_jwk() {
    let client = kms().await;
    let key = signing_key(&client, KeySpec::Rsa2048).await;
    let signer = KmsSigner::new(client, &[key]).await.unwrap();
    let SigningKeys { alg, kid, jwks } = keys(&signer).await;
    assert_eq!(alg, "RS256");
    assert_eq!(kids(&jwks), [kid]);
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["e"], "AQAB");
    assert_eq!(B64.decode(jwk["n"].as_str().unwrap()).unwrap().len(), 256);

    let token = token(&signer, "user-rsa").await;
    let signature = B64.decode(token.rsplit('.').next().unwrap()).unwrap();
    assert_eq!(signature.len(), 256);
    assert_eq!(verify(&token, &jwks).unwrap()["sub"], "user-rsa");
    assert!(verify(&tampered(&token), &jwks).is_err());
}

#[tokio::test]
async fn rsa_4096_signs_rs256() {
    let client = kms().await;
    let key = signing_key(&client, KeySpec::Rsa4096).await;
    let signer = KmsSigner::new(client, &[key]).await.unwrap();
    let SigningKeys { alg, jwks, .. } = keys(&signer).await;
    assert_eq!(alg, "RS256");
    let token = token(&signer, "user-4096").await;
    assert_eq!(verify(&token, &jwks).unwrap()["sub"], "user-4096");
}

#[tokio::test]
async fn the_first_key_signs_and_every_key_is_published() {
    let client = kms().await;
    let ec = signing_key(&client, KeySpec::EccNistP256).await;
    let rsa = signing_key(&client, KeySpec::Rsa2048).await;

    let current = KmsSigner::new(client.clone(), &[ec.clone(), rsa.clone()])
        .await
        .unwrap();
    // The signer of before a rotation: the other key first.
    let previous = KmsSigner::new(client, &[rsa, ec]).await.unwrap();

    let (now, before) = (keys(&current).await, keys(&previous).await);
    let jwks = now.jwks;
    assert_eq!(kids(&jwks), [now.kid.as_str(), before.kid.as_str()]);
    assert_ne!(now.kid, before.kid);
    assert_eq!(now.alg, "ES256");
    assert_eq!(before.alg, "RS256");

    let new = token(&current, "new").await;
    let header = jsonwebtoken::decode_header(&new).unwrap();
    assert_eq!(header.kid, Some(now.kid));
    assert_eq!(verify(&new, &jwks).unwrap()["sub"], "new");

    // A token from before still verifies against the combined JWKS.
    let old = token(&previous, "old").await;
    let header = jsonwebtoken::decode_header(&old).unwrap();
    assert_eq!(header.kid, Some(before.kid));
    assert_eq!(verify(&old, &jwks).unwrap()["sub"], "old");
}

#[tokio::test]
async fn an_alias_signs_with_the_key_it_names() {
    let client = kms().await;
    let key = signing_key(&client, KeySpec::EccNistP256).await;
    let alias = format!("alias/tokenfn-test-{key}");
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .expect("CreateAlias");
    // Named twice (alias and id): published once.
    let signer = KmsSigner::new(client, &[alias, key]).await.unwrap();
    let SigningKeys { kid, jwks, .. } = keys(&signer).await;
    assert_eq!(kids(&jwks), [kid]);
    let token = token(&signer, "via-alias").await;
    assert_eq!(verify(&token, &jwks).unwrap()["sub"], "via-alias");
}

#[tokio::test]
async fn a_signer_started_without_waiting_signs_once_its_keys_are_read() {
    let client = kms().await;
    let key = signing_key(&client, KeySpec::EccNistP256).await;
    let signer = KmsSigner::start(client, &[key], Some("ES256")).unwrap();
    // Configured, the alg is known before the keys are read.
    assert_eq!(signer.alg(), Some("ES256"));
    // The first signature waits for the read the start began.
    let token = token(&signer, "early").await;
    let SigningKeys { kid, jwks, .. } = keys(&signer).await;
    assert_eq!(kids(&jwks), [kid]);
    assert_eq!(verify(&token, &jwks).unwrap()["sub"], "early");
}

#[tokio::test]
async fn a_first_key_of_another_alg_than_configured_cannot_sign() {
    let client = kms().await;
    let ec = signing_key(&client, KeySpec::EccNistP256).await;
    let signer = KmsSigner::start(client, std::slice::from_ref(&ec), Some("RS256")).unwrap();
    let Err(StoreError::Unavailable(message)) = signer.keys().await else {
        panic!("an ES256 key was taken for RS256");
    };
    assert!(message.contains(&ec), "{message}");
    assert!(
        message.contains("signs ES256, but TOKENFN_SIGNING_ALG is RS256"),
        "{message}"
    );
    assert!(signer.sign(b"header.claims").await.is_err());
}

#[tokio::test]
async fn a_started_signer_with_an_unknown_key_is_unavailable_naming_it() {
    let client = kms().await;
    let unknown = "0b5e7a4c-1111-4222-8333-944455556667".to_owned();
    let signer = KmsSigner::start(client, std::slice::from_ref(&unknown), None).unwrap();
    let Err(StoreError::Unavailable(message)) = signer.keys().await else {
        panic!("an unknown key was read");
    };
    assert!(message.contains(&unknown), "{message}");
    let err = signer.sign(b"header.claims").await.unwrap_err();
    assert!(err.to_string().contains(&unknown), "{err}");
}

#[tokio::test]
async fn an_unknown_key_stops_init_naming_it() {
    let client = kms().await;
    let good = signing_key(&client, KeySpec::EccNistP256).await;
    let unknown = "0b5e7a4c-1111-4222-8333-944455556666".to_owned();
    let err = KmsSigner::new(client, &[good, unknown.clone()])
        .await
        .err()
        .expect("an unknown key must fail");
    assert!(matches!(err, KmsInitError::Unavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&unknown), "{message}");
}

#[tokio::test]
async fn keys_that_cannot_sign_jwts_are_refused_by_name() {
    let client = kms().await;

    let encrypting = create_key(&client, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let err = KmsSigner::new(client.clone(), std::slice::from_ref(&encrypting))
        .await
        .err()
        .expect("an ENCRYPT_DECRYPT key must be refused");
    let message = err.to_string();
    assert!(matches!(err, KmsInitError::NotForSigning { .. }), "{err:?}");
    assert!(message.contains(&encrypting), "{message}");
    assert!(message.contains("SIGN_VERIFY"), "{message}");

    let p384 = signing_key(&client, KeySpec::EccNistP384).await;
    let err = KmsSigner::new(client.clone(), std::slice::from_ref(&p384))
        .await
        .err()
        .expect("a P-384 key must be refused");
    let message = err.to_string();
    assert!(
        matches!(err, KmsInitError::UnsupportedSpec { .. }),
        "{err:?}"
    );
    assert!(message.contains(&p384), "{message}");
    assert!(message.contains("ECC_NIST_P384"), "{message}");

    let err = KmsSigner::new(client, &[])
        .await
        .err()
        .expect("no keys must be refused");
    assert!(matches!(err, KmsInitError::NoKeys), "{err:?}");
}

/// TOTP secrets sealed with a symmetric KMS key: they open for the user
/// they were sealed for, and for no one else.
#[tokio::test]
async fn kms_box_seals_for_one_user() {
    use tokenfn_core::seal::{KmsBox, SecretBox};
    let client = kms().await;
    let key = create_key(
        &client,
        KeySpec::SymmetricDefault,
        KeyUsageType::EncryptDecrypt,
    )
    .await;
    let sealer = KmsBox::new(client, key);
    let sealed = sealer.seal("user-1", "JBSWY3DPEHPK3PXP").await.unwrap();
    assert!(!sealed.contains("JBSWY3DPEHPK3PXP"), "{sealed}");
    assert_eq!(
        sealer.open("user-1", &sealed).await.unwrap(),
        "JBSWY3DPEHPK3PXP"
    );
    assert!(sealer.open("user-2", &sealed).await.is_err());
    assert!(sealer.open("user-1", "a256gcm.AAAA").await.is_err());
}
