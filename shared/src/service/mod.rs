//! The operations behind each endpoint: authenticate the client, check the
//! grant, rotate, mint. They speak to the outside only through the ports,
//! so the same code runs on SQLite with a local key and on DynamoDB with KMS.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod device;
pub mod password;
pub mod playground;
mod throttle;
pub mod token;
pub mod tokeninfo;

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::config::Config;
use crate::domain::secret::RandomError;
use crate::domain::user::{DUMMY_HASH, verify_password};
use crate::domain::{OAuthError, User, token as jwt};
use crate::ports::{Clock, Signer, Store, StoreError};
use crate::seal::{NoBox, SecretBox};
use crate::sign::verify::AccessVerifier;

pub use authorize::{BrowserReply, ConnectedApp, Cookies, Page, Reply, SetCookie};
pub use device::DeviceAuthorization;
pub use token::TokenResponse;

/// Everything an endpoint needs, built once per process (per Lambda container).
pub struct Services {
    pub store: Arc<dyn Store>,
    pub signer: Arc<dyn Signer>,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    /// Seals the TOTP secrets at rest (none until [`Services::with_secret_box`]).
    pub secret_box: Arc<dyn SecretBox>,
    /// Built from the signer's keys the first time a token is verified.
    verifier: OnceCell<AccessVerifier>,
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
            secret_box: Arc::new(NoBox::default()),
            verifier: OnceCell::new(),
        }
    }

    /// The key TOTP secrets are sealed with at rest.
    pub fn with_secret_box(mut self, secret_box: Arc<dyn SecretBox>) -> Self {
        self.secret_box = secret_box;
        self
    }

    /// Checks the access tokens this server signed (introspection, UserInfo).
    pub async fn access_verifier(&self) -> Result<&AccessVerifier, OAuthError> {
        self.verifier
            .get_or_try_init(|| async {
                let keys = self.signer.keys().await.map_err(unavailable)?;
                Ok(AccessVerifier::new(&self.config.issuer, &keys.jwks))
            })
            .await
    }

    /// Signs `claims` as a compact JWS of type `typ` with the current key.
    async fn sign_jwt<C: serde::Serialize>(
        &self,
        typ: &str,
        claims: &C,
    ) -> Result<String, OAuthError> {
        let keys = self.signer.keys().await.map_err(unavailable)?;
        let header = jwt::Header {
            alg: keys.alg,
            typ,
            kid: &keys.kid,
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

impl Services {
    /// Makes room for one more grant of the user for the client: beyond
    /// the cap (`Config::grant_cap`), the oldest active grants are revoked.
    pub(crate) async fn make_room(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<(), OAuthError> {
        let keep = self.config.grant_cap.saturating_sub(1);
        let revoked = self
            .store
            .revoke_oldest_grants(user_id, client_id, keep, now)
            .await
            .map_err(unavailable)?;
        if revoked > 0 {
            tracing::info!(user = %user_id, client = %client_id, revoked, "grant cap reached; oldest grants revoked");
        }
        Ok(())
    }
}

/// The user if `password` is theirs. argon2id runs for unknown usernames
/// too, so that timing does not tell which usernames are real.
pub(crate) async fn check_password(user: Option<User>, password: &str) -> Option<User> {
    let stored = user
        .as_ref()
        .map_or(DUMMY_HASH, |u| u.password_hash.as_str())
        .to_owned();
    let pw = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&stored, &pw))
        .await
        .unwrap_or(false);
    user.filter(|_| ok)
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
