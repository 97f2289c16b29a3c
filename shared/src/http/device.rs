//! The device authorization endpoint (RFC 8628 §3.1), served by the token
//! function beside `/oauth/token`.

use super::{Request, Response, wire};
use crate::domain::Scopes;
use crate::service::Services;

/// RFC 8628 §3.1: client authentication as at the token endpoint; errors
/// as RFC 6749 §5.2.
pub(crate) async fn device_authorization(services: &Services, req: &Request) -> Response {
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
    let scope = match wire::field(&form, "scope").and_then(|s| s.map(Scopes::parse).transpose()) {
        Ok(s) => s,
        Err(e) => return wire::oauth_error(&e, auth.used_basic()),
    };
    match services.device_authorization(&auth, scope.as_ref()).await {
        Ok(body) => wire::json_no_store(200, &body),
        Err(e) => wire::oauth_error(&e, auth.used_basic()),
    }
}
