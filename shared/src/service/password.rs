//! The resource owner password credentials grant (RFC 6749 §4.3), for the
//! clients an operator explicitly allowed it. Failed attempts back off per
//! account, per source address and per client; a user with a second factor cannot use it.

use std::net::IpAddr;

use super::throttle::seconds;
use super::token::NewGrant;
use super::{Services, TokenResponse, no_randomness, unavailable};
use crate::domain::scope::{OFFLINE_ACCESS, OPENID};
use crate::domain::secret;
use crate::domain::throttle::{self, Lane};
use crate::domain::{ClientAuth, GrantType, OAuthError, Scopes};

/// The lanes of one attempt: the same as the login form's (one password,
/// one count, whichever way it is tried), plus the client's own.
fn lanes(username: &str, client_id: &str, addr: Option<IpAddr>) -> Vec<Lane> {
    let mut lanes = throttle::sign_in_lanes(throttle::PASSWORD, username, addr);
    lanes.push(Lane {
        key: format!("password:client:{client_id}"),
        backoff: throttle::PER_CLIENT,
        reset_on_success: false,
    });
    lanes
}

impl Services {
    /// RFC 6749 §4.3.2. `scope` defaults to the client's scopes without
    /// `offline_access`: a refresh token only when it is asked for.
    pub async fn password_grant(
        &self,
        auth: &ClientAuth,
        username: &str,
        password: &str,
        scope: Option<&Scopes>,
        addr: Option<IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let lanes = lanes(username, auth.client_id(), addr);
        let (client, user, checked) = tokio::join!(
            self.store.get_client(auth.client_id()),
            self.store.find_user(username),
            self.throttle_check(&lanes, now)
        );
        let client = Self::check_client(auth, client)?;
        if !client.allows(GrantType::Password) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the password grant",
            ));
        }
        let scopes = match scope {
            Some(s) if !s.is_empty() => client.grantable(s)?,
            _ => client.scopes.without(OFFLINE_ACCESS),
        };
        let checked = checked.map_err(unavailable)?;
        if let Some(wait) = checked.wait {
            // Waiting attempts do not count, and get the same answer for
            // every username.
            return Err(OAuthError::invalid_grant(format!(
                "too many failed sign-ins; try again in {}",
                seconds(wait)
            ))
            .wait(wait));
        }
        let user = user.map_err(unavailable)?;

        let Some(user) = super::check_password(user, password).await else {
            self.throttle_failed(&lanes, now)
                .await
                .map_err(unavailable)?;
            tracing::info!(client = %client.id, "password grant: sign-in failed");
            return Err(OAuthError::invalid_grant(
                "the username or password is wrong",
            ));
        };
        // Said only to someone who knows the password.
        if user.has_mfa() || client.require_mfa {
            return Err(OAuthError::invalid_grant(
                "this sign-in needs two-step verification, which the password grant cannot carry; \
                 use the authorization code flow",
            ));
        }
        self.throttle_passed(checked).await.map_err(unavailable)?;
        self.make_room(&user.id, &client.id, now).await?;

        let NewGrant {
            grant,
            refresh_token,
            record,
        } = Self::new_grant(
            &client,
            secret::new_id().map_err(no_randomness)?,
            &user.id,
            &scopes,
            (now, vec!["pwd".to_owned()]),
            now,
        )?;
        let (created, minted) = tokio::join!(
            self.store.create_grant(&grant, record.as_ref()),
            self.mint(&client, &grant, &scopes, None, now)
        );
        if let Err(e) = created {
            // The outcome is unknown (a timeout, a lost answer): a grant
            // that may exist with nothing handed out must not linger.
            self.drop_unissued(&grant.id, now).await;
            return Err(unavailable(e));
        }
        let (access_token, id_token) = match minted {
            Ok(tokens) => tokens,
            Err(e) => {
                // Nothing was handed out: the grant must not linger.
                self.drop_unissued(&grant.id, now).await;
                return Err(e);
            }
        };
        tracing::info!(grant = %grant.id, client = %client.id, refresh = refresh_token.is_some(), openid = scopes.contains(OPENID), "password grant issued");
        Ok(TokenResponse::bearer(
            &client,
            &scopes,
            access_token,
            refresh_token,
            id_token,
        ))
    }

    /// Revokes the grant `grant_id`, made (or maybe made) with nothing
    /// handed out; a failure is logged.
    async fn drop_unissued(&self, grant_id: &str, now: i64) {
        if let Err(undo) = self.store.revoke_grant(grant_id, now).await {
            tracing::error!(grant = %grant_id, error = %undo, "could not revoke an unissued grant");
        }
    }
}
