//! Every browser page, walked through the authorize router under an http
//! and an https issuer: each HTML answer (forms, error pages, 404 and 405
//! included) carries the CSP with `frame-ancestors 'none'`,
//! `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and
//! `Cache-Control: no-store`; every cookie is `HttpOnly; SameSite=Lax`,
//! and `Secure` exactly when the issuer is https.

mod support;

use support::*;

use std::collections::BTreeSet;

use bytes::Bytes;
use tokenfn_core::config::Config;
use tokenfn_core::domain::{GrantType, totp};
use tokenfn_core::http::Response;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::ports::Clock;

const CB: &str = "https://app.example/cb";
const PASSWORD: &str = "correct horse battery";

/// The pages by title, and whether every answer so far was checked.
struct Walk {
    rig: Rig,
    authorize: AuthorizeRouter,
    token: TokenRouter,
    https: bool,
    titles: BTreeSet<String>,
    statuses: BTreeSet<u16>,
}

impl Walk {
    async fn new(issuer: &str) -> Walk {
        let mut config = Config::new(issuer);
        config.playground = true;
        let rig = Rig::new(config);
        let clients = vec![
            ("web", None, vec![GrantType::AuthorizationCode]),
            ("tv", None, vec![GrantType::DeviceCode]),
        ];
        add_clients(&rig.services, CB, "openid", clients).await;
        for name in ["alice", "carol"] {
            rig.services.add_user(name, PASSWORD, None).await.unwrap();
        }
        Walk {
            authorize: AuthorizeRouter::new(rig.services.clone()),
            token: TokenRouter::new(rig.services.clone()),
            rig,
            https: issuer.starts_with("https://"),
            titles: BTreeSet::new(),
            statuses: BTreeSet::new(),
        }
    }

    /// Sends `req` in the browser `jar` and checks what comes back.
    async fn send(&mut self, req: http::Request<Bytes>, jar: &mut String) -> Response {
        let resp = self.authorize.handle(req).await;
        self.check(&resp);
        absorb_cookies(&resp, jar);
        resp
    }

    async fn get(&mut self, uri: &str, jar: &mut String) -> Response {
        let req = get(uri, jar);
        self.send(req, jar).await
    }

    /// Posts `fields` with the hidden fields of `page`'s form at `action`.
    async fn submit(
        &mut self,
        page: &Response,
        action: &str,
        fields: &str,
        jar: &mut String,
    ) -> Response {
        let req = form_post(&body(page), action, fields, jar);
        self.send(req, jar).await
    }

    fn check(&mut self, resp: &Response) {
        let h = resp.headers();
        for cookie in h.get_all("set-cookie") {
            let cookie = cookie.to_str().unwrap();
            let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
            assert!(attrs.contains(&"HttpOnly"), "{cookie}");
            assert!(attrs.contains(&"SameSite=Lax"), "{cookie}");
            assert_eq!(attrs.contains(&"Secure"), self.https, "{cookie}");
        }
        let content_type = h["content-type"].to_str().unwrap();
        if !content_type.starts_with("text/html") {
            assert!(resp.status().is_redirection(), "{}", body(resp));
            assert_eq!(h["cache-control"], "no-store");
            assert_eq!(h["referrer-policy"], "no-referrer");
            return;
        }
        let page = body(resp);
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{page}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{page}");
        assert_eq!(h["cache-control"], "no-store", "{page}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{page}");
        let title = &page[page.find("<title>").unwrap() + 7..page.find("</title>").unwrap()];
        self.titles.insert(title.to_owned());
        self.statuses.insert(resp.status().as_u16());
    }

    /// A new browser at the login form of `web`.
    async fn login_form(&mut self, jar: &mut String) -> Response {
        let q = format!(
            "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s&code_challenge={}&code_challenge_method=S256",
            enc(CB),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let resp = self.get(&q, jar).await;
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        resp
    }
}

async fn walk_every_page(issuer: &str) {
    let mut w = Walk::new(issuer).await;
    let secret = secret_of(&w.rig.services.enroll_mfa("carol").await.unwrap());

    // Error pages of /authorize, and the 404 and 405 of the pages.
    let mut jar = String::new();
    assert_eq!(w.get("/authorize", &mut jar).await.status(), 400);
    let q = format!(
        "/authorize?client_id=web&redirect_uri={}",
        enc("https://evil.example/")
    );
    assert_eq!(w.get(&q, &mut jar).await.status(), 400);
    assert_eq!(w.get("/login", &mut jar).await.status(), 405);
    assert_eq!(w.get("/no-such-page", &mut jar).await.status(), 404);
    // The playground: its script allowed by hash, calls to this server only.
    let playground = w.get("/playground", &mut jar).await;
    assert_eq!(playground.status(), 200);
    let csp = playground.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'sha256-") && csp.ends_with("connect-src 'self'"));
    let r = w.send(post("/authorize", "", &jar), &mut jar).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");

    // The login form, its errors, and a throttled sign-in.
    let mut jar = String::new();
    let form = w.login_form(&mut jar).await;
    assert!(jar.contains("tfn_bind="));
    for _ in 0..6 {
        let r = w
            .submit(&form, "/login", "username=alice&password=wrong", &mut jar)
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = w
        .submit(&form, "/login", "username=alice&password=wrong", &mut jar)
        .await;
    assert_eq!(r.status(), 429);
    let bad_csrf = format!(
        "interaction={}&csrf=forged&username=a&password=b",
        hidden(&body(&form), "interaction")
    );
    assert_eq!(
        w.send(post("/login", &bad_csrf, &jar), &mut jar)
            .await
            .status(),
        403
    );
    let mut not_a_form = post("/login", "{}", &jar);
    not_a_form
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    assert_eq!(w.send(not_a_form, &mut jar).await.status(), 400);

    // Sign-in, consent, and the session cookie set on the redirect.
    w.rig.clock.advance(60);
    let fields = format!("username=alice&password={}", enc(PASSWORD));
    let consent = w.submit(&form, "/login", &fields, &mut jar).await;
    assert!(body(&consent).contains("action=\"/consent\""));
    let done = w
        .submit(&consent, "/consent", "decision=allow", &mut jar)
        .await;
    assert_eq!(done.status(), 303);
    assert!(jar.contains("tfn_session="));

    // The connected apps page, signed in and not.
    let apps = w.get("/account/apps", &mut jar).await;
    assert!(body(&apps).contains("Connected apps"));
    let mut fresh = String::new();
    let r = w.get("/account/apps", &mut fresh).await;
    assert!(body(&r).contains("action=\"/login\""));

    // The device pages: entry, a wrong code, consent, done; and the lock.
    let resp = w
        .token
        .handle(post(
            "/oauth/device_authorization",
            "client_id=tv&scope=openid",
            "",
        ))
        .await;
    let user_code = json(&resp)["user_code"].as_str().unwrap().to_owned();
    let entry = w.get("/device", &mut jar).await;
    let wrong = w
        .submit(&entry, "/device", "user_code=BCDF-GHJK", &mut jar)
        .await;
    assert_eq!(wrong.status(), 200);
    let consent = w
        .submit(
            &entry,
            "/device",
            &format!("user_code={user_code}"),
            &mut jar,
        )
        .await;
    assert!(
        body(&consent).contains("action=\"/consent\""),
        "{}",
        body(&consent)
    );
    let done = w
        .submit(&consent, "/consent", "decision=allow", &mut jar)
        .await;
    assert!(body(&done).contains("Device connected"));
    let mut locked = String::new();
    let mut last = w.get("/device", &mut locked).await;
    for _ in 0..5 {
        let entry = w.get("/device", &mut locked).await;
        last = w
            .submit(&entry, "/device", "user_code=BCDF-GHJK", &mut locked)
            .await;
    }
    assert_eq!(last.status(), 429);

    // The second factor: the code form, a wrong code, and too many.
    let mut jar = String::new();
    let form = w.login_form(&mut jar).await;
    let fields = format!("username=carol&password={}", enc(PASSWORD));
    let otp = w.submit(&form, "/login", &fields, &mut jar).await;
    assert!(body(&otp).contains("name=\"otp\""));
    let now = w.rig.clock.now();
    let near: Vec<String> = (-1..=1)
        .map(|d| totp::code_at(&secret, now + 30 * d).unwrap())
        .collect();
    let wrong = ["000000", "111111", "222222", "333333", "444444", "555555"]
        .into_iter()
        .filter(|c| !near.iter().any(|n| n == c))
        .take(5);
    for code in wrong {
        last = w
            .submit(&otp, "/login", &format!("otp={code}"), &mut jar)
            .await;
    }
    assert_eq!(last.status(), 403);

    let expected: BTreeSet<String> = [
        "Sign in",
        "Allow access?",
        "Two-step verification",
        "Connect a device",
        "Device connected",
        "Connected apps",
        "Something went wrong",
        "Playground",
    ]
    .into_iter()
    .map(|title| format!("{title} · tokenfn"))
    .collect();
    assert_eq!(w.titles, expected);
    assert_eq!(
        w.statuses,
        BTreeSet::from([200, 400, 403, 404, 405, 429]),
        "the error statuses walked"
    );
}

#[tokio::test]
async fn every_page_under_an_http_issuer() {
    walk_every_page("http://127.0.0.1:8080").await;
}

#[tokio::test]
async fn every_page_under_an_https_issuer() {
    walk_every_page(ISSUER).await;
}
