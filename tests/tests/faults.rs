//! Faults of DynamoDB and KMS at each step of each grant, on `tokenfn serve
//! --store dynamodb --signer kms` behind the recording proxy in front of moto.
//!
//! For each grant the clean run's calls are recorded first; then, for each
//! of those calls (a step: the Nth call of an operation) and each kind of
//! fault, one request of the grant meets that fault at that step alone.
//! Whatever the client gets must be 200, or 503 `temporarily_unavailable`
//! with `Retry-After`; afterwards the table holds no half-written grant, the
//! code or token presented still works exactly once when the answer was
//! 503, and nothing presented ever yields two successes.
//!
//! The server runs with `AWS_MAX_ATTEMPTS=1`: the SDK does not retry, so
//! every fault reaches the server's own handling (and the run stays short).
//! `sdk_retries_hide_single_faults` runs with the SDK's default retries
//! instead: there a single fault is retried away, including a commit whose
//! answer was lost (the retried transaction finds its own writes).
//!
//! Run with `--nocapture` to see the outcome table.

mod aws_support;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_support::*;
use serde_json::Value;
use tokenfn_blackbox::aws_proxy::Fault;

/// `shared/src/aws.rs` gives each SDK attempt 2 s: a slow answer is one
/// that comes later than that (and no later than needed).
const PAST_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2300);
/// No SDK retries: each fault reaches the server.
const ONE_ATTEMPT: &[(&str, &str)] = &[("AWS_MAX_ATTEMPTS", "1")];
const WRITES: [&str; 4] = ["TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Code,
    CodeOpenid,
    Refresh,
    RefreshOpenid,
    ClientCredentials,
    DevicePoll,
    Password,
}

impl Grant {
    fn label(self) -> &'static str {
        match self {
            Grant::Code => "authorization_code",
            Grant::CodeOpenid => "authorization_code+openid",
            Grant::Refresh => "refresh_token",
            Grant::RefreshOpenid => "refresh_token+openid",
            Grant::ClientCredentials => "client_credentials",
            Grant::DevicePoll => "device_code poll",
            Grant::Password => "password",
        }
    }

    fn scope(self) -> &'static str {
        match self {
            Grant::CodeOpenid | Grant::RefreshOpenid | Grant::Password => "openid offline_access",
            Grant::ClientCredentials => "api",
            _ => "offline_access api",
        }
    }

    /// How many grants one success creates.
    fn new_grants(self) -> usize {
        usize::from(matches!(
            self,
            Grant::Code | Grant::CodeOpenid | Grant::DevicePoll | Grant::Password
        ))
    }

    /// Whether the request presents something single-use (a code, a
    /// refresh token, a device code).
    fn presents(self) -> bool {
        !matches!(self, Grant::ClientCredentials | Grant::Password)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Throttled,
    Error500,
    Slow,
    Dropped,
    /// Applied by moto, then the connection closed without the answer.
    AppliedDropped,
    /// Applied by moto, then answered 500.
    Applied500,
}

const KINDS: [Kind; 6] = [
    Kind::Throttled,
    Kind::Error500,
    Kind::Slow,
    Kind::Dropped,
    Kind::AppliedDropped,
    Kind::Applied500,
];

impl Kind {
    fn fault(self) -> Fault {
        match self {
            Kind::Throttled => Fault::throttle(),
            Kind::Error500 => Fault::server_error(),
            Kind::Slow => Fault::Delay(PAST_ATTEMPT_TIMEOUT),
            Kind::Dropped => Fault::Drop,
            Kind::AppliedDropped => Fault::Lost { status: None },
            Kind::Applied500 => Fault::Lost { status: Some(500) },
        }
    }

    /// A lost answer matters for writes only: a read or a signature
    /// applied twice changes nothing.
    fn applies_to(self, op: &str) -> bool {
        !matches!(self, Kind::AppliedDropped | Kind::Applied500) || WRITES.contains(&op)
    }
}

/// A step of a grant: the `nth` call of `op` (in the order the clean run
/// started them).
#[derive(Clone, Debug)]
struct Step {
    op: String,
    nth: usize,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} #{}", self.op, self.nth)
    }
}

/// What a grant's request presents, when it presents something.
async fn prepare(s: &Serve, grant: Grant, client: &str) -> Option<String> {
    match grant {
        Grant::Code | Grant::CodeOpenid => Some(s.code_for(client, grant.scope()).await),
        Grant::Refresh | Grant::RefreshOpenid => {
            let code = s.code_for(client, grant.scope()).await;
            let resp = s.token_as(client, &code_form(&code)).await;
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.unwrap();
            Some(body["refresh_token"].as_str().unwrap().to_owned())
        }
        Grant::DevicePoll => Some(s.approved_device_code(client, grant.scope()).await),
        Grant::ClientCredentials | Grant::Password => None,
    }
}

fn code_form(code: &str) -> [(&'static str, &str); 4] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ]
}

/// One token request of `grant`; its status and JSON body.
async fn request(s: &Serve, grant: Grant, client: &str, presented: Option<&str>) -> (u16, Value) {
    let p = presented.unwrap_or_default();
    let resp = match grant {
        Grant::Code | Grant::CodeOpenid => s.token_as(client, &code_form(p)).await,
        Grant::Refresh | Grant::RefreshOpenid => s.refresh_as(client, p).await,
        Grant::ClientCredentials => {
            s.token_as(
                client,
                &[("grant_type", "client_credentials"), ("scope", "api")],
            )
            .await
        }
        Grant::DevicePoll => {
            s.token_as(client, &[("grant_type", DEVICE_GRANT), ("device_code", p)])
                .await
        }
        Grant::Password => {
            s.token_as(
                client,
                &[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("scope", grant.scope()),
                ],
            )
            .await
        }
    };
    let status = resp.status().as_u16();
    if status == 503 {
        assert!(
            resp.headers().contains_key("retry-after"),
            "503 without Retry-After"
        );
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }
    let body: Value = resp.json().await.unwrap();
    if status == 503 {
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    (status, body)
}

/// The steps of a clean run of `grant`.
async fn steps(s: &Serve, grant: Grant) -> Vec<Step> {
    let presented = prepare(s, grant, WEB).await;
    s.proxy.clear_calls();
    let (status, body) = request(s, grant, WEB, presented.as_deref()).await;
    assert_eq!(status, 200, "clean run of {}: {body}", grant.label());
    let mut calls = s.proxy.calls();
    calls.sort_by_key(|c| c.start_us);
    let mut seen: HashMap<String, usize> = HashMap::new();
    calls
        .iter()
        .map(|c| {
            let nth = seen.entry(c.name().to_owned()).or_default();
            *nth += 1;
            Step {
                op: c.name().to_owned(),
                nth: *nth,
            }
        })
        .collect()
}

type Item = HashMap<String, AttributeValue>;

fn attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        Some(AttributeValue::N(v)) => Some(v),
        _ => None,
    }
}

/// The table's consistency: what no interrupted grant may leave behind.
/// Returns the number of active grants of alice.
async fn check_table(s: &Serve, context: &str) -> usize {
    let items = s.items().await;
    let by_pk: HashMap<&str, &Item> = items.iter().map(|i| (attr(i, "pk").unwrap(), i)).collect();
    let grant_of = |id: &str| by_pk.get(format!("GRANT#{id}").as_str()).copied();
    let mut heads: HashMap<&str, usize> = HashMap::new();
    let mut active = 0;
    for item in &items {
        let pk = attr(item, "pk").unwrap();
        let consumed = item.contains_key("consumed_at");
        if pk.starts_with("REFRESH#") {
            let grant = attr(item, "grant_id").unwrap();
            assert!(
                grant_of(grant).is_some(),
                "{context}: a refresh token of a missing grant"
            );
            if !consumed {
                *heads.entry(grant).or_default() += 1;
            }
            if let Some(next) = attr(item, "successor_hash") {
                let next = by_pk.get(format!("REFRESH#{next}").as_str());
                assert!(
                    next.is_some_and(|n| attr(n, "grant_id") == Some(grant)),
                    "{context}: a consumed token names a missing successor"
                );
            }
        } else if pk.starts_with("CODE#") || pk.starts_with("DEVICE#") {
            let grant = attr(item, "grant_id").and_then(grant_of);
            if consumed {
                assert!(
                    grant.is_some(),
                    "{context}: {pk} consumed without its grant"
                );
            } else {
                assert!(
                    grant.is_none(),
                    "{context}: {pk} unconsumed, its grant exists"
                );
            }
        }
    }
    for item in &items {
        let pk = attr(item, "pk").unwrap();
        if !pk.starts_with("GRANT#") || item.contains_key("revoked_at") {
            continue;
        }
        active += 1;
        let id = attr(item, "id").unwrap();
        let refreshable = attr(item, "scopes").unwrap().contains("offline_access");
        let want = usize::from(refreshable);
        assert_eq!(
            heads.get(id).copied().unwrap_or(0),
            want,
            "{context}: an active grant with {want} live refresh token(s) expected"
        );
    }
    active
}

/// One fault at one step of one grant; returns the outcome in words.
async fn case(s: &Serve, grant: Grant, step: &Step, kind: Kind) -> String {
    let context = format!("{} / {step} / {kind:?}", grant.label());
    let presented = prepare(s, grant, WEB).await;
    let grants_before = check_table(s, &context).await;
    s.proxy.break_nth(&step.op, step.nth, kind.fault());
    let (status, body) = request(s, grant, WEB, presented.as_deref()).await;
    assert!(
        s.proxy.settle(Duration::from_secs(10)).await,
        "{context}: a call hangs"
    );
    assert!(!s.proxy.armed(), "{context}: the step was never reached");
    s.proxy.heal();
    let grants_after = check_table(s, &context).await;
    match status {
        200 => {
            assert_eq!(
                grants_after,
                grants_before + grant.new_grants(),
                "{context}: grants"
            );
            still_one_success(s, grant, presented.as_deref(), &body, &context).await;
            "200".into()
        }
        503 => {
            // Nothing was issued: no grant may remain of it.
            assert_eq!(
                grants_after, grants_before,
                "{context}: an unissued grant remains"
            );
            let (status, body) = request(s, grant, WEB, presented.as_deref()).await;
            assert_eq!(status, 200, "{context}: the retry after 503: {body}");
            still_one_success(s, grant, presented.as_deref(), &body, &context).await;
            if grant.presents() {
                "503; retry 200".into()
            } else {
                "503; retry 200, no grant left".into()
            }
        }
        other => panic!("{context}: {other} {body}"),
    }
}

/// After the one success `body` for `presented`: its refresh token works,
/// and `presented` never succeeds again.
async fn still_one_success(
    s: &Serve,
    grant: Grant,
    presented: Option<&str>,
    body: &Value,
    context: &str,
) {
    if let Some(rt) = body["refresh_token"].as_str() {
        let resp = s.refresh(rt).await;
        assert_eq!(resp.status(), 200, "{context}: the issued refresh token");
    }
    if grant.presents() {
        let (status, body) = request(s, grant, WEB, presented).await;
        assert_eq!(status, 400, "{context}: presented again: {body}");
        assert_eq!(body["error"], "invalid_grant", "{context}");
    }
}

/// Every fault kind at every step of `grant`; prints the outcome table.
async fn every_fault(grant: Grant) {
    let s = serve_with(ONE_ATTEMPT).await;
    let steps = steps(&s, grant).await;
    let mut table = String::new();
    for step in &steps {
        for kind in KINDS {
            if !kind.applies_to(&step.op) {
                continue;
            }
            let outcome = case(&s, grant, step, kind).await;
            let _ = writeln!(
                table,
                "| {} | {step} | {kind:?} | {outcome} |",
                grant.label()
            );
        }
    }
    println!("{table}");
}

#[tokio::test]
async fn faults_in_the_code_exchange() {
    every_fault(Grant::Code).await;
}

#[tokio::test]
async fn faults_in_the_code_exchange_with_openid() {
    every_fault(Grant::CodeOpenid).await;
}

#[tokio::test]
async fn faults_in_the_refresh() {
    every_fault(Grant::Refresh).await;
}

#[tokio::test]
async fn faults_in_the_refresh_with_openid() {
    every_fault(Grant::RefreshOpenid).await;
}

#[tokio::test]
async fn faults_in_client_credentials() {
    every_fault(Grant::ClientCredentials).await;
}

#[tokio::test]
async fn faults_in_the_device_poll() {
    every_fault(Grant::DevicePoll).await;
}

#[tokio::test]
async fn faults_in_the_password_grant() {
    every_fault(Grant::Password).await;
}

/// A rotation that commits but whose answer is lost, and which the server
/// cannot take back (its undo fails too): the presented token is consumed.
/// With a reuse leeway the client recovers by presenting it again, and the
/// family lives on; without one the second presentation is reuse, and the
/// family is revoked (DESIGN invariants 2 and 3: the leeway is the
/// client's protection against lost responses).
#[tokio::test]
async fn a_lost_rotation_answer_recovers_within_the_leeway() {
    let s = serve_with(ONE_ATTEMPT).await;
    for client in [LENIENT, WEB] {
        let rt = prepare(&s, Grant::Refresh, client).await.unwrap();
        let grants = check_table(&s, client).await;
        s.proxy
            .break_next("TransactWriteItems", Kind::AppliedDropped.fault());
        // The undo reads the presented token first (the request's own read
        // is a BatchGetItem): that read fails, and nothing is taken back.
        s.proxy.break_nth("GetItem", 1, Fault::server_error());
        let (status, body) = request(&s, Grant::Refresh, client, Some(&rt)).await;
        assert_eq!(status, 503, "{body}");
        assert!(s.proxy.settle(Duration::from_secs(10)).await);
        assert!(!s.proxy.armed(), "both faults were met");
        s.proxy.heal();
        assert_eq!(check_table(&s, client).await, grants);

        let (status, body) = request(&s, Grant::Refresh, client, Some(&rt)).await;
        if client == LENIENT {
            assert_eq!(status, 200, "within the leeway: {body}");
            let next = body["refresh_token"].as_str().unwrap();
            assert_eq!(s.refresh_as(client, next).await.status(), 200);
            assert_eq!(check_table(&s, client).await, grants, "the family lives");
        } else {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], "invalid_grant");
            assert_eq!(check_table(&s, client).await, grants - 1, "family revoked");
        }
    }
}

/// With the SDK's own retries (3 attempts), one fault at the write of a
/// grant is retried away: the client gets 200, once. A commit whose answer
/// was lost is sent again by the SDK and must be recognised as this call's
/// own, neither a replay nor a reuse.
#[tokio::test]
async fn sdk_retries_hide_single_faults() {
    let s = serve().await;
    let mut seen = HashSet::new();
    for grant in [
        Grant::Code,
        Grant::Refresh,
        Grant::DevicePoll,
        Grant::Password,
    ] {
        for kind in KINDS {
            let step = Step {
                op: "TransactWriteItems".into(),
                nth: 1,
            };
            let context = format!("{} / {step} / {kind:?} (SDK retries)", grant.label());
            let presented = prepare(&s, grant, WEB).await;
            let grants = check_table(&s, &context).await;
            s.proxy.break_nth(&step.op, step.nth, kind.fault());
            let (status, body) = request(&s, grant, WEB, presented.as_deref()).await;
            assert_eq!(status, 200, "{context}: {body}");
            assert!(s.proxy.settle(Duration::from_secs(10)).await);
            assert!(!s.proxy.armed(), "{context}: the fault was met");
            s.proxy.heal();
            let after = check_table(&s, &context).await;
            assert_eq!(after, grants + grant.new_grants(), "{context}");
            still_one_success(&s, grant, presented.as_deref(), &body, &context).await;
            seen.insert(kind);
        }
    }
    assert_eq!(seen.len(), KINDS.len());
}
