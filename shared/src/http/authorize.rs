//! The authorize function: `GET /authorize` and the login and consent forms.

use std::sync::Arc;

use http::Method;

use super::{AUTHORIZE, CONSENT, LOGIN, Request, Response, Route, pages, wire};
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
            (&Method::POST, LOGIN | CONSENT) => {
                let form = match wire::form(&req) {
                    Ok(f) => f,
                    Err(e) => return self.respond(error_page(400, &e.description), 303),
                };
                let reply = if req.uri().path() == LOGIN {
                    self.services.login(&form, &cookies).await
                } else {
                    self.services.consent(&form, &cookies).await
                };
                // 303: the browser follows a POST's redirect with a GET.
                self.respond(reply, 303)
            }
            _ => super::not_routed(ROUTES, &req),
        }
    }

    fn respond(&self, reply: BrowserReply, redirect_status: u16) -> Response {
        let secure = self.services.config.secure_cookies();
        let cookies: Vec<(&str, String)> = reply
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
            Reply::Redirect(location) => wire::redirect(redirect_status, &location, &cookies),
            Reply::Page(page) => {
                let (status, body) = pages::render(&page);
                wire::html(status, body, &cookies)
            }
        }
    }
}

fn error_page(status: u16, message: &str) -> BrowserReply {
    BrowserReply {
        reply: Reply::Page(Page::Error {
            status,
            message: message.to_owned(),
        }),
        set_cookies: Vec::new(),
    }
}
