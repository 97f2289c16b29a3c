//! The discovery function: OpenID Provider metadata (OIDC Discovery §3,
//! RFC 8414) and the JWK Set. Each is built once, from the signer's keys
//! (the metadata only needs their `alg`, which a configured KMS signer knows
//! without reading them); no store or KMS call per request.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::{
    AUTHORIZE, DISCOVERY, INTROSPECT, JWKS, REFRESH, REVOKE, Request, Response, Route, TOKEN,
    USERINFO, wire,
};
use crate::config::Config;
use crate::ports::StoreError;
use crate::service::{Services, unavailable};

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: DISCOVERY,
    },
    Route {
        method: Method::GET,
        path: JWKS,
    },
];

pub struct DiscoveryRouter {
    services: Arc<Services>,
    /// Each document, encoded once.
    metadata: OnceCell<Bytes>,
    jwks: OnceCell<Bytes>,
}

impl DiscoveryRouter {
    pub fn new(services: Arc<Services>) -> Self {
        Self {
            services,
            metadata: OnceCell::new(),
            jwks: OnceCell::new(),
        }
    }

    pub async fn handle(&self, req: Request) -> Response {
        let document = match (req.method(), req.uri().path()) {
            (&Method::GET, DISCOVERY) => self.metadata().await,
            (&Method::GET, JWKS) => self.jwks().await,
            _ => return super::not_routed(ROUTES, &req),
        };
        match document {
            Ok(body) => wire::json_public(body.clone(), 300),
            Err(e) => wire::oauth_error(&unavailable(e), false),
        }
    }

    /// Needs no key when the signer knows its `alg` beforehand.
    async fn metadata(&self) -> Result<&Bytes, StoreError> {
        self.metadata
            .get_or_try_init(|| async {
                let signer = &self.services.signer;
                let alg = match signer.alg() {
                    Some(alg) => alg,
                    None => signer.keys().await?.alg,
                };
                Ok(Bytes::from(
                    metadata(&self.services.config, alg).to_string(),
                ))
            })
            .await
    }

    async fn jwks(&self) -> Result<&Bytes, StoreError> {
        self.jwks
            .get_or_try_init(|| async {
                let keys = self.services.signer.keys().await?;
                Ok(Bytes::from(keys.jwks.to_string()))
            })
            .await
    }
}

/// The metadata of a server whose signing key is for `alg`.
pub fn metadata(c: &Config, alg: &str) -> Value {
    json!({
        "issuer": c.issuer,
        "authorization_endpoint": c.endpoint(AUTHORIZE),
        "token_endpoint": c.endpoint(TOKEN),
        "refresh_endpoint": c.endpoint(REFRESH),
        "revocation_endpoint": c.endpoint(REVOKE),
        "introspection_endpoint": c.endpoint(INTROSPECT),
        "userinfo_endpoint": c.endpoint(USERINFO),
        "jwks_uri": c.endpoint(JWKS),
        "device_authorization_endpoint": c.endpoint(super::DEVICE_AUTHORIZATION),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password", "urn:ietf:params:oauth:grant-type:device_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "amr", "preferred_username", "email", "email_verified"],
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}
