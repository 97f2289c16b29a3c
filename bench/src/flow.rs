//! Getting tokens the way an app does: discovery, then the authorization
//! code flow through the server's own login and consent forms (a browser
//! with a cookie jar, redirects followed by hand), then the code exchange.
//!
//! Nothing here knows whose server it is talking to: the forms are read
//! from the HTML (hidden fields kept, the user name and password typed into
//! the fields that ask for them, the allowing button pressed), so the same
//! walk works on tokenfn's pages and on the peer's.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::cookie::Jar;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

/// Who asks for tokens: a client and, for the code flow, a user.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub username: String,
    pub password: String,
    pub redirect_uri: String,
    pub scope: String,
}

/// The endpoints from the server's discovery document.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
}

pub fn plain_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Reads `BASE/.well-known/openid-configuration`.
pub async fn discover(base: &str) -> Result<Endpoints, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        base.trim_end_matches('/')
    );
    let http = plain_client()?;
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", chain(&e)))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}: {}", short(&text)));
    }
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("GET {url}: not a JSON discovery document ({e})"))?;
    let field = |k: &str| {
        doc[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the discovery document at {url} has no {k}"))
    };
    Ok(Endpoints {
        authorization: field("authorization_endpoint")?,
        token: field("token_endpoint")?,
    })
}

/// A random URL-safe string of `n` bytes of entropy.
pub fn random(n: usize) -> Result<String, String> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// Runs the whole authorization code flow and returns the token response
/// (which must hold a refresh token).
pub async fn refresh_token_by_code_flow(
    endpoints: &Endpoints,
    creds: &Credentials,
) -> Result<String, String> {
    let verifier = random(32)?;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random(16)?;
    let nonce = random(16)?;
    // prompt=consent: OIDC Core §11 lets a server drop offline_access
    // without it (the peer does), and tokenfn asks for consent anyway.
    let auth_url = Url::parse_with_params(
        &endpoints.authorization,
        &[
            ("response_type", "code"),
            ("client_id", creds.client_id.as_str()),
            ("redirect_uri", creds.redirect_uri.as_str()),
            ("scope", creds.scope.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("prompt", "consent"),
        ],
    )
    .map_err(|e| {
        format!(
            "bad authorization endpoint {}: {e}",
            endpoints.authorization
        )
    })?;

    let browser = Browser::new()?;
    let callback = browser.authorize(auth_url, creds).await?;
    let params: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(error) = get("error") {
        return Err(format!(
            "authorization failed: {error} ({})",
            get("error_description").unwrap_or_default()
        ));
    }
    if get("state").as_deref() != Some(state.as_str()) {
        return Err("the redirect back carries the wrong state".into());
    }
    let code = get("code").ok_or("the redirect back carries no code")?;

    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", creds.redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let http = plain_client()?;
    let body = token_request(&http, &endpoints.token, creds, &form).await?;
    body["refresh_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "the code exchange returned no refresh_token (scope granted: {})",
                body["scope"]
            )
        })
}

/// A token request that must succeed; returns the JSON body.
pub async fn token_request(
    http: &reqwest::Client,
    token_endpoint: &str,
    creds: &Credentials,
    form: &[(&str, &str)],
) -> Result<Value, String> {
    let resp = authenticate(http.post(token_endpoint), creds, form)
        .send()
        .await
        .map_err(|e| format!("POST {token_endpoint}: {}", chain(&e)))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("POST {token_endpoint}: {}", chain(&e)))?;
    if !status.is_success() {
        return Err(format!(
            "POST {token_endpoint}: HTTP {status}: {}",
            short(&text)
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("POST {token_endpoint}: not JSON ({e})"))
}

/// The form `form`, with client_secret_basic when the client has a secret,
/// else with its id in the body.
pub fn authenticate(
    req: reqwest::RequestBuilder,
    creds: &Credentials,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    match &creds.client_secret {
        // RFC 6749 §2.3.1: both parts form-encoded before Basic.
        Some(secret) => req
            .basic_auth(form_encode(&creds.client_id), Some(form_encode(secret)))
            .form(form),
        None => {
            let mut all = form.to_vec();
            all.push(("client_id", creds.client_id.as_str()));
            req.form(&all)
        }
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub use tokenfn_blackbox::error_chain as chain;

pub fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

struct Browser {
    http: reqwest::Client,
}

impl Browser {
    fn new() -> Result<Browser, String> {
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::new(Jar::default()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the browser's HTTP client: {e}"))?;
        Ok(Browser { http })
    }

    /// Opens the authorization URL and walks the pages until the redirect
    /// to the client's redirect URI, which it returns.
    async fn authorize(&self, url: Url, creds: &Credentials) -> Result<Url, String> {
        let mut step = self.send(self.http.get(url.clone()), url, creds).await?;
        let mut signed_in = false;
        for _ in 0..6 {
            let (page_url, html) = match step {
                Step::Callback(url) => return Ok(url),
                Step::Page(url, html) => (url, html),
            };
            let form = pick_form(&html).ok_or_else(|| {
                format!(
                    "expected a login or consent form at {page_url}, got: {}",
                    short(&visible_text(&html))
                )
            })?;
            let asks_password = form.inputs.iter().any(|(ty, _, _)| ty == "password");
            if asks_password && signed_in {
                return Err(format!(
                    "the login form came back after signing in as {:?}: wrong username or password? The page says: {}",
                    creds.username,
                    short(&visible_text(&html))
                ));
            }
            signed_in |= asks_password;
            let fields = form.fill(creds);
            let action = page_url
                .join(&form.action)
                .map_err(|e| format!("bad form action {:?}: {e}", form.action))?;
            let req = self.http.post(action.clone()).form(&fields);
            step = self.send(req, action, creds).await?;
        }
        Err("the authorization did not end in a redirect to the client after 6 pages".into())
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        mut url: Url,
        creds: &Credentials,
    ) -> Result<Step, String> {
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {}", chain(&e)))?;
        for _ in 0..10 {
            let status = resp.status();
            if !status.is_redirection() {
                let text = resp
                    .text()
                    .await
                    .map_err(|e| format!("{url}: {}", chain(&e)))?;
                if !status.is_success() {
                    return Err(format!(
                        "HTTP {status} at {url}: {}",
                        short(&visible_text(&text))
                    ));
                }
                return Ok(Step::Page(url, text));
            }
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("HTTP {status} without a Location at {url}"))?;
            let next = url
                .join(location)
                .map_err(|e| format!("bad Location {location:?}: {e}"))?;
            if next.as_str().starts_with(&creds.redirect_uri) {
                return Ok(Step::Callback(next));
            }
            url = next;
            resp = self
                .http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {}", chain(&e)))?;
        }
        Err(format!("more than 10 redirects, the last to {url}"))
    }
}

enum Step {
    Page(Url, String),
    Callback(Url),
}

/// One HTML form as the browser sees it.
#[derive(Debug, Default, PartialEq)]
struct Form {
    action: String,
    method: String,
    /// (type, name, value) of every named `<input>`.
    inputs: Vec<(String, String, String)>,
    /// (name, value) of every named submit button.
    buttons: Vec<(String, String)>,
}

impl Form {
    /// Hidden fields as given, the user name and password typed in, and
    /// the button that allows (or the first named one) pressed.
    fn fill(&self, creds: &Credentials) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (ty, name, value) in &self.inputs {
            let value = match (ty.as_str(), name.as_str()) {
                ("password", _) | (_, "password") => creds.password.clone(),
                (_, "username" | "login" | "user" | "email") => creds.username.clone(),
                ("hidden", _) => value.clone(),
                ("checkbox" | "radio" | "submit", _) => continue,
                _ => value.clone(),
            };
            out.push((name.clone(), value));
        }
        let allow = self
            .buttons
            .iter()
            .find(|(_, v)| matches!(v.as_str(), "allow" | "yes" | "approve" | "continue"))
            .or_else(|| self.buttons.first());
        if let Some((name, value)) = allow {
            out.push((name.clone(), value.clone()));
        }
        out
    }
}

/// The form to submit on a page: the first POST form that is not a way out
/// (an abort, deny or cancel form).
fn pick_form(html: &str) -> Option<Form> {
    let forms = parse_forms(html);
    forms.into_iter().filter(|f| f.method == "post").find(|f| {
        let a = f.action.to_ascii_lowercase();
        !a.contains("abort") && !a.contains("cancel")
    })
}

/// A small HTML form reader: enough for server-rendered login and consent
/// pages (forms, inputs and buttons with quoted or bare attributes).
fn parse_forms(html: &str) -> Vec<Form> {
    let mut forms = Vec::new();
    let mut current: Option<Form> = None;
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = tag_end(rest);
        let tag = &rest[..end];
        rest = &rest[end.min(rest.len())..];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
            .collect::<String>()
            .to_ascii_lowercase();
        let attrs = || attributes(&tag[name.len()..]);
        match name.as_str() {
            "form" => {
                let a = attrs();
                current = Some(Form {
                    action: attr(&a, "action").unwrap_or_default(),
                    method: attr(&a, "method")
                        .unwrap_or_else(|| "get".into())
                        .to_ascii_lowercase(),
                    ..Form::default()
                });
            }
            "/form" => forms.extend(current.take()),
            "input" => {
                if let Some(form) = current.as_mut() {
                    let a = attrs();
                    let ty = attr(&a, "type")
                        .unwrap_or_else(|| "text".into())
                        .to_ascii_lowercase();
                    if let Some(n) = attr(&a, "name") {
                        let v = attr(&a, "value").unwrap_or_default();
                        if ty == "submit" {
                            form.buttons.push((n, v));
                        } else {
                            form.inputs.push((ty, n, v));
                        }
                    }
                }
            }
            "button" => {
                if let Some(form) = current.as_mut() {
                    let a = attrs();
                    let ty = attr(&a, "type").unwrap_or_else(|| "submit".into());
                    if ty.eq_ignore_ascii_case("submit")
                        && let Some(n) = attr(&a, "name")
                    {
                        form.buttons
                            .push((n, attr(&a, "value").unwrap_or_default()));
                    }
                }
            }
            _ => {}
        }
    }
    forms.extend(current.take());
    forms
}

/// Where a tag ends: the first `>` outside quotes.
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i,
            _ => {}
        }
    }
    s.len()
}

fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            break;
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                i += 1;
                let vs = i;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = s[vs..i].to_owned();
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = s[vs..i].to_owned();
            }
        }
        out.push((name, unescape(&value)));
    }
    out
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&amp;", "&")
}

/// The text of a page without its tags, styles and scripts, for error messages.
fn visible_text(html: &str) -> String {
    let mut html = html.to_owned();
    for (open, close) in [
        ("<style", "</style>"),
        ("<script", "</script>"),
        ("<title", "</title>"),
    ] {
        while let Some(start) = html.to_ascii_lowercase().find(open) {
            let end = html.to_ascii_lowercase()[start..]
                .find(close)
                .map(|i| start + i + close.len())
                .unwrap_or(html.len());
            html.replace_range(start..end, " ");
        }
    }
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            client_id: "c".into(),
            client_secret: None,
            username: "alice".into(),
            password: "pw".into(),
            redirect_uri: "http://127.0.0.1:1/cb".into(),
            scope: "openid".into(),
        }
    }

    #[test]
    fn login_form_gets_hidden_fields_and_credentials() {
        let html = r#"<html><form method="post" action="/login">
            <input type=hidden name="interaction" value="abc&amp;d">
            <input type="hidden" name='csrf' value="x y">
            <input name="username" autocomplete="username">
            <input type="password" name="password">
            <button type="submit">Sign in</button></form></html>"#;
        let form = pick_form(html).unwrap();
        assert_eq!(form.action, "/login");
        assert_eq!(
            form.fill(&creds()),
            vec![
                ("interaction".to_owned(), "abc&d".to_owned()),
                ("csrf".to_owned(), "x y".to_owned()),
                ("username".to_owned(), "alice".to_owned()),
                ("password".to_owned(), "pw".to_owned()),
            ]
        );
    }

    #[test]
    fn visible_text_leaves_out_styles_and_scripts() {
        let html = "<html><head><title>T</title><style>p{x:y}</style></head>\
                    <body><p>Wrong  password.</p><script>var a;</script></body></html>";
        assert_eq!(visible_text(html), "Wrong password.");
    }

    #[test]
    fn consent_presses_allow_and_skips_abort_forms() {
        let html = r#"<form action="/i/1/abort" method="POST"><button>Cancel</button></form>
            <form method="post" action="/consent"><input type="hidden" name="csrf" value="t">
            <button name="decision" value="deny">Deny</button>
            <button name="decision" value="allow">Allow</button></form>"#;
        let form = pick_form(html).unwrap();
        assert_eq!(form.action, "/consent");
        assert_eq!(
            form.fill(&creds()),
            vec![
                ("csrf".to_owned(), "t".to_owned()),
                ("decision".to_owned(), "allow".to_owned()),
            ]
        );
    }
}
