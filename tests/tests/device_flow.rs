//! The Device Authorization Grant (RFC 8628) as a device and a person see
//! it: the `oauth2` crate's device flow against `tokenfn serve`, the
//! verification page in a browser, polling errors, and the refresh token.

mod common;

use std::time::Duration;

use common::*;
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, DeviceAuthorizationUrl, RefreshToken, Scope, StandardDeviceAuthorizationResponse,
    TokenResponse, TokenUrl,
};

const TV: &str = "tv";
const TV_NAME: &str = "Living Room TV";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn tv() -> ClientSpec {
    ClientSpec::public(TV)
        .grant_types("urn:ietf:params:oauth:grant-type:device_code,refresh_token")
        .scopes("openid profile offline_access")
        .arg("--name", TV_NAME)
}

fn start() -> TestEnv {
    TestEnv::start_with_clients(&[tv()])
}

/// Opens the verification page, enters `user_code`, signs in as alice when
/// asked and makes `decision`; returns the last page.
async fn verify(browser: &Browser, url: &str, user_code: &str, decision: &str) -> Page {
    let page = browser.open(url, REDIRECT_URI).await.page();
    assert_eq!(page.status, 200, "{}", page.text());
    let form = page.form("/device").expect("a form posting to /device");
    assert_eq!(form.input_type("user_code"), Some("text"));
    let mut page = browser
        .submit(&page, &form, &[("user_code", user_code)], REDIRECT_URI)
        .await
        .page();
    if page.login_form().is_some() {
        assert!(page.text().contains(TV_NAME), "{}", page.text());
        page = browser
            .login(&page, (USER, PASSWORD), REDIRECT_URI)
            .await
            .page();
    }
    let text = page.text();
    assert!(page.consent_form().is_some(), "a consent page: {text}");
    assert!(
        text.contains(TV_NAME),
        "the consent page names the client: {text}"
    );
    assert!(
        text.contains("Confirm who you are"),
        "scopes in words: {text}"
    );
    browser.decide(&page, decision, REDIRECT_URI).await.page()
}

async fn poll(env: &TestEnv, device_code: &str) -> JsonResponse {
    env.post_form(
        "/oauth/token",
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", TV),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn device_flow_with_the_oauth2_crate_then_refresh() {
    let env = start();
    let discovery = env.discovery().await;
    let endpoint = discovery["device_authorization_endpoint"]
        .as_str()
        .expect("device_authorization_endpoint in discovery")
        .to_owned();
    assert_eq!(endpoint, env.url("/oauth/device_authorization"));
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == DEVICE_GRANT)
    );

    let client = BasicClient::new(ClientId::new(TV.into()))
        .set_token_uri(TokenUrl::new(env.url("/oauth/token")).unwrap())
        .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint).unwrap());
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("offline_access".into()))
        .request_async(&env.http)
        .await
        .unwrap_or_else(|e| panic!("device authorization: {}", error_chain(&e)));
    let user_code = details.user_code().secret().clone();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert_eq!(details.verification_uri().as_str(), env.url("/device"));
    assert_eq!(details.interval(), Duration::from_secs(5));
    assert_eq!(details.expires_in(), Duration::from_secs(600));
    let complete = details
        .verification_uri_complete()
        .expect("verification_uri_complete")
        .secret()
        .clone();

    // The person opens the complete URI: the code is already there.
    let browser = Browser::new();
    let page = browser.open(&complete, REDIRECT_URI).await.page();
    let form = page.form("/device").expect("device form");
    assert!(
        form.inputs
            .iter()
            .any(|(_, n, v)| n == "user_code" && v == &user_code),
        "prefilled: {:?}",
        form.inputs
    );
    let done = verify(&browser, &complete, &user_code, "allow").await;
    assert!(
        done.text().contains("Return to your device"),
        "{}",
        done.text()
    );

    // The device polls (the crate waits the interval) and gets its tokens.
    let tokens = client
        .exchange_device_access_token(&details)
        .request_async(&env.http, tokio::time::sleep, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("device token: {}", error_chain(&e)));
    let (_, claims) = env
        .verify_access_token(tokens.access_token().secret())
        .await;
    assert_eq!(claims["client_id"], TV);
    assert_eq!(
        scope_set(&claims["scope"]),
        set_of(&["openid", "offline_access"])
    );
    let refresh = tokens.refresh_token().expect("a refresh token").clone();

    // Single use: the device code is spent.
    poll(&env, details.device_code().secret())
        .await
        .assert_error(400, "invalid_grant");

    // The refresh token works, and rotates.
    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(refresh.secret().clone()))
        .request_async(&env.http)
        .await
        .unwrap_or_else(|e| panic!("refresh: {}", error_chain(&e)));
    let next = refreshed.refresh_token().expect("a rotated refresh token");
    assert_ne!(next.secret(), refresh.secret());
    env.raw_refresh(TV, None, refresh.secret())
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn polling_pending_slow_down_denied_and_id_token() {
    let env = start();
    let start = env
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", TV), ("scope", "openid profile")],
            None,
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.text);
    start.assert_no_store();
    let device_code = start.str("device_code");
    let user_code = start.str("user_code");

    poll(&env, &device_code)
        .await
        .assert_error(400, "authorization_pending");
    // Too soon: slow down (and the interval becomes 10 s).
    poll(&env, &device_code)
        .await
        .assert_error(400, "slow_down");

    // The person denies.
    let browser = Browser::new();
    let page = verify(&browser, &env.url("/device"), &user_code, "deny").await;
    assert!(page.text().contains("denied"), "{}", page.text());
    tokio::time::sleep(Duration::from_secs(11)).await;
    poll(&env, &device_code)
        .await
        .assert_error(400, "access_denied");

    // A second device, approved by the same (now signed-in) browser: no
    // login this time; an ID token without nonce, no refresh token without
    // offline_access.
    let start = env
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", TV), ("scope", "openid profile")],
            None,
        )
        .await;
    let device_code = start.str("device_code");
    let done = verify(
        &browser,
        &env.url("/device"),
        &start.str("user_code"),
        "allow",
    )
    .await;
    assert!(done.text().contains("Return to your device"));
    let tokens = poll(&env, &device_code).await;
    tokens.assert_tokens();
    assert!(
        tokens.body.get("refresh_token").is_none(),
        "{}",
        tokens.text
    );
    let jwks = env.jwks().await;
    let (_, id) = verify_jwt(&jwks, &tokens.str("id_token"), env.issuer(), None);
    assert_eq!(id["aud"], TV);
    assert!(id.get("nonce").is_none());
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
}

#[tokio::test]
async fn device_errors_and_the_verification_page() {
    let env = start();
    env.post_form(
        "/oauth/device_authorization",
        &[("client_id", "nobody"), ("scope", "openid")],
        None,
    )
    .await
    .assert_error(401, "invalid_client");
    env.post_form(
        "/oauth/device_authorization",
        &[("client_id", SPA), ("scope", "openid")],
        None,
    )
    .await
    .assert_error(400, "unauthorized_client");
    env.post_form("/oauth/device_authorization", &[("client_id", TV)], None)
        .await
        .assert_error(400, "invalid_scope");
    env.post_form(
        "/oauth/device_authorization",
        &[("client_id", TV), ("scope", "openid email")],
        None,
    )
    .await
    .assert_error(400, "invalid_scope");
    poll(&env, "not-a-device-code")
        .await
        .assert_error(400, "invalid_grant");

    // Wrong codes are told plainly, and limited per browser.
    let browser = Browser::new();
    let mut page = browser.open(&env.url("/device"), REDIRECT_URI).await.page();
    for _ in 0..4 {
        let form = page.form("/device").expect("device form");
        page = browser
            .submit(&page, &form, &[("user_code", "BBBB-BBBB")], REDIRECT_URI)
            .await
            .page();
        assert!(
            page.text().contains("That code is not right"),
            "{}",
            page.text()
        );
    }
    let form = page.form("/device").expect("device form");
    let page = browser
        .submit(&page, &form, &[("user_code", "BBBB-BBBB")], REDIRECT_URI)
        .await
        .page();
    assert_eq!(page.status, 429);
    let page = browser.open(&env.url("/device"), REDIRECT_URI).await.page();
    assert_eq!(page.status, 429, "a reload does not reset the count");
    assert!(page.text().contains("Too many wrong codes"));
    // Another browser is not locked out.
    let page = Browser::new()
        .open(&env.url("/device"), REDIRECT_URI)
        .await
        .page();
    assert_eq!(page.status, 200);
}
