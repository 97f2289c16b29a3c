//! The Store conformance suite (DESIGN "Tests"): every check runs against
//! every backend, each on a fresh store and a fixed clock.
//!
//! To add a backend, write one `async fn` that builds a [`Fixture`] and add
//! one line `conformance!(name, builder);` at the bottom: every check then
//! becomes a test named `name::check`.

use std::any::Any;
use std::sync::Arc;

use tokenfn_core::domain::client::{ClientKind, GrantType, Lifetimes};
use tokenfn_core::domain::secret::hash;
use tokenfn_core::domain::{
    AuthCode, AuthorizationRequest, Client, Consent, DeviceCode, DeviceDecision, Flow, Grant,
    Interaction, Prompt, Purpose, RefreshToken, Scopes, Session, User,
};
use tokenfn_core::ports::{Failures, Redeemed, Rotated, Store, StoreError};
use tokenfn_core::store::dynamodb::create_table;
use tokenfn_core::store::{DynamoStore, SqliteStore};

/// A fresh store, and whatever must live as long as it (a temporary
/// directory, an emulator process).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("tokenfn.db")).expect("open sqlite store");
    Fixture {
        store: Arc::new(store),
        _keep: Box::new(dir),
    }
}

/// A fresh table on the DynamoDB that `AWS_ENDPOINT_URL` points at: moto's
/// server in tests (DESIGN "Tests"; scripts/test.sh starts it). Without it
/// these tests fail rather than pass without having run.
async fn dynamodb_fixture() -> Fixture {
    use std::sync::atomic::{AtomicU32, Ordering};
    static TABLES: AtomicU32 = AtomicU32::new(0);

    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        panic!(
            "the DynamoDB conformance tests need moto running and AWS_ENDPOINT_URL pointing \
             at it (scripts/test.sh starts it); AWS_ENDPOINT_URL is unset"
        );
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let table = format!(
        "tokenfn-conformance-{}-{nanos}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed)
    );
    let created = create_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("creating table {table} (is moto running?): {e}"));
    assert!(created, "table {table} is new");
    assert!(
        !create_table(&client, &table)
            .await
            .expect("create_table again"),
        "create_table is idempotent"
    );
    Fixture {
        store: Arc::new(DynamoStore::new(client, table)),
        _keep: Box::new(()),
    }
}

/// One test per check per backend, so that a failure names both.
macro_rules! conformance {
    ($backend:ident, $build:ident) => {
        conformance!(@tests $backend, $build,
            clients_upsert_and_read,
            users_add_find_and_conflict,
            totp_set_claim_and_reset,
            interactions_upsert_expire_and_delete,
            sessions_expire,
            consents_upsert,
            code_redeems_once_then_replays,
            code_redeem_without_refresh_token,
            code_expired_or_unknown_is_invalid,
            concurrent_redemptions_issue_once,
            rotation_consumes_and_detects_reuse,
            rotation_chain,
            rotation_refuses_idle_expired_token,
            rotation_refuses_revoked_grant,
            expired_token_is_absent,
            unknown_token_is_invalid,
            client_and_refresh_read_together,
            client_and_code_read_together,
            leeway_rotates_from_the_successor,
            leeway_boundaries,
            leeway_reaches_only_one_step_back,
            revoke_grant_user_client_counts,
            revoke_consent_forgets_and_revokes,
            create_grant_without_a_code,
            oldest_grants_beyond_the_cap_are_revoked,
            failures_count_expire_and_clear,
            list_grants_shows_active_newest_first,
            concurrent_rotations_have_one_winner,
            undo_redemption_lets_the_code_be_redeemed_again,
            undo_redemption_refused_after_rotation,
            undo_redemption_without_refresh_token,
            undo_redemption_refused_for_revoked_grant,
            undo_rotation_restores_the_presented_token,
            undo_rotation_refused_after_successor_rotated,
            undo_rotation_on_the_leeway_path,
            undos_with_unrelated_hashes_are_refused,
            interaction_flow_round_trips,
            device_codes_are_found_by_either_code,
            device_user_codes_are_unique_while_kept,
            device_decision_is_made_once,
            device_polls_are_recorded_from_what_was_read,
            device_redeems_once_when_approved,
            concurrent_device_redemptions_issue_once,
            device_undo_lets_the_code_be_redeemed_again,
        );
    };
    (@tests $backend:ident, $build:ident, $($check:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $check() {
                    let fixture = super::$build().await;
                    super::$check(Arc::clone(&fixture.store)).await;
                    drop(fixture);
                }
            )+
            use std::sync::Arc;
        }
    };
}

conformance!(sqlite, sqlite_fixture);
conformance!(dynamodb, dynamodb_fixture);

// ---------------------------------------------------------------- clock and records

/// The fixed "now" of every check.
const T: i64 = 1_800_000_000;
const GRANT_LIFETIME: i64 = 30 * 86_400;
const IDLE: i64 = 3_600;

fn scopes(raw: &str) -> Scopes {
    Scopes::parse(raw).expect("valid scopes")
}

fn client(id: &str) -> Client {
    Client {
        id: id.into(),
        name: format!("Client {id}"),
        kind: ClientKind::Confidential,
        secret_hash: Some(hash(&format!("secret of {id}"))),
        redirect_uris: vec![format!("https://{id}.example/cb")],
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: scopes("openid email offline_access"),
        lifetimes: Lifetimes::default(),
        require_mfa: true,
        created_at: T,
    }
}

fn user(id: &str, username: &str) -> User {
    User {
        id: id.into(),
        username: username.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{id}"),
        email: Some(format!("{username}@example.com")),
        totp_secret: None,
        created_at: T,
    }
}

fn grant(id: &str, user_id: &str, client_id: &str, created_at: i64) -> Grant {
    Grant {
        id: id.into(),
        user_id: user_id.into(),
        client_id: client_id.into(),
        scopes: scopes("openid offline_access"),
        auth_time: created_at,
        amr: vec!["pwd".into()],
        created_at,
        expires_at: created_at + GRANT_LIFETIME,
        revoked_at: None,
        last_used_at: created_at,
    }
}

/// A refresh token of `grant` whose plain value is `secret`, issued at `now`.
fn token(secret: &str, grant: &Grant, now: i64) -> RefreshToken {
    RefreshToken::issue(hash(secret), grant, IDLE, now)
}

fn code(secret: &str, grant_id: &str, now: i64) -> AuthCode {
    AuthCode {
        hash: hash(secret),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        user_id: "u1".into(),
        scopes: scopes("openid offline_access"),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: now - 5,
        amr: vec!["pwd".into(), "otp".into()],
        grant_id: grant_id.into(),
        expires_at: now + 60,
        consumed_at: None,
    }
}

fn interaction(id: &str, expires_at: i64) -> Interaction {
    Interaction {
        id: id.into(),
        csrf_hash: hash("csrf"),
        browser_hash: hash("browser"),
        request: AuthorizationRequest {
            client_id: "app".into(),
            redirect_uri: "https://app.example/cb".into(),
            scopes: scopes("openid email"),
            state: Some("af0ifjsldkj".into()),
            nonce: None,
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            prompt: Prompt {
                none: false,
                login: true,
                consent: false,
            },
            max_age: Some(300),
        },
        user_id: None,
        auth_time: None,
        amr: vec![],
        expires_at,
        flow: Flow::default(),
    }
}

/// Stores `grant` with a first refresh token `secret`, the way the token
/// endpoint does: through a code.
async fn issue(store: &dyn Store, grant: &Grant, secret: &str) -> RefreshToken {
    let first = token(secret, grant, grant.created_at);
    let code_secret = format!("code for {}", grant.id);
    let mut c = code(&code_secret, &grant.id, grant.created_at);
    c.user_id = grant.user_id.clone();
    c.client_id = grant.client_id.clone();
    store.put_code(&c).await.expect("put_code");
    let outcome = store
        .redeem_code(&c.hash, grant, Some(&first), grant.created_at)
        .await
        .expect("redeem_code");
    assert_eq!(outcome, Redeemed::Issued, "issuing grant {}", grant.id);
    first
}

async fn rotate(
    store: &dyn Store,
    old: &RefreshToken,
    next: &RefreshToken,
    leeway: i64,
    now: i64,
) -> Rotated {
    store
        .rotate_refresh(&old.hash, next, leeway, now)
        .await
        .expect("rotate_refresh")
}

async fn consumed_at(store: &dyn Store, t: &RefreshToken, now: i64) -> Option<i64> {
    store
        .find_refresh(&t.hash, now)
        .await
        .expect("find_refresh")
        .expect("the token exists")
        .token
        .consumed_at
}

// ---------------------------------------------------------------- clients, users, browser state

async fn clients_upsert_and_read(store: Arc<dyn Store>) {
    assert_eq!(store.get_client("app").await.unwrap(), None);
    let mut app = client("app");
    store.put_client(&app).await.unwrap();
    // secret_hash is not serialized with the record, yet must come back.
    assert_eq!(store.get_client("app").await.unwrap(), Some(app.clone()));

    app.name = "Renamed".into();
    app.kind = ClientKind::Public;
    app.secret_hash = None;
    app.redirect_uris.push("http://127.0.0.1:8080/cb".into());
    app.lifetimes.reuse_leeway = 30;
    store.put_client(&app).await.unwrap();
    assert_eq!(store.get_client("app").await.unwrap(), Some(app));

    let other = client("other");
    store.put_client(&other).await.unwrap();
    assert_eq!(store.get_client("other").await.unwrap(), Some(other));
}

async fn users_add_find_and_conflict(store: Arc<dyn Store>) {
    assert_eq!(store.get_user("u1").await.unwrap(), None);
    assert_eq!(store.find_user("alice").await.unwrap(), None);

    let alice = user("u1", "alice");
    store.add_user(&alice).await.unwrap();
    let mut bob = user("u2", "bob");
    bob.email = None;
    store.add_user(&bob).await.unwrap();

    // password_hash is not serialized with the record, yet must come back.
    assert_eq!(store.get_user("u1").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.find_user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.find_user("bob").await.unwrap(), Some(bob));
    assert_eq!(
        store.find_user("u1").await.unwrap(),
        None,
        "find_user looks up usernames, not ids"
    );

    let impostor = user("u3", "alice");
    match store.add_user(&impostor).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a taken username must be a Conflict, got {other:?}"),
    }
    assert_eq!(store.get_user("u3").await.unwrap(), None);
    assert_eq!(store.find_user("alice").await.unwrap(), Some(alice));
}

async fn totp_set_claim_and_reset(store: Arc<dyn Store>) {
    assert!(!store.set_totp("nobody", Some("SECRET")).await.unwrap());
    store.add_user(&user("u1", "alice")).await.unwrap();
    assert!(
        store
            .set_totp("u1", Some("JBSWY3DPEHPK3PXP"))
            .await
            .unwrap()
    );
    // Both lookups see the secret.
    let by_id = store.get_user("u1").await.unwrap().unwrap();
    let by_name = store.find_user("alice").await.unwrap().unwrap();
    assert_eq!(by_id.totp_secret.as_deref(), Some("JBSWY3DPEHPK3PXP"));
    assert_eq!(by_name, by_id);

    // A step works once, and never an earlier one after it.
    assert!(store.claim_totp_step("u1", 100).await.unwrap());
    assert!(!store.claim_totp_step("u1", 100).await.unwrap());
    assert!(!store.claim_totp_step("u1", 99).await.unwrap());
    assert!(store.claim_totp_step("u1", 101).await.unwrap());
    assert!(!store.claim_totp_step("nobody", 5).await.unwrap());

    // Reset removes the secret from both; a new enrolment starts afresh.
    assert!(store.set_totp("u1", None).await.unwrap());
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().totp_secret,
        None
    );
    assert_eq!(
        store.find_user("alice").await.unwrap().unwrap().totp_secret,
        None
    );
    assert!(
        store
            .set_totp("u1", Some("KRSXG5CTMVRXEZLU"))
            .await
            .unwrap()
    );
    assert!(store.claim_totp_step("u1", 50).await.unwrap());
}

async fn interactions_upsert_expire_and_delete(store: Arc<dyn Store>) {
    let mut i = interaction("i1", T + 600);
    store.put_interaction(&i).await.unwrap();
    assert_eq!(
        store.get_interaction("i1", T).await.unwrap(),
        Some(i.clone())
    );
    assert_eq!(
        store.get_interaction("i1", T + 599).await.unwrap(),
        Some(i.clone())
    );
    assert_eq!(
        store.get_interaction("i1", T + 600).await.unwrap(),
        None,
        "absent at expires_at"
    );

    // The user signs in: the same interaction is written again.
    i.user_id = Some("u1".into());
    i.auth_time = Some(T + 10);
    i.amr = vec!["pwd".into()];
    store.put_interaction(&i).await.unwrap();
    assert_eq!(store.get_interaction("i1", T + 11).await.unwrap(), Some(i));

    store.delete_interaction("i1").await.unwrap();
    assert_eq!(store.get_interaction("i1", T + 12).await.unwrap(), None);
    store.delete_interaction("i1").await.unwrap();
    store.delete_interaction("never-existed").await.unwrap();
    assert_eq!(
        store.get_interaction("never-existed", T).await.unwrap(),
        None
    );
}

async fn sessions_expire(store: Arc<dyn Store>) {
    let s = Session {
        hash: hash("cookie"),
        user_id: "u1".into(),
        auth_time: T,
        amr: vec!["pwd".into(), "otp".into()],
        expires_at: T + 3_600,
    };
    store.put_session(&s).await.unwrap();
    assert_eq!(
        store.get_session(&s.hash, T).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_session(&s.hash, T + 3_599).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_session(&s.hash, T + 3_600).await.unwrap(),
        None,
        "absent at expires_at"
    );
    assert_eq!(
        store.get_session(&hash("other cookie"), T).await.unwrap(),
        None
    );
}

async fn consents_upsert(store: Arc<dyn Store>) {
    assert_eq!(store.get_consent("u1", "app").await.unwrap(), None);
    let mut c = Consent {
        user_id: "u1".into(),
        client_id: "app".into(),
        scopes: scopes("openid"),
        granted_at: T,
    };
    store.put_consent(&c).await.unwrap();
    assert_eq!(
        store.get_consent("u1", "app").await.unwrap(),
        Some(c.clone())
    );

    c.scopes = scopes("openid email offline_access");
    c.granted_at = T + 100;
    store.put_consent(&c).await.unwrap();
    assert_eq!(store.get_consent("u1", "app").await.unwrap(), Some(c));
    assert_eq!(store.get_consent("u1", "other").await.unwrap(), None);
    assert_eq!(store.get_consent("u2", "app").await.unwrap(), None);
}

// ---------------------------------------------------------------- codes

async fn code_redeems_once_then_replays(store: Arc<dyn Store>) {
    let c = code("code-1", "g1", T);
    store.put_code(&c).await.unwrap();
    assert_eq!(store.find_code(&c.hash, T).await.unwrap(), Some(c.clone()));

    let g = grant("g1", "u1", "app", T + 1);
    let first = token("refresh-1", &g, T + 1);
    assert_eq!(
        store
            .redeem_code(&c.hash, &g, Some(&first), T + 1)
            .await
            .unwrap(),
        Redeemed::Issued
    );

    assert_eq!(store.get_grant("g1").await.unwrap(), Some(g.clone()));
    let view = store
        .find_refresh(&first.hash, T + 1)
        .await
        .unwrap()
        .expect("first refresh token");
    assert_eq!(view.token, first);
    assert_eq!(view.grant, g);

    // Consumed codes are still found until they expire, so a replay is recognised.
    let found = store
        .find_code(&c.hash, T + 2)
        .await
        .unwrap()
        .expect("consumed code");
    assert_eq!(found.consumed_at, Some(T + 1));

    let g2 = grant("g2", "u1", "app", T + 2);
    let second = token("refresh-2", &g2, T + 2);
    assert_eq!(
        store
            .redeem_code(&c.hash, &g2, Some(&second), T + 2)
            .await
            .unwrap(),
        Redeemed::Replayed {
            grant_id: "g1".into()
        }
    );
    assert_eq!(
        store.get_grant("g2").await.unwrap(),
        None,
        "a replay creates nothing"
    );
    assert_eq!(store.find_refresh(&second.hash, T + 2).await.unwrap(), None);
    // The store reports the replay; revoking is the caller's decision (invariant 6).
    assert!(
        store
            .get_grant("g1")
            .await
            .unwrap()
            .unwrap()
            .is_active(T + 2)
    );
}

async fn code_redeem_without_refresh_token(store: Arc<dyn Store>) {
    let c = code("code-1", "g1", T);
    store.put_code(&c).await.unwrap();
    let g = grant("g1", "u1", "app", T);
    assert_eq!(
        store.redeem_code(&c.hash, &g, None, T).await.unwrap(),
        Redeemed::Issued
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), Some(g));
    assert_eq!(store.list_grants("u1", T).await.unwrap().len(), 1);
}

async fn code_expired_or_unknown_is_invalid(store: Arc<dyn Store>) {
    let c = code("code-1", "g1", T);
    store.put_code(&c).await.unwrap();
    let g = grant("g1", "u1", "app", T + 60);
    let first = token("refresh-1", &g, T + 60);

    assert_eq!(
        store.find_code(&c.hash, T + 60).await.unwrap(),
        None,
        "absent at expires_at"
    );
    assert_eq!(
        store
            .redeem_code(&c.hash, &g, Some(&first), T + 60)
            .await
            .unwrap(),
        Redeemed::Invalid
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    assert_eq!(store.find_refresh(&first.hash, T + 60).await.unwrap(), None);

    assert_eq!(
        store
            .redeem_code(&hash("no such code"), &g, Some(&first), T)
            .await
            .unwrap(),
        Redeemed::Invalid
    );
    assert_eq!(
        store.find_code(&hash("no such code"), T).await.unwrap(),
        None
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), None);

    // A consumed code that has since expired is simply gone.
    let c2 = code("code-2", "g2", T);
    store.put_code(&c2).await.unwrap();
    let g2 = grant("g2", "u1", "app", T);
    assert_eq!(
        store.redeem_code(&c2.hash, &g2, None, T).await.unwrap(),
        Redeemed::Issued
    );
    assert_eq!(
        store
            .redeem_code(&c2.hash, &g2, None, T + 60)
            .await
            .unwrap(),
        Redeemed::Invalid
    );
}

async fn concurrent_redemptions_issue_once(store: Arc<dyn Store>) {
    let c = code("code-1", "g1", T);
    store.put_code(&c).await.unwrap();
    let g = grant("g1", "u1", "app", T);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let hash = c.hash.clone();
            let g = g.clone();
            let first = token(&format!("refresh-{i}"), &g, T);
            tokio::spawn(async move { store.redeem_code(&hash, &g, Some(&first), T).await })
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Redeemed::Issued => issued += 1,
            Redeemed::Replayed { grant_id } => assert_eq!(grant_id, "g1"),
            Redeemed::Invalid => panic!("a live code is never Invalid"),
        }
    }
    assert_eq!(issued, 1);
    let mut tokens = 0;
    for i in 0..16 {
        if store
            .find_refresh(&hash(&format!("refresh-{i}")), T)
            .await
            .unwrap()
            .is_some()
        {
            tokens += 1;
        }
    }
    assert_eq!(tokens, 1, "exactly one first refresh token");
}

// ---------------------------------------------------------------- rotation

async fn rotation_consumes_and_detects_reuse(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let r1 = token("r1", &g, T + 100);

    assert_eq!(
        rotate(&*store, &r0, &r1, 0, T + 100).await,
        Rotated::Rotated
    );

    let old = store
        .find_refresh(&r0.hash, T + 100)
        .await
        .unwrap()
        .expect("tombstone kept");
    assert_eq!(old.token.consumed_at, Some(T + 100));
    assert_eq!(old.token.successor_hash.as_deref(), Some(r1.hash.as_str()));
    let new = store
        .find_refresh(&r1.hash, T + 100)
        .await
        .unwrap()
        .expect("successor stored");
    assert_eq!(new.token, r1);
    assert_eq!(new.grant.last_used_at, T + 100);

    // Reuse is reported, and the store itself revokes nothing (the caller does).
    let r1b = token("r1b", &g, T + 200);
    assert_eq!(
        rotate(&*store, &r0, &r1b, 0, T + 200).await,
        Rotated::Reused {
            grant_id: "g1".into()
        }
    );
    assert_eq!(store.find_refresh(&r1b.hash, T + 200).await.unwrap(), None);
    assert!(
        store
            .get_grant("g1")
            .await
            .unwrap()
            .unwrap()
            .is_active(T + 200)
    );
    assert_eq!(
        consumed_at(&*store, &r0, T + 200).await,
        Some(T + 100),
        "reuse changes nothing"
    );

    let r2 = token("r2", &g, T + 300);
    assert_eq!(
        rotate(&*store, &r1, &r2, 0, T + 300).await,
        Rotated::Rotated
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().last_used_at,
        T + 300
    );
}

async fn rotation_chain(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let mut chain = vec![issue(&*store, &g, "r0").await];
    for step in 1..=6 {
        let now = T + step * 60;
        let next = token(&format!("r{step}"), &g, now);
        let current = chain.last().unwrap().clone();
        assert_eq!(
            rotate(&*store, &current, &next, 0, now).await,
            Rotated::Rotated,
            "step {step}"
        );
        chain.push(next);
    }
    let now = T + 1_000;
    for (i, old) in chain[..chain.len() - 1].iter().enumerate() {
        let view = store.find_refresh(&old.hash, now).await.unwrap().unwrap();
        assert_eq!(
            view.token.successor_hash.as_deref(),
            Some(chain[i + 1].hash.as_str())
        );
        let attempt = token(&format!("reuse-{i}"), &g, now);
        assert_eq!(
            rotate(&*store, old, &attempt, 0, now).await,
            Rotated::Reused {
                grant_id: "g1".into()
            },
            "r{i}"
        );
    }
    let last = chain.last().unwrap();
    assert_eq!(consumed_at(&*store, last, now).await, None);
    assert_eq!(
        rotate(&*store, last, &token("r7", &g, now), 0, now).await,
        Rotated::Rotated
    );
}

async fn rotation_refuses_idle_expired_token(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    assert_eq!(r0.idle_expires_at, T + IDLE);

    let late = T + IDLE;
    assert_eq!(
        rotate(&*store, &r0, &token("r1", &g, late), 0, late).await,
        Rotated::Invalid
    );
    assert_eq!(store.find_refresh(&hash("r1"), late).await.unwrap(), None);
    // Still readable (its record lives until expires_at), still unconsumed.
    assert_eq!(consumed_at(&*store, &r0, late).await, None);

    // One second earlier it would have rotated.
    let g2 = grant("g2", "u1", "app", T);
    let s0 = issue(&*store, &g2, "s0").await;
    let just = T + IDLE - 1;
    assert_eq!(
        rotate(&*store, &s0, &token("s1", &g2, just), 0, just).await,
        Rotated::Rotated
    );
}

async fn rotation_refuses_revoked_grant(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    assert_eq!(store.revoke_grant("g1", T + 10).await.unwrap(), 1);

    assert_eq!(
        rotate(&*store, &r0, &token("r1", &g, T + 11), 0, T + 11).await,
        Rotated::Invalid
    );
    assert_eq!(store.find_refresh(&hash("r1"), T + 11).await.unwrap(), None);
    let view = store
        .find_refresh(&r0.hash, T + 11)
        .await
        .unwrap()
        .expect("token still found");
    // find_refresh may show the grant as it was when the token was issued
    // (DynamoDB keeps a snapshot on the token, to stay one read): the port
    // promises only that rotation re-checks the grant atomically, as above.
    if let Some(revoked_at) = view.grant.revoked_at {
        assert_eq!(revoked_at, T + 10);
        assert!(!view.grant.is_active(T + 11));
    }
    assert_eq!(view.token.consumed_at, None);
    // The grant itself is authoritative.
    let g_now = store.get_grant("g1").await.unwrap().expect("grant kept");
    assert_eq!(g_now.revoked_at, Some(T + 10));
    assert!(!g_now.is_active(T + 11));
}

async fn expired_token_is_absent(store: Arc<dyn Store>) {
    let mut g = grant("g1", "u1", "app", T);
    g.expires_at = T + 1_000;
    let r0 = issue(&*store, &g, "r0").await;
    assert_eq!(
        r0.idle_expires_at, g.expires_at,
        "idle expiry never outlives the grant"
    );
    let r1 = token("r1", &g, T + 500);
    assert_eq!(
        rotate(&*store, &r0, &r1, 0, T + 500).await,
        Rotated::Rotated
    );

    let end = g.expires_at;
    assert!(
        store
            .find_refresh(&r1.hash, end - 1)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .find_refresh(&r0.hash, end - 1)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.find_refresh(&r1.hash, end).await.unwrap(),
        None,
        "absent at expires_at"
    );
    assert_eq!(
        rotate(&*store, &r1, &token("late", &g, end), 0, end).await,
        Rotated::Invalid
    );
    // The consumed tombstone is gone too, so it is no longer reported as reuse.
    assert_eq!(store.find_refresh(&r0.hash, end).await.unwrap(), None);
    assert_eq!(
        rotate(&*store, &r0, &token("late", &g, end), 0, end).await,
        Rotated::Invalid
    );
    assert_eq!(
        rotate(&*store, &r0, &token("late", &g, end), 60, end).await,
        Rotated::Invalid
    );
    assert_eq!(store.find_refresh(&hash("late"), end).await.unwrap(), None);
    assert_eq!(store.list_grants("u1", end).await.unwrap(), vec![]);
}

async fn unknown_token_is_invalid(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    issue(&*store, &g, "r0").await;
    assert_eq!(store.find_refresh(&hash("nope"), T).await.unwrap(), None);
    assert_eq!(
        store
            .rotate_refresh(&hash("nope"), &token("r1", &g, T), 0, T)
            .await
            .unwrap(),
        Rotated::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh(&hash("nope"), &token("r1", &g, T), 60, T)
            .await
            .unwrap(),
        Rotated::Invalid
    );
    assert_eq!(store.find_refresh(&hash("r1"), T).await.unwrap(), None);
}

async fn client_and_refresh_read_together(store: Arc<dyn Store>) {
    let app = client("app");
    store.put_client(&app).await.unwrap();
    let mut g = grant("g1", "u1", "app", T);
    g.expires_at = T + 1_000;
    let r0 = issue(&*store, &g, "r0").await;
    let r1 = token("r1", &g, T + 10);
    assert_eq!(rotate(&*store, &r0, &r1, 0, T + 10).await, Rotated::Rotated);

    // Both found, each as its own read finds it; a consumed token included.
    for t in [&r0, &r1] {
        let (found_client, view) = store
            .client_and_refresh("app", &t.hash, T + 20)
            .await
            .unwrap();
        assert_eq!(found_client.as_ref(), Some(&app));
        assert_eq!(view, store.find_refresh(&t.hash, T + 20).await.unwrap());
        assert!(view.is_some());
    }
    let (_, view) = store
        .client_and_refresh("app", &r0.hash, T + 20)
        .await
        .unwrap();
    assert_eq!(view.unwrap().token.consumed_at, Some(T + 10));

    // Either one missing, or both.
    let (found_client, view) = store
        .client_and_refresh("nobody", &r1.hash, T + 20)
        .await
        .unwrap();
    assert_eq!(
        (found_client, view.map(|v| v.token.hash)),
        (None, Some(r1.hash.clone()))
    );
    let (found_client, view) = store
        .client_and_refresh("app", &hash("nope"), T + 20)
        .await
        .unwrap();
    assert_eq!((found_client, view), (Some(app.clone()), None));
    assert_eq!(
        store
            .client_and_refresh("nobody", &hash("nope"), T + 20)
            .await
            .unwrap(),
        (None, None)
    );
    // An expired token is absent, the client still there.
    assert_eq!(
        store
            .client_and_refresh("app", &r1.hash, g.expires_at)
            .await
            .unwrap(),
        (Some(app), None)
    );
}

async fn client_and_code_read_together(store: Arc<dyn Store>) {
    let app = client("app");
    store.put_client(&app).await.unwrap();
    let c = code("c1", "g1", T);
    store.put_code(&c).await.unwrap();

    let (found_client, found) = store.client_and_code("app", &c.hash, T).await.unwrap();
    assert_eq!(found_client.as_ref(), Some(&app));
    assert_eq!(found, store.find_code(&c.hash, T).await.unwrap());
    assert_eq!(found.map(|f| f.hash), Some(c.hash.clone()));

    // Consumed codes are still found (a replay must be seen).
    let g = grant("g1", &c.user_id, &c.client_id, T);
    assert_eq!(
        store.redeem_code(&c.hash, &g, None, T).await.unwrap(),
        Redeemed::Issued
    );
    let (_, found) = store.client_and_code("app", &c.hash, T + 1).await.unwrap();
    assert_eq!(found.unwrap().consumed_at, Some(T));

    assert_eq!(
        store
            .client_and_code("nobody", &hash("nope"), T)
            .await
            .unwrap(),
        (None, None)
    );
    let (found_client, found) = store
        .client_and_code("app", &c.hash, c.expires_at)
        .await
        .unwrap();
    assert_eq!(
        (found_client, found),
        (Some(app), None),
        "expired at expires_at"
    );
}

// ---------------------------------------------------------------- reuse leeway

async fn leeway_rotates_from_the_successor(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let r1 = token("r1", &g, T + 100);
    assert_eq!(
        rotate(&*store, &r0, &r1, 10, T + 100).await,
        Rotated::Rotated
    );

    // The client never received r1 and retries with r0 five seconds later.
    let r2 = token("r2", &g, T + 105);
    assert_eq!(
        rotate(&*store, &r0, &r2, 10, T + 105).await,
        Rotated::Rotated
    );

    let r1_now = store
        .find_refresh(&r1.hash, T + 105)
        .await
        .unwrap()
        .unwrap()
        .token;
    assert_eq!(
        r1_now.consumed_at,
        Some(T + 105),
        "the token r0 was replaced by is consumed"
    );
    assert_eq!(r1_now.successor_hash.as_deref(), Some(r2.hash.as_str()));
    let r0_now = store
        .find_refresh(&r0.hash, T + 105)
        .await
        .unwrap()
        .unwrap()
        .token;
    assert_eq!(r0_now.consumed_at, Some(T + 100));
    assert_eq!(consumed_at(&*store, &r2, T + 105).await, None);

    // r1, now consumed, is reuse without leeway; r2 carries on.
    assert_eq!(
        rotate(&*store, &r1, &token("x", &g, T + 106), 0, T + 106).await,
        Rotated::Reused {
            grant_id: "g1".into()
        }
    );
    assert_eq!(
        rotate(&*store, &r2, &token("r3", &g, T + 107), 10, T + 107).await,
        Rotated::Rotated
    );
}

async fn leeway_boundaries(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    assert_eq!(
        rotate(&*store, &r0, &token("r1", &g, T + 100), 10, T + 100).await,
        Rotated::Rotated
    );

    // Leeway 0 means none, even in the same second.
    assert_eq!(
        rotate(&*store, &r0, &token("a", &g, T + 100), 0, T + 100).await,
        Rotated::Reused {
            grant_id: "g1".into()
        }
    );
    // Eleven seconds later with ten of leeway.
    assert_eq!(
        rotate(&*store, &r0, &token("b", &g, T + 111), 10, T + 111).await,
        Rotated::Reused {
            grant_id: "g1".into()
        }
    );
    for miss in ["a", "b"] {
        assert_eq!(
            store.find_refresh(&hash(miss), T + 111).await.unwrap(),
            None
        );
    }
    assert_eq!(
        consumed_at(&*store, &token("r1", &g, T), T + 111).await,
        None
    );

    // Exactly `leeway` seconds later is still within.
    let g2 = grant("g2", "u1", "app", T);
    let s0 = issue(&*store, &g2, "s0").await;
    assert_eq!(
        rotate(&*store, &s0, &token("s1", &g2, T + 100), 10, T + 100).await,
        Rotated::Rotated
    );
    assert_eq!(
        rotate(&*store, &s0, &token("s2", &g2, T + 110), 10, T + 110).await,
        Rotated::Rotated
    );

    // Within the leeway but the grant was revoked meanwhile.
    let g3 = grant("g3", "u1", "app", T);
    let q0 = issue(&*store, &g3, "q0").await;
    assert_eq!(
        rotate(&*store, &q0, &token("q1", &g3, T + 100), 10, T + 100).await,
        Rotated::Rotated
    );
    assert_eq!(store.revoke_grant("g3", T + 101).await.unwrap(), 1);
    assert_eq!(
        rotate(&*store, &q0, &token("q2", &g3, T + 102), 10, T + 102).await,
        Rotated::Invalid
    );
}

async fn leeway_reaches_only_one_step_back(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let r1 = token("r1", &g, T + 100);
    let r2 = token("r2", &g, T + 101);
    assert_eq!(
        rotate(&*store, &r0, &r1, 10, T + 100).await,
        Rotated::Rotated
    );
    assert_eq!(
        rotate(&*store, &r1, &r2, 10, T + 101).await,
        Rotated::Rotated
    );

    // r0 was consumed two seconds ago, but its successor r1 is consumed too.
    assert_eq!(
        rotate(&*store, &r0, &token("x", &g, T + 102), 10, T + 102).await,
        Rotated::Reused {
            grant_id: "g1".into()
        }
    );
    assert_eq!(store.find_refresh(&hash("x"), T + 102).await.unwrap(), None);
    assert_eq!(
        consumed_at(&*store, &r2, T + 102).await,
        None,
        "r2 untouched"
    );
    // r1 is the immediately previous token: within leeway it rotates from r2.
    assert_eq!(
        rotate(&*store, &r1, &token("r3", &g, T + 103), 10, T + 103).await,
        Rotated::Rotated
    );
    assert_eq!(consumed_at(&*store, &r2, T + 103).await, Some(T + 103));
}

// ---------------------------------------------------------------- revocation and listing

async fn create_grant_without_a_code(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let first = token("r1", &g, T);
    store.create_grant(&g, Some(&first)).await.unwrap();
    let view = store
        .find_refresh(&first.hash, T + 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.grant.id, "g1");
    assert_eq!(view.token, first);
    assert_eq!(
        rotate(&*store, &first, &token("r2", &g, T + 2), 0, T + 2).await,
        Rotated::Rotated
    );
    match store.create_grant(&g, None).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a second grant with the same id must be a Conflict, got {other:?}"),
    }
    // Without a refresh token (no offline_access).
    let bare = grant("g2", "u1", "app", T);
    store.create_grant(&bare, None).await.unwrap();
    assert_eq!(store.get_grant("g2").await.unwrap(), Some(bare));
}

async fn oldest_grants_beyond_the_cap_are_revoked(store: Arc<dyn Store>) {
    for i in 0..5 {
        store
            .create_grant(&grant(&format!("g{i}"), "u1", "app", T + i), None)
            .await
            .unwrap();
    }
    store
        .create_grant(&grant("other", "u1", "other", T), None)
        .await
        .unwrap();
    store
        .create_grant(&grant("u2", "u2", "app", T), None)
        .await
        .unwrap();
    let now = T + 10;
    assert_eq!(
        store
            .revoke_oldest_grants("u1", "app", 5, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_oldest_grants("u1", "app", 2, now)
            .await
            .unwrap(),
        3
    );
    let mut left: Vec<String> = store
        .list_grants("u1", now)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["g3", "g4", "other"],
        "the newest two of app survive, other clients untouched"
    );
    assert!(
        store
            .get_grant("u2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert_eq!(
        store
            .revoke_oldest_grants("u1", "app", 0, now)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .revoke_oldest_grants("nobody", "app", 0, now)
            .await
            .unwrap(),
        0
    );
}

async fn failures_count_expire_and_clear(store: Arc<dyn Store>) {
    assert_eq!(
        store.get_failures("user:u1", T).await.unwrap(),
        Failures::default()
    );
    let f = store.add_failure("user:u1", T, 100).await.unwrap();
    assert_eq!(
        f,
        Failures {
            count: 1,
            last_at: T
        }
    );
    let f = store.add_failure("user:u1", T + 5, 100).await.unwrap();
    assert_eq!(
        f,
        Failures {
            count: 2,
            last_at: T + 5
        }
    );
    assert_eq!(store.get_failures("user:u1", T + 6).await.unwrap(), f);
    assert_eq!(store.get_failures("user:u2", T + 6).await.unwrap().count, 0);
    // The counter lives ttl after its last failure, then counts from one again.
    assert_eq!(
        store.get_failures("user:u1", T + 105).await.unwrap().count,
        0
    );
    let f = store.add_failure("user:u1", T + 105, 100).await.unwrap();
    assert_eq!(f.count, 1);
    store.add_failure("user:u1", T + 106, 100).await.unwrap();
    store.clear_failures("user:u1").await.unwrap();
    assert_eq!(
        store.get_failures("user:u1", T + 107).await.unwrap().count,
        0
    );
    store.clear_failures("never-failed").await.unwrap();
}

async fn revoke_grant_user_client_counts(store: Arc<dyn Store>) {
    let g_u1_app = grant("g1", "u1", "app", T);
    let g_u1_other = grant("g2", "u1", "other", T);
    let g_u2_app = grant("g3", "u2", "app", T);
    let g_u2_other = grant("g4", "u2", "other", T);
    let r1 = issue(&*store, &g_u1_app, "r1").await;
    let r2 = issue(&*store, &g_u1_other, "r2").await;
    let r3 = issue(&*store, &g_u2_app, "r3").await;
    let r4 = issue(&*store, &g_u2_other, "r4").await;

    let now = T + 50;
    assert_eq!(store.revoke_grant("g1", now).await.unwrap(), 1);
    assert_eq!(
        store.revoke_grant("g1", now + 1).await.unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(now),
        "first revocation kept"
    );
    assert_eq!(store.revoke_grant("no-such-grant", now).await.unwrap(), 0);

    assert_eq!(
        store.revoke_user("u1", now).await.unwrap(),
        1,
        "only g2 was still active"
    );
    assert_eq!(store.revoke_user("u1", now).await.unwrap(), 0);
    assert_eq!(store.revoke_user("nobody", now).await.unwrap(), 0);

    assert_eq!(
        store.revoke_client("app", now).await.unwrap(),
        1,
        "only g3 was still active"
    );
    assert_eq!(store.revoke_client("app", now).await.unwrap(), 0);
    assert_eq!(store.revoke_client("nothing", now).await.unwrap(), 0);

    // Every token of a revoked grant is dead; the one left is not.
    for (t, g) in [(&r1, &g_u1_app), (&r2, &g_u1_other), (&r3, &g_u2_app)] {
        assert_eq!(
            rotate(
                &*store,
                t,
                &token(&format!("after {}", g.id), g, now),
                0,
                now
            )
            .await,
            Rotated::Invalid
        );
    }
    assert_eq!(
        rotate(&*store, &r4, &token("r4b", &g_u2_other, now), 0, now).await,
        Rotated::Rotated
    );
    assert!(store.get_grant("g4").await.unwrap().unwrap().is_active(now));

    // An expired grant is not active, so revoking it counts nothing.
    let g_old = grant("g5", "u3", "app", T);
    issue(&*store, &g_old, "r5").await;
    assert_eq!(store.revoke_grant("g5", g_old.expires_at).await.unwrap(), 0);
    assert_eq!(store.revoke_user("u3", g_old.expires_at).await.unwrap(), 0);
}

async fn revoke_consent_forgets_and_revokes(store: Arc<dyn Store>) {
    let consent = Consent {
        user_id: "u1".into(),
        client_id: "app".into(),
        scopes: scopes("openid offline_access"),
        granted_at: T,
    };
    store.put_consent(&consent).await.unwrap();
    let other_consent = Consent {
        client_id: "other".into(),
        ..consent.clone()
    };
    store.put_consent(&other_consent).await.unwrap();

    let a = grant("g1", "u1", "app", T);
    let b = grant("g2", "u1", "app", T + 1);
    let c = grant("g3", "u1", "other", T + 2);
    let d = grant("g4", "u2", "app", T + 3);
    let ra = issue(&*store, &a, "ra").await;
    let rb = issue(&*store, &b, "rb").await;
    issue(&*store, &c, "rc").await;
    issue(&*store, &d, "rd").await;

    let now = T + 10;
    assert_eq!(store.revoke_consent("u1", "app", now).await.unwrap(), 2);
    assert_eq!(store.get_consent("u1", "app").await.unwrap(), None);
    assert_eq!(
        store.get_consent("u1", "other").await.unwrap(),
        Some(other_consent)
    );
    assert_eq!(
        store.revoke_consent("u1", "app", now + 1).await.unwrap(),
        0,
        "idempotent"
    );
    // Nothing to forget and nothing to revoke is not an error either.
    assert_eq!(store.revoke_consent("u9", "app", now).await.unwrap(), 0);

    for t in [&ra, &rb] {
        assert_eq!(
            rotate(&*store, t, &token("after", &a, now), 0, now).await,
            Rotated::Invalid
        );
    }
    let listed: Vec<_> = store
        .list_grants("u1", now)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(listed, vec!["g3"]);
    assert!(store.get_grant("g4").await.unwrap().unwrap().is_active(now));
}

async fn list_grants_shows_active_newest_first(store: Arc<dyn Store>) {
    assert_eq!(store.list_grants("u1", T).await.unwrap(), vec![]);
    let oldest = grant("g-old", "u1", "app", T - GRANT_LIFETIME); // expires at T
    let a = grant("g-a", "u1", "app", T + 1);
    let b = grant("g-b", "u1", "other", T + 2);
    let revoked = grant("g-revoked", "u1", "third", T + 3);
    let c = grant("g-c", "u1", "app", T + 4);
    let someone_else = grant("g-u2", "u2", "app", T + 5);
    for g in [&oldest, &a, &b, &revoked, &c, &someone_else] {
        issue(&*store, g, &format!("r-{}", g.id)).await;
    }
    assert_eq!(store.revoke_grant("g-revoked", T + 6).await.unwrap(), 1);

    let listed = store.list_grants("u1", T + 10).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, vec!["g-c", "g-b", "g-a"]);
    assert_eq!(listed[2], a, "listed grants are complete records");
}

async fn concurrent_rotations_have_one_winner(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let now = T + 100;
    let successors: Vec<_> = (0..32)
        .map(|i| token(&format!("next-{i}"), &g, now))
        .collect();
    let tasks: Vec<_> = successors
        .iter()
        .cloned()
        .map(|next| {
            let store = Arc::clone(&store);
            let old = r0.hash.clone();
            tokio::spawn(async move { store.rotate_refresh(&old, &next, 0, now).await })
        })
        .collect();

    let mut rotated = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Rotated::Rotated => rotated += 1,
            Rotated::Reused { grant_id } => assert_eq!(grant_id, "g1"),
            Rotated::Invalid => {}
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent rotation wins");

    let mut stored = Vec::new();
    for next in &successors {
        if store.find_refresh(&next.hash, now).await.unwrap().is_some() {
            stored.push(next.hash.clone());
        }
    }
    assert_eq!(stored.len(), 1, "exactly one successor exists");
    let old = store
        .find_refresh(&r0.hash, now)
        .await
        .unwrap()
        .unwrap()
        .token;
    assert_eq!(old.successor_hash, Some(stored[0].clone()));
}

// ---------------------------------------------------------------- undo after a failed response
//
// The token service commits a redemption or rotation in parallel with
// signing its response; if signing fails, it takes the write back so that
// the client's retry works (invariant 7).

async fn undo_redemption(
    store: &dyn Store,
    code_hash: &str,
    grant_id: &str,
    refresh_hash: Option<&str>,
) -> bool {
    store
        .undo_redemption(code_hash, grant_id, refresh_hash)
        .await
        .expect("undo_redemption")
}

async fn undo_rotation(
    store: &dyn Store,
    presented: &RefreshToken,
    successor: &RefreshToken,
) -> bool {
    store
        .undo_rotation(&presented.hash, &successor.hash)
        .await
        .expect("undo_rotation")
}

/// The refresh token as stored (consumed or not), at `now`.
async fn stored_token(store: &dyn Store, t: &RefreshToken, now: i64) -> RefreshToken {
    store
        .find_refresh(&t.hash, now)
        .await
        .expect("find_refresh")
        .expect("the token exists")
        .token
}

async fn undo_redemption_lets_the_code_be_redeemed_again(store: Arc<dyn Store>) {
    let c = code("code-1", "g1", T);
    store.put_code(&c).await.unwrap();
    let g = grant("g1", "u1", "app", T + 1);
    let first = token("refresh-1", &g, T + 1);
    assert_eq!(
        store
            .redeem_code(&c.hash, &g, Some(&first), T + 1)
            .await
            .unwrap(),
        Redeemed::Issued
    );

    assert!(undo_redemption(&*store, &c.hash, "g1", Some(&first.hash)).await);
    assert_eq!(store.find_refresh(&first.hash, T + 2).await.unwrap(), None);
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    assert!(
        store.list_grants("u1", T + 2).await.unwrap().is_empty(),
        "the grant left the index too"
    );
    let found = store
        .find_code(&c.hash, T + 2)
        .await
        .unwrap()
        .expect("the code is still there");
    assert_eq!(found.consumed_at, None, "the code is unconsumed again");
    assert!(
        !undo_redemption(&*store, &c.hash, "g1", Some(&first.hash)).await,
        "a second undo has nothing to take back"
    );

    // The client's retry with the same code is a first redemption, not a replay.
    let g = grant("g1", "u1", "app", T + 3);
    let retried = token("refresh-2", &g, T + 3);
    assert_eq!(
        store
            .redeem_code(&c.hash, &g, Some(&retried), T + 3)
            .await
            .unwrap(),
        Redeemed::Issued
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), Some(g.clone()));
    let view = store
        .find_refresh(&retried.hash, T + 3)
        .await
        .unwrap()
        .expect("the retry's refresh token");
    assert_eq!(view.token, retried);
    assert_eq!(view.grant, g, "the grant as created by the retry");
    assert_eq!(store.find_refresh(&first.hash, T + 3).await.unwrap(), None);
    assert_eq!(
        rotate(&*store, &retried, &token("refresh-3", &g, T + 4), 0, T + 4).await,
        Rotated::Rotated
    );
}

async fn undo_redemption_refused_after_rotation(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let code_hash = hash("code for g1");
    let r1 = token("r1", &g, T + 10);
    assert_eq!(rotate(&*store, &r0, &r1, 0, T + 10).await, Rotated::Rotated);

    // The first token was delivered (it was rotated): the redemption stands.
    assert!(!undo_redemption(&*store, &code_hash, "g1", Some(&r0.hash)).await);
    assert!(store.get_grant("g1").await.unwrap().is_some());
    let r0_now = stored_token(&*store, &r0, T + 11).await;
    assert_eq!(r0_now.consumed_at, Some(T + 10));
    assert_eq!(r0_now.successor_hash.as_deref(), Some(r1.hash.as_str()));
    assert_eq!(consumed_at(&*store, &r1, T + 11).await, None);
    let c = store.find_code(&code_hash, T + 11).await.unwrap().unwrap();
    assert_eq!(c.consumed_at, Some(T), "the code stays consumed");
    assert_eq!(
        store
            .redeem_code(&code_hash, &grant("g2", "u1", "app", T + 11), None, T + 11)
            .await
            .unwrap(),
        Redeemed::Replayed {
            grant_id: "g1".into()
        }
    );
    assert_eq!(
        rotate(&*store, &r1, &token("r2", &g, T + 12), 0, T + 12).await,
        Rotated::Rotated
    );
}

async fn undo_redemption_without_refresh_token(store: Arc<dyn Store>) {
    let c = code("code-1", "g1", T);
    store.put_code(&c).await.unwrap();
    let g = grant("g1", "u1", "app", T);
    assert_eq!(
        store.redeem_code(&c.hash, &g, None, T).await.unwrap(),
        Redeemed::Issued
    );

    assert!(undo_redemption(&*store, &c.hash, "g1", None).await);
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    assert!(store.list_grants("u1", T + 1).await.unwrap().is_empty());
    let found = store.find_code(&c.hash, T + 1).await.unwrap().unwrap();
    assert_eq!(found.consumed_at, None);
    assert!(!undo_redemption(&*store, &c.hash, "g1", None).await);

    let g = grant("g1", "u1", "app", T + 2);
    assert_eq!(
        store.redeem_code(&c.hash, &g, None, T + 2).await.unwrap(),
        Redeemed::Issued
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), Some(g));
}

/// A grant revoked since its redemption (a replay of the code, an admin)
/// is not taken back: the code would become redeemable again and the
/// revocation would be forgotten.
async fn undo_redemption_refused_for_revoked_grant(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let code_hash = hash("code for g1");
    assert_eq!(store.revoke_grant("g1", T + 1).await.unwrap(), 1);

    assert!(!undo_redemption(&*store, &code_hash, "g1", Some(&r0.hash)).await);
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().revoked_at,
        Some(T + 1)
    );
    assert_eq!(consumed_at(&*store, &r0, T + 2).await, None);
    let c = store.find_code(&code_hash, T + 2).await.unwrap().unwrap();
    assert_eq!(c.consumed_at, Some(T));
    assert_eq!(
        store
            .redeem_code(&code_hash, &grant("g2", "u1", "app", T + 2), None, T + 2)
            .await
            .unwrap(),
        Redeemed::Replayed {
            grant_id: "g1".into()
        }
    );
}

async fn undo_rotation_restores_the_presented_token(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let r1 = token("r1", &g, T + 10);
    assert_eq!(rotate(&*store, &r0, &r1, 0, T + 10).await, Rotated::Rotated);

    assert!(undo_rotation(&*store, &r0, &r1).await);
    assert_eq!(store.find_refresh(&r1.hash, T + 11).await.unwrap(), None);
    assert_eq!(stored_token(&*store, &r0, T + 11).await, r0, "as issued");
    assert!(
        !undo_rotation(&*store, &r0, &r1).await,
        "a second undo has nothing to take back"
    );
    assert_eq!(
        store.get_grant("g1").await.unwrap().unwrap().last_used_at,
        T + 10,
        "the grant's last use is left alone"
    );

    // The client's retry with the same token rotates, without any leeway.
    let r1b = token("r1b", &g, T + 12);
    assert_eq!(
        rotate(&*store, &r0, &r1b, 0, T + 12).await,
        Rotated::Rotated
    );
    let r0_now = stored_token(&*store, &r0, T + 12).await;
    assert_eq!(r0_now.consumed_at, Some(T + 12));
    assert_eq!(r0_now.successor_hash.as_deref(), Some(r1b.hash.as_str()));
    assert_eq!(store.find_refresh(&r1.hash, T + 12).await.unwrap(), None);
    assert_eq!(
        rotate(&*store, &r1b, &token("r2", &g, T + 13), 0, T + 13).await,
        Rotated::Rotated
    );
}

async fn undo_rotation_refused_after_successor_rotated(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let r0 = issue(&*store, &g, "r0").await;
    let r1 = token("r1", &g, T + 10);
    let r2 = token("r2", &g, T + 20);
    assert_eq!(rotate(&*store, &r0, &r1, 0, T + 10).await, Rotated::Rotated);
    assert_eq!(rotate(&*store, &r1, &r2, 0, T + 20).await, Rotated::Rotated);

    // r1 was delivered (it was rotated in turn): its issue stands.
    assert!(!undo_rotation(&*store, &r0, &r1).await);
    let r0_now = stored_token(&*store, &r0, T + 21).await;
    assert_eq!(r0_now.consumed_at, Some(T + 10));
    assert_eq!(r0_now.successor_hash.as_deref(), Some(r1.hash.as_str()));
    let r1_now = stored_token(&*store, &r1, T + 21).await;
    assert_eq!(r1_now.consumed_at, Some(T + 20));
    assert_eq!(r1_now.successor_hash.as_deref(), Some(r2.hash.as_str()));
    assert_eq!(consumed_at(&*store, &r2, T + 21).await, None);
    assert_eq!(
        rotate(&*store, &r0, &token("x", &g, T + 21), 0, T + 21).await,
        Rotated::Reused {
            grant_id: "g1".into()
        }
    );
}

async fn undo_rotation_on_the_leeway_path(store: Arc<dyn Store>) {
    let g = grant("g1", "u1", "app", T);
    let a = issue(&*store, &g, "a").await;
    let b = token("b", &g, T + 100);
    assert_eq!(rotate(&*store, &a, &b, 10, T + 100).await, Rotated::Rotated);
    // The client never received b and retries with a: the store rotates b to c.
    let c = token("c", &g, T + 105);
    assert_eq!(rotate(&*store, &a, &c, 10, T + 105).await, Rotated::Rotated);

    // The response carrying c failed too: c goes, b is unconsumed again.
    assert!(undo_rotation(&*store, &a, &c).await);
    assert_eq!(store.find_refresh(&c.hash, T + 106).await.unwrap(), None);
    assert_eq!(stored_token(&*store, &b, T + 106).await, b, "as issued");
    let a_now = stored_token(&*store, &a, T + 106).await;
    assert_eq!(a_now.consumed_at, Some(T + 100), "a itself stays consumed");
    assert_eq!(a_now.successor_hash.as_deref(), Some(b.hash.as_str()));
    assert!(!undo_rotation(&*store, &a, &c).await);

    // b rotates: here through the client's next retry with a, within the leeway.
    let d = token("d", &g, T + 107);
    assert_eq!(rotate(&*store, &a, &d, 10, T + 107).await, Rotated::Rotated);
    let b_now = stored_token(&*store, &b, T + 107).await;
    assert_eq!(b_now.consumed_at, Some(T + 107));
    assert_eq!(b_now.successor_hash.as_deref(), Some(d.hash.as_str()));
    assert_eq!(consumed_at(&*store, &d, T + 107).await, None);
}

async fn undos_with_unrelated_hashes_are_refused(store: Arc<dyn Store>) {
    let g1 = grant("g1", "u1", "app", T);
    let g2 = grant("g2", "u1", "app", T);
    let a0 = issue(&*store, &g1, "a0").await;
    let b0 = issue(&*store, &g2, "b0").await;
    let (code1, code2) = (hash("code for g1"), hash("code for g2"));
    let a1 = token("a1", &g1, T + 10);
    assert_eq!(rotate(&*store, &a0, &a1, 0, T + 10).await, Rotated::Rotated);
    let unknown = token("unknown", &g1, T + 10);

    // Rotations.
    assert!(!undo_rotation(&*store, &unknown, &a1).await);
    assert!(!undo_rotation(&*store, &a0, &unknown).await);
    assert!(!undo_rotation(&*store, &a1, &a0).await, "backwards");
    assert!(
        !undo_rotation(&*store, &b0, &a1).await,
        "another grant's token"
    );
    assert!(
        !undo_rotation(&*store, &a0, &b0).await,
        "another grant's token"
    );

    // Redemptions.
    assert!(!undo_redemption(&*store, &hash("no such code"), "g2", None).await);
    assert!(!undo_redemption(&*store, &hash("no such code"), "g2", Some(&b0.hash)).await);
    assert!(
        !undo_redemption(&*store, &code1, "g2", Some(&b0.hash)).await,
        "another code"
    );
    assert!(
        !undo_redemption(&*store, &code2, "g1", None).await,
        "another grant"
    );
    assert!(
        !undo_redemption(&*store, &code2, "g2", Some(&a1.hash)).await,
        "another grant's token"
    );
    assert!(
        !undo_redemption(&*store, &code2, "g2", Some(&unknown.hash)).await,
        "an unknown token"
    );
    let unused = code("unused", "g3", T);
    store.put_code(&unused).await.unwrap();
    assert!(
        !undo_redemption(&*store, &unused.hash, "g3", None).await,
        "never redeemed"
    );

    // Nothing changed.
    assert_eq!(
        store.get_grant("g1").await.unwrap(),
        Some(Grant {
            last_used_at: T + 10,
            ..g1.clone()
        })
    );
    assert_eq!(store.get_grant("g2").await.unwrap(), Some(g2.clone()));
    for c in [&code1, &code2] {
        assert_eq!(
            store
                .find_code(c, T + 11)
                .await
                .unwrap()
                .unwrap()
                .consumed_at,
            Some(T)
        );
    }
    assert_eq!(
        store
            .find_code(&unused.hash, T + 11)
            .await
            .unwrap()
            .unwrap()
            .consumed_at,
        None
    );
    let a0_now = stored_token(&*store, &a0, T + 11).await;
    assert_eq!(a0_now.consumed_at, Some(T + 10));
    assert_eq!(a0_now.successor_hash.as_deref(), Some(a1.hash.as_str()));
    assert_eq!(stored_token(&*store, &a1, T + 11).await, a1);
    assert_eq!(stored_token(&*store, &b0, T + 11).await, b0);
}

// ---------------------------------------------------------------- device authorization (RFC 8628)

async fn interaction_flow_round_trips(store: Arc<dyn Store>) {
    let mut i = interaction("i-flow", T + 600);
    i.flow = Flow {
        purpose: Purpose::Device {
            device_hash: Some(hash("device-1")),
        },
        otp_user: Some("u1".into()),
        otp_failures: 2,
        code_failures: 3,
        locked_until: Some(T + 300),
    };
    store.put_interaction(&i).await.unwrap();
    assert_eq!(
        store.get_interaction("i-flow", T).await.unwrap(),
        Some(i.clone())
    );
    i.flow = Flow {
        purpose: Purpose::Account,
        ..Flow::default()
    };
    store.put_interaction(&i).await.unwrap();
    assert_eq!(store.get_interaction("i-flow", T).await.unwrap(), Some(i));
}

/// A device code whose plain values are `secret` and `user_code`, made at `now`.
fn device(secret: &str, user_code: &str, now: i64) -> DeviceCode {
    DeviceCode {
        hash: hash(secret),
        user_code_hash: hash(user_code),
        client_id: "tv".into(),
        scopes: scopes("openid offline_access"),
        created_at: now,
        expires_at: now + 600,
        kept_until: now + 1200,
        interval: 5,
        last_polled_at: None,
        decision: None,
        consumed_at: None,
    }
}

fn approved(user_id: &str, auth_time: i64) -> DeviceDecision {
    DeviceDecision::Approved {
        user_id: user_id.into(),
        auth_time,
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
    }
}

/// The grant a device code approved by `approved("u1", T + 10)` makes.
fn device_grant(id: &str, now: i64) -> Grant {
    let mut g = grant(id, "u1", "tv", now);
    g.auth_time = T + 10;
    g.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
    g
}

async fn device_codes_are_found_by_either_code(store: Arc<dyn Store>) {
    let d = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&d).await.unwrap();
    assert_eq!(
        store.find_device_code(&d.hash, T).await.unwrap(),
        Some(d.clone())
    );
    assert_eq!(
        store.find_user_code(&d.user_code_hash, T).await.unwrap(),
        Some(d.clone())
    );
    assert_eq!(
        store.find_device_code(&hash("other"), T).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_user_code(&hash("ZZZZZZZZ"), T).await.unwrap(),
        None
    );
    // Past its expiry the record is still read (expired_token), until kept_until.
    assert_eq!(
        store.find_device_code(&d.hash, T + 1199).await.unwrap(),
        Some(d.clone())
    );
    assert_eq!(
        store.find_device_code(&d.hash, T + 1200).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .find_user_code(&d.user_code_hash, T + 1200)
            .await
            .unwrap(),
        None
    );
}

async fn device_user_codes_are_unique_while_kept(store: Arc<dyn Store>) {
    let first = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&first).await.unwrap();
    let same_user_code = device("device-2", "BCDFGHJK", T + 1);
    assert!(matches!(
        store.put_device_code(&same_user_code).await,
        Err(StoreError::Conflict(_))
    ));
    let same_device_code = device("device-1", "MNPQRSTV", T + 1);
    assert!(matches!(
        store.put_device_code(&same_device_code).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .find_user_code(&first.user_code_hash, T + 1)
            .await
            .unwrap(),
        Some(first.clone()),
        "a refused put changes nothing"
    );
    assert_eq!(
        store
            .find_user_code(&hash("MNPQRSTV"), T + 1)
            .await
            .unwrap(),
        None
    );
    // Once the first record is no longer kept, its user code is free again.
    let later = device("device-3", "BCDFGHJK", T + 1200);
    store.put_device_code(&later).await.unwrap();
    assert_eq!(
        store
            .find_user_code(&later.user_code_hash, T + 1200)
            .await
            .unwrap(),
        Some(later)
    );
}

async fn device_decision_is_made_once(store: Arc<dyn Store>) {
    let d = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&d).await.unwrap();
    assert!(
        !store
            .decide_device_code(&hash("unknown"), &DeviceDecision::Denied, T)
            .await
            .unwrap()
    );
    assert!(
        store
            .decide_device_code(&d.hash, &approved("u1", T + 10), T + 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_device_code(&d.hash, &DeviceDecision::Denied, T + 11)
            .await
            .unwrap(),
        "a decision is final"
    );
    let found = store
        .find_device_code(&d.hash, T + 11)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.decision, Some(approved("u1", T + 10)));

    let e = device("device-2", "MNPQRSTV", T);
    store.put_device_code(&e).await.unwrap();
    assert!(
        !store
            .decide_device_code(&e.hash, &DeviceDecision::Denied, T + 600)
            .await
            .unwrap(),
        "no decision on an expired code"
    );
    assert!(
        store
            .decide_device_code(&e.hash, &DeviceDecision::Denied, T + 599)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .find_user_code(&e.user_code_hash, T + 600)
            .await
            .unwrap()
            .unwrap()
            .decision,
        Some(DeviceDecision::Denied)
    );
}

async fn device_polls_are_recorded_from_what_was_read(store: Arc<dyn Store>) {
    let d = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&d).await.unwrap();
    assert!(
        store
            .record_device_poll(&d.hash, None, 5, T + 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_device_poll(&d.hash, None, 5, T + 2)
            .await
            .unwrap(),
        "a concurrent poll that read the same state loses"
    );
    assert!(
        store
            .record_device_poll(&d.hash, Some(T + 1), 10, T + 3)
            .await
            .unwrap()
    );
    let found = store
        .find_device_code(&d.hash, T + 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.last_polled_at, found.interval), (Some(T + 3), 10));
    assert!(
        !store
            .record_device_poll(&d.hash, Some(T + 1), 10, T + 4)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_device_poll(&hash("unknown"), None, 5, T)
            .await
            .unwrap()
    );
}

async fn device_redeems_once_when_approved(store: Arc<dyn Store>) {
    let d = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&d).await.unwrap();
    let g = device_grant("g1", T + 20);
    let first = token("refresh-1", &g, T + 20);
    assert!(
        !store
            .redeem_device_code(&d.hash, &g, Some(&first), T + 20)
            .await
            .unwrap(),
        "not while pending"
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    store
        .decide_device_code(&d.hash, &approved("u1", T + 10), T + 10)
        .await
        .unwrap();
    let mut someone_else = g.clone();
    someone_else.user_id = "u2".into();
    assert!(
        !store
            .redeem_device_code(&d.hash, &someone_else, None, T + 20)
            .await
            .unwrap(),
        "only for the user who approved"
    );
    assert!(
        store
            .redeem_device_code(&d.hash, &g, Some(&first), T + 20)
            .await
            .unwrap()
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), Some(g.clone()));
    let view = store
        .find_refresh(&first.hash, T + 21)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.token, first);
    assert_eq!(view.grant.amr, g.amr);
    assert_eq!(
        store.list_grants("u1", T + 21).await.unwrap(),
        vec![g.clone()]
    );
    let found = store
        .find_device_code(&d.hash, T + 21)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.consumed_at, Some(T + 20));

    let g2 = device_grant("g2", T + 22);
    assert!(
        !store
            .redeem_device_code(&d.hash, &g2, None, T + 22)
            .await
            .unwrap(),
        "single-use"
    );
    assert_eq!(store.get_grant("g2").await.unwrap(), None);
    assert_eq!(
        rotate(&*store, &first, &token("refresh-2", &g, T + 23), 0, T + 23).await,
        Rotated::Rotated,
        "the first refresh token works"
    );

    // Denied, or approved but expired: nothing.
    let denied = device("device-2", "MNPQRSTV", T);
    store.put_device_code(&denied).await.unwrap();
    store
        .decide_device_code(&denied.hash, &DeviceDecision::Denied, T + 1)
        .await
        .unwrap();
    assert!(
        !store
            .redeem_device_code(&denied.hash, &g2, None, T + 2)
            .await
            .unwrap()
    );
    let late = device("device-3", "WXZBCDFG", T);
    store.put_device_code(&late).await.unwrap();
    store
        .decide_device_code(&late.hash, &approved("u1", T + 10), T + 10)
        .await
        .unwrap();
    assert!(
        !store
            .redeem_device_code(&late.hash, &g2, None, T + 600)
            .await
            .unwrap()
    );
    assert_eq!(store.get_grant("g2").await.unwrap(), None);
}

async fn concurrent_device_redemptions_issue_once(store: Arc<dyn Store>) {
    let d = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&d).await.unwrap();
    store
        .decide_device_code(&d.hash, &approved("u1", T + 10), T + 10)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let hash = d.hash.clone();
            let g = device_grant(&format!("g{i}"), T + 20);
            let first = token(&format!("refresh-{i}"), &g, T + 20);
            tokio::spawn(async move {
                store
                    .redeem_device_code(&hash, &g, Some(&first), T + 20)
                    .await
            })
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            issued += 1;
        }
    }
    assert_eq!(issued, 1);
    assert_eq!(store.list_grants("u1", T + 21).await.unwrap().len(), 1);
}

async fn device_undo_lets_the_code_be_redeemed_again(store: Arc<dyn Store>) {
    let d = device("device-1", "BCDFGHJK", T);
    store.put_device_code(&d).await.unwrap();
    store
        .decide_device_code(&d.hash, &approved("u1", T + 10), T + 10)
        .await
        .unwrap();
    let g = device_grant("g1", T + 20);
    let first = token("refresh-1", &g, T + 20);
    assert!(
        store
            .redeem_device_code(&d.hash, &g, Some(&first), T + 20)
            .await
            .unwrap()
    );
    assert!(
        !store
            .undo_device_redemption(&d.hash, "other-grant", Some(&first.hash))
            .await
            .unwrap(),
        "only for the grant it created"
    );
    assert!(
        store
            .undo_device_redemption(&d.hash, "g1", Some(&first.hash))
            .await
            .unwrap()
    );
    assert_eq!(store.get_grant("g1").await.unwrap(), None);
    assert_eq!(store.find_refresh(&first.hash, T + 21).await.unwrap(), None);
    let found = store
        .find_device_code(&d.hash, T + 21)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.consumed_at, None);
    assert!(
        !store
            .undo_device_redemption(&d.hash, "g1", Some(&first.hash))
            .await
            .unwrap()
    );

    // The retry redeems; after a rotation the redemption stands.
    let g = device_grant("g1", T + 30);
    let retried = token("refresh-2", &g, T + 30);
    assert!(
        store
            .redeem_device_code(&d.hash, &g, Some(&retried), T + 30)
            .await
            .unwrap()
    );
    assert_eq!(
        rotate(
            &*store,
            &retried,
            &token("refresh-3", &g, T + 31),
            0,
            T + 31
        )
        .await,
        Rotated::Rotated
    );
    assert!(
        !store
            .undo_device_redemption(&d.hash, "g1", Some(&retried.hash))
            .await
            .unwrap()
    );
    assert!(store.get_grant("g1").await.unwrap().is_some());

    // A revoked grant is never taken back.
    let e = device("device-2", "MNPQRSTV", T);
    store.put_device_code(&e).await.unwrap();
    store
        .decide_device_code(&e.hash, &approved("u1", T + 10), T + 10)
        .await
        .unwrap();
    let g2 = device_grant("g2", T + 20);
    assert!(
        store
            .redeem_device_code(&e.hash, &g2, None, T + 20)
            .await
            .unwrap()
    );
    assert_eq!(store.revoke_grant("g2", T + 21).await.unwrap(), 1);
    assert!(
        !store
            .undo_device_redemption(&e.hash, "g2", None)
            .await
            .unwrap()
    );
}
