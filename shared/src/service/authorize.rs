//! The browser side: the authorization endpoint (RFC 6749 §4.1.1, OIDC Core
//! §3.1.2), the login form and the consent form. Every reply is either a
//! page, a redirect to a trusted redirect URI, or an error page when the
//! redirect URI cannot be trusted.

use std::net::IpAddr;

use url::Url;

use super::{Services, no_randomness};
use crate::domain::grant::{MAX_OTP_FAILURES, is_mfa};
use crate::domain::request::Params;
use crate::domain::secret::{self, ct_eq, hash};
use crate::domain::throttle;
use crate::domain::{
    AuthCode, AuthorizationRequest, Client, Consent, ErrorCode, Flow, Interaction, OAuthError,
    Purpose, Session, User, totp,
};
use crate::ports::StoreError;

pub const BIND_COOKIE: &str = "tfn_bind";
pub const SESSION_COOKIE: &str = "tfn_session";

/// The cookies the browser sent that matter here.
#[derive(Debug, Default, Clone)]
pub struct Cookies {
    /// Binds pending interactions to the browser that started them.
    pub bind: Option<String>,
    pub session: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    pub name: &'static str,
    pub value: String,
    pub max_age: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Login {
        interaction: String,
        csrf: String,
        client_name: String,
        /// What the user typed, shown again after a failed attempt.
        username: String,
        error: Option<String>,
    },
    Consent {
        interaction: String,
        csrf: String,
        client_name: String,
        scopes: Vec<String>,
    },
    /// The second step of a sign-in: the TOTP code (form field `otp`).
    Otp {
        interaction: String,
        csrf: String,
        client_name: String,
        error: Option<String>,
    },
    /// The device verification page (RFC 8628 §3.3): the user code form.
    DeviceEntry {
        interaction: String,
        csrf: String,
        user_code: String,
        error: Option<String>,
    },
    /// The end of a device verification: back to the device.
    DeviceDone {
        client_name: String,
        approved: bool,
    },
    /// The apps a signed-in user has granted access to.
    Apps {
        interaction: String,
        csrf: String,
        username: String,
        apps: Vec<ConnectedApp>,
    },
    Error {
        status: u16,
        message: String,
    },
}

/// One app on the connected apps page: its grants, taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedApp {
    pub client_id: String,
    pub name: String,
    /// The scopes in plain words, as on the consent page.
    pub scopes: Vec<String>,
    pub last_used_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Page(Page),
    Redirect(String),
}

/// What the browser gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserReply {
    pub reply: Reply,
    pub set_cookies: Vec<SetCookie>,
    /// Set when the attempt was throttled: the page goes out as a 429
    /// with `Retry-After` (seconds).
    pub retry_after: Option<i64>,
}

impl BrowserReply {
    pub(super) fn page(page: Page) -> Self {
        Self {
            reply: Reply::Page(page),
            set_cookies: Vec::new(),
            retry_after: None,
        }
    }

    pub(super) fn error(status: u16, message: impl Into<String>) -> Self {
        Self::page(Page::Error {
            status,
            message: message.into(),
        })
    }

    pub(super) fn redirect(location: String) -> Self {
        Self {
            reply: Reply::Redirect(location),
            set_cookies: Vec::new(),
            retry_after: None,
        }
    }

    /// `page` (a form again, with the wait in its message) for an attempt
    /// that came too soon after too many failures.
    pub(super) fn throttled(page: Page, wait: i64) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::page(page)
        }
    }

    pub(super) fn busy() -> Self {
        Self::error(503, "The service is busy. Please try again in a moment.")
    }

    pub(super) fn unavailable(e: StoreError) -> Self {
        tracing::error!(error = %e, "dependency failed");
        Self::busy()
    }
}

pub const GENERIC_LOGIN_ERROR: &str = "The username or password is incorrect.";

/// The message of a throttled form: the same for every account.
pub fn throttled_message(wait: i64) -> String {
    format!(
        "Too many failed attempts. Wait {}, then try again.",
        super::throttle::seconds(wait)
    )
}
/// The one answer to a wrong, malformed or replayed TOTP code.
pub const GENERIC_OTP_ERROR: &str =
    "That code is not right. Enter the current code from your authenticator app.";
pub const TOO_MANY_OTP_FAILURES: &str =
    "Too many wrong codes. Go back to the app and sign in again.";
/// A client requires a second factor the user has not enrolled: there is
/// nothing the user can do here, so they are told whom to ask rather than
/// sent round in a loop.
pub const MFA_NOT_ENROLLED: &str = "This app requires two-step verification, and your account does not have it set up. Ask your administrator to enrol you in two-step verification, then try again.";

/// `amr` of a sign-in with a password (RFC 8176 §2).
pub(super) fn amr_password() -> Vec<String> {
    vec!["pwd".to_owned()]
}

/// `amr` of a sign-in with a password and a TOTP code (RFC 8176 §2).
pub(super) fn amr_password_otp() -> Vec<String> {
    vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()]
}

impl Services {
    /// GET /authorize.
    pub async fn authorize(&self, query: &[(String, String)], cookies: &Cookies) -> BrowserReply {
        let now = self.clock.now();
        let params = Params(query);
        // RFC 6749 §4.1.2.1: until client and redirect URI are known good,
        // errors are shown to the user and never redirected.
        let client_id = match params.get("client_id") {
            Ok(Some(id)) => id,
            Ok(None) => {
                return BrowserReply::error(
                    400,
                    "The request does not say which app is asking (client_id is missing).",
                );
            }
            Err(_) => return BrowserReply::error(400, "The request names its app more than once."),
        };
        let client = match self.store.get_client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return BrowserReply::error(400, "The app that sent you here is not registered.");
            }
            Err(e) => return BrowserReply::unavailable(e),
        };
        let redirect_uri = match params.get("redirect_uri") {
            Ok(Some(uri)) if client.has_redirect_uri(uri) => uri.to_owned(),
            Ok(Some(_)) => {
                return BrowserReply::error(
                    400,
                    "The app asked to return you to an address it has not registered.",
                );
            }
            Ok(None) => {
                return BrowserReply::error(
                    400,
                    "The request does not say where to return you (redirect_uri is missing).",
                );
            }
            Err(_) => {
                return BrowserReply::error(
                    400,
                    "The request names its return address more than once.",
                );
            }
        };
        let state = params.get("state").ok().flatten().map(str::to_owned);
        let req = match AuthorizationRequest::validate(&params, &client, &redirect_uri) {
            Ok(r) => r,
            Err(e) => return self.redirect_error(&redirect_uri, state.as_deref(), &e),
        };

        let session = match &cookies.session {
            Some(c) => match self.store.get_session(&hash(c), now).await {
                Ok(s) => s,
                Err(e) => return BrowserReply::unavailable(e),
            },
            None => None,
        };
        // OIDC Core §3.1.2.1: prompt=login and max_age force a fresh sign-in.
        // max_age=0 means a fresh sign-in every time, like prompt=login.
        let session = session.filter(|s| {
            !req.prompt.login
                && req
                    .max_age
                    .is_none_or(|max| max > 0 && now - s.auth_time <= max)
        });
        let Some(session) = session else {
            if req.prompt.none {
                return self.redirect_error(
                    &redirect_uri,
                    state.as_deref(),
                    &OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in"),
                );
            }
            return self
                .start_interaction(&client, req, None, cookies, now)
                .await;
        };

        // The client requires a second factor this session lacks: step up.
        if client.require_mfa && !is_mfa(&session.amr) {
            if req.prompt.none {
                return self.redirect_error(
                    &redirect_uri,
                    state.as_deref(),
                    &OAuthError::new(
                        ErrorCode::InteractionRequired,
                        "the app requires two-step verification",
                    ),
                );
            }
            return self
                .step_up(&client, req, Flow::default(), &session, cookies, now)
                .await;
        }

        match self.needs_consent(&req, &session.user_id).await {
            Err(e) => BrowserReply::unavailable(e),
            Ok(true) if req.prompt.none => self.redirect_error(
                &redirect_uri,
                state.as_deref(),
                &OAuthError::new(ErrorCode::ConsentRequired, "the user must consent"),
            ),
            Ok(true) => {
                self.start_interaction(&client, req, Some(&session), cookies, now)
                    .await
            }
            Ok(false) => {
                self.issue_code(&req, &session.user_id, session.auth_time, &session.amr, now)
                    .await
            }
        }
    }

    /// Consent is asked unless the user already granted every scope. OIDC
    /// Core §11: offline access is only granted on an explicit consent page.
    async fn needs_consent(
        &self,
        req: &AuthorizationRequest,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        if req.prompt.consent || req.wants_offline_access() {
            return Ok(true);
        }
        let consent = self.store.get_consent(user_id, &req.client_id).await?;
        Ok(!consent.is_some_and(|c| req.scopes.is_subset(&c.scopes)))
    }

    /// Stores the pending request and shows the login or consent page.
    async fn start_interaction(
        &self,
        client: &Client,
        request: AuthorizationRequest,
        session: Option<&Session>,
        cookies: &Cookies,
        now: i64,
    ) -> BrowserReply {
        let (interaction, csrf, set_cookies) =
            match self.new_interaction(request, Flow::default(), session, cookies, now) {
                Some(v) => v,
                None => return BrowserReply::busy(),
            };
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        let page = if session.is_some() {
            consent_page(&interaction, csrf, client)
        } else {
            login_page(&interaction, csrf, Some(client))
        };
        BrowserReply {
            reply: Reply::Page(page),
            set_cookies,
            retry_after: None,
        }
    }

    /// A new interaction bound to this browser (a binding cookie is made if
    /// it has none), with a fresh CSRF token. Not stored yet. `None` when
    /// the random source failed.
    pub(super) fn new_interaction(
        &self,
        request: AuthorizationRequest,
        flow: Flow,
        session: Option<&Session>,
        cookies: &Cookies,
        now: i64,
    ) -> Option<(Interaction, String, Vec<SetCookie>)> {
        let id = secret::new_id().ok()?;
        let (bind, set_cookies) = self.browser_binding(cookies)?;
        let csrf = secret::new_secret().ok()?;
        let interaction = Interaction {
            id,
            csrf_hash: hash(&csrf),
            browser_hash: hash(&bind),
            request,
            user_id: session.map(|s| s.user_id.clone()),
            auth_time: session.map(|s| s.auth_time),
            amr: session.map(|s| s.amr.clone()).unwrap_or_default(),
            expires_at: now + self.config.interaction_ttl,
            flow,
        };
        Some((interaction, csrf, set_cookies))
    }

    /// The browser's binding cookie, made (and set) if it has none. `None`
    /// when the random source failed.
    pub(super) fn browser_binding(&self, cookies: &Cookies) -> Option<(String, Vec<SetCookie>)> {
        match &cookies.bind {
            Some(b) => Some((b.clone(), Vec::new())),
            None => {
                let b = secret::new_secret().ok()?;
                let cookie = SetCookie {
                    name: BIND_COOKIE,
                    value: b.clone(),
                    max_age: self.config.session_ttl,
                };
                Some((b, vec![cookie]))
            }
        }
    }

    /// A signed-in session without a second factor meets a client that
    /// requires one: ask the session's user for a TOTP code, or tell them
    /// they cannot get in without enrolling. `flow` is the interaction's
    /// (its purpose); the interaction is stored here.
    pub(super) async fn step_up(
        &self,
        client: &Client,
        request: AuthorizationRequest,
        mut flow: Flow,
        session: &Session,
        cookies: &Cookies,
        now: i64,
    ) -> BrowserReply {
        let user = match self.store.get_user(&session.user_id).await {
            Ok(u) => u,
            Err(e) => return BrowserReply::unavailable(e),
        };
        let Some(user) = user.filter(User::has_mfa) else {
            tracing::info!(user = %session.user_id, client = %client.id, "two-step verification required but not enrolled");
            return BrowserReply::error(403, MFA_NOT_ENROLLED);
        };
        flow.otp_user = Some(user.id);
        flow.otp_failures = 0;
        let (interaction, csrf, set_cookies) =
            match self.new_interaction(request, flow, None, cookies, now) {
                Some(v) => v,
                None => return BrowserReply::busy(),
            };
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        BrowserReply {
            reply: Reply::Page(Page::Otp {
                interaction: interaction.id,
                csrf,
                client_name: client.name.clone(),
                error: None,
            }),
            set_cookies,
            retry_after: None,
        }
    }

    /// Loads the interaction a form belongs to, checking that the same
    /// browser posts it with the CSRF token of its page.
    pub(super) async fn load_interaction(
        &self,
        form: &[(String, String)],
        cookies: &Cookies,
        now: i64,
    ) -> Result<(Interaction, String), BrowserReply> {
        let params = Params(form);
        let (Ok(Some(id)), Ok(Some(csrf))) = (params.get("interaction"), params.get("csrf")) else {
            return Err(BrowserReply::error(
                400,
                "This form is incomplete. Go back to the app and start again.",
            ));
        };
        let interaction = match self.store.get_interaction(id, now).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(BrowserReply::error(
                    400,
                    "This page has expired. Go back to the app and start again.",
                ));
            }
            Err(e) => return Err(BrowserReply::unavailable(e)),
        };
        let same_browser = cookies
            .bind
            .as_deref()
            .is_some_and(|b| ct_eq(&hash(b), &interaction.browser_hash));
        if !same_browser || !ct_eq(&hash(csrf), &interaction.csrf_hash) {
            tracing::warn!(interaction = %interaction.id, "form refused: CSRF or browser binding mismatch");
            return Err(BrowserReply::error(
                403,
                "This form could not be verified. Go back to the app and start again.",
            ));
        }
        Ok((interaction, csrf.to_owned()))
    }

    /// POST /login: the password form, or (when the interaction waits for
    /// one) the TOTP form. `addr` is the source address the throttling
    /// counts by.
    pub async fn login(
        &self,
        form: &[(String, String)],
        cookies: &Cookies,
        addr: Option<IpAddr>,
    ) -> BrowserReply {
        let now = self.clock.now();
        let (mut interaction, csrf) = match self.load_interaction(form, cookies, now).await {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let client = match self.interaction_client(&interaction).await {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        if interaction.flow.otp_user.is_some() {
            return self
                .second_factor(interaction, csrf, client.as_ref(), form, addr, now)
                .await;
        }
        let params = Params(form);
        let username = params.get("username").ok().flatten().unwrap_or("");
        let password = params.get("password").ok().flatten().unwrap_or("");
        let lanes = throttle::sign_in_lanes(throttle::PASSWORD, username, addr);
        let (user, checked) = tokio::join!(
            self.store.find_user(username),
            self.throttle_check(&lanes, now)
        );
        let (user, checked) = match (user, checked) {
            (Ok(u), Ok(c)) => (u, c),
            (Err(e), _) | (_, Err(e)) => return BrowserReply::unavailable(e),
        };
        let again = |error: String| {
            let mut page = login_page(&interaction, csrf.clone(), client.as_ref());
            if let Page::Login {
                error: e,
                username: typed,
                ..
            } = &mut page
            {
                *e = Some(error);
                username.clone_into(typed);
            }
            page
        };
        if let Some(wait) = checked.wait {
            // Not counted, not checked: the same answer for every username.
            tracing::info!(interaction = %interaction.id, wait, "sign-in throttled");
            return BrowserReply::throttled(again(throttled_message(wait)), wait);
        }
        let user = match super::check_password(user, password).await {
            Some(u) => u,
            None => {
                tracing::info!(interaction = %interaction.id, "sign-in failed");
                if let Err(e) = self.throttle_failed(&lanes, now).await {
                    return BrowserReply::unavailable(e);
                }
                return BrowserReply::page(again(GENERIC_LOGIN_ERROR.to_owned()));
            }
        };
        if let Err(e) = self.throttle_passed(checked).await {
            return BrowserReply::unavailable(e);
        }

        if user.has_mfa() {
            // RFC 6238: the password was right; now the code.
            interaction.flow.otp_user = Some(user.id.clone());
            interaction.flow.otp_failures = 0;
            if let Err(e) = self.store.put_interaction(&interaction).await {
                return BrowserReply::unavailable(e);
            }
            tracing::info!(user = %user.id, "password accepted; asking for the second factor");
            return BrowserReply::page(Page::Otp {
                interaction: interaction.id,
                csrf,
                client_name: display_name(client.as_ref()),
                error: None,
            });
        }
        if client.as_ref().is_some_and(|c| c.require_mfa) {
            if let Err(e) = self.store.delete_interaction(&interaction.id).await {
                return BrowserReply::unavailable(e);
            }
            tracing::info!(user = %user.id, "two-step verification required but not enrolled");
            return BrowserReply::error(403, MFA_NOT_ENROLLED);
        }
        self.signed_in(
            interaction,
            csrf,
            client.as_ref(),
            &user.id,
            amr_password(),
            now,
        )
        .await
    }

    /// The client an interaction is for (none for the account pages).
    pub(super) async fn interaction_client(
        &self,
        interaction: &Interaction,
    ) -> Result<Option<Client>, BrowserReply> {
        if interaction.flow.purpose == Purpose::Account {
            return Ok(None);
        }
        match self.store.get_client(&interaction.request.client_id).await {
            Ok(Some(c)) => Ok(Some(c)),
            Ok(None) => Err(BrowserReply::error(
                400,
                "The app that sent you here is no longer registered.",
            )),
            Err(e) => Err(BrowserReply::unavailable(e)),
        }
    }

    /// The TOTP step (RFC 6238): the code must match a step around now and
    /// that step must not have been used (§5.2). Every failure reads the
    /// same; after [`MAX_OTP_FAILURES`] the interaction ends.
    async fn second_factor(
        &self,
        mut interaction: Interaction,
        csrf: String,
        client: Option<&Client>,
        form: &[(String, String)],
        addr: Option<IpAddr>,
        now: i64,
    ) -> BrowserReply {
        let Some(user_id) = interaction.flow.otp_user.clone() else {
            return BrowserReply::error(400, "Please sign in first.");
        };
        let code = Params(form).get("otp").ok().flatten().unwrap_or("");
        // Counted per account and address too: a new interaction must not
        // buy a new set of guesses.
        let lanes = throttle::sign_in_lanes(throttle::OTP, &user_id, addr);
        let (user, checked) = tokio::join!(
            self.store.get_user(&user_id),
            self.throttle_check(&lanes, now)
        );
        let (user, checked) = match (user, checked) {
            (Ok(u), Ok(c)) => (u, c),
            (Err(e), _) | (_, Err(e)) => return BrowserReply::unavailable(e),
        };
        let again = |interaction: Interaction, csrf: String, error: String| Page::Otp {
            interaction: interaction.id,
            csrf,
            client_name: display_name(client),
            error: Some(error),
        };
        if let Some(wait) = checked.wait {
            tracing::info!(user = %user_id, wait, "second factor throttled");
            return BrowserReply::throttled(
                again(interaction, csrf, throttled_message(wait)),
                wait,
            );
        }
        let secret = match user.as_ref().and_then(|u| u.totp_secret.as_deref()) {
            Some(sealed) => match self.secret_box.open(&user_id, sealed).await {
                Ok(secret) => Some(secret),
                Err(e) => return BrowserReply::unavailable(e),
            },
            None => None,
        };
        let step = match secret.as_deref() {
            Some(secret) => match totp::verify(secret, code, now) {
                Ok(step) => step,
                Err(e) => {
                    tracing::error!(user = %user_id, error = %e, "stored TOTP secret unusable");
                    None
                }
            },
            None => None,
        };
        let accepted = match step {
            Some(step) => match self.store.claim_totp_step(&user_id, step).await {
                Ok(claimed) => claimed,
                Err(e) => return BrowserReply::unavailable(e),
            },
            None => false,
        };
        if accepted {
            if let Err(e) = self.throttle_passed(checked).await {
                return BrowserReply::unavailable(e);
            }
            tracing::info!(user = %user_id, "second factor accepted");
            interaction.flow.otp_user = None;
            interaction.flow.otp_failures = 0;
            return self
                .signed_in(interaction, csrf, client, &user_id, amr_password_otp(), now)
                .await;
        }
        if let Err(e) = self.throttle_failed(&lanes, now).await {
            return BrowserReply::unavailable(e);
        }
        interaction.flow.otp_failures += 1;
        tracing::info!(user = %user_id, failures = interaction.flow.otp_failures, "second factor refused");
        if interaction.flow.otp_failures >= MAX_OTP_FAILURES {
            if let Err(e) = self.store.delete_interaction(&interaction.id).await {
                return BrowserReply::unavailable(e);
            }
            return BrowserReply::error(403, TOO_MANY_OTP_FAILURES);
        }
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        BrowserReply::page(again(interaction, csrf, GENERIC_OTP_ERROR.to_owned()))
    }

    /// The user is authenticated (`amr` says how): a new session, then on
    /// to what the interaction is for.
    async fn signed_in(
        &self,
        mut interaction: Interaction,
        csrf: String,
        client: Option<&Client>,
        user_id: &str,
        amr: Vec<String>,
        now: i64,
    ) -> BrowserReply {
        // A new session id at every sign-in (no session fixation).
        let session_secret = match secret::new_secret() {
            Ok(s) => s,
            Err(e) => return BrowserReply::error(503, no_randomness(e).description),
        };
        let session = Session {
            hash: hash(&session_secret),
            user_id: user_id.to_owned(),
            auth_time: now,
            amr: amr.clone(),
            expires_at: now + self.config.session_ttl,
        };
        if let Err(e) = self.store.put_session(&session).await {
            return BrowserReply::unavailable(e);
        }
        tracing::info!(user = %user_id, "signed in");
        interaction.user_id = Some(user_id.to_owned());
        interaction.auth_time = Some(now);
        interaction.amr = amr;

        let mut reply = match (&interaction.flow.purpose, client) {
            (Purpose::Account, _) => match self.store.delete_interaction(&interaction.id).await {
                Ok(()) => BrowserReply::redirect(self.config.endpoint(crate::paths::ACCOUNT_APPS)),
                Err(e) => BrowserReply::unavailable(e),
            },
            (_, None) => BrowserReply::error(400, "The app is no longer registered."),
            // RFC 8628 §5.4: a device is approved only on an explicit consent page.
            (Purpose::Device { .. }, Some(client)) => {
                match self.store.put_interaction(&interaction).await {
                    Ok(()) => BrowserReply::page(consent_page(&interaction, csrf, client)),
                    Err(e) => BrowserReply::unavailable(e),
                }
            }
            (Purpose::Authorize, Some(client)) => {
                match self.needs_consent(&interaction.request, user_id).await {
                    Err(e) => BrowserReply::unavailable(e),
                    Ok(true) => match self.store.put_interaction(&interaction).await {
                        Ok(()) => BrowserReply::page(consent_page(&interaction, csrf, client)),
                        Err(e) => BrowserReply::unavailable(e),
                    },
                    Ok(false) => self.finish(&interaction, now).await,
                }
            }
        };
        reply.set_cookies.push(SetCookie {
            name: SESSION_COOKIE,
            value: session_secret,
            max_age: self.config.session_ttl,
        });
        reply
    }

    /// POST /consent.
    pub async fn consent(&self, form: &[(String, String)], cookies: &Cookies) -> BrowserReply {
        let now = self.clock.now();
        let (interaction, _) = match self.load_interaction(form, cookies, now).await {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let Some(user_id) = interaction.user_id.clone() else {
            return BrowserReply::error(
                400,
                "Please sign in first. Go back to the app and start again.",
            );
        };
        match &interaction.flow.purpose {
            Purpose::Authorize => {}
            Purpose::Device { .. } => {
                return self.device_decision(interaction, &user_id, form, now).await;
            }
            Purpose::Account => return BrowserReply::error(400, "There is nothing to allow here."),
        }
        let req = &interaction.request;
        match Params(form).get("decision") {
            Ok(Some("allow")) => {}
            Ok(Some("deny")) => {
                if let Err(e) = self.store.delete_interaction(&interaction.id).await {
                    return BrowserReply::unavailable(e);
                }
                tracing::info!(user = %user_id, client = %req.client_id, "consent denied");
                return self.redirect_error(
                    &req.redirect_uri,
                    req.state.as_deref(),
                    &OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
                );
            }
            _ => return BrowserReply::error(400, "Please choose Allow or Deny."),
        }
        let previous = match self.store.get_consent(&user_id, &req.client_id).await {
            Ok(c) => c,
            Err(e) => return BrowserReply::unavailable(e),
        };
        let scopes = previous.map_or(req.scopes.clone(), |c| c.scopes.union(&req.scopes));
        let consent = Consent {
            user_id: user_id.clone(),
            client_id: req.client_id.clone(),
            scopes,
            granted_at: now,
        };
        if let Err(e) = self.store.put_consent(&consent).await {
            return BrowserReply::unavailable(e);
        }
        tracing::info!(user = %user_id, client = %req.client_id, "consent given");
        self.finish(&interaction, now).await
    }

    /// Ends an interaction with a code for its client.
    async fn finish(&self, interaction: &Interaction, now: i64) -> BrowserReply {
        let (Some(user_id), Some(auth_time)) = (&interaction.user_id, interaction.auth_time) else {
            return BrowserReply::error(
                400,
                "Please sign in first. Go back to the app and start again.",
            );
        };
        if let Err(e) = self.store.delete_interaction(&interaction.id).await {
            return BrowserReply::unavailable(e);
        }
        self.issue_code(
            &interaction.request,
            user_id,
            auth_time,
            &interaction.amr,
            now,
        )
        .await
    }

    async fn issue_code(
        &self,
        req: &AuthorizationRequest,
        user_id: &str,
        auth_time: i64,
        amr: &[String],
        now: i64,
    ) -> BrowserReply {
        let (code, grant_id) = match (secret::new_secret(), secret::new_id()) {
            (Ok(c), Ok(g)) => (c, g),
            _ => {
                return BrowserReply::busy();
            }
        };
        let record = AuthCode {
            hash: hash(&code),
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            user_id: user_id.to_owned(),
            scopes: req.scopes.clone(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            auth_time,
            amr: amr.to_vec(),
            grant_id,
            expires_at: now + self.config.code_ttl,
            consumed_at: None,
        };
        // The grant this code makes must fit under the per-user cap.
        let (stored, room) = tokio::join!(
            self.store.put_code(&record),
            self.make_room(user_id, &req.client_id, now)
        );
        if let Err(e) = stored {
            return BrowserReply::unavailable(e);
        }
        if room.is_err() {
            return BrowserReply::busy();
        }
        tracing::info!(user = %user_id, client = %req.client_id, grant = %record.grant_id, "code issued");
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state) = &req.state {
            pairs.push(("state", state));
        }
        // RFC 9207 §2: the issuer in every authorization response.
        pairs.push(("iss", &self.config.issuer));
        BrowserReply::redirect(with_query(&req.redirect_uri, &pairs))
    }

    /// RFC 6749 §4.1.2.1: errors sent back to a trusted redirect URI.
    fn redirect_error(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        err: &OAuthError,
    ) -> BrowserReply {
        tracing::info!(error = %err.code, "authorization request refused");
        let mut pairs = vec![
            ("error", err.code.as_str()),
            ("error_description", err.description.as_str()),
        ];
        if let Some(state) = state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", &self.config.issuer));
        BrowserReply::redirect(with_query(redirect_uri, &pairs))
    }
}

/// The login page of an interaction; `client` is `None` on the account pages.
pub(super) fn login_page(interaction: &Interaction, csrf: String, client: Option<&Client>) -> Page {
    Page::Login {
        interaction: interaction.id.clone(),
        csrf,
        client_name: display_name(client),
        username: String::new(),
        error: None,
    }
}

/// Who the sign-in is for, in the pages' words.
pub(super) fn display_name(client: Option<&Client>) -> String {
    client.map_or_else(|| "your account".to_owned(), |c| c.name.clone())
}

pub(super) fn consent_page(interaction: &Interaction, csrf: String, client: &Client) -> Page {
    Page::Consent {
        interaction: interaction.id.clone(),
        csrf,
        client_name: client.name.clone(),
        scopes: crate::domain::scope::in_reading_order(&interaction.request.scopes)
            .into_iter()
            .map(crate::domain::scope::describe)
            .collect(),
    }
}

/// Appends query parameters to a registered redirect URI, keeping its own
/// query (RFC 6749 §3.1.2).
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.to_string()
        }
        // Registration only accepts absolute URIs, so this is unreachable in
        // practice; fall back to plain concatenation rather than panic.
        Err(_) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}{query}")
        }
    }
}
