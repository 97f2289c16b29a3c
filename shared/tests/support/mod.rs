//! What the router tests share: a clock the test moves, requests built by
//! hand, and readers for the responses and pages that come back.

#![allow(dead_code)] // each test file uses its own part

use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

use tokenfn_core::config::Config;
use tokenfn_core::domain::client::Lifetimes;
use tokenfn_core::http::{Request, Response};
use tokenfn_core::ports::Clock;
use tokenfn_core::service::Services;
use tokenfn_core::sign::LocalSigner;
use tokenfn_core::store::SqliteStore;

pub const ISSUER: &str = "https://id.example";
pub const T0: i64 = 1_700_000_000;

pub struct TestClock(pub AtomicI64);

impl TestClock {
    pub fn at(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Services on an in-memory SQLite store and a local key in a temporary
/// folder, with a clock the test moves, starting at [`T0`].
pub struct Rig {
    pub clock: Arc<TestClock>,
    pub services: Arc<Services>,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub fn new(config: Config) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = LocalSigner::load_or_create(dir.path()).unwrap();
        let clock = Arc::new(TestClock::at(T0));
        let services = Arc::new(
            Services::new(
                Arc::new(SqliteStore::open_in_memory().unwrap()),
                Arc::new(signer),
                clock.clone(),
                config,
            )
            .with_secret_box(test_box()),
        );
        Rig {
            clock,
            services,
            _dir: dir,
        }
    }
}

/// A box for TOTP secrets with a key of this test's own.
pub fn test_box() -> Arc<tokenfn_core::seal::LocalBox> {
    let dir = tempfile::tempdir().unwrap();
    Arc::new(tokenfn_core::seal::LocalBox::load_or_create(dir.path()).unwrap())
}

/// Short lifetimes, so that tests can move the clock past them.
pub const LIFETIMES: Lifetimes = Lifetimes {
    access_token: 300,
    refresh_absolute: 10_000,
    refresh_idle: 1_000,
    reuse_leeway: 0,
};

/// Registers clients `(id, secret, grant types)` named "The {id} app",
/// with one redirect URI, `scopes` and [`LIFETIMES`].
pub async fn add_clients(
    services: &Services,
    redirect_uri: &str,
    scopes: &str,
    clients: Vec<(&str, Option<&str>, Vec<tokenfn_core::domain::GrantType>)>,
) {
    for (id, secret, grant_types) in clients {
        services
            .add_client(tokenfn_core::service::admin::NewClient {
                id: id.into(),
                name: Some(format!("The {id} app")),
                redirect_uris: vec![redirect_uri.into()],
                secret: secret.map(str::to_owned),
                grant_types,
                scopes: tokenfn_core::domain::Scopes::parse(scopes).unwrap(),
                lifetimes: LIFETIMES,
            })
            .await
            .unwrap();
    }
}

/// A POST of `page`'s form (its hidden `interaction` and `csrf`) with
/// `fields` to `action`.
pub fn form_post(page: &str, action: &str, fields: &str, cookie: &str) -> Request {
    let form = format!(
        "interaction={}&csrf={}&{fields}",
        enc(&hidden(page, "interaction")),
        enc(&hidden(page, "csrf"))
    );
    post(action, &form, cookie)
}

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn get(uri: &str, cookie: &str) -> Request {
    let mut b = http::Request::builder().method("GET").uri(uri);
    if !cookie.is_empty() {
        b = b.header("cookie", cookie);
    }
    b.body(Bytes::new()).unwrap()
}

pub fn post(uri: &str, form: &str, cookie: &str) -> Request {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/x-www-form-urlencoded");
    if !cookie.is_empty() {
        b = b.header("cookie", cookie);
    }
    b.body(Bytes::from(form.to_owned())).unwrap()
}

pub fn basic(mut req: Request, id: &str, secret: &str) -> Request {
    let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    req.headers_mut()
        .insert("authorization", value.parse().unwrap());
    req
}

pub fn body(resp: &Response) -> String {
    String::from_utf8_lossy(resp.body()).into_owned()
}

pub fn json(resp: &Response) -> Value {
    serde_json::from_slice(resp.body()).unwrap()
}

pub fn error_of(resp: &Response) -> String {
    json(resp)["error"].as_str().unwrap_or_default().to_owned()
}

pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_owned()
}

pub fn absorb_cookies(resp: &Response, jar: &mut String) {
    for v in resp.headers().get_all("set-cookie") {
        let pair = v.to_str().unwrap().split(';').next().unwrap().to_owned();
        let name = pair.split('=').next().unwrap().to_owned();
        let mut kept: Vec<String> = jar
            .split("; ")
            .filter(|c| !c.is_empty() && !c.starts_with(&format!("{name}=")))
            .map(str::to_owned)
            .collect();
        kept.push(pair);
        *jar = kept.join("; ");
    }
}

pub fn location(resp: &Response) -> url::Url {
    url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
}

pub fn param(resp: &Response, name: &str) -> Option<String> {
    location(resp)
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The `secret` of an `otpauth://` URI.
pub fn secret_of(otpauth: &str) -> String {
    url::Url::parse(otpauth)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// The text of a page's error message.
pub fn alert(page: &str) -> String {
    let marker = "role=\"alert\">";
    let start = page.find(marker).expect("an error message") + marker.len();
    page[start..][..page[start..].find('<').unwrap()].to_owned()
}

/// `req` as if it came from `addr` (what the shells set from the TCP peer
/// or API Gateway's `sourceIp`).
pub fn from(mut req: Request, addr: &str) -> Request {
    req.extensions_mut()
        .insert(tokenfn_core::http::wire::SourceAddr(addr.parse().unwrap()));
    req
}
