//! The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6) and revocation
//! (RFC 7009). Each grant makes two sequential rounds of store calls at most:
//! reads first, then the one atomic write in parallel with the signatures.

use serde::Serialize;

use super::{Services, no_randomness, unavailable};
use crate::domain::scope::{OFFLINE_ACCESS, OPENID};
use crate::domain::secret::{self, hash, log_prefix, refresh_key};
use crate::domain::token::{AccessClaims, IdClaims};
use crate::domain::{
    Client, ClientAuth, Grant, GrantType, OAuthError, RefreshToken, RefreshView, Scopes, pkce,
};
use crate::ports::{Redeemed, Rotated};

/// RFC 6749 §5.1 (and OIDC Core §3.1.3.3 for `id_token`).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl TokenResponse {
    /// The answer to `client`: its access token lifetime, the scopes granted.
    pub(crate) fn bearer(
        client: &Client,
        scopes: &Scopes,
        access_token: String,
        refresh_token: Option<String>,
        id_token: Option<String>,
    ) -> Self {
        Self {
            access_token,
            token_type: "Bearer",
            expires_in: client.lifetimes.access_token,
            scope: scopes.to_string(),
            refresh_token,
            id_token,
        }
    }
}

/// The parameters of an authorization_code token request.
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// A grant about to be created, with its first refresh token (plain, for
/// the response, and as stored) when it gets one.
pub(crate) struct NewGrant {
    pub grant: Grant,
    pub refresh_token: Option<String>,
    pub record: Option<RefreshToken>,
}

impl Services {
    /// The grant `id` of `user_id` for `client` over `scopes`, authenticated
    /// at `auth` (time and methods). It gets a refresh token only with
    /// offline_access and a client that may refresh; it lives as long as
    /// its refresh tokens may, or as its one access token without them.
    pub(crate) fn new_grant(
        client: &Client,
        id: String,
        user_id: &str,
        scopes: &Scopes,
        auth: (i64, Vec<String>),
        now: i64,
    ) -> Result<NewGrant, OAuthError> {
        let refresh = scopes.contains(OFFLINE_ACCESS) && client.allows(GrantType::RefreshToken);
        let lifetime = if refresh {
            client.lifetimes.refresh_absolute
        } else {
            client.lifetimes.access_token
        };
        let grant = Grant {
            id,
            user_id: user_id.to_owned(),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            auth_time: auth.0,
            amr: auth.1,
            created_at: now,
            expires_at: now + lifetime,
            revoked_at: None,
            last_used_at: now,
        };
        let refresh_token = if refresh {
            Some(secret::new_refresh_token().map_err(no_randomness)?)
        } else {
            None
        };
        let record = refresh_token.as_deref().map(|t| {
            RefreshToken::issue(refresh_key(t), &grant, client.lifetimes.refresh_idle, now)
        });
        Ok(NewGrant {
            grant,
            refresh_token,
            record,
        })
    }

    pub(crate) async fn client_for(&self, auth: &ClientAuth) -> Result<Client, OAuthError> {
        Self::check_client(auth, self.store.get_client(auth.client_id()).await)
    }

    /// The authenticated client and the refresh token `token_hash` (live,
    /// consumed or not), read at once.
    pub(crate) async fn client_and_refresh(
        &self,
        auth: &ClientAuth,
        token_hash: &str,
        now: i64,
    ) -> Result<(Client, Option<RefreshView>), OAuthError> {
        let (client, view) = self
            .store
            .client_and_refresh(auth.client_id(), token_hash, now)
            .await
            .map_err(unavailable)?;
        let client = Self::check_client(auth, Ok(client))?;
        Ok((client, view))
    }

    /// Finishes a client's authentication after a parallel read.
    pub(crate) fn check_client(
        auth: &ClientAuth,
        found: Result<Option<Client>, crate::ports::StoreError>,
    ) -> Result<Client, OAuthError> {
        let client = found
            .map_err(unavailable)?
            .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
        client.authenticate(auth)?;
        Ok(client)
    }

    /// RFC 6749 §4.1.3 with RFC 7636 §4.6.
    pub async fn exchange_code(
        &self,
        auth: &ClientAuth,
        req: CodeExchange<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let code_hash = hash(req.code);
        let (client, code) = self
            .store
            .client_and_code(auth.client_id(), &code_hash, now)
            .await
            .map_err(unavailable)?;
        let client = Self::check_client(auth, Ok(client))?;
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the authorization code grant",
            ));
        }
        let code = code
            .ok_or_else(|| OAuthError::invalid_grant("authorization code is invalid or expired"))?;
        if code.consumed_at.is_some() {
            return Err(self.code_replayed(&code.grant_id, now).await);
        }
        if code.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "authorization code was issued to another client",
            ));
        }
        match req.redirect_uri {
            Some(uri) if uri == code.redirect_uri => {}
            Some(_) => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri does not match the authorization request",
                ));
            }
            None => return Err(OAuthError::invalid_request("redirect_uri is required")),
        }
        match (&code.code_challenge, req.code_verifier) {
            (Some(challenge), Some(verifier)) => pkce::verify(challenge, verifier)?,
            (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
            // RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
            (None, Some(_)) => {
                return Err(OAuthError::invalid_grant(
                    "code_verifier sent but the authorization request had no code_challenge",
                ));
            }
            (None, None) => {}
        }

        if client.require_mfa && !crate::domain::grant::is_mfa(&code.amr) {
            return Err(mfa_required());
        }
        let NewGrant {
            grant,
            refresh_token,
            record,
        } = Self::new_grant(
            &client,
            code.grant_id.clone(),
            &code.user_id,
            &code.scopes,
            (code.auth_time, code.amr.clone()),
            now,
        )?;
        let refresh = refresh_token.is_some();
        let refresh_hash = record.as_ref().map(|r| r.hash.as_str());

        let (redeemed, minted) = tokio::join!(
            self.store
                .redeem_code(&code_hash, &grant, record.as_ref(), now),
            self.mint(&client, &grant, &grant.scopes, code.nonce.as_deref(), now)
        );
        let redeemed = match redeemed {
            Ok(redeemed) => redeemed,
            Err(e) => {
                // The outcome is unknown (a timeout, a lost answer): take
                // back a redemption that may have committed, so that the
                // client's retry is not a replay (DESIGN invariant 7).
                self.undo_code(&code_hash, &grant.id, refresh_hash).await;
                return Err(unavailable(e));
            }
        };
        match redeemed {
            Redeemed::Issued => {}
            Redeemed::Replayed { grant_id } => {
                return Err(self.code_replayed(&grant_id, now).await);
            }
            Redeemed::Invalid => {
                return Err(OAuthError::invalid_grant(
                    "authorization code is invalid or expired",
                ));
            }
        }
        let (access_token, id_token) = match minted {
            Ok(tokens) => tokens,
            Err(e) => {
                // The code was redeemed but no tokens can be handed out: take
                // the redemption back so the client's retry is not a replay.
                self.undo_code(&code_hash, &grant.id, refresh_hash).await;
                return Err(e);
            }
        };
        tracing::info!(grant = %grant.id, client = %client.id, refresh, "code redeemed");
        Ok(TokenResponse::bearer(
            &client,
            &grant.scopes,
            access_token,
            refresh_token,
            id_token,
        ))
    }

    /// Takes back a redemption of `code_hash` for `grant_id` that was made
    /// (or may have been) without tokens handed out; a failure is logged.
    async fn undo_code(&self, code_hash: &str, grant_id: &str, refresh_hash: Option<&str>) {
        if let Err(undo) = self
            .store
            .undo_redemption(code_hash, grant_id, refresh_hash)
            .await
        {
            tracing::error!(grant = %grant_id, error = %undo, "could not undo a redemption");
        }
    }

    /// Takes back a rotation of `old_hash` to `successor_hash` that was made
    /// (or may have been) without tokens handed out; a failure is logged.
    async fn undo_rotation(&self, grant_id: &str, old_hash: &str, successor_hash: &str) {
        if let Err(undo) = self.store.undo_rotation(old_hash, successor_hash).await {
            tracing::error!(grant = %grant_id, error = %undo, "could not undo a rotation");
        }
    }

    /// RFC 6749 §4.1.2: a code used twice revokes what it issued.
    async fn code_replayed(&self, grant_id: &str, now: i64) -> OAuthError {
        match self.store.revoke_grant(grant_id, now).await {
            Ok(_) => {
                tracing::warn!(grant = %grant_id, "authorization code replayed; grant revoked");
                OAuthError::invalid_grant("authorization code was already used")
            }
            Err(e) => unavailable(e),
        }
    }

    /// RFC 6749 §6, rotating on every use (RFC 9700 §4.14.2).
    pub async fn refresh(
        &self,
        auth: &ClientAuth,
        refresh_token: &str,
        scope: Option<&Scopes>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let old_hash = refresh_key(refresh_token);
        let (client, view) = self.client_and_refresh(auth, &old_hash, now).await?;
        if !client.allows(GrantType::RefreshToken) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the refresh_token grant",
            ));
        }
        let view =
            view.ok_or_else(|| OAuthError::invalid_grant("refresh token is invalid or expired"))?;
        let scopes = view.check(&client.id, scope, now)?;
        if client.require_mfa && !view.grant.made_with_mfa() {
            return Err(mfa_required());
        }
        if let Some(consumed_at) = view.token.consumed_at
            && now - consumed_at > client.lifetimes.reuse_leeway
        {
            return Err(self.refresh_reused(&view.grant.id, &old_hash, now).await);
        }

        let new_token = secret::new_refresh_token().map_err(no_randomness)?;
        let successor = RefreshToken::issue(
            refresh_key(&new_token),
            &view.grant,
            client.lifetimes.refresh_idle,
            now,
        );
        let (rotated, minted) = tokio::join!(
            self.store
                .rotate_refresh(&old_hash, &successor, client.lifetimes.reuse_leeway, now),
            // OIDC Core §12.2: no nonce in an ID token from a refresh.
            self.mint(&client, &view.grant, &scopes, None, now)
        );
        let rotated = match rotated {
            Ok(rotated) => rotated,
            Err(e) => {
                // The outcome is unknown (a timeout, a lost answer): take
                // back a rotation that may have committed, so that the
                // presented token still works (DESIGN invariant 7).
                self.undo_rotation(&view.grant.id, &old_hash, &successor.hash)
                    .await;
                return Err(unavailable(e));
            }
        };
        match rotated {
            Rotated::Rotated => {}
            Rotated::Reused { grant_id } => {
                return Err(self.refresh_reused(&grant_id, &old_hash, now).await);
            }
            Rotated::Invalid => {
                return Err(OAuthError::invalid_grant(
                    "refresh token is invalid or expired",
                ));
            }
        }
        let (access_token, id_token) = match minted {
            Ok(tokens) => tokens,
            Err(e) => {
                // Rotated but nothing to hand out: put the presented token
                // back so that the client's retry works (DESIGN invariant 7).
                self.undo_rotation(&view.grant.id, &old_hash, &successor.hash)
                    .await;
                return Err(e);
            }
        };
        tracing::info!(grant = %view.grant.id, client = %client.id, token = log_prefix(&old_hash), "refresh token rotated");
        Ok(TokenResponse::bearer(
            &client,
            &scopes,
            access_token,
            Some(new_token),
            id_token,
        ))
    }

    /// RFC 9700 §4.14.2: a consumed refresh token presented again means one
    /// of its holders is not the client; the whole family dies.
    async fn refresh_reused(&self, grant_id: &str, token_hash: &str, now: i64) -> OAuthError {
        match self.store.revoke_grant(grant_id, now).await {
            Ok(_) => {
                tracing::warn!(grant = %grant_id, token = log_prefix(token_hash), "refresh token reused; grant revoked");
                OAuthError::invalid_grant("refresh token was already used; the grant is revoked")
            }
            Err(e) => unavailable(e),
        }
    }

    /// RFC 6749 §4.4: the client acting on its own behalf.
    pub async fn client_credentials(
        &self,
        auth: &ClientAuth,
        scope: Option<&Scopes>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let client = self.client_for(auth).await?;
        if client.is_public() || !client.allows(GrantType::ClientCredentials) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the client_credentials grant",
            ));
        }
        // There is no user: identity and offline scopes make no sense here.
        let allowed = client.scopes.without(OPENID).without(OFFLINE_ACCESS);
        let scopes = match scope {
            Some(s) if !s.is_empty() => {
                if s.contains(OPENID) || s.contains(OFFLINE_ACCESS) {
                    return Err(OAuthError::invalid_scope(
                        "openid and offline_access need a user; not available with client_credentials",
                    ));
                }
                client.check_scopes(s)?;
                s.clone()
            }
            _ => allowed,
        };
        let claims = AccessClaims {
            iss: &self.config.issuer,
            sub: &client.id,
            aud: &client.id,
            client_id: &client.id,
            scope: scopes.to_string(),
            iat: now,
            exp: now + client.lifetimes.access_token,
            jti: secret::new_id().map_err(no_randomness)?,
            grant_id: None,
            auth_time: None,
        };
        let access_token = self.sign_jwt("at+jwt", &claims).await?;
        tracing::info!(client = %client.id, "client credentials token issued");
        Ok(TokenResponse::bearer(
            &client,
            &scopes,
            access_token,
            None,
            None,
        ))
    }

    /// The access token (RFC 9068) and, for OpenID grants, the ID token;
    /// `nonce` only for the code exchange (OIDC Core §12.2).
    ///
    /// The ID token has no `at_hash`: it is optional at the token endpoint
    /// (OIDC Core §3.1.3.6), and covering the signed access token would make
    /// the ID token's signature wait for it, one sequential KMS round more
    /// than the AWS budget allows (DESIGN). Both signatures run at once.
    pub(crate) async fn mint(
        &self,
        client: &Client,
        grant: &Grant,
        scopes: &Scopes,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<(String, Option<String>), OAuthError> {
        let claims = AccessClaims {
            iss: &self.config.issuer,
            sub: &grant.user_id,
            // RFC 9068 §3: with no resource indicator, the audience is the client.
            aud: &client.id,
            client_id: &client.id,
            scope: scopes.to_string(),
            iat: now,
            exp: now + client.lifetimes.access_token,
            jti: secret::new_id().map_err(no_randomness)?,
            grant_id: Some(&grant.id),
            auth_time: Some(grant.auth_time),
        };
        if !grant.scopes.contains(OPENID) {
            return Ok((self.sign_jwt("at+jwt", &claims).await?, None));
        }
        let id_claims = IdClaims::for_grant(
            &self.config.issuer,
            grant,
            nonce,
            now,
            self.config.id_token_ttl,
        );
        let (access_token, id_token) = tokio::join!(
            self.sign_jwt("at+jwt", &claims),
            self.sign_jwt("JWT", &id_claims)
        );
        Ok((access_token?, Some(id_token?)))
    }

    /// RFC 7009 §2.1: revoking a refresh token revokes its grant; a token we
    /// do not know (or an access token, which expires on its own) is a success.
    pub async fn revoke(&self, auth: &ClientAuth, token: &str) -> Result<(), OAuthError> {
        let now = self.clock.now();
        let token_hash = refresh_key(token);
        let (client, view) = self.client_and_refresh(auth, &token_hash, now).await?;
        let Some(view) = view else {
            return Ok(());
        };
        if view.token.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the token was issued to another client",
            ));
        }
        let n = self
            .store
            .revoke_grant(&view.grant.id, now)
            .await
            .map_err(unavailable)?;
        tracing::info!(grant = %view.grant.id, client = %client.id, revoked = n, "refresh token revoked");
        Ok(())
    }
}

/// The client now requires a second factor that this grant was made without.
fn mfa_required() -> OAuthError {
    OAuthError::invalid_grant(
        "this application now requires two-step verification; \
         send the user through the authorization endpoint again",
    )
}
