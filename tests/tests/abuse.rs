//! Under attack, against a running `tokenfn serve`: a wrong password costs
//! the same whether the user exists or not, and the throttling counts by
//! the TCP peer's address, which no header changes. Requests come from
//! chosen loopback addresses (all of 127.0.0.0/8 reaches the server).

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::*;

const ROPC_SECRET: &str = "ropc-secret-0123456789abcdefghijklmnopqrstuvwx";
/// Clients allowed the password grant: each lane of a client holds 20
/// free failures, so the timing run spreads its attempts over these.
const ROPC_CLIENTS: usize = 5;
const WRONG: &str = "the username or password is wrong";

fn ropc(i: usize) -> String {
    format!("ropc-{i}")
}

/// An HTTP client whose connections leave from 127.0.0.`n`.
fn from_loopback(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

async fn password_grant(
    env: &TestEnv,
    http: &reqwest::Client,
    client: &str,
    user: (&str, &str),
    headers: &[(&str, &str)],
) -> JsonResponse {
    let mut req = http
        .post(env.url("/oauth/token"))
        .basic_auth(client, Some(ROPC_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", user.0),
            ("password", user.1),
        ]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    JsonResponse::read(req.send().await.expect("POST /oauth/token")).await
}

fn start() -> TestEnv {
    let clients: Vec<ClientSpec> = (0..ROPC_CLIENTS)
        .map(|i| ClientSpec::confidential(&ropc(i), ROPC_SECRET).grant_types("password"))
        .collect();
    TestEnv::start_with_clients(&clients)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The one timing check: argon2 runs for unknown usernames too, so a wrong
/// password for a real user and any password for an unknown one take the
/// same time. Attempts alternate, each from its own address and spread
/// over users and clients, so that no throttling lane holds any of them
/// (every one is checked to be a real refusal, not a wait).
#[tokio::test]
async fn a_wrong_password_costs_the_same_for_real_and_unknown_users() {
    let env = start();
    let real = [(USER, "not-alices-password"), (USER2, "not-bobs-password")];
    let unknown = [
        ("nobody-here", "not-a-password"),
        ("not-a-user", "not-a-password"),
    ];
    const ROUNDS: usize = 40;
    let (mut real_times, mut unknown_times) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let http = from_loopback(10 + i as u8);
        let client = ropc(i % ROPC_CLIENTS);
        // Alternate which goes first, so that drift favours neither.
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_real in order {
            let user = if is_real {
                real[i % real.len()]
            } else {
                unknown[i % unknown.len()]
            };
            let start = Instant::now();
            let resp = password_grant(&env, &http, &client, user, &[]).await;
            let took = start.elapsed();
            assert_eq!(resp.status, 400, "{}", resp.text);
            assert_eq!(
                resp.body["error_description"], WRONG,
                "round {i}, {user:?}: {}",
                resp.text
            );
            if is_real {
                real_times.push(took);
            } else {
                unknown_times.push(took);
            }
        }
    }
    let (r, u) = (median(real_times), median(unknown_times));
    let ratio = r.as_secs_f64().max(u.as_secs_f64()) / r.as_secs_f64().min(u.as_secs_f64());
    eprintln!("median wrong password: real user {r:?}, unknown user {u:?} (ratio {ratio:.2})");
    assert!(
        ratio < 1.5,
        "a wrong password for a real user takes {r:?}, for an unknown one {u:?}"
    );
}

/// The address the throttling counts by is the connection's; a client
/// cannot move to a fresh lane by sending `X-Forwarded-For`.
#[tokio::test]
async fn throttling_counts_by_the_connection_not_by_forwarding_headers() {
    let env = start();
    let attacker = from_loopback(2);
    let client = ropc(0);
    // Five free failures, then each doubles the wait; the test sleeps each
    // wait out, so that nine count and the last wait is 8 s.
    for i in 0..9u32 {
        if i >= 6 {
            tokio::time::sleep(Duration::from_millis((1000 << (i - 6)) + 200)).await;
        }
        let forged = format!("203.0.113.{i}");
        let resp = password_grant(
            &env,
            &attacker,
            &client,
            (USER, "guess"),
            &[("x-forwarded-for", &forged), ("x-real-ip", &forged)],
        )
        .await;
        assert_eq!(resp.body["error_description"], WRONG, "{}", resp.text);
    }
    // Held, even with the right password and yet another forged address.
    let held = password_grant(
        &env,
        &attacker,
        &client,
        (USER, PASSWORD),
        &[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7"),
        ],
    )
    .await;
    assert_eq!(held.status, 400, "{}", held.text);
    assert!(
        held.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("too many failed sign-ins; try again in"),
        "{}",
        held.text
    );
    // The real user from another address signs in.
    let ok = password_grant(&env, &from_loopback(3), &client, (USER, PASSWORD), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}
