//! The HTML pages a person sees: sign-in, two-step code, consent, device
//! code entry, connected apps, errors, and the playground. Plain HTML and
//! one inline stylesheet allowed by its hash; no script (but the
//! playground's own, by its hash), nothing loaded from elsewhere (but a
//! deployment's logo, when its URL is on another host).

use std::fmt::Write as _;

use crate::config::Look;
use crate::domain::secret::sha256;
use crate::service::Page;

/// The stylesheet; `--accent` is set from the deployment's look.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
.brand{display:flex;align-items:center;gap:.6rem;max-width:26rem;margin:2rem auto 0;padding:0 1rem;font-weight:700;font-size:1.1rem}\
.brand img{height:2rem;width:auto}\
main{max-width:26rem;margin:1rem auto 3rem;padding:1.5rem 2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 4px #0002}\
main.wide,.brand.wide{max-width:48rem}\
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.1rem;margin:1.4rem 0 .4rem}\
label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #6b7180;border-radius:.3rem;font:inherit}\
button{font:inherit;padding:.55rem 1.2rem;border-radius:.3rem;border:1px solid var(--accent);margin:1rem .5rem 0 0;cursor:pointer}\
.primary{background:var(--accent);color:#fff}.secondary{background:#fff;color:var(--accent)}\
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
.error{color:#a4161a;background:#fde8e8;padding:.5rem .8rem;border-radius:.3rem}\
.reference{color:#4a5160;font-size:.9rem}ul,ol{padding-left:1.2rem}\
pre,code{font:.85rem/1.4 ui-monospace,monospace;white-space:pre-wrap;overflow-wrap:anywhere}\
pre{background:#f4f5f7;padding:.6rem;border-radius:.3rem}.current{font-weight:700}\
@media (max-width:30rem){main{margin:.5rem;padding:1.25rem}.brand{margin-top:1rem}}";

/// Headers on every page: no framing, no referrer, no caching of forms.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

/// The playground's script, allowed on its page by its hash.
pub const PLAYGROUND_SCRIPT: &str = include_str!("playground.js");

/// CSP hash sources are standard base64, not base64url.
fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A deployment's look, made once per router: the stylesheet with its
/// accent colour, the CSP that allows exactly that stylesheet (and the
/// logo's host), the product name and the logo.
#[derive(Debug, Clone)]
pub struct Skin {
    style: String,
    csp: String,
    playground_csp: String,
    product: String,
    logo: Option<String>,
}

impl Skin {
    pub fn new(look: &Look) -> Self {
        let style = format!(":root{{--accent:{}}}{STYLE}", look.accent);
        let logo_host = look
            .logo_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| format!(" {}", u.origin().ascii_serialization()))
            .unwrap_or_default();
        let csp = format!(
            "default-src 'none'; style-src 'sha256-{}'; img-src 'self'{logo_host}; frame-ancestors 'none'; base-uri 'none'",
            base64_std(&sha256(style.as_bytes()))
        );
        // The playground's: the same, plus its script and calls to this server.
        let playground_csp = format!(
            "{csp}; script-src 'sha256-{}'; connect-src 'self'",
            base64_std(&sha256(PLAYGROUND_SCRIPT.as_bytes()))
        );
        Self {
            style,
            csp,
            playground_csp,
            product: look.product.clone(),
            logo: look.logo_url.clone(),
        }
    }

    /// The Content-Security-Policy of every page but the playground.
    pub fn csp(&self) -> &str {
        &self.csp
    }

    /// The playground page's.
    pub fn playground_csp(&self) -> &str {
        &self.playground_csp
    }

    /// A whole page around `body`: the product's name and logo above it.
    pub fn layout(&self, title: &str, body: &str, wide: bool) -> String {
        let class = if wide { " class=\"wide\"" } else { "" };
        let brand_class = if wide { "brand wide" } else { "brand" };
        let logo = match &self.logo {
            // The product name beside it says it all: the logo is decoration.
            Some(url) => format!("<img src=\"{}\" alt=\"\">", escape(url)),
            None => String::new(),
        };
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · {}</title><style>{}</style></head><body>\
<header class=\"{brand_class}\">{logo}<span>{}</span></header><main{class}>{body}</main></body></html>",
            escape(title),
            escape(&self.product),
            self.style,
            escape(&self.product),
        )
    }
}

impl Default for Skin {
    fn default() -> Self {
        Self::new(&Look::default())
    }
}

/// Escapes text for HTML content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A form's error message, announced when it appears, and named by the
/// inputs it is about ([`invalid`]).
fn alert(error: Option<&str>) -> String {
    error.map_or_else(String::new, |e| {
        format!(
            "<p class=\"error\" id=\"form-error\" role=\"alert\">{}</p>",
            escape(e)
        )
    })
}

/// The attributes of an input that [`alert`]'s message (if any) is about.
fn invalid(error: Option<&str>) -> &'static str {
    match error {
        Some(_) => " aria-invalid=\"true\" aria-describedby=\"form-error\"",
        None => "",
    }
}

fn hidden(interaction: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"interaction\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(interaction),
        escape(csrf)
    )
}

/// The status and HTML of a page. `request_id` is shown on error pages,
/// for the user to quote and the operator to find in the logs.
pub fn render(page: &Page, skin: &Skin, request_id: &str) -> (u16, String) {
    match page {
        Page::Login {
            interaction,
            csrf,
            client_name,
            username,
            error,
        } => {
            // Back after a failure: the password is what to type again.
            let (username_focus, password_focus) = match error {
                Some(_) => ("", " autofocus"),
                None => (" autofocus", ""),
            };
            let mut body = format!(
                "<h1>Sign in</h1><p>to continue to <strong>{}</strong></p>{}",
                escape(client_name),
                alert(error.as_deref())
            );
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{}\">{}\
<label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" required{}{}>\
<label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required{}{}>\
<button class=\"primary\" type=\"submit\">Sign in</button></form>",
                super::LOGIN,
                hidden(interaction, csrf),
                escape(username),
                invalid(error.as_deref()),
                username_focus,
                invalid(error.as_deref()),
                password_focus,
            );
            (200, skin.layout("Sign in", &body, false))
        }
        Page::Consent {
            interaction,
            csrf,
            client_name,
            scopes,
        } => {
            let mut body = format!(
                "<h1>Allow access?</h1><p><strong>{}</strong> would like to:</p><ul>",
                escape(client_name)
            );
            for s in scopes {
                let _ = write!(body, "<li>{}</li>", escape(s));
            }
            let _ = write!(
                body,
                "</ul><form method=\"post\" action=\"{}\">{}\
<button class=\"primary\" type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button class=\"secondary\" type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
                super::CONSENT,
                hidden(interaction, csrf)
            );
            (200, skin.layout("Allow access?", &body, false))
        }
        Page::Otp {
            interaction,
            csrf,
            client_name,
            error,
        } => {
            let mut body = format!(
                "<h1>Two-step verification</h1><p>Enter the 6-digit code from your authenticator app to continue to <strong>{}</strong>.</p>",
                escape(client_name)
            );
            body.push_str(&alert(error.as_deref()));
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{}\">{}\
<label for=\"otp\">Code</label><input type=\"text\" id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"8\" required autofocus{}>\
<button class=\"primary\" type=\"submit\">Verify</button></form>",
                super::LOGIN,
                hidden(interaction, csrf),
                invalid(error.as_deref()),
            );
            (200, skin.layout("Two-step verification", &body, false))
        }
        Page::DeviceEntry {
            interaction,
            csrf,
            user_code,
            error,
        } => {
            let mut body = String::from(
                "<h1>Connect a device</h1><p>Enter the code shown on your device.</p>",
            );
            body.push_str(&alert(error.as_deref()));
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{}\">{}\
<label for=\"user_code\">Code</label><input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{}\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" maxlength=\"16\" placeholder=\"XXXX-XXXX\" required autofocus{}>\
<button class=\"primary\" type=\"submit\">Continue</button></form>",
                super::DEVICE,
                hidden(interaction, csrf),
                escape(user_code),
                invalid(error.as_deref()),
            );
            (200, skin.layout("Connect a device", &body, false))
        }
        Page::DeviceDone {
            client_name,
            approved,
        } => {
            let body = if *approved {
                format!(
                    "<h1>Device connected</h1><p>You allowed <strong>{}</strong>. Return to your device: it continues on its own. You can close this page.</p>",
                    escape(client_name)
                )
            } else {
                format!(
                    "<h1>Request denied</h1><p>You denied <strong>{}</strong> access. Nothing was shared; your device will say it was not allowed. You can close this page.</p>",
                    escape(client_name)
                )
            };
            let title = if *approved {
                "Device connected"
            } else {
                "Request denied"
            };
            (200, skin.layout(title, &body, false))
        }
        Page::Apps {
            interaction,
            csrf,
            username,
            apps,
        } => {
            let mut body = format!(
                "<h1>Connected apps</h1><p>Signed in as <strong>{}</strong>. These apps can use your account.</p>",
                escape(username)
            );
            if apps.is_empty() {
                body.push_str("<p>No app has access to your account.</p>");
            }
            for app in apps {
                let _ = write!(body, "<section><h2>{}</h2><ul>", escape(&app.name));
                for s in &app.scopes {
                    let _ = write!(body, "<li>{}</li>", escape(s));
                }
                let _ = write!(
                    body,
                    "</ul><p>Last used {}. Access ends {} at the latest.</p>\
<form method=\"post\" action=\"{}\">{}<input type=\"hidden\" name=\"client_id\" value=\"{}\">\
<button class=\"secondary\" type=\"submit\">Disconnect {}</button></form></section>",
                    utc_time(app.last_used_at),
                    utc_time(app.expires_at),
                    super::ACCOUNT_APPS_REVOKE,
                    hidden(interaction, csrf),
                    escape(&app.client_id),
                    escape(&app.name)
                );
            }
            (200, skin.layout("Connected apps", &body, false))
        }
        Page::Error { status, message } => {
            let body = format!(
                "<h1>Something went wrong</h1><p class=\"error\" role=\"alert\">{}</p>\
<p class=\"reference\">If you ask for help, quote this reference: <code>{}</code></p>",
                escape(message),
                escape(request_id)
            );
            (*status, skin.layout("Something went wrong", &body, false))
        }
    }
}

/// The playground: a client of this server in the page itself (its script,
/// `playground.js`), for watching tokens live, rotate and die.
pub fn playground(skin: &Skin, issuer: &str, client_id: &str) -> String {
    let body = format!(
        "<h1>Playground</h1>\
<p>This page is an app of its own, the public client <code>{client}</code>. It signs in with the \
authorization code flow and PKCE, then shows what it gets: the access token and the ID token \
decoded, and the refresh tokens as they rotate. Its tokens are its own; no other app's are shown.</p>\
<div id=\"playground\" data-issuer=\"{issuer}\" data-client=\"{client}\">\
<button id=\"start\" class=\"primary\" type=\"button\">Sign in with the playground client</button>\
<section id=\"tokens\" hidden aria-labelledby=\"tokens-title\"><h2 id=\"tokens-title\">Access token</h2>\
<div id=\"access-token\"></div><h2>ID token</h2><div id=\"id-token\"></div>\
<h2>Refresh tokens</h2><p>Each refresh returns a new refresh token and spends the one presented.</p>\
<ol id=\"refresh-chain\"></ol>\
<button id=\"refresh\" class=\"primary\" type=\"button\">Refresh</button>\
<button id=\"introspect\" class=\"secondary\" type=\"button\">Introspect</button>\
<button id=\"replay\" class=\"secondary\" type=\"button\">Replay the previous refresh token</button>\
<button id=\"revoke\" class=\"secondary\" type=\"button\">Revoke</button></section>\
<h2>What happened</h2><ol id=\"log\" aria-live=\"polite\"></ol></div>\
<script>{PLAYGROUND_SCRIPT}</script>",
        client = escape(client_id),
        issuer = escape(issuer),
    );
    skin.layout("Playground", &body, true)
}

/// `YYYY-MM-DD HH:MM UTC` for epoch seconds (the proleptic Gregorian
/// calendar, from days since 1970-01-01).
pub fn utc_time(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Civil date from a day count (H. Hinnant's algorithm, in eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times_read_as_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_time(1_800_000_000), "2027-01-15 08:00 UTC");
        assert_eq!(utc_time(1_700_000_000 + 59), "2023-11-14 22:14 UTC");
    }

    #[test]
    fn new_pages_escape_and_name_their_inputs() {
        let (_, html) = render_default(&Page::DeviceEntry {
            interaction: "i".into(),
            csrf: "c".into(),
            user_code: "\"><b>".into(),
            error: None,
        });
        assert!(html.contains("name=\"user_code\""));
        assert!(!html.contains("<b>"));
        let (_, html) = render_default(&Page::Otp {
            interaction: "i".into(),
            csrf: "c".into(),
            client_name: "<i>App</i>".into(),
            error: Some("x".into()),
        });
        assert!(html.contains("name=\"otp\""));
        assert!(!html.contains("<i>App"));
        assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"form-error\""));
        let (_, html) = render_default(&Page::Login {
            interaction: "i".into(),
            csrf: "c".into(),
            client_name: "App".into(),
            username: "al\"ice".into(),
            error: Some("wrong".into()),
        });
        // What was typed comes back (escaped); the password field has focus.
        assert!(html.contains("value=\"al&quot;ice\""), "{html}");
        assert!(html.contains("id=\"form-error\" role=\"alert\">wrong</p>"));
        assert!(html.contains("current-password\" required aria-invalid=\"true\" aria-describedby=\"form-error\" autofocus>"));
    }

    use super::*;

    fn render_default(page: &Page) -> (u16, String) {
        render(page, &Skin::default(), "req-1")
    }

    #[test]
    fn text_is_escaped() {
        let (_, html) = render_default(&Page::Consent {
            interaction: "i".into(),
            csrf: "c\"><script>".into(),
            client_name: "<b>Evil</b>".into(),
            scopes: vec!["a & b".into()],
        });
        assert!(!html.contains("<b>Evil"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("name=\"decision\" value=\"allow\""));
    }

    #[test]
    fn the_csp_allows_exactly_our_style_and_the_logos_host() {
        let skin = Skin::default();
        let (_, html) = render_default(&Page::Error {
            status: 400,
            message: "m".into(),
        });
        let style = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
        let hash = base64_std(&sha256(style.as_bytes()));
        assert!(skin.csp().contains(&format!("style-src 'sha256-{hash}'")));
        assert!(skin.csp().contains("frame-ancestors 'none'"));
        assert!(skin.csp().contains("img-src 'self';"));
        assert!(!skin.csp().contains("script-src"));
        assert!(html.contains("<code>req-1</code>"), "{html}");

        let branded = Skin::new(&Look {
            product: "Acme <ID>".into(),
            logo_url: Some("https://cdn.acme.example/a/logo.svg".into()),
            accent: "#0a7f3f".into(),
        });
        let (_, html) = render(
            &Page::Error {
                status: 400,
                message: "m".into(),
            },
            &branded,
            "r",
        );
        assert!(html.contains(":root{--accent:#0a7f3f}"));
        assert!(html.contains("<img src=\"https://cdn.acme.example/a/logo.svg\" alt=\"\">"));
        assert!(html.contains("<span>Acme &lt;ID&gt;</span>"));
        assert!(
            branded
                .csp()
                .contains("img-src 'self' https://cdn.acme.example;")
        );
        let script = base64_std(&sha256(PLAYGROUND_SCRIPT.as_bytes()));
        assert!(
            branded
                .playground_csp()
                .ends_with(&format!("script-src 'sha256-{script}'; connect-src 'self'"))
        );
    }
}
