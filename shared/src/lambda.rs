//! The Lambda shell around a router: API Gateway HTTP API (v2) events in,
//! their responses out. Feature `lambda`; the function binaries use it.

use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, LambdaEvent, Service as _, service_fn};
use serde_json::{Value, json};
use tracing::Level;
use tracing_subscriber::filter::Targets;

use crate::aws::Keys;
use crate::http::wire::{self, SourceAddr};
use crate::http::{Handler, Request, Response};
use crate::service::Services;
use crate::service::admin::RevokeTarget;

/// JSON log lines on stdout, which Lambda sends to CloudWatch. The level
/// comes from `TOKENFN_LOG` (default info).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .without_time()
        .finish()
        .with(log_filter(std::env::var("TOKENFN_LOG").ok().as_deref()))
        .init();
}

/// `TOKENFN_LOG`: a level (`debug`), targets with levels
/// (`tokenfn_core=debug,info`), or both; `info` when unset or unreadable.
/// Parsed as tracing's `Targets`, which needs no regular expressions,
/// rather than as an `EnvFilter`, whose regex engine is 200 KB of every
/// function binary.
fn log_filter(raw: Option<&str>) -> Targets {
    raw.and_then(|raw| raw.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
}

/// Ends a container whose settings are wrong, naming the setting; Lambda
/// reports the init failure with this line in the function's log.
pub fn init_failed(message: &str) -> ! {
    eprintln!("tokenfn: init failed: {message}");
    tracing::error!(error = message, "init failed");
    std::process::exit(1)
}

/// A container's init: logging, then the settings, SDK clients, store and
/// signer, once. Settings that are missing or wrong end the container.
pub async fn start(keys: Keys) -> Arc<Services> {
    crate::process::release_large_blocks();
    init_logging();
    crate::aws::init(keys)
        .await
        .unwrap_or_else(|e| init_failed(&e))
}

pub fn to_request(req: lambda_http::Request) -> Request {
    let source = source_ip(&req);
    let id = request_id(&req);
    let (mut parts, body) = req.into_parts();
    if let Some(addr) = source {
        parts.extensions.insert(SourceAddr(addr));
    }
    if let Some(id) = id {
        parts.extensions.insert(wire::RequestId(id));
    }
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(s) => Bytes::from(s),
        Body::Binary(b) => Bytes::from(b),
        // `Body` is non-exhaustive; a future kind carries no form or query we read.
        _ => Bytes::new(),
    };
    http::Request::from_parts(parts, bytes)
}

/// The caller's address as API Gateway saw it (`requestContext.http.sourceIp`
/// of an HTTP API event): the address of the TCP connection to API Gateway,
/// which a client cannot forge with a header.
fn source_ip(req: &lambda_http::Request) -> Option<std::net::IpAddr> {
    use lambda_http::RequestExt as _;
    use lambda_http::request::RequestContext;
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

/// API Gateway's id of the request (`requestContext.requestId`), which its
/// access logs carry too; else the Lambda invocation's.
fn request_id(req: &lambda_http::Request) -> Option<String> {
    use lambda_http::RequestExt as _;
    use lambda_http::request::RequestContext;
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
    .filter(|id| !id.is_empty())
}

pub fn to_response(resp: Response) -> lambda_http::Response<Body> {
    let (parts, bytes) = resp.into_parts();
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    http::Response::from_parts(parts, body)
}

/// One API Gateway request through a router, or the 400 of an event
/// [`repair`] refused.
async fn answer(
    handler: Arc<dyn Handler>,
    refused: Option<&'static str>,
    req: lambda_http::Request,
) -> Result<lambda_http::Response<Body>, Infallible> {
    let response = match refused {
        None => handler.handle(to_request(req)).await,
        Some(why) => {
            tracing::warn!(why, "malformed API Gateway event");
            wire::json_error(400, "invalid_request", why, &[])
        }
    };
    Ok(to_response(response))
}

/// One API Gateway event through `handler`, answered in the shape its
/// origin expects: what `lambda_http::run` does for each event, except
/// that an event its conversion would panic on gets a 400 instead.
pub async fn answer_event(
    handler: Arc<dyn Handler>,
    event: LambdaEvent<LambdaRequest>,
) -> impl serde::Serialize + Send {
    let LambdaEvent {
        mut payload,
        context,
    } = event;
    let refused = repair(&mut payload).err();
    let routed = handler.clone();
    let mut adapter =
        lambda_http::Adapter::from(service_fn(move |req| answer(routed.clone(), refused, req)));
    // The conversion runs inside `call`, before the router's future: a
    // panic caught here is lambda_http's, never the router's.
    let response = match catch_unwind(AssertUnwindSafe(|| {
        adapter.call(LambdaEvent::new(payload, context))
    })) {
        Ok(response) => response.await,
        Err(_) => {
            let why = Some("the event is not a readable HTTP request");
            let mut adapter = lambda_http::Adapter::from(service_fn(move |req| {
                answer(handler.clone(), why, req)
            }));
            let empty = LambdaRequest::ApiGatewayV2(Default::default());
            adapter
                .call(LambdaEvent::new(empty, Default::default()))
                .await
        }
    };
    match response {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Mends or refuses what lambda_http's conversion of an HTTP API event
/// panics on: a body flagged base64 that is not (refused, and the body
/// dropped), a raw query string that `http::Uri` refuses (its other bytes
/// percent-encoded), and a `Host` header or domain name that is no host
/// (dropped). API Gateway sends none of these; a direct invocation may.
fn repair(event: &mut LambdaRequest) -> Result<(), &'static str> {
    let LambdaRequest::ApiGatewayV2(ag) = event else {
        return Ok(());
    };
    if let Some(query) = &mut ag.raw_query_string
        && http::Uri::try_from(format!("/?{query}")).is_err()
    {
        *query = percent_encoding::utf8_percent_encode(query, QUERY_UNSAFE).to_string();
    }
    let is_host =
        |h: &str| url::Url::parse(&format!("https://{h}/")).is_ok_and(|u| u.path() == "/");
    if ag
        .headers
        .get(http::header::HOST)
        .is_some_and(|h| !h.to_str().is_ok_and(is_host))
    {
        ag.headers.remove(http::header::HOST);
    }
    if ag
        .request_context
        .domain_name
        .as_deref()
        .is_some_and(|d| !is_host(d))
    {
        ag.request_context.domain_name = None;
    }
    if ag.is_base64_encoded
        && ag
            .body
            .as_deref()
            .is_some_and(|b| STANDARD.decode(b).is_err())
    {
        ag.body = None;
        return Err("the body is marked base64 but is not base64");
    }
    Ok(())
}

/// Bytes of a query string to percent-encode: all but RFC 3986's
/// unreserved characters, sub-delims, `:`, `@`, `/`, `?` and `%` (bytes
/// already percent-encoded stay as they are).
const QUERY_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'?')
    .remove(b'%');

/// Runs `handler` for every API Gateway event this container receives.
pub async fn run_http(handler: Arc<dyn Handler>) -> Result<(), lambda_http::Error> {
    lambda_http::lambda_runtime::run(service_fn(move |event| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(answer_event(handler, event).await) }
    }))
    .await
}

/// The revoke function: API Gateway events go to its router; direct
/// invocations (`aws lambda invoke`) carry an admin command such as
/// `{"action":"revoke_user","user_id":"..."}` and get `{"revoked": N}`.
pub async fn run_revoke(
    handler: Arc<dyn Handler>,
    services: Arc<Services>,
) -> Result<(), lambda_http::Error> {
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        let services = services.clone();
        async move { dispatch(handler, &services, event).await }
    }))
    .await
}

/// An admin command that could not be carried out, reported as the
/// invocation's error (`errorType`, `errorMessage`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(String);

impl From<CommandError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(e: CommandError) -> Self {
        Self {
            error_type: "InvalidCommand".into(),
            error_message: e.0,
        }
    }
}

pub(crate) async fn dispatch(
    handler: Arc<dyn Handler>,
    services: &Services,
    event: LambdaEvent<Value>,
) -> Result<Value, CommandError> {
    let LambdaEvent { payload, context } = event;
    if payload.get("action").is_some() {
        return run_command(services, payload).await;
    }
    let request: LambdaRequest = serde_json::from_value(payload).map_err(|e| {
        CommandError(format!(
            "not an API Gateway event and not a command with an \"action\": {e}"
        ))
    })?;
    let response = answer_event(handler, LambdaEvent::new(request, context)).await;
    serde_json::to_value(response).map_err(|e| CommandError(e.to_string()))
}

/// Runs one admin command; every command is idempotent.
pub async fn run_command(services: &Services, payload: Value) -> Result<Value, CommandError> {
    let action = payload
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let target: RevokeTarget = serde_json::from_value(payload).map_err(|e| {
        tracing::warn!(target: "audit", action = %action, "refused command");
        CommandError(format!(
            "bad command: {e}. Commands: revoke_user {{user_id}}, revoke_client {{client_id}}, \
revoke_grant {{grant_id}}, revoke_consent {{user_id, client_id}}"
        ))
    })?;
    let revoked = services
        .revoke_target(&target)
        .await
        .map_err(|e| CommandError(format!("{action} failed: {e}")))?;
    Ok(json!({ "revoked": revoked }))
}
/// An API Gateway HTTP API (payload format 2.0) event as Lambda delivers
/// it to a function: what a direct invocation (`aws lambda invoke`) of an
/// HTTP function must look like. The tests build their events with it.
pub fn api_gateway_event(
    method: &str,
    path: &str,
    query: &str,
    headers: Value,
    body: Option<&str>,
) -> Value {
    let mut e = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "id.example.com",
            "domainPrefix": "id",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "26/Nov/2026:14:00:00 +0000",
            "timeEpoch": 1_795_701_600_000u64
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        // API Gateway base64-encodes form bodies.
        e["body"] = json!(STANDARD.encode(b));
        e["isBase64Encoded"] = json!(true);
    }
    e
}

pub type Error = lambda_http::Error;

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[test]
    fn log_filter_reads_levels_and_targets() {
        let info = log_filter(None);
        assert!(info.would_enable("tokenfn_core::service", &Level::INFO));
        assert!(!info.would_enable("tokenfn_core::service", &Level::DEBUG));
        assert_eq!(
            log_filter(Some("no=such=filter")).to_string(),
            info.to_string()
        );
        let debug = log_filter(Some("debug"));
        assert!(debug.would_enable("aws_smithy_runtime", &Level::DEBUG));
        let mixed = log_filter(Some("tokenfn_core=debug,warn"));
        assert!(mixed.would_enable("tokenfn_core::store", &Level::DEBUG));
        assert!(!mixed.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(mixed.would_enable("aws_smithy_runtime", &Level::WARN));
    }
    use crate::config::Config;
    use crate::domain::client::Lifetimes;
    use crate::domain::{GrantType, Scopes};
    use crate::http::discovery::DiscoveryRouter;
    use crate::http::revoke::RevokeRouter;
    use crate::http::token::TokenRouter;
    use crate::ports::SystemClock;
    use crate::service::admin::NewClient;
    use crate::sign::LocalSigner;
    use crate::store::SqliteStore;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-svc";

    async fn services() -> (Arc<Services>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = LocalSigner::load_or_create(dir.path()).unwrap();
        let services = Arc::new(Services::new(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Arc::new(signer),
            Arc::new(SystemClock),
            Config::new("https://id.example.com"),
        ));
        services
            .add_client(NewClient {
                id: "svc".into(),
                name: None,
                redirect_uris: vec![],
                secret: Some(SECRET.into()),
                grant_types: vec![GrantType::ClientCredentials],
                scopes: Scopes::parse("api").unwrap(),
                lifetimes: Lifetimes::default(),
            })
            .await
            .unwrap();
        (services, dir)
    }

    async fn through_lambda(handler: &dyn Handler, ev: Value) -> Response {
        let req = lambda_http::request::from_str(&ev.to_string()).unwrap();
        let resp = handler.handle(to_request(req)).await;
        // And back the way lambda_http sends it.
        let lambda = to_response(resp.clone());
        assert_eq!(lambda.status(), resp.status());
        resp
    }

    #[test]
    fn the_source_address_is_api_gateways_never_a_header() {
        let forged = json!({
            "x-forwarded-for": "10.9.9.9",
            "forwarded": "for=10.9.9.9",
            "x-real-ip": "10.9.9.9"
        });
        let ev = api_gateway_event("POST", "/login", "", forged.clone(), Some("a=b"));
        let req = to_request(lambda_http::request::from_str(&ev.to_string()).unwrap());
        assert_eq!(
            crate::http::wire::source_addr(&req),
            Some("192.0.2.10".parse().unwrap())
        );
        // Without one in the context there is none, whatever the headers say.
        let mut ev = api_gateway_event("POST", "/login", "", forged, Some("a=b"));
        ev["requestContext"]["http"]
            .as_object_mut()
            .unwrap()
            .remove("sourceIp");
        let req = to_request(lambda_http::request::from_str(&ev.to_string()).unwrap());
        assert_eq!(crate::http::wire::source_addr(&req), None);
    }

    #[tokio::test]
    async fn token_endpoint_answers_an_api_gateway_event() {
        let (services, _dir) = services().await;
        let router = TokenRouter::new(services);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("svc:{SECRET}"))
        );
        let ev = api_gateway_event(
            "POST",
            "/oauth/token",
            "",
            json!({"content-type": "application/x-www-form-urlencoded", "authorization": basic}),
            Some("grant_type=client_credentials&scope=api"),
        );
        let resp = through_lambda(&router, ev).await;
        assert_eq!(resp.status(), 200);
        let body: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["scope"], "api");
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }

    #[tokio::test]
    async fn discovery_answers_with_query_strings_and_wrong_methods() {
        let (services, _dir) = services().await;
        let router = DiscoveryRouter::new(services);
        let ev = api_gateway_event("GET", "/.well-known/jwks.json", "x=1", json!({}), None);
        let resp = through_lambda(&router, ev).await;
        assert_eq!(resp.status(), 200);
        let ev = api_gateway_event("POST", "/.well-known/jwks.json", "", json!({}), None);
        assert_eq!(through_lambda(&router, ev).await.status(), 405);
    }

    #[tokio::test]
    async fn discovery_answers_its_metadata_without_kms_when_the_alg_is_configured() {
        let kms = crate::sign::kms::tests::unreachable_client();
        let signer = crate::sign::KmsSigner::start(kms, &["alias/tokenfn".into()], Some("ES256"));
        let services = Arc::new(Services::new(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Arc::new(signer.unwrap()),
            Arc::new(SystemClock),
            Config::new("https://id.example.com"),
        ));
        let router = DiscoveryRouter::new(services);
        let get = |path| api_gateway_event("GET", path, "", json!({}), None);
        let resp = through_lambda(&router, get("/.well-known/openid-configuration")).await;
        assert_eq!(resp.status(), 200);
        let metadata: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(
            metadata["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
        // The JWK Set is the keys themselves: this KMS cannot be reached.
        let resp = through_lambda(&router, get("/.well-known/jwks.json")).await;
        assert_eq!(resp.status(), 503);
        let body: Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    /// Events lambda_http's own conversion panics on: each is mended or
    /// refused with a 400 before it gets there.
    #[tokio::test]
    async fn malformed_events_are_mended_or_refused_not_panicked_on() {
        let (services, _dir) = services().await;
        let handler: Arc<dyn Handler> = Arc::new(DiscoveryRouter::new(services));
        let answer = |ev: Value| {
            let handler = handler.clone();
            async move {
                let request = serde_json::from_value::<LambdaRequest>(ev).unwrap();
                let event = LambdaEvent::new(request, lambda_http::Context::default());
                serde_json::to_value(answer_event(handler, event).await).unwrap()
            }
        };
        let jwks = "/.well-known/jwks.json";

        let mut ev = api_gateway_event("POST", "/oauth/token", "", json!({}), Some("a=b"));
        ev["body"] = json!("not base64!");
        let out = answer(ev).await;
        assert_eq!(out["statusCode"], 400, "{out}");
        assert!(
            out["body"].as_str().unwrap().contains("not base64"),
            "{out}"
        );

        // Characters http::Uri refuses in a query: percent-encoded.
        let out = answer(api_gateway_event(
            "GET",
            jwks,
            "a=\"{b}\"&c=<d>",
            json!({}),
            None,
        ))
        .await;
        assert_eq!(out["statusCode"], 200, "{out}");
        assert_eq!(
            percent_encoding::utf8_percent_encode("a=\"{b}\"", QUERY_UNSAFE).to_string(),
            "a=%22%7Bb%7D%22"
        );

        // A Host header or domain name that is no host: left out.
        let out = answer(api_gateway_event(
            "GET",
            jwks,
            "",
            json!({"host": "a b/c"}),
            None,
        ))
        .await;
        assert_eq!(out["statusCode"], 200, "{out}");
        let mut ev = api_gateway_event("GET", jwks, "", json!({}), None);
        ev["requestContext"]["domainName"] = json!("x y");
        assert_eq!(answer(ev).await["statusCode"], 200);
    }

    #[tokio::test]
    async fn revoke_function_takes_events_and_direct_commands() {
        let (services, _dir) = services().await;
        let handler: Arc<dyn Handler> = Arc::new(RevokeRouter::new(services.clone()));
        let ctx = lambda_http::Context::default();

        // Direct invocations: idempotent commands, clear errors.
        let ok = json!({"action": "revoke_user", "user_id": "nobody"});
        let out = dispatch(
            handler.clone(),
            &services,
            LambdaEvent::new(ok, ctx.clone()),
        )
        .await;
        assert_eq!(out.unwrap(), json!({"revoked": 0}));
        for bad in [
            json!({"action": "drop_everything"}),
            json!({"action": "revoke_consent", "user_id": "u"}),
            json!({"action": "revoke_grant", "grant_id": 7}),
        ] {
            let err = dispatch(
                handler.clone(),
                &services,
                LambdaEvent::new(bad, ctx.clone()),
            )
            .await
            .unwrap_err();
            assert!(err.to_string().starts_with("bad command"), "{err}");
        }
        let err = dispatch(
            handler.clone(),
            &services,
            LambdaEvent::new(json!({"hello": 1}), ctx.clone()),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not an API Gateway event"));

        // An API Gateway event gets an API Gateway response.
        let ev = api_gateway_event(
            "POST",
            "/oauth/revoke",
            "",
            json!({"content-type": "application/x-www-form-urlencoded"}),
            Some(&format!(
                "token=unknown&client_id=svc&client_secret={SECRET}"
            )),
        );
        let out = dispatch(handler, &services, LambdaEvent::new(ev, ctx))
            .await
            .unwrap();
        assert_eq!(out["statusCode"], 200);
        assert_eq!(out["body"], "{}");
    }
}
