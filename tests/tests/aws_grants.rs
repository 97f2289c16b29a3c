//! `tokenfn serve --store dynamodb --signer kms` behind a proxy in front of
//! moto: how many AWS round trips each grant makes, one after another, and
//! what a client sees when DynamoDB or KMS fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokenfn_blackbox::aws_proxy::{AwsProxy, Call, Fault, sequential_rounds};

const SECRET: &str = "aws-grants-secret-0123456789abcdefghij";
const PASSWORD: &str = "correct horse battery";
const CALLBACK: &str = "http://127.0.0.1:9/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn bin() -> PathBuf {
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

struct Serve {
    child: Child,
    base: String,
    http: reqwest::Client,
    proxy: AwsProxy,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve() -> Serve {
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
    let mut args: Vec<&str> = aws.to_vec();
    args.extend([
        "client",
        "add",
        "--client-id",
        "web",
        "--secret-stdin",
        "--redirect-uri",
        CALLBACK,
        "--scopes",
        "openid offline_access api",
    ]);
    cli(&upstream, &args, Some(SECRET));
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
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
        base,
        http,
        proxy,
    }
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_owned()
}

impl Serve {
    /// A code through the real login and consent forms.
    async fn code(&self, scope: &str) -> String {
        let url = format!(
            "{}/authorize?response_type=code&client_id=web&redirect_uri={}&scope={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            self.base,
            urlenc(CALLBACK),
            urlenc(scope)
        );
        let page = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut form = vec![
            ("interaction", hidden(&page, "interaction")),
            ("csrf", hidden(&page, "csrf")),
        ];
        if page.contains("action=\"/login\"") {
            form.push(("username", "alice".into()));
            form.push(("password", PASSWORD.into()));
            let resp = self
                .http
                .post(format!("{}/login", self.base))
                .form(&form)
                .send()
                .await
                .unwrap();
            if resp.status() == 303 {
                return code_of(&resp);
            }
            let page = resp.text().await.unwrap();
            form = vec![
                ("interaction", hidden(&page, "interaction")),
                ("csrf", hidden(&page, "csrf")),
            ];
        }
        form.push(("decision", "allow".into()));
        let resp = self
            .http
            .post(format!("{}/consent", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        code_of(&resp)
    }

    async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth("web", Some(SECRET))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn exchange(&self, code: &str) -> reqwest::Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .await
    }

    async fn refresh(&self, rt: &str) -> reqwest::Response {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await
    }

    /// The calls one token request makes, and their sequential rounds.
    async fn measured(&self, form: &[(&str, &str)]) -> (Value, Vec<Call>, usize) {
        self.proxy.clear_calls();
        let resp = self.token(form).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let calls = self.proxy.calls();
        let rounds = sequential_rounds(&calls);
        (body, calls, rounds)
    }
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn code_of(resp: &reqwest::Response) -> String {
    let loc = resp.headers()["location"].to_str().unwrap();
    let url = url::Url::parse(loc).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {loc}"))
}

fn names(calls: &[Call]) -> Vec<String> {
    let mut n: Vec<String> = calls.iter().map(|c| c.name().to_owned()).collect();
    n.sort();
    n
}

#[tokio::test]
async fn round_trips_to_aws_per_grant() {
    let s = serve().await;

    // Without openid: one read (the client and the code or token together),
    // then the write beside the one signature.
    let code = s.code("offline_access api").await;
    let (body, calls, rounds) = s
        .measured(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .await;
    println!(
        "authorization_code (no openid): {:?} in {rounds} rounds",
        names(&calls)
    );
    assert_eq!(
        names(&calls),
        ["BatchGetItem", "Sign", "TransactWriteItems"]
    );
    assert_eq!(rounds, 2);
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let (_, calls, rounds) = s
        .measured(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await;
    println!(
        "refresh_token (no openid): {:?} in {rounds} rounds",
        names(&calls)
    );
    assert_eq!(
        names(&calls),
        ["BatchGetItem", "Sign", "TransactWriteItems"]
    );
    assert_eq!(rounds, 2);

    // With openid, both signatures (access token and ID token) run beside
    // the write: the ID token has no at_hash to wait for.
    let code = s.code("openid offline_access").await;
    let (body, calls, rounds) = s
        .measured(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .await;
    println!(
        "authorization_code (openid): {:?} in {rounds} rounds",
        names(&calls)
    );
    assert_eq!(
        names(&calls),
        ["BatchGetItem", "Sign", "Sign", "TransactWriteItems"]
    );
    assert_eq!(rounds, 2);
    // A refresh with openid: the same two rounds.
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let (_, calls, rounds) = s
        .measured(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await;
    println!(
        "refresh_token (openid): {:?} in {rounds} rounds",
        names(&calls)
    );
    assert_eq!(
        names(&calls),
        ["BatchGetItem", "Sign", "Sign", "TransactWriteItems"]
    );
    assert_eq!(rounds, 2);
    // Never a Scan, on any path.
    assert!(s.proxy.calls().iter().all(|c| c.name() != "Scan"));
}

#[tokio::test]
async fn failures_answer_503_and_leave_the_token_working() {
    let s = serve().await;
    let code = s.code("openid offline_access").await;
    let resp = s.exchange(&code).await;
    assert_eq!(resp.status(), 200);
    let mut rt = resp.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    for (op, fault) in [
        ("Sign", Fault::server_error()),
        ("Sign", Fault::throttle()),
        ("TransactWriteItems", Fault::server_error()),
        ("TransactWriteItems", Fault::throttle()),
        ("BatchGetItem", Fault::server_error()),
        ("BatchGetItem", Fault::throttle()),
        ("Sign", Fault::Drop),
    ] {
        s.proxy.break_op(op, fault.clone());
        let resp = s.refresh(&rt).await;
        assert_eq!(resp.status(), 503, "{op} {fault:?}");
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        s.proxy.heal();
        // The same refresh token still works once the dependency is back.
        let resp = s.refresh(&rt).await;
        assert_eq!(resp.status(), 200, "after {op} {fault:?}");
        rt = resp.json::<Value>().await.unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    }

    // A code whose tokens could not be signed can be exchanged again.
    let code = s.code("openid offline_access").await;
    s.proxy.break_op("Sign", Fault::server_error());
    assert_eq!(s.exchange(&code).await.status(), 503);
    s.proxy.heal();
    assert_eq!(s.exchange(&code).await.status(), 200);
}

#[tokio::test]
async fn thirty_two_concurrent_refreshes_of_one_token_have_one_winner() {
    let s = serve().await;
    let code = s.code("offline_access api").await;
    let resp = s.exchange(&code).await;
    let rt = resp.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, base, rt) = (s.http.clone(), s.base.clone(), rt.clone());
        tasks.spawn(async move {
            let resp = http
                .post(format!("{base}/oauth/token"))
                .basic_auth("web", Some(SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        });
    }
    let mut wins = 0;
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        match status {
            200 => wins += 1,
            400 => assert_eq!(body["error"], "invalid_grant"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(wins, 1, "exactly one concurrent refresh may win");
}
