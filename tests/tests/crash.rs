//! Crash consistency of the embedded store: `tokenfn serve` on SQLite is
//! killed (SIGKILL) in the middle of a refresh storm and started again on
//! the same data directory.
//!
//! Each of the [`WORKERS`] workers holds one token family and refreshes in
//! a loop, each time presenting the token it last received. When the
//! server dies, every worker is left with:
//! - `answered`: the token it last presented and got an answer for (none
//!   before its first answer), and
//! - `held`: the token it last received, which it was presenting when the
//!   server died, in a request whose answer it never got.
//!
//! That request may have committed before the kill (the answer was lost) or
//! not. "Valid" after the restart means:
//! - for `answered`: live, as introspection (RFC 7662) reports it. Its
//!   rotation was acknowledged, so it must stay consumed: SQLite must not
//!   lose a commit the server answered.
//! - for `held`: presenting it yields new tokens, exactly once. Either it
//!   is live (the lost request did not commit) or it was consumed by the
//!   lost request, less than the client's reuse leeway ago, and the server
//!   continues from the successor it committed then and never delivered.
//!
//! Exactly one of the two is valid: `held`, never `answered`. The client
//! has a reuse leeway because without one the second case cannot hold:
//! presenting a consumed token is reuse and revokes the family (DESIGN
//! invariant 3), so a response lost to a crash would cost the user their
//! session.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use openidconnect::OAuth2TokenResponse as _;
use serde_json::Value;

const WORKERS: usize = 16;
const KILLS: usize = 3;
const STORM: &str = "storm";
const STORM_SECRET: &str = "storm-secret-0123456789abcdefghijklmnopqrstuv";
/// Far longer than a kill and a restart take.
const LEEWAY: &str = "600";

/// What one worker holds when the server dies.
struct Family {
    answered: Option<String>,
    held: String,
}

/// Refreshes `held` until a request gets no answer; returns how many
/// rotations it got answers for.
async fn storm(http: reqwest::Client, base: String, family: &mut Family) -> usize {
    let mut rotations = 0;
    loop {
        let sent = http
            .post(format!("{base}/oauth/token"))
            .basic_auth(STORM, Some(STORM_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", family.held.as_str()),
            ])
            .send()
            .await;
        let Ok(resp) = sent else {
            return rotations;
        };
        let status = resp.status();
        let Ok(body) = resp.json::<Value>().await else {
            return rotations;
        };
        assert_eq!(status, 200, "a refresh during the storm: {body}");
        let next = body["refresh_token"].as_str().expect("a refresh token");
        family.answered = Some(std::mem::replace(&mut family.held, next.to_owned()));
        rotations += 1;
    }
}

async fn introspect(env: &TestEnv, token: &str) -> bool {
    let resp = env
        .post_form(
            "/oauth/introspect",
            &[("token", token)],
            Some((STORM, STORM_SECRET)),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.body["active"].as_bool().expect("active")
}

/// A pause of 100 to 900 ms, different each time.
fn random_pause() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(100 + u64::from(nanos % 800))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_refresh_storm_loses_no_token() {
    if skip_on_aws("the embedded store's crash consistency") {
        return;
    }
    let mut env = TestEnv::start_with_clients(&[
        ClientSpec::confidential(STORM, STORM_SECRET).arg("--reuse-leeway", LEEWAY)
    ]);
    let oidc = env.oidc(STORM, Some(STORM_SECRET)).await;
    let mut families = Vec::new();
    for _ in 0..WORKERS {
        let (_, tokens) = env.tokens(&oidc, &["openid", "offline_access"]).await;
        let held = tokens.refresh_token().expect("a refresh token").secret();
        families.push(Family {
            answered: None,
            held: held.clone(),
        });
    }

    let (mut rotations, mut lost_commits) = (0, 0);
    for kill in 0..KILLS {
        let mut storms = tokio::task::JoinSet::new();
        for (i, mut family) in families.drain(..).enumerate() {
            let (http, base) = (app_http_client(), env.server.base.clone());
            storms.spawn(async move {
                let n = storm(http, base, &mut family).await;
                (i, family, n)
            });
        }
        tokio::time::sleep(random_pause()).await;
        // SIGKILL, then a new server on the same data directory.
        env = tokio::task::spawn_blocking(move || env.restart(&[]))
            .await
            .unwrap();
        let mut done: Vec<(usize, Family, usize)> = storms.join_all().await;
        done.sort_by_key(|(i, _, _)| *i);

        for (i, mut family, n) in done {
            rotations += n;
            let context = format!("kill {kill}, worker {i}");
            if let Some(answered) = &family.answered {
                assert!(
                    !introspect(&env, answered).await,
                    "{context}: a rotation the server answered was lost"
                );
            }
            let live = introspect(&env, &family.held).await;
            let resp = env
                .raw_refresh(STORM, Some(STORM_SECRET), &family.held)
                .await;
            assert_eq!(
                resp.status, 200,
                "{context}: the token it last received (live: {live}): {}",
                resp.text
            );
            if !live {
                lost_commits += 1;
            }
            let next = resp.body["refresh_token"]
                .as_str()
                .expect("a refresh token");
            assert!(introspect(&env, next).await, "{context}: the family lives");
            families.push(Family {
                answered: Some(std::mem::replace(&mut family.held, next.to_owned())),
                held: family.held,
            });
        }
    }
    println!(
        "{KILLS} kills: {rotations} rotations answered, {lost_commits} committed with the answer lost"
    );
    assert!(rotations > 0, "the storms rotated tokens");
}
