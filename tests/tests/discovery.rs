//! Discovery document and JWKS, read raw and through `openidconnect`.

mod common;

use common::*;
use openidconnect::IssuerUrl;
use openidconnect::core::CoreProviderMetadata;
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[tokio::test]
async fn discovery_document_advertises_the_contract() {
    let env = TestEnv::start();
    let resp = env
        .http
        .get(env.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let d: Value = resp.json().await.unwrap();
    let issuer = env.issuer();

    assert_eq!(d["issuer"], issuer);
    assert_eq!(d["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(d["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(d["revocation_endpoint"], format!("{issuer}/oauth/revoke"));
    assert_eq!(
        d["introspection_endpoint"],
        format!("{issuer}/oauth/introspect")
    );
    assert_eq!(d["userinfo_endpoint"], format!("{issuer}/userinfo"));
    assert_eq!(d["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(strings(&d["response_types_supported"]), ["code"]);
    assert_eq!(strings(&d["code_challenge_methods_supported"]), ["S256"]);
    assert_eq!(strings(&d["subject_types_supported"]), ["public"]);
    assert_eq!(
        strings(&d["id_token_signing_alg_values_supported"]),
        ["ES256"]
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);

    let grants = strings(&d["grant_types_supported"]);
    for g in [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "password",
    ] {
        assert!(grants.iter().any(|x| x == g), "grant {g} in {grants:?}");
    }
    let auth = strings(&d["token_endpoint_auth_methods_supported"]);
    for m in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(auth.iter().any(|x| x == m), "auth method {m} in {auth:?}");
    }
    let scopes = strings(&d["scopes_supported"]);
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(scopes.iter().any(|x| x == s), "scope {s} in {scopes:?}");
    }
}

#[tokio::test]
async fn jwks_holds_p256_keys_whose_kid_is_the_rfc7638_thumbprint() {
    let env = TestEnv::start();
    let resp = env
        .http
        .get(env.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let jwks: Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().expect("keys array");
    assert!(!keys.is_empty(), "JWKS has at least one key");
    for key in keys {
        assert_eq!(key["kty"], "EC", "{key}");
        assert_eq!(key["crv"], "P-256", "{key}");
        if let Some(alg) = key.get("alg") {
            assert_eq!(alg, "ES256", "{key}");
        }
        if let Some(usage) = key.get("use") {
            assert_eq!(usage, "sig", "{key}");
        }
        assert!(
            key.get("d").is_none(),
            "the JWKS must not publish private keys: {key}"
        );
        for coord in ["x", "y"] {
            let bytes = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                key[coord].as_str().expect("coordinate"),
            )
            .expect("coordinate is base64url without padding");
            assert_eq!(bytes.len(), 32, "P-256 {coord} is 32 bytes");
        }
        let kid = key["kid"].as_str().expect("kid");
        assert_eq!(
            kid,
            ec_thumbprint(key),
            "kid must be the RFC 7638 thumbprint"
        );
    }
}

#[tokio::test]
async fn openidconnect_discovers_the_provider_and_its_keys() {
    let env = TestEnv::start();
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(env.issuer().to_string()).unwrap(),
        &env.http,
    )
    .await
    .unwrap_or_else(|e| panic!("discovery: {}", error_chain(&e)));
    assert_eq!(metadata.issuer().as_str(), env.issuer());
    assert_eq!(
        metadata.token_endpoint().map(|u| u.as_str().to_string()),
        Some(format!("{}/oauth/token", env.issuer()))
    );
    assert!(
        !metadata.jwks().keys().is_empty(),
        "openidconnect loaded the JWKS"
    );
}

#[tokio::test]
async fn issuer_flag_sets_the_advertised_issuer() {
    let dir = temp_data_dir();
    seed_standard(dir.path());
    let env = TestEnv::start_in(dir, &["--issuer", "https://id.example.test"]);
    let d = env.discovery().await;
    assert_eq!(d["issuer"], "https://id.example.test");
    assert_eq!(
        d["authorization_endpoint"],
        "https://id.example.test/authorize"
    );
    assert_eq!(d["token_endpoint"], "https://id.example.test/oauth/token");
}

/// Both directions: every grant type the token endpoint serves is
/// advertised, and every advertised endpoint answers (no 404).
#[tokio::test]
async fn discovery_advertises_exactly_what_exists() {
    let env = TestEnv::start();
    let d = env.discovery().await;
    let advertised = strings(&d["grant_types_supported"]);
    let candidates = [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "password",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "implicit",
    ];
    for g in candidates {
        let r = env
            .post_form(
                "/oauth/token",
                &[("grant_type", g)],
                Some((WEB, WEB_SECRET)),
            )
            .await;
        let served = r.body["error"] != "unsupported_grant_type";
        let listed = advertised.iter().any(|x| x == g);
        assert_eq!(
            served, listed,
            "grant {g}: served {served}, advertised {listed}: {}",
            r.text
        );
    }
    let obj = d.as_object().unwrap();
    for (name, url) in obj
        .iter()
        .filter(|(k, _)| k.ends_with("_endpoint") || *k == "jwks_uri")
    {
        let url = url.as_str().unwrap();
        let resp = env.http.get(url).send().await.unwrap();
        assert_ne!(resp.status(), 404, "{name} {url}");
    }
}
