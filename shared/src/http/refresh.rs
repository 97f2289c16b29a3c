//! The refresh function: `POST /oauth/refresh`, the refresh_token grant
//! alone. It runs the same code as the token endpoint's refresh grant.

use std::sync::Arc;

use http::Method;

use super::{REFRESH, Request, Response, Route};
use crate::service::Services;

pub const ROUTES: &[Route] = &[Route {
    method: Method::POST,
    path: REFRESH,
}];

pub struct RefreshRouter {
    services: Arc<Services>,
}

impl RefreshRouter {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    pub async fn handle(&self, req: Request) -> Response {
        if req.method() != Method::POST || req.uri().path() != REFRESH {
            return super::not_routed(ROUTES, &req);
        }
        super::token::token_request(&self.services, &req, true).await
    }
}
