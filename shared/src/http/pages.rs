//! The HTML pages a person sees: login, consent and errors. Plain HTML and
//! one inline stylesheet allowed by its hash; no script, nothing loaded from
//! elsewhere.

use std::fmt::Write as _;
use std::sync::LazyLock;

use crate::domain::secret::sha256;
use crate::service::Page;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
main{max-width:26rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:.5rem;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #99a;border-radius:.3rem;font:inherit}\
button{font:inherit;padding:.55rem 1.2rem;border-radius:.3rem;border:1px solid #2747c8;margin:1rem .5rem 0 0;cursor:pointer}\
.primary{background:#2747c8;color:#fff}.secondary{background:#fff;color:#2747c8}\
.error{color:#a4161a;background:#fde8e8;padding:.5rem .8rem;border-radius:.3rem}ul{padding-left:1.2rem}";

/// Headers on every page: no framing, no referrer, no caching of forms.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
];

static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; style-src 'sha256-{}'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        base64_std(&sha256(STYLE.as_bytes()))
    )
});

/// CSP hash sources are standard base64, not base64url.
fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn csp() -> String {
    CSP.clone()
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

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

fn hidden(interaction: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"interaction\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(interaction),
        escape(csrf)
    )
}

/// The status and HTML of a page.
pub fn render(page: &Page) -> (u16, String) {
    match page {
        Page::Login {
            interaction,
            csrf,
            client_name,
            error,
        } => {
            let mut body = format!(
                "<h1>Sign in</h1><p>to continue to <strong>{}</strong></p>",
                escape(client_name)
            );
            if let Some(e) = error {
                let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", escape(e));
            }
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{}\">{}\
<label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button class=\"primary\" type=\"submit\">Sign in</button></form>",
                super::LOGIN,
                hidden(interaction, csrf)
            );
            (200, layout("Sign in", &body))
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
            (200, layout("Allow access?", &body))
        }
        Page::Error { status, message } => {
            let body = format!(
                "<h1>Something went wrong</h1><p class=\"error\" role=\"alert\">{}</p>",
                escape(message)
            );
            (*status, layout("Something went wrong", &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let (_, html) = render(&Page::Consent {
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
    fn csp_allows_exactly_our_style() {
        assert!(csp().contains("frame-ancestors 'none'"));
        assert!(csp().contains("style-src 'sha256-"));
    }
}
