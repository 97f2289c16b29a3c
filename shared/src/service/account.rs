//! The connected apps page: a signed-in user sees the apps they granted
//! access to and can disconnect them (withdraw consent, revoke the grants).

use std::collections::BTreeMap;

use super::Services;
use super::authorize::{BrowserReply, ConnectedApp, Cookies, Page, Reply, login_page};
use crate::domain::request::Params;
use crate::domain::scope::{describe, in_reading_order};
use crate::domain::secret::hash;
use crate::domain::{AuthorizationRequest, Flow, Grant, Purpose, Scopes, Session};

impl Services {
    /// The session a browser's cookie names, if it is live.
    async fn browser_session(
        &self,
        cookies: &Cookies,
        now: i64,
    ) -> Result<Option<Session>, BrowserReply> {
        match &cookies.session {
            Some(c) => self
                .store
                .get_session(&hash(c), now)
                .await
                .map_err(BrowserReply::unavailable),
            None => Ok(None),
        }
    }

    /// GET /account/apps. Without a session, the login form first (with
    /// the second factor when enrolled); it comes back here.
    pub async fn account_apps(&self, cookies: &Cookies) -> BrowserReply {
        let now = self.clock.now();
        let session = match self.browser_session(cookies, now).await {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        let flow = Flow {
            purpose: Purpose::Account,
            ..Flow::default()
        };
        let (interaction, csrf, set_cookies) =
            match self.new_interaction(no_request(), flow, session.as_ref(), cookies, now) {
                Some(v) => v,
                None => return BrowserReply::busy(),
            };
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        let Some(session) = session else {
            return BrowserReply {
                reply: Reply::Page(login_page(&interaction, csrf, None)),
                set_cookies,
                retry_after: None,
            };
        };
        let (user, grants) = tokio::join!(
            self.store.get_user(&session.user_id),
            self.store.list_grants(&session.user_id, now)
        );
        let username = match user {
            Ok(Some(u)) => u.username,
            Ok(None) => return BrowserReply::error(403, "Your account no longer exists."),
            Err(e) => return BrowserReply::unavailable(e),
        };
        let grants = match grants {
            Ok(g) => g,
            Err(e) => return BrowserReply::unavailable(e),
        };
        let mut apps = Vec::new();
        for (client_id, grants) in by_client(grants) {
            let name = match self.store.get_client(&client_id).await {
                Ok(Some(c)) => c.name,
                Ok(None) => client_id.clone(),
                Err(e) => return BrowserReply::unavailable(e),
            };
            let scopes = grants
                .iter()
                .fold(Scopes::default(), |all, g| all.union(&g.scopes));
            apps.push(ConnectedApp {
                client_id,
                name,
                scopes: in_reading_order(&scopes)
                    .into_iter()
                    .map(describe)
                    .collect(),
                last_used_at: grants.iter().map(|g| g.last_used_at).max().unwrap_or(0),
                expires_at: grants.iter().map(|g| g.expires_at).max().unwrap_or(0),
            });
        }
        apps.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| a.client_id.cmp(&b.client_id))
        });
        BrowserReply {
            reply: Reply::Page(Page::Apps {
                interaction: interaction.id,
                csrf,
                username,
                apps,
            }),
            set_cookies,
            retry_after: None,
        }
    }

    /// POST /account/apps/revoke: withdraws the user's consent for the
    /// client and revokes its grants, so that its refresh tokens stop
    /// working and the next authorization asks again.
    pub async fn account_revoke(
        &self,
        form: &[(String, String)],
        cookies: &Cookies,
    ) -> BrowserReply {
        let now = self.clock.now();
        let (interaction, _) = match self.load_interaction(form, cookies, now).await {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let (Purpose::Account, Some(user_id)) = (&interaction.flow.purpose, &interaction.user_id)
        else {
            return BrowserReply::error(400, "This form is not from your connected apps page.");
        };
        // The page's user must still be the one signed in here.
        let session = match self.browser_session(cookies, now).await {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        if session.as_ref().is_none_or(|s| &s.user_id != user_id) {
            return BrowserReply::error(403, "Please sign in again to manage your apps.");
        }
        let Ok(Some(client_id)) = Params(form).get("client_id") else {
            return BrowserReply::error(400, "Choose an app to disconnect.");
        };
        let revoked = match self.store.revoke_consent(user_id, client_id, now).await {
            Ok(n) => n,
            Err(e) => return BrowserReply::unavailable(e),
        };
        tracing::info!(target: "audit", user = %user_id, client = %client_id, revoked, "app disconnected by the user");
        if let Err(e) = self.store.delete_interaction(&interaction.id).await {
            return BrowserReply::unavailable(e);
        }
        BrowserReply::redirect(self.config.endpoint(crate::paths::ACCOUNT_APPS))
    }
}

/// Grants by client: one app per client, whatever the number of grants.
fn by_client(grants: Vec<Grant>) -> BTreeMap<String, Vec<Grant>> {
    let mut apps: BTreeMap<String, Vec<Grant>> = BTreeMap::new();
    for g in grants {
        apps.entry(g.client_id.clone()).or_default().push(g);
    }
    apps
}

/// The account pages carry no authorization request.
fn no_request() -> AuthorizationRequest {
    AuthorizationRequest {
        client_id: String::new(),
        redirect_uri: String::new(),
        scopes: Scopes::default(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt: Default::default(),
        max_age: None,
    }
}
