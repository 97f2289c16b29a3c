//! What a first start creates so that a new user can try a whole flow at
//! once: two clients, one user, and an authorize URL. Their secrets are
//! printed once and stored only as hashes.

use tokenfn_core::domain::client::Lifetimes;
use tokenfn_core::domain::secret::new_secret;
use tokenfn_core::domain::{GrantType, Scopes};
use tokenfn_core::http::pages::{Skin, escape};
use tokenfn_core::http::{Request, Response, Route, wire};
use tokenfn_core::service::Services;
use tokenfn_core::service::admin::NewClient;

/// Where the demo clients are sent back: a page that shows the code.
pub const CALLBACK: &str = "/demo/callback";
/// The one route `serve` mounts beside the routers' (GET only).
pub const ROUTES: &[Route] = &[Route {
    method: http::Method::GET,
    path: CALLBACK,
}];
const SCOPES: &str = "openid profile email offline_access";

pub async fn seed(services: &Services) -> Result<(), String> {
    let issuer = &services.config.issuer;
    let redirect = format!("{issuer}{CALLBACK}");
    let secret = new_secret().map_err(|e| e.to_string())?;
    let password = new_secret().map_err(|e| e.to_string())?;
    let scopes = Scopes::parse(SCOPES).map_err(|e| e.description)?;
    let grants = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    let add = |id: &str, name: &str, secret: Option<String>| NewClient {
        id: id.into(),
        name: Some(name.into()),
        redirect_uris: vec![redirect.clone()],
        secret,
        grant_types: grants.clone(),
        scopes: scopes.clone(),
        lifetimes: Lifetimes::default(),
    };
    let err = |e: tokenfn_core::service::admin::AdminError| e.to_string();
    services
        .add_client(add("demo-web", "Demo web app", Some(secret.clone())))
        .await
        .map_err(err)?;
    services
        .add_client(add("demo-mobile", "Demo mobile app", None))
        .await
        .map_err(err)?;
    let user = services
        .add_user("demo", &password, Some("demo@example.com".into()))
        .await
        .map_err(err)?;

    let state = &new_secret().map_err(|e| e.to_string())?[..16];
    let nonce = &new_secret().map_err(|e| e.to_string())?[..16];
    let url = url::Url::parse_with_params(
        &format!("{issuer}/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", "demo-web"),
            ("redirect_uri", redirect.as_str()),
            ("scope", SCOPES),
            ("state", state),
            ("nonce", nonce),
        ],
    )
    .map_err(|e| e.to_string())?;
    println!("First start: created a signing key and demo accounts.");
    println!("These secrets are shown once; only their hashes are stored.");
    println!("  confidential client: client_id=demo-web client_secret={secret}");
    println!("  public client:       client_id=demo-mobile (no secret; PKCE S256 required)");
    println!(
        "  user:                username=demo password={password} user_id={}",
        user.id
    );
    println!("  redirect URI:        {redirect}");
    println!("Open this URL in a browser to sign in and get a code:");
    println!("  {url}");
    Ok(())
}

/// Shows the code (or error) that came back, and how to exchange it.
pub fn callback(issuer: &str, skin: &Skin, req: &Request) -> Response {
    let q = wire::query(req);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let body = match (get("code"), get("error")) {
        (Some(code), _) => format!(
            "<h1>Signed in</h1><p>The app got this authorization code (valid for 60 seconds):</p>\
<pre>{code}</pre><p>Exchange it for tokens:</p><pre>curl -s -u demo-web:$CLIENT_SECRET \\\n  -d grant_type=authorization_code \\\n  -d code={code} \\\n  --data-urlencode redirect_uri={issuer}{CALLBACK} \\\n  {issuer}/oauth/token</pre>",
            code = escape(code),
            issuer = escape(issuer),
        ),
        (None, Some(error)) => format!(
            "<h1>The request was refused</h1><p>error: <code>{}</code></p><p>{}</p>",
            escape(error),
            escape(get("error_description").unwrap_or(""))
        ),
        (None, None) => {
            "<h1>Nothing to show</h1><p>This page receives the redirect of the demo clients.</p>"
                .into()
        }
    };
    wire::html(200, skin.layout("Demo app", &body, false), skin.csp(), &[])
}
