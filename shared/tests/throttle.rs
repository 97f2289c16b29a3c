//! Sign-in throttling through the routers, with a clock the test moves:
//! the login form, its second-factor step, the password grant and the
//! device user-code form back off per account and per source address, and
//! the real user from another address still gets in.

mod support;

use support::*;

use serde_json::Value;
use tokenfn_core::config::Config;
use tokenfn_core::domain::{GrantType, totp};
use tokenfn_core::http::Response;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::ports::Clock;

const CB: &str = "https://app.example/cb";
const SECRET: &str = "pw-secret-pw-secret-pw-secret-pw-0123";
const PASSWORD: &str = "correct horse battery";
/// The attacker's address and the real user's.
const A: &str = "192.0.2.1";
const B: &str = "198.51.100.2";

struct Env {
    rig: Rig,
    authorize: AuthorizeRouter,
    token: TokenRouter,
}

impl Env {
    /// Clients `web` (code flow), `pw` (password grant), `tv` (device,
    /// public). Users alice and bob.
    async fn new() -> Env {
        let rig = Rig::new(Config::new(ISSUER));
        use GrantType::*;
        let clients = vec![
            ("web", Some(SECRET), vec![AuthorizationCode, RefreshToken]),
            ("pw", Some(SECRET), vec![Password]),
            ("tv", None, vec![DeviceCode]),
        ];
        add_clients(&rig.services, CB, "openid profile", clients).await;
        for name in ["alice", "bob"] {
            rig.services.add_user(name, PASSWORD, None).await.unwrap();
        }
        Env {
            authorize: AuthorizeRouter::new(rig.services.clone()),
            token: TokenRouter::new(rig.services.clone()),
            rig,
        }
    }

    /// GET `uri` in the browser `jar`, from `addr`.
    async fn browse(&self, uri: &str, addr: &str, jar: &mut String) -> Response {
        let resp = self.authorize.handle(from(get(uri, jar), addr)).await;
        absorb_cookies(&resp, jar);
        resp
    }

    /// Posts `fields` with the hidden fields of `page`'s form at `action`.
    async fn submit(
        &self,
        page: &str,
        action: &str,
        fields: &str,
        addr: &str,
        jar: &mut String,
    ) -> Response {
        let req = from(form_post(page, action, fields, jar), addr);
        let resp = self.authorize.handle(req).await;
        absorb_cookies(&resp, jar);
        resp
    }

    /// The login form of a fresh browser at `addr`.
    async fn login_page(&self, addr: &str, jar: &mut String) -> String {
        let q = format!(
            "/authorize?response_type=code&client_id=web&redirect_uri={}&scope=openid&state=s",
            enc(CB)
        );
        let resp = self.browse(&q, addr, jar).await;
        assert_eq!(resp.status(), 200);
        body(&resp)
    }

    /// One sign-in at the login form, from a fresh browser at `addr`.
    async fn login(&self, addr: &str, user: &str, password: &str) -> Response {
        let mut jar = String::new();
        let page = self.login_page(addr, &mut jar).await;
        let fields = format!("username={}&password={}", enc(user), enc(password));
        self.submit(&page, "/login", &fields, addr, &mut jar).await
    }

    async fn password_grant(&self, addr: &str, user: &str, password: &str) -> Response {
        let form = format!(
            "grant_type=password&username={}&password={}",
            enc(user),
            enc(password)
        );
        let req = basic(post("/oauth/token", &form, ""), "pw", SECRET);
        self.token.handle(from(req, addr)).await
    }

    /// A user code for the `tv` client.
    async fn user_code(&self) -> String {
        let resp = self
            .token
            .handle(post(
                "/oauth/device_authorization",
                "client_id=tv&scope=openid",
                "",
            ))
            .await;
        assert_eq!(resp.status(), 200, "{}", body(&resp));
        json(&resp)["user_code"].as_str().unwrap().to_owned()
    }

    /// Enters `code` on the device page of the browser `jar`, from `addr`.
    async fn enter(&self, code: &str, addr: &str, jar: &mut String) -> Response {
        let page = body(&self.browse("/device", addr, jar).await);
        let fields = format!("user_code={}", enc(code));
        self.submit(&page, "/device", &fields, addr, jar).await
    }
}

/// A failed sign-in that counted: the form again with the one message.
fn assert_refused(resp: &Response) {
    assert_eq!(resp.status(), 200, "{}", body(resp));
    assert_eq!(alert(&body(resp)), "The username or password is incorrect.");
}

/// A throttled attempt: 429, `Retry-After`, and the wait in words.
fn assert_held(resp: &Response, wait: i64) {
    assert_eq!(resp.status(), 429, "{}", body(resp));
    assert_eq!(resp.headers()["retry-after"], wait.to_string());
    let unit = if wait == 1 { "second" } else { "seconds" };
    assert_eq!(
        alert(&body(resp)),
        format!("Too many failed attempts. Wait {wait} {unit}, then try again.")
    );
    // Still a page with the security headers of every page.
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.headers().contains_key("content-security-policy"));
}

/// A throttled password grant: `invalid_grant` that says how long to wait,
/// in words and in `Retry-After`.
fn assert_grant_held(resp: &Response, wait: i64) {
    assert_eq!(resp.status(), 400, "{}", body(resp));
    assert_eq!(resp.headers()["retry-after"], wait.to_string().as_str());
    let v: Value = json(resp);
    assert_eq!(v["error"], "invalid_grant");
    let unit = if wait == 1 { "second" } else { "seconds" };
    assert_eq!(
        v["error_description"],
        format!("too many failed sign-ins; try again in {wait} {unit}")
    );
}

/// A sign-in that went through: the consent page comes next.
fn assert_signed_in(resp: &Response) {
    assert_eq!(resp.status(), 200, "{}", body(resp));
    assert!(body(resp).contains("action=\"/consent\""), "{}", body(resp));
}

#[tokio::test]
async fn login_backs_off_per_account_and_address_while_another_address_signs_in() {
    let env = Env::new().await;
    // Five free failures, then the sixth starts a one-second wait.
    for _ in 0..6 {
        assert_refused(&env.login(A, "alice", "guess").await);
    }
    // Even the right password waits at A, and is not checked or counted.
    assert_held(&env.login(A, "alice", PASSWORD).await, 1);
    assert_held(&env.login(A, "alice", "guess").await, 1);
    // The real user at another address signs in at once.
    assert_signed_in(&env.login(B, "alice", PASSWORD).await);
    // Each further failure at A doubles the wait.
    env.rig.clock.advance(1);
    assert_refused(&env.login(A, "alice", "guess").await);
    assert_held(&env.login(A, "alice", PASSWORD).await, 2);
    // Another account at A is not held by alice's lane.
    assert_signed_in(&env.login(A, "bob", PASSWORD).await);
    // When the wait is over, the right password goes through and resets
    // the account's lanes: five free tries again.
    env.rig.clock.advance(2);
    assert_signed_in(&env.login(A, "alice", PASSWORD).await);
    for _ in 0..5 {
        assert_refused(&env.login(A, "alice", "guess").await);
    }
}

#[tokio::test]
async fn unknown_usernames_are_throttled_exactly_like_real_ones() {
    let env = Env::new().await;
    let mut replies = Vec::new();
    for user in ["alice", "mallory"] {
        let mut seen = Vec::new();
        for _ in 0..6 {
            let r = env.login(A, user, "guess").await;
            seen.push((r.status(), alert(&body(&r))));
        }
        let r = env.login(A, user, "guess").await;
        seen.push((r.status(), alert(&body(&r))));
        replies.push(seen);
    }
    assert_eq!(replies[0], replies[1]);
    assert_eq!(replies[0].last().unwrap().0, 429);
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_slowed_and_no_one_else() {
    let env = Env::new().await;
    // Credential stuffing: one guess each at 21 names from A.
    for i in 0..21 {
        assert_refused(&env.login(A, &format!("user{i}"), "guess").await);
    }
    // A is held whatever the account; bob elsewhere is not.
    assert_held(&env.login(A, "bob", PASSWORD).await, 1);
    assert_grant_held(&env.password_grant(A, "bob", PASSWORD).await, 1);
    assert_signed_in(&env.login(B, "bob", PASSWORD).await);
    // bob's success at B does not reset A's lane.
    assert_held(&env.login(A, "alice", PASSWORD).await, 1);
}

#[tokio::test]
async fn a_guesser_spread_over_many_addresses_holds_the_account_a_minute_at_most() {
    let env = Env::new().await;
    let addr = |i: u32| format!("203.0.113.{i}");
    // 21 addresses, one guess each: the account-wide lane starts to wait.
    for i in 0..21 {
        assert_refused(&env.login(&addr(i), "alice", "guess").await);
    }
    assert_held(&env.login(B, "alice", PASSWORD).await, 1);
    // However long it goes on, the real user waits a minute at most.
    for i in 21..40 {
        env.rig.clock.advance(60);
        assert_refused(&env.login(&addr(i), "alice", "guess").await);
    }
    assert_held(&env.login(B, "alice", PASSWORD).await, 60);
    env.rig.clock.advance(60);
    assert_signed_in(&env.login(B, "alice", PASSWORD).await);
    // Another account was never held.
    assert_signed_in(&env.login(&addr(0), "bob", PASSWORD).await);
}

#[tokio::test]
async fn password_grant_shares_the_lanes_and_another_address_gets_tokens() {
    let env = Env::new().await;
    for _ in 0..3 {
        assert_refused(&env.login(A, "alice", "guess").await);
    }
    for _ in 0..3 {
        let r = env.password_grant(A, "alice", "guess").await;
        assert_eq!(
            json(&r)["error_description"],
            "the username or password is wrong"
        );
    }
    // Six failures, whichever way they came: A waits, on both paths.
    assert_grant_held(&env.password_grant(A, "alice", PASSWORD).await, 1);
    assert_held(&env.login(A, "alice", PASSWORD).await, 1);
    // The same for an unknown username.
    for _ in 0..6 {
        env.password_grant(A, "mallory", "guess").await;
    }
    assert_grant_held(&env.password_grant(A, "mallory", PASSWORD).await, 1);
    // From B alice gets her tokens.
    let ok = env.password_grant(B, "alice", PASSWORD).await;
    assert_eq!(ok.status(), 200, "{}", body(&ok));
    env.rig.clock.advance(1);
    let ok = env.password_grant(A, "alice", PASSWORD).await;
    assert_eq!(ok.status(), 200, "{}", body(&ok));
}

/// A fresh browser at `addr` signs in as `user` with the right password
/// and sends `otp` at the second step.
async fn otp_attempt(env: &Env, addr: &str, user: &str, otp: &str) -> Response {
    let mut jar = String::new();
    let page = env.login_page(addr, &mut jar).await;
    let fields = format!("username={user}&password={}", enc(PASSWORD));
    let resp = env.submit(&page, "/login", &fields, addr, &mut jar).await;
    let page = body(&resp);
    assert!(page.contains("name=\"otp\""), "{page}");
    env.submit(&page, "/login", &format!("otp={otp}"), addr, &mut jar)
        .await
}

#[tokio::test]
async fn totp_step_backs_off_per_account_and_address_across_interactions() {
    let env = Env::new().await;
    let secret = secret_of(&env.rig.services.enroll_mfa("alice").await.unwrap());
    let wrong = |now: i64| {
        // A code that is surely not one of the accepted steps.
        let near: Vec<String> = (-2..=2)
            .map(|d| totp::code_at(&secret, now + 30 * d).unwrap())
            .collect();
        (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|c| !near.contains(c))
            .unwrap()
    };
    // Each interaction allows a few wrong codes; new interactions do not
    // buy new guesses: the sixth wrong code at A starts a wait.
    for _ in 0..6 {
        let r = otp_attempt(&env, A, "alice", &wrong(env.rig.clock.now())).await;
        assert_eq!(r.status(), 200);
        assert!(alert(&body(&r)).starts_with("That code is not right"));
    }
    let good = totp::code_at(&secret, env.rig.clock.now()).unwrap();
    assert_held(&otp_attempt(&env, A, "alice", &good).await, 1);
    // The real user at B gets in with the code (not used up by A's try).
    let r = otp_attempt(&env, B, "alice", &good).await;
    assert_signed_in(&r);
}

#[tokio::test]
async fn device_entry_backs_off_per_address_and_another_address_enters_the_code() {
    let env = Env::new().await;
    let code = env.user_code().await;
    // 21 wrong codes from A, each in a fresh browser (one browser is
    // stopped after five on its own).
    for _ in 0..21 {
        let mut jar = String::new();
        let r = env.enter("BCDF-GHJK", A, &mut jar).await;
        assert_eq!(r.status(), 200);
        assert!(alert(&body(&r)).contains("code"), "{}", body(&r));
    }
    let mut jar = String::new();
    assert_held(&env.enter(&code, A, &mut jar).await, 1);
    // From B the real code goes on to sign-in.
    let mut jar = String::new();
    let r = env.enter(&code, B, &mut jar).await;
    assert_eq!(r.status(), 200);
    assert!(body(&r).contains("action=\"/login\""), "{}", body(&r));
}

#[tokio::test]
async fn device_entry_backs_off_per_signed_in_account() {
    let env = Env::new().await;
    let code = env.user_code().await;
    // alice signed in once in this browser.
    let mut jar = String::new();
    let page = env.login_page(B, &mut jar).await;
    let fields = format!("username=alice&password={}", enc(PASSWORD));
    assert_signed_in(&env.submit(&page, "/login", &fields, B, &mut jar).await);
    let session = jar
        .split("; ")
        .find(|c| c.starts_with("tfn_session="))
        .unwrap()
        .to_owned();
    // Her session guesses from 21 addresses, one each, each time in a
    // fresh browser (one browser is stopped after five on its own).
    for i in 0..21 {
        let mut jar = session.clone();
        let r = env
            .enter("BCDF-GHJK", &format!("203.0.113.{i}"), &mut jar)
            .await;
        assert_eq!(r.status(), 200);
    }
    let mut jar = session.clone();
    assert_held(&env.enter(&code, "203.0.113.99", &mut jar).await, 1);
    // Without her session the address is not held.
    let mut fresh = String::new();
    let r = env.enter(&code, "203.0.113.99", &mut fresh).await;
    assert!(body(&r).contains("action=\"/login\""), "{}", body(&r));
}
