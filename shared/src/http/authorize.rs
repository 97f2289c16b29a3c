//! The authorize function: `GET /authorize`, the login and consent forms,
//! the device verification page (RFC 8628 §3.3) and the connected apps page.

use std::sync::Arc;

use http::Method;

use super::{
    ACCOUNT_APPS, ACCOUNT_APPS_REVOKE, AUTHORIZE, CONSENT, DEVICE, LOGIN, Request, Response, Route,
    pages, wire,
};
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
];

pub struct AuthorizeRouter {
    services: Arc<Services>,
}

impl AuthorizeRouter {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    pub async fn handle(&self, req: Request) -> Response {
        let cookies = wire::cookies(&req);
        match (req.method(), req.uri().path()) {
            (&Method::GET, AUTHORIZE) => {
                let reply = self.services.authorize(&wire::query(&req), &cookies).await;
                self.respond(reply, 302)
            }
            (&Method::GET, DEVICE) => {
                let reply = self
                    .services
                    .device_page(&wire::query(&req), &cookies)
                    .await;
                self.respond(reply, 303)
            }
            (&Method::GET, ACCOUNT_APPS) => {
                let reply = self.services.account_apps(&cookies).await;
                self.respond(reply, 303)
            }
            (&Method::POST, LOGIN | CONSENT | DEVICE | ACCOUNT_APPS_REVOKE) => {
                let form = match wire::form(&req) {
                    Ok(f) => f,
                    Err(e) => return self.respond(error_page(400, &e.description), 303),
                };
                let addr = wire::source_addr(&req);
                let reply = match req.uri().path() {
                    LOGIN => self.services.login(&form, &cookies, addr).await,
                    CONSENT => self.services.consent(&form, &cookies).await,
                    DEVICE => self.services.device_enter(&form, &cookies, addr).await,
                    _ => self.services.account_revoke(&form, &cookies).await,
                };
                // 303: the browser follows a POST's redirect with a GET.
                self.respond(reply, 303)
            }
            _ => not_routed(&req),
        }
    }

    fn respond(&self, reply: BrowserReply, redirect_status: u16) -> Response {
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
                let (mut status, body) = pages::render(&page);
                if let Some(wait) = reply.retry_after {
                    // RFC 6585 §4.
                    status = 429;
                    headers.push(("retry-after", wait.to_string()));
                }
                wire::html(status, body, &headers)
            }
        }
    }
}

/// The browser pages' 404 and 405 are pages too (with `Allow` on a 405).
fn not_routed(req: &Request) -> Response {
    let allowed = super::allowed_methods(ROUTES, req);
    let (status, message, extra) = if allowed.is_empty() {
        (404, "There is no page at this address.", Vec::new())
    } else {
        (
            405,
            "This page cannot be opened this way. Go back to the app and start again.",
            vec![("allow", allowed.join(", "))],
        )
    };
    let (status, body) = pages::render(&Page::Error {
        status,
        message: message.to_owned(),
    });
    wire::html(status, body, &extra)
}

fn error_page(status: u16, message: &str) -> BrowserReply {
    BrowserReply {
        reply: Reply::Page(Page::Error {
            status,
            message: message.to_owned(),
        }),
        set_cookies: Vec::new(),
        retry_after: None,
    }
}
