//! What the tests of `tokenfn serve --store dynamodb --signer kms` behind
//! the recording proxy share: provisioning (table, key, clients, a user)
//! with the CLI straight on moto, the server behind a proxy in front of
//! moto, the browser walk that yields a code or approves a device, and a
//! look at the table itself.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use tokenfn_blackbox::aws_proxy::{AwsProxy, Call, sequential_rounds};

pub const SECRET: &str = "aws-grants-secret-0123456789abcdefghij";
pub const PASSWORD: &str = "correct horse battery";
pub const CALLBACK: &str = "http://127.0.0.1:9/cb";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The client every grant is tried with: reuse leeway 0 (the default).
pub const WEB: &str = "web";
/// The same client with a reuse leeway of [`LEEWAY`] seconds.
pub const LENIENT: &str = "lenient";
pub const LEEWAY: i64 = 60;

fn bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TOKENFN_BIN") {
        return PathBuf::from(bin);
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = dir.join("debug/tokenfn");
    assert!(
        path.exists(),
        "run `cargo build --workspace --bins` first (scripts/test.sh does)"
    );
    path
}

fn moto() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL is not set: these tests need moto's server (scripts/test.sh starts it)",
    )
}

fn cli(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Value {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub struct Serve {
    child: Child,
    /// The end of the server's stderr, shown when a test fails.
    log: Arc<Mutex<String>>,
    pub base: String,
    pub http: reqwest::Client,
    pub proxy: AwsProxy,
    pub table: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "---- tokenfn serve at {} (stderr, end) ----\n{log}",
                self.base
            );
        }
    }
}

/// A fresh table and key with the clients `web` and `lenient` (every grant
/// type, the second with a reuse leeway) and the user alice, then `tokenfn
/// serve` on them through a new proxy, with `env` set for the server.
pub async fn serve_with(env: &[(&str, &str)]) -> Serve {
    let upstream = moto();
    let table = format!(
        "tokenfn-grants-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let init = cli(
        &upstream,
        &["aws-init", "--table", &table, "--create-key"],
        None,
    );
    let key = init["kms_key_id"].as_str().unwrap().to_owned();
    let aws = [
        "--store",
        "dynamodb",
        "--table",
        &table,
        "--signer",
        "kms",
        "--kms-key-id",
        &key,
    ];
    let leeway = LEEWAY.to_string();
    for (id, extra) in [(WEB, None), (LENIENT, Some(leeway.as_str()))] {
        let mut args: Vec<&str> = aws.to_vec();
        args.extend([
            "client",
            "add",
            "--client-id",
            id,
            "--secret-stdin",
            "--redirect-uri",
            CALLBACK,
            "--scopes",
            "openid offline_access api",
            "--grant-types",
            "authorization_code,refresh_token,client_credentials,password,device_code",
        ]);
        if let Some(leeway) = extra {
            args.extend(["--reuse-leeway", leeway]);
        }
        cli(&upstream, &args, Some(SECRET));
    }
    let mut args: Vec<&str> = aws.to_vec();
    args.extend(["user", "add", "--username", "alice", "--password-stdin"]);
    cli(&upstream, &args, Some(PASSWORD));

    let proxy = AwsProxy::start(&upstream).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(aws)
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .env("AWS_ENDPOINT_URL", proxy.url())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .env("TOKENFN_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
            log.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Only the end matters: what led to a failure.
            if log.len() > 1 << 16 {
                let cut = log.len() - (1 << 15);
                let cut = (cut..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(0);
                log.drain(..cut);
            }
        }
    });
    let stdout = child.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("tokenfn listening on ") {
                return url.to_owned();
            }
        }
        panic!("serve ended before listening");
    });
    let base = tokio::time::timeout(Duration::from_secs(30), base)
        .await
        .unwrap()
        .unwrap();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Serve {
        child,
        log,
        base,
        http,
        proxy,
        table,
    }
}

/// [`serve_with`] the environment the tests run in.
pub async fn serve() -> Serve {
    serve_with(&[]).await
}

pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_owned()
}

fn interaction(page: &str) -> Vec<(&'static str, String)> {
    vec![
        ("interaction", hidden(page, "interaction")),
        ("csrf", hidden(page, "csrf")),
    ]
}

impl Serve {
    /// Signs alice in on `page` if it asks, then allows on the consent page
    /// if one comes: the response to the last form.
    async fn sign_in_and_allow(&self, page: String) -> reqwest::Response {
        let mut page = page;
        if page.contains("action=\"/login\"") {
            let mut form = interaction(&page);
            form.push(("username", "alice".into()));
            form.push(("password", PASSWORD.into()));
            let resp = self.browser_post("/login", &form).await;
            if resp.status() == 303 {
                return resp;
            }
            page = resp.text().await.unwrap();
        }
        let mut form = interaction(&page);
        form.push(("decision", "allow".into()));
        self.browser_post("/consent", &form).await
    }

    /// The page at `url`, as the browser gets it.
    async fn page(&self, url: &str) -> String {
        let resp = self.http.get(url).send().await.unwrap();
        resp.text().await.unwrap()
    }

    /// A form the browser posts to `path`.
    async fn browser_post(&self, path: &str, form: &[(&str, String)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// A code for `client` through the real login and consent forms.
    pub async fn code_for(&self, client: &str, scope: &str) -> String {
        let url = format!(
            "{}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            self.base,
            urlenc(CALLBACK),
            urlenc(scope)
        );
        let page = self.page(&url).await;
        code_of(&self.sign_in_and_allow(page).await)
    }

    /// A code for `web`.
    pub async fn code(&self, scope: &str) -> String {
        self.code_for(WEB, scope).await
    }

    /// A device code for `client`, approved by alice on the verification page.
    pub async fn approved_device_code(&self, client: &str, scope: &str) -> String {
        let start: Value = self
            .http
            .post(format!("{}/oauth/device_authorization", self.base))
            .basic_auth(client, Some(SECRET))
            .form(&[("scope", scope)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user_code = start["user_code"].as_str().unwrap().to_owned();
        let page = self.page(&format!("{}/device", self.base)).await;
        let mut form = interaction(&page);
        form.push(("user_code", user_code));
        let page = self
            .browser_post("/device", &form)
            .await
            .text()
            .await
            .unwrap();
        let done = self.sign_in_and_allow(page).await;
        assert!(
            done.text().await.unwrap().contains("Return to your device"),
            "the device is approved"
        );
        start["device_code"].as_str().unwrap().to_owned()
    }

    /// A token request of `client` (client_secret_basic).
    pub async fn token_as(&self, client: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(client, Some(SECRET))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.token_as(WEB, form).await
    }

    pub async fn exchange(&self, code: &str) -> reqwest::Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    pub async fn refresh_as(&self, client: &str, rt: &str) -> reqwest::Response {
        self.token_as(
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await
    }

    pub async fn refresh(&self, rt: &str) -> reqwest::Response {
        self.refresh_as(WEB, rt).await
    }

    /// The calls one token request makes, and their sequential rounds.
    pub async fn measured(&self, form: &[(&str, &str)]) -> (Value, Vec<Call>, usize) {
        self.proxy.clear_calls();
        let resp = self.token(form).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let calls = self.proxy.calls();
        let rounds = sequential_rounds(&calls);
        (body, calls, rounds)
    }

    /// Every item of the table, straight from moto (a test may Scan).
    pub async fn items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let sdk = tokenfn_core::aws::sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }
}

pub fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn code_of(resp: &reqwest::Response) -> String {
    let loc = resp.headers()["location"].to_str().unwrap();
    let url = url::Url::parse(loc).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {loc}"))
}

pub fn names(calls: &[Call]) -> Vec<String> {
    let mut n: Vec<String> = calls.iter().map(|c| c.name().to_owned()).collect();
    n.sort();
    n
}
