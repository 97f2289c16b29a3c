//! The playground's server side through the authorize and token routers:
//! off unless configured, its own public client registered on first view,
//! introspection of that client's tokens only; and the request id on every
//! error page.

mod support;

use support::*;

use tokenfn_core::config::Config;
use tokenfn_core::domain::GrantType;
use tokenfn_core::http::Response;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::http::wire::RequestId;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const PASSWORD: &str = "correct horse battery";
const WEB_SECRET: &str = "web-secret-web-secret-web-secret-0123";

struct Env {
    authorize: AuthorizeRouter,
    token: TokenRouter,
    _rig: Rig,
}

impl Env {
    async fn new(playground: bool) -> Env {
        let mut config = Config::new(ISSUER);
        config.playground = playground;
        let rig = Rig::new(config);
        let web = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        let clients = vec![("web", Some(WEB_SECRET), web)];
        add_clients(
            &rig.services,
            "https://app.example/cb",
            "openid offline_access",
            clients,
        )
        .await;
        rig.services
            .add_user("alice", PASSWORD, None)
            .await
            .unwrap();
        Env {
            authorize: AuthorizeRouter::new(rig.services.clone()),
            token: TokenRouter::new(rig.services.clone()),
            _rig: rig,
        }
    }

    /// Signs alice in through `client`'s pages and exchanges the code:
    /// the token response.
    async fn tokens(&self, client: &str, redirect_uri: &str, secret: Option<&str>) -> Response {
        let q = format!(
            "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256",
            enc(redirect_uri),
            enc("openid offline_access")
        );
        let mut jar = String::new();
        let login = self.authorize.handle(get(&q, "")).await;
        assert_eq!(login.status(), 200, "{}", body(&login));
        absorb_cookies(&login, &mut jar);
        let fields = format!("username=alice&password={}", enc(PASSWORD));
        let req = form_post(&body(&login), "/login", &fields, &jar);
        let consent = self.authorize.handle(req).await;
        absorb_cookies(&consent, &mut jar);
        let req = form_post(&body(&consent), "/consent", "decision=allow", &jar);
        let back = self.authorize.handle(req).await;
        assert!(location(&back).as_str().starts_with(redirect_uri));
        let code = param(&back, "code").unwrap();
        let form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}&client_id={client}",
            enc(redirect_uri)
        );
        let req = post("/oauth/token", &form, "");
        let req = match secret {
            Some(s) => basic(req, client, s),
            None => req,
        };
        self.token.handle(req).await
    }

    async fn introspect(&self, token: &str) -> Response {
        let form = format!("token={}", enc(token));
        self.authorize
            .handle(post("/playground/introspect", &form, ""))
            .await
    }
}

#[tokio::test]
async fn the_playground_is_off_unless_configured() {
    let env = Env::new(false).await;
    let page = env.authorize.handle(get("/playground", "")).await;
    assert_eq!(page.status(), 404);
    assert!(body(&page).contains("There is no page at this address."));
    assert_eq!(env.introspect("x").await.status(), 404);
    // Nor is its client registered.
    let q = format!(
        "/authorize?response_type=code&client_id=playground&redirect_uri={}",
        enc(&format!("{ISSUER}/playground"))
    );
    assert_eq!(env.authorize.handle(get(&q, "")).await.status(), 400);
}

#[tokio::test]
async fn the_playground_signs_in_as_its_own_client_and_introspects_only_its_tokens() {
    let env = Env::new(true).await;
    let page = env.authorize.handle(get("/playground", "")).await;
    assert_eq!(page.status(), 200);
    let html = body(&page);
    assert!(html.contains("id=\"start\"") && html.contains(&format!("data-issuer=\"{ISSUER}\"")));

    // Its client now exists: public, PKCE, a refresh token with offline_access.
    let redirect = format!("{ISSUER}/playground");
    let resp = env.tokens("playground", &redirect, None).await;
    assert_eq!(resp.status(), 200, "{}", body(&resp));
    let t = json(&resp);
    assert_eq!(t["expires_in"], 120);
    let (at, rt) = (
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
    );

    for token in [at, rt] {
        let i = json(&env.introspect(token).await);
        assert_eq!(
            (&i["active"], &i["client_id"]),
            (&true.into(), &"playground".into()),
            "{i}"
        );
    }
    // Another app's tokens are nothing to the playground.
    let web = json(
        &env.tokens("web", "https://app.example/cb", Some(WEB_SECRET))
            .await,
    );
    for token in ["access_token", "refresh_token"] {
        let i = json(&env.introspect(web[token].as_str().unwrap()).await);
        assert_eq!(i, serde_json::json!({"active": false}));
    }
    assert_eq!(json(&env.introspect("garbage").await)["active"], false);
    let missing = env
        .authorize
        .handle(post("/playground/introspect", "", ""))
        .await;
    assert_eq!(missing.status(), 400);
    assert_eq!(error_of(&missing), "invalid_request");
}

#[tokio::test]
async fn error_pages_show_the_request_id_they_were_logged_with() {
    let env = Env::new(true).await;
    let mut req = get("/authorize?client_id=nobody", "");
    req.extensions_mut().insert(RequestId("req-7".into()));
    let resp = env.authorize.handle(req).await;
    assert_eq!(resp.status(), 400);
    let html = body(&resp);
    assert!(
        html.contains("quote this reference: <code>req-7</code>"),
        "{html}"
    );
    assert!(
        !html.contains("panicked") && !html.contains("src/"),
        "{html}"
    );
    // Without one from the shell, the page makes one up.
    let resp = env.authorize.handle(get("/nowhere", "")).await;
    assert_eq!(resp.status(), 404);
    assert!(body(&resp).contains("quote this reference: <code>"));
}
