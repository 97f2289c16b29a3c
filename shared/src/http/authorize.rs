//! The authorize function: `GET /authorize`, the login and consent forms,
//! the device verification page (RFC 8628 §3.3), the connected apps page
//! and the playground.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::Method;

use super::{
    ACCOUNT_APPS, ACCOUNT_APPS_REVOKE, AUTHORIZE, CONSENT, DEVICE, LOGIN, PLAYGROUND,
    PLAYGROUND_INTROSPECT, Request, Response, Route, pages, wire,
};
use crate::http::pages::Skin;
use crate::service::playground::PLAYGROUND_CLIENT;
use crate::service::{BrowserReply, Page, Reply, Services};

pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: AUTHORIZE,
    },
    Route {
        method: Method::POST,
        path: LOGIN,
    },
    Route {
        method: Method::POST,
        path: CONSENT,
    },
    Route {
        method: Method::GET,
        path: DEVICE,
    },
    Route {
        method: Method::POST,
        path: DEVICE,
    },
    Route {
        method: Method::GET,
        path: ACCOUNT_APPS,
    },
    Route {
        method: Method::POST,
        path: ACCOUNT_APPS_REVOKE,
    },
    Route {
        method: Method::GET,
        path: PLAYGROUND,
    },
    Route {
        method: Method::POST,
        path: PLAYGROUND_INTROSPECT,
    },
];

pub struct AuthorizeRouter {
    services: Arc<Services>,
    skin: Skin,
    /// Whether this process has seen the playground's client registered
    /// at this issuer (one store read per container, not per view).
    playground_ready: AtomicBool,
}

impl AuthorizeRouter {
    pub fn new(services: Arc<Services>) -> Self {
        let skin = Skin::new(&services.config.look);
        Self {
            services,
            skin,
            playground_ready: AtomicBool::new(false),
        }
    }

    pub async fn handle(&self, req: Request) -> Response {
        let id = wire::request_id(&req);
        let cookies = wire::cookies(&req);
        match (req.method(), req.uri().path()) {
            (_, PLAYGROUND | PLAYGROUND_INTROSPECT) if !self.services.config.playground => {
                self.page(404, "There is no page at this address.", &id, &[])
            }
            (&Method::GET, PLAYGROUND) => self.playground(&id).await,
            (&Method::POST, PLAYGROUND_INTROSPECT) => {
                let form = match wire::form(&req) {
                    Ok(f) => f,
                    Err(e) => return wire::oauth_error(&e, false),
                };
                let answer = match wire::required(&form, "token") {
                    Ok(token) => self.services.playground_introspect(token).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(answer) => wire::json_no_store(200, &answer),
                    Err(e) => wire::oauth_error(&e, false),
                }
            }
            (&Method::GET, AUTHORIZE) => {
                let reply = self.services.authorize(&wire::query(&req), &cookies).await;
                self.respond(reply, 302, &id)
            }
            (&Method::GET, DEVICE) => {
                let reply = self
                    .services
                    .device_page(&wire::query(&req), &cookies)
                    .await;
                self.respond(reply, 303, &id)
            }
            (&Method::GET, ACCOUNT_APPS) => {
                let reply = self.services.account_apps(&cookies).await;
                self.respond(reply, 303, &id)
            }
            (&Method::POST, LOGIN | CONSENT | DEVICE | ACCOUNT_APPS_REVOKE) => {
                let form = match wire::form(&req) {
                    Ok(f) => f,
                    Err(e) => return self.page(400, &e.description, &id, &[]),
                };
                let addr = wire::source_addr(&req);
                let reply = match req.uri().path() {
                    LOGIN => self.services.login(&form, &cookies, addr).await,
                    CONSENT => self.services.consent(&form, &cookies).await,
                    DEVICE => self.services.device_enter(&form, &cookies, addr).await,
                    _ => self.services.account_revoke(&form, &cookies).await,
                };
                // 303: the browser follows a POST's redirect with a GET.
                self.respond(reply, 303, &id)
            }
            _ => self.not_routed(&req, &id),
        }
    }

    /// The playground page, its client registered (or its redirect URI
    /// moved to this issuer) on the way.
    async fn playground(&self, id: &str) -> Response {
        if !self.playground_ready.load(Ordering::Relaxed) {
            if let Err(e) = self.services.ensure_playground_client().await {
                tracing::warn!(request_id = id, error = %e, "playground client unavailable");
                return self.page(
                    503,
                    "The playground is unavailable; try again later.",
                    id,
                    &[],
                );
            }
            self.playground_ready.store(true, Ordering::Relaxed);
        }
        let html = pages::playground(&self.skin, &self.services.config.issuer, PLAYGROUND_CLIENT);
        wire::html(200, html, self.skin.playground_csp(), &[])
    }

    /// An error page with the request's id.
    fn page(&self, status: u16, message: &str, id: &str, extra: &[(&str, String)]) -> Response {
        tracing::info!(request_id = id, status, message, "error page");
        let page = Page::Error {
            status,
            message: message.to_owned(),
        };
        let (status, body) = pages::render(&page, &self.skin, id);
        wire::html(status, body, self.skin.csp(), extra)
    }

    /// The browser pages' 404 and 405 are pages too (with `Allow` on a 405).
    fn not_routed(&self, req: &Request, id: &str) -> Response {
        let allowed = super::allowed_methods(ROUTES, req);
        if allowed.is_empty() {
            self.page(404, "There is no page at this address.", id, &[])
        } else {
            self.page(
                405,
                "This page cannot be opened this way. Go back to the app and start again.",
                id,
                &[("allow", allowed.join(", "))],
            )
        }
    }

    fn respond(&self, reply: BrowserReply, redirect_status: u16, id: &str) -> Response {
        let secure = self.services.config.secure_cookies();
        let mut headers: Vec<(&str, String)> = reply
            .set_cookies
            .iter()
            .map(|c| {
                (
                    "set-cookie",
                    wire::set_cookie(c.name, &c.value, c.max_age, secure),
                )
            })
            .collect();
        match reply.reply {
            Reply::Redirect(location) => wire::redirect(redirect_status, &location, &headers),
            Reply::Page(page) => {
                if let Page::Error { status, message } = &page {
                    tracing::info!(request_id = id, status, message, "error page");
                }
                let (mut status, body) = pages::render(&page, &self.skin, id);
                if let Some(wait) = reply.retry_after {
                    // RFC 6585 §4.
                    status = 429;
                    headers.push(("retry-after", wait.to_string()));
                }
                wire::html(status, body, self.skin.csp(), &headers)
            }
        }
    }
}
