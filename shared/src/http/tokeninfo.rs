//! Served by the token function beside `/oauth/token`: introspection
//! (`POST /oauth/introspect`, RFC 7662) and UserInfo (`GET`/`POST
//! /userinfo`, OIDC Core §5.3, with RFC 6750 bearer errors).

use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE};

use super::{Request, Response, wire};
use crate::service::Services;
use crate::service::tokeninfo::BearerError;

pub async fn introspect(services: &Services, req: &Request) -> Response {
    let form = match wire::form(req) {
        Ok(f) => f,
        Err(e) => return wire::oauth_error(&e, false),
    };
    let auth = match wire::client_auth(req, &form) {
        Ok(a) => a,
        Err(e) => return wire::oauth_error(&e, req.headers().contains_key(AUTHORIZATION)),
    };
    let token = match wire::required(&form, "token") {
        Ok(t) => t,
        Err(e) => return wire::oauth_error(&e, auth.used_basic()),
    };
    // token_type_hint is only a hint (RFC 7662 §2.1): the token's shape decides.
    match services.introspect(&auth, token).await {
        Ok(answer) => wire::json_no_store(200, &answer),
        Err(e) => wire::oauth_error(&e, auth.used_basic()),
    }
}

pub async fn userinfo(services: &Services, req: &Request) -> Response {
    let token = match bearer_token(req) {
        Ok(t) => t,
        Err(e) => return bearer_error(&e),
    };
    match services.userinfo(&token).await {
        Ok(claims) => wire::json_no_store(200, &claims),
        Err(e) => bearer_error(&e),
    }
}

/// RFC 6750 §2.1 (the Authorization header) or §2.2 (a form body on POST);
/// exactly one of them.
fn bearer_token(req: &Request) -> Result<String, BearerError> {
    let header = match req.headers().get(AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| {
                BearerError::invalid_request("the Authorization header is not text")
            })?;
            match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim().to_owned())
                }
                // Another scheme carries no access token.
                _ => None,
            }
        }
    };
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = if req.method() == Method::POST && is_form {
        let form =
            wire::form(req).map_err(|e| BearerError::invalid_request(e.description.clone()))?;
        wire::field(&form, "access_token")
            .map_err(|e| BearerError::invalid_request(e.description.clone()))?
            .map(str::to_owned)
    } else {
        None
    };
    match (header, body) {
        (Some(_), Some(_)) => Err(BearerError::invalid_request(
            "send the access token one way, not in both the header and the body",
        )),
        (Some(t), None) | (None, Some(t)) if !t.is_empty() => Ok(t),
        (Some(_), None) | (None, Some(_)) => {
            Err(BearerError::invalid_request("the access token is empty"))
        }
        (None, None) => Err(BearerError::missing()),
    }
}

/// RFC 6750 §3: the challenge, and the same code in a JSON body.
fn bearer_error(e: &BearerError) -> Response {
    let mut challenge = "Bearer realm=\"tokenfn\"".to_owned();
    if let Some(code) = e.code {
        challenge.push_str(&format!(
            ", error=\"{code}\", error_description=\"{}\"",
            e.description
        ));
    }
    if let Some(scope) = e.scope {
        challenge.push_str(&format!(", scope=\"{scope}\""));
    }
    let mut extra = vec![("www-authenticate", challenge)];
    if e.status == 503 {
        extra.push(("retry-after", "1".to_owned()));
    }
    wire::json_error(
        e.status,
        e.code.unwrap_or("invalid_request"),
        &e.description,
        &extra,
    )
}
