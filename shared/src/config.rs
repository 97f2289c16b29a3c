//! Settings shared by every function, with the defaults a deployment starts from.

use crate::domain::client::Lifetimes;

#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer identifier (OIDC Discovery §3): an https URL in production.
    pub issuer: String,
    /// Authorization codes live at most this long (RFC 6749 §4.1.2 advises 10 min at most).
    pub code_ttl: i64,
    /// How long a device code and its user code work (RFC 8628 §3.2 `expires_in`).
    pub device_code_ttl: i64,
    /// The minimum seconds between polls of a device code (RFC 8628 §3.2 `interval`).
    pub device_interval: i64,
    pub id_token_ttl: i64,
    /// How long a sign-in lasts in the browser before the login page shows again.
    pub session_ttl: i64,
    /// How long a login or consent page may wait for the user.
    pub interaction_ttl: i64,
    /// Lifetimes given to clients registered without their own.
    pub default_lifetimes: Lifetimes,
    /// Active grants one user may hold for one client; a new grant beyond
    /// it revokes the oldest.
    pub grant_cap: usize,
    /// How the pages present the service.
    pub look: Look,
    /// Whether `/playground` is served (on in `tokenfn serve`, off in the
    /// functions unless `TOKENFN_PLAYGROUND=on`).
    pub playground: bool,
}

/// A deployment's name, logo and accent colour on every page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    /// `TOKENFN_PRODUCT_NAME`: 1 to 60 printable characters.
    pub product: String,
    /// `TOKENFN_LOGO_URL`: an https URL, or a path on this server.
    pub logo_url: Option<String>,
    /// `TOKENFN_ACCENT_COLOR`: `#rgb` or `#rrggbb`.
    pub accent: String,
}

impl Default for Look {
    fn default() -> Self {
        Self {
            product: "tokenfn".into(),
            logo_url: None,
            accent: "#2747c8".into(),
        }
    }
}

impl Look {
    /// The look read through `var`; unset means the default.
    pub fn with_settings(var: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let mut look = Look::default();
        if let Some(name) = var("TOKENFN_PRODUCT_NAME") {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
                return Err(SettingError {
                    name: "TOKENFN_PRODUCT_NAME",
                    problem: "must be 1 to 60 printable characters".into(),
                });
            }
            look.product = name.to_owned();
        }
        if let Some(url) = var("TOKENFN_LOGO_URL").filter(|u| !u.trim().is_empty()) {
            let url = url.trim();
            let path = url.starts_with('/') && !url.starts_with("//");
            let https = url::Url::parse(url).is_ok_and(|u| u.scheme() == "https");
            if !(path || https) || url.contains(['"', '\'', '<', '>', ' ']) {
                return Err(SettingError {
                    name: "TOKENFN_LOGO_URL",
                    problem: format!(
                        "must be an https URL or a path such as /logo.svg, not {url:?}"
                    ),
                });
            }
            look.logo_url = Some(url.to_owned());
        }
        if let Some(color) = var("TOKENFN_ACCENT_COLOR") {
            let color = color.trim();
            let hex = color.strip_prefix('#').unwrap_or("");
            if !matches!(hex.len(), 3 | 6) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(SettingError {
                    name: "TOKENFN_ACCENT_COLOR",
                    problem: format!("must be a colour such as #2747c8, not {color:?}"),
                });
            }
            look.accent = color.to_ascii_lowercase();
        }
        Ok(look)
    }
}

impl Config {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            code_ttl: 60,
            device_code_ttl: 600,
            device_interval: 5,
            id_token_ttl: 3600,
            session_ttl: 8 * 3600,
            interaction_ttl: 600,
            default_lifetimes: Lifetimes::default(),
            grant_cap: 200,
            look: Look::default(),
            playground: false,
        }
    }

    /// Cookies carry `Secure` whenever the issuer is served over https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The issuer with the lifetimes and limits read through `var` (the
    /// environment): `TOKENFN_ACCESS_TOKEN_TTL`, `TOKENFN_REFRESH_TTL`,
    /// `TOKENFN_REFRESH_IDLE_TTL`, `TOKENFN_REUSE_LEEWAY`, `TOKENFN_CODE_TTL`,
    /// `TOKENFN_ID_TOKEN_TTL`, `TOKENFN_SESSION_TTL`, `TOKENFN_DEVICE_CODE_TTL`,
    /// `TOKENFN_DEVICE_INTERVAL` (seconds), `TOKENFN_GRANT_CAP`, the look
    /// ([`Look::with_settings`]) and `TOKENFN_PLAYGROUND` (`on`/`off`).
    /// Unset means the default.
    pub fn with_settings(
        issuer: impl Into<String>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingError> {
        let seconds = |name: &'static str, default: i64| -> Result<i64, SettingError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or(SettingError {
                        name,
                        problem: format!("must be a whole number of seconds, not {v:?}"),
                    }),
            }
        };
        let mut config = Config::new(issuer);
        let d = config.default_lifetimes;
        config.default_lifetimes = Lifetimes {
            access_token: seconds("TOKENFN_ACCESS_TOKEN_TTL", d.access_token)?,
            refresh_absolute: seconds("TOKENFN_REFRESH_TTL", d.refresh_absolute)?,
            refresh_idle: seconds("TOKENFN_REFRESH_IDLE_TTL", d.refresh_idle)?,
            reuse_leeway: seconds("TOKENFN_REUSE_LEEWAY", d.reuse_leeway)?,
        };
        config.code_ttl = seconds("TOKENFN_CODE_TTL", config.code_ttl)?;
        config.id_token_ttl = seconds("TOKENFN_ID_TOKEN_TTL", config.id_token_ttl)?;
        config.session_ttl = seconds("TOKENFN_SESSION_TTL", config.session_ttl)?;
        config.device_code_ttl = seconds("TOKENFN_DEVICE_CODE_TTL", config.device_code_ttl)?;
        config.device_interval = seconds("TOKENFN_DEVICE_INTERVAL", config.device_interval)?;
        config.grant_cap = match var("TOKENFN_GRANT_CAP") {
            None => config.grant_cap,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(SettingError {
                    name: "TOKENFN_GRANT_CAP",
                    problem: format!("must be a whole number of grants, at least 1, not {v:?}"),
                })?,
        };
        config.look = Look::with_settings(&var)?;
        config.playground = match var("TOKENFN_PLAYGROUND").as_deref().map(str::trim) {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => {
                return Err(SettingError {
                    name: "TOKENFN_PLAYGROUND",
                    problem: format!("must be on or off, not {other:?}"),
                });
            }
        };
        Ok(config)
    }
}

/// A setting that is missing or malformed; stops a function at init.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {problem}")]
pub struct SettingError {
    pub name: &'static str,
    pub problem: String,
}

/// What a Lambda function reads from its environment.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub config: Config,
    /// `TOKENFN_TABLE`: the DynamoDB table.
    pub table: String,
    /// `TOKENFN_KMS_KEY_IDS`: comma list; the first signs, all are published.
    pub kms_key_ids: Vec<String>,
    /// `TOKENFN_SIGNING_ALG`: the JOSE `alg` of the first key (ES256 or
    /// RS256), optional. Set, it is what the discovery metadata says without
    /// waiting for KMS, and a first key of another kind cannot sign.
    pub signing_alg: Option<&'static str>,
    /// `TOKENFN_TOTP_KEY_ID`: the symmetric KMS key that seals TOTP secrets
    /// (the authorize function's; optional elsewhere).
    pub totp_key_id: Option<String>,
}

/// The values `TOKENFN_SIGNING_ALG` may take: what KMS keys sign with here.
const SIGNING_ALGS: [&str; 2] = ["ES256", "RS256"];

impl AwsSettings {
    /// Reads the settings through `var` (the process environment in
    /// production, a map in tests). `needs_keys` is false for functions
    /// that neither sign nor publish keys.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        needs_keys: bool,
    ) -> Result<Self, SettingError> {
        let required = |name: &'static str| -> Result<String, SettingError> {
            match var(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(SettingError {
                    name,
                    problem: "is required and not set".into(),
                }),
            }
        };
        let issuer = required("TOKENFN_ISSUER")?;
        match url::Url::parse(&issuer) {
            Ok(u)
                if matches!(u.scheme(), "https" | "http")
                    && u.query().is_none()
                    && u.fragment().is_none() => {}
            _ => {
                return Err(SettingError {
                    name: "TOKENFN_ISSUER",
                    problem: format!(
                        "must be an https URL without query or fragment, not {issuer:?}"
                    ),
                });
            }
        }
        let table = required("TOKENFN_TABLE")?;
        let kms_key_ids: Vec<String> = var("TOKENFN_KMS_KEY_IDS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if needs_keys && kms_key_ids.is_empty() {
            return Err(SettingError {
                name: "TOKENFN_KMS_KEY_IDS",
                problem: "is required: a comma-separated list of KMS key ids or ARNs".into(),
            });
        }
        let signing_alg = match var("TOKENFN_SIGNING_ALG").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(alg) => Some(SIGNING_ALGS.into_iter().find(|a| *a == alg).ok_or_else(|| {
                SettingError {
                    name: "TOKENFN_SIGNING_ALG",
                    problem: format!(
                        "must be ES256 (an ECC_NIST_P256 key) or RS256 (an RSA key), not {alg:?}"
                    ),
                }
            })?),
        };
        let config = Config::with_settings(issuer, &var)?;
        let totp_key_id = var("TOKENFN_TOTP_KEY_ID")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        Ok(Self {
            config,
            table,
            kms_key_ids,
            signing_alg,
            totp_key_id,
        })
    }

    pub fn from_env(needs_keys: bool) -> Result<Self, SettingError> {
        Self::from_vars(|name| std::env::var(name).ok(), needs_keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_every_setting() {
        let s = AwsSettings::from_vars(
            vars(&[
                ("TOKENFN_ISSUER", "https://id.example/"),
                ("TOKENFN_TABLE", "t"),
                ("TOKENFN_KMS_KEY_IDS", "k1, k2"),
                ("TOKENFN_SIGNING_ALG", "RS256"),
                ("TOKENFN_ACCESS_TOKEN_TTL", "600"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(s.config.issuer, "https://id.example");
        assert_eq!(s.kms_key_ids, vec!["k1", "k2"]);
        assert_eq!(s.signing_alg, Some("RS256"));
        assert_eq!(s.config.default_lifetimes.access_token, 600);
    }

    #[test]
    fn missing_or_malformed_settings_are_named() {
        let err = AwsSettings::from_vars(vars(&[("TOKENFN_TABLE", "t")]), false).unwrap_err();
        assert_eq!(err.name, "TOKENFN_ISSUER");
        let err = AwsSettings::from_vars(
            vars(&[("TOKENFN_ISSUER", "https://x"), ("TOKENFN_TABLE", "t")]),
            true,
        )
        .unwrap_err();
        assert_eq!(err.name, "TOKENFN_KMS_KEY_IDS");
        let err = AwsSettings::from_vars(
            vars(&[
                ("TOKENFN_ISSUER", "https://x"),
                ("TOKENFN_TABLE", "t"),
                ("TOKENFN_REFRESH_TTL", "ten days"),
            ]),
            false,
        )
        .unwrap_err();
        assert_eq!(err.name, "TOKENFN_REFRESH_TTL");
        for alg in ["es256", "HS256", "none"] {
            let err = AwsSettings::from_vars(
                vars(&[
                    ("TOKENFN_ISSUER", "https://x"),
                    ("TOKENFN_TABLE", "t"),
                    ("TOKENFN_SIGNING_ALG", alg),
                ]),
                false,
            )
            .unwrap_err();
            assert_eq!(err.name, "TOKENFN_SIGNING_ALG");
            assert!(err.problem.contains(alg), "{}", err.problem);
        }
        assert!(err.to_string().contains("ten days"));
    }

    #[test]
    fn the_look_and_the_playground_are_settings() {
        let config = Config::with_settings(
            "https://id.example",
            vars(&[
                ("TOKENFN_PRODUCT_NAME", " Acme ID "),
                ("TOKENFN_LOGO_URL", "https://cdn.acme.example/logo.svg"),
                ("TOKENFN_ACCENT_COLOR", "#0A7F3F"),
                ("TOKENFN_PLAYGROUND", "on"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.look,
            Look {
                product: "Acme ID".into(),
                logo_url: Some("https://cdn.acme.example/logo.svg".into()),
                accent: "#0a7f3f".into(),
            }
        );
        assert!(config.playground);
        let default = Config::with_settings("https://id.example", vars(&[])).unwrap();
        assert_eq!(default.look, Look::default());
        assert!(!default.playground);

        for (name, value) in [
            ("TOKENFN_ACCENT_COLOR", "red; background:url(x)"),
            ("TOKENFN_ACCENT_COLOR", "#12345"),
            ("TOKENFN_LOGO_URL", "http://plain.example/logo.png"),
            ("TOKENFN_LOGO_URL", "//elsewhere.example/logo.png"),
            ("TOKENFN_LOGO_URL", "/logo.svg\" onerror=\"x"),
            ("TOKENFN_PRODUCT_NAME", "  "),
            ("TOKENFN_PLAYGROUND", "yes"),
        ] {
            let err =
                Config::with_settings("https://id.example", vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
    }
}
