//! The signer of a function that holds no key (authorize, revoke): it is
//! granted no KMS permission, so it must never sign or publish.

use std::sync::LazyLock;

use async_trait::async_trait;
use serde_json::json;

use crate::ports::{Signer, SigningKeys, StoreError};

pub struct NoKey;

/// Nothing is published, so no token verifies here.
static NONE: LazyLock<SigningKeys> = LazyLock::new(|| SigningKeys {
    alg: "none",
    kid: String::new(),
    jwks: json!({ "keys": [] }),
});

#[async_trait]
impl Signer for NoKey {
    async fn keys(&self) -> Result<&SigningKeys, StoreError> {
        Ok(&NONE)
    }

    async fn sign(&self, _: &[u8]) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::Unavailable(
            "this function has no signing key".into(),
        ))
    }
}
