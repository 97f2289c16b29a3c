//! `tokenfn serve --store dynamodb --signer kms` behind a proxy in front of
//! moto: how many AWS round trips each grant makes, one after another, and
//! what a client sees when DynamoDB or KMS fails.

mod aws_support;

use aws_support::{CALLBACK, SECRET, Serve, VERIFIER, names, serve};
use serde_json::Value;
use tokenfn_blackbox::aws_proxy::{Call, Fault};

/// Each grant is measured this many times; see `fewest_rounds`.
const TRIES: usize = 3;

/// The grant's calls, the same on every try, and the fewest sequential
/// rounds seen. Calls the server sends together can only come apart in time
/// (a loaded machine, moto answering one call at a time), never merge, so
/// the fewest rounds seen is how many the server waits for in turn.
fn fewest_rounds(label: &str, tries: &[(Vec<Call>, usize)], expected: &[&str]) -> usize {
    for (calls, rounds) in tries {
        println!("{label}: {:?} in {rounds} rounds", names(calls));
        assert_eq!(names(calls), expected, "{label}");
    }
    tries.iter().map(|(_, rounds)| *rounds).min().unwrap_or(0)
}

/// Code exchanges of fresh codes for `scope`: the last body and the tries.
async fn exchanges(s: &Serve, scope: &str) -> (Value, Vec<(Vec<Call>, usize)>) {
    let mut tries = Vec::new();
    let mut body = Value::Null;
    for _ in 0..TRIES {
        let code = s.code(scope).await;
        let (b, calls, rounds) = s
            .measured(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ])
            .await;
        body = b;
        tries.push((calls, rounds));
    }
    (body, tries)
}

/// Refreshes along the chain that starts at the body's refresh token.
async fn refreshes(s: &Serve, body: &Value) -> Vec<(Vec<Call>, usize)> {
    let mut rt = body["refresh_token"].as_str().unwrap().to_owned();
    let mut tries = Vec::new();
    for _ in 0..TRIES {
        let (b, calls, rounds) = s
            .measured(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
            .await;
        rt = b["refresh_token"].as_str().unwrap().to_owned();
        tries.push((calls, rounds));
    }
    tries
}

#[tokio::test]
async fn round_trips_to_aws_per_grant() {
    let s = serve().await;

    // Without openid: one read (the client and the code or token together),
    // then the write beside the one signature.
    let without = ["BatchGetItem", "Sign", "TransactWriteItems"];
    let (body, tries) = exchanges(&s, "offline_access api").await;
    assert_eq!(
        fewest_rounds("authorization_code (no openid)", &tries, &without),
        2
    );
    let tries = refreshes(&s, &body).await;
    assert_eq!(
        fewest_rounds("refresh_token (no openid)", &tries, &without),
        2
    );

    // With openid, both signatures (access token and ID token) run beside
    // the write: the ID token has no at_hash to wait for.
    let with = ["BatchGetItem", "Sign", "Sign", "TransactWriteItems"];
    let (body, tries) = exchanges(&s, "openid offline_access").await;
    assert_eq!(
        fewest_rounds("authorization_code (openid)", &tries, &with),
        2
    );
    // A refresh with openid: the same two rounds.
    let tries = refreshes(&s, &body).await;
    assert_eq!(fewest_rounds("refresh_token (openid)", &tries, &with), 2);
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
