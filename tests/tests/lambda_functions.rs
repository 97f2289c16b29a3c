//! The Lambda binaries themselves, run under a local Lambda Runtime API on
//! DynamoDB and KMS (moto's server): init from the environment, API Gateway
//! events in and out, the revoke function's direct commands, and an init
//! that fails on a missing setting.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokenfn_blackbox::runtime_api::{Outcome, RuntimeApi, api_gateway_event};

const SECRET: &str = "lambda-test-secret-0123456789abcdef";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debug")
}

fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL is not set: these tests need moto's server (scripts/test.sh starts it)",
    )
}

/// Runs the CLI against the emulated AWS and returns its JSON output.
fn cli(args: &[&str], stdin: Option<&str>) -> Value {
    let mut cmd = Command::new(binary("tokenfn"));
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tokenfn");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tokenfn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Aws {
    table: String,
    key: String,
}

fn provision() -> Aws {
    let table = format!(
        "tokenfn-lambda-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let init = cli(&["aws-init", "--table", &table, "--create-key"], None);
    assert_eq!(init["table_created"], true);
    let key = init["kms_key_id"].as_str().unwrap().to_owned();
    let again = cli(&["aws-init", "--table", &table], None);
    assert_eq!(again["table_created"], false, "aws-init is idempotent");
    cli(
        &[
            "--store",
            "dynamodb",
            "--table",
            &table,
            "client",
            "add",
            "--client-id",
            "svc",
            "--secret-stdin",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "api",
        ],
        Some(SECRET),
    );
    Aws { table, key }
}

struct Function {
    child: Child,
    api: RuntimeApi,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(name: &str, aws: &Aws, extra: &[(&str, &str)]) -> Function {
    let api = RuntimeApi::start().await.unwrap();
    let mut cmd = Command::new(binary(&format!("tokenfn-{name}")));
    cmd.envs(api.lambda_env(name))
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("TOKENFN_ISSUER", "https://id.example.com")
        .env("TOKENFN_TABLE", &aws.table)
        .env("TOKENFN_KMS_KEY_IDS", &aws.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let f = Function { child, api };
    f.api.wait_ready(Duration::from_secs(20)).await.unwrap();
    f
}

async fn call(f: &Function, event: Value) -> Value {
    match f.api.invoke(&event, Duration::from_secs(20)).await.unwrap() {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("function error: {e}"),
    }
}

fn body_json(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().unwrap_or("null")).unwrap()
}

#[tokio::test]
async fn token_and_discovery_binaries_mint_tokens_that_verify() {
    let aws = provision();
    let discovery = start("discovery", &aws, &[]).await;
    let jwks = call(
        &discovery,
        api_gateway_event("GET", "/.well-known/jwks.json", "", json!({}), None),
    )
    .await;
    assert_eq!(jwks["statusCode"], 200);
    let jwks = body_json(&jwks);
    let meta = call(
        &discovery,
        api_gateway_event(
            "GET",
            "/.well-known/openid-configuration",
            "",
            json!({}),
            None,
        ),
    )
    .await;
    assert_eq!(body_json(&meta)["issuer"], "https://id.example.com");

    let token = start("token", &aws, &[]).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("svc:{SECRET}"))
    );
    let resp = call(
        &token,
        api_gateway_event(
            "POST",
            "/oauth/token",
            "",
            json!({"content-type": "application/x-www-form-urlencoded", "authorization": basic}),
            Some("grant_type=client_credentials"),
        ),
    )
    .await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let at = body_json(&resp)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Verify the KMS signature against the JWKS the discovery function serves.
    let header = jsonwebtoken::decode_header(&at).unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("the token's kid is in the JWKS");
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        key["x"].as_str().unwrap(),
        key["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["svc"]);
    validation.set_issuer(&["https://id.example.com"]);
    let data = jsonwebtoken::decode::<Value>(&at, &decoding, &validation).unwrap();
    assert_eq!(data.claims["client_id"], "svc");

    // A bad request is an RFC 6749 error, not a crash of the container.
    let resp = call(
        &token,
        api_gateway_event(
            "POST",
            "/oauth/token",
            "",
            json!({"content-type": "application/x-www-form-urlencoded"}),
            Some("grant_type=client_credentials&client_id=svc&client_secret=wrong"),
        ),
    )
    .await;
    assert_eq!(resp["statusCode"], 401);
    assert_eq!(body_json(&resp)["error"], "invalid_client");
}

#[tokio::test]
async fn revoke_and_authorize_binaries_need_no_key() {
    let aws = provision();
    // Neither function gets a KMS key: it must not need one.
    let no_key = [("TOKENFN_KMS_KEY_IDS", "")];
    let revoke = start("revoke", &aws, &no_key).await;
    let out = call(
        &revoke,
        json!({"action": "revoke_client", "client_id": "svc"}),
    )
    .await;
    assert_eq!(out, json!({"revoked": 0}));
    match revoke
        .api
        .invoke(
            &json!({"action": "revoke_everything"}),
            Duration::from_secs(20),
        )
        .await
        .unwrap()
    {
        Outcome::Error(e) => assert!(e["errorMessage"].as_str().unwrap().contains("bad command")),
        other => panic!("expected an error, got {other:?}"),
    }
    let resp = call(
        &revoke,
        api_gateway_event(
            "POST",
            "/oauth/revoke",
            "",
            json!({"content-type": "application/x-www-form-urlencoded"}),
            Some(&format!("token=abc&client_id=svc&client_secret={SECRET}")),
        ),
    )
    .await;
    assert_eq!(resp["statusCode"], 200);

    let authorize = start("authorize", &aws, &no_key).await;
    let resp = call(
        &authorize,
        api_gateway_event(
            "GET",
            "/authorize",
            "client_id=nobody&response_type=code",
            json!({}),
            None,
        ),
    )
    .await;
    assert_eq!(resp["statusCode"], 400);
    assert!(resp["body"].as_str().unwrap().contains("not registered"));
}

#[tokio::test]
async fn a_missing_setting_stops_init_with_its_name() {
    let api = RuntimeApi::start().await.unwrap();
    let out = Command::new(binary("tokenfn-token"))
        .envs(api.lambda_env("token"))
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("TOKENFN_ISSUER", "https://id.example.com")
        .env_remove("TOKENFN_TABLE")
        .env_remove("TOKENFN_KMS_KEY_IDS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKENFN_TABLE"));
}
