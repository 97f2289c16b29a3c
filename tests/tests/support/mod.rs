//! What the device flow, two-step sign-in and connected apps tests share:
//! seeding the server's store as an administrator would (a TOTP enrolment,
//! a client's MFA requirement), TOTP codes as an authenticator app makes
//! them, and a browser walk that answers the TOTP form.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokenfn_core::config::Config;
use tokenfn_core::domain::totp;
use tokenfn_core::ports::{Store, SystemClock};
use tokenfn_core::seal::{KmsBox, LocalBox, SecretBox};
use tokenfn_core::service::Services;
use tokenfn_core::sign::NoKey;
use tokenfn_core::store::{DynamoStore, SqliteStore};

use crate::common::*;

/// The admin service on the store of `env`'s server: its SQLite file, or
/// its DynamoDB table on the aws backend. Signs nothing.
pub async fn admin(env: &TestEnv) -> Services {
    // The server seals TOTP secrets with its KMS key on the aws backend,
    // else with the key file in its data folder.
    let (store, sealer): (Arc<dyn Store>, Arc<dyn SecretBox>) = if is_aws() {
        let resources = aws_resources(Some(env.data_dir()));
        let sdk = tokenfn_core::aws::sdk_config().await;
        (
            Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                resources.table,
            )),
            Arc::new(KmsBox::new(
                aws_sdk_kms::Client::new(&sdk),
                resources.totp_key_id,
            )),
        )
    } else {
        (
            Arc::new(
                SqliteStore::open(&env.data_dir().join("tokenfn.db"))
                    .expect("open the server's store"),
            ),
            Arc::new(LocalBox::load_or_create(env.data_dir()).expect("the server's TOTP key")),
        )
    };
    Services::new(
        store,
        Arc::new(NoKey),
        Arc::new(SystemClock),
        Config::new(env.issuer()),
    )
    .with_secret_box(sealer)
}

/// Enrols `username` in TOTP through the admin service and returns the
/// authenticator app it would configure.
pub async fn enroll(env: &TestEnv, username: &str) -> Authenticator {
    let uri = admin(env)
        .await
        .enroll_mfa(username)
        .await
        .expect("enroll_mfa");
    let secret = Url::parse(&uri)
        .expect("otpauth URI")
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .expect("secret in the otpauth URI");
    Authenticator {
        secret,
        last_step: None,
    }
}

pub async fn require_mfa(env: &TestEnv, client_id: &str) {
    admin(env)
        .await
        .set_require_mfa(client_id, true)
        .await
        .expect("set_require_mfa");
}

/// An authenticator app. Each code works once (RFC 6238 §5.2) and the
/// server takes one step either side of now, so successive codes come from
/// the next unused step within reach, waiting for time to move only when
/// none is left.
pub struct Authenticator {
    pub secret: String,
    last_step: Option<i64>,
}

impl Authenticator {
    pub fn code_for_step(&self, step: i64) -> String {
        totp::code_at(&self.secret, step * 30).expect("TOTP code")
    }

    /// A code the server has not seen.
    pub async fn next_code(&mut self) -> String {
        loop {
            let current = now_secs() / 30;
            // Not the step about to pass: the request may land after it.
            let candidate = (current..=current + 1).find(|s| self.last_step.is_none_or(|l| *s > l));
            if let Some(step) = candidate {
                self.last_step = Some(step);
                return self.code_for_step(step);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The code used last (to show that a replay is refused).
    pub fn last_code(&self) -> String {
        self.code_for_step(self.last_step.expect("a code was used"))
    }
}

/// The TOTP form of a page: the one posting to /login with an `otp` input.
pub fn otp_form(page: &Page) -> Option<Form> {
    page.forms()
        .into_iter()
        .find(|f| f.action.ends_with("/login") && f.has_input("otp"))
}

/// Walks from `url` through the login form, the TOTP form (with
/// `authenticator`) and the consent form (allowing), until a redirect to the
/// client or a page that is none of these.
pub async fn walk(
    browser: &Browser,
    url: &str,
    user: (&str, &str),
    authenticator: Option<&mut Authenticator>,
) -> Step {
    walk_seeing(browser, url, user, authenticator, &mut |_| {}).await
}

/// [`walk`], showing `see` every page on the way.
pub async fn walk_seeing(
    browser: &Browser,
    url: &str,
    user: (&str, &str),
    mut authenticator: Option<&mut Authenticator>,
    see: &mut dyn FnMut(&Page),
) -> Step {
    let mut step = browser.open(url, REDIRECT_URI).await;
    for _ in 0..5 {
        let page = match step {
            Step::Page(page) => page,
            callback => return callback,
        };
        see(&page);
        step = if let Some(form) = otp_form(&page) {
            let Some(auth) = authenticator.as_deref_mut() else {
                return Step::Page(page);
            };
            let code = auth.next_code().await;
            browser
                .submit(&page, &form, &[("otp", &code)], REDIRECT_URI)
                .await
        } else if page.login_form().is_some_and(|f| f.has_input("username")) {
            browser.login(&page, user, REDIRECT_URI).await
        } else if page.consent_form().is_some() {
            browser.decide(&page, "allow", REDIRECT_URI).await
        } else {
            return Step::Page(page);
        };
    }
    step
}

pub use url::Url;
