//! Signing with asymmetric AWS KMS keys. The public keys are read once per
//! container (`GetPublicKey`, in parallel; a Lambda function's signer reads
//! them in the background, see [`KmsSigner::start`]) and published as the
//! JWKS; each token costs one `Sign` call with the first key.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use serde_json::{Value, json};
use tokio::sync::{Notify, OnceCell};
use tokio::task::JoinHandle;

use super::jwk;
use crate::ports::{Signer, SigningKeys, StoreError};

/// KMS refuses `RAW` messages longer than this (the `Sign` API reference);
/// a JWT signing input is far shorter.
const MAX_RAW_MESSAGE: usize = 4096;

/// How long a started signer waits for a request before it reads its keys
/// anyway: the first request of a cold Lambda container is there at once,
/// so this is long enough for one that needs no key to be answered first.
pub const IDLE: Duration = Duration::from_millis(10);

/// SubjectPublicKeyInfo of a P-256 key (RFC 5480 §2) up to the point: the
/// id-ecPublicKey and secp256r1 OIDs, then a BIT STRING of 66 bytes with no
/// unused bits. DER is canonical, so every such key starts with exactly this.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Signs with the first of the configured KMS keys and publishes all of them.
pub struct KmsSigner {
    client: Client,
    key_ids: Vec<String>,
    /// The `alg` the first key must have, if configured.
    alg: Option<&'static str>,
    /// Tells the read [`KmsSigner::start`] set up to begin now.
    go: Arc<Notify>,
    /// That read, until the first caller awaits it.
    reading: Mutex<Option<JoinHandle<Result<Loaded, KmsInitError>>>>,
    loaded: OnceCell<Loaded>,
}

/// The configured keys, as read.
struct Loaded {
    /// The key `GetPublicKey` resolved the first configured id to (its ARN
    /// on AWS, its bare id in moto), so that an alias re-pointed later
    /// cannot make us sign with a key missing from the JWKS.
    key_arn: String,
    alg: Alg,
    keys: SigningKeys,
}

#[derive(Debug, thiserror::Error)]
pub enum KmsInitError {
    #[error("no KMS signing key is configured")]
    NoKeys,
    #[error("cannot read the public key of KMS key {key_id}: {message}")]
    Unavailable { key_id: String, message: String },
    #[error("KMS key {key_id} has key usage {usage}; signing needs a SIGN_VERIFY key")]
    NotForSigning { key_id: String, usage: String },
    #[error(
        "KMS key {key_id} has key spec {spec}; supported are ECC_NIST_P256 (ES256) and RSA_2048, RSA_3072, RSA_4096 (RS256)"
    )]
    UnsupportedSpec { key_id: String, spec: String },
    #[error("KMS returned a public key for {key_id} that is not a valid {spec} key")]
    MalformedPublicKey { key_id: String, spec: String },
    #[error(
        "KMS key {key_id} signs {alg}, but TOKENFN_SIGNING_ALG is {expected}: set it to {alg}, or name a key for {expected} first"
    )]
    NotTheConfiguredAlg {
        key_id: String,
        alg: &'static str,
        expected: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn jose(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }

    /// RFC 7518 §3.4 (ES256: ECDSA P-256 SHA-256) and §3.3 (RS256:
    /// RSASSA-PKCS1-v1_5 SHA-256).
    fn kms(self) -> SigningAlgorithmSpec {
        match self {
            Alg::Es256 => SigningAlgorithmSpec::EcdsaSha256,
            Alg::Rs256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        }
    }
}

/// One configured key, as read.
struct PublicKey {
    key_arn: String,
    alg: Alg,
    jwk: Value,
}

impl KmsSigner {
    /// Reads the public key of every key in `key_ids` (key ids, ARNs or
    /// aliases) now, in parallel; any key that cannot sign is an error.
    pub async fn new(client: Client, key_ids: &[String]) -> Result<Self, KmsInitError> {
        let signer = Self::unread(client, key_ids, None)?;
        signer.loaded().await?;
        Ok(signer)
    }

    /// Returns at once, and reads the public keys on the current Tokio
    /// runtime when a request first needs them or hints that it will
    /// ([`Signer::prepare`]), or once the process has had [`IDLE`] to itself:
    /// a Lambda container's init waits for no KMS call, and a request that
    /// needs no key is not slowed by the read. A read that failed is tried
    /// again by the next request that needs the keys.
    ///
    /// `alg` is the JOSE `alg` the first key must sign with, when it is
    /// known beforehand (`TOKENFN_SIGNING_ALG`): [`Signer::alg`] tells it
    /// before the read, and a key of another kind is refused.
    pub fn start(
        client: Client,
        key_ids: &[String],
        alg: Option<&'static str>,
    ) -> Result<Self, KmsInitError> {
        let mut signer = Self::unread(client, key_ids, alg)?;
        let (client, key_ids, go) = (
            signer.client.clone(),
            signer.key_ids.clone(),
            signer.go.clone(),
        );
        let read = tokio::spawn(async move {
            let _ = tokio::time::timeout(IDLE, go.notified()).await;
            read_keys(client, key_ids, alg).await
        });
        signer.reading = Mutex::new(Some(read));
        Ok(signer)
    }

    fn unread(
        client: Client,
        key_ids: &[String],
        alg: Option<&'static str>,
    ) -> Result<Self, KmsInitError> {
        if key_ids.is_empty() {
            return Err(KmsInitError::NoKeys);
        }
        Ok(Self {
            client,
            key_ids: key_ids.to_vec(),
            alg,
            go: Arc::new(Notify::new()),
            reading: Mutex::new(None),
            loaded: OnceCell::new(),
        })
    }

    async fn loaded(&self) -> Result<&Loaded, KmsInitError> {
        self.loaded
            .get_or_try_init(|| async {
                // The read that start() set up may still be waiting: begin it.
                self.go.notify_one();
                let started = self
                    .reading
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let again = || read_keys(self.client.clone(), self.key_ids.clone(), self.alg);
                let Some(read) = started else {
                    return again().await;
                };
                // A read that had failed before anyone waited for it is old
                // news: this request reads again.
                let stale = read.is_finished();
                match read.await {
                    Ok(Ok(loaded)) => Ok(loaded),
                    _ if stale => again().await,
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(KmsInitError::Unavailable {
                        key_id: self.key_ids.join(", "),
                        message: e.to_string(),
                    }),
                }
            })
            .await
    }
}

/// `GetPublicKey` for every key, in parallel; the first one signs, with
/// `alg` if that is given.
async fn read_keys(
    client: Client,
    key_ids: Vec<String>,
    alg: Option<&'static str>,
) -> Result<Loaded, KmsInitError> {
    let tasks: Vec<_> = key_ids
        .iter()
        .map(|id| tokio::spawn(public_key(client.clone(), id.clone())))
        .collect();
    let mut keys = Vec::with_capacity(tasks.len());
    for (task, id) in tasks.into_iter().zip(&key_ids) {
        let key = task.await.map_err(|e| KmsInitError::Unavailable {
            key_id: id.clone(),
            message: e.to_string(),
        })??;
        keys.push(key);
    }

    // The same key named twice (say by alias and by ARN) is published once.
    let mut published: Vec<Value> = Vec::with_capacity(keys.len());
    for key in &keys {
        if !published.iter().any(|p| jwk::kid(p) == jwk::kid(&key.jwk)) {
            published.push(key.jwk.clone());
        }
    }
    let Some(first) = keys.into_iter().next() else {
        return Err(KmsInitError::NoKeys);
    };
    if let Some(expected) = alg.filter(|a| *a != first.alg.jose()) {
        return Err(KmsInitError::NotTheConfiguredAlg {
            key_id: first.key_arn,
            alg: first.alg.jose(),
            expected,
        });
    }
    let kid = jwk::kid(&first.jwk).to_owned();
    tracing::info!(
        key = %first.key_arn,
        kid = %kid,
        alg = first.alg.jose(),
        published = published.len(),
        "KMS signing key ready"
    );
    Ok(Loaded {
        key_arn: first.key_arn,
        alg: first.alg,
        keys: SigningKeys {
            alg: first.alg.jose(),
            kid,
            jwks: json!({ "keys": published }),
        },
    })
}

/// `GetPublicKey` for one key, checked and turned into a JWK.
async fn public_key(client: Client, key_id: String) -> Result<PublicKey, KmsInitError> {
    let out = client
        .get_public_key()
        .key_id(&key_id)
        .send()
        .await
        .map_err(|e| KmsInitError::Unavailable {
            key_id: key_id.clone(),
            message: error_chain(&e),
        })?;

    let usage = out.key_usage();
    if usage != Some(&KeyUsageType::SignVerify) {
        return Err(KmsInitError::NotForSigning {
            key_id,
            usage: usage.map_or("(none)", KeyUsageType::as_str).to_owned(),
        });
    }
    // moto 5.2.5 fills only the deprecated CustomerMasterKeySpec, which
    // KMS documents as always equal to KeySpec.
    #[allow(deprecated)]
    let legacy_spec = out.customer_master_key_spec();
    let spec = out
        .key_spec()
        .cloned()
        .or_else(|| legacy_spec.map(|s| KeySpec::from(s.as_str())));
    let alg = match &spec {
        Some(KeySpec::EccNistP256) => Alg::Es256,
        Some(KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096) => Alg::Rs256,
        other => {
            return Err(KmsInitError::UnsupportedSpec {
                key_id,
                spec: other.as_ref().map_or("(none)", KeySpec::as_str).to_owned(),
            });
        }
    };
    let spec = spec.as_ref().map_or("", KeySpec::as_str);
    let malformed = || KmsInitError::MalformedPublicKey {
        key_id: key_id.clone(),
        spec: spec.to_owned(),
    };
    let spki = out.public_key().map(Blob::as_ref).ok_or_else(malformed)?;
    let jwk = match alg {
        Alg::Es256 => ec_jwk(spki),
        Alg::Rs256 => rsa_jwk(spki),
    }
    .ok_or_else(malformed)?;
    let key_arn = out.key_id().unwrap_or(&key_id).to_owned();
    Ok(PublicKey { key_arn, alg, jwk })
}

/// The JWK of a P-256 SubjectPublicKeyInfo, the point checked to be on the curve.
fn ec_jwk(spki: &[u8]) -> Option<Value> {
    let point = spki.strip_prefix(&P256_SPKI_PREFIX[..])?;
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).ok()?;
    jwk::ec_p256(point)
}

/// The JWK of an RSA SubjectPublicKeyInfo (RFC 8017 `RSAPublicKey` inside).
fn rsa_jwk(spki: &[u8]) -> Option<Value> {
    let key = aws_lc_rs::rsa::PublicKey::from_der(spki).ok()?;
    Some(jwk::rsa(
        key.modulus().big_endian_without_leading_zero(),
        key.exponent().big_endian_without_leading_zero(),
    ))
}

/// An ECDSA-Sig-Value (RFC 3279 §2.2.3: DER `SEQUENCE { INTEGER r, INTEGER s }`),
/// as KMS returns it, in the JOSE form of RFC 7518 §3.4: r and s as unsigned
/// big-endian integers, each left-padded to 32 bytes. `None` if malformed.
pub(crate) fn ecdsa_der_to_jose(der: &[u8]) -> Option<[u8; 64]> {
    let (body, rest) = der_tlv(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (r, body) = der_tlv(body, 0x02)?;
    let (s, body) = der_tlv(body, 0x02)?;
    if !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    let (r_out, s_out) = out.split_at_mut(32);
    put_scalar(r, r_out)?;
    put_scalar(s, s_out)?;
    Some(out)
}

/// One DER element with the given tag: its contents and what follows.
/// Only the short length form (X.690 §8.1.3.4): a P-256 signature is at most
/// 72 bytes, and DER forbids the long form for lengths below 128.
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if t != tag || len >= 0x80 || rest.len() < usize::from(len) {
        return None;
    }
    Some(rest.split_at(usize::from(len)))
}

/// A DER INTEGER (X.690 §8.3: two's complement, minimal) that must be
/// positive and fit `out`, written right-aligned into `out`.
fn put_scalar(int: &[u8], out: &mut [u8]) -> Option<()> {
    let (&first, tail) = int.split_first()?;
    if first & 0x80 != 0 {
        return None; // negative
    }
    let digits = if first == 0 {
        match tail.first() {
            Some(&next) if next & 0x80 != 0 => tail,
            _ => return None, // zero, or a non-minimal leading 0x00
        }
    } else {
        int
    };
    let pad = out.len().checked_sub(digits.len())?;
    out.get_mut(pad..)?.copy_from_slice(digits);
    Some(())
}

/// The error and its sources, as `DisplayErrorContext` prints them but
/// without its trailing `Debug` dump (the raw HTTP response), and without a
/// source that repeats what is shown already (the SDK's modeled errors have
/// their own message as their source).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = e.source();
    }
    out
}

#[async_trait]
impl Signer for KmsSigner {
    fn alg(&self) -> Option<&'static str> {
        self.loaded.get().map(|l| l.keys.alg).or(self.alg)
    }

    fn prepare(&self) {
        self.go.notify_one();
    }

    async fn keys(&self) -> Result<&SigningKeys, StoreError> {
        Ok(&self.loaded().await.map_err(unreadable)?.keys)
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        if signing_input.len() > MAX_RAW_MESSAGE {
            return Err(StoreError::Unavailable(format!(
                "KMS Sign: the signing input is {} bytes, over KMS's {MAX_RAW_MESSAGE}",
                signing_input.len()
            )));
        }
        let key = self.loaded().await.map_err(unreadable)?;
        // RAW, not DIGEST: KMS hashes the message itself (and moto hashes
        // even a DIGEST again, see DESIGN "Facts checked on this machine").
        let out = self
            .client
            .sign()
            .key_id(&key.key_arn)
            .message(Blob::new(signing_input))
            .message_type(MessageType::Raw)
            .signing_algorithm(key.alg.kms())
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("KMS Sign: {}", error_chain(&e))))?;
        let signature = out
            .signature()
            .ok_or_else(|| StoreError::Unavailable("KMS Sign returned no signature".into()))?
            .as_ref();
        match key.alg {
            Alg::Es256 => ecdsa_der_to_jose(signature)
                .map(|rs| rs.to_vec())
                .ok_or_else(|| {
                    StoreError::Unavailable("KMS Sign returned a malformed ECDSA signature".into())
                }),
            // RFC 7518 §3.3: the RSASSA-PKCS1-v1_5 signature as it is.
            Alg::Rs256 => Ok(signature.to_vec()),
        }
    }
}

/// Keys that could not be read leave the signer unavailable (503), and the
/// reason in the log: the read is tried again by the next request.
fn unreadable(e: KmsInitError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// DER of `SEQUENCE { INTEGER r, INTEGER s }` from the INTEGER contents.
    fn der(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, r.len() as u8];
        body.extend(r);
        body.extend([0x02, s.len() as u8]);
        body.extend(s);
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn full_length_scalars_are_copied() {
        let r = [0x11u8; 32];
        let s = [0x22u8; 32];
        let jose = ecdsa_der_to_jose(&der(&r, &s)).unwrap();
        assert_eq!(&jose[..32], &r);
        assert_eq!(&jose[32..], &s);
    }

    #[test]
    fn short_scalars_are_left_padded() {
        let jose = ecdsa_der_to_jose(&der(&[0x01, 0x02], &[0x7f; 31])).unwrap();
        let mut want = [0u8; 64];
        want[30] = 0x01;
        want[31] = 0x02;
        want[33..].fill(0x7f);
        assert_eq!(jose, want);
    }

    #[test]
    fn the_sign_byte_of_a_high_scalar_is_dropped() {
        // Both with a leading 0x00: the longest signature, 72 bytes.
        let mut r = vec![0x00];
        r.extend([0xff; 32]);
        let mut s = vec![0x00];
        s.extend([0x80; 32]);
        let input = der(&r, &s);
        assert_eq!(input.len(), 72);
        let jose = ecdsa_der_to_jose(&input).unwrap();
        assert_eq!(&jose[..32], &[0xff; 32]);
        assert_eq!(&jose[32..], &[0x80; 32]);
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let good = der(&[0x01], &[0x02]);
        assert!(ecdsa_der_to_jose(&good).is_some());
        let mut too_long_r = vec![0x00];
        too_long_r.extend([0x80; 33]);
        let mut trailing = good.clone();
        trailing.push(0);
        let mut long_form = vec![0x30, 0x81, 0x06];
        long_form.extend(&good[2..]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("only a tag", vec![0x30]),
            ("not a SEQUENCE", {
                let mut v = good.clone();
                v[0] = 0x31;
                v
            }),
            ("length past the end", {
                let mut v = good.clone();
                v[1] += 1;
                v
            }),
            ("trailing bytes", trailing),
            ("long length form", long_form),
            ("one INTEGER", vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            ("three INTEGERs", {
                let mut v = der(&[0x01], &[0x02]);
                v.extend([0x02, 0x01, 0x03]);
                v[1] += 3;
                v
            }),
            ("not an INTEGER", {
                let mut v = good.clone();
                v[2] = 0x04;
                v
            }),
            ("empty INTEGER", der(&[], &[0x02])),
            ("negative", der(&[0x80], &[0x02])),
            ("zero", der(&[0x00], &[0x02])),
            ("non-minimal 0x00", der(&[0x00, 0x01], &[0x02])),
            ("33 significant bytes", der(&[0x01; 33], &[0x02])),
            (
                "r longer than P-256 with sign byte",
                der(&too_long_r, &[0x02]),
            ),
        ];
        for (name, input) in cases {
            assert_eq!(ecdsa_der_to_jose(&input), None, "{name}");
        }
    }

    #[test]
    fn a_p256_spki_gives_its_point_and_anything_else_is_refused() {
        let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let spki = key.public_key().as_der().unwrap();
        let jwk = ec_jwk(spki.as_ref()).unwrap();
        assert_eq!(jwk, jwk::ec_p256(key.public_key().as_ref()).unwrap());

        // A point off the curve.
        let mut bad = spki.as_ref().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ec_jwk(&bad).is_none());
        assert!(ec_jwk(&spki.as_ref()[..60]).is_none());
        assert!(rsa_jwk(spki.as_ref()).is_none());
    }

    /// A client of a KMS at a closed loopback port: the real SDK failing to
    /// connect, no mock.
    pub(crate) fn unreachable_client() -> Client {
        use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build();
        Client::from_conf(config)
    }

    /// An unreachable signer whose keys were read already.
    fn unreachable_signer(alg: Alg) -> KmsSigner {
        let key_arn = "arn:aws:kms:us-east-1:123456789012:key/unreachable";
        KmsSigner {
            client: unreachable_client(),
            key_ids: vec![key_arn.into()],
            alg: None,
            go: Arc::new(Notify::new()),
            reading: Mutex::new(None),
            loaded: OnceCell::new_with(Some(Loaded {
                key_arn: key_arn.into(),
                alg,
                keys: SigningKeys {
                    alg: alg.jose(),
                    kid: "kid".into(),
                    jwks: json!({ "keys": [] }),
                },
            })),
        }
    }

    #[tokio::test]
    async fn a_started_signer_reads_its_keys_when_left_idle() {
        let signer =
            KmsSigner::start(unreachable_client(), &["alias/tokenfn".into()], None).unwrap();
        tokio::time::sleep(IDLE * 20).await;
        let reading = signer.reading.lock().unwrap();
        // Nothing asked for the keys, and the read has been tried (and failed).
        assert!(reading.as_ref().is_some_and(JoinHandle::is_finished));
    }

    /// Against moto's server: a KMS whose answer changes between two reads.
    #[tokio::test]
    async fn a_background_read_that_failed_is_read_again_when_the_keys_are_needed() {
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            "needs moto running and AWS_ENDPOINT_URL pointing at it (scripts/test.sh starts it)"
        );
        let client = Client::new(&crate::aws::sdk_config().await);
        let created = client
            .create_key()
            .key_spec(KeySpec::EccNistP256)
            .key_usage(KeyUsageType::SignVerify)
            .send()
            .await
            .expect("CreateKey");
        let key = created.key_metadata().expect("key metadata").key_id();
        let alias = format!("alias/tokenfn-later-{key}");
        let signer = KmsSigner::start(client.clone(), std::slice::from_ref(&alias), None).unwrap();
        // Left idle, it reads on its own, and fails: there is no such alias yet.
        let finished = || {
            let reading = signer.reading.lock().unwrap();
            reading.as_ref().is_some_and(JoinHandle::is_finished)
        };
        for _ in 0..1000 {
            if finished() {
                break;
            }
            tokio::time::sleep(IDLE).await;
        }
        assert!(finished(), "the idle read did not end");
        client
            .create_alias()
            .alias_name(&alias)
            .target_key_id(key)
            .send()
            .await
            .expect("CreateAlias");
        let keys = signer
            .keys()
            .await
            .expect("read again, the alias now exists");
        assert_eq!(keys.alg, "ES256");
        assert_eq!(signer.sign(b"header.claims").await.unwrap().len(), 64);
    }

    #[tokio::test]
    async fn keys_that_cannot_be_read_leave_the_signer_unavailable_and_are_read_again() {
        let signer =
            KmsSigner::start(unreachable_client(), &["alias/tokenfn".into()], None).unwrap();
        for _ in 0..2 {
            let Err(StoreError::Unavailable(message)) = signer.keys().await else {
                panic!("the keys of an unreachable KMS were read");
            };
            assert!(
                message.starts_with("cannot read the public key of KMS key alias/tokenfn"),
                "{message}"
            );
            let err = signer.sign(b"header.claims").await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        }
        assert!(matches!(
            KmsSigner::start(unreachable_client(), &[], None),
            Err(KmsInitError::NoKeys)
        ));
    }

    #[tokio::test]
    async fn sdk_errors_are_unavailable() {
        let signer = unreachable_signer(Alg::Es256);
        let err = signer.sign(b"header.claims").await.unwrap_err();
        let StoreError::Unavailable(message) = err else {
            panic!("{err:?}");
        };
        assert!(
            message.starts_with("KMS Sign: dispatch failure"),
            "{message}"
        );
        // The short chain, not the Debug dump DisplayErrorContext appends.
        assert!(!message.contains("ConnectorError {"), "{message}");
    }

    #[tokio::test]
    async fn an_input_over_kms_limit_is_refused_before_calling() {
        let signer = unreachable_signer(Alg::Rs256);
        let err = signer.sign(&[b'a'; MAX_RAW_MESSAGE + 1]).await.unwrap_err();
        assert!(err.to_string().contains("over KMS's 4096"), "{err}");
    }

    #[test]
    fn error_chain_names_every_source() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("service error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(std::io::Error::other("key not found"));
        assert_eq!(error_chain(&err), "service error: key not found");
        let err = Outer(std::io::Error::other("service error"));
        assert_eq!(error_chain(&err), "service error");
    }
}
