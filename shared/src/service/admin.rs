//! What operators do: register clients and users, list and revoke grants.
//! Used by the CLI now and by the revoke function's direct invocations.

use url::Url;

use super::Services;
use crate::domain::client::{ClientKind, Lifetimes};
use crate::domain::secret::hash;
use crate::domain::user::hash_password;
use crate::domain::{Client, Grant, GrantType, Scopes, User, secret, totp};
use crate::ports::StoreError;

/// An admin operation that failed, with a message for a person.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A client to register.
pub struct NewClient {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// None for a public client.
    pub secret: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Scopes,
    pub lifetimes: Lifetimes,
}

/// A client secret must carry at least as much entropy as the ones we make.
pub const MIN_SECRET_LEN: usize = 32;

/// What a revocation targets, by id (the CLI resolves usernames first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RevokeTarget {
    #[serde(rename = "revoke_user")]
    User { user_id: String },
    #[serde(rename = "revoke_client")]
    Client { client_id: String },
    #[serde(rename = "revoke_grant")]
    Grant { grant_id: String },
    #[serde(rename = "revoke_consent")]
    Consent { user_id: String, client_id: String },
}

impl Services {
    pub async fn add_client(&self, new: NewClient) -> Result<Client, AdminError> {
        check_client_id(&new.id)?;
        if new.redirect_uris.is_empty() && new.grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(AdminError::Invalid(
                "a client using authorization_code needs at least one --redirect-uri".into(),
            ));
        }
        for uri in &new.redirect_uris {
            check_redirect_uri(uri)?;
        }
        if new.grant_types.is_empty() {
            return Err(AdminError::Invalid(
                "--grant-types must name at least one grant".into(),
            ));
        }
        let kind = match &new.secret {
            Some(s) if s.len() < MIN_SECRET_LEN => {
                return Err(AdminError::Invalid(format!(
                    "the client secret must be at least {MIN_SECRET_LEN} characters of random data"
                )));
            }
            Some(_) => ClientKind::Confidential,
            None => ClientKind::Public,
        };
        if kind == ClientKind::Public && new.grant_types.contains(&GrantType::ClientCredentials) {
            return Err(AdminError::Invalid(
                "a public client cannot use client_credentials: it has no secret".into(),
            ));
        }
        let l = new.lifetimes;
        if l.access_token <= 0
            || l.refresh_absolute <= 0
            || l.refresh_idle <= 0
            || l.reuse_leeway < 0
        {
            return Err(AdminError::Invalid(
                "lifetimes must be positive numbers of seconds".into(),
            ));
        }
        if self.store.get_client(&new.id).await?.is_some() {
            return Err(AdminError::Invalid(format!(
                "a client with id {:?} exists already",
                new.id
            )));
        }
        let client = Client {
            name: new.name.unwrap_or_else(|| new.id.clone()),
            id: new.id,
            kind,
            secret_hash: new.secret.as_deref().map(hash),
            redirect_uris: new.redirect_uris,
            grant_types: new.grant_types,
            scopes: new.scopes,
            lifetimes: new.lifetimes,
            require_mfa: false,
            created_at: self.clock.now(),
        };
        self.store.put_client(&client).await?;
        tracing::info!(client = %client.id, kind = ?client.kind, "client registered");
        Ok(client)
    }

    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        email: Option<String>,
    ) -> Result<User, AdminError> {
        if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
            return Err(AdminError::Invalid(
                "the username must be 1 to 256 printable characters".into(),
            ));
        }
        if password.chars().count() < 8 {
            return Err(AdminError::Invalid(
                "the password must be at least 8 characters".into(),
            ));
        }
        let pw = password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|e| AdminError::Invalid(format!("password hashing failed: {e}")))?
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let user = User {
            id: secret::new_id().map_err(|e| AdminError::Invalid(e.to_string()))?,
            username: username.to_owned(),
            password_hash,
            email,
            totp_secret: None,
            created_at: self.clock.now(),
        };
        match self.store.add_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(AdminError::Invalid(format!(
                    "the username {username:?} is taken"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user = %user.id, "user added");
        Ok(user)
    }

    pub async fn user_id(&self, username: &str) -> Result<String, AdminError> {
        self.store
            .find_user(username)
            .await?
            .map(|u| u.id)
            .ok_or_else(|| AdminError::NotFound(format!("no user named {username:?}")))
    }

    /// Gives the user a new TOTP secret (replacing any earlier one) and
    /// returns the `otpauth://` URI to enrol an authenticator app with.
    pub async fn enroll_mfa(&self, username: &str) -> Result<String, AdminError> {
        let id = self.user_id(username).await?;
        let secret = totp::new_secret().map_err(|e| AdminError::Invalid(e.to_string()))?;
        let uri = totp::uri(&secret, "tokenfn", username)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        // Stored sealed, for this user only; the plain secret is only in the URI.
        let sealed = self.secret_box.seal(&id, &secret).await?;
        if !self.store.set_totp(&id, Some(&sealed)).await? {
            return Err(AdminError::NotFound(format!("no user named {username:?}")));
        }
        tracing::info!(target: "audit", user = %id, "mfa enrolled");
        Ok(uri)
    }

    /// Removes the user's second factor; returns whether there was one.
    pub async fn reset_mfa(&self, username: &str) -> Result<bool, AdminError> {
        let user = self
            .store
            .find_user(username)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no user named {username:?}")))?;
        self.store.set_totp(&user.id, None).await?;
        tracing::info!(target: "audit", user = %user.id, had = user.has_mfa(), "mfa reset");
        Ok(user.has_mfa())
    }

    /// Turns the client's MFA requirement on or off. Grants made without a
    /// second factor stop refreshing while it is on.
    pub async fn set_require_mfa(&self, client_id: &str, on: bool) -> Result<Client, AdminError> {
        let mut client = self
            .store
            .get_client(client_id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no client with id {client_id:?}")))?;
        client.require_mfa = on;
        self.store.put_client(&client).await?;
        tracing::info!(target: "audit", client = %client.id, require_mfa = on, "client updated");
        Ok(client)
    }

    pub async fn grants_of(&self, username: &str) -> Result<Vec<Grant>, AdminError> {
        let id = self.user_id(username).await?;
        Ok(self.store.list_grants(&id, self.clock.now()).await?)
    }

    /// Revokes what `target` names; returns how many active grants died.
    /// Idempotent: a second call revokes nothing and says 0.
    pub async fn revoke_target(&self, target: &RevokeTarget) -> Result<u64, AdminError> {
        let now = self.clock.now();
        let n = match target {
            RevokeTarget::User { user_id } => self.store.revoke_user(user_id, now).await?,
            RevokeTarget::Client { client_id } => self.store.revoke_client(client_id, now).await?,
            RevokeTarget::Grant { grant_id } => self.store.revoke_grant(grant_id, now).await?,
            RevokeTarget::Consent { user_id, client_id } => {
                self.store.revoke_consent(user_id, client_id, now).await?
            }
        };
        // The audit line: what was asked and what it did, ids only.
        tracing::info!(target: "audit", command = ?target, revoked = n, "revocation");
        Ok(n)
    }
}

fn check_client_id(id: &str) -> Result<(), AdminError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "the client id must be 1 to 128 characters of letters, digits, '-', '_' or '.'".into(),
        ))
    }
}

/// RFC 6749 §3.1.2: absolute, no fragment. Plain http only for loopback
/// (RFC 8252 §7.3); private-use schemes for native apps (§7.1).
fn check_redirect_uri(uri: &str) -> Result<(), AdminError> {
    let bad = |why: &str| AdminError::Invalid(format!("redirect URI {uri:?} {why}"));
    let url = Url::parse(uri).map_err(|_| bad("is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host_str() {
            Some("localhost" | "127.0.0.1" | "[::1]") => Ok(()),
            _ => Err(bad(
                "uses http; only https or a loopback address is allowed",
            )),
        },
        // Native apps' private-use schemes are reverse domain names (RFC 8252 §7.1).
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(bad(
            "must use https, loopback http, or a reverse-domain private scheme",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_commands_parse_from_json() {
        let t: RevokeTarget =
            serde_json::from_str(r#"{"action":"revoke_consent","user_id":"u","client_id":"c"}"#)
                .unwrap();
        assert_eq!(
            t,
            RevokeTarget::Consent {
                user_id: "u".into(),
                client_id: "c".into()
            }
        );
        assert!(serde_json::from_str::<RevokeTarget>(r#"{"action":"drop_table"}"#).is_err());
        assert!(serde_json::from_str::<RevokeTarget>(r#"{"action":"revoke_user"}"#).is_err());
        assert!(
            serde_json::from_str::<RevokeTarget>(r#"{"action":"revoke_user","user_id":"u","x":1}"#)
                .is_err()
        );
    }

    #[test]
    fn redirect_uris_are_checked() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb").is_ok());
        assert!(check_redirect_uri("com.example.app:/oauth2redirect").is_ok());
        assert!(check_redirect_uri("http://app.example/cb").is_err());
        assert!(check_redirect_uri("https://app.example/cb#x").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
    }

    #[test]
    fn client_ids_are_plain() {
        assert!(check_client_id("demo-web").is_ok());
        assert!(check_client_id("").is_err());
        assert!(check_client_id("a b").is_err());
    }
}
