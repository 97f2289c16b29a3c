//! No plain secret at rest or in the logs: one full session against
//! `tokenfn serve` with its log level at debug (its own code at trace), remembering every secret it
//! saw or sent; then the store (the SQLite file and its WAL, or a Scan of
//! the DynamoDB table) and everything the server printed are searched for
//! each one, as text and, where a value is an encoding of random bytes, as
//! those bytes in the raw, hex and base64.

mod common;
mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use openidconnect::{OAuth2TokenResponse, TokenResponse as _};
use support::*;

const ROPC: &str = "ropc";
const ROPC_SECRET: &str = "ropc-secret-0123456789abcdefghijklmnopqrstuvwx";
const TV: &str = "tv";
/// Everything at debug, and tokenfn's own code at trace. (The AWS SDK at
/// trace writes out every HTTP exchange with KMS and DynamoDB, megabytes.)
const LOG_LEVEL: &str = "debug,tokenfn=trace,tokenfn_core=trace";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Every secret of the session, by what it is.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, value: &str) {
        assert!(
            value.len() >= 6,
            "{what} is too short to search for: {value:?}"
        );
        self.0.push((what.to_owned(), value.to_owned()));
    }

    /// Each secret as the bytes to look for: the text itself, and the bytes
    /// it encodes (base64url or base32) raw, in hex and in base64. A value
    /// made of dotted parts is also looked for by its last part, the secret
    /// one: a JWT's signature, a refresh token's random part.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (what, value) in &self.0 {
            encodings(&mut out, what, value);
            if let Some((_, last)) = value.rsplit_once('.').filter(|(_, l)| l.len() >= 16) {
                encodings(&mut out, &format!("{what} (its last part)"), last);
            }
        }
        out
    }

    /// What secrets `haystack` (`where_`) holds in plain form, in words.
    fn found_in(&self, haystack: &[u8], where_: &str) -> Vec<String> {
        self.needles()
            .into_iter()
            .filter(|(_, needle)| find(haystack, needle).is_some())
            .map(|(what, _)| format!("{what}, in {where_}"))
            .collect()
    }
}

/// `value` as text and, when it encodes 16 bytes or more, as those bytes.
fn encodings(out: &mut Vec<(String, Vec<u8>)>, what: &str, value: &str) {
    out.push((what.to_owned(), value.as_bytes().to_vec()));
    let decoded = URL_SAFE_NO_PAD.decode(value).ok().or_else(|| base32(value));
    if let Some(bytes) = decoded.filter(|b| b.len() >= 16) {
        out.push((format!("{what} (raw bytes)"), bytes.clone()));
        out.push((format!("{what} (hex)"), hex(&bytes).into_bytes()));
        out.push((
            format!("{what} (HEX)"),
            hex(&bytes).to_uppercase().into_bytes(),
        ));
        out.push((
            format!("{what} (base64)"),
            STANDARD.encode(&bytes).into_bytes(),
        ));
    }
}

/// Where `needle` first is in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 4648 base32 without padding (TOTP secrets), or `None`.
fn base32(s: &str) -> Option<Vec<u8>> {
    let (mut bits, mut acc, mut out) = (0u32, 0u64, Vec::new());
    for c in s.trim_end_matches('=').chars() {
        let v = match c {
            'A'..='Z' => c as u64 - 'A' as u64,
            '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie(header: &str, name: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// The CSRF token of every form on `page`.
fn remember_csrf(secrets: &mut Secrets, page: &Page) {
    for form in page.forms() {
        if let Some(csrf) = form.hidden_value("csrf") {
            secrets.add("a CSRF token", &csrf);
        }
    }
}

/// Walks `url` in `browser` as `user` (answering the TOTP form with
/// `authenticator`), remembering the CSRF tokens; returns the callback.
async fn sign_in(
    secrets: &mut Secrets,
    browser: &Browser,
    url: &str,
    user: (&str, &str),
    authenticator: Option<&mut Authenticator>,
) -> Callback {
    let mut see = |page: &Page| remember_csrf(secrets, page);
    walk_seeing(browser, url, user, authenticator, &mut see)
        .await
        .callback()
}

fn remember_tokens(secrets: &mut Secrets, what: &str, body: &serde_json::Value) {
    for kind in ["access_token", "refresh_token", "id_token"] {
        if let Some(v) = body[kind].as_str() {
            secrets.add(&format!("{what}: {kind}"), v);
        }
    }
}

/// The whole session; returns its secrets.
async fn session(env: &TestEnv) -> Secrets {
    let mut secrets = Secrets::default();
    for (what, value) in [
        ("alice's password", PASSWORD),
        ("bob's password", PASSWORD2),
        ("a client secret", WEB_SECRET),
        ("a client secret", OTHER_SECRET),
        ("a client secret", SVC_SECRET),
        ("a client secret", ROPC_SECRET),
    ] {
        secrets.add(what, value);
    }

    // Authorization code with PKCE, refresh, revoke.
    let oidc = env.oidc(SPA, None).await;
    let browser = Browser::new();
    let req = AuthRequest::new(&oidc, &["offline_access"]);
    secrets.add("a PKCE verifier", req.verifier().secret());
    let callback = sign_in(&mut secrets, &browser, &req.url, (USER, PASSWORD), None).await;
    let code = callback.expect_code(&req, env.issuer());
    secrets.add("an authorization code", code.secret());
    let tokens = exchange(&oidc, &env.http, code, &req).await;
    secrets.add("an access token", tokens.access_token().secret());
    let refresh = tokens
        .refresh_token()
        .expect("a refresh token")
        .secret()
        .clone();
    secrets.add("a refresh token", &refresh);
    secrets.add(
        "an ID token",
        &tokens.id_token().expect("an ID token").to_string(),
    );
    let cookies = browser.cookies_for(&env.url("/"));
    for name in ["tfn_bind", "tfn_session"] {
        let value = cookie(&cookies, name).unwrap_or_else(|| panic!("no {name} in {cookies}"));
        secrets.add(&format!("the {name} cookie"), &value);
    }
    let refreshed = env.raw_refresh(SPA, None, &refresh).await;
    refreshed.assert_tokens();
    remember_tokens(&mut secrets, "refreshed", &refreshed.body);
    // Introspection of an access token.
    let access = refreshed.str("access_token");
    let introspected = env
        .post_form(
            "/oauth/introspect",
            &[("token", &access)],
            Some((WEB, WEB_SECRET)),
        )
        .await;
    assert_eq!(introspected.body["active"], true, "{}", introspected.text);

    let revoke = env
        .post_form(
            "/oauth/revoke",
            &[
                ("token", &refreshed.str("refresh_token")),
                ("client_id", SPA),
            ],
            None,
        )
        .await;
    assert_eq!(revoke.status, 200, "{}", revoke.text);

    // client_credentials and the password grant.
    let cc = env
        .post_form(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some((SVC, SVC_SECRET)),
        )
        .await;
    cc.assert_tokens();
    remember_tokens(&mut secrets, "client_credentials", &cc.body);
    let pw = env
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
                ("scope", "openid offline_access"),
            ],
            Some((ROPC, ROPC_SECRET)),
        )
        .await;
    pw.assert_tokens();
    remember_tokens(&mut secrets, "password grant", &pw.body);

    // The device flow: codes, the verification page, the tokens.
    let started = env
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", TV), ("scope", "openid offline_access")],
            None,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text);
    let (device_code, user_code) = (started.str("device_code"), started.str("user_code"));
    secrets.add("a device code", &device_code);
    secrets.add("a user code", &user_code);
    secrets.add("a user code as typed", &user_code.replace('-', ""));
    let page = browser.open(&env.url("/device"), REDIRECT_URI).await.page();
    remember_csrf(&mut secrets, &page);
    let form = page.form("/device").expect("the user code form");
    let consent = browser
        .submit(&page, &form, &[("user_code", &user_code)], REDIRECT_URI)
        .await
        .page();
    remember_csrf(&mut secrets, &consent);
    browser.decide(&consent, "allow", REDIRECT_URI).await.page();
    let polled = env
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", &device_code),
                ("client_id", TV),
            ],
            None,
        )
        .await;
    polled.assert_tokens();
    remember_tokens(&mut secrets, "device", &polled.body);

    // MFA enrolment, and a sign-in with a TOTP code.
    let mut authenticator = enroll(env, USER2).await;
    secrets.add("bob's TOTP secret", &authenticator.secret.clone());
    let req = AuthRequest::new(&oidc, &[]);
    let other = Browser::new();
    let callback = sign_in(
        &mut secrets,
        &other,
        &req.url,
        (USER2, PASSWORD2),
        Some(&mut authenticator),
    )
    .await;
    let code = callback.expect_code(&req, env.issuer());
    secrets.add("an authorization code", code.secret());
    let tokens = exchange(&oidc, &env.http, code, &req).await;
    secrets.add("an access token", tokens.access_token().secret());
    let session = cookie(&other.cookies_for(&env.url("/")), "tfn_session").unwrap();
    secrets.add("bob's session cookie", &session);
    secrets
}

/// Every stored byte: the SQLite file and its WAL, or every item of the
/// DynamoDB table.
async fn everything_stored(env: &TestEnv) -> Vec<(String, Vec<u8>)> {
    if is_aws() {
        let table = aws_resources(Some(env.data_dir())).table;
        let sdk = tokenfn_core::aws::sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let mut bytes = Vec::new();
        let mut pages = client
            .scan()
            .table_name(&table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.expect("Scan");
            for (name, value) in item {
                bytes.extend(name.into_bytes());
                attribute_bytes(&value, &mut bytes);
            }
        }
        assert!(!bytes.is_empty(), "the table holds nothing");
        vec![(format!("the DynamoDB table {table}"), bytes)]
    } else {
        ["tokenfn.db", "tokenfn.db-wal"]
            .into_iter()
            .filter_map(|f| {
                let path = env.data_dir().join(f);
                std::fs::read(&path)
                    .ok()
                    .map(|b| (path.display().to_string(), b))
            })
            .collect()
    }
}

fn attribute_bytes(value: &aws_sdk_dynamodb::types::AttributeValue, out: &mut Vec<u8>) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match value {
        A::S(s) | A::N(s) => out.extend(s.as_bytes()),
        A::B(b) => out.extend(b.as_ref()),
        A::Ss(v) | A::Ns(v) => v.iter().for_each(|s| out.extend(s.as_bytes())),
        A::Bs(v) => v.iter().for_each(|b| out.extend(b.as_ref())),
        A::L(v) => v.iter().for_each(|a| attribute_bytes(a, out)),
        A::M(m) => m.iter().for_each(|(k, a)| {
            out.extend(k.as_bytes());
            attribute_bytes(a, out);
        }),
        _ => {}
    }
    out.push(0);
}

#[tokio::test]
async fn no_secret_in_plain_form_in_the_store_or_the_debug_logs() {
    let dir = temp_data_dir();
    seed_standard(dir.path());
    for spec in [
        ClientSpec::confidential(ROPC, ROPC_SECRET)
            .grant_types("password,refresh_token")
            .scopes("openid profile offline_access"),
        ClientSpec::public(TV)
            .grant_types(&format!("{DEVICE_GRANT},refresh_token"))
            .scopes("openid offline_access"),
    ] {
        add_client(dir.path(), &spec);
    }
    let server = Server::start_with_env(dir.path(), &[], &[("TOKENFN_LOG", LOG_LEVEL)]);
    let env = TestEnv {
        server,
        http: app_http_client(),
        dir,
    };
    let secrets = session(&env).await;

    let mut found = Vec::new();
    for (where_, bytes) in everything_stored(&env).await {
        found.extend(secrets.found_in(&bytes, &where_));
    }
    // The server is stopped first, so that every line it wrote is read.
    let TestEnv { server, dir, .. } = env;
    let base = server.base.clone();
    let (stdout, stderr) = server.stop_for_output();
    drop(dir);
    assert!(
        stderr.len() < OUTPUT_KEPT && stdout.len() < OUTPUT_KEPT,
        "the output was cut; nothing after the cut was searched"
    );
    assert!(
        stderr.contains("DEBUG"),
        "the server logged below info ({base}): {}",
        &stderr[..stderr.len().min(2000)]
    );
    let output = format!("{stdout}\n{stderr}");
    for (what, needle) in secrets.needles() {
        if let Some(at) = find(output.as_bytes(), &needle) {
            let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            let line = output[line_start..].lines().next().unwrap_or_default();
            found.push(format!("{what}, in the log line: {line}"));
        }
    }
    assert!(
        found.is_empty(),
        "secrets in plain form:\n{}",
        found.join("\n")
    );
}
