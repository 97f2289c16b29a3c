//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1), parsed
//! once into a typed value.

use serde::{Deserialize, Serialize};

use super::scope::{OFFLINE_ACCESS, OPENID};
use super::{Client, GrantType, OAuthError, Scopes, pkce};

/// OIDC Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

impl Prompt {
    pub fn parse(raw: Option<&str>) -> Result<Self, OAuthError> {
        let mut p = Prompt::default();
        for v in raw.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" => p.login = true,
                "consent" => p.consent = true,
                // We keep one account per browser session, so there is nothing to select.
                "select_account" => {}
                // The value is named only when error_description may hold it.
                _ if v.bytes().all(super::error::description_byte) => {
                    return Err(OAuthError::invalid_request(format!(
                        "unsupported prompt value: {v}"
                    )));
                }
                _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
            }
        }
        if p.none && (p.login || p.consent) {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok(p)
    }
}

/// A validated authorization request for a known client and a registered
/// redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(with = "super::client_scopes")]
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
}

/// Query parameters of an authorization request, each present at most once.
pub struct Params<'a>(pub &'a [(String, String)]);

impl<'a> Params<'a> {
    /// RFC 6749 §3.1: parameters must not be repeated; empty means absent.
    pub fn get(&self, name: &str) -> Result<Option<&'a str>, OAuthError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} is repeated"
            )));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }
}

impl AuthorizationRequest {
    /// Validates everything after client_id and redirect_uri, which the
    /// caller has already checked against `client` (errors from here on are
    /// sent back to the redirect URI).
    pub fn validate(
        params: &Params<'_>,
        client: &Client,
        redirect_uri: &str,
    ) -> Result<Self, OAuthError> {
        if params.get("request")?.is_some() {
            return Err(OAuthError::new(
                super::ErrorCode::RequestNotSupported,
                "request objects are not supported",
            ));
        }
        if params.get("request_uri")?.is_some() {
            return Err(OAuthError::new(
                super::ErrorCode::RequestUriNotSupported,
                "request_uri is not supported",
            ));
        }
        match params.get("response_type")? {
            Some("code") => {}
            None => return Err(OAuthError::invalid_request("response_type is required")),
            Some(_) => {
                return Err(OAuthError::new(
                    super::ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ));
            }
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the authorization code grant",
            ));
        }
        match params.get("response_mode")? {
            None | Some("query") => {}
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "only response_mode=query is supported",
                ));
            }
        }
        let scopes = Scopes::parse(params.get("scope")?.unwrap_or(""))?;
        if scopes.is_empty() {
            return Err(OAuthError::invalid_scope("scope is required"));
        }
        let scopes = client.grantable(&scopes)?;
        let nonce = params.get("nonce")?.map(str::to_owned);
        let code_challenge = match params.get("code_challenge")? {
            Some(challenge) => {
                pkce::check_challenge(challenge, params.get("code_challenge_method")?)?;
                Some(challenge.to_owned())
            }
            None if params.get("code_challenge_method")?.is_some() => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method without code_challenge",
                ));
            }
            // RFC 9700 §2.1.1: public clients must use PKCE.
            None if client.is_public() => {
                return Err(OAuthError::invalid_request(
                    "PKCE is required for public clients: send code_challenge with S256",
                ));
            }
            None => None,
        };
        let prompt = Prompt::parse(params.get("prompt")?)?;
        let max_age = match params.get("max_age")? {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                OAuthError::invalid_request("max_age must be a non-negative integer")
            })?),
        };
        Ok(Self {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state: params.get("state")?.map(str::to_owned),
            nonce,
            code_challenge,
            prompt,
            max_age,
        })
    }

    pub fn is_openid(&self) -> bool {
        self.scopes.contains(OPENID)
    }

    pub fn wants_offline_access(&self) -> bool {
        self.scopes.contains(OFFLINE_ACCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::client::{ClientKind, Lifetimes};

    fn client(kind: ClientKind) -> Client {
        Client {
            id: "app".into(),
            name: "App".into(),
            kind,
            secret_hash: None,
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: Scopes::parse("openid email offline_access").unwrap(),
            lifetimes: Lifetimes::default(),
            require_mfa: false,
            created_at: 0,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn a_complete_request_validates() {
        let p = params(&[
            ("response_type", "code"),
            ("scope", "openid offline_access"),
            ("state", "xyz"),
            ("nonce", "n"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("prompt", "consent"),
        ]);
        let r = AuthorizationRequest::validate(
            &Params(&p),
            &client(ClientKind::Public),
            "https://app.example/cb",
        )
        .unwrap();
        assert!(r.is_openid() && r.wants_offline_access() && r.prompt.consent);
        assert_eq!(r.state.as_deref(), Some("xyz"));
    }

    #[test]
    fn public_clients_need_pkce_and_plain_is_refused() {
        let c = client(ClientKind::Public);
        let no_pkce = params(&[("response_type", "code"), ("scope", "openid")]);
        assert_eq!(
            AuthorizationRequest::validate(&Params(&no_pkce), &c, "x")
                .unwrap_err()
                .code
                .as_str(),
            "invalid_request"
        );
        let plain = params(&[
            ("response_type", "code"),
            ("scope", "openid"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "plain"),
        ]);
        assert!(AuthorizationRequest::validate(&Params(&plain), &c, "x").is_err());
        let confidential = client(ClientKind::Confidential);
        assert!(AuthorizationRequest::validate(&Params(&no_pkce), &confidential, "x").is_ok());
    }

    #[test]
    fn each_bad_parameter_has_its_error_code() {
        let c = client(ClientKind::Confidential);
        let check = |pairs: &[(&str, &str)], code: &str| {
            let p = params(pairs);
            assert_eq!(
                AuthorizationRequest::validate(&Params(&p), &c, "x")
                    .unwrap_err()
                    .code
                    .as_str(),
                code,
                "{pairs:?}"
            );
        };
        check(
            &[("response_type", "token"), ("scope", "openid")],
            "unsupported_response_type",
        );
        check(&[("scope", "openid")], "invalid_request");
        check(
            &[("response_type", "code"), ("scope", "openid admin")],
            "invalid_scope",
        );
        check(&[("response_type", "code")], "invalid_scope");
        check(
            &[
                ("response_type", "code"),
                ("scope", "openid"),
                ("scope", "email"),
            ],
            "invalid_request",
        );
        check(
            &[
                ("response_type", "code"),
                ("scope", "openid"),
                ("prompt", "none login"),
            ],
            "invalid_request",
        );
        check(
            &[
                ("response_type", "code"),
                ("scope", "openid"),
                ("request", "eyJ"),
            ],
            "request_not_supported",
        );
        check(
            &[
                ("response_type", "code"),
                ("scope", "openid"),
                ("max_age", "-1"),
            ],
            "invalid_request",
        );
    }
}
