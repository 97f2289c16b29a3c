//! The token function's other doors, driven through its router on the
//! embedded store with a clock the test moves: the password grant and its
//! throttling, the MFA requirement at refresh, the per-user grant cap,
//! introspection (RFC 7662) and UserInfo (OIDC Core §5.3, RFC 6750).

mod support;

use support::*;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use serde_json::Value;
use tokenfn_core::config::Config;
use tokenfn_core::domain::client::Lifetimes;
use tokenfn_core::domain::secret::hash;
use tokenfn_core::domain::{Grant, GrantType, RefreshToken, Scopes};
use tokenfn_core::http::Response;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::ports::Clock;
use tokenfn_core::service::Services;
use tokenfn_core::service::admin::NewClient;

const SECRET: &str = "pw-secret-pw-secret-pw-secret-pw-0123";
const RS_SECRET: &str = "rs-secret-rs-secret-rs-secret-rs-0123";
const PASSWORD: &str = "correct horse battery";

struct Env {
    clock: Arc<TestClock>,
    services: Arc<Services>,
    token: TokenRouter,
    _rig: Rig,
}

impl Env {
    /// Clients: `pw` (confidential, password + refresh_token), `web` (no
    /// password grant), `rs` (a resource server: client_credentials only),
    /// `app` (public, password). Users alice and bob.
    async fn new(grant_cap: usize) -> Env {
        let mut config = Config::new(ISSUER);
        config.grant_cap = grant_cap;
        let rig = Rig::new(config);
        let (clock, services) = (rig.clock.clone(), rig.services.clone());
        let lifetimes = Lifetimes {
            access_token: 300,
            refresh_absolute: 10_000,
            refresh_idle: 1_000,
            reuse_leeway: 0,
        };
        let scopes = Scopes::parse("openid profile email offline_access api").unwrap();
        use GrantType::*;
        for (id, secret, grant_types) in [
            ("pw", Some(SECRET), vec![Password, RefreshToken]),
            ("web", Some(SECRET), vec![AuthorizationCode, RefreshToken]),
            ("rs", Some(RS_SECRET), vec![ClientCredentials]),
            ("app", None, vec![Password, RefreshToken]),
        ] {
            let redirect_uris = if grant_types.contains(&AuthorizationCode) {
                vec!["https://app.example/cb".to_owned()]
            } else {
                vec![]
            };
            services
                .add_client(NewClient {
                    id: id.into(),
                    name: None,
                    redirect_uris,
                    secret: secret.map(str::to_owned),
                    grant_types,
                    scopes: if id == "rs" {
                        Scopes::parse("api").unwrap()
                    } else {
                        scopes.clone()
                    },
                    lifetimes,
                })
                .await
                .unwrap();
        }
        for name in ["alice", "bob"] {
            services
                .add_user(name, PASSWORD, Some(format!("{name}@example.com")))
                .await
                .unwrap();
        }
        Env {
            clock,
            token: TokenRouter::new(services.clone()),
            services,
            _rig: rig,
        }
    }

    fn advance(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
    }

    async fn post(&self, path: &str, form: &str, client: Option<(&str, &str)>) -> Response {
        let mut req = post(path, form, "");
        if let Some((id, secret)) = client {
            let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
            req.headers_mut()
                .insert("authorization", value.parse().unwrap());
        }
        self.token.handle(req).await
    }

    async fn password(&self, user: &str, password: &str, scope: &str) -> Response {
        let form = format!(
            "grant_type=password&username={user}&password={}&scope={}",
            enc(password),
            enc(scope)
        );
        self.post("/oauth/token", &form, Some(("pw", SECRET))).await
    }

    async fn tokens(&self, user: &str, scope: &str) -> Value {
        let resp = self.password(user, PASSWORD, scope).await;
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        json(&resp)
    }

    async fn refresh(&self, rt: &str) -> Response {
        let form = format!("grant_type=refresh_token&refresh_token={rt}");
        self.post("/oauth/token", &form, Some(("pw", SECRET))).await
    }

    async fn introspect(&self, token: &str, client: (&str, &str)) -> Value {
        let resp = self
            .post(
                "/oauth/introspect",
                &format!("token={}", enc(token)),
                Some(client),
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        assert_eq!(resp.headers()["cache-control"], "no-store");
        json(&resp)
    }

    /// Revokes the grant an access token was issued under, as an admin would.
    async fn revoke_grant_of(&self, access_token: &str) {
        let grant_id = claims(access_token)["grant_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let now = self.clock.now();
        assert_eq!(
            self.services
                .store
                .revoke_grant(&grant_id, now)
                .await
                .unwrap(),
            1
        );
    }

    async fn userinfo(&self, token: &str) -> Response {
        let req = http::Request::builder()
            .method("GET")
            .uri("/userinfo")
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap();
        self.token.handle(req).await
    }
}

fn error_triple(resp: &Response) -> (u16, String, String) {
    let body = json(resp);
    (
        resp.status().as_u16(),
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

// ------------------------------------------------------------ password grant

#[tokio::test]
async fn password_grant_issues_tokens_and_a_refresh_token_only_with_offline_access() {
    let env = Env::new(200).await;
    let t = env.tokens("alice", "api").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    assert!(t.get("id_token").is_none());
    assert_eq!(t["scope"], "api");

    let t = env.tokens("alice", "openid offline_access profile").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert!(id.get("nonce").is_none());
    let rt = t["refresh_token"].as_str().unwrap();
    let r = env.refresh(rt).await;
    assert_eq!(r.status(), 200, "{}", body(&r));

    // No scope: the client's scopes, without offline_access.
    let t = env.tokens("alice", "").await;
    assert!(t.get("refresh_token").is_none());
    assert_eq!(t["scope"], "api email openid profile");

    // A public client allowed the grant names itself.
    let form = format!(
        "grant_type=password&client_id=app&username=bob&password={}",
        enc(PASSWORD)
    );
    let r = env.post("/oauth/token", &form, None).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
}

#[tokio::test]
async fn password_grant_errors() {
    let env = Env::new(200).await;
    // Only clients explicitly allowed it.
    let form = format!(
        "grant_type=password&username=alice&password={}",
        enc(PASSWORD)
    );
    let r = env.post("/oauth/token", &form, Some(("web", SECRET))).await;
    assert_eq!(error_triple(&r).1, "unauthorized_client");
    // A wrong password and an unknown user read the same.
    let wrong = error_triple(&env.password("alice", "not the password", "api").await);
    let unknown = error_triple(&env.password("mallory", "not the password", "api").await);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.1, "invalid_grant");
    // Missing fields and scopes the client does not have.
    let r = env
        .post(
            "/oauth/token",
            "grant_type=password&username=alice",
            Some(("pw", SECRET)),
        )
        .await;
    assert_eq!(error_triple(&r).1, "invalid_request");
    assert_eq!(
        error_triple(&env.password("alice", PASSWORD, "admin").await).1,
        "invalid_scope"
    );
    // Client authentication still comes first.
    let r = env
        .post(
            "/oauth/token",
            &form,
            Some(("pw", "wrong-secret-wrong-secret-wrong-secret")),
        )
        .await;
    assert_eq!(error_triple(&r).0, 401);
}

#[tokio::test]
async fn password_failures_back_off_per_user_and_then_clear() {
    let env = Env::new(200).await;
    for _ in 0..5 {
        assert!(
            error_triple(&env.password("alice", "guess", "api").await)
                .2
                .contains("wrong")
        );
    }
    // The sixth failure starts a wait that even the right password must respect.
    let sixth = error_triple(&env.password("alice", "guess", "api").await);
    assert!(sixth.2.contains("wrong"), "{sixth:?}");
    let held = error_triple(&env.password("alice", PASSWORD, "api").await);
    assert_eq!(held.1, "invalid_grant");
    assert!(held.2.contains("try again in 1 second"), "{held:?}");
    // Each further failure doubles it.
    env.advance(1);
    assert!(
        error_triple(&env.password("alice", "guess", "api").await)
            .2
            .contains("wrong")
    );
    let held = error_triple(&env.password("alice", PASSWORD, "api").await);
    assert!(held.2.contains("try again in 2 seconds"), "{held:?}");
    // Another user is not held.
    env.tokens("bob", "api").await;
    env.advance(2);
    env.tokens("alice", "api").await;
    // Success cleared the counter: five free tries again.
    for _ in 0..5 {
        assert!(
            error_triple(&env.password("alice", "guess", "api").await)
                .2
                .contains("wrong")
        );
    }
}

#[tokio::test]
async fn password_failures_back_off_per_client() {
    let env = Env::new(200).await;
    // Twenty-one failures spread over many usernames and addresses
    // (credential stuffing through one client).
    let stuff = |i: u32, user: &str, password: &str| {
        let form = format!(
            "grant_type=password&username={user}&password={}&scope=api",
            enc(password)
        );
        let req = basic(post("/oauth/token", &form, ""), "pw", SECRET);
        env.token.handle(from(req, &format!("203.0.113.{i}")))
    };
    for i in 0..21 {
        let r = stuff(i, &format!("user{i}"), "guess").await;
        assert!(error_triple(&r).2.contains("wrong"));
    }
    let held = error_triple(&stuff(99, "bob", PASSWORD).await);
    assert!(held.2.contains("try again"), "{held:?}");
    // Another client is not held.
    let form = format!(
        "grant_type=password&client_id=app&username=bob&password={}",
        enc(PASSWORD)
    );
    assert_eq!(env.post("/oauth/token", &form, None).await.status(), 200);
}

#[tokio::test]
async fn password_grant_refuses_users_and_clients_that_need_a_second_factor() {
    let env = Env::new(200).await;
    env.services.enroll_mfa("alice").await.unwrap();
    let (_, code, description) = error_triple(&env.password("alice", PASSWORD, "api").await);
    assert_eq!(code, "invalid_grant");
    assert!(
        description.contains("two-step verification"),
        "{description}"
    );
    // A wrong password says nothing about the second factor.
    let (_, _, wrong) = error_triple(&env.password("alice", "guess", "api").await);
    assert!(!wrong.contains("two-step"), "{wrong}");

    env.services.reset_mfa("alice").await.unwrap();
    env.tokens("alice", "api").await;
    env.services.set_require_mfa("pw", true).await.unwrap();
    let (_, _, description) = error_triple(&env.password("bob", PASSWORD, "api").await);
    assert!(
        description.contains("two-step verification"),
        "{description}"
    );
}

// ---------------------------------------------------- MFA and the grant cap

/// A grant of `user` for `client` made with a second factor, and its first
/// refresh token, written as the token endpoint would after an OTP sign-in.
async fn mfa_grant(env: &Env, user: &str, client: &str, secret: &str) {
    let now = env.clock.now();
    let user_id = env
        .services
        .store
        .find_user(user)
        .await
        .unwrap()
        .unwrap()
        .id;
    let grant = Grant {
        id: format!("mfa-{user}"),
        user_id,
        client_id: client.into(),
        scopes: Scopes::parse("openid offline_access").unwrap(),
        auth_time: now,
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        created_at: now,
        expires_at: now + 10_000,
        revoked_at: None,
        last_used_at: now,
    };
    let first = RefreshToken::issue(hash(secret), &grant, 1_000, now);
    env.services
        .store
        .create_grant(&grant, Some(&first))
        .await
        .unwrap();
}

#[tokio::test]
async fn requiring_mfa_stops_refresh_tokens_of_grants_made_without_it() {
    let env = Env::new(200).await;
    let without = env.tokens("alice", "openid offline_access").await;
    let rt = without["refresh_token"].as_str().unwrap().to_owned();
    let with = "refresh-token-of-a-grant-made-with-mfa-0123456789";
    mfa_grant(&env, "bob", "pw", with).await;

    env.services.set_require_mfa("pw", true).await.unwrap();
    let (status, code, description) = error_triple(&env.refresh(&rt).await);
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
    assert!(
        description.contains("authorization endpoint again"),
        "{description}"
    );
    let r = env.refresh(with).await;
    assert_eq!(
        r.status(),
        200,
        "a grant made with MFA keeps working: {}",
        body(&r)
    );
    // Introspection agrees.
    assert_eq!(env.introspect(&rt, ("pw", SECRET)).await["active"], false);

    // Undone: the refused token was not consumed, so it works again.
    env.services.set_require_mfa("pw", false).await.unwrap();
    assert_eq!(env.refresh(&rt).await.status(), 200);
}

#[tokio::test]
async fn a_refresh_token_from_before_locators_still_works() {
    let env = Env::new(200).await;
    // Written as tokenfn wrote refresh tokens before they carried a locator:
    // a bare random value, stored under its bare hash.
    let old = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6";
    mfa_grant(&env, "bob", "pw", old).await;
    let r = env.refresh(old).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let next = json(&r)["refresh_token"].as_str().unwrap().to_owned();
    let (locator, secret) = next.split_once('.').expect("a locator");
    assert!(
        locator.len() == 14 && u64::from_str_radix(locator, 16).is_ok(),
        "{next}"
    );
    assert_eq!(secret.len(), 43);
    assert_eq!(env.introspect(&next, ("pw", SECRET)).await["active"], true);
    // The old one was consumed by that rotation: using it again is reuse.
    let (_, code, _) = error_triple(&env.refresh(old).await);
    assert_eq!(code, "invalid_grant");
}

#[tokio::test]
async fn a_new_grant_beyond_the_cap_revokes_the_oldest() {
    let env = Env::new(3).await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let t = env.tokens("alice", "offline_access").await;
        tokens.push(t["refresh_token"].as_str().unwrap().to_owned());
        env.advance(1);
    }
    let (_, code, _) = error_triple(&env.refresh(&tokens[0]).await);
    assert_eq!(code, "invalid_grant", "the oldest grant was revoked");
    for rt in &tokens[1..] {
        assert_eq!(env.refresh(rt).await.status(), 200);
    }
    // Per user and client: bob's grants are his own.
    let t = env.tokens("bob", "offline_access").await;
    assert_eq!(
        env.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let alice = env.services.grants_of("alice").await.unwrap();
    assert_eq!(alice.len(), 3);
}

// ------------------------------------------------------------- introspection

#[tokio::test]
async fn introspection_describes_live_tokens_and_nothing_else() {
    let env = Env::new(200).await;
    let t = env.tokens("alice", "openid offline_access api").await;
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();

    // A resource server describes the access token.
    let i = env.introspect(at, ("rs", RS_SECRET)).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["client_id"], "pw");
    assert_eq!(i["scope"], "api offline_access openid");
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(i["iss"], ISSUER);
    assert_eq!(i["sub"], claims(at)["sub"]);
    assert_eq!(i["exp"], T0 + 300);
    // The holder describes its refresh token; another client learns nothing.
    let i = env.introspect(rt, ("pw", SECRET)).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["token_type"], "refresh_token");
    assert_eq!(i["exp"], T0 + 1_000, "the idle expiry comes first");
    assert_eq!(
        env.introspect(rt, ("rs", RS_SECRET)).await,
        serde_json::json!({"active": false})
    );

    // Unknown, malformed and tampered tokens are inactive.
    for junk in ["nope", "a.b.c", &format!("{at}x")] {
        assert_eq!(
            env.introspect(junk, ("rs", RS_SECRET)).await["active"],
            false,
            "{junk}"
        );
    }
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    let mut forged = claims(at);
    forged["scope"] = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    assert_eq!(
        env.introspect(&parts.join("."), ("rs", RS_SECRET)).await["active"],
        false
    );
    // alg none is refused.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );
    assert_eq!(
        env.introspect(&none, ("rs", RS_SECRET)).await["active"],
        false
    );
    // An ID token is not an access token.
    let id = t["id_token"].as_str().unwrap();
    assert_eq!(env.introspect(id, ("rs", RS_SECRET)).await["active"], false);

    // A rotated refresh token is inactive, its successor active.
    let next = json(&env.refresh(rt).await)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env.introspect(rt, ("pw", SECRET)).await["active"], false);
    assert_eq!(env.introspect(&next, ("pw", SECRET)).await["active"], true);

    // Revoking the grant kills both its refresh token and its access tokens.
    let r = env
        .post(
            "/oauth/revoke",
            &format!("token={next}"),
            Some(("pw", SECRET)),
        )
        .await;
    assert_eq!(
        r.status(),
        404,
        "revocation is the revoke function's, not this router's"
    );
    env.revoke_grant_of(at).await;
    assert_eq!(env.introspect(at, ("rs", RS_SECRET)).await["active"], false);
    assert_eq!(env.introspect(&next, ("pw", SECRET)).await["active"], false);
}

#[tokio::test]
async fn introspection_sees_expiry_and_client_credentials_tokens() {
    let env = Env::new(200).await;
    let r = env
        .post(
            "/oauth/token",
            "grant_type=client_credentials",
            Some(("rs", RS_SECRET)),
        )
        .await;
    let cc = json(&r)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(env.introspect(&cc, ("pw", SECRET)).await["active"], true);
    let t = env.tokens("alice", "api offline_access").await;
    env.advance(300);
    assert_eq!(
        env.introspect(t["access_token"].as_str().unwrap(), ("rs", RS_SECRET))
            .await["active"],
        false
    );
    assert_eq!(env.introspect(&cc, ("pw", SECRET)).await["active"], false);
    env.advance(700);
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(
        env.introspect(rt, ("pw", SECRET)).await["active"],
        false,
        "idle-expired"
    );
}

#[tokio::test]
async fn introspection_needs_an_authenticated_client() {
    let env = Env::new(200).await;
    let t = env.tokens("alice", "api").await;
    let at = t["access_token"].as_str().unwrap();
    let r = env
        .post(
            "/oauth/introspect",
            &format!("token={at}&client_id=app"),
            None,
        )
        .await;
    assert_eq!(error_triple(&r).0, 401);
    assert_eq!(error_triple(&r).1, "invalid_client");
    let r = env
        .post("/oauth/introspect", &format!("token={at}"), None)
        .await;
    assert_eq!(error_triple(&r).1, "invalid_client");
    let r = env
        .post(
            "/oauth/introspect",
            &format!("token={at}"),
            Some(("rs", "wrong-secret-wrong-secret-wrong")),
        )
        .await;
    assert_eq!(error_triple(&r).0, 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = env
        .post("/oauth/introspect", "", Some(("rs", RS_SECRET)))
        .await;
    assert_eq!(error_triple(&r).1, "invalid_request");
}

// ------------------------------------------------------------------ UserInfo

#[tokio::test]
async fn userinfo_gives_the_claims_the_scopes_allow() {
    let env = Env::new(200).await;
    let t = env.tokens("alice", "openid profile email").await;
    let at = t["access_token"].as_str().unwrap();
    let r = env.userinfo(at).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    assert_eq!(r.headers()["cache-control"], "no-store");
    let info = json(&r);
    assert_eq!(info["sub"], claims(at)["sub"]);
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["email_verified"], false);

    let t = env.tokens("alice", "openid").await;
    let info = json(&env.userinfo(t["access_token"].as_str().unwrap()).await);
    assert_eq!(info.as_object().unwrap().len(), 1, "only sub: {info}");

    // POST with the token in the body (RFC 6750 §2.2).
    let r = env
        .post("/userinfo", &format!("access_token={at}"), None)
        .await;
    assert_eq!(json(&r)["preferred_username"], "alice");
}

#[tokio::test]
async fn userinfo_bearer_errors() {
    let env = Env::new(200).await;
    let challenge = |r: &Response| r.headers()["www-authenticate"].to_str().unwrap().to_owned();

    let r = env
        .token
        .handle(
            http::Request::builder()
                .uri("/userinfo")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"tokenfn\"",
        "no error code without a token"
    );

    let r = env.userinfo("not-a-token").await;
    assert_eq!(r.status(), 401);
    assert!(
        challenge(&r).contains("error=\"invalid_token\""),
        "{}",
        challenge(&r)
    );

    let t = env.tokens("alice", "api offline_access").await;
    let r = env.userinfo(t["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("error=\"insufficient_scope\""));
    assert!(challenge(&r).contains("scope=\"openid\""));

    let t = env.tokens("alice", "openid offline_access").await;
    let at = t["access_token"].as_str().unwrap();
    let mut req = post("/userinfo", &format!("access_token={at}"), "");
    req.headers_mut()
        .insert("authorization", format!("Bearer {at}").parse().unwrap());
    assert_eq!(
        env.token.handle(req).await.status(),
        400,
        "one way, not two"
    );

    // Revoked grant, then expiry.
    env.revoke_grant_of(at).await;
    assert_eq!(env.userinfo(at).await.status(), 401);
    let t = env.tokens("alice", "openid").await;
    env.advance(300);
    let r = env.userinfo(t["access_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"));
}
