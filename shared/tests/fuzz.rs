//! Property tests (proptest) for every parser of outside input, each driven
//! through the router or shell that reads it in production: form bodies,
//! the Authorization header, cookies and CSRF tokens, the access tokens
//! that introspection and UserInfo verify, API Gateway events and the
//! revoke function's admin commands.
//!
//! Whatever comes in, the answer is a protocol error or a page, never a
//! 5xx, never a panic, never a token, a session or a redirect that the
//! input did not earn. Each property runs 256 cases by default; set
//! `PROPTEST_CASES` for longer runs (README, "Fuzzing").

mod support;

use support::*;

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use lambda_http::LambdaEvent;
use lambda_http::request::LambdaRequest;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokenfn_core::config::Config;
use tokenfn_core::domain::GrantType;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::http::refresh::RefreshRouter;
use tokenfn_core::http::revoke::RevokeRouter;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::http::{Handler, Request, Response, wire};
use tokenfn_core::lambda;
use tokenfn_core::service::authorize::{BIND_COOKIE, SESSION_COOKIE};

const CB: &str = "https://app.example/cb";
const WEB_SECRET: &str = "web-secret-web-secret-web-secret-0123";
const RS_SECRET: &str = "rs-secret-rs-secret-rs-secret-rs-0123";
const PASSWORD: &str = "correct horse battery";

/// One server for every case: its routers on an in-memory store, and an
/// access token it issued.
struct World {
    rt: tokio::runtime::Runtime,
    authorize: Arc<AuthorizeRouter>,
    token: Arc<TokenRouter>,
    refresh: Arc<RefreshRouter>,
    revoke: Arc<RevokeRouter>,
    access_token: String,
    rig: Rig,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let rig = Rig::new(Config::new(ISSUER));
        let services = rig.services.clone();
        let access_token = rt.block_on(async {
            use GrantType::*;
            let web = vec![AuthorizationCode, RefreshToken, Password];
            add_clients(
                &services,
                CB,
                "openid offline_access api",
                vec![
                    ("web", Some(WEB_SECRET), web),
                    ("pub", None, vec![AuthorizationCode, RefreshToken]),
                    ("rs", Some(RS_SECRET), vec![ClientCredentials]),
                    ("tv", None, vec![DeviceCode]),
                ],
            )
            .await;
            services.add_user("alice", PASSWORD, None).await.unwrap();
            let token = TokenRouter::new(services.clone());
            let req = basic(
                post("/oauth/token", "grant_type=client_credentials", ""),
                "rs",
                RS_SECRET,
            );
            let resp = token.handle(req).await;
            assert_eq!(resp.status(), 200, "{}", body(&resp));
            json(&resp)["access_token"].as_str().unwrap().to_owned()
        });
        World {
            authorize: Arc::new(AuthorizeRouter::new(services.clone())),
            token: Arc::new(TokenRouter::new(services.clone())),
            refresh: Arc::new(RefreshRouter::new(services.clone())),
            revoke: Arc::new(RevokeRouter::new(services)),
            access_token,
            rt,
            rig,
        }
    })
}

impl World {
    fn run<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The router that serves `path` in production.
    fn router(&self, path: &str) -> Arc<dyn Handler> {
        match path {
            "/oauth/refresh" => self.refresh.clone(),
            "/oauth/revoke" => self.revoke.clone(),
            p if p.starts_with("/oauth/") || p == "/userinfo" => self.token.clone(),
            _ => self.authorize.clone(),
        }
    }

    fn send(&self, req: Request) -> Response {
        let router = self.router(req.uri().path());
        self.run(router.handle(req))
    }
}

/// Every `error` a JSON endpoint may answer (RFC 6749 §5.2, RFC 6750 §3.1,
/// RFC 7009 §2.2.1, RFC 8628 §3.5).
const ERROR_CODES: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "unsupported_token_type",
    "invalid_token",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "access_denied",
];

/// A JSON error answer with a known code, or a success.
fn assert_protocol_answer(resp: &Response) -> Result<(), TestCaseError> {
    let status = resp.status().as_u16();
    prop_assert!(status < 500, "{status}: {}", body(resp));
    if status >= 400 {
        let value: Value = serde_json::from_slice(resp.body())
            .map_err(|e| TestCaseError::fail(format!("{status} not JSON: {e}")))?;
        let code = value["error"].as_str().unwrap_or_default();
        prop_assert!(ERROR_CODES.contains(&code), "{status}: {value}");
    }
    Ok(())
}

fn set_cookie_names(resp: &Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        // A cookie cleared (empty value) is not one given.
        .filter(|v| !v.split(';').next().unwrap_or("").ends_with('='))
        .filter_map(|v| v.split('=').next().map(str::to_owned))
        .collect()
}

/// Text from every character class a parser can trip on, short or long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "[a-zA-Z0-9%+=&;:,._~/-]{0,80}",
        any::<String>(),
        "\\PC{0,300}",
    ]
}

fn form_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop_oneof![
        Just("grant_type"),
        Just("code"),
        Just("refresh_token"),
        Just("client_id"),
        Just("client_secret"),
        Just("redirect_uri"),
        Just("code_verifier"),
        Just("scope"),
        Just("username"),
        Just("password"),
        Just("device_code"),
        Just("token"),
        Just("token_type_hint"),
    ]
    .prop_map(str::to_owned);
    let values = prop_oneof![
        Just("authorization_code".to_owned()),
        Just("refresh_token".to_owned()),
        Just("client_credentials".to_owned()),
        Just("password".to_owned()),
        Just("urn:ietf:params:oauth:grant-type:device_code".to_owned()),
        Just("web".to_owned()),
        Just("pub".to_owned()),
        Just("rs".to_owned()),
        Just(WEB_SECRET.to_owned()),
        Just("openid offline_access".to_owned()),
        text(),
    ];
    prop::collection::vec((names.boxed().prop_union(text().boxed()), values), 0..8)
}

fn encode(fields: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

fn protocol_path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("/oauth/token"),
        Just("/oauth/refresh"),
        Just("/oauth/revoke"),
        Just("/oauth/introspect"),
        Just("/oauth/device_authorization"),
    ]
}

proptest! {
    /// Form bodies: what the serializer writes, the parser reads back, and
    /// no byte string makes it fail.
    #[test]
    fn form_bodies_read_back_what_was_written(fields in prop::collection::vec((text(), text()), 0..6), raw in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(wire::pairs(encode(&fields).as_bytes()), fields);
        let _ = wire::pairs(&raw);
    }

    /// Any form, with or without a content type, at every protocol
    /// endpoint: a known error code or a success the form earned.
    #[test]
    fn protocol_endpoints_answer_any_form(path in protocol_path(), fields in form_fields(), raw in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)), form_type in any::<bool>()) {
        let w = world();
        let payload = raw.clone().unwrap_or_else(|| encode(&fields).into_bytes());
        let mut req = http::Request::builder().method("POST").uri(path);
        if form_type {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let resp = w.send(req.body(Bytes::from(payload)).unwrap());
        assert_protocol_answer(&resp)?;
        if resp.status() == 200 && raw.is_none() {
            let body = json(&resp);
            // A code, refresh token or device code cannot be guessed: the
            // only tokens a made-up form earns are the confidential
            // client's own client_credentials (the secret is among the
            // values tried) or a new device code.
            if body.get("access_token").is_some() {
                prop_assert!(fields.iter().any(|(k, v)| k == "grant_type" && v == "client_credentials"), "{body}");
            }
        }
    }

    /// The Authorization header: any value is a 400 or a 401 with a known
    /// code, and Basic credentials (form-encoded, RFC 6749 §2.3.1) read
    /// back as written.
    #[test]
    fn authorization_headers_are_read_or_refused(value in prop_oneof![
        text().prop_map(|t| format!("Basic {t}")),
        prop::collection::vec(any::<u8>(), 0..120).prop_map(|b| format!("Basic {}", STANDARD.encode(b))),
        text().prop_map(|t| format!("Basic {}", STANDARD.encode(t))),
        text().prop_map(|t| format!("Bearer {t}")),
        text(),
    ], id in "\\PC{1,30}", secret in "\\PC{0,40}") {
        let w = world();
        let form = "grant_type=client_credentials";
        let mut req = post("/oauth/token", form, "");
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            req.headers_mut().insert("authorization", v);
            let resp = w.send(req);
            assert_protocol_answer(&resp)?;
            prop_assert!(resp.status() == 400 || resp.status() == 401, "{}", body(&resp));
        }

        let credentials = format!("{}:{}", enc(&id), enc(&secret));
        let mut req = post("/oauth/token", form, "");
        let header = format!("Basic {}", STANDARD.encode(credentials));
        req.headers_mut().insert("authorization", header.parse().unwrap());
        let form = wire::pairs(req.body());
        let auth = wire::client_auth(&req, &form).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((auth.client_id(), auth.secret()), (id.as_str(), Some(secret.as_str())));
    }

    /// Cookies and CSRF tokens: a sign-in with the right password but a
    /// forged or missing CSRF token, interaction or browser binding never
    /// makes a session, whatever the Cookie header says.
    #[test]
    fn sign_in_needs_this_browsers_csrf_token(csrf in prop::option::of(text()), interaction in prop::option::of(text()), bind in prop::option::of(text()), extra_cookie in text(), raw_cookie in prop::collection::vec(any::<u8>(), 0..100)) {
        let w = world();
        let url = format!("/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSMtw-cM&code_challenge_method=S256", enc(CB));
        let page = w.send(get(&url, ""));
        prop_assert_eq!(page.status(), 200);
        let mut jar = String::new();
        absorb_cookies(&page, &mut jar);
        let html = body(&page);
        let real_csrf = hidden(&html, "csrf");
        let real_interaction = hidden(&html, "interaction");
        // At least one of the three is not this browser's own.
        let forged = csrf.as_deref().is_some_and(|c| c != real_csrf)
            || interaction.as_deref().is_some_and(|i| i != real_interaction)
            || bind.as_deref().is_some_and(|b| !jar.contains(&format!("{BIND_COOKIE}={b}")));
        prop_assume!(forged);
        let cookie = match &bind {
            Some(b) => format!("{BIND_COOKIE}={b}; {extra_cookie}"),
            None => format!("{jar}; {extra_cookie}"),
        };
        let form = format!(
            "interaction={}&csrf={}&username=alice&password={}",
            enc(interaction.as_deref().unwrap_or(&real_interaction)),
            enc(csrf.as_deref().unwrap_or(&real_csrf)),
            enc(PASSWORD)
        );
        let mut req = post("/login", &form, "");
        if let Ok(v) = http::HeaderValue::from_str(&cookie) {
            req.headers_mut().insert("cookie", v);
        }
        let resp = w.send(req);
        prop_assert!(resp.status().is_client_error(), "{}: {}", resp.status(), body(&resp));
        prop_assert!(!set_cookie_names(&resp).contains(&SESSION_COOKIE.to_owned()));
        prop_assert!(resp.headers().get("location").is_none());

        // Raw bytes in a Cookie header are read or ignored, never a panic.
        if let Ok(v) = http::HeaderValue::from_bytes(&raw_cookie) {
            let mut req = get("/account/apps", "");
            req.headers_mut().insert("cookie", v);
            let _ = wire::cookies(&req);
            let resp = w.send(req);
            prop_assert!(resp.status().as_u16() < 500);
        }
    }

    /// The authorization endpoint, given any query: a page or a redirect
    /// to the registered URI only (no open redirector), never a code
    /// without a session.
    #[test]
    fn authorization_requests_redirect_only_to_the_registered_uri(fields in prop::collection::vec((prop_oneof![
        Just("response_type"), Just("client_id"), Just("redirect_uri"), Just("scope"), Just("state"),
        Just("nonce"), Just("code_challenge"), Just("code_challenge_method"), Just("prompt"),
        Just("max_age"), Just("response_mode"), Just("request"), Just("request_uri"),
    ].prop_map(str::to_owned), prop_oneof![
        Just("code".to_owned()), Just("web".to_owned()), Just("pub".to_owned()), Just(CB.to_owned()),
        Just(format!("{CB}/..")), Just(format!("{CB}?x=1")), Just("https://evil.example/cb".to_owned()),
        Just("openid offline_access".to_owned()), Just("S256".to_owned()), Just("plain".to_owned()),
        Just("none".to_owned()), Just("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSMtw-cM".to_owned()), text(),
    ]), 0..10)) {
        let w = world();
        let uri = format!("/authorize?{}", encode(&fields));
        let resp = w.send(get(&uri, ""));
        prop_assert!(resp.status().as_u16() < 500, "{}", body(&resp));
        if let Some(location) = resp.headers().get("location") {
            let location = location.to_str().unwrap();
            prop_assert!(location.starts_with(&format!("{CB}?")), "{location}");
            prop_assert!(!location.contains("code="), "{location}");
        }
    }

    /// Access tokens at introspection and UserInfo: any change to one we
    /// issued, any header (alg none, HMAC, unknown kid) and any string is
    /// inactive or refused.
    #[test]
    fn only_our_unchanged_access_tokens_verify(at in 0usize..2000, with in "[A-Za-z0-9_-]", header in (prop_oneof![
        Just("none"), Just("HS256"), Just("ES256"), Just("RS256"), Just("ES384"), Just(""),
    ], prop::option::of("[ -~]{0,20}"), prop::option::of(prop_oneof![Just("at+jwt"), Just("JWT")])), junk in text()) {
        let w = world();
        let good = &w.access_token;
        let mut candidates = Vec::new();

        // One character changed, where it changes the decoded bytes.
        let i = at % good.len();
        if good.as_bytes()[i] != b'.' && good.as_bytes()[i] != with.as_bytes()[0] {
            let changed = format!("{}{with}{}", &good[..i], &good[i + 1..]);
            let decode = |t: &str| -> Vec<Option<Vec<u8>>> {
                t.split('.').map(|s| URL_SAFE_NO_PAD.decode(s).ok()).collect()
            };
            if decode(&changed) != decode(good) {
                candidates.push(changed);
            }
        }
        // Our claims and signature under another header.
        let (alg, kid, typ) = header;
        let mut h = json!({ "alg": alg });
        if let Some(kid) = kid { h["kid"] = kid.into(); }
        if let Some(typ) = typ { h["typ"] = typ.into(); }
        let rest = good.split_once('.').unwrap().1;
        let forged = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h.to_string()));
        if forged != *good {
            candidates.push(forged);
        }
        candidates.push(junk);

        for token in candidates {
            // RFC 7662 §2.1: the token is required.
            if token.is_empty() {
                continue;
            }
            let form = format!("token={}", enc(&token));
            let resp = w.send(basic(post("/oauth/introspect", &form, ""), "rs", RS_SECRET));
            prop_assert_eq!(resp.status(), 200);
            prop_assert_eq!(&json(&resp)["active"], &json!(false), "{}", token);

            if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
                let mut req = get("/userinfo", "");
                req.headers_mut().insert("authorization", v);
                let resp = w.send(req);
                prop_assert!(resp.status() == 401 || resp.status() == 400, "{}", resp.status());
                let challenge = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap_or(""));
                prop_assert!(challenge.is_some_and(|c| c.starts_with("Bearer")), "{challenge:?}");
            }
        }
    }

    /// API Gateway events: any JSON the runtime could hand a function is
    /// refused by the event parser or answered by the router, never a 5xx.
    #[test]
    fn api_gateway_events_are_parsed_or_refused(method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("HEAD"), Just("OPTIONS")].prop_map(str::to_owned).boxed().prop_union("[A-Z]{1,8}".boxed()), path in prop_oneof![
        Just("/oauth/token"), Just("/oauth/refresh"), Just("/oauth/revoke"), Just("/authorize"),
        Just("/login"), Just("/device"), Just("/userinfo"), Just("/.well-known/jwks.json"),
    ].prop_map(str::to_owned).boxed().prop_union("/[ -~]{0,40}".boxed()), query in text(), headers in prop::collection::btree_map("[a-z-]{1,20}", text(), 0..5), payload in prop::option::of(text()), base64 in any::<bool>(), source_ip in text(), junk in json_value()) {
        let w = world();
        let mut event = lambda::api_gateway_event(&method, &path, &query, json!(headers), None);
        event["requestContext"]["http"]["sourceIp"] = json!(source_ip);
        event["isBase64Encoded"] = json!(base64);
        if let Some(b) = payload {
            event["body"] = json!(b);
        }
        for (i, ev) in [event, junk].into_iter().enumerate() {
            // What the runtime does with an invocation's payload, then what
            // every HTTP function does with the event.
            let parsed = serde_json::from_value::<LambdaRequest>(ev.clone());
            // The well-formed one always reads.
            prop_assert!(i == 1 || parsed.is_ok(), "{ev}");
            let Ok(request) = parsed else {
                continue;
            };
            let event = LambdaEvent::new(request, Default::default());
            let answer = w.run(async {
                serde_json::to_value(lambda::answer_event(w.router(&path), event).await).unwrap()
            });
            let status = answer["statusCode"].as_u64().unwrap_or(0);
            prop_assert!((200..500).contains(&status), "{answer}");
            // Mended or refused before lambda_http's conversion, not caught
            // panicking in it.
            prop_assert!(!answer.to_string().contains("not a readable HTTP request"), "{answer}");
        }
    }

    /// The revoke function's admin commands: any payload is refused with a
    /// message or carried out (revoking nothing here: no grant exists).
    #[test]
    fn admin_commands_are_carried_out_or_refused(action in prop_oneof![
        Just("revoke_user"), Just("revoke_client"), Just("revoke_grant"), Just("revoke_consent"),
    ].prop_map(str::to_owned).boxed().prop_union(text().boxed()), fields in prop::collection::btree_map(prop_oneof![
        Just("user_id".to_owned()), Just("client_id".to_owned()), Just("grant_id".to_owned()), "[a-z_]{0,10}",
    ], json_value(), 0..4), junk in json_value()) {
        let w = world();
        let mut command = json!({ "action": action });
        for (k, v) in fields {
            command[k] = v;
        }
        for payload in [command, junk] {
            match w.run(lambda::run_command(&w.rig.services, payload.clone())) {
                Ok(answer) => prop_assert_eq!(answer, json!({ "revoked": 0 }), "{}", payload),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    /// The device flow's user code entry: any code is refused in words.
    #[test]
    fn any_user_code_is_refused_on_the_device_page(code in text()) {
        let w = world();
        let page = w.send(get("/device", ""));
        let mut jar = String::new();
        absorb_cookies(&page, &mut jar);
        let html = body(&page);
        let form = format!("interaction={}&csrf={}&user_code={}", enc(&hidden(&html, "interaction")), enc(&hidden(&html, "csrf")), enc(&code));
        let resp = w.send(from(post("/device", &form, &jar), "192.0.2.1"));
        // The entry form again, with the reason (200; 429 once this address
        // has tried too often).
        prop_assert!(resp.status() == 200 || resp.status() == 429, "{}", resp.status());
        let html = body(&resp);
        prop_assert!(html.contains("role=\"alert\"") && html.contains("name=\"user_code\""), "{html}");
    }
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
