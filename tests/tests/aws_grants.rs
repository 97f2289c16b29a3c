//! `tokenfn serve --store dynamodb --signer kms` behind a proxy in front of
//! moto: how many AWS round trips each grant makes, one after another, and
//! what a client sees when DynamoDB or KMS fails.

mod aws_support;

use aws_support::{CALLBACK, SECRET, VERIFIER, names, serve};
use serde_json::Value;
use tokenfn_blackbox::aws_proxy::Fault;

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
