//! The Device Authorization Grant (RFC 8628): the device authorization
//! endpoint (§3.1), the verification page where the user enters the user
//! code, signs in and decides (§3.3), and the polling at the token endpoint
//! (§3.4, §3.5).

use std::net::IpAddr;

use serde::Serialize;

use super::authorize::{
    BrowserReply, Cookies, Page, Reply, consent_page, login_page, throttled_message,
};
use super::token::NewGrant;
use super::{Services, TokenResponse, no_randomness, unavailable};
use crate::domain::device::{
    DeviceCode, DeviceDecision, PollCheck, display_user_code, new_user_code, normalize_user_code,
};
use crate::domain::grant::{MAX_CODE_FAILURES, is_mfa};
use crate::domain::request::Params;
use crate::domain::scope::OPENID;
use crate::domain::secret::{self, hash, log_prefix};
use crate::domain::throttle;
use crate::domain::{
    AuthorizationRequest, ClientAuth, Consent, ErrorCode, Flow, GrantType, Interaction, OAuthError,
    Purpose, Scopes,
};
use crate::ports::StoreError;

/// How long the device page refuses codes from a browser that entered too
/// many wrong ones.
pub const CODE_LOCKOUT: i64 = 300;
/// Fresh user codes drawn when one collides with a kept record.
const USER_CODE_ATTEMPTS: usize = 3;

pub const WRONG_USER_CODE: &str =
    "That code is not right. Check the code shown on your device and try again.";
pub const EXPIRED_USER_CODE: &str =
    "That code has expired. Start again on your device to get a new code.";
pub const USED_USER_CODE: &str =
    "That code has already been used. Start again on your device if you need a new code.";
pub const TOO_MANY_USER_CODES: &str =
    "Too many wrong codes were entered in this browser. Wait a few minutes, then try again.";

/// RFC 8628 §3.2: the device authorization response.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

impl Services {
    /// POST /oauth/device_authorization (RFC 8628 §3.1). The client
    /// authenticates as at the token endpoint; `scope` follows the rules of
    /// the authorization endpoint (required, within the client's).
    pub async fn device_authorization(
        &self,
        auth: &ClientAuth,
        scope: Option<&Scopes>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        let now = self.clock.now();
        let client = Self::check_client(auth, self.store.get_client(auth.client_id()).await)?;
        if !client.allows(GrantType::DeviceCode) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the device authorization grant",
            ));
        }
        let scopes = match scope {
            Some(s) if !s.is_empty() => client.grantable(s)?,
            _ => return Err(OAuthError::invalid_scope("scope is required")),
        };

        let device_code = secret::new_secret().map_err(no_randomness)?;
        let mut attempt = 0;
        let user_code = loop {
            attempt += 1;
            let user_code = new_user_code().map_err(no_randomness)?;
            let record = DeviceCode {
                hash: hash(&device_code),
                user_code_hash: hash(&user_code),
                client_id: client.id.clone(),
                scopes: scopes.clone(),
                created_at: now,
                expires_at: now + self.config.device_code_ttl,
                // Kept as long again, so that late polls hear expired_token.
                kept_until: now + 2 * self.config.device_code_ttl,
                interval: self.config.device_interval,
                last_polled_at: None,
                decision: None,
                consumed_at: None,
            };
            match self.store.put_device_code(&record).await {
                Ok(()) => break user_code,
                Err(StoreError::Conflict(_)) if attempt < USER_CODE_ATTEMPTS => continue,
                Err(e) => return Err(unavailable(e)),
            }
        };
        tracing::info!(client = %client.id, device = log_prefix(&hash(&device_code)), "device authorization started");
        let shown = display_user_code(&user_code);
        let verification_uri = self.config.endpoint(crate::paths::DEVICE);
        let verification_uri_complete = format!(
            "{verification_uri}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("user_code", &shown)
                .finish()
        );
        Ok(DeviceAuthorization {
            device_code,
            user_code: shown,
            verification_uri,
            verification_uri_complete,
            expires_in: self.config.device_code_ttl,
            interval: self.config.device_interval,
        })
    }

    /// The device_code grant at the token endpoint (RFC 8628 §3.4, §3.5).
    /// Two rounds: the client and the device code are read at once; then
    /// either the poll is recorded, or the code is redeemed (consumed with
    /// the grant created, atomically) while the tokens are signed.
    pub async fn exchange_device_code(
        &self,
        auth: &ClientAuth,
        device_code: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let code_hash = hash(device_code);
        let (client, found) = tokio::join!(
            self.store.get_client(auth.client_id()),
            self.store.find_device_code(&code_hash, now)
        );
        let client = Self::check_client(auth, client)?;
        if !client.allows(GrantType::DeviceCode) {
            return Err(OAuthError::unauthorized_client(
                "this client may not use the device authorization grant",
            ));
        }
        let invalid = || OAuthError::invalid_grant("device code is invalid");
        let device = found.map_err(unavailable)?.ok_or_else(invalid)?;
        if device.client_id != client.id {
            return Err(invalid());
        }
        if device.consumed_at.is_some() {
            return Err(OAuthError::invalid_grant("device code was already used"));
        }
        if device.is_expired(now) {
            return Err(OAuthError::new(
                ErrorCode::ExpiredToken,
                "the device code has expired; start the authorization again",
            ));
        }
        if let PollCheck::TooFast { interval } = device.check_poll(now) {
            return Err(self.slow_down(&device, interval, now).await);
        }
        let (user_id, auth_time, amr) = match &device.decision {
            Some(DeviceDecision::Denied) => {
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "the user denied the request",
                ));
            }
            None => {
                return match self
                    .store
                    .record_device_poll(&code_hash, device.last_polled_at, device.interval, now)
                    .await
                {
                    Ok(true) => Err(OAuthError::new(
                        ErrorCode::AuthorizationPending,
                        "the user has not finished yet",
                    )),
                    // Another poll got in first: this one was too fast.
                    Ok(false) => Err(OAuthError::new(
                        ErrorCode::SlowDown,
                        "polling too fast; wait longer between requests",
                    )),
                    Err(e) => Err(unavailable(e)),
                };
            }
            Some(DeviceDecision::Approved {
                user_id,
                auth_time,
                amr,
            }) => (user_id, *auth_time, amr),
        };

        // The approval must meet the client's requirement as it is now.
        if client.require_mfa && !is_mfa(amr) {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "this application requires two-step verification; start the authorization again",
            ));
        }
        let grant_id = secret::new_id().map_err(no_randomness)?;
        let NewGrant {
            grant,
            refresh_token,
            record,
        } = Self::new_grant(
            &client,
            grant_id,
            user_id,
            &device.scopes,
            (auth_time, amr.clone()),
            now,
        )?;
        // RFC 8628 has no nonce: the ID token carries none.
        let (redeemed, minted) = tokio::join!(
            self.store
                .redeem_device_code(&code_hash, &grant, record.as_ref(), now),
            self.mint(&client, &grant, &grant.scopes, None, now)
        );
        let refresh_hash = record.as_ref().map(|r| r.hash.as_str());
        let redeemed = match redeemed {
            Ok(redeemed) => redeemed,
            Err(e) => {
                // The outcome is unknown (a timeout, a lost answer): take
                // back a redemption that may have committed, so that the
                // device's next poll is not refused (DESIGN invariant 7).
                self.undo_device(&code_hash, &grant.id, refresh_hash).await;
                return Err(unavailable(e));
            }
        };
        if !redeemed {
            // Consumed by a concurrent poll, or expired in between.
            return Err(OAuthError::invalid_grant("device code was already used"));
        }
        let (access_token, id_token) = match minted {
            Ok(tokens) => tokens,
            Err(e) => {
                self.undo_device(&code_hash, &grant.id, refresh_hash).await;
                return Err(e);
            }
        };
        tracing::info!(grant = %grant.id, client = %client.id, refresh = refresh_token.is_some(), openid = grant.scopes.contains(OPENID), "device code redeemed");
        Ok(TokenResponse::bearer(
            &client,
            &grant.scopes,
            access_token,
            refresh_token,
            id_token,
        ))
    }

    /// RFC 8628 §3.5: the interval grows by 5 seconds for this and every
    /// later request of the device code.
    async fn slow_down(&self, device: &DeviceCode, interval: i64, now: i64) -> OAuthError {
        match self
            .store
            .record_device_poll(&device.hash, device.last_polled_at, interval, now)
            .await
        {
            Ok(_) => OAuthError::new(
                ErrorCode::SlowDown,
                format!("polling too fast; wait {interval} seconds between requests"),
            ),
            Err(e) => unavailable(e),
        }
    }

    /// GET /device: the form where the user types the code their device
    /// shows, prefilled from `?user_code=` (verification_uri_complete).
    pub async fn device_page(&self, query: &[(String, String)], cookies: &Cookies) -> BrowserReply {
        let now = self.clock.now();
        let prefill: String = Params(query)
            .get("user_code")
            .ok()
            .flatten()
            .unwrap_or("")
            .chars()
            .take(16)
            .collect();
        let Some((bind, set_cookies)) = self.browser_binding(cookies) else {
            return BrowserReply::busy();
        };
        // One device interaction per browser (its id derives from the
        // browser's binding cookie), so that wrong codes count across
        // reloads of this page.
        let id = hash(&format!("device#{bind}"));
        let previous = match self.store.get_interaction(&id, now).await {
            Ok(i) => i,
            Err(e) => return BrowserReply::unavailable(e),
        };
        let previous_flow = previous.map(|i| i.flow).unwrap_or_default();
        if previous_flow.locked_until.is_some_and(|t| t > now) {
            return BrowserReply::error(429, TOO_MANY_USER_CODES);
        }
        let Ok(csrf) = secret::new_secret() else {
            return BrowserReply::busy();
        };
        let interaction = Interaction {
            id,
            csrf_hash: hash(&csrf),
            browser_hash: hash(&bind),
            request: device_request(String::new(), Scopes::default()),
            user_id: None,
            auth_time: None,
            amr: Vec::new(),
            expires_at: now + self.config.interaction_ttl,
            flow: Flow {
                purpose: Purpose::Device { device_hash: None },
                code_failures: previous_flow.code_failures,
                ..Flow::default()
            },
        };
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        BrowserReply {
            reply: Reply::Page(Page::DeviceEntry {
                interaction: interaction.id,
                csrf,
                user_code: prefill,
                error: None,
            }),
            set_cookies,
            retry_after: None,
        }
    }

    /// POST /device: the user code, then sign-in (or step-up) and consent.
    /// Wrong codes count against this browser's interaction, the source
    /// address `addr`, and the signed-in account if there is one.
    pub async fn device_enter(
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
        if !matches!(interaction.flow.purpose, Purpose::Device { .. }) {
            return BrowserReply::error(400, "This form is not a device sign-in. Start again.");
        }
        if interaction.flow.locked_until.is_some_and(|t| t > now) {
            return BrowserReply::error(429, TOO_MANY_USER_CODES);
        }
        let typed = Params(form).get("user_code").ok().flatten().unwrap_or("");
        let session = match &cookies.session {
            Some(c) => match self.store.get_session(&hash(c), now).await {
                Ok(s) => s,
                Err(e) => return BrowserReply::unavailable(e),
            },
            None => None,
        };
        let mut lanes = vec![throttle::address_lane(throttle::USER_CODE, addr)];
        if let Some(s) = &session {
            lanes.push(throttle::Lane {
                key: format!("{}:account:{}", throttle::USER_CODE, hash(&s.user_id)),
                backoff: throttle::PER_ACCOUNT,
                reset_on_success: true,
            });
        }
        let checked = match self.throttle_check(&lanes, now).await {
            Ok(c) => c,
            Err(e) => return BrowserReply::unavailable(e),
        };
        if let Some(wait) = checked.wait {
            tracing::info!(interaction = %interaction.id, wait, "user code entry throttled");
            let page = self.device_entry_page(interaction, csrf, typed, throttled_message(wait));
            return BrowserReply::throttled(page, wait);
        }
        let found = match normalize_user_code(typed) {
            Some(code) => match self.store.find_user_code(&hash(&code), now).await {
                Ok(found) => found,
                Err(e) => return BrowserReply::unavailable(e),
            },
            None => None,
        };
        let device = match found {
            Some(d) if d.is_expired(now) => {
                return self.device_entry_again(interaction, csrf, typed, EXPIRED_USER_CODE);
            }
            Some(d) if d.decision.is_some() || d.consumed_at.is_some() => {
                return self.device_entry_again(interaction, csrf, typed, USED_USER_CODE);
            }
            Some(d) => d,
            None => {
                if let Err(e) = self.throttle_failed(&lanes, now).await {
                    return BrowserReply::unavailable(e);
                }
                return self.wrong_user_code(interaction, csrf, typed, now).await;
            }
        };
        if let Err(e) = self.throttle_passed(checked).await {
            return BrowserReply::unavailable(e);
        }
        let client = match self.store.get_client(&device.client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return BrowserReply::error(400, "The app on your device is no longer registered.");
            }
            Err(e) => return BrowserReply::unavailable(e),
        };
        tracing::info!(client = %client.id, device = log_prefix(&device.hash), "user code entered");
        interaction.request = device_request(client.id.clone(), device.scopes.clone());
        interaction.flow.purpose = Purpose::Device {
            device_hash: Some(device.hash.clone()),
        };
        interaction.flow.code_failures = 0;
        interaction.expires_at = interaction.expires_at.min(device.expires_at).max(now + 1);

        let Some(session) = session else {
            if let Err(e) = self.store.put_interaction(&interaction).await {
                return BrowserReply::unavailable(e);
            }
            return BrowserReply::page(login_page(&interaction, csrf, Some(&client)));
        };
        if client.require_mfa && !is_mfa(&session.amr) {
            // The step-up makes its own interaction; this one is done.
            if let Err(e) = self.store.delete_interaction(&interaction.id).await {
                return BrowserReply::unavailable(e);
            }
            let flow = interaction.flow.clone();
            return self
                .step_up(&client, interaction.request, flow, &session, cookies, now)
                .await;
        }
        interaction.user_id = Some(session.user_id.clone());
        interaction.auth_time = Some(session.auth_time);
        interaction.amr = session.amr.clone();
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        BrowserReply::page(consent_page(&interaction, csrf, &client))
    }

    /// The code form again, with a plain message.
    fn device_entry_again(
        &self,
        interaction: Interaction,
        csrf: String,
        typed: &str,
        error: &'static str,
    ) -> BrowserReply {
        BrowserReply::page(self.device_entry_page(interaction, csrf, typed, error.to_owned()))
    }

    fn device_entry_page(
        &self,
        interaction: Interaction,
        csrf: String,
        typed: &str,
        error: String,
    ) -> Page {
        Page::DeviceEntry {
            interaction: interaction.id,
            csrf,
            user_code: typed.chars().take(16).collect(),
            error: Some(error),
        }
    }

    /// A wrong user code counts against this browser (RFC 8628 §5.1: user
    /// codes are short, so guesses must be few).
    async fn wrong_user_code(
        &self,
        mut interaction: Interaction,
        csrf: String,
        typed: &str,
        now: i64,
    ) -> BrowserReply {
        interaction.flow.code_failures += 1;
        let locked = interaction.flow.code_failures >= MAX_CODE_FAILURES;
        if locked {
            interaction.flow.locked_until = Some(now + CODE_LOCKOUT);
            interaction.expires_at = interaction.expires_at.max(now + CODE_LOCKOUT);
        }
        tracing::info!(interaction = %interaction.id, failures = interaction.flow.code_failures, "wrong user code");
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        if locked {
            return BrowserReply::error(429, TOO_MANY_USER_CODES);
        }
        self.device_entry_again(interaction, csrf, typed, WRONG_USER_CODE)
    }

    /// The consent form of a device verification: record the decision on
    /// the device code, then tell the user to go back to their device.
    pub(super) async fn device_decision(
        &self,
        mut interaction: Interaction,
        user_id: &str,
        form: &[(String, String)],
        now: i64,
    ) -> BrowserReply {
        let Purpose::Device {
            device_hash: Some(device_hash),
        } = interaction.flow.purpose.clone()
        else {
            return BrowserReply::error(400, "Enter the code shown on your device first.");
        };
        let (Some(auth_time), client_id) = (interaction.auth_time, &interaction.request.client_id)
        else {
            return BrowserReply::error(400, "Please sign in first.");
        };
        let approved = match Params(form).get("decision") {
            Ok(Some("allow")) => true,
            Ok(Some("deny")) => false,
            _ => return BrowserReply::error(400, "Please choose Allow or Deny."),
        };
        let client = match self.store.get_client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return BrowserReply::error(400, "The app on your device is no longer registered.");
            }
            Err(e) => return BrowserReply::unavailable(e),
        };
        let decision = if approved {
            DeviceDecision::Approved {
                user_id: user_id.to_owned(),
                auth_time,
                amr: interaction.amr.clone(),
            }
        } else {
            DeviceDecision::Denied
        };
        match self
            .store
            .decide_device_code(&device_hash, &decision, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return BrowserReply::error(
                    400,
                    "This code can no longer be used: it expired or was already used. Start again on your device.",
                );
            }
            Err(e) => return BrowserReply::unavailable(e),
        }
        if approved {
            // The same consent record as the code flow, so that the user
            // can withdraw it from the connected apps page.
            let previous = match self.store.get_consent(user_id, &client.id).await {
                Ok(c) => c,
                Err(e) => return BrowserReply::unavailable(e),
            };
            let scopes = previous.map_or(interaction.request.scopes.clone(), |c| {
                c.scopes.union(&interaction.request.scopes)
            });
            let consent = Consent {
                user_id: user_id.to_owned(),
                client_id: client.id.clone(),
                scopes,
                granted_at: now,
            };
            // The grant the device will redeem must fit under the per-user cap.
            let (stored, room) = tokio::join!(
                self.store.put_consent(&consent),
                self.make_room(user_id, &client.id, now)
            );
            if let Err(e) = stored {
                return BrowserReply::unavailable(e);
            }
            if room.is_err() {
                return BrowserReply::busy();
            }
        }
        tracing::info!(user = %user_id, client = %client.id, approved, "device decision");
        // The browser's device interaction goes back to the code form
        // (keeping it keeps the count of wrong codes).
        interaction.flow = Flow {
            purpose: Purpose::Device { device_hash: None },
            ..Flow::default()
        };
        interaction.user_id = None;
        interaction.auth_time = None;
        interaction.amr = Vec::new();
        if let Err(e) = self.store.put_interaction(&interaction).await {
            return BrowserReply::unavailable(e);
        }
        BrowserReply::page(Page::DeviceDone {
            client_name: client.name,
            approved,
        })
    }

    /// Takes back a device code's redemption for `grant_id` that was made
    /// (or may have been) without tokens handed out; a failure is logged.
    async fn undo_device(&self, code_hash: &str, grant_id: &str, refresh_hash: Option<&str>) {
        if let Err(undo) = self
            .store
            .undo_device_redemption(code_hash, grant_id, refresh_hash)
            .await
        {
            tracing::error!(grant = %grant_id, error = %undo, "could not undo a device redemption");
        }
    }
}

/// The authorization request a device interaction carries: the device's
/// client and scopes, for the consent page.
fn device_request(client_id: String, scopes: Scopes) -> AuthorizationRequest {
    AuthorizationRequest {
        client_id,
        redirect_uri: String::new(),
        scopes,
        state: None,
        nonce: None,
        code_challenge: None,
        prompt: Default::default(),
        max_age: None,
    }
}
