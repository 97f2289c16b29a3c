//! The password grant, introspection and UserInfo through standard client
//! libraries (`oauth2`, `openidconnect`), and the admin commands that change
//! what a refresh token is worth: `user mfa`, `client update --require-mfa`
//! and `consent revoke`. Run on both backends.

mod common;

use common::*;
use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl,
    ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenIntrospectionResponse, TokenUrl,
};
use openidconnect::{OAuth2TokenResponse, SubjectIdentifier};

const ROPC: &str = "legacy-app";
const ROPC_SECRET: &str = "legacy-secret-0123456789abcdefghijklmnopqrstuv";

type Oauth2Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointSet>;

/// A standard server with one more client, allowed the password grant.
fn start() -> TestEnv {
    TestEnv::start_with_clients(&[
        ClientSpec::confidential(ROPC, ROPC_SECRET).grant_types("password,refresh_token")
    ])
}

/// An `oauth2` client with the token and introspection endpoints.
async fn oauth2_client(env: &TestEnv, id: &str, secret: &str) -> Oauth2Client {
    let d = env.discovery().await;
    BasicClient::new(ClientId::new(id.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_token_uri(TokenUrl::new(d["token_endpoint"].as_str().unwrap().into()).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(d["introspection_endpoint"].as_str().unwrap().into()).unwrap(),
        )
}

async fn password_grant(
    env: &TestEnv,
    client: &Oauth2Client,
    user: (&str, &str),
    scopes: &[&str],
) -> Result<oauth2::basic::BasicTokenResponse, String> {
    let username = ResourceOwnerUsername::new(user.0.into());
    let password = ResourceOwnerPassword::new(user.1.into());
    let mut req = client.exchange_password(&username, &password);
    for s in scopes {
        req = req.add_scope(Scope::new((*s).into()));
    }
    req.request_async(&env.http)
        .await
        .map_err(|e| describe_token_error(&e))
}

async fn active(env: &TestEnv, client: &Oauth2Client, token: &str) -> bool {
    client
        .introspect(&AccessToken::new(token.into()))
        .request_async(&env.http)
        .await
        .unwrap_or_else(|e| panic!("introspection failed: {}", error_chain(&e)))
        .active()
}

#[tokio::test]
async fn password_grant_through_the_oauth2_crate() {
    let env = start();
    let client = oauth2_client(&env, ROPC, ROPC_SECRET).await;
    let tokens = password_grant(
        &env,
        &client,
        (USER, PASSWORD),
        &["openid", "offline_access"],
    )
    .await
    .unwrap();
    let (_, claims) = env
        .verify_access_token(tokens.access_token().secret())
        .await;
    assert_eq!(claims["client_id"], ROPC);
    let rt = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token");
    let next = client
        .exchange_refresh_token(rt)
        .request_async(&env.http)
        .await
        .unwrap_or_else(|e| panic!("refresh: {}", describe_token_error(&e)));
    assert_ne!(next.refresh_token().unwrap().secret(), rt.secret());

    // Without offline_access, no refresh token.
    let tokens = password_grant(&env, &client, (USER2, PASSWORD2), &["profile"])
        .await
        .unwrap();
    assert!(tokens.refresh_token().is_none());

    // Wrong password and unknown user: the same invalid_grant.
    let wrong = password_grant(&env, &client, (USER, "not-it"), &[])
        .await
        .unwrap_err();
    let unknown = password_grant(&env, &client, ("nobody", "not-it"), &[])
        .await
        .unwrap_err();
    assert!(wrong.contains("invalid_grant"), "{wrong}");
    assert_eq!(wrong, unknown);

    // A client not allowed the grant.
    let web = oauth2_client(&env, WEB, WEB_SECRET).await;
    let err = password_grant(&env, &web, (USER, PASSWORD), &[])
        .await
        .unwrap_err();
    assert!(err.contains("unauthorized_client"), "{err}");
}

#[tokio::test]
async fn introspection_through_the_oauth2_crate() {
    let env = start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = env.tokens(&oidc, &["profile", "offline_access"]).await;
    let at = tokens.access_token().secret().clone();
    let rt = tokens.refresh_token().unwrap().secret().clone();

    // A resource server (the svc client) asks about the access token.
    let rs = oauth2_client(&env, SVC, SVC_SECRET).await;
    let answer = rs
        .introspect(&AccessToken::new(at.clone()))
        .request_async(&env.http)
        .await
        .unwrap();
    assert!(answer.active());
    assert_eq!(answer.client_id().unwrap().as_str(), WEB);
    let scopes: Vec<&str> = answer
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert!(scopes.contains(&"offline_access"), "{scopes:?}");
    assert!(answer.exp().is_some());

    // The refresh token: only its holder sees it active.
    let web = oauth2_client(&env, WEB, WEB_SECRET).await;
    assert!(active(&env, &web, &rt).await);
    assert!(!active(&env, &rs, &rt).await);
    assert!(!active(&env, &rs, "garbage").await);

    // Revoked through RFC 7009: the refresh token and its access token die.
    let r = env
        .post_form("/oauth/revoke", &[("token", &rt)], Some((WEB, WEB_SECRET)))
        .await;
    assert_eq!(r.status, 200);
    assert!(!active(&env, &web, &rt).await);
    assert!(
        !active(&env, &rs, &at).await,
        "the access token of a revoked grant"
    );

    // A public client may not introspect.
    let r = env
        .post_form(
            "/oauth/introspect",
            &[("token", &at), ("client_id", SPA)],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "invalid_client");
}

#[tokio::test]
async fn userinfo_through_the_openidconnect_crate() {
    let env = start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = env.tokens(&oidc, &["profile", "email"]).await;
    let (_, claims) = env
        .verify_access_token(tokens.access_token().secret())
        .await;
    let sub = SubjectIdentifier::new(claims["sub"].as_str().unwrap().into());
    let info: openidconnect::core::CoreUserInfoClaims = oidc
        .user_info(tokens.access_token().clone(), Some(sub.clone()))
        .expect("userinfo endpoint discovered")
        .request_async(&env.http)
        .await
        .unwrap_or_else(|e| panic!("userinfo: {}", error_chain(&e)));
    assert_eq!(info.subject(), &sub);
    assert_eq!(info.preferred_username().unwrap().as_str(), USER);
    assert_eq!(info.email().unwrap().as_str(), USER_EMAIL);

    // RFC 6750 errors: no token, a bad one, one without openid.
    let resp = env.http.get(env.url("/userinfo")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"tokenfn\""
    );
    let resp = env
        .http
        .get(env.url("/userinfo"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let client = oauth2_client(&env, SVC, SVC_SECRET).await;
    let cc = client
        .exchange_client_credentials()
        .request_async(&env.http)
        .await
        .unwrap();
    let resp = env
        .http
        .get(env.url("/userinfo"))
        .bearer_auth(cc.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn mfa_enrolment_closes_the_password_grant_and_reset_reopens_it() {
    let env = start();
    let client = oauth2_client(&env, ROPC, ROPC_SECRET).await;
    let out = env
        .cli(&["user", "mfa", "enroll", "--username", USER], None)
        .json();
    let uri = out["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains("secret="), "{uri}");
    let err = password_grant(&env, &client, (USER, PASSWORD), &[])
        .await
        .unwrap_err();
    assert!(err.contains("two-step verification"), "{err}");

    let out = env
        .cli(&["user", "mfa", "reset", "--username", USER], None)
        .json();
    assert_eq!(out["removed"], true);
    password_grant(&env, &client, (USER, PASSWORD), &[])
        .await
        .unwrap();
    let out = env
        .cli(&["user", "mfa", "reset", "--username", USER], None)
        .json();
    assert_eq!(out["removed"], false, "nothing left to remove");

    let out = env.cli(&["user", "mfa", "enroll", "--username", "nobody"], None);
    out.assert_clean_failure();
    assert!(out.stderr.contains("no user named"), "{}", out.stderr);
}

#[tokio::test]
async fn requiring_mfa_stops_refresh_tokens_of_password_only_grants() {
    let env = start();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = env.tokens(&oidc, &["profile", "offline_access"]).await;
    let rt = tokens.refresh_token().unwrap().secret().clone();

    let out = env
        .cli(
            &["client", "update", "--client-id", WEB, "--require-mfa"],
            None,
        )
        .json();
    assert_eq!(out["require_mfa"], true);
    let r = env.raw_refresh(WEB, Some(WEB_SECRET), &rt).await;
    assert_eq!(r.body["error"], "invalid_grant", "{}", r.text);
    let description = r.body["error_description"].as_str().unwrap();
    assert!(
        description.contains("authorization endpoint again"),
        "{description}"
    );

    // Another client is untouched; undoing it brings the token back.
    let other = env.oidc(SPA, None).await;
    let (_, spa) = env.tokens(&other, &["offline_access"]).await;
    let r = env
        .raw_refresh(SPA, None, spa.refresh_token().unwrap().secret())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    env.cli(
        &["client", "update", "--client-id", WEB, "--no-require-mfa"],
        None,
    )
    .json();
    assert_eq!(
        env.raw_refresh(WEB, Some(WEB_SECRET), &rt).await.status,
        200
    );

    // Bad arguments are clear failures.
    let out = env.cli(
        &["client", "update", "--client-id", "nope", "--require-mfa"],
        None,
    );
    out.assert_clean_failure();
    assert!(out.stderr.contains("no client"), "{}", out.stderr);
    env.cli(&["client", "update", "--client-id", WEB], None)
        .assert_clean_failure();
    env.cli(
        &[
            "client",
            "update",
            "--client-id",
            WEB,
            "--require-mfa",
            "--no-require-mfa",
        ],
        None,
    )
    .assert_clean_failure();
}

#[tokio::test]
async fn consent_revoke_kills_that_clients_tokens_and_asks_again() {
    let env = start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let spa = env.oidc(SPA, None).await;
    let (_, web_tokens) = env.tokens(&web, &["profile", "offline_access"]).await;
    let (_, spa_tokens) = env.tokens(&spa, &["profile", "offline_access"]).await;

    let out = env
        .cli(
            &["consent", "revoke", "--user", USER, "--client", WEB],
            None,
        )
        .json();
    assert_eq!(out["revoked"], 1);
    let r = env
        .raw_refresh(
            WEB,
            Some(WEB_SECRET),
            web_tokens.refresh_token().unwrap().secret(),
        )
        .await;
    assert_eq!(r.body["error"], "invalid_grant");
    let r = env
        .raw_refresh(SPA, None, spa_tokens.refresh_token().unwrap().secret())
        .await;
    assert_eq!(r.status, 200, "the other client keeps working: {}", r.text);

    // The next authorization asks for consent again.
    let browser = env.browser();
    let req = AuthRequest::new(&web, &["profile", "offline_access"]);
    let flow = browser
        .authorize(&req.url, (USER, PASSWORD), REDIRECT_URI)
        .await;
    assert!(flow.consent_page.is_some(), "consent is asked again");

    // Idempotent, and clear about unknown names.
    let out = env
        .cli(
            &["consent", "revoke", "--user", USER, "--client", SPA],
            None,
        )
        .json();
    assert_eq!(out["revoked"], 1);
    let out = env
        .cli(
            &["consent", "revoke", "--user", USER, "--client", SPA],
            None,
        )
        .json();
    assert_eq!(out["revoked"], 0);
    let out = env.cli(
        &["consent", "revoke", "--user", "nobody", "--client", SPA],
        None,
    );
    out.assert_clean_failure();
    let out = env.cli(
        &["consent", "revoke", "--user", USER, "--client", "nope"],
        None,
    );
    out.assert_clean_failure();
    assert!(out.stderr.contains("no client"), "{}", out.stderr);
}
