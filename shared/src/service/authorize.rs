//! The browser side: the authorization endpoint (RFC 6749 §4.1.1, OIDC Core
//! §3.1.2), the login form and the consent form. Every reply is either a
//! page, a redirect to a trusted redirect URI, or an error page when the
//! redirect URI cannot be trusted.

use url::Url;

use super::{Services, no_randomness};
use crate::domain::request::Params;
use crate::domain::secret::{self, ct_eq, hash};
use crate::domain::{
    AuthCode, AuthorizationRequest, Client, Consent, ErrorCode, Interaction, OAuthError, Session,
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
        error: Option<&'static str>,
    },
    Consent {
        interaction: String,
        csrf: String,
        client_name: String,
        scopes: Vec<String>,
    },
    Error {
        status: u16,
        message: String,
    },
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
}

impl BrowserReply {
    fn page(page: Page) -> Self {
        Self {
            reply: Reply::Page(page),
            set_cookies: Vec::new(),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        Self::page(Page::Error {
            status,
            message: message.into(),
        })
    }

    fn redirect(location: String) -> Self {
        Self {
            reply: Reply::Redirect(location),
            set_cookies: Vec::new(),
        }
    }

    fn busy() -> Self {
        Self::error(503, "The service is busy. Please try again in a moment.")
    }

    fn unavailable(e: StoreError) -> Self {
        tracing::error!(error = %e, "dependency failed");
        Self::busy()
    }
}

pub const GENERIC_LOGIN_ERROR: &str = "The username or password is incorrect.";

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
        let (id, csrf) = match (secret::new_id(), secret::new_secret()) {
            (Ok(id), Ok(csrf)) => (id, csrf),
            _ => {
                return BrowserReply::busy();
            }
        };
        let mut set_cookies = Vec::new();
        let bind = match &cookies.bind {
            Some(b) => b.clone(),
            None => match secret::new_secret() {
                Ok(b) => {
                    set_cookies.push(SetCookie {
                        name: BIND_COOKIE,
                        value: b.clone(),
                        max_age: self.config.session_ttl,
                    });
                    b
                }
                Err(_) => {
                    return BrowserReply::busy();
                }
            },
        };
        let logged_in = session.is_some();
        let interaction = Interaction {
            id: id.clone(),
            csrf_hash: hash(&csrf),
            browser_hash: hash(&bind),
            request,
            user_id: session.map(|s| s.user_id.clone()),
            auth_time: session.map(|s| s.auth_time),
            amr: session.map(|s| s.amr.clone()).unwrap_or_default(),
            expires_at: now + self.config.interaction_ttl,
        };
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        let page = if logged_in {
            consent_page(&interaction, csrf, client)
        } else {
            Page::Login {
                interaction: id,
                csrf,
                client_name: client.name.clone(),
                error: None,
            }
        };
        BrowserReply {
            reply: Reply::Page(page),
            set_cookies,
        }
    }

    /// Loads the interaction a form belongs to, checking that the same
    /// browser posts it with the CSRF token of its page.
    async fn load_interaction(
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

    /// POST /login.
    pub async fn login(&self, form: &[(String, String)], cookies: &Cookies) -> BrowserReply {
        let now = self.clock.now();
        let (mut interaction, csrf) = match self.load_interaction(form, cookies, now).await {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let client = match self.store.get_client(&interaction.request.client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return BrowserReply::error(
                    400,
                    "The app that sent you here is no longer registered.",
                );
            }
            Err(e) => return BrowserReply::unavailable(e),
        };
        let params = Params(form);
        let username = params.get("username").ok().flatten().unwrap_or("");
        let password = params.get("password").ok().flatten().unwrap_or("");
        let user = match self.store.find_user(username).await {
            Ok(u) => u,
            Err(e) => return BrowserReply::unavailable(e),
        };
        let user = match super::check_password(user, password).await {
            Some(u) => u,
            None => {
                tracing::info!(interaction = %interaction.id, "sign-in failed");
                return BrowserReply::page(Page::Login {
                    interaction: interaction.id,
                    csrf,
                    client_name: client.name,
                    error: Some(GENERIC_LOGIN_ERROR),
                });
            }
        };

        // A new session id at every sign-in (no session fixation).
        let session_secret = match secret::new_secret() {
            Ok(s) => s,
            Err(e) => return BrowserReply::error(503, no_randomness(e).description),
        };
        let amr = vec!["pwd".to_owned()];
        let session = Session {
            hash: hash(&session_secret),
            user_id: user.id.clone(),
            auth_time: now,
            amr: amr.clone(),
            expires_at: now + self.config.session_ttl,
        };
        if let Err(e) = self.store.put_session(&session).await {
            return BrowserReply::unavailable(e);
        }
        tracing::info!(user = %user.id, "signed in");
        interaction.user_id = Some(user.id.clone());
        interaction.auth_time = Some(now);
        interaction.amr = amr;

        let mut reply = match self.needs_consent(&interaction.request, &user.id).await {
            Err(e) => BrowserReply::unavailable(e),
            Ok(true) => match self.store.put_interaction(&interaction).await {
                Ok(()) => BrowserReply::page(consent_page(&interaction, csrf, &client)),
                Err(e) => BrowserReply::unavailable(e),
            },
            Ok(false) => self.finish(&interaction, now).await,
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

fn consent_page(interaction: &Interaction, csrf: String, client: &Client) -> Page {
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
