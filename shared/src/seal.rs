//! Secrets that must be read back, unlike the hashed ones: a user's TOTP
//! secret. They are stored sealed (encrypted and authenticated), bound to
//! the user they belong to, so that a copy of the store reveals nothing and
//! a sealed value moved to another user does not open.
//!
//! - [`LocalBox`]: AES-256-GCM with a random key in the data folder
//!   (`totp.key`, 32 bytes, mode 0600, created on first use like the
//!   signing key). The user id is the additional authenticated data.
//! - [`KmsBox`]: KMS `Encrypt` and `Decrypt` with a symmetric key, the user
//!   id as the encryption context. One KMS call per enrolment and per
//!   second-factor check; the key never leaves KMS.
//! - [`NoBox`]: nothing configured: sealing and opening fail, loudly.

use std::fs;
use std::path::Path;

use async_trait::async_trait;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ports::StoreError;
use crate::sign::kms::error_chain;
use crate::sign::local::KeyFileError;

pub const KEY_FILE: &str = "totp.key";
const LOCAL_PREFIX: &str = "a256gcm.";
const KMS_PREFIX: &str = "kms.";
/// The encryption context key of [`KmsBox`].
const CONTEXT: &str = "tokenfn-user";

#[async_trait]
pub trait SecretBox: Send + Sync {
    /// `plain` sealed for `owner` (a user id).
    async fn seal(&self, owner: &str, plain: &str) -> Result<String, StoreError>;
    /// The plain text of what [`SecretBox::seal`] made for `owner`.
    async fn open(&self, owner: &str, sealed: &str) -> Result<String, StoreError>;
}

fn unreadable(what: &str) -> StoreError {
    StoreError::Unavailable(format!("a sealed secret could not be opened: {what}"))
}

pub struct LocalBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl LocalBox {
    /// Loads `DIR/totp.key`, creating it if absent.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyFileError> {
        let path = dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| KeyFileError::Generate)?;
                match crate::sign::local::write_private(&path, &key) {
                    Ok(()) => key.to_vec(),
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        fs::read(&path).map_err(io)?
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_key(&bytes).ok_or(KeyFileError::Malformed { path: shown })
    }

    /// A box with `key` (32 bytes), or `None` for any other length.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let key = UnboundKey::new(&AES_256_GCM, key).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }
}

#[async_trait]
impl SecretBox for LocalBox {
    async fn seal(&self, owner: &str, plain: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Unavailable("the random source failed".into()))?;
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut data,
            )
            .map_err(|_| StoreError::Unavailable("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(format!("{LOCAL_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    async fn open(&self, owner: &str, sealed: &str) -> Result<String, StoreError> {
        let encoded = sealed
            .strip_prefix(LOCAL_PREFIX)
            .ok_or_else(|| unreadable("not sealed with the local key"))?;
        let mut data = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| unreadable("not base64url"))?;
        if data.len() < NONCE_LEN {
            return Err(unreadable("too short"));
        }
        let rest = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| unreadable("nonce"))?;
        let mut rest = rest;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut rest)
            .map_err(|_| unreadable("wrong key, wrong owner or altered"))?;
        String::from_utf8(plain.to_vec()).map_err(|_| unreadable("not text"))
    }
}

/// A [`LocalBox`] whose key file is read, or created, on first use: a
/// command that never touches a TOTP secret leaves no key file behind.
pub struct LazyLocalBox {
    dir: std::path::PathBuf,
    inner: tokio::sync::OnceCell<LocalBox>,
}

impl LazyLocalBox {
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            inner: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<&LocalBox, StoreError> {
        self.inner
            .get_or_try_init(|| async {
                LocalBox::load_or_create(&self.dir)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))
            })
            .await
    }
}

#[async_trait]
impl SecretBox for LazyLocalBox {
    async fn seal(&self, owner: &str, plain: &str) -> Result<String, StoreError> {
        self.get().await?.seal(owner, plain).await
    }

    async fn open(&self, owner: &str, sealed: &str) -> Result<String, StoreError> {
        self.get().await?.open(owner, sealed).await
    }
}

pub struct KmsBox {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsBox {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

#[async_trait]
impl SecretBox for KmsBox {
    async fn seal(&self, owner: &str, plain: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plain.as_bytes()))
            .encryption_context(CONTEXT, owner)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("KMS Encrypt: {}", error_chain(&e))))?;
        let blob = out
            .ciphertext_blob()
            .ok_or_else(|| StoreError::Unavailable("KMS Encrypt returned no ciphertext".into()))?;
        Ok(format!(
            "{KMS_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(blob.as_ref())
        ))
    }

    async fn open(&self, owner: &str, sealed: &str) -> Result<String, StoreError> {
        let encoded = sealed
            .strip_prefix(KMS_PREFIX)
            .ok_or_else(|| unreadable("not sealed with KMS"))?;
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| unreadable("not base64url"))?;
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(blob))
            .encryption_context(CONTEXT, owner)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("KMS Decrypt: {}", error_chain(&e))))?;
        let plain = out
            .plaintext()
            .ok_or_else(|| StoreError::Unavailable("KMS Decrypt returned nothing".into()))?;
        String::from_utf8(plain.as_ref().to_vec()).map_err(|_| unreadable("not text"))
    }
}

/// No key configured for sealed secrets.
pub struct NoBox {
    why: &'static str,
}

impl NoBox {
    /// A box that fails, saying `why`.
    pub const fn because(why: &'static str) -> Self {
        Self { why }
    }
}

impl Default for NoBox {
    fn default() -> Self {
        Self::because("no key for TOTP secrets is configured")
    }
}

#[async_trait]
impl SecretBox for NoBox {
    async fn seal(&self, _: &str, _: &str) -> Result<String, StoreError> {
        Err(StoreError::Unavailable(self.why.into()))
    }

    async fn open(&self, owner: &str, sealed: &str) -> Result<String, StoreError> {
        self.seal(owner, sealed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_box_round_trips_and_binds_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let sealed_box = LocalBox::load_or_create(dir.path()).unwrap();
        let sealed = sealed_box.seal("user-1", "JBSWY3DPEHPK3PXP").await.unwrap();
        assert!(sealed.starts_with(LOCAL_PREFIX));
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(
            sealed_box.open("user-1", &sealed).await.unwrap(),
            "JBSWY3DPEHPK3PXP"
        );
        // Another owner, an altered value, another key: nothing opens.
        assert!(sealed_box.open("user-2", &sealed).await.is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(sealed_box.open("user-1", &altered).await.is_err());
        let other = LocalBox::from_key(&[7u8; 32]).unwrap();
        assert!(other.open("user-1", &sealed).await.is_err());
        // The key file is reused, owner-only, and two seals differ.
        let again = LocalBox::load_or_create(dir.path()).unwrap();
        assert_eq!(
            again.open("user-1", &sealed).await.unwrap(),
            "JBSWY3DPEHPK3PXP"
        );
        assert_ne!(
            sealed,
            sealed_box.seal("user-1", "JBSWY3DPEHPK3PXP").await.unwrap()
        );
        crate::sign::local::tests::assert_private(&dir.path().join(KEY_FILE));
        assert!(NoBox::default().seal("user-1", "x").await.is_err());
        // The lazy box makes its key file only when it first seals.
        let lazy_dir = tempfile::tempdir().unwrap();
        let lazy = LazyLocalBox::new(lazy_dir.path());
        assert!(!lazy_dir.path().join(KEY_FILE).exists());
        let sealed = lazy.seal("user-1", "x-secret").await.unwrap();
        assert!(lazy_dir.path().join(KEY_FILE).exists());
        assert_eq!(lazy.open("user-1", &sealed).await.unwrap(), "x-secret");
        assert!(LocalBox::from_key(&[0u8; 16]).is_none());
    }
}
