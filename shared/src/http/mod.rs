//! One router per Lambda function: a plain `http::Request<Bytes>` in, an
//! `http::Response<Bytes>` out. The Lambda binaries and `tokenfn serve` are
//! two thin shells around these; no handler knows which one it runs under.

pub mod authorize;
pub mod device;
pub mod discovery;
pub mod pages;
pub mod refresh;
pub mod revoke;
pub mod token;
pub mod tokeninfo;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;

use crate::service::Services;

pub type Request = http::Request<Bytes>;
pub type Response = http::Response<Bytes>;

/// What every router is, to the shells that run it.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, req: Request) -> Response;
}

macro_rules! handler {
    ($($router:ty),*) => {$(
        #[async_trait]
        impl Handler for $router {
            async fn handle(&self, req: Request) -> Response {
                <$router>::handle(self, req).await
            }
        }
    )*};
}

handler!(
    authorize::AuthorizeRouter,
    token::TokenRouter,
    refresh::RefreshRouter,
    revoke::RevokeRouter,
    discovery::DiscoveryRouter
);

/// A route a function serves; infrastructure templates are checked against these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
}

// The paths live below the services too, which build redirects to some of them.
pub use crate::paths::*;

/// The methods `routes` serve at the request's path (none: no such path).
pub(crate) fn allowed_methods<'a>(routes: &'a [Route], req: &Request) -> Vec<&'a str> {
    routes
        .iter()
        .filter(|r| r.path == req.uri().path())
        .map(|r| r.method.as_str())
        .collect()
}

/// Answers a path that exists with the wrong method, or one that doesn't.
pub fn not_routed(routes: &[Route], req: &Request) -> Response {
    let allowed = allowed_methods(routes, req);
    if allowed.is_empty() {
        wire::json_error(404, "invalid_request", "no such endpoint", &[])
    } else {
        wire::json_error(
            405,
            "invalid_request",
            &format!("use {}", allowed.join(" or ")),
            &[("allow", allowed.join(", "))],
        )
    }
}

/// One Lambda function: its name, the routes it serves, and how to build
/// its router.
pub struct Function {
    pub name: &'static str,
    pub routes: &'static [Route],
    pub router: fn(Arc<Services>) -> Arc<dyn Handler>,
}

/// Every function, for the local server that mounts them all and for
/// checking infrastructure templates against the code.
pub const FUNCTIONS: [Function; 5] = [
    Function {
        name: "authorize",
        routes: authorize::ROUTES,
        router: |s| Arc::new(authorize::AuthorizeRouter::new(s)),
    },
    Function {
        name: "token",
        routes: token::ROUTES,
        router: |s| Arc::new(token::TokenRouter::new(s)),
    },
    Function {
        name: "refresh",
        routes: refresh::ROUTES,
        router: |s| Arc::new(refresh::RefreshRouter::new(s)),
    },
    Function {
        name: "revoke",
        routes: revoke::ROUTES,
        router: |s| Arc::new(revoke::RevokeRouter::new(s)),
    },
    Function {
        name: "discovery",
        routes: discovery::ROUTES,
        router: |s| Arc::new(discovery::DiscoveryRouter::new(s)),
    },
];
