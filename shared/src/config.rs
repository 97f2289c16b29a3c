//! Settings shared by every function, with the defaults a deployment starts from.

use crate::domain::client::Lifetimes;

#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer identifier (OIDC Discovery §3): an https URL in production.
    pub issuer: String,
    /// Authorization codes live at most this long (RFC 6749 §4.1.2 advises 10 min at most).
    pub code_ttl: i64,
    pub id_token_ttl: i64,
    /// How long a sign-in lasts in the browser before the login page shows again.
    pub session_ttl: i64,
    /// How long a login or consent page may wait for the user.
    pub interaction_ttl: i64,
    /// Lifetimes given to clients registered without their own.
    pub default_lifetimes: Lifetimes,
}

impl Config {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            code_ttl: 60,
            id_token_ttl: 3600,
            session_ttl: 8 * 3600,
            interaction_ttl: 600,
            default_lifetimes: Lifetimes::default(),
        }
    }

    /// Cookies carry `Secure` whenever the issuer is served over https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
}
