//! What the APIs around the server ask about tokens: introspection
//! (RFC 7662) for resource servers, UserInfo (OIDC Core §5.3) for clients.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Services, unavailable};
use crate::domain::scope::OPENID;
use crate::domain::secret::refresh_key;
use crate::domain::{ClientAuth, OAuthError};
use crate::sign::verify::AccessToken;

/// RFC 7662 §2.2. Inactive tokens say only `active: false`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten)]
    pub details: Option<Details>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Details {
    pub scope: String,
    pub client_id: String,
    pub token_type: &'static str,
    pub exp: i64,
    pub iat: i64,
    pub sub: String,
    pub aud: String,
    pub iss: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl Introspection {
    pub(crate) fn inactive() -> Self {
        Self {
            active: false,
            details: None,
        }
    }
}

/// An RFC 6750 §3 error: the status, the `error` code (none when the
/// request carried no token at all) and, for `insufficient_scope`, the
/// scope needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerError {
    pub status: u16,
    pub code: Option<&'static str>,
    pub description: String,
    pub scope: Option<&'static str>,
}

impl BearerError {
    pub fn missing() -> Self {
        Self {
            status: 401,
            code: None,
            description: "an access token is required".into(),
            scope: None,
        }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: Some("invalid_request"),
            description: description.into(),
            scope: None,
        }
    }
    fn invalid_token(description: impl Into<String>) -> Self {
        Self {
            status: 401,
            code: Some("invalid_token"),
            description: description.into(),
            scope: None,
        }
    }
    fn unavailable() -> Self {
        Self {
            status: 503,
            code: Some("temporarily_unavailable"),
            description: "a dependency is unavailable; try again".into(),
            scope: None,
        }
    }
}

impl Services {
    /// The access token if it verifies and its grant (when it has one) is
    /// still active: a revoked grant takes its access tokens with it.
    async fn live_access_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<AccessToken>, OAuthError> {
        let Ok(claims) = self.access_verifier().await?.verify(token, now) else {
            return Ok(None);
        };
        if let Some(grant_id) = &claims.grant_id {
            let grant = self.store.get_grant(grant_id).await.map_err(unavailable)?;
            if !grant.is_some_and(|g| g.is_active(now)) {
                return Ok(None);
            }
        }
        Ok(Some(claims))
    }

    /// RFC 7662 §2.1: only authenticated (confidential) clients may ask.
    /// Access tokens of any client are described; a refresh token only to
    /// the client that holds it, so that clients cannot probe each other's.
    pub async fn introspect(
        &self,
        auth: &ClientAuth,
        token: &str,
    ) -> Result<Introspection, OAuthError> {
        if auth.secret().is_none() {
            return Err(OAuthError::invalid_client(
                "introspection needs client authentication with a secret",
            ));
        }
        self.describe(auth, token).await
    }

    /// [`Services::introspect`] once the caller may ask: `auth` is checked
    /// as at the token endpoint (a public client by its id alone).
    pub(crate) async fn describe(
        &self,
        auth: &ClientAuth,
        token: &str,
    ) -> Result<Introspection, OAuthError> {
        let now = self.clock.now();
        // A JWT has two dots; a refresh token has one (after its locator)
        // or, issued before locators, none.
        if token.bytes().filter(|&b| b == b'.').count() == 2 {
            let (client, access) =
                tokio::join!(self.client_for(auth), self.live_access_token(token, now));
            client?;
            return Ok(match access? {
                None => Introspection::inactive(),
                Some(at) => Introspection {
                    active: true,
                    details: Some(Details {
                        scope: at.scope,
                        client_id: at.client_id,
                        token_type: "Bearer",
                        exp: at.exp,
                        iat: at.iat,
                        sub: at.sub,
                        aud: at.aud,
                        iss: at.iss,
                        jti: Some(at.jti),
                    }),
                },
            });
        }
        let token_hash = refresh_key(token);
        let (client, view) = self.client_and_refresh(auth, &token_hash, now).await?;
        let Some(mut view) = view else {
            return Ok(Introspection::inactive());
        };
        if view.token.client_id != client.id {
            return Ok(Introspection::inactive());
        }
        // The view's grant may be a snapshot without revocation (DynamoDB
        // re-checks it inside each rotation): read the grant itself.
        match self
            .store
            .get_grant(&view.grant.id)
            .await
            .map_err(unavailable)?
        {
            Some(grant) => view.grant = grant,
            None => return Ok(Introspection::inactive()),
        }
        let usable = view.token.client_id == client.id
            && view.token.consumed_at.is_none()
            && view.check(&client.id, None, now).is_ok()
            && (!client.require_mfa || view.grant.made_with_mfa());
        if !usable {
            return Ok(Introspection::inactive());
        }
        Ok(Introspection {
            active: true,
            details: Some(Details {
                scope: view.grant.scopes.to_string(),
                client_id: client.id.clone(),
                token_type: "refresh_token",
                exp: view.token.idle_expires_at.min(view.grant.expires_at),
                iat: view.token.created_at,
                sub: view.grant.user_id.clone(),
                aud: client.id,
                iss: self.config.issuer.clone(),
                jti: None,
            }),
        })
    }

    /// OIDC Core §5.3: the claims the access token's scopes allow.
    pub async fn userinfo(&self, token: &str) -> Result<Value, BearerError> {
        let now = self.clock.now();
        let at = self
            .live_access_token(token, now)
            .await
            .map_err(|_| BearerError::unavailable())?
            .ok_or_else(|| {
                BearerError::invalid_token("the access token is invalid, expired or revoked")
            })?;
        let scopes: Vec<&str> = at.scope.split(' ').collect();
        if !scopes.contains(&OPENID) || at.grant_id.is_none() {
            return Err(BearerError {
                status: 403,
                code: Some("insufficient_scope"),
                description: "UserInfo needs an access token with the openid scope".into(),
                scope: Some(OPENID),
            });
        }
        let user = self
            .store
            .get_user(&at.sub)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "dependency failed");
                BearerError::unavailable()
            })?
            .ok_or_else(|| BearerError::invalid_token("the user no longer exists"))?;
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(user.id));
        if scopes.contains(&"profile") {
            claims.insert("preferred_username".into(), json!(user.username));
        }
        if scopes.contains(&"email")
            && let Some(email) = user.email
        {
            claims.insert("email".into(), json!(email));
            // Addresses are set by operators, never confirmed by a mail.
            claims.insert("email_verified".into(), json!(false));
        }
        Ok(Value::Object(claims))
    }
}
