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
            if let Some(e) = error {
                let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", escape(e));
            }
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{}\">{}\
<label for=\"otp\">Code</label><input type=\"text\" id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"8\" required autofocus>\
<button class=\"primary\" type=\"submit\">Verify</button></form>",
                super::LOGIN,
                hidden(interaction, csrf)
            );
            (200, layout("Two-step verification", &body))
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
            if let Some(e) = error {
                let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", escape(e));
            }
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{}\">{}\
<label for=\"user_code\">Code</label><input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{}\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" maxlength=\"16\" placeholder=\"XXXX-XXXX\" required autofocus>\
<button class=\"primary\" type=\"submit\">Continue</button></form>",
                super::DEVICE,
                hidden(interaction, csrf),
                escape(user_code)
            );
            (200, layout("Connect a device", &body))
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
            (200, layout(title, &body))
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
            (200, layout("Connected apps", &body))
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
        let (_, html) = render(&Page::DeviceEntry {
            interaction: "i".into(),
            csrf: "c".into(),
            user_code: "\"><b>".into(),
            error: None,
        });
        assert!(html.contains("name=\"user_code\""));
        assert!(!html.contains("<b>"));
        let (_, html) = render(&Page::Otp {
            interaction: "i".into(),
            csrf: "c".into(),
            client_name: "<i>App</i>".into(),
            error: Some("x".into()),
        });
        assert!(html.contains("name=\"otp\""));
        assert!(!html.contains("<i>App"));
    }

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
