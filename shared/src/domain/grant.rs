//! Grants and the records that hang off them. A grant is one user's
//! authorization of one client (DESIGN invariant 4); codes, refresh tokens,
//! consents, sessions and pending interactions are stored by the hash of
//! their secret, never the secret itself.

use serde::{Deserialize, Serialize};

use super::{AuthorizationRequest, OAuthError, Scopes};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    #[serde(with = "super::client_scopes")]
    pub scopes: Scopes,
    /// When the user authenticated (OIDC Core §2 `auth_time`).
    pub auth_time: i64,
    /// How the user authenticated (RFC 8176 values, e.g. `pwd`, `otp`).
    pub amr: Vec<String>,
    pub created_at: i64,
    /// Absolute expiry, fixed when the grant is created.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: i64,
}

impl Grant {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }

    /// Whether the user gave a second factor when this grant was made.
    pub fn made_with_mfa(&self) -> bool {
        is_mfa(&self.amr)
    }
}

/// Whether authentication methods (RFC 8176 `amr`) include a second factor.
pub fn is_mfa(amr: &[String]) -> bool {
    amr.iter().any(|m| m == "otp" || m == "mfa")
}

/// An authorization code, stored by hash. Lives at most 60 s and is
/// single-use (DESIGN invariant 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub scopes: Scopes,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    /// The id the grant gets when this code is redeemed, so that a replay
    /// can name the grant to revoke.
    pub grant_id: String,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

/// A refresh token, stored by hash. A consumed token stays as a tombstone
/// until its grant expires, so that its reuse is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub created_at: i64,
    /// End of the idle lifetime: the token is refused after this unless rotated.
    pub idle_expires_at: i64,
    /// The grant's absolute expiry; the record is gone after it.
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
    /// The hash of the token that replaced this one.
    pub successor_hash: Option<String>,
}

impl RefreshToken {
    /// The successor of a token of `grant` rotated at `now`.
    pub fn issue(hash: String, grant: &Grant, idle_lifetime: i64, now: i64) -> Self {
        Self {
            hash,
            grant_id: grant.id.clone(),
            client_id: grant.client_id.clone(),
            user_id: grant.user_id.clone(),
            created_at: now,
            idle_expires_at: (now + idle_lifetime).min(grant.expires_at),
            expires_at: grant.expires_at,
            consumed_at: None,
            successor_hash: None,
        }
    }
}

/// A refresh token with the grant it belongs to, as read before a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshView {
    pub token: RefreshToken,
    pub grant: Grant,
}

impl RefreshView {
    /// The checks made before a rotation is attempted (RFC 6749 §6; the
    /// store re-checks activity atomically). Returns the scopes of the new
    /// access token: `requested` may narrow the grant's scopes, never widen them.
    pub fn check(
        &self,
        client_id: &str,
        requested: Option<&Scopes>,
        now: i64,
    ) -> Result<Scopes, OAuthError> {
        // §6: the refresh token must have been issued to the authenticated client.
        if self.token.client_id != client_id {
            return Err(OAuthError::invalid_grant("refresh token is invalid"));
        }
        if !self.grant.is_active(now) {
            return Err(OAuthError::invalid_grant(
                "refresh token is expired or revoked",
            ));
        }
        if self.token.consumed_at.is_none() && now >= self.token.idle_expires_at {
            return Err(OAuthError::invalid_grant("refresh token is expired"));
        }
        match requested {
            None => Ok(self.grant.scopes.clone()),
            Some(req) if req.is_empty() => Ok(self.grant.scopes.clone()),
            Some(req) if req.is_subset(&self.grant.scopes) => Ok(req.clone()),
            Some(req) => Err(OAuthError::invalid_scope(format!(
                "scope exceeds what was granted: {}",
                req.missing_from(&self.grant.scopes).join(" ")
            ))),
        }
    }
}

/// What a user agreed to let a client do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    #[serde(with = "super::client_scopes")]
    pub scopes: Scopes,
    pub granted_at: i64,
}

/// A signed-in browser, stored by the hash of its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub expires_at: i64,
}

/// An authorization request waiting for the user to sign in or consent.
/// Bound to the browser that started it and protected by a CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: String,
    /// Hash of the CSRF token embedded in the page's forms.
    pub csrf_hash: String,
    /// Hash of the browser-binding cookie of the browser that started it.
    pub browser_hash: String,
    pub request: AuthorizationRequest,
    /// Set once the user has authenticated for this request.
    pub user_id: Option<String>,
    pub auth_time: Option<i64>,
    pub amr: Vec<String>,
    pub expires_at: i64,
    /// What the interaction is for, and how far its sign-in has come.
    pub flow: Flow,
}

/// What an interaction leads to once the user has signed in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// A code for `request` (the authorization endpoint).
    #[default]
    Authorize,
    /// A device verification (RFC 8628 §3.3): the user entered the user
    /// code of the device code `device_hash` (none yet while on the
    /// code-entry form). `request` then carries the device's client and scopes.
    Device { device_hash: Option<String> },
    /// The connected apps page.
    Account,
}

/// The parts of an interaction beyond the authorization request, stored
/// together (one JSON value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    #[serde(default)]
    pub purpose: Purpose,
    /// The user who gave the right password (or holds a session without a
    /// second factor) and still owes a TOTP code. `user_id` stays unset
    /// until the code is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_user: Option<String>,
    /// Wrong TOTP codes given so far; at [`MAX_OTP_FAILURES`] the interaction ends.
    #[serde(default)]
    pub otp_failures: u32,
    /// Wrong user codes entered (device verification).
    #[serde(default)]
    pub code_failures: u32,
    /// Until then the device page refuses more user codes from this browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<i64>,
}

/// Wrong TOTP codes an interaction takes before it ends.
pub const MAX_OTP_FAILURES: u32 = 5;
/// Wrong user codes a browser may enter before the device page refuses more.
pub const MAX_CODE_FAILURES: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now: i64) -> RefreshView {
        let grant = Grant {
            id: "g".into(),
            user_id: "u".into(),
            client_id: "c".into(),
            scopes: Scopes::parse("openid email offline_access").unwrap(),
            auth_time: now,
            amr: vec!["pwd".into()],
            created_at: now,
            expires_at: now + 1000,
            revoked_at: None,
            last_used_at: now,
        };
        let token = RefreshToken::issue("h".into(), &grant, 100, now);
        RefreshView { token, grant }
    }

    #[test]
    fn idle_expiry_never_outlives_the_grant() {
        let v = view(0);
        assert_eq!(v.token.idle_expires_at, 100);
        let t = RefreshToken::issue("h2".into(), &v.grant, 5000, 900);
        assert_eq!(t.idle_expires_at, 1000);
    }

    #[test]
    fn scope_may_narrow_but_not_widen() {
        let v = view(0);
        let narrow = Scopes::parse("email").unwrap();
        assert_eq!(v.check("c", Some(&narrow), 1).unwrap(), narrow);
        let wide = Scopes::parse("email admin").unwrap();
        assert_eq!(
            v.check("c", Some(&wide), 1).unwrap_err().code.as_str(),
            "invalid_scope"
        );
        assert_eq!(v.check("c", None, 1).unwrap(), v.grant.scopes);
    }

    #[test]
    fn other_clients_expired_and_revoked_are_invalid_grant() {
        let mut v = view(0);
        assert_eq!(
            v.check("other", None, 1).unwrap_err().code.as_str(),
            "invalid_grant"
        );
        assert_eq!(
            v.check("c", None, 100).unwrap_err().code.as_str(),
            "invalid_grant"
        );
        assert_eq!(
            v.check("c", None, 1000).unwrap_err().code.as_str(),
            "invalid_grant"
        );
        v.grant.revoked_at = Some(5);
        assert_eq!(
            v.check("c", None, 6).unwrap_err().code.as_str(),
            "invalid_grant"
        );
    }
}
