//! ES256 with a key file in the data folder: generated on first start as
//! PKCS#8 (mode 0600), reused on every start after.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use super::jwk;
use crate::ports::{Signer, SigningKeys, StoreError};

pub const KEY_FILE: &str = "signing-key.p8";

pub struct LocalSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    keys: SigningKeys,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read or write the signing key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key {path} is not a PKCS#8 P-256 key")]
    Malformed { path: String },
    #[error("could not generate a signing key")]
    Generate,
}

impl LocalSigner {
    /// Loads `DIR/signing-key.p8`, creating it if absent. Returns the signer
    /// and whether the key was created now.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), KeyFileError> {
        let path = dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        let (der, created) = match fs::read(&path) {
            Ok(der) => (der, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| KeyFileError::Generate)?;
                write_private(&path, doc.as_ref()).map_err(io)?;
                (doc.as_ref().to_vec(), true)
            }
            Err(e) => return Err(io(e)),
        };
        Ok((Self::from_pkcs8(&der, &shown)?, created))
    }

    fn from_pkcs8(der: &[u8], path: &str) -> Result<Self, KeyFileError> {
        let malformed = || KeyFileError::Malformed { path: path.into() };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| malformed())?;
        let public = jwk::ec_p256(key.public_key().as_ref()).ok_or_else(malformed)?;
        let kid = jwk::kid(&public).to_owned();
        Ok(Self {
            key,
            rng: SystemRandom::new(),
            keys: SigningKeys {
                alg: "ES256",
                kid,
                jwks: json!({ "keys": [public] }),
            },
        })
    }
}

/// Creates the file readable by its owner only, never replacing one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[async_trait]
impl Signer for LocalSigner {
    fn alg(&self) -> Option<&'static str> {
        Some(self.keys.alg)
    }

    async fn keys(&self) -> Result<&SigningKeys, StoreError> {
        Ok(&self.keys)
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.key
            .sign(&self.rng, signing_input)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| StoreError::Unavailable("local signing failed".into()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    /// `path` is readable and writable by its owner alone (mode 0600).
    pub(crate) fn assert_private(path: &std::path::Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }

    #[tokio::test]
    async fn creates_once_with_mode_0600_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, created) = LocalSigner::load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_private(&dir.path().join(KEY_FILE));
        let (again, created) = LocalSigner::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(signer.keys, again.keys);

        let sig = signer.sign(b"header.claims").await.unwrap();
        assert_eq!(sig.len(), 64);
        let public = signer.key.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(b"header.claims", &sig)
            .unwrap();
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        let err = LocalSigner::load_or_create(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not a PKCS#8 P-256 key"));
    }
}
