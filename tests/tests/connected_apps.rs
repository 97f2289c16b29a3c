//! The connected apps page: a signed-in user sees the apps they granted and
//! disconnects one; its refresh tokens die, another app's live on, and the
//! next authorization asks for consent again.

mod common;
mod support;

use common::*;
use openidconnect::OAuth2TokenResponse;
use support::*;

#[tokio::test]
async fn disconnecting_an_app_kills_its_tokens_only() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("crm", "crm-secret-0123456789abcdefghijklmnopqrstuvw")
            .arg("--name", "The CRM"),
        ClientSpec::public("notes").arg("--name", "Notes & <Things>"),
    ]);
    let crm = env
        .oidc("crm", Some("crm-secret-0123456789abcdefghijklmnopqrstuvw"))
        .await;
    let notes = env.oidc("notes", None).await;
    let apps_url = env.url("/account/apps");

    // Not signed in: the login form, then the page (empty).
    let browser = Browser::new();
    let page = browser.open(&apps_url, REDIRECT_URI).await.page();
    assert!(page.login_form().is_some(), "{}", page.text());
    let page = browser
        .login(&page, (USER, PASSWORD), REDIRECT_URI)
        .await
        .page();
    assert_eq!(page.url.path(), "/account/apps");
    assert!(page.text().contains("No app has access"), "{}", page.text());

    // Two grants of the CRM (one app on the page) and one of Notes.
    let mut crm_tokens = Vec::new();
    for _ in 0..2 {
        let req = AuthRequest::new(&crm, &["offline_access"]);
        let flow = browser
            .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI)
            .await;
        let code = flow.callback.expect_code(&req, env.issuer());
        crm_tokens.push(exchange(&crm, &env.http, code, &req).await);
    }
    let req = AuthRequest::new(&notes, &["offline_access"]);
    let flow = browser
        .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    let code = flow.callback.expect_code(&req, env.issuer());
    let notes_tokens = exchange(&notes, &env.http, code, &req).await;

    let page = browser.open(&apps_url, REDIRECT_URI).await.page();
    let text = page.text();
    assert_eq!(
        text.matches("The CRM").count(),
        2,
        "a heading and a button: {text}"
    );
    assert!(
        text.contains("Notes & <Things>"),
        "escaped, shown as text: {text}"
    );
    assert!(!page.body.contains("<Things>"), "escaped in the HTML");
    assert!(text.contains("Stay signed in"), "scopes in words: {text}");
    assert!(text.contains("Last used 20"), "{text}");
    assert!(text.contains("UTC"));
    let forms: Vec<Form> = page
        .forms()
        .into_iter()
        .filter(|f| f.action.ends_with("/account/apps/revoke"))
        .collect();
    assert_eq!(forms.len(), 2, "one revoke button per app");
    let crm_form = forms
        .iter()
        .find(|f| f.hidden_value("client_id").as_deref() == Some("crm"))
        .expect("a revoke form for the CRM");
    assert!(crm_form.hidden_value("csrf").is_some());

    // Without its CSRF token the form is refused.
    let mut forged: Vec<(String, String)> = crm_form.hidden();
    forged.retain(|(k, _)| k != "csrf");
    forged.push(("csrf".into(), "forged".into()));
    let resp = browser
        .http
        .post(env.url("/account/apps/revoke"))
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Disconnect the CRM.
    let page = browser
        .submit(&page, crm_form, &[], REDIRECT_URI)
        .await
        .page();
    assert_eq!(page.url.path(), "/account/apps");
    assert!(!page.text().contains("The CRM"), "{}", page.text());
    assert!(page.text().contains("Notes"));

    for t in &crm_tokens {
        env.raw_refresh(
            "crm",
            Some("crm-secret-0123456789abcdefghijklmnopqrstuvw"),
            t.refresh_token().unwrap().secret(),
        )
        .await
        .assert_error(400, "invalid_grant");
    }
    env.raw_refresh(
        "notes",
        None,
        notes_tokens.refresh_token().unwrap().secret(),
    )
    .await
    .assert_tokens();

    // The CRM asks for consent again, even without offline_access.
    let req = AuthRequest::new(&crm, &[]);
    let page = browser.open(&req.url, REDIRECT_URI).await.page();
    assert!(page.consent_form().is_some(), "{}", page.text());
    assert!(page.text().contains("The CRM"));
}

#[tokio::test]
async fn the_page_signs_in_with_the_second_factor() {
    let env = TestEnv::start();
    let mut app = enroll(&env, USER).await;
    let browser = Browser::new();
    let page = walk(
        &browser,
        &env.url("/account/apps"),
        (USER, PASSWORD),
        Some(&mut app),
    )
    .await
    .page();
    assert_eq!(page.url.path(), "/account/apps");
    assert!(page.text().contains("Connected apps"), "{}", page.text());
    assert!(page.text().contains(USER));
}
