//! The admin CLI, demo seeding, the key file, and restart persistence.
//!
//! Demo seeding and the key file are the embedded backend's: those tests are
//! skipped under `TOKENFN_BLACKBOX_BACKEND=aws` (see `common`).

mod common;

use std::ffi::OsString;

use common::*;
use openidconnect::{OAuth2TokenResponse, TokenResponse};
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect(),
        Value::String(s) => s
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        other => panic!("expected a list, got {other}"),
    }
}

#[tokio::test]
async fn client_add_prints_the_client_and_never_the_secret() {
    let dir = temp_data_dir();
    let public = add_client(dir.path(), &ClientSpec::public("app1"));
    assert_eq!(public["id"], "app1");
    assert_eq!(public["kind"], "public");
    assert_eq!(strings(&public["redirect_uris"]), [REDIRECT_URI]);
    let mut grants = strings(&public["grant_types"]);
    grants.sort();
    assert_eq!(
        grants,
        ["authorization_code", "refresh_token"],
        "default grant types"
    );
    assert_eq!(
        scope_set(&public["scopes"]),
        set_of(&["openid", "profile", "email", "offline_access"]),
        "default scopes"
    );

    let secret = "a-very-secret-value-that-is-long-enough-0123";
    let spec = ClientSpec::confidential("app2", secret)
        .redirect_uri(REDIRECT_URI_2)
        .grant_types("authorization_code,refresh_token,client_credentials")
        .scopes("openid profile")
        .arg("--name", "Second App");
    let args = spec.cli_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tokenfn(dir.path(), &args, Some(&format!("{secret}\n")));
    let client = out.json();
    assert!(
        !out.stdout.contains(secret),
        "stdout leaks the secret: {}",
        out.stdout
    );
    assert!(
        !out.stderr.contains(secret),
        "stderr leaks the secret: {}",
        out.stderr
    );
    assert_eq!(client["id"], "app2");
    assert_eq!(client["kind"], "confidential");
    assert_eq!(
        strings(&client["redirect_uris"]),
        [REDIRECT_URI, REDIRECT_URI_2]
    );
    let mut grants = strings(&client["grant_types"]);
    grants.sort();
    assert_eq!(
        grants,
        ["authorization_code", "client_credentials", "refresh_token"]
    );
    assert_eq!(scope_set(&client["scopes"]), set_of(&["openid", "profile"]));
}

#[tokio::test]
async fn client_add_rejects_bad_arguments_cleanly() {
    let dir = temp_data_dir();
    let d = dir.path();
    let long = "0123456789abcdefghijklmnopqrstuvwxyz";
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        // Secret shorter than 32 characters.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c1",
                "--redirect-uri",
                REDIRECT_URI,
                "--secret-stdin",
            ],
            Some("too-short-secret\n"),
        ),
        // No redirect URI.
        (vec!["client", "add", "--client-id", "c2", "--public"], None),
        // Both --public and --secret-stdin.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c3",
                "--redirect-uri",
                REDIRECT_URI,
                "--public",
                "--secret-stdin",
            ],
            Some(long),
        ),
        // Neither.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c4",
                "--redirect-uri",
                REDIRECT_URI,
            ],
            None,
        ),
        // Not a URL.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c5",
                "--redirect-uri",
                "not a url",
                "--public",
            ],
            None,
        ),
        // Unknown grant type.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c6",
                "--redirect-uri",
                REDIRECT_URI,
                "--public",
                "--grant-types",
                "implicit",
            ],
            None,
        ),
        // Not a number.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c7",
                "--redirect-uri",
                REDIRECT_URI,
                "--public",
                "--access-token-ttl",
                "soon",
            ],
            None,
        ),
        // Unknown flag.
        (
            vec![
                "client",
                "add",
                "--client-id",
                "c8",
                "--redirect-uri",
                REDIRECT_URI,
                "--public",
                "--frobnicate",
            ],
            None,
        ),
        // No client id.
        (
            vec!["client", "add", "--redirect-uri", REDIRECT_URI, "--public"],
            None,
        ),
    ];
    for (args, stdin) in cases {
        let out = tokenfn(d, &args, stdin);
        assert!(!out.status.success(), "{args:?} must fail");
        out.assert_clean_failure();
    }
}

#[tokio::test]
async fn other_bad_invocations_fail_cleanly() {
    let dir = temp_data_dir();
    let d = dir.path();
    for args in [
        vec!["frobnicate"],
        vec!["user", "add", "--username", "x"], // no --password-stdin
        vec!["grants", "list"],                 // no --user
        vec!["revoke"],                         // nothing to revoke
        vec!["revoke", "--user", "alice", "--client", "web"],
        vec!["serve", "--addr", "not-an-address"],
    ] {
        tokenfn(d, &args, Some("irrelevant-password-value\n")).assert_clean_failure();
    }
    // No subcommand at all.
    run_cli_raw(&["--data-dir".into(), d.into()], None, &[]).assert_clean_failure();
}

#[tokio::test]
async fn user_add_prints_the_user_and_never_the_password() {
    let dir = temp_data_dir();
    let password = "a-memorable-passphrase-for-carol";
    let out = tokenfn(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "carol",
            "--password-stdin",
            "--email",
            "carol@example.test",
        ],
        Some(&format!("{password}\n")),
    );
    let user = out.json();
    assert!(!out.stdout.contains(password), "stdout leaks the password");
    assert!(!out.stderr.contains(password), "stderr leaks the password");
    assert_eq!(user["username"], "carol");
    assert_eq!(user["email"], "carol@example.test");
    assert!(
        user["id"].as_str().is_some_and(|s| !s.is_empty()) || user["id"].is_number(),
        "user id: {user}"
    );
}

#[tokio::test]
async fn data_dir_from_env_or_after_the_subcommand() {
    let dir = temp_data_dir();
    let d: OsString = dir.path().into();
    // --data-dir after the subcommand.
    let out = run_cli_raw(
        &[
            "user".into(),
            "add".into(),
            "--username".into(),
            "dave".into(),
            "--password-stdin".into(),
            "--data-dir".into(),
            d.clone(),
        ],
        Some("daves-password-is-long-enough\n"),
        &[],
    );
    out.json();
    // TOKENFN_DATA_DIR.
    let spec = ClientSpec::public("envapp");
    let args: Vec<OsString> = spec.cli_args().into_iter().map(OsString::from).collect();
    run_cli_raw(&args, None, &[("TOKENFN_DATA_DIR", d.clone())]).json();

    // Both landed in the same store: dave signs in to envapp.
    let env = TestEnv::start_in(dir, &[]);
    let oidc = env.oidc("envapp", None).await;
    let (req, tokens) = env
        .sign_in(&oidc, ("dave", "daves-password-is-long-enough"), &[])
        .await;
    verify_id_token(&oidc, &tokens, &req.nonce);
}

#[tokio::test]
async fn a_client_added_while_serving_can_be_used_at_once() {
    let env = TestEnv::start();
    add_client(env.data_dir(), &ClientSpec::public("late"));
    add_user(
        env.data_dir(),
        "erin",
        "erins-password-is-long-enough",
        None,
    );
    let oidc = env.oidc("late", None).await;
    let (req, tokens) = env
        .sign_in(&oidc, ("erin", "erins-password-is-long-enough"), &[])
        .await;
    verify_id_token(&oidc, &tokens, &req.nonce);
}

fn grants_of(env: &TestEnv, user: &str) -> Vec<Value> {
    env.cli(&["grants", "list", "--user", user], None)
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("grants list prints a JSON array"))
        .clone()
}

async fn refresh_status(env: &TestEnv, client: &str, secret: Option<&str>, rt: &str) -> String {
    let r = env.raw_refresh(client, secret, rt).await;
    if r.status == 200 {
        "ok".into()
    } else {
        r.body["error"].as_str().unwrap_or(&r.text).to_string()
    }
}

#[tokio::test]
async fn grants_list_and_revoke_grant() {
    let env = TestEnv::start();
    assert!(grants_of(&env, USER).is_empty(), "no grants yet");
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = env.tokens(&oidc, &["profile", "offline_access"]).await;
    let rt = tokens.refresh_token().unwrap().secret().clone();
    let (_, claims) = env
        .verify_access_token(tokens.access_token().secret())
        .await;

    let grants = grants_of(&env, USER);
    assert_eq!(grants.len(), 1, "{grants:?}");
    let grant = &grants[0];
    assert_eq!(grant["client_id"], WEB);
    assert_eq!(
        scope_set(&grant["scopes"]),
        set_of(&["openid", "profile", "offline_access"])
    );
    let id = match &grant["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert_eq!(
        claims["grant_id"].as_str(),
        Some(id.as_str()),
        "access token grant_id"
    );

    let out = env.cli(&["revoke", "--grant", &id], None).json();
    assert_eq!(out["revoked"], 1, "{out}");
    assert_eq!(
        refresh_status(&env, WEB, Some(WEB_SECRET), &rt).await,
        "invalid_grant"
    );
    assert!(
        grants_of(&env, USER).is_empty(),
        "revoked grants are not listed"
    );
}

#[tokio::test]
async fn revoke_user_while_serving_kills_live_refresh_tokens() {
    let env = TestEnv::start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let spa = env.oidc(SPA, None).await;
    let (_, a1) = env.tokens(&web, &["offline_access"]).await;
    let (_, a2) = env.tokens(&spa, &["offline_access"]).await;
    let (_, b) = env
        .sign_in(&web, (USER2, PASSWORD2), &["offline_access"])
        .await;
    let a1 = a1.refresh_token().unwrap().secret().clone();
    let a2 = a2.refresh_token().unwrap().secret().clone();
    let b = b.refresh_token().unwrap().secret().clone();
    // Both of alice's tokens are live right now (and rotate).
    let r = env.raw_refresh(WEB, Some(WEB_SECRET), &a1).await;
    r.assert_tokens();
    let a1 = r.str("refresh_token");

    let out = env.cli(&["revoke", "--user", USER], None).json();
    assert_eq!(out["revoked"], 2, "{out}");
    assert_eq!(
        refresh_status(&env, WEB, Some(WEB_SECRET), &a1).await,
        "invalid_grant"
    );
    assert_eq!(refresh_status(&env, SPA, None, &a2).await, "invalid_grant");
    assert_eq!(
        refresh_status(&env, WEB, Some(WEB_SECRET), &b).await,
        "ok",
        "other users are untouched"
    );
    assert!(grants_of(&env, USER).is_empty());
    assert_eq!(grants_of(&env, USER2).len(), 1);
}

#[tokio::test]
async fn revoke_client_kills_that_clients_grants_only() {
    let env = TestEnv::start();
    let web = env.oidc(WEB, Some(WEB_SECRET)).await;
    let spa = env.oidc(SPA, None).await;
    let (_, w) = env.tokens(&web, &["offline_access"]).await;
    let (_, s) = env.tokens(&spa, &["offline_access"]).await;
    let w = w.refresh_token().unwrap().secret().clone();
    let s = s.refresh_token().unwrap().secret().clone();

    let out = env.cli(&["revoke", "--client", WEB], None).json();
    assert_eq!(out["revoked"], 1, "{out}");
    assert_eq!(
        refresh_status(&env, WEB, Some(WEB_SECRET), &w).await,
        "invalid_grant"
    );
    assert_eq!(refresh_status(&env, SPA, None, &s).await, "ok");
}

#[tokio::test]
async fn revoking_nothing_reports_zero() {
    let env = TestEnv::start();
    let out = env.cli(&["revoke", "--user", USER2], None).json();
    assert_eq!(out["revoked"], 0, "{out}");
}

fn demo_values(startup: &[String], base: &str) -> (String, String, String) {
    let web_line = startup
        .iter()
        .find(|l| l.contains("client_id=demo-web"))
        .unwrap_or_else(|| panic!("a `client_id=demo-web client_secret=...` line in {startup:#?}"));
    let secret = field_in_lines(std::slice::from_ref(web_line), "client_secret")
        .unwrap_or_else(|| panic!("client_secret= on {web_line:?}"));
    assert!(
        startup.iter().any(|l| l.contains("client_id=demo-mobile")),
        "a client_id=demo-mobile line in {startup:#?}"
    );
    let user_line = startup
        .iter()
        .find(|l| l.contains("username=demo"))
        .unwrap_or_else(|| panic!("a `username=demo password=...` line in {startup:#?}"));
    let password = field_in_lines(std::slice::from_ref(user_line), "password")
        .unwrap_or_else(|| panic!("password= on {user_line:?}"));
    let prefix = format!("{base}/authorize?");
    let authorize = startup
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find(|w| w.starts_with(&prefix))
        .unwrap_or_else(|| panic!("an authorize URL starting with {prefix} in {startup:#?}"))
        .to_string();
    (secret, password, authorize)
}

#[tokio::test]
async fn first_start_seeds_demo_clients_and_user() {
    if skip_on_aws(
        "demo accounts are seeded when the embedded backend creates its local signing key \
         (a first start); with --signer kms there is no such start",
    ) {
        return;
    }
    let env = TestEnv::start_in(temp_data_dir(), &[]);
    let base = env.issuer().to_string();
    let (secret, password, authorize) = demo_values(&env.server.startup, &base);
    let demo_redirect = format!("{base}/demo/callback");

    // The printed pages answer: the device code form and the connected apps
    // page (which asks a stranger to sign in first).
    let pages = env
        .server
        .startup
        .iter()
        .find(|l| l.starts_with("pages: "))
        .unwrap_or_else(|| panic!("a `pages:` line in {:#?}", env.server.startup));
    for url in pages.split_whitespace().filter(|w| w.starts_with("http")) {
        let resp = env.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("<form"), "{url} shows a form:\n{html}");
    }

    // The printed authorize URL leads to the login page.
    let browser = env.browser();
    let page = browser.open(&authorize, &demo_redirect).await.page();
    assert!(
        page.login_form().is_some(),
        "printed URL -> login page:\n{}",
        page.body
    );

    // A full flow with the printed demo-web secret and demo password.
    let web = env
        .oidc_with_redirect("demo-web", Some(&secret), &demo_redirect)
        .await;
    let req = AuthRequest::new(&web, &["profile", "offline_access"]);
    let flow = browser
        .authorize(&req.url, ("demo", &password), &demo_redirect)
        .await;
    let code = flow.callback.expect_code(&req, env.issuer());
    let tokens = exchange(&web, &env.http, code, &req).await;
    verify_id_token(&web, &tokens, &req.nonce);
    assert!(tokens.refresh_token().is_some());

    // demo-mobile is a public client on the same redirect URI.
    let mobile = env
        .oidc_with_redirect("demo-mobile", None, &demo_redirect)
        .await;
    let req = AuthRequest::new(&mobile, &[]);
    let flow = browser
        .authorize(&req.url, ("demo", &password), &demo_redirect)
        .await;
    let code = flow.callback.expect_code(&req, env.issuer());
    let tokens = exchange(&mobile, &env.http, code, &req).await;
    assert!(tokens.id_token().is_some());

    // Restart: no secrets printed again.
    let env = env.restart(&[]);
    for line in &env.server.startup {
        assert!(
            !line.contains("client_secret=") && !line.contains("password="),
            "a later start prints no secrets: {line:?}"
        );
        assert!(
            !line.contains(&secret) && !line.contains(&password),
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn restart_keeps_grants_and_the_signing_key() {
    let env = TestEnv::start();
    let kid_before: Vec<String> = env.jwks().await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    let oidc = env.oidc(WEB, Some(WEB_SECRET)).await;
    let (_, tokens) = env.tokens(&oidc, &["offline_access"]).await;
    let rt = tokens.refresh_token().unwrap().secret().clone();
    let (header, _) = env
        .verify_access_token(tokens.access_token().secret())
        .await;

    let env = env.restart(&[]);
    let kid_after: Vec<String> = env.jwks().await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kid_before, kid_after, "the signing key survives a restart");

    let r = env.raw_refresh(WEB, Some(WEB_SECRET), &rt).await;
    r.assert_tokens();
    let (header_after, _) = env.verify_access_token(&r.str("access_token")).await;
    assert_eq!(
        header.kid, header_after.kid,
        "same kid signs after the restart"
    );
}

#[tokio::test]
async fn signing_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    if skip_on_aws("the signing key is in KMS, not a file in the data directory") {
        return;
    }
    let env = TestEnv::start_in(temp_data_dir(), &[]);
    let keys: Vec<_> = std::fs::read_dir(env.data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("signing-key"))
        })
        .collect();
    assert!(
        !keys.is_empty(),
        "a signing-key* file in the data dir; found {:?}",
        std::fs::read_dir(env.data_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    for key in keys {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
    }
}
