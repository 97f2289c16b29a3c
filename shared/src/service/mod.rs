//! The operations behind each endpoint: authenticate the client, check the
//! grant, rotate, mint. They speak to the outside only through the ports,
//! so the same code runs on SQLite with a local key and on DynamoDB with KMS.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod device;
pub mod token;

use std::sync::Arc;

use crate::config::Config;
use crate::domain::secret::RandomError;
use crate::domain::{OAuthError, token as jwt};
use crate::ports::{Clock, Signer, Store, StoreError};

pub use authorize::{BrowserReply, ConnectedApp, Cookies, Page, Reply, SetCookie};
pub use device::DeviceAuthorization;
pub use token::TokenResponse;

/// Everything an endpoint needs, built once per process (per Lambda container).
pub struct Services {
    pub store: Arc<dyn Store>,
    pub signer: Arc<dyn Signer>,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Self {
        Self {
            store,
            signer,
            clock,
            config,
        }
    }

    /// Signs `claims` as a compact JWS of type `typ` with the current key.
    async fn sign_jwt<C: serde::Serialize>(
        &self,
        typ: &str,
        claims: &C,
    ) -> Result<String, OAuthError> {
        let header = jwt::Header {
            alg: self.signer.alg(),
            typ,
            kid: self.signer.kid(),
        };
        let input = jwt::signing_input(&header, claims)
            .map_err(|e| OAuthError::new(crate::domain::ErrorCode::ServerError, e.to_string()))?;
        let signature = self
            .signer
            .sign(input.as_bytes())
            .await
            .map_err(unavailable)?;
        Ok(jwt::compact(&input, &signature))
    }
}

/// A dependency failure becomes 503 `temporarily_unavailable` (DESIGN invariant 7).
pub(crate) fn unavailable(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "dependency failed");
    OAuthError::unavailable()
}

pub(crate) fn no_randomness(_: RandomError) -> OAuthError {
    tracing::error!("system random source failed");
    OAuthError::unavailable()
}
