//! The revoke function's HTTP side: `POST /oauth/revoke` (RFC 7009).

use std::sync::Arc;

use http::Method;

use super::{REVOKE, Request, Response, Route, wire};
use crate::service::Services;

pub const ROUTES: &[Route] = &[Route {
    method: Method::POST,
    path: REVOKE,
}];

pub struct RevokeRouter {
    services: Arc<Services>,
}

impl RevokeRouter {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    pub async fn handle(&self, req: Request) -> Response {
        if req.method() != Method::POST || req.uri().path() != REVOKE {
            return super::not_routed(ROUTES, &req);
        }
        let form = match wire::form(&req) {
            Ok(f) => f,
            Err(e) => return wire::oauth_error(&e, false),
        };
        let auth = match wire::client_auth(&req, &form) {
            Ok(a) => a,
            Err(e) => {
                return wire::oauth_error(
                    &e,
                    req.headers().contains_key(http::header::AUTHORIZATION),
                );
            }
        };
        let token = match wire::required(&form, "token") {
            Ok(t) => t,
            Err(e) => return wire::oauth_error(&e, auth.used_basic()),
        };
        // RFC 7009 §2.1: token_type_hint is only a hint; we look the token up anyway.
        match self.services.revoke(&auth, token).await {
            Ok(()) => wire::json_no_store(200, &serde_json::json!({})),
            Err(e) => wire::oauth_error(&e, auth.used_basic()),
        }
    }
}
