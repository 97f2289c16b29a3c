//! The playground's server side: its own public client, and introspection
//! of that client's tokens for a page that has no secret to authenticate
//! with.

use super::Services;
use super::admin::{AdminError, NewClient};
use super::tokeninfo::Introspection;
use crate::domain::client::Lifetimes;
use crate::domain::{ClientAuth, GrantType, OAuthError, Scopes};
use crate::paths::PLAYGROUND;

/// The client the playground page signs in as.
pub const PLAYGROUND_CLIENT: &str = "playground";

impl Services {
    /// Registers the playground's client (public, PKCE, refresh tokens
    /// rotated with no reuse leeway, two-minute access tokens to watch
    /// expire), or points its redirect URI at this issuer.
    pub async fn ensure_playground_client(&self) -> Result<(), AdminError> {
        let redirect = self.config.endpoint(PLAYGROUND);
        match self.store.get_client(PLAYGROUND_CLIENT).await? {
            Some(client) if client.redirect_uris == [redirect.as_str()] => Ok(()),
            Some(mut client) => {
                client.redirect_uris = vec![redirect];
                self.store.put_client(&client).await?;
                Ok(())
            }
            None => {
                let scopes = Scopes::parse("openid profile email offline_access")
                    .map_err(|e| AdminError::Invalid(e.description))?;
                self.add_client(NewClient {
                    id: PLAYGROUND_CLIENT.into(),
                    name: Some("tokenfn playground".into()),
                    redirect_uris: vec![redirect],
                    secret: None,
                    grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                    scopes,
                    lifetimes: Lifetimes {
                        access_token: 120,
                        reuse_leeway: 0,
                        ..Lifetimes::default()
                    },
                })
                .await
                .map(drop)
            }
        }
    }

    /// RFC 7662's answer about one of the playground client's own tokens;
    /// any other token is inactive to it.
    pub async fn playground_introspect(&self, token: &str) -> Result<Introspection, OAuthError> {
        let auth = ClientAuth::None {
            client_id: PLAYGROUND_CLIENT.into(),
        };
        let answer = self.describe(&auth, token).await?;
        let ours = answer
            .details
            .as_ref()
            .is_some_and(|d| d.client_id == PLAYGROUND_CLIENT);
        Ok(if ours {
            answer
        } else {
            Introspection::inactive()
        })
    }
}
