//! Two-step sign-in: a user enrolled in TOTP gives a code after the
//! password; the code works once; `amr` says what was used (RFC 8176); a
//! client requiring MFA steps a password-only session up, or explains.

mod common;
mod support;

use common::*;
use openidconnect::OAuth2TokenResponse;
use support::*;

const SECURE: &str = "secure";
const SECURE_SECRET: &str = "secure-secret-0123456789abcdefghijklmnopqrstu";

fn amr_of(claims: &openidconnect::core::CoreIdTokenClaims) -> Vec<String> {
    claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.as_str().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn sign_in_with_a_totp_code_once() {
    let env = TestEnv::start();
    let mut app = enroll(&env, USER).await;
    let oidc = env.oidc(SPA, None).await;

    // Password, then the TOTP form; a wrong code gets the plain message.
    let browser = Browser::new();
    let req = AuthRequest::new(&oidc, &["offline_access"]);
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    let page = browser
        .login(&page, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    let form = otp_form(&page).expect("a TOTP form with an input named otp");
    assert!(form.hidden_value("csrf").is_some(), "CSRF-protected");
    assert!(
        !browser.has_cookie(&env.url("/"), "tfn_session"),
        "no session before the second factor"
    );
    let wrong = browser
        .submit(&page, &form, &[("otp", "000000")], REDIRECT_URI)
        .await
        .page();
    let message = "That code is not right";
    assert!(wrong.text().contains(message), "{}", wrong.text());
    let code = app.next_code().await;
    let form = otp_form(&wrong).expect("the TOTP form again");
    let step = browser
        .submit(&wrong, &form, &[("otp", &code)], REDIRECT_URI)
        .await;
    let page = step.page();
    let callback = browser
        .decide(&page, "allow", REDIRECT_URI)
        .await
        .callback();
    let code = callback.expect_code(&req, env.issuer());
    let tokens = exchange(&oidc, &env.http, code, &req).await;
    let claims = verify_id_token(&oidc, &tokens, &req.nonce);
    assert_eq!(amr_of(&claims), vec!["pwd", "otp", "mfa"]);
    // The grant remembers it: a refreshed ID token says the same.
    let refreshed = env
        .raw_refresh(SPA, None, tokens.refresh_token().unwrap().secret())
        .await;
    refreshed.assert_tokens();
    let jwks = env.jwks().await;
    let (_, id) = verify_jwt(&jwks, &refreshed.str("id_token"), env.issuer(), None);
    assert_eq!(id["amr"], serde_json::json!(["pwd", "otp", "mfa"]));

    // The same code in another browser reads exactly like a wrong one.
    let other = Browser::new();
    let req = AuthRequest::new(&oidc, &[]);
    let page = other.open(&req.url, REDIRECT_URI).await.page();
    let page = other
        .login(&page, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    let form = otp_form(&page).unwrap();
    let replay = other
        .submit(&page, &form, &[("otp", &app.last_code())], REDIRECT_URI)
        .await
        .page();
    assert!(replay.text().contains(message), "{}", replay.text());
    // Four more wrong codes end the interaction: the user starts again.
    let mut page = replay;
    for i in 0..4 {
        let form = otp_form(&page).unwrap_or_else(|| panic!("TOTP form at try {i}"));
        page = other
            .submit(&page, &form, &[("otp", "111111")], REDIRECT_URI)
            .await
            .page();
    }
    assert_eq!(page.status, 403, "{}", page.text());
    assert!(page.text().contains("Too many wrong codes"));
    // Starting again works.
    let req = AuthRequest::new(&oidc, &[]);
    let flow = walk(&other, &req.url, (USER, PASSWORD), Some(&mut app)).await;
    flow.callback().expect_code(&req, env.issuer());

    // Bob, not enrolled, signs in with a password alone.
    let req = AuthRequest::new(&oidc, &[]);
    let flow = walk(&Browser::new(), &req.url, (USER2, PASSWORD2), None).await;
    let code = flow.callback().expect_code(&req, env.issuer());
    let tokens = exchange(&oidc, &env.http, code, &req).await;
    assert_eq!(
        amr_of(&verify_id_token(&oidc, &tokens, &req.nonce)),
        vec!["pwd"]
    );
}

#[tokio::test]
async fn clients_requiring_mfa_step_up_or_explain() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential(SECURE, SECURE_SECRET).arg("--name", "Payroll")
    ]);
    require_mfa(&env, SECURE).await;
    let secure = env.oidc(SECURE, Some(SECURE_SECRET)).await;

    // Alice signs in to another app with a password, then is enrolled.
    let browser = Browser::new();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let req = AuthRequest::new(&web, &[]);
    walk(&browser, &req.url, (USER, PASSWORD), None)
        .await
        .callback()
        .expect_code(&req, env.issuer());
    let mut app = enroll(&env, USER).await;

    // Payroll requires MFA: her session is asked for a code only.
    let req = AuthRequest::new(&secure, &[]);
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    let form = otp_form(&page).expect("step-up asks for a TOTP code");
    assert!(!form.has_input("password"));
    assert!(page.text().contains("Payroll"));
    let code = app.next_code().await;
    let page = browser
        .submit(&page, &form, &[("otp", &code)], REDIRECT_URI)
        .await
        .page();
    let callback = browser
        .decide(&page, "allow", REDIRECT_URI)
        .await
        .callback();
    let tokens = exchange(
        &secure,
        &env.http,
        callback.expect_code(&req, env.issuer()),
        &req,
    )
    .await;
    assert_eq!(
        amr_of(&verify_id_token(&secure, &tokens, &req.nonce)),
        vec!["pwd", "otp", "mfa"]
    );
    // The stepped-up session is good for Payroll from now on.
    let req = AuthRequest::new(&secure, &[]);
    browser
        .open(&req.url, REDIRECT_URI)
        .await
        .callback()
        .expect_code(&req, env.issuer());

    // Bob has no second factor: a page that says whom to ask, not a loop.
    let req = AuthRequest::new(&secure, &[]);
    let page = walk(&Browser::new(), &req.url, (USER2, PASSWORD2), None)
        .await
        .page();
    assert_eq!(page.status, 403);
    let text = page.text();
    assert!(
        text.contains("requires two-step verification") && text.contains("administrator"),
        "{text}"
    );
}
