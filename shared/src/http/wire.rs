//! Reading requests and writing responses: forms, cookies, client
//! authentication headers, JSON and error bodies. Parse once, fail early.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::{Request, Response};
use crate::domain::{ClientAuth, OAuthError};
use crate::service::Cookies;
use crate::service::authorize::{BIND_COOKIE, SESSION_COOKIE};

/// Form bodies and query strings are small; anything larger is refused.
pub const MAX_BODY: usize = 64 * 1024;

/// Decodes `application/x-www-form-urlencoded` pairs (RFC 6749 Appendix B).
pub fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

pub fn query(req: &Request) -> Vec<(String, String)> {
    pairs(req.uri().query().unwrap_or("").as_bytes())
}

/// The body of a POST to a protocol endpoint (RFC 6749 §3.2: form-encoded).
pub fn form(req: &Request) -> Result<Vec<(String, String)>, OAuthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if req.body().len() > MAX_BODY {
        return Err(OAuthError::invalid_request("the body is too large"));
    }
    Ok(pairs(req.body()))
}

/// The one value of a form field; repeated fields are refused (RFC 6749 §3.2).
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, OAuthError> {
    crate::domain::request::Params(form).get(name)
}

pub fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, OAuthError> {
    field(form, name)?.ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// Who the client says it is, by exactly one method (RFC 6749 §2.3).
pub fn client_auth(req: &Request, form: &[(String, String)]) -> Result<ClientAuth, OAuthError> {
    let body_id = field(form, "client_id")?;
    let body_secret = field(form, "client_secret")?;
    let basic = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(basic_credentials(value)?),
    };
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not Basic and client_secret together",
        )),
        (Some((id, _)), Some(body), None) if body != id => Err(OAuthError::invalid_request(
            "client_id in the body differs from the Authorization header",
        )),
        (Some((client_id, secret)), _, None) => Ok(ClientAuth::Basic { client_id, secret }),
        (None, Some(id), Some(secret)) => Ok(ClientAuth::Post {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        (None, Some(id), None) => Ok(ClientAuth::None {
            client_id: id.to_owned(),
        }),
        (None, None, _) => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
    }
}

/// RFC 6749 §2.3.1 with RFC 7617: Basic over form-encoded id and secret.
fn basic_credentials(value: &HeaderValue) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Authorization header");
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unform = |s: &str| -> Result<String, OAuthError> {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    let id = unform(id)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, unform(secret)?))
}

/// The address a request came from, as the shell that received it saw it:
/// the TCP peer in `tokenfn serve`, API Gateway's `sourceIp` in Lambda.
/// Set only by the shells, as a request extension; no header a client
/// sends (`X-Forwarded-For`, `Forwarded`, ...) is ever read for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddr(pub IpAddr);

/// The id of a request, set by the shell that received it: API Gateway's
/// request id in Lambda, a random one in `tokenfn serve`. Error pages show
/// it, and the log line of the failure carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The request's [`RequestId`], or a new one when its shell set none.
pub fn request_id(req: &Request) -> String {
    match req.extensions().get::<RequestId>() {
        Some(id) => id.0.clone(),
        None => crate::domain::secret::new_id().unwrap_or_else(|_| "unknown".into()),
    }
}

/// The request's [`SourceAddr`], if its shell knew one.
pub fn source_addr(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<SourceAddr>().map(|a| a.0)
}

/// The cookies the browser pages care about.
pub fn cookies(req: &Request) -> Cookies {
    let mut out = Cookies::default();
    for value in req.headers().get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((name, v)) = pair.trim().split_once('=') else {
                continue;
            };
            let v = v.trim_matches('"');
            if v.is_empty() {
                continue;
            }
            match name {
                BIND_COOKIE => out.bind = Some(v.to_owned()),
                SESSION_COOKIE => out.session = Some(v.to_owned()),
                _ => {}
            }
        }
    }
    out
}

/// A `Set-Cookie` for a browser page: never readable by scripts, never sent
/// on cross-site POSTs, `Secure` when the issuer is https.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn response(status: u16, content_type: &str, body: Bytes, extra: &[(&str, String)]) -> Response {
    let mut builder = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type);
    for (name, value) in extra {
        builder = builder.header(*name, value);
    }
    builder.body(body).unwrap_or_else(|_| {
        // Only reachable with a header value we built wrongly; never from input.
        let mut r = http::Response::new(Bytes::from_static(b"{\"error\":\"server_error\"}"));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A JSON response that must not be cached (RFC 6749 §5.1).
pub fn json_no_store<T: Serialize>(status: u16, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => response(
            status,
            "application/json",
            body.into(),
            &[
                ("cache-control", "no-store".into()),
                ("pragma", "no-cache".into()),
            ],
        ),
        Err(_) => json_error(500, "server_error", "response could not be encoded", &[]),
    }
}

/// A cacheable JSON document already encoded (discovery, JWKS).
pub fn json_public(body: Bytes, max_age: u32) -> Response {
    response(
        200,
        "application/json",
        body,
        &[("cache-control", format!("public, max-age={max_age}"))],
    )
}

pub fn json_error(
    status: u16,
    code: &str,
    description: &str,
    extra: &[(&str, String)],
) -> Response {
    let body = serde_json::json!({ "error": code, "error_description": description });
    let mut headers = vec![
        ("cache-control", "no-store".to_owned()),
        ("pragma", "no-cache".to_owned()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    response(
        status,
        "application/json",
        body.to_string().into(),
        &headers,
    )
}

/// RFC 6749 §5.2 error response. `basic` says whether the client tried HTTP
/// Basic, which makes a 401 carry a `WWW-Authenticate` challenge.
pub fn oauth_error(err: &OAuthError, basic: bool) -> Response {
    let status = err.code.status();
    let mut extra = Vec::new();
    if status == 401 && basic {
        extra.push(("www-authenticate", "Basic realm=\"tokenfn\"".to_owned()));
    }
    match err.retry_after {
        Some(secs) => extra.push(("retry-after", secs.to_string())),
        None if status == 503 => extra.push(("retry-after", "1".to_owned())),
        None => {}
    }
    json_error(status, err.code.as_str(), &err.description, &extra)
}

/// An HTML page with the security headers of every page and `csp`.
pub fn html(status: u16, body: String, csp: &str, extra: &[(&str, String)]) -> Response {
    let mut headers: Vec<(&str, String)> = super::pages::SECURITY_HEADERS
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    headers.push(("content-security-policy", csp.to_owned()));
    if status == 503 {
        headers.push(("retry-after", "1".to_owned()));
    }
    headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    response(status, "text/html; charset=utf-8", body.into(), &headers)
}

pub fn redirect(status: u16, location: &str, extra: &[(&str, String)]) -> Response {
    let mut headers = vec![
        ("location", location.to_owned()),
        ("cache-control", "no-store".to_owned()),
        ("referrer-policy", "no-referrer".to_owned()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    response(status, "text/plain; charset=utf-8", Bytes::new(), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut b = http::Request::builder().method("POST").uri("/oauth/token");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::new()).unwrap()
    }

    fn form(raw: &str) -> Vec<(String, String)> {
        pairs(raw.as_bytes())
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "a b%3A" : "p+q%25"  -> id "a b:" / secret "p q%"
        let header = format!("Basic {}", STANDARD.encode("a+b%3A:p+q%25"));
        let auth = client_auth(&req(&[("authorization", &header)]), &[]).unwrap();
        assert_eq!(
            auth,
            ClientAuth::Basic {
                client_id: "a b:".into(),
                secret: "p q%".into()
            }
        );
    }

    #[test]
    fn one_method_only() {
        let header = format!("Basic {}", STANDARD.encode("a:b"));
        let r = req(&[("authorization", &header)]);
        assert!(client_auth(&r, &form("client_secret=x")).is_err());
        assert!(client_auth(&r, &form("client_id=other")).is_err());
        assert!(client_auth(&r, &form("client_id=a")).is_ok());
    }

    #[test]
    fn post_none_and_missing() {
        let r = req(&[]);
        assert!(matches!(
            client_auth(&r, &form("client_id=a&client_secret=s")).unwrap(),
            ClientAuth::Post { .. }
        ));
        assert!(matches!(
            client_auth(&r, &form("client_id=a")).unwrap(),
            ClientAuth::None { .. }
        ));
        assert_eq!(
            client_auth(&r, &form("")).unwrap_err().code.as_str(),
            "invalid_client"
        );
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        for bad in [
            "Bearer x",
            "Basic !!!",
            "Basic",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            assert_eq!(
                client_auth(&req(&[("authorization", bad)]), &[])
                    .unwrap_err()
                    .code
                    .as_str(),
                "invalid_client",
                "{bad}"
            );
        }
    }

    #[test]
    fn cookies_are_picked_by_name() {
        let r = req(&[("cookie", "x=1; tfn_bind=abc; tfn_session=def")]);
        let c = cookies(&r);
        assert_eq!(c.bind.as_deref(), Some("abc"));
        assert_eq!(c.session.as_deref(), Some("def"));
    }

    #[test]
    fn errors_carry_no_store_and_challenge() {
        let r = oauth_error(&OAuthError::invalid_client("x"), true);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = oauth_error(&OAuthError::unavailable(), false);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
    }
}
