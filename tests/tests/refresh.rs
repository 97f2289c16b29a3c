//! Refresh tokens (rotation, reuse, scope, clients, expiry, leeway), code
//! replay, revocation and client_credentials.

mod common;

use std::time::Duration;

use common::*;
use openidconnect::core::{CoreRevocableToken, CoreTokenResponse};
use openidconnect::{OAuth2TokenResponse, RefreshToken, Scope, TokenResponse};

async fn refresh(env: &TestEnv, oidc: &Oidc, rt: &RefreshToken) -> TokenResult {
    oidc.exchange_refresh_token(rt)
        .expect("token endpoint")
        .request_async(&env.http)
        .await
}

async fn refresh_ok(env: &TestEnv, oidc: &Oidc, rt: &RefreshToken) -> CoreTokenResponse {
    refresh(env, oidc, rt)
        .await
        .unwrap_or_else(|e| panic!("refresh failed: {}", describe_token_error(&e)))
}

async fn refresh_with_scopes(
    env: &TestEnv,
    oidc: &Oidc,
    rt: &RefreshToken,
    scopes: &[&str],
) -> TokenResult {
    let mut req = oidc.exchange_refresh_token(rt).expect("token endpoint");
    for s in scopes {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    req.request_async(&env.http).await
}

fn rt_of(resp: &CoreTokenResponse) -> RefreshToken {
    resp.refresh_token()
        .expect("response has a refresh_token")
        .clone()
}

async fn offline_tokens(env: &TestEnv, oidc: &Oidc) -> (AuthRequest, CoreTokenResponse) {
    env.tokens(oidc, &["profile", "offline_access"]).await
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt1 = rt_of(&first);

    let second = refresh_ok(&env, &oidc, &rt1).await;
    let rt2 = rt_of(&second);
    assert_ne!(
        rt1.secret(),
        rt2.secret(),
        "refresh rotates the refresh token"
    );
    assert_ne!(
        first.access_token().secret(),
        second.access_token().secret()
    );
    let (_, claims) = env
        .verify_access_token(second.access_token().secret())
        .await;
    assert_eq!(claims["client_id"], WEB);
    assert_eq!(
        scope_set(&claims["scope"]),
        set_of(&["openid", "profile", "offline_access"])
    );

    // Reuse of the consumed token fails...
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt1).await),
        "invalid_grant"
    );
    // ...and takes the newest token of the family with it.
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt2).await),
        "invalid_grant",
        "reuse of an old refresh token must revoke the whole family"
    );
}

#[tokio::test]
async fn a_chain_of_refreshes_keeps_working() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let mut rt = rt_of(&first);
    let mut seen = vec![rt.secret().clone()];
    for _ in 0..4 {
        let next = refresh_ok(&env, &oidc, &rt).await;
        rt = rt_of(&next);
        assert!(!seen.contains(rt.secret()), "every refresh token is new");
        seen.push(rt.secret().clone());
    }
}

#[tokio::test]
async fn refresh_returns_a_new_id_token_without_nonce() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (req, first) = offline_tokens(&env, &oidc).await;
    let original = verify_id_token(&oidc, &first, &req.nonce);
    assert!(original.nonce().is_some());

    // iat has one-second resolution: make the new one observably newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = refresh_ok(&env, &oidc, &rt_of(&first)).await;
    let refreshed = verify_refreshed_id_token(&oidc, &second);
    assert_eq!(refreshed.subject(), original.subject(), "sub");
    assert_eq!(refreshed.audiences(), original.audiences(), "aud");
    assert_eq!(
        refreshed.authorized_party(),
        original.authorized_party(),
        "azp"
    );
    assert_eq!(refreshed.auth_time(), original.auth_time(), "auth_time");
    assert!(refreshed.auth_time().is_some(), "auth_time is present");
    assert!(refreshed.issue_time() > original.issue_time(), "new iat");
    assert_eq!(refreshed.issuer(), original.issuer());
}

#[tokio::test]
async fn public_client_refreshes_with_auth_none() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let second = refresh_ok(&env, &oidc, &rt_of(&first)).await;
    let (_, claims) = env
        .verify_access_token(second.access_token().secret())
        .await;
    assert_eq!(claims["client_id"], SPA);
    // RFC 9700 §2.2.2: a public client's refresh tokens are not
    // sender-constrained, so they rotate, and a replayed one (stolen, say)
    // revokes the family, the thief's and the app's token alike.
    let rt2 = rt_of(&second);
    assert_ne!(rt2.secret(), rt_of(&first).secret());
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt_of(&first)).await),
        "invalid_grant"
    );
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt2).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn refresh_endpoint_accepts_requests_without_grant_type() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt1 = rt_of(&first);

    let r = env
        .post_form(
            "/oauth/refresh",
            &[("refresh_token", rt1.secret())],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_tokens();
    let rt2 = r.str("refresh_token");
    assert_ne!(&rt2, rt1.secret());
    env.verify_access_token(&r.str("access_token")).await;

    let r = env
        .post_form(
            "/oauth/refresh",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_tokens();

    // Same reuse rules on this route.
    let r = env
        .post_form(
            "/oauth/refresh",
            &[("refresh_token", rt1.secret())],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn scope_may_narrow_on_refresh() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = env
        .tokens(&oidc, &["profile", "email", "offline_access"])
        .await;
    let narrowed = refresh_with_scopes(
        &env,
        &oidc,
        &rt_of(&first),
        &["openid", "profile", "offline_access"],
    )
    .await
    .unwrap_or_else(|e| panic!("narrowing refresh: {}", describe_token_error(&e)));
    let want = set_of(&["openid", "profile", "offline_access"]);
    assert_eq!(granted_scopes(&narrowed), want);
    let (_, claims) = env
        .verify_access_token(narrowed.access_token().secret())
        .await;
    assert_eq!(scope_set(&claims["scope"]), want);
}

#[tokio::test]
async fn scope_may_not_widen_on_refresh() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = env.tokens(&oidc, &["offline_access"]).await;
    let result = refresh_with_scopes(
        &env,
        &oidc,
        &rt_of(&first),
        &["openid", "offline_access", "email"],
    )
    .await;
    assert_eq!(token_error_code(result), "invalid_scope");
}

#[tokio::test]
async fn a_refresh_token_of_one_client_is_useless_to_another() {
    let env = TestEnv::start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let other = env.oidc(OTHER, Some(OTHER_SECRET)).await;
    let spa = env.oidc(SPA, None).await;
    let (_, tokens) = offline_tokens(&env, &web).await;
    let rt = rt_of(&tokens);
    assert_eq!(
        token_error_code(refresh(&env, &other, &rt).await),
        "invalid_grant"
    );
    assert_eq!(
        token_error_code(refresh(&env, &spa, &rt).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn idle_refresh_token_expires() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("idle", WEB_SECRET).arg("--refresh-idle-ttl", "2")
    ]);
    let oidc = env.oidc("idle", Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    // Used promptly it works.
    let second = refresh_ok(&env, &oidc, &rt_of(&first)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt_of(&second)).await),
        "invalid_grant",
        "a refresh token idle longer than --refresh-idle-ttl is dead"
    );
}

#[tokio::test]
async fn refresh_ttl_bounds_the_refresh_token_lifetime() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("short", WEB_SECRET).arg("--refresh-ttl", "2")
    ]);
    let oidc = env.oidc("short", Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let second = refresh_ok(&env, &oidc, &rt_of(&first)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt_of(&second)).await),
        "invalid_grant",
        "a refresh token older than --refresh-ttl is dead"
    );
}

#[tokio::test]
async fn reuse_leeway_lets_the_previous_token_work_once_more() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("lenient", WEB_SECRET).arg("--reuse-leeway", "5")
    ]);
    let oidc = env.oidc("lenient", Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt1 = rt_of(&first);
    let _second = refresh_ok(&env, &oidc, &rt1).await;
    // A retry (say, the response was lost) within the leeway succeeds.
    let retry = refresh_ok(&env, &oidc, &rt1).await;
    env.verify_access_token(retry.access_token().secret()).await;
    // But only once.
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt1).await),
        "invalid_grant",
        "the leeway allows one more use, not unlimited reuse"
    );
}

#[tokio::test]
async fn reuse_leeway_does_not_cover_older_tokens() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("lenient", WEB_SECRET).arg("--reuse-leeway", "5")
    ]);
    let oidc = env.oidc("lenient", Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt1 = rt_of(&first);
    let rt2 = rt_of(&refresh_ok(&env, &oidc, &rt1).await);
    let rt3 = rt_of(&refresh_ok(&env, &oidc, &rt2).await);
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt1).await),
        "invalid_grant",
        "only the immediately previous token is covered by the leeway"
    );
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt3).await),
        "invalid_grant",
        "reuse outside the leeway revokes the family"
    );
}

#[tokio::test]
async fn replayed_code_fails_and_revokes_its_grant() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let req = AuthRequest::new(&oidc, &["offline_access"]);
    let flow = env
        .browser()
        .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    let code = flow.callback.expect_code(&req, env.issuer());
    let tokens = exchange(&oidc, &env.http, code.clone(), &req).await;
    let rt = rt_of(&tokens);

    let replay = try_exchange(&oidc, &env.http, code, &req).await;
    assert_eq!(token_error_code(replay), "invalid_grant");
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt).await),
        "invalid_grant",
        "a replayed code revokes the grant issued from it"
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_with_the_library_kills_its_grant() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt1 = rt_of(&first);
    let rt2 = rt_of(&refresh_ok(&env, &oidc, &rt1).await);

    let transport = RevocationTransport::client(&env.http);
    oidc.revoke_token(CoreRevocableToken::from(rt2.clone()))
        .expect("revocation request")
        .request_async(&transport)
        .await
        .unwrap_or_else(|e| panic!("revocation failed: {}", error_chain(&e)));
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt2).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn public_client_revokes_its_refresh_token_with_client_id_only() {
    let env = TestEnv::start();
    let oidc = env.oidc(SPA, None).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt = rt_of(&first);
    let transport = RevocationTransport::client(&env.http);
    oidc.revoke_token(CoreRevocableToken::from(rt.clone()))
        .expect("revocation request")
        .request_async(&transport)
        .await
        .unwrap_or_else(|e| panic!("revocation failed: {}", error_chain(&e)));
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn revoking_an_access_token_or_an_unknown_token_answers_200() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = offline_tokens(&env, &oidc).await;
    let transport = RevocationTransport::client(&env.http);
    oidc.revoke_token(CoreRevocableToken::from(tokens.access_token().clone()))
        .expect("revocation request")
        .request_async(&transport)
        .await
        .unwrap_or_else(|e| panic!("revoking an access token: {}", error_chain(&e)));

    for hint in [None, Some("refresh_token"), Some("access_token")] {
        let mut form = vec![("token", "no-such-token-0123456789")];
        if let Some(h) = hint {
            form.push(("token_type_hint", h));
        }
        let r = env
            .post_form("/oauth/revoke", &form, Some((WEB, WEB_SECRET)))
            .await;
        assert_eq!(r.status, 200, "unknown token (hint {hint:?}): {}", r.text);
    }
}

#[tokio::test]
async fn revocation_requires_client_authentication() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = offline_tokens(&env, &oidc).await;
    let rt = rt_of(&tokens);

    let r = env
        .post_form("/oauth/revoke", &[("token", rt.secret())], None)
        .await;
    r.assert_error(401, "invalid_client");
    let r = env
        .post_form(
            "/oauth/revoke",
            &[("token", rt.secret())],
            Some((WEB, "wrong-secret-wrong-secret-wrong-secret")),
        )
        .await;
    r.assert_error(401, "invalid_client");
    assert!(
        r.header("www-authenticate").is_some(),
        "WWW-Authenticate after failed Basic auth"
    );

    // Another client cannot revoke it either (whatever it is told).
    let r = env
        .post_form(
            "/oauth/revoke",
            &[("token", rt.secret())],
            Some((OTHER, OTHER_SECRET)),
        )
        .await;
    assert!(r.status.as_u16() < 500, "HTTP {}: {}", r.status, r.text);

    // The token survived all three attempts.
    refresh_ok(&env, &oidc, &rt).await;
}

#[tokio::test]
async fn revoke_form_needs_a_token() {
    let env = TestEnv::start();
    let r = env
        .post_form("/oauth/revoke", &[], Some((WEB, WEB_SECRET)))
        .await;
    r.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn client_credentials_with_the_oauth2_crate() {
    use oauth2::basic::BasicClient;
    let env = TestEnv::start();
    let client = BasicClient::new(oauth2::ClientId::new(SVC.into()))
        .set_client_secret(oauth2::ClientSecret::new(SVC_SECRET.into()))
        .set_token_uri(oauth2::TokenUrl::new(env.url("/oauth/token")).unwrap());
    let resp = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("api.read".into()))
        .request_async(&env.http)
        .await
        .unwrap_or_else(|e| panic!("client_credentials: {}", error_chain(&e)));
    assert!(
        resp.refresh_token().is_none(),
        "no refresh token for client_credentials"
    );
    let scopes: Vec<String> = resp
        .scopes()
        .expect("scope in response")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["api.read"]);
    let (_, claims) = env.verify_access_token(resp.access_token().secret()).await;
    assert_eq!(claims["client_id"], SVC);
    assert_eq!(claims["sub"], SVC, "sub names the client (RFC 9068 2.2)");
    assert_eq!(scope_set(&claims["scope"]), set_of(&["api.read"]));

    // Raw: no id_token, no-store.
    let r = env
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "api.read api.write"),
            ],
            Some((SVC, SVC_SECRET)),
        )
        .await;
    r.assert_tokens();
    assert!(r.body.get("id_token").is_none(), "no id_token: {}", r.text);
    assert!(
        r.body.get("refresh_token").is_none(),
        "no refresh_token: {}",
        r.text
    );
    assert_eq!(
        scope_set(&r.body["scope"]),
        set_of(&["api.read", "api.write"])
    );
}

#[tokio::test]
async fn client_credentials_errors() {
    let env = TestEnv::start();
    // A scope the client was not given.
    let r = env
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials"), ("scope", "api.admin")],
            Some((SVC, SVC_SECRET)),
        )
        .await;
    r.assert_error(400, "invalid_scope");
    // A client without the grant type.
    let r = env
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    r.assert_error(400, "unauthorized_client");
    // Wrong secret.
    let r = env
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials"), ("scope", "api.read")],
            Some((SVC, "not-the-secret-not-the-secret-not-the")),
        )
        .await;
    r.assert_error(401, "invalid_client");
}

#[tokio::test]
async fn access_token_ttl_is_per_client() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("ttl", WEB_SECRET).arg("--access-token-ttl", "123")
    ]);
    let oidc = env.oidc("ttl", Some(WEB_SECRET)).await;
    let (_, tokens) = offline_tokens(&env, &oidc).await;
    assert_eq!(tokens.expires_in(), Some(Duration::from_secs(123)));
    let (_, claims) = env
        .verify_access_token(tokens.access_token().secret())
        .await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        123
    );
    let refreshed = refresh_ok(&env, &oidc, &rt_of(&tokens)).await;
    assert_eq!(refreshed.expires_in(), Some(Duration::from_secs(123)));
    assert!(refreshed.id_token().is_some());
}

#[tokio::test]
async fn reuse_after_the_leeway_revokes_the_family() {
    let env = TestEnv::start_with_clients(&[
        ClientSpec::confidential("lenient", WEB_SECRET).arg("--reuse-leeway", "1")
    ]);
    let oidc = env.oidc("lenient", Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt1 = rt_of(&first);
    let rt2 = rt_of(&refresh_ok(&env, &oidc, &rt1).await);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt1).await),
        "invalid_grant",
        "past the leeway the previous token is plain reuse"
    );
    assert_eq!(
        token_error_code(refresh(&env, &oidc, &rt2).await),
        "invalid_grant",
        "and reuse revokes the family"
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_have_exactly_one_winner() {
    let env = TestEnv::start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, first) = offline_tokens(&env, &oidc).await;
    let rt = rt_of(&first).secret().clone();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let http = env.http.clone();
        let url = env.url("/oauth/token");
        let rt = rt.clone();
        set.spawn(async move {
            let resp = http
                .post(url)
                .basic_auth(WEB, Some(WEB_SECRET))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
                .send()
                .await
                .expect("POST");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, body["error"].as_str().unwrap_or("").to_string())
        });
    }
    let results = set.join_all().await;
    let winners = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(winners, 1, "exactly one concurrent use wins: {results:?}");
    for (status, error) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(
            (*status, error.as_str()),
            (400, "invalid_grant"),
            "{results:?}"
        );
    }
}
