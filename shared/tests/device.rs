//! The device authorization grant (RFC 8628), the second factor at sign-in
//! and the connected apps page, driven through the routers on the embedded
//! store with a clock the test moves.

mod support;

use support::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use tokenfn_core::config::Config;
use tokenfn_core::domain::client::Lifetimes;
use tokenfn_core::domain::{GrantType, Scopes, totp};
use tokenfn_core::http::Response;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::ports::Clock;
use tokenfn_core::service::Services;
use tokenfn_core::service::admin::NewClient;
use tokenfn_core::sign::LocalSigner;
use tokenfn_core::store::SqliteStore;

const CB: &str = "https://app.example/cb";
const WEB_SECRET: &str = "web-secret-web-secret-web-secret-0123";
const TV_SECRET: &str = "tv-secret-tv-secret-tv-secret-tv-0123";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const PASSWORD: &str = "correct horse battery";

struct Env {
    clock: Arc<TestClock>,
    services: Arc<Services>,
    authorize: AuthorizeRouter,
    token: TokenRouter,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = LocalSigner::load_or_create(dir.path()).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        let services = Arc::new(
            Services::new(
                Arc::new(SqliteStore::open_in_memory().unwrap()),
                Arc::new(signer),
                clock.clone(),
                Config::new(ISSUER),
            )
            .with_secret_box(test_box()),
        );
        let lifetimes = Lifetimes {
            access_token: 300,
            refresh_absolute: 10_000,
            refresh_idle: 1_000,
            reuse_leeway: 0,
        };
        let scopes = Scopes::parse("openid profile email offline_access api").unwrap();
        let code = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
        let device = vec![GrantType::DeviceCode, GrantType::RefreshToken];
        for (id, secret, grant_types) in [
            ("web", Some(WEB_SECRET), code.clone()),
            ("secure", Some(WEB_SECRET), code.clone()),
            ("tv", None, device.clone()),
            ("tv-secret", Some(TV_SECRET), device),
            ("tv-no-refresh", None, vec![GrantType::DeviceCode]),
            ("codeonly", None, code),
        ] {
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
        services.set_require_mfa("secure", true).await.unwrap();
        services.add_user("alice", PASSWORD, None).await.unwrap();
        services.add_user("bob", PASSWORD, None).await.unwrap();
        Env {
            clock,
            authorize: AuthorizeRouter::new(services.clone()),
            token: TokenRouter::new(services.clone()),
            services,
            _dir: dir,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn advance(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// Enrols `username` in TOTP and returns the secret.
    async fn enroll(&self, username: &str) -> String {
        let uri = self.services.enroll_mfa(username).await.unwrap();
        secret_of(&uri)
    }

    /// POST /oauth/device_authorization for a public client.
    async fn start_device(&self, client: &str, scope: &str) -> Response {
        let form = format!("client_id={client}&scope={}", enc(scope));
        self.token
            .handle(post("/oauth/device_authorization", &form, ""))
            .await
    }

    /// A device authorization; `tv-secret` authenticates with HTTP Basic.
    async fn device(&self, client: &str, scope: &str) -> Value {
        let resp = if client == "tv-secret" {
            let form = format!("scope={}", enc(scope));
            let req = post("/oauth/device_authorization", &form, "");
            self.token.handle(basic(req, client, TV_SECRET)).await
        } else {
            self.start_device(client, scope).await
        };
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        json(&resp)
    }

    async fn poll(&self, client: &str, device_code: &str) -> Response {
        let form = format!("grant_type={}&device_code={device_code}", enc(DEVICE_GRANT));
        let req = match client {
            "tv-secret" => basic(post("/oauth/token", &form, ""), client, TV_SECRET),
            _ => post("/oauth/token", &format!("{form}&client_id={client}"), ""),
        };
        self.token.handle(req).await
    }

    async fn browse(&self, uri: &str, jar: &mut String) -> Response {
        let resp = self.authorize.handle(get(uri, jar)).await;
        absorb_cookies(&resp, jar);
        resp
    }

    /// Posts `fields` with the hidden fields of `page`'s form at `action`.
    async fn submit(&self, page: &str, action: &str, fields: &str, jar: &mut String) -> Response {
        let form = format!(
            "interaction={}&csrf={}&{fields}",
            enc(&hidden(page, "interaction")),
            enc(&hidden(page, "csrf"))
        );
        let resp = self.authorize.handle(post(action, &form, jar)).await;
        absorb_cookies(&resp, jar);
        resp
    }

    /// Enters `user_code` on the device page; returns the page that follows.
    async fn enter_code(&self, user_code: &str, jar: &mut String) -> Response {
        let resp = self.browse("/device", jar).await;
        assert_eq!(resp.status(), 200);
        let page = body(&resp);
        assert!(page.contains("name=\"user_code\""), "{page}");
        self.submit(
            &page,
            "/device",
            &format!("user_code={}", enc(user_code)),
            jar,
        )
        .await
    }

    async fn login(&self, page: &str, user: &str, jar: &mut String) -> Response {
        assert!(page.contains("action=\"/login\""), "{page}");
        self.submit(
            page,
            "/login",
            &format!("username={user}&password={}", enc(PASSWORD)),
            jar,
        )
        .await
    }

    /// Signs in at /authorize for `client` (password, then a TOTP code when
    /// asked), allows, and returns the code.
    async fn code(&self, client: &str, jar: &mut String, otp: Option<&str>) -> String {
        let q = format!(
            "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid+offline_access&state=s1",
            enc(CB)
        );
        let mut resp = self.browse(&q, jar).await;
        for _ in 0..4 {
            if resp.status() == 302 || resp.status() == 303 {
                return param(&resp, "code").unwrap_or_else(|| panic!("{}", location(&resp)));
            }
            let page = body(&resp);
            resp = if page.contains("name=\"username\"") {
                self.login(&page, "alice", jar).await
            } else if page.contains("name=\"otp\"") {
                let code = otp.expect("a TOTP code was asked for");
                self.submit(&page, "/login", &format!("otp={code}"), jar)
                    .await
            } else if page.contains("action=\"/consent\"") {
                self.submit(&page, "/consent", "decision=allow", jar).await
            } else {
                panic!("unexpected page: {page}");
            };
        }
        panic!("no code after four pages");
    }

    async fn exchange(&self, client: &str, code: &str) -> Value {
        let form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}",
            enc(CB)
        );
        let resp = self
            .token
            .handle(basic(post("/oauth/token", &form, ""), client, WEB_SECRET))
            .await;
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        json(&resp)
    }

    async fn refresh(&self, client: &str, rt: &str) -> Response {
        let form = format!("grant_type=refresh_token&refresh_token={rt}");
        let req = match client {
            "web" | "secure" => basic(post("/oauth/token", &form, ""), client, WEB_SECRET),
            "tv-secret" => basic(post("/oauth/token", &form, ""), client, TV_SECRET),
            _ => post("/oauth/token", &format!("{form}&client_id={client}"), ""),
        };
        self.token.handle(req).await
    }
}

fn amr(id_token: &str) -> Vec<String> {
    claims(id_token)["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------- device flow

#[tokio::test]
async fn device_flow_pending_slow_down_then_tokens_exactly_once() {
    let env = Env::new().await;
    let d = env.device("tv", "openid offline_access api").await;
    let device_code = d["device_code"].as_str().unwrap();
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(device_code.len(), 43);
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(d["verification_uri"], "https://id.example/device");
    assert_eq!(
        d["verification_uri_complete"],
        format!("https://id.example/device?user_code={user_code}")
    );
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["interval"], 5);

    // The user has not come yet; polling too soon slows the device down.
    let r = env.poll("tv", device_code).await;
    assert_eq!(
        (r.status().as_u16(), error_of(&r)),
        (400, "authorization_pending".into())
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    env.advance(4);
    assert_eq!(error_of(&env.poll("tv", device_code).await), "slow_down");
    // The interval is now 10 s, from the last poll.
    env.advance(9);
    assert_eq!(error_of(&env.poll("tv", device_code).await), "slow_down");
    env.advance(15);
    assert_eq!(
        error_of(&env.poll("tv", device_code).await),
        "authorization_pending"
    );

    // The verification page, prefilled from verification_uri_complete.
    let mut jar = String::new();
    let page = env
        .browse(&format!("/device?user_code={user_code}"), &mut jar)
        .await;
    assert!(body(&page).contains(&format!("value=\"{user_code}\"")));
    // Typed loosely: lower case, no dash.
    let loose = user_code.replace('-', " ").to_lowercase();
    let resp = env.enter_code(&loose, &mut jar).await;
    let login = body(&resp);
    assert!(login.contains("The tv app"), "{login}");
    let resp = env.login(&login, "alice", &mut jar).await;
    let consent = body(&resp);
    assert!(consent.contains("action=\"/consent\""), "{consent}");
    assert!(consent.contains("The tv app"));
    assert!(
        consent.contains("Stay signed in"),
        "scopes in words: {consent}"
    );
    let resp = env
        .submit(&consent, "/consent", "decision=allow", &mut jar)
        .await;
    let done = body(&resp);
    assert!(done.contains("Return to your device"), "{done}");

    // The same user code cannot be used again.
    let again = body(&env.enter_code(user_code, &mut jar).await);
    assert!(again.contains("already been used"), "{again}");

    env.advance(20);
    let r = env.poll("tv", device_code).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let t = json(&r);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "api offline_access openid");
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], "tv");
    assert!(id.get("nonce").is_none());
    assert_eq!(amr(t["id_token"].as_str().unwrap()), vec!["pwd"]);
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    env.advance(20);
    let r = env.poll("tv", device_code).await;
    assert_eq!(error_of(&r), "invalid_grant", "single-use");

    // The refresh token works, and rotates.
    let r = env.refresh("tv", &rt).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    assert_ne!(json(&r)["refresh_token"].as_str().unwrap(), rt);
}

#[tokio::test]
async fn device_denied_expired_and_other_clients() {
    let env = Env::new().await;
    // Denied: access_denied, and the page says so.
    let d = env.device("tv-secret", "openid").await;
    let mut jar = String::new();
    let resp = env
        .enter_code(d["user_code"].as_str().unwrap(), &mut jar)
        .await;
    let resp = env.login(&body(&resp), "alice", &mut jar).await;
    let resp = env
        .submit(&body(&resp), "/consent", "decision=deny", &mut jar)
        .await;
    assert!(body(&resp).contains("Request denied"), "{}", body(&resp));
    let code = d["device_code"].as_str().unwrap();
    assert_eq!(
        error_of(&env.poll("tv-secret", code).await),
        "access_denied"
    );
    // Another client cannot poll it.
    env.advance(10);
    assert_eq!(error_of(&env.poll("tv", code).await), "invalid_grant");

    // Signed in already: the next device goes straight to consent, and
    // without offline_access (or a client without refresh) no refresh token.
    let d = env.device("tv-no-refresh", "openid offline_access").await;
    let resp = env
        .enter_code(d["user_code"].as_str().unwrap(), &mut jar)
        .await;
    let consent = body(&resp);
    assert!(consent.contains("action=\"/consent\""), "{consent}");
    env.submit(&consent, "/consent", "decision=allow", &mut jar)
        .await;
    let r = env
        .poll("tv-no-refresh", d["device_code"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    assert!(json(&r).get("refresh_token").is_none());
    assert!(json(&r).get("id_token").is_some());

    // Expired: expired_token to the device, a plain message to the user.
    let d = env.device("tv", "api").await;
    let code = d["device_code"].as_str().unwrap();
    env.advance(600);
    assert_eq!(error_of(&env.poll("tv", code).await), "expired_token");
    let page = body(
        &env.enter_code(d["user_code"].as_str().unwrap(), &mut jar)
            .await,
    );
    assert!(page.contains("has expired"), "{page}");
    // Long after, the code is simply unknown.
    env.advance(1200);
    assert_eq!(error_of(&env.poll("tv", code).await), "invalid_grant");
}

#[tokio::test]
async fn device_authorization_errors_follow_rfc6749_section_5_2() {
    let env = Env::new().await;
    let r = env.start_device("nobody", "openid").await;
    assert_eq!(
        (r.status().as_u16(), error_of(&r)),
        (401, "invalid_client".into())
    );
    let r = env.start_device("codeonly", "openid").await;
    assert_eq!(error_of(&r), "unauthorized_client");
    let r = env.start_device("tv", "").await;
    assert_eq!(error_of(&r), "invalid_scope");
    let r = env.start_device("tv", "openid admin").await;
    assert_eq!(error_of(&r), "invalid_scope");
    // A confidential client must authenticate.
    let r = env.start_device("tv-secret", "openid").await;
    assert_eq!(error_of(&r), "invalid_client");
    let r = env
        .token
        .handle(basic(
            post("/oauth/device_authorization", "scope=openid", ""),
            "tv-secret",
            "wrong",
        ))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = env
        .token
        .handle(get("/oauth/device_authorization", ""))
        .await;
    assert_eq!(r.status(), 405);

    // At the token endpoint.
    let r = env.poll("tv", "not-a-device-code").await;
    assert_eq!(error_of(&r), "invalid_grant");
    let r = env
        .token
        .handle(post(
            "/oauth/token",
            &format!("grant_type={}&client_id=tv", enc(DEVICE_GRANT)),
            "",
        ))
        .await;
    assert_eq!(error_of(&r), "invalid_request");
    let d = env.device("tv", "openid").await;
    let r = env
        .poll("codeonly", d["device_code"].as_str().unwrap())
        .await;
    assert_eq!(error_of(&r), "unauthorized_client");
}

#[tokio::test]
async fn wrong_user_codes_are_limited_per_browser() {
    let env = Env::new().await;
    let d = env.device("tv", "openid").await;
    let mut jar = String::new();
    for i in 0..4 {
        let page = body(&env.enter_code("BBBB-BBBB", &mut jar).await);
        assert!(page.contains("not right"), "attempt {i}: {page}");
    }
    // Not a code at all counts as wrong too.
    let resp = env.enter_code("hello", &mut jar).await;
    assert_eq!(resp.status(), 429, "{}", body(&resp));
    // Reloading the page does not reset the count.
    let resp = env.browse("/device", &mut jar).await;
    assert_eq!(resp.status(), 429);
    assert!(body(&resp).contains("Too many wrong codes"));
    // A while later the page takes codes again, and the right one works.
    env.advance(301);
    let resp = env
        .enter_code(d["user_code"].as_str().unwrap(), &mut jar)
        .await;
    assert!(body(&resp).contains("name=\"username\""), "{}", body(&resp));

    // The form is bound to its browser and its CSRF token.
    let mut other = String::new();
    let page = body(&env.browse("/device", &mut other).await);
    let forged = format!(
        "interaction={}&csrf=wrong&user_code={}",
        enc(&hidden(&page, "interaction")),
        d["user_code"].as_str().unwrap()
    );
    let r = env.authorize.handle(post("/device", &forged, &other)).await;
    assert_eq!(r.status(), 403);
    let stolen = format!(
        "interaction={}&csrf={}&user_code={}",
        enc(&hidden(&page, "interaction")),
        enc(&hidden(&page, "csrf")),
        d["user_code"].as_str().unwrap()
    );
    let r = env.authorize.handle(post("/device", &stolen, "")).await;
    assert_eq!(r.status(), 403, "another browser cannot post it");
}

// ---------------------------------------------------------------- second factor

#[tokio::test]
async fn totp_at_sign_in_once_per_code_and_five_tries() {
    let env = Env::new().await;
    let secret = env.enroll("alice").await;

    // Right password: the TOTP form; a wrong code gets the one message.
    let mut jar = String::new();
    let q = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    let resp = env.browse(&q, &mut jar).await;
    let resp = env.login(&body(&resp), "alice", &mut jar).await;
    let otp_page = body(&resp);
    assert!(otp_page.contains("name=\"otp\""), "{otp_page}");
    assert!(
        !jar.contains("tfn_session"),
        "no session before the second factor"
    );
    let resp = env
        .submit(&otp_page, "/login", "otp=000000", &mut jar)
        .await;
    let wrong = body(&resp);
    assert!(wrong.contains("That code is not right"), "{wrong}");
    let good = totp::code_at(&secret, env.now()).unwrap();
    let resp = env
        .submit(&otp_page, "/login", &format!("otp={good}"), &mut jar)
        .await;
    let resp = env
        .submit(&body(&resp), "/consent", "decision=allow", &mut jar)
        .await;
    let code = param(&resp, "code").unwrap();
    let t = env.exchange("web", &code).await;
    assert_eq!(
        amr(t["id_token"].as_str().unwrap()),
        vec!["pwd", "otp", "mfa"]
    );

    // The same code in another browser is refused like a wrong one.
    let mut jar2 = String::new();
    let resp = env.browse(&q, &mut jar2).await;
    let resp = env.login(&body(&resp), "alice", &mut jar2).await;
    let otp_page = body(&resp);
    let resp = env
        .submit(&otp_page, "/login", &format!("otp={good}"), &mut jar2)
        .await;
    assert_eq!(
        alert(&body(&resp)),
        alert(&wrong),
        "a replayed code reads like a wrong one"
    );
    // Three more wrong codes, then the fifth ends the interaction.
    for _ in 0..3 {
        let resp = env
            .submit(&otp_page, "/login", "otp=123456", &mut jar2)
            .await;
        assert!(body(&resp).contains("That code is not right"));
    }
    let resp = env
        .submit(&otp_page, "/login", "otp=123456", &mut jar2)
        .await;
    assert_eq!(resp.status(), 403);
    assert!(body(&resp).contains("Too many wrong codes"));
    // Even the right code of the next step is too late for this interaction.
    env.advance(30);
    let next = totp::code_at(&secret, env.now()).unwrap();
    let resp = env
        .submit(&otp_page, "/login", &format!("otp={next}"), &mut jar2)
        .await;
    assert!(body(&resp).contains("expired"), "{}", body(&resp));
    // A fresh sign-in with it works.
    let code = env.code("web", &mut String::new(), Some(&next)).await;
    assert!(!code.is_empty());
}

#[tokio::test]
async fn clients_requiring_mfa_step_up_or_explain() {
    let env = Env::new().await;
    // Alice signs in with a password only, then is enrolled.
    let mut jar = String::new();
    let code = env.code("web", &mut jar, None).await;
    let t = env.exchange("web", &code).await;
    assert_eq!(amr(t["id_token"].as_str().unwrap()), vec!["pwd"]);
    let secret = env.enroll("alice").await;

    // Her session lacks the second factor the secure app requires: step up.
    let q = format!(
        "/authorize?response_type=code&client_id=secure&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    let resp = env.browse(&q, &mut jar).await;
    let page = body(&resp);
    assert!(page.contains("name=\"otp\""), "{page}");
    assert!(!page.contains("name=\"password\""));
    let good = totp::code_at(&secret, env.now()).unwrap();
    let resp = env
        .submit(&page, "/login", &format!("otp={good}"), &mut jar)
        .await;
    let resp = env
        .submit(&body(&resp), "/consent", "decision=allow", &mut jar)
        .await;
    let t = env.exchange("secure", &param(&resp, "code").unwrap()).await;
    assert_eq!(
        amr(t["id_token"].as_str().unwrap()),
        vec!["pwd", "otp", "mfa"]
    );
    // The stepped-up session now satisfies the app without asking again.
    let resp = env
        .browse(
            &q.replace("openid", "openid+api")
                .replace("&state", "&prompt=none&state"),
            &mut jar,
        )
        .await;
    assert_eq!(param(&resp, "error").as_deref(), Some("consent_required"));

    // prompt=none cannot step up.
    let mut bob_jar = String::new();
    let resp = env
        .browse(
            &format!(
                "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
                enc(CB)
            ),
            &mut bob_jar,
        )
        .await;
    let resp = env.login(&body(&resp), "bob", &mut bob_jar).await;
    env.submit(&body(&resp), "/consent", "decision=allow", &mut bob_jar)
        .await;
    let resp = env
        .browse(&q.replace("&state", "&prompt=none&state"), &mut bob_jar)
        .await;
    assert_eq!(
        param(&resp, "error").as_deref(),
        Some("interaction_required")
    );
    // Bob has no second factor: a page that says what to do, not a loop.
    let resp = env.browse(&q, &mut bob_jar).await;
    assert_eq!(resp.status(), 403);
    assert!(body(&resp).contains("Ask your administrator"));
    let mut fresh = String::new();
    let resp = env.browse(&q, &mut fresh).await;
    let resp = env.login(&body(&resp), "bob", &mut fresh).await;
    assert_eq!(resp.status(), 403, "{}", body(&resp));
    assert!(body(&resp).contains("two-step verification"));

    // A device of a client requiring MFA asks the signed-in user to step up.
    let d = env.device("tv", "openid").await;
    env.services.set_require_mfa("tv", true).await.unwrap();
    let mut jar = String::new();
    let resp = env
        .enter_code(d["user_code"].as_str().unwrap(), &mut jar)
        .await;
    let resp = env.login(&body(&resp), "alice", &mut jar).await;
    let page = body(&resp);
    assert!(page.contains("name=\"otp\""), "{page}");
    env.advance(30);
    let good = totp::code_at(&secret, env.now()).unwrap();
    let resp = env
        .submit(&page, "/login", &format!("otp={good}"), &mut jar)
        .await;
    let resp = env
        .submit(&body(&resp), "/consent", "decision=allow", &mut jar)
        .await;
    assert!(body(&resp).contains("Device connected"));
    let r = env.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    assert_eq!(
        amr(json(&r)["id_token"].as_str().unwrap()),
        vec!["pwd", "otp", "mfa"]
    );
}

// ---------------------------------------------------------------- connected apps

#[tokio::test]
async fn connected_apps_list_and_disconnect() {
    let env = Env::new().await;
    // Not signed in: the login form, then the page.
    let mut jar = String::new();
    let resp = env.browse("/account/apps", &mut jar).await;
    let page = body(&resp);
    assert!(page.contains("your account"), "{page}");
    let resp = env.login(&page, "alice", &mut jar).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp).path(), "/account/apps");
    let page = body(&env.browse("/account/apps", &mut jar).await);
    assert!(page.contains("No app has access"), "{page}");

    // Two grants of web (shown once) and one of a device app.
    let first = env
        .exchange("web", &env.code("web", &mut jar, None).await)
        .await;
    env.advance(100);
    let second = env
        .exchange("web", &env.code("web", &mut jar, None).await)
        .await;
    let d = env.device("tv", "openid offline_access").await;
    let resp = env
        .enter_code(d["user_code"].as_str().unwrap(), &mut jar)
        .await;
    env.submit(&body(&resp), "/consent", "decision=allow", &mut jar)
        .await;
    let tv = json(&env.poll("tv", d["device_code"].as_str().unwrap()).await);
    env.advance(50);
    let r = env
        .refresh("web", second["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 200);

    let page = body(&env.browse("/account/apps", &mut jar).await);
    assert_eq!(page.matches("<h2>The web app</h2>").count(), 1, "{page}");
    assert!(page.contains("<h2>The tv app</h2>"));
    assert!(page.contains("Stay signed in"));
    assert!(page.contains("Last used 2023-11-14 22:15 UTC"), "{page}");
    assert!(page.contains("name=\"client_id\" value=\"web\""));

    // Disconnect web: its refresh tokens die, tv's live; consent is asked again.
    let resp = env
        .submit(&page, "/account/apps/revoke", "client_id=web", &mut jar)
        .await;
    assert_eq!(resp.status(), 303);
    for t in [&first, &second] {
        let r = env
            .refresh("web", t["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(error_of(&r), "invalid_grant");
    }
    let r = env
        .refresh("tv", tv["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 200, "{}", body(&r));
    let page = body(&env.browse("/account/apps", &mut jar).await);
    assert!(!page.contains("The web app"), "{page}");
    let q = format!(
        "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s1",
        enc(CB)
    );
    let resp = env.browse(&q, &mut jar).await;
    assert!(body(&resp).contains("action=\"/consent\""));

    // The revoke form needs its CSRF token, its browser and the session.
    let forged = format!(
        "interaction={}&csrf=nope&client_id=tv",
        enc(&hidden(&page, "interaction"))
    );
    let r = env
        .authorize
        .handle(post("/account/apps/revoke", &forged, &jar))
        .await;
    assert_eq!(r.status(), 403);
    let no_session: String = jar
        .split("; ")
        .filter(|c| !c.starts_with("tfn_session="))
        .collect::<Vec<_>>()
        .join("; ");
    let r = env
        .submit(
            &page,
            "/account/apps/revoke",
            "client_id=tv",
            &mut no_session.clone(),
        )
        .await;
    assert_eq!(r.status(), 403);
    let page = body(&env.browse("/account/apps", &mut jar).await);
    assert!(page.contains("The tv app"), "nothing was revoked: {page}");
}
