//! Error behaviour: the authorize error page vs. error redirects, and RFC 6749
//! §5.2 errors at the token endpoint.

mod common;

use common::*;
use reqwest::StatusCode;
use url::Url;

fn authorize_url(env: &TestEnv, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&env.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

const CHALLENGE: &str = "E9Melhoe2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; // RFC 7636 appendix B

/// The authorize endpoint must answer with its own error page: HTTP 400,
/// HTML, and no redirect anywhere.
async fn assert_error_page(env: &TestEnv, params: &[(&str, &str)]) {
    let url = authorize_url(env, params);
    let resp = env.browser().http.get(&url).send().await.unwrap();
    let status = resp.status();
    let location = resp.headers().get("location").cloned();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = resp.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{url} must show an error page (400), got {status} (Location {location:?})"
    );
    assert!(location.is_none(), "never a redirect: {location:?}");
    assert!(ct.starts_with("text/html"), "an HTML page, got {ct:?}");
    assert!(!html_text(&body).is_empty(), "the page explains the error");
}

/// The authorize endpoint must redirect to the client with `error`.
async fn assert_error_redirect(env: &TestEnv, params: &[(&str, &str)], error: &str) {
    let url = authorize_url(env, params);
    let callback = env.browser().open(&url, REDIRECT_URI).await.callback();
    let state = params
        .iter()
        .find(|(k, _)| *k == "state")
        .map(|(_, v)| *v)
        .unwrap();
    callback.expect_error(error, state, env.issuer());
}

#[tokio::test]
async fn authorize_shows_an_error_page_when_the_redirect_uri_cannot_be_trusted() {
    let env = TestEnv::start();
    let good = [
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st-123"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = good.to_vec();
        v.extend_from_slice(extra);
        v
    };
    // Unknown client.
    assert_error_page(
        &env,
        &with(&[
            ("client_id", "no-such-client"),
            ("redirect_uri", REDIRECT_URI),
        ]),
    )
    .await;
    // Missing client_id.
    assert_error_page(&env, &with(&[("redirect_uri", REDIRECT_URI)])).await;
    // Unregistered redirect URIs (exact match only).
    for bad in [
        "http://evil.example/callback",
        "http://127.0.0.1:53682/callback/",
        "http://127.0.0.1:53682/callbackx",
        "http://127.0.0.1:53682/callback?x=1",
        "http://127.0.0.1:53683/callback",
    ] {
        assert_error_page(&env, &with(&[("client_id", SPA), ("redirect_uri", bad)])).await;
    }
    // A URI registered for another client.
    assert_error_page(
        &env,
        &with(&[("client_id", SPA), ("redirect_uri", REDIRECT_URI_2)]),
    )
    .await;
    // Missing redirect_uri.
    assert_error_page(&env, &with(&[("client_id", SPA)])).await;
}

#[tokio::test]
async fn public_client_without_pkce_gets_invalid_request() {
    let env = TestEnv::start();
    assert_error_redirect(
        &env,
        &[
            ("response_type", "code"),
            ("client_id", SPA),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid"),
            ("state", "st-nopkce"),
        ],
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn plain_pkce_is_refused() {
    let env = TestEnv::start();
    for client in [SPA, WEB] {
        assert_error_redirect(
            &env,
            &[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid"),
                ("state", "st-plain"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test]
async fn unsupported_or_missing_response_type() {
    let env = TestEnv::start();
    let base = [
        ("client_id", SPA),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "openid"),
        ("state", "st-rt"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let mut token = base.to_vec();
    token.push(("response_type", "token"));
    assert_error_redirect(&env, &token, "unsupported_response_type").await;
    assert_error_redirect(&env, &base, "invalid_request").await;
}

#[tokio::test]
async fn unknown_scope_at_authorize_is_invalid_scope() {
    let env = TestEnv::start();
    assert_error_redirect(
        &env,
        &[
            ("response_type", "code"),
            ("client_id", SPA),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid superuser"),
            ("state", "st-scope"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
        "invalid_scope",
    )
    .await;
}

/// A fresh code for `client` (logged in as alice, consent allowed).
async fn fresh_code(env: &TestEnv, oidc: &Oidc) -> (AuthRequest, String) {
    let req = AuthRequest::new(oidc, &["offline_access"]);
    let flow = env
        .browser()
        .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    let code = flow.callback.expect_code(&req, env.issuer());
    (req, code.secret().clone())
}

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn raw_code_exchange_succeeds_with_no_store() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (req, code) = fresh_code(&env, &oidc).await;
    let verifier = req.verifier.secret().clone();
    // client_secret_post by hand.
    let mut form = code_form(&code, &verifier);
    form.push(("client_id", WEB));
    form.push(("client_secret", WEB_SECRET));
    let r = env.post_form("/oauth/token", &form, None).await;
    r.assert_tokens();
    assert!(
        r.body["expires_in"].as_i64().is_some_and(|e| e > 0),
        "{}",
        r.text
    );
    assert!(r.body["id_token"].as_str().is_some(), "{}", r.text);
    assert!(r.body["refresh_token"].as_str().is_some(), "{}", r.text);
    assert_eq!(
        scope_set(&r.body["scope"]),
        set_of(&["openid", "offline_access"])
    );
}

#[tokio::test]
async fn code_exchange_errors_are_invalid_grant() {
    let env = TestEnv::start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;

    // Wrong PKCE verifier.
    let (_, code) = fresh_code(&env, &web).await;
    let wrong = "wrong-verifier-wrong-verifier-wrong-verifier-0123";
    let r = env
        .post_form(
            "/oauth/token",
            &code_form(&code, wrong),
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_grant");

    // Wrong redirect_uri (registered for the client, but not the one used).
    let (req, code) = fresh_code(&env, &web).await;
    let verifier = req.verifier.secret().clone();
    let mut form = code_form(&code, &verifier);
    form[2] = ("redirect_uri", REDIRECT_URI_2);
    let r = env
        .post_form("/oauth/token", &form, Some((WEB, WEB_SECRET)))
        .await;
    r.assert_error(400, "invalid_grant");

    // Another client's code.
    let (req, code) = fresh_code(&env, &web).await;
    let verifier = req.verifier.secret().clone();
    let r = env
        .post_form(
            "/oauth/token",
            &code_form(&code, &verifier),
            Some((OTHER, OTHER_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_grant");

    // A code that was never issued.
    let r = env
        .post_form(
            "/oauth/token",
            &code_form("made-up-code-0123456789", &verifier),
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn code_exchange_without_the_verifier_fails() {
    let env = TestEnv::start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, code) = fresh_code(&env, &web).await;
    let r = env
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    let error = r.body["error"].as_str().unwrap_or("");
    assert!(
        r.status == 400 && (error == "invalid_grant" || error == "invalid_request"),
        "a PKCE code without code_verifier is refused (400 invalid_grant/invalid_request), got HTTP {}: {}",
        r.status,
        r.text
    );
    r.assert_error(400, error);
}

#[tokio::test]
async fn client_authentication_failures_are_invalid_client_401() {
    let env = TestEnv::start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (req, code) = fresh_code(&env, &web).await;
    let verifier = req.verifier.secret().clone();
    let form = code_form(&code, &verifier);

    // Basic with the wrong secret: 401 with WWW-Authenticate.
    let r = env
        .post_form(
            "/oauth/token",
            &form,
            Some((WEB, "wrong-secret-wrong-secret-wrong-secret")),
        )
        .await;
    r.assert_error(401, "invalid_client");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.to_ascii_lowercase().starts_with("basic"),
        "WWW-Authenticate: Basic ... after failed Basic auth, got {challenge:?}"
    );

    // Basic for an unknown client.
    let r = env
        .post_form(
            "/oauth/token",
            &form,
            Some(("no-such-client", "whatever-secret-whatever-secret")),
        )
        .await;
    r.assert_error(401, "invalid_client");

    // client_secret_post with the wrong secret.
    let mut post = form.clone();
    post.push(("client_id", WEB));
    post.push(("client_secret", "wrong-secret-wrong-secret-wrong-secret"));
    let r = env.post_form("/oauth/token", &post, None).await;
    r.assert_error(401, "invalid_client");

    // A confidential client that does not authenticate at all.
    let mut none = form.clone();
    none.push(("client_id", WEB));
    let r = env.post_form("/oauth/token", &none, None).await;
    r.assert_error(401, "invalid_client");

    // No client at all.
    let r = env.post_form("/oauth/token", &form, None).await;
    r.assert_error(401, "invalid_client");

    // None of that burned the code: the right client still redeems it.
    let r = env
        .post_form("/oauth/token", &form, Some((WEB, WEB_SECRET)))
        .await;
    r.assert_tokens();
}

#[tokio::test]
async fn unsupported_and_missing_grant_type() {
    let env = TestEnv::start();
    let r = env
        .post_form(
            "/oauth/token",
            &[("grant_type", "urn:example:no-such-grant")],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "unsupported_grant_type");

    let r = env
        .post_form("/oauth/token", &[("code", "x")], Some((WEB, WEB_SECRET)))
        .await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn missing_parameters_are_invalid_request() {
    let env = TestEnv::start();
    // authorization_code without a code.
    let r = env
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("redirect_uri", REDIRECT_URI),
                (
                    "code_verifier",
                    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                ),
            ],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_request");
    // refresh_token without a refresh token, on both routes.
    let r = env
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token")],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_request");
    let r = env
        .post_form("/oauth/refresh", &[], Some((WEB, WEB_SECRET)))
        .await;
    r.assert_error(400, "invalid_request");
    // client_credentials without scope is fine for a machine client, so no
    // check here; a garbage refresh token is invalid_grant:
    let r = env
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "garbage"),
            ],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_grant");
}

/// Malformed requests get a 4xx, never a 5xx (and never a success).
#[tokio::test]
async fn malformed_requests_are_client_errors() {
    let env = TestEnv::start();
    let http = &env.http;
    let form_ct = "application/x-www-form-urlencoded";
    let long_code = "A".repeat(100_000);
    let long_body = format!("grant_type=authorization_code&code={long_code}");

    // Token endpoint: JSON error bodies with no-store.
    let token_cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "bad percent-encoding",
            http.post(env.url("/oauth/token"))
                .header("content-type", form_ct)
                .basic_auth(WEB, Some(WEB_SECRET))
                .body("grant_type=%zz%%&code=%ff%fe"),
        ),
        (
            "JSON body",
            http.post(env.url("/oauth/token"))
                .basic_auth(WEB, Some(WEB_SECRET))
                .json(&serde_json::json!({"grant_type": "client_credentials"})),
        ),
        (
            "Basic header that is not base64",
            http.post(env.url("/oauth/token"))
                .header("authorization", "Basic !!!not-base64!!!")
                .header("content-type", form_ct)
                .body("grant_type=client_credentials"),
        ),
        (
            "duplicated grant_type",
            http.post(env.url("/oauth/token"))
                .header("content-type", form_ct)
                .basic_auth(SVC, Some(SVC_SECRET))
                .body("grant_type=client_credentials&grant_type=refresh_token"),
        ),
        (
            "100 KB code",
            http.post(env.url("/oauth/token"))
                .header("content-type", form_ct)
                .basic_auth(WEB, Some(WEB_SECRET))
                .body(long_body.clone()),
        ),
        (
            "empty body",
            http.post(env.url("/oauth/token"))
                .header("content-type", form_ct)
                .basic_auth(WEB, Some(WEB_SECRET)),
        ),
        (
            "revoke with a JSON body",
            http.post(env.url("/oauth/revoke"))
                .basic_auth(WEB, Some(WEB_SECRET))
                .json(&serde_json::json!({"token": "whatever"})),
        ),
    ];
    for (what, req) in token_cases {
        let r = JsonResponse::read(req.send().await.expect("send")).await;
        assert!(
            r.status.is_client_error(),
            "{what}: expected 4xx, got HTTP {}: {}",
            r.status,
            r.text
        );
        assert!(
            r.body["error"].as_str().is_some(),
            "{what}: JSON error body, got {}",
            r.text
        );
        r.assert_no_store();
    }

    // Browser-facing endpoints.
    let page_cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("GET /oauth/token", http.get(env.url("/oauth/token"))),
        (
            "authorize without parameters",
            http.get(env.url("/authorize")),
        ),
        (
            "authorize with invalid UTF-8",
            http.get(env.url("/authorize?client_id=%ff%fe&redirect_uri=%c3%28")),
        ),
        (
            "login POST with empty body",
            http.post(env.url("/login")).header("content-type", form_ct),
        ),
        (
            "consent POST with empty body",
            http.post(env.url("/consent"))
                .header("content-type", form_ct),
        ),
        (
            "login POST with an unknown interaction",
            http.post(env.url("/login")).form(&[
                ("interaction", "nope"),
                ("csrf", "nope"),
                ("username", USER),
                ("password", PASSWORD),
            ]),
        ),
    ];
    for (what, req) in page_cases {
        let resp = req.send().await.expect("send");
        let status = resp.status();
        assert!(
            status.is_client_error(),
            "{what}: expected 4xx, got {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
}

/// `serve`'s demo callback page answers GET only, like every route of the
/// routers: any other method gets 405 with `Allow` (found by schemathesis,
/// which sent TRACE and got the page).
#[tokio::test]
async fn demo_callback_refuses_other_methods_with_405() {
    let env = TestEnv::start();
    let page = env
        .http
        .get(env.url("/demo/callback?error=access_denied"))
        .send()
        .await
        .expect("send");
    assert_eq!(page.status(), StatusCode::OK);
    for method in ["POST", "PUT", "DELETE", "TRACE", "PATCH"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = env
            .http
            .request(method.clone(), env.url("/demo/callback"))
            .send()
            .await
            .expect("send");
        let allow = r.headers().get("allow").cloned();
        let r = JsonResponse::read(r).await;
        r.assert_error(405, "invalid_request");
        assert_eq!(
            allow.as_ref().map(|v| v.to_str().unwrap()),
            Some("GET"),
            "{method}"
        );
    }
    // Next to it, a path nobody serves is still 404.
    let r = JsonResponse::read(
        env.http
            .get(env.url("/demo/callbacks"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    r.assert_error(404, "invalid_request");
}
