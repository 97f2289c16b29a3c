//! The signer of a function that holds no key (authorize, revoke): it is
//! granted no KMS permission, so it must never sign or publish.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::ports::{Signer, StoreError};

pub struct NoKey;

#[async_trait]
impl Signer for NoKey {
    fn alg(&self) -> &str {
        "none"
    }

    fn kid(&self) -> &str {
        ""
    }

    async fn sign(&self, _: &[u8]) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::Unavailable(
            "this function has no signing key".into(),
        ))
    }

    fn jwks(&self) -> Value {
        json!({ "keys": [] })
    }
}
