//! The authorization code flow as an app and a browser see it: login and
//! consent pages, PKCE, ID token and access token verification, SSO, prompt
//! and max_age.

mod common;

use std::time::Duration;

use common::*;
use openidconnect::core::CoreAuthPrompt;
use openidconnect::{AuthType, OAuth2TokenResponse, TokenResponse};
use reqwest::StatusCode;

/// Checks the access token of `resp` (JWT verified with jsonwebtoken against
/// the JWKS) against the ID token claims and the token response.
async fn check_access_token(
    env: &TestEnv,
    resp: &openidconnect::core::CoreTokenResponse,
    client_id: &str,
    sub: &str,
) -> serde_json::Value {
    let (header, claims) = env.verify_access_token(resp.access_token().secret()).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(claims["iss"], env.issuer());
    assert_eq!(claims["sub"], sub, "access token sub = ID token sub");
    assert_eq!(claims["client_id"], client_id);
    assert!(
        !audiences(&claims).is_empty(),
        "access token has an aud: {claims}"
    );
    assert_eq!(
        scope_set(&claims["scope"]),
        granted_scopes(resp),
        "access token scope = granted scope"
    );
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "jti: {claims}"
    );
    assert!(
        claims["grant_id"].as_str().is_some_and(|g| !g.is_empty()),
        "grant_id: {claims}"
    );
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!((iat - now_secs()).abs() <= 60, "iat is now: {iat}");
    let expires_in = resp.expires_in().expect("expires_in").as_secs() as i64;
    assert!(expires_in > 0);
    assert!(
        (exp - iat - expires_in).abs() <= 2,
        "exp - iat ({}) = expires_in ({expires_in})",
        exp - iat
    );
    claims
}

#[tokio::test]
async fn public_client_code_flow_with_pkce() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &["profile", "email"]);

    let flow = browser
        .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    assert!(
        flow.login_page.is_some(),
        "a new browser is asked to log in"
    );
    assert!(
        flow.consent_page.is_some(),
        "a first authorization asks for consent"
    );
    assert!(
        matches!(
            flow.callback.status,
            StatusCode::FOUND | StatusCode::SEE_OTHER
        ),
        "redirect back with 302/303, got {}",
        flow.callback.status
    );
    let code = flow.callback.expect_code(&req, env.issuer());

    // auth method `none`: openidconnect sends client_id in the body, no secret.
    let resp = exchange(&oidc, &env.http, code, &req).await;
    assert_eq!(
        resp.token_type().as_ref().to_ascii_lowercase(),
        "bearer",
        "token_type"
    );
    assert_eq!(
        granted_scopes(&resp),
        set_of(&["openid", "profile", "email"])
    );
    assert!(
        resp.refresh_token().is_none(),
        "no refresh token without offline_access"
    );

    let claims = verify_id_token(&oidc, &resp, &req.nonce);
    assert_eq!(claims.issuer().as_str(), env.issuer());
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        [SPA]
    );
    assert!(!claims.subject().as_str().is_empty());
    check_access_token(&env, &resp, SPA, claims.subject().as_str()).await;
}

#[tokio::test]
async fn confidential_client_with_client_secret_basic() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await; // AuthType::BasicAuth by default
    let (req, resp) = env.tokens(&oidc, &["profile", "offline_access"]).await;
    assert_eq!(
        granted_scopes(&resp),
        set_of(&["openid", "profile", "offline_access"])
    );
    assert!(
        resp.refresh_token().is_some(),
        "offline_access + refresh_token grant gives a refresh token"
    );
    let claims = verify_id_token(&oidc, &resp, &req.nonce);
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        [WEB]
    );
    check_access_token(&env, &resp, WEB, claims.subject().as_str()).await;
}

#[tokio::test]
async fn confidential_client_with_client_secret_post() {
    let env = TestEnv::start();
    let oidc = env
        .oidc(WEB, Some(WEB_SECRET))
        .await
        .set_auth_type(AuthType::RequestBody);
    let (req, resp) = env.tokens(&oidc, &["email"]).await;
    assert_eq!(granted_scopes(&resp), set_of(&["openid", "email"]));
    let claims = verify_id_token(&oidc, &resp, &req.nonce);
    check_access_token(&env, &resp, WEB, claims.subject().as_str()).await;
}

#[tokio::test]
async fn second_registered_redirect_uri_works() {
    let env = TestEnv::start();
    let oidc = env
        .oidc_with_redirect(WEB, Some(WEB_SECRET), REDIRECT_URI_2)
        .await;
    let req = AuthRequest::new(&oidc, &[]);
    let flow = env
        .browser()
        .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI_2)
        .await;
    let code = flow.callback.expect_code(&req, env.issuer());
    let resp = exchange(&oidc, &env.http, code, &req).await;
    verify_id_token(&oidc, &resp, &req.nonce);
}

#[tokio::test]
async fn different_users_get_different_subjects_and_the_same_user_the_same() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let (r1, a1) = env.sign_in(&oidc, (USER, PASSWORD), &[]).await;
    let (r2, a2) = env.sign_in(&oidc, (USER, PASSWORD), &[]).await;
    let (r3, b) = env.sign_in(&oidc, (USER2, PASSWORD2), &[]).await;
    let s1 = verify_id_token(&oidc, &a1, &r1.nonce).subject().clone();
    let s2 = verify_id_token(&oidc, &a2, &r2.nonce).subject().clone();
    let s3 = verify_id_token(&oidc, &b, &r3.nonce).subject().clone();
    assert_eq!(s1, s2);
    assert_ne!(s1, s3);
    assert_ne!(
        a1.access_token().secret(),
        a2.access_token().secret(),
        "every exchange mints a new access token"
    );
}

#[tokio::test]
async fn login_page_is_a_form_with_csrf_and_sets_the_binding_cookie() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &[]);
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.content_type().starts_with("text/html"),
        "{}",
        page.content_type()
    );
    let form = page
        .login_form()
        .unwrap_or_else(|| panic!("login form with action=/login:\n{}", page.body));
    assert_eq!(form.method, "post");
    for hidden in ["interaction", "csrf"] {
        assert!(
            form.hidden_value(hidden).is_some_and(|v| !v.is_empty()),
            "hidden input {hidden}: {form:?}"
        );
    }
    assert!(form.has_input("username"), "{form:?}");
    assert_eq!(form.input_type("password"), Some("password"), "{form:?}");
    assert!(
        browser.has_cookie(&env.url("/"), "tfn_bind"),
        "the login page binds the browser with a tfn_bind cookie: {}",
        browser.cookies_for(&env.url("/"))
    );
    assert!(!browser.has_cookie(&env.url("/"), "tfn_session"));

    // Log in by hand to look at the session cookie's attributes.
    let mut body = form.hidden();
    body.push(("username".into(), USER.into()));
    body.push(("password".into(), PASSWORD.into()));
    let resp = browser
        .http
        .post(page.url.join(&form.action).unwrap())
        .form(&body)
        .send()
        .await
        .unwrap();
    let set_cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set_cookies
        .iter()
        .find(|c| c.starts_with("tfn_session="))
        .unwrap_or_else(|| {
            panic!(
                "a successful login sets tfn_session (HTTP {}, Set-Cookie {set_cookies:?})",
                resp.status()
            )
        });
    assert!(
        session.to_ascii_lowercase().contains("httponly"),
        "the session cookie is HttpOnly: {session}"
    );
}

#[tokio::test]
async fn wrong_username_and_wrong_password_look_the_same() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &[]);
    let fresh = browser.open(&req.url, REDIRECT_URI).await.page();

    let unknown = browser
        .login(&fresh, ("mallory", "whatever-password"), REDIRECT_URI)
        .await
        .page();
    let wrong_pw = browser
        .login(&unknown, (USER, "not-alices-password"), REDIRECT_URI)
        .await
        .page();

    for page in [&unknown, &wrong_pw] {
        assert_eq!(
            page.status,
            StatusCode::OK,
            "failed login re-shows the page"
        );
        assert!(
            page.login_form().is_some(),
            "with a login form:\n{}",
            page.body
        );
        let lower = page.text().to_ascii_lowercase();
        for leak in [
            "no such user",
            "unknown user",
            "user not found",
            "does not exist",
            "wrong password",
            "incorrect password",
            "invalid password",
        ] {
            assert!(
                !lower.contains(leak),
                "the message must not say {leak:?}: {lower}"
            );
        }
    }
    assert_eq!(
        unknown.text(),
        wrong_pw.text(),
        "unknown user and wrong password show the same text"
    );
    // Byte for byte, once the per-request tokens and the typed username are
    // blanked out.
    let normalize = |page: &Page, username: &str| {
        let mut body = page.body.clone();
        for form in page.forms() {
            for (_, value) in form.hidden() {
                if !value.is_empty() {
                    body = body.replace(&value, "<token>");
                }
            }
        }
        body.replace(username, "<username>")
    };
    assert_eq!(
        normalize(&unknown, "mallory"),
        normalize(&wrong_pw, USER),
        "the two failure pages differ in more than the typed username"
    );
    assert_ne!(
        unknown.text(),
        fresh.text(),
        "a failed login shows an error message"
    );
    assert!(!browser.has_cookie(&env.url("/"), "tfn_session"));

    // The page after a failure still works.
    let after = browser
        .login(&wrong_pw, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    assert!(
        after.consent_form().is_some(),
        "consent after a good login:\n{}",
        after.body
    );
}

#[tokio::test]
async fn login_with_bad_or_missing_csrf_is_refused() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &[]);
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    let form = page.login_form().expect("login form");
    let interaction = form.hidden_value("interaction").expect("interaction");
    let url = page.url.join(&form.action).unwrap();

    for body in [
        vec![
            ("interaction", interaction.as_str()),
            ("csrf", "forged-csrf-value"),
            ("username", USER),
            ("password", PASSWORD),
        ],
        vec![
            ("interaction", interaction.as_str()),
            ("username", USER),
            ("password", PASSWORD),
        ],
    ] {
        let resp = browser
            .http
            .post(url.clone())
            .form(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "a login POST without the right csrf is refused with 4xx, got {}",
            resp.status()
        );
        assert!(
            !browser.has_cookie(&env.url("/"), "tfn_session"),
            "no session created"
        );
    }
    // Still not logged in: authorize shows the login page again.
    let again = browser.open(&req.url, REDIRECT_URI).await.page();
    assert!(
        again.login_form().is_some(),
        "still the login page:\n{}",
        again.body
    );
}

#[tokio::test]
async fn login_from_another_browser_without_the_cookie_is_refused() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let victim = env.browser();
    let req = AuthRequest::new(&oidc, &[]);
    let page = victim.open(&req.url, REDIRECT_URI).await.page();
    let form = page.login_form().expect("login form");

    let attacker = env.browser();
    let mut body = form.hidden();
    body.push(("username".into(), USER.into()));
    body.push(("password".into(), PASSWORD.into()));
    let resp = attacker
        .http
        .post(page.url.join(&form.action).unwrap())
        .form(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    assert!(
        status.is_client_error(),
        "a login POST without the browser's tfn_bind cookie is refused with 4xx, got {status} (Location {location:?})"
    );
    assert!(!attacker.has_cookie(&env.url("/"), "tfn_session"));
}

#[tokio::test]
async fn consent_page_lists_scopes_in_plain_words() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &["profile", "email", "offline_access"]);
    let login = browser.open(&req.url, REDIRECT_URI).await.page();
    let consent = browser
        .login(&login, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    assert_eq!(consent.status, StatusCode::OK);
    let form = consent
        .consent_form()
        .unwrap_or_else(|| panic!("consent form with action=/consent:\n{}", consent.body));
    assert_eq!(form.method, "post");
    for hidden in ["interaction", "csrf"] {
        assert!(
            form.hidden_value(hidden).is_some_and(|v| !v.is_empty()),
            "hidden input {hidden}: {form:?}"
        );
    }
    for decision in ["allow", "deny"] {
        assert!(
            form.buttons
                .iter()
                .any(|(n, v)| n == "decision" && v == decision),
            "button decision={decision}: {:?}",
            form.buttons
        );
    }
    let text = consent.text().to_ascii_lowercase();
    assert!(
        text.contains("signed in"),
        "offline_access in plain words (e.g. \"Stay signed in\"): {text}"
    );
    assert!(text.contains("email"), "email scope described: {text}");
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &["profile"]);
    let login = browser.open(&req.url, REDIRECT_URI).await.page();
    let consent = browser
        .login(&login, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    let callback = browser
        .decide(&consent, "deny", REDIRECT_URI)
        .await
        .callback();
    callback.expect_error("access_denied", req.state.secret(), env.issuer());
}

#[tokio::test]
async fn consent_is_remembered_and_sso_skips_both_pages() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();

    let first = AuthRequest::new(&oidc, &["profile"]);
    let flow = browser
        .authorize(&first.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    assert!(flow.login_page.is_some() && flow.consent_page.is_some());
    let code = flow.callback.expect_code(&first, env.issuer());
    let t1 = exchange(&oidc, &env.http, code, &first).await;
    let c1 = verify_id_token(&oidc, &t1, &first.nonce);
    assert!(
        browser.has_cookie(&env.url("/"), "tfn_session"),
        "login leaves a tfn_session cookie"
    );

    // Same scopes, same browser: straight back with a code.
    let second = AuthRequest::new(&oidc, &["profile"]);
    let callback = browser.open(&second.url, REDIRECT_URI).await.callback();
    let code = callback.expect_code(&second, env.issuer());
    let t2 = exchange(&oidc, &env.http, code, &second).await;
    let c2 = verify_id_token(&oidc, &t2, &second.nonce);
    assert_eq!(c1.subject(), c2.subject());
    assert_eq!(
        c1.auth_time(),
        c2.auth_time(),
        "SSO keeps the original auth_time"
    );

    // A subset of consented scopes also needs no consent.
    let subset = AuthRequest::new(&oidc, &[]);
    let callback = browser.open(&subset.url, REDIRECT_URI).await.callback();
    callback.expect_code(&subset, env.issuer());

    // A new scope asks for consent again, but not for the password.
    let third = AuthRequest::new(&oidc, &["profile", "email"]);
    let page = browser.open(&third.url, REDIRECT_URI).await.page();
    assert!(
        page.consent_form().is_some(),
        "new scope -> consent page, got:\n{}",
        page.body
    );
}

#[tokio::test]
async fn offline_access_always_asks_for_consent() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let browser = env.browser();
    let first = AuthRequest::new(&oidc, &["offline_access"]);
    let flow = browser
        .authorize(&first.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    assert!(flow.consent_page.is_some());
    flow.callback.expect_code(&first, env.issuer());

    let second = AuthRequest::new(&oidc, &["offline_access"]);
    let page = browser.open(&second.url, REDIRECT_URI).await.page();
    assert!(
        page.consent_form().is_some(),
        "offline_access shows the consent page every time, got:\n{}",
        page.body
    );
    assert!(page.login_form().is_none(), "but the session is live");
    let callback = browser
        .decide(&page, "allow", REDIRECT_URI)
        .await
        .callback();
    let code = callback.expect_code(&second, env.issuer());
    let resp = exchange(&oidc, &env.http, code, &second).await;
    assert!(resp.refresh_token().is_some());
}

#[tokio::test]
async fn prompt_none_without_session_is_login_required() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let req = AuthRequest::with(
        &oidc,
        &[],
        AuthOptions {
            prompt: Some(CoreAuthPrompt::None),
            ..Default::default()
        },
    );
    let callback = env.browser().open(&req.url, REDIRECT_URI).await.callback();
    callback.expect_error("login_required", req.state.secret(), env.issuer());
}

#[tokio::test]
async fn prompt_none_with_session() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let browser = env.browser();
    let first = AuthRequest::new(&oidc, &["profile"]);
    browser
        .authorize(&first.url, (USER, PASSWORD), REDIRECT_URI)
        .await
        .callback
        .expect_code(&first, env.issuer());

    let none = |scopes: &[&str]| {
        AuthRequest::with(
            &oidc,
            scopes,
            AuthOptions {
                prompt: Some(CoreAuthPrompt::None),
                ..Default::default()
            },
        )
    };
    // Consented scopes: a code without any page.
    let silent = none(&["profile"]);
    let callback = browser.open(&silent.url, REDIRECT_URI).await.callback();
    let code = callback.expect_code(&silent, env.issuer());
    exchange(&oidc, &env.http, code, &silent).await;

    // Consent would be needed: consent_required (OIDC Core 3.1.2.6).
    let needs_consent = none(&["offline_access"]);
    let callback = browser
        .open(&needs_consent.url, REDIRECT_URI)
        .await
        .callback();
    callback.expect_error(
        "consent_required",
        needs_consent.state.secret(),
        env.issuer(),
    );
}

#[tokio::test]
async fn prompt_login_forces_the_login_page() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let first = AuthRequest::new(&oidc, &[]);
    browser
        .authorize(&first.url, (USER, PASSWORD), REDIRECT_URI)
        .await
        .callback
        .expect_code(&first, env.issuer());

    let req = AuthRequest::with(
        &oidc,
        &[],
        AuthOptions {
            prompt: Some(CoreAuthPrompt::Login),
            ..Default::default()
        },
    );
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    assert!(
        page.login_form().is_some(),
        "prompt=login shows the login page despite the session:\n{}",
        page.body
    );
    let callback = browser
        .login(&page, (USER, PASSWORD), REDIRECT_URI)
        .await
        .callback();
    let code = callback.expect_code(&req, env.issuer());
    exchange(&oidc, &env.http, code, &req).await;
}

#[tokio::test]
async fn prompt_consent_forces_the_consent_page() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let first = AuthRequest::new(&oidc, &["profile"]);
    browser
        .authorize(&first.url, (USER, PASSWORD), REDIRECT_URI)
        .await
        .callback
        .expect_code(&first, env.issuer());

    let req = AuthRequest::with(
        &oidc,
        &["profile"],
        AuthOptions {
            prompt: Some(CoreAuthPrompt::Consent),
            ..Default::default()
        },
    );
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    assert!(
        page.consent_form().is_some(),
        "prompt=consent shows the consent page despite remembered consent:\n{}",
        page.body
    );
}

#[tokio::test]
async fn max_age_exceeded_forces_a_new_login_and_auth_time_is_reported() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let before = now_secs();
    let first = AuthRequest::new(&oidc, &[]);
    let code = browser
        .authorize(&first.url, (USER, PASSWORD), REDIRECT_URI)
        .await
        .callback
        .expect_code(&first, env.issuer());
    exchange(&oidc, &env.http, code, &first).await;

    let with_max_age = |secs| {
        AuthRequest::with(
            &oidc,
            &[],
            AuthOptions {
                max_age: Some(Duration::from_secs(secs)),
                ..Default::default()
            },
        )
    };
    // Within max_age: SSO, and the ID token must carry auth_time.
    let fresh = with_max_age(600);
    let code = browser
        .open(&fresh.url, REDIRECT_URI)
        .await
        .callback()
        .expect_code(&fresh, env.issuer());
    let resp = exchange(&oidc, &env.http, code, &fresh).await;
    let claims = verify_id_token(&oidc, &resp, &fresh.nonce);
    let auth_time = claims
        .auth_time()
        .expect("max_age requires auth_time in the ID token")
        .timestamp();
    assert!(
        auth_time >= before - 1 && auth_time <= now_secs() + 1,
        "auth_time {auth_time} is the login time"
    );

    // Past max_age: log in again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = with_max_age(1);
    let page = browser.open(&stale.url, REDIRECT_URI).await.page();
    assert!(
        page.login_form().is_some(),
        "login older than max_age -> login page:\n{}",
        page.body
    );
    let code = browser
        .login(&page, (USER, PASSWORD), REDIRECT_URI)
        .await
        .callback()
        .expect_code(&stale, env.issuer());
    let resp = exchange(&oidc, &env.http, code, &stale).await;
    let claims = verify_id_token(&oidc, &resp, &stale.nonce);
    assert!(
        claims.auth_time().expect("auth_time").timestamp() > auth_time,
        "auth_time moves with the new login"
    );
}

#[tokio::test]
async fn refresh_token_only_with_offline_access() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, resp) = env.tokens(&oidc, &["profile"]).await;
    assert!(resp.refresh_token().is_none());
    assert!(resp.id_token().is_some());
}

#[tokio::test]
async fn no_refresh_token_for_a_client_without_the_refresh_grant() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("coderonly", WEB_SECRET).grant_types("authorization_code")
    ]);
    let oidc = env.oidc("coderonly", Some(WEB_SECRET)).await;
    let (req, resp) = env.tokens(&oidc, &["offline_access"]).await;
    assert!(
        resp.refresh_token().is_none(),
        "a client without the refresh_token grant never gets a refresh token"
    );
    // Nor is offline_access granted (RFC 6749 §3.3: the response says so).
    let granted: Vec<String> = resp
        .scopes()
        .expect("the token response names the scopes granted")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        !granted.iter().any(|s| s == "offline_access"),
        "{granted:?}"
    );
    verify_id_token(&oidc, &resp, &req.nonce);
}

#[tokio::test]
async fn consent_post_with_forged_csrf_or_from_another_browser_is_refused() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let browser = env.browser();
    let req = AuthRequest::new(&oidc, &["profile"]);
    let login = browser.open(&req.url, REDIRECT_URI).await.page();
    let consent = browser
        .login(&login, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    let form = consent.consent_form().expect("consent form");
    let url = consent.url.join(&form.action).unwrap();
    let interaction = form.hidden_value("interaction").unwrap();

    let check = |resp: &reqwest::Response, what: &str| {
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            resp.status().is_client_error(),
            "{what}: refused with 4xx, got {} (Location {location:?})",
            resp.status()
        );
        assert!(!location.contains("code="), "{what}: no code issued");
    };

    let forged = browser
        .http
        .post(url.clone())
        .form(&[
            ("interaction", interaction.as_str()),
            ("csrf", "forged-csrf-value"),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    check(&forged, "forged csrf");

    let mut body = form.hidden();
    body.push(("decision".into(), "allow".into()));
    let stranger = env
        .browser()
        .http
        .post(url.clone())
        .form(&body)
        .send()
        .await
        .unwrap();
    check(&stranger, "another browser");
}
