//! The routers driven with real requests on the embedded store, with a
//! clock the test moves: the rules that need time to pass (code and token
//! lifetimes, reuse leeway) and the protocol errors of every endpoint.

mod support;

use support::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use tokenfn_core::config::Config;
use tokenfn_core::domain::client::Lifetimes;
use tokenfn_core::domain::secret::{b64url, sha256};
use tokenfn_core::domain::{GrantType, Scopes};
use tokenfn_core::http::Response;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::http::discovery::DiscoveryRouter;
use tokenfn_core::http::refresh::RefreshRouter;
use tokenfn_core::http::revoke::RevokeRouter;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::service::Services;
use tokenfn_core::service::admin::NewClient;
use tokenfn_core::sign::LocalSigner;
use tokenfn_core::store::SqliteStore;

const WEB_SECRET: &str = "web-secret-web-secret-web-secret-0123";
const CB: &str = "https://app.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Env {
    clock: Arc<TestClock>,
    authorize: AuthorizeRouter,
    token: TokenRouter,
    refresh: RefreshRouter,
    revoke: RevokeRouter,
    discovery: DiscoveryRouter,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(leeway: i64) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = LocalSigner::load_or_create(dir.path()).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000)));
        let services = Arc::new(Services::new(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Arc::new(signer),
            clock.clone(),
            Config::new(ISSUER),
        ));
        let lifetimes = Lifetimes {
            access_token: 300,
            refresh_absolute: 10_000,
            refresh_idle: 1_000,
            reuse_leeway: leeway,
        };
        let scopes = Scopes::parse("openid profile email offline_access api").unwrap();
        for (id, secret) in [("web", Some(WEB_SECRET)), ("mobile", None)] {
            let mut grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
            if secret.is_some() {
                grant_types.push(GrantType::ClientCredentials);
            }
            services
                .add_client(NewClient {
                    id: id.into(),
                    name: Some(format!("The {id} app")),
                    redirect_uris: vec![CB.into()],
                    secret: secret.map(str::to_owned),
                    grant_types,
                    scopes: scopes.clone(),
                    lifetimes,
                })
                .await
                .unwrap();
        }
        services
            .add_user("alice", "correct horse battery", None)
            .await
            .unwrap();
        Env {
            clock,
            authorize: AuthorizeRouter::new(services.clone()),
            token: TokenRouter::new(services.clone()),
            refresh: RefreshRouter::new(services.clone()),
            revoke: RevokeRouter::new(services.clone()),
            discovery: DiscoveryRouter::new(services),
            _dir: dir,
        }
    }

    fn advance(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Signs alice in and allows, returning the code from the redirect.
    async fn code(&self, client: &str, scope: &str, cookie: &mut String) -> String {
        let mut q = format!(
            "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&state=s1&nonce=n1",
            enc(CB),
            enc(scope)
        );
        if client == "mobile" {
            q.push_str(&format!(
                "&code_challenge={CHALLENGE}&code_challenge_method=S256"
            ));
        }
        let resp = self.authorize.handle(get(&q, cookie)).await;
        absorb_cookies(&resp, cookie);
        if resp.status() == 302 {
            return code_from(&resp);
        }
        let mut page = body(&resp);
        if page.contains("action=\"/login\"") {
            let form = format!(
                "interaction={}&csrf={}&username=alice&password=correct+horse+battery",
                hidden(&page, "interaction"),
                hidden(&page, "csrf")
            );
            let resp = self.authorize.handle(post("/login", &form, cookie)).await;
            absorb_cookies(&resp, cookie);
            if resp.status() == 303 {
                return code_from(&resp);
            }
            page = body(&resp);
        }
        assert!(page.contains("action=\"/consent\""), "{page}");
        let form = format!(
            "interaction={}&csrf={}&decision=allow",
            hidden(&page, "interaction"),
            hidden(&page, "csrf")
        );
        let resp = self.authorize.handle(post("/consent", &form, cookie)).await;
        code_from(&resp)
    }

    async fn exchange(&self, client: &str, code: &str) -> Response {
        let mut form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}",
            enc(CB)
        );
        if client == "mobile" {
            form.push_str(&format!("&client_id=mobile&code_verifier={VERIFIER}"));
            self.token.handle(post("/oauth/token", &form, "")).await
        } else {
            self.token
                .handle(basic(post("/oauth/token", &form, ""), "web", WEB_SECRET))
                .await
        }
    }

    async fn refresh_at(&self, path: &str, rt: &str, extra: &str) -> Response {
        let form = format!("grant_type=refresh_token&refresh_token={rt}{extra}");
        let req = basic(post(path, &form, ""), "web", WEB_SECRET);
        if path == "/oauth/refresh" {
            self.refresh.handle(req).await
        } else {
            self.token.handle(req).await
        }
    }

    async fn tokens(&self, scope: &str) -> Value {
        let mut cookie = String::new();
        let code = self.code("web", scope, &mut cookie).await;
        let resp = self.exchange("web", &code).await;
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        json(&resp)
    }
}

fn code_from(resp: &Response) -> String {
    assert!(
        resp.status().is_redirection(),
        "{}: {}",
        resp.status(),
        body(resp)
    );
    assert_eq!(param(resp, "iss").as_deref(), Some(ISSUER));
    assert_eq!(param(resp, "state").as_deref(), Some("s1"));
    param(resp, "code").unwrap_or_else(|| panic!("no code in {}", location(resp)))
}

#[tokio::test]
async fn the_whole_life_of_a_refresh_token() {
    let env = Env::new(0).await;
    let t = env.tokens("openid offline_access api").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n1");
    assert_eq!(id["aud"], "web");
    // No at_hash: optional at the token endpoint, and it would cost a KMS round.
    assert!(id.get("at_hash").is_none());
    let at = t["access_token"].as_str().unwrap();
    let access = claims(at);
    assert_eq!(access["scope"], "api offline_access openid");
    assert_eq!(
        access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap(),
        300
    );

    // Rotation, with a new ID token that keeps auth_time and drops the nonce.
    env.advance(100);
    let rt1 = t["refresh_token"].as_str().unwrap();
    let r = env.refresh_at("/oauth/token", rt1, "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t2 = json(&r);
    let id2 = claims(t2["id_token"].as_str().unwrap());
    assert_eq!(id2["auth_time"], id["auth_time"]);
    assert_eq!(id2["sub"], id["sub"]);
    assert_eq!(
        id2["iat"].as_i64().unwrap(),
        id["iat"].as_i64().unwrap() + 100
    );
    assert!(id2.get("nonce").is_none());
    assert!(id2.get("at_hash").is_none());
    let rt2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);

    // The refresh function does the same without grant_type.
    let form = format!("refresh_token={rt2}&scope=api");
    let r = env
        .refresh
        .handle(basic(post("/oauth/refresh", &form, ""), "web", WEB_SECRET))
        .await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let t3 = json(&r);
    assert_eq!(t3["scope"], "api");
    let rt3 = t3["refresh_token"].as_str().unwrap();

    // Reuse of rt1 kills the family, rt3 included.
    let r = env.refresh_at("/oauth/token", rt1, "").await;
    assert_eq!(error_of(&r), "invalid_grant");
    let r = env.refresh_at("/oauth/token", rt3, "").await;
    assert_eq!(error_of(&r), "invalid_grant");
}

#[tokio::test]
async fn codes_expire_after_sixty_seconds_and_are_bound_to_their_client() {
    let env = Env::new(0).await;
    let mut cookie = String::new();
    let code = env.code("web", "openid", &mut cookie).await;
    env.advance(61);
    assert_eq!(error_of(&env.exchange("web", &code).await), "invalid_grant");

    let code = env.code("web", "openid", &mut cookie).await;
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}",
        enc(CB)
    );
    let r = env
        .token
        .handle(post(
            "/oauth/token",
            &format!("{form}&client_id=mobile"),
            "",
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_grant");
    let other_cb = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}",
        enc("https://app.example/other")
    );
    let r = env
        .token
        .handle(basic(
            post("/oauth/token", &other_cb, ""),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_grant");
}

#[tokio::test]
async fn idle_and_absolute_lifetimes_end_refresh() {
    let env = Env::new(0).await;
    let t = env.tokens("openid offline_access").await;
    env.advance(1_001);
    let r = env
        .refresh_at("/oauth/token", t["refresh_token"].as_str().unwrap(), "")
        .await;
    assert_eq!(error_of(&r), "invalid_grant");

    // Rotating every 900 s keeps a chain alive until the absolute lifetime.
    let t = env.tokens("openid offline_access").await;
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    let mut rotations = 0;
    loop {
        env.advance(900);
        let r = env.refresh_at("/oauth/token", &rt, "").await;
        if r.status() != 200 {
            assert_eq!(error_of(&r), "invalid_grant");
            break;
        }
        rt = json(&r)["refresh_token"].as_str().unwrap().to_owned();
        rotations += 1;
    }
    assert_eq!(rotations, 10_000 / 900);
}

#[tokio::test]
async fn reuse_leeway_lets_only_the_previous_token_through_in_time() {
    let env = Env::new(10).await;
    let t = env.tokens("openid offline_access").await;
    let rt1 = t["refresh_token"].as_str().unwrap();
    let rt2 = json(&env.refresh_at("/oauth/token", rt1, "").await)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    env.advance(5);
    // The response with rt2 was lost: rt1 works once more within 10 s.
    let r = env.refresh_at("/oauth/token", rt1, "").await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let rt3 = json(&r)["refresh_token"].as_str().unwrap().to_owned();
    let r = env.refresh_at("/oauth/token", &rt3, "").await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let rt4 = json(&r)["refresh_token"].as_str().unwrap().to_owned();
    // Two steps back is theft even within the leeway.
    let r = env.refresh_at("/oauth/token", &rt2, "").await;
    assert_eq!(error_of(&r), "invalid_grant");
    assert_eq!(
        error_of(&env.refresh_at("/oauth/token", &rt4, "").await),
        "invalid_grant"
    );

    // Outside the leeway the previous token is reuse too.
    let t = env.tokens("openid offline_access").await;
    let rt1 = t["refresh_token"].as_str().unwrap();
    let rt2 = json(&env.refresh_at("/oauth/token", rt1, "").await)["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    env.advance(11);
    assert_eq!(
        error_of(&env.refresh_at("/oauth/token", rt1, "").await),
        "invalid_grant"
    );
    assert_eq!(
        error_of(&env.refresh_at("/oauth/token", &rt2, "").await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn public_clients_use_pkce_and_no_secret() {
    let env = Env::new(0).await;
    let mut cookie = String::new();
    let code = env
        .code("mobile", "openid offline_access", &mut cookie)
        .await;
    let r = env.exchange("mobile", &code).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let rt = json(&r)["refresh_token"].as_str().unwrap().to_owned();
    let form = format!("grant_type=refresh_token&refresh_token={rt}&client_id=mobile");
    let r = env.token.handle(post("/oauth/token", &form, "")).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    // The confidential client cannot use the mobile app's token.
    let rt = json(&r)["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        error_of(&env.refresh_at("/oauth/token", &rt, "").await),
        "invalid_grant"
    );

    // Wrong verifier.
    let code = env.code("mobile", "openid", &mut cookie).await;
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id=mobile&code_verifier={}",
        enc(CB),
        "x".repeat(43)
    );
    assert_eq!(
        error_of(&env.token.handle(post("/oauth/token", &form, "")).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn browser_sessions_consent_and_prompts() {
    let env = Env::new(0).await;
    let mut cookie = String::new();
    env.code("web", "openid email", &mut cookie).await;
    // Same browser, consented scopes, no offline_access: straight back with a code.
    let q = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    let r = env.authorize.handle(get(&q, &cookie)).await;
    code_from(&r);
    // offline_access always asks.
    let q2 = q.replace("scope=openid", "scope=openid+offline_access");
    let r = env.authorize.handle(get(&q2, &cookie)).await;
    assert!(body(&r).contains("Stay signed in"));
    // prompt=login shows the login page despite the session.
    let r = env
        .authorize
        .handle(get(&format!("{q}&prompt=login"), &cookie))
        .await;
    assert!(body(&r).contains("action=\"/login\""));
    // prompt=none: fine with a session, login_required without one.
    let r = env
        .authorize
        .handle(get(&format!("{q}&prompt=none"), &cookie))
        .await;
    code_from(&r);
    let r = env
        .authorize
        .handle(get(&format!("{q}&prompt=none"), ""))
        .await;
    assert_eq!(param(&r, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&r, "state").as_deref(), Some("s1"));
    // max_age=0 means sign in again.
    let r = env
        .authorize
        .handle(get(&format!("{q}&max_age=0"), &cookie))
        .await;
    assert!(body(&r).contains("action=\"/login\""));
}

#[tokio::test]
async fn forms_refuse_forged_posts_and_wrong_passwords_say_one_thing() {
    let env = Env::new(0).await;
    let mut cookie = String::new();
    let q = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid",
        enc(CB)
    );
    let resp = env.authorize.handle(get(&q, "")).await;
    absorb_cookies(&resp, &mut cookie);
    let page = body(&resp);
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly; SameSite=Lax; Secure")
    );
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let (i, c) = (hidden(&page, "interaction"), hidden(&page, "csrf"));
    let good = format!("interaction={i}&csrf={c}&username=alice&password=correct+horse+battery");
    // Another browser (no binding cookie), or a wrong CSRF token: refused.
    let r = env.authorize.handle(post("/login", &good, "")).await;
    assert_eq!(r.status(), 403);
    let forged =
        format!("interaction={i}&csrf=forged&username=alice&password=correct+horse+battery");
    assert_eq!(
        env.authorize
            .handle(post("/login", &forged, &cookie))
            .await
            .status(),
        403
    );
    // Unknown user and wrong password read the same.
    let unknown = format!("interaction={i}&csrf={c}&username=mallory&password=whatever1");
    let wrong = format!("interaction={i}&csrf={c}&username=alice&password=whatever1");
    let a = body(
        &env.authorize
            .handle(post("/login", &unknown, &cookie))
            .await,
    );
    let b = body(&env.authorize.handle(post("/login", &wrong, &cookie)).await);
    assert!(a.contains("The username or password is incorrect."));
    // Byte for byte the same page, but for the username typed, shown again.
    let a = a.replace("value=\"mallory\"", "value=\"TYPED\"");
    let b = b.replace("value=\"alice\"", "value=\"TYPED\"");
    assert!(a.contains("value=\"TYPED\""));
    assert_eq!(a, b);
    // The interaction expires with its page.
    env.advance(601);
    assert_eq!(
        env.authorize
            .handle(post("/login", &good, &cookie))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn untrusted_redirects_get_a_page_and_the_rest_get_redirected_errors() {
    let env = Env::new(0).await;
    for q in [
        "/authorize?response_type=code&client_id=nobody&redirect_uri=https%3A%2F%2Fapp.example%2Fcb".to_owned(),
        "/authorize?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fevil.example%2Fcb".to_owned(),
        "/authorize?response_type=code&client_id=web&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%2F".to_owned(),
        "/authorize?response_type=code&client_id=web".to_owned(),
    ] {
        let r = env.authorize.handle(get(&q, "")).await;
        assert_eq!(r.status(), 400, "{q}");
        assert!(r.headers().get("location").is_none());
    }
    let base = format!(
        "/authorize?client_id=mobile&redirect_uri={}&state=s1",
        enc(CB)
    );
    for (extra, code) in [
        (
            "&response_type=token&scope=openid",
            "unsupported_response_type",
        ),
        ("&response_type=code&scope=openid", "invalid_request"),
        (
            &format!(
                "&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=plain"
            ) as &str,
            "invalid_request",
        ),
        (
            &format!(
                "&response_type=code&scope=admin&code_challenge={CHALLENGE}&code_challenge_method=S256"
            ),
            "invalid_scope",
        ),
    ] {
        let r = env
            .authorize
            .handle(get(&format!("{base}{extra}"), ""))
            .await;
        assert_eq!(r.status(), 302);
        assert_eq!(param(&r, "error").as_deref(), Some(code), "{extra}");
        assert_eq!(param(&r, "state").as_deref(), Some("s1"));
        assert_eq!(param(&r, "iss").as_deref(), Some(ISSUER));
    }
    // Deny at the consent page.
    let mut cookie = String::new();
    let q = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    let resp = env.authorize.handle(get(&q, "")).await;
    absorb_cookies(&resp, &mut cookie);
    let page = body(&resp);
    let form = format!(
        "interaction={}&csrf={}&username=alice&password=correct+horse+battery",
        hidden(&page, "interaction"),
        hidden(&page, "csrf")
    );
    let resp = env.authorize.handle(post("/login", &form, &cookie)).await;
    absorb_cookies(&resp, &mut cookie);
    let page = body(&resp);
    let form = format!(
        "interaction={}&csrf={}&decision=deny",
        hidden(&page, "interaction"),
        hidden(&page, "csrf")
    );
    let r = env.authorize.handle(post("/consent", &form, &cookie)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(param(&r, "error").as_deref(), Some("access_denied"));
}

/// RFC 9700 §4.16 (clickjacking) and §4.2, §4.3 (codes leaking through the
/// Referer header or caches): every page forbids framing, sends no referrer
/// and is not stored; so is the redirect that carries the code.
#[tokio::test]
async fn pages_and_code_redirects_resist_framing_referrers_and_caches() {
    let env = Env::new(0).await;
    let header = |r: &Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let page_headers = |r: &Response, what: &str| {
        assert_eq!(header(r, "x-frame-options"), "DENY", "{what}");
        assert!(
            header(r, "content-security-policy").contains("frame-ancestors 'none'"),
            "{what}"
        );
        assert_eq!(header(r, "referrer-policy"), "no-referrer", "{what}");
        assert_eq!(header(r, "cache-control"), "no-store", "{what}");
    };
    let mut cookie = String::new();
    let q = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    let login = env.authorize.handle(get(&q, &cookie)).await;
    absorb_cookies(&login, &mut cookie);
    page_headers(&login, "login page");
    let page = body(&login);
    let form = format!(
        "interaction={}&csrf={}&username=alice&password=correct+horse+battery",
        hidden(&page, "interaction"),
        hidden(&page, "csrf")
    );
    let consent = env.authorize.handle(post("/login", &form, &cookie)).await;
    absorb_cookies(&consent, &mut cookie);
    page_headers(&consent, "consent page");
    let page = body(&consent);
    let form = format!(
        "interaction={}&csrf={}&decision=allow",
        hidden(&page, "interaction"),
        hidden(&page, "csrf")
    );
    let redirect = env.authorize.handle(post("/consent", &form, &cookie)).await;
    assert_eq!(redirect.status(), 303, "303, never 307, after a POST");
    assert!(param(&redirect, "code").is_some());
    assert_eq!(header(&redirect, "referrer-policy"), "no-referrer");
    assert_eq!(header(&redirect, "cache-control"), "no-store");
    let error = env.authorize.handle(get("/authorize", "")).await;
    assert_eq!(error.status(), 400);
    page_headers(&error, "error page");
}

/// RFC 9700 §4.15: a client's own token never passes for a user's. The
/// client_credentials grant refuses `openid` (and `offline_access`), and
/// its access token gets no UserInfo even though its `sub` is set.
#[tokio::test]
async fn client_credentials_tokens_speak_for_no_user() {
    let env = Env::new(0).await;
    for scope in ["openid", "offline_access", "openid api"] {
        let form = format!("grant_type=client_credentials&scope={}", enc(scope));
        let r = env
            .token
            .handle(basic(post("/oauth/token", &form, ""), "web", WEB_SECRET))
            .await;
        assert_eq!(error_of(&r), "invalid_scope", "{scope}");
    }
    let r = env
        .token
        .handle(basic(
            post("/oauth/token", "grant_type=client_credentials", ""),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let at = json(&r)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&at)["sub"], "web");
    assert!(!claims(&at)["scope"].as_str().unwrap().contains("openid"));
    let mut req = get("/userinfo", "");
    req.headers_mut()
        .insert("authorization", format!("Bearer {at}").parse().unwrap());
    let r = env.token.handle(req).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
}

/// RFC 9700 §4.8 (PKCE downgrade): a `code_verifier` for a code whose
/// authorization request carried no `code_challenge` is refused, and the
/// code can then still be redeemed by the client that asked for it.
#[tokio::test]
async fn a_verifier_for_a_code_without_a_challenge_is_refused() {
    let env = Env::new(0).await;
    let mut cookie = String::new();
    // web (confidential) asks without PKCE.
    let code = env.code("web", "openid", &mut cookie).await;
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(CB)
    );
    let r = env
        .token
        .handle(basic(post("/oauth/token", &form, ""), "web", WEB_SECRET))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(&r), "invalid_grant");
    let r = env.exchange("web", &code).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
}

/// RFC 6749 §4.1.2.1: `error_description` holds only printable ASCII
/// without `"` and `\`. An unsupported `prompt` value is named in it only
/// when it is made of those characters (found with schemathesis' inputs:
/// the raw value used to be echoed whatever it held).
#[tokio::test]
async fn redirected_error_descriptions_keep_to_the_rfc_characters() {
    let env = Env::new(0).await;
    let base = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    for (prompt, named) in [("%22%C3%A9%5C", false), ("bogus", true), ("a%0Ab", false)] {
        let r = env
            .authorize
            .handle(get(&format!("{base}&prompt={prompt}"), ""))
            .await;
        assert_eq!(r.status(), 302, "{prompt}");
        assert_eq!(param(&r, "error").as_deref(), Some("invalid_request"));
        let description = param(&r, "error_description").expect("error_description");
        assert!(
            description
                .bytes()
                .all(tokenfn_core::domain::error::description_byte),
            "{prompt}: {description:?}"
        );
        assert!(description.starts_with("unsupported prompt value"));
        assert_eq!(description.contains("bogus"), named, "{description}");
    }
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc6749_section_5_2() {
    let env = Env::new(0).await;
    let t = |form: &str| post("/oauth/token", form, "");
    let r = env
        .token
        .handle(basic(
            t("grant_type=client_credentials"),
            "web",
            "wrong-secret",
        ))
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(error_of(&r), "invalid_client");
    assert!(r.headers().contains_key("www-authenticate"));
    let r = env
        .token
        .handle(t(
            "grant_type=client_credentials&client_id=web&client_secret=nope",
        ))
        .await;
    assert_eq!(
        (r.status().as_u16(), error_of(&r)),
        (401, "invalid_client".into())
    );
    assert!(!r.headers().contains_key("www-authenticate"));
    let r = env
        .token
        .handle(basic(
            t("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(error_of(&r), "unsupported_grant_type");
    let r = env
        .token
        .handle(basic(t("code=x"), "web", WEB_SECRET))
        .await;
    assert_eq!(error_of(&r), "invalid_request");
    let r = env
        .token
        .handle(basic(t("grant_type=refresh_token"), "web", WEB_SECRET))
        .await;
    assert_eq!(error_of(&r), "invalid_request");
    let r = env
        .token
        .handle(basic(
            t("grant_type=refresh_token&refresh_token=nope"),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_grant");
    let r = env
        .token
        .handle(basic(
            t("grant_type=client_credentials&grant_type=client_credentials"),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_request");
    let mut json_body = t("{}");
    json_body
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    assert_eq!(
        error_of(&env.token.handle(basic(json_body, "web", WEB_SECRET)).await),
        "invalid_request"
    );
    let r = env.token.handle(get("/oauth/token", "")).await;
    assert_eq!(r.status(), 405);
    // The refresh function serves nothing but refresh.
    let r = env
        .refresh
        .handle(basic(
            post("/oauth/refresh", "grant_type=client_credentials", ""),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(error_of(&r), "unsupported_grant_type");
    // client_credentials: no user scopes.
    let r = env
        .token
        .handle(basic(
            t("grant_type=client_credentials&scope=openid"),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_scope");
    let r = env
        .token
        .handle(basic(
            t("grant_type=client_credentials&scope=api"),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        claims(json(&r)["access_token"].as_str().unwrap())["sub"],
        "web"
    );
    // Widening at refresh.
    let tk = env.tokens("openid offline_access").await;
    let r = env
        .refresh_at(
            "/oauth/token",
            tk["refresh_token"].as_str().unwrap(),
            "&scope=openid+api",
        )
        .await;
    assert_eq!(error_of(&r), "invalid_scope");
}

#[tokio::test]
async fn revocation_kills_the_grant_and_accepts_unknown_tokens() {
    let env = Env::new(0).await;
    let t = env.tokens("openid offline_access").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let r = env
        .revoke
        .handle(basic(
            post("/oauth/revoke", "token=unknown", ""),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(r.status(), 200);
    let r = env
        .revoke
        .handle(post(
            "/oauth/revoke",
            &format!("token={rt}&client_id=mobile"),
            "",
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_grant");
    let r = env
        .revoke
        .handle(basic(
            post(
                "/oauth/revoke",
                &format!("token={rt}&token_type_hint=refresh_token"),
                "",
            ),
            "web",
            WEB_SECRET,
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        error_of(&env.refresh_at("/oauth/token", rt, "").await),
        "invalid_grant"
    );
    let r = env
        .revoke
        .handle(post("/oauth/revoke", "token=x", ""))
        .await;
    assert_eq!(error_of(&r), "invalid_client");
}

#[tokio::test]
async fn discovery_and_jwks_need_no_store() {
    let env = Env::new(0).await;
    let r = env
        .discovery
        .handle(get("/.well-known/openid-configuration", ""))
        .await;
    let m = json(&r);
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["token_endpoint"], format!("{ISSUER}/oauth/token"));
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let jwks = json(
        &env.discovery
            .handle(get("/.well-known/jwks.json", ""))
            .await,
    );
    let key = &jwks["keys"][0];
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        key["x"].as_str().unwrap(),
        key["y"].as_str().unwrap()
    );
    assert_eq!(key["kid"], b64url(&sha256(canonical.as_bytes())));
}
