//! Registered clients (RFC 6749 §2) and how they authenticate (§2.3).

use serde::{Deserialize, Serialize};

use super::scope::OFFLINE_ACCESS;
use super::secret::{ct_eq, hash};
use super::{OAuthError, Scopes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// Resource Owner Password Credentials (RFC 6749 §4.3): only for clients
    /// that are explicitly allowed it.
    Password,
    /// Device Authorization Grant (RFC 8628).
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
}

impl GrantType {
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::Password,
        GrantType::DeviceCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Password => "password",
            Self::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }

    /// The RFC's name; `device_code` is accepted for the device grant's URN.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "device_code" {
            return Some(Self::DeviceCode);
        }
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// RFC 6749 §2.1: confidential clients hold a secret; public ones cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Confidential,
    Public,
}

/// Per-client token lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetimes {
    pub access_token: i64,
    /// Absolute lifetime of a grant and so of its refresh tokens, fixed at creation.
    pub refresh_absolute: i64,
    /// How long a refresh token lives unused; renewed by each rotation.
    pub refresh_idle: i64,
    /// How long after its use a rotated refresh token may still be presented
    /// once without being taken for theft (0: never).
    pub reuse_leeway: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access_token: 900,
            refresh_absolute: 30 * 86_400,
            refresh_idle: 15 * 86_400,
            reuse_leeway: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub kind: ClientKind,
    /// base64url(SHA-256(secret)) for confidential clients.
    #[serde(skip_serializing)]
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    #[serde(with = "super::client_scopes")]
    pub scopes: Scopes,
    pub lifetimes: Lifetimes,
    /// Users must have signed in with a second factor: grants made without
    /// one stop refreshing when this is turned on.
    #[serde(default)]
    pub require_mfa: bool,
    pub created_at: i64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.kind == ClientKind::Public
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Exact string comparison with a registered URI (RFC 9700 §4.1.3).
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Checks the scopes a client asks for against those it was registered with.
    pub fn check_scopes(&self, requested: &Scopes) -> Result<(), OAuthError> {
        let missing = requested.missing_from(&self.scopes);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OAuthError::invalid_scope(format!(
                "scope not allowed for this client: {}",
                missing.join(" ")
            )))
        }
    }

    /// The scopes a grant asked for `requested` gets: all of them, except
    /// `offline_access` (a request for a refresh token) when this client may
    /// not refresh. RFC 6749 §3.3 lets the server grant less than asked; the
    /// token response then names what was granted, and consent never offers
    /// what the client cannot have.
    pub fn grantable(&self, requested: &Scopes) -> Result<Scopes, OAuthError> {
        self.check_scopes(requested)?;
        if self.allows(GrantType::RefreshToken) {
            return Ok(requested.clone());
        }
        let granted = requested.without(OFFLINE_ACCESS);
        if granted.is_empty() {
            return Err(OAuthError::invalid_scope(
                "offline_access asks for a refresh token, which this client may not have",
            ));
        }
        Ok(granted)
    }

    /// Authenticates the caller as this client (RFC 6749 §2.3, §3.2.1).
    pub fn authenticate(&self, auth: &ClientAuth) -> Result<(), OAuthError> {
        match (self.kind, auth.secret(), &self.secret_hash) {
            (ClientKind::Public, None, _) => Ok(()),
            (ClientKind::Public, Some(_), _) => Err(OAuthError::invalid_client(
                "this client is public and has no secret",
            )),
            (ClientKind::Confidential, Some(secret), Some(stored))
                if ct_eq(&hash(secret), stored) =>
            {
                Ok(())
            }
            (ClientKind::Confidential, _, _) => {
                Err(OAuthError::invalid_client("client authentication failed"))
            }
        }
    }
}

/// How a request at the token or revocation endpoint names its client.
/// Exactly one method per request (RFC 6749 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// client_secret_basic: HTTP Basic with form-encoded id and secret (§2.3.1).
    Basic { client_id: String, secret: String },
    /// client_secret_post: id and secret in the form body.
    Post { client_id: String, secret: String },
    /// none: a public client names itself and proves nothing (PKCE does).
    None { client_id: String },
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::None { client_id } => client_id,
        }
    }

    pub fn secret(&self) -> Option<&str> {
        match self {
            Self::Basic { secret, .. } | Self::Post { secret, .. } => Some(secret),
            Self::None { .. } => None,
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }
}

pub(crate) mod scopes_as_string {
    use super::Scopes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Scopes, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Scopes, D::Error> {
        let raw = String::deserialize(de)?;
        Scopes::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(kind: ClientKind, secret: Option<&str>) -> Client {
        Client {
            id: "app".into(),
            name: "App".into(),
            kind,
            secret_hash: secret.map(hash),
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: Scopes::parse("openid email").unwrap(),
            lifetimes: Lifetimes::default(),
            require_mfa: false,
            created_at: 0,
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = client(ClientKind::Public, None);
        assert!(c.has_redirect_uri("https://app.example/cb"));
        assert!(!c.has_redirect_uri("https://app.example/cb/"));
        assert!(!c.has_redirect_uri("https://app.example/cb?x=1"));
        assert!(!c.has_redirect_uri("HTTPS://app.example/cb"));
    }

    #[test]
    fn confidential_clients_need_their_secret() {
        let c = client(
            ClientKind::Confidential,
            Some("s3cret-s3cret-s3cret-s3cret-s3cret"),
        );
        let ok = ClientAuth::Basic {
            client_id: "app".into(),
            secret: "s3cret-s3cret-s3cret-s3cret-s3cret".into(),
        };
        let bad = ClientAuth::Post {
            client_id: "app".into(),
            secret: "nope".into(),
        };
        let none = ClientAuth::None {
            client_id: "app".into(),
        };
        assert!(c.authenticate(&ok).is_ok());
        assert_eq!(
            c.authenticate(&bad).unwrap_err().code.as_str(),
            "invalid_client"
        );
        assert!(c.authenticate(&none).is_err());
    }

    #[test]
    fn public_clients_must_not_send_a_secret() {
        let c = client(ClientKind::Public, None);
        assert!(
            c.authenticate(&ClientAuth::None {
                client_id: "app".into()
            })
            .is_ok()
        );
        let with_secret = ClientAuth::Post {
            client_id: "app".into(),
            secret: "x".into(),
        };
        assert!(c.authenticate(&with_secret).is_err());
    }

    #[test]
    fn scopes_outside_registration_are_refused() {
        let c = client(ClientKind::Public, None);
        assert!(c.check_scopes(&Scopes::parse("openid").unwrap()).is_ok());
        let err = c
            .check_scopes(&Scopes::parse("openid admin").unwrap())
            .unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_scope");
    }

    #[test]
    fn offline_access_is_granted_only_to_clients_that_may_refresh() {
        let mut c = client(ClientKind::Public, None);
        c.scopes = Scopes::parse("openid email offline_access").unwrap();
        let asked = Scopes::parse("openid offline_access").unwrap();
        assert_eq!(
            c.grantable(&asked).unwrap(),
            Scopes::parse("openid").unwrap()
        );
        let alone = Scopes::parse("offline_access").unwrap();
        assert_eq!(
            c.grantable(&alone).unwrap_err().code.as_str(),
            "invalid_scope"
        );
        c.grant_types.push(GrantType::RefreshToken);
        assert_eq!(c.grantable(&asked).unwrap(), asked);
    }
}
