//! The token function: `POST /oauth/token` (RFC 6749 §3.2), with
//! introspection and UserInfo beside it (they verify its tokens).

use std::sync::Arc;

use http::Method;

use super::{
    DEVICE_AUTHORIZATION, INTROSPECT, Request, Response, Route, TOKEN, USERINFO, device, tokeninfo,
    wire,
};
use crate::domain::{ClientAuth, ErrorCode, OAuthError, Scopes};
use crate::service::Services;
use crate::service::token::CodeExchange;

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::POST,
        path: TOKEN,
    },
    Route {
        method: Method::POST,
        path: INTROSPECT,
    },
    Route {
        method: Method::GET,
        path: USERINFO,
    },
    Route {
        method: Method::POST,
        path: USERINFO,
    },
    Route {
        method: Method::POST,
        path: DEVICE_AUTHORIZATION,
    },
];

pub struct TokenRouter {
    services: Arc<Services>,
}

impl TokenRouter {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    pub async fn handle(&self, req: Request) -> Response {
        match (req.method(), req.uri().path()) {
            (&Method::POST, TOKEN) => token_request(&self.services, &req, false).await,
            (&Method::POST, INTROSPECT) => tokeninfo::introspect(&self.services, &req).await,
            (&Method::GET | &Method::POST, USERINFO) => {
                tokeninfo::userinfo(&self.services, &req).await
            }
            (&Method::POST, DEVICE_AUTHORIZATION) => {
                device::device_authorization(&self.services, &req).await
            }
            _ => super::not_routed(ROUTES, &req),
        }
    }
}

/// Parses a token request, runs its grant and writes the RFC 6749 §5
/// response. `refresh_only` is the refresh function's mode, where
/// `grant_type` may be omitted.
pub(crate) async fn token_request(
    services: &Services,
    req: &Request,
    refresh_only: bool,
) -> Response {
    let form = match wire::form(req) {
        Ok(f) => f,
        Err(e) => return wire::oauth_error(&e, false),
    };
    let auth = match wire::client_auth(req, &form) {
        Ok(a) => a,
        Err(e) => {
            return wire::oauth_error(&e, req.headers().contains_key(http::header::AUTHORIZATION));
        }
    };
    // A grant ends in signatures: the signer can get ready while it reads the store.
    services.signer.prepare();
    match run_grant(services, req, &auth, &form, refresh_only).await {
        Ok(body) => wire::json_no_store(200, &body),
        Err(e) => wire::oauth_error(&e, auth.used_basic()),
    }
}

async fn run_grant(
    services: &Services,
    req: &Request,
    auth: &ClientAuth,
    form: &[(String, String)],
    refresh_only: bool,
) -> Result<crate::service::TokenResponse, OAuthError> {
    let grant_type = match (wire::field(form, "grant_type")?, refresh_only) {
        (Some(g), _) => g,
        (None, true) => "refresh_token",
        (None, false) => return Err(OAuthError::invalid_request("grant_type is required")),
    };
    let scope = wire::field(form, "scope")?.map(Scopes::parse).transpose()?;
    match grant_type {
        "refresh_token" => {
            let token = wire::required(form, "refresh_token")?;
            services.refresh(auth, token, scope.as_ref()).await
        }
        "authorization_code" if !refresh_only => {
            let exchange = CodeExchange {
                code: wire::required(form, "code")?,
                redirect_uri: wire::field(form, "redirect_uri")?,
                code_verifier: wire::field(form, "code_verifier")?,
            };
            services.exchange_code(auth, exchange).await
        }
        // RFC 8628 §3.4: only the URN (GrantType::parse also takes a short form).
        g if !refresh_only && g == crate::domain::GrantType::DeviceCode.as_str() => {
            let device_code = wire::required(form, "device_code")?;
            services.exchange_device_code(auth, device_code).await
        }
        "client_credentials" if !refresh_only => {
            services.client_credentials(auth, scope.as_ref()).await
        }
        "password" if !refresh_only => {
            let username = wire::required(form, "username")?;
            let password = wire::required(form, "password")?;
            services
                .password_grant(
                    auth,
                    username,
                    password,
                    scope.as_ref(),
                    wire::source_addr(req),
                )
                .await
        }
        _ => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            if refresh_only {
                "this endpoint serves only grant_type=refresh_token"
            } else {
                "unsupported grant_type"
            },
        )),
    }
}
