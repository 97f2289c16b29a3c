//! `tokenfn serve`: every function's router behind one local HTTP server,
//! on the embedded store and a local key.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokenfn_core::http::pages::Skin;
use tokenfn_core::http::{FUNCTIONS, Handler, Request, Response, Route, not_routed, wire};
use tokenfn_core::service::Services;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::demo;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Issuer URL, when the server is reached through a proxy or a domain.
    #[arg(long, env = "TOKENFN_ISSUER")]
    issuer: Option<String>,
}

/// Every router of every function, mounted by path.
pub struct LocalServer {
    routers: Vec<(&'static [Route], Arc<dyn Handler>)>,
    /// The authorize function's router, whose 404 is a page for browsers.
    pages: Arc<dyn Handler>,
    issuer: String,
    skin: Skin,
}

impl LocalServer {
    pub fn new(services: Arc<Services>) -> Self {
        let routers: Vec<_> = FUNCTIONS
            .iter()
            .map(|f| (f.routes, (f.router)(services.clone())))
            .collect();
        let pages = FUNCTIONS
            .iter()
            .zip(&routers)
            .find(|(f, _)| f.name == "authorize")
            .map(|(_, (_, router))| router.clone())
            .expect("the authorize function is one of FUNCTIONS");
        Self {
            routers,
            pages,
            issuer: services.config.issuer.clone(),
            skin: Skin::new(&services.config.look),
        }
    }

    pub async fn handle(&self, req: Request) -> Response {
        let path = req.uri().path();
        let router = self
            .routers
            .iter()
            .find(|(routes, _)| routes.iter().any(|r| r.path == path));
        match router {
            Some((_, router)) => router.handle(req).await,
            None if path == demo::CALLBACK && req.method() == http::Method::GET => {
                demo::callback(&self.issuer, &self.skin, &req)
            }
            None if path != demo::CALLBACK && wants_html(&req) => self.pages.handle(req).await,
            None => not_routed(demo::ROUTES, &req),
        }
    }
}

/// A browser asking for a page (rather than a client asking for JSON).
fn wants_html(req: &Request) -> bool {
    req.headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

pub async fn run(backend: &Backend, args: ServeArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let issuer = args.issuer.unwrap_or_else(|| format!("http://{local}"));
    let (services, first_start) = backend.services(&issuer).await?;
    println!(
        "tokenfn {} on {}",
        env!("CARGO_PKG_VERSION"),
        backend.describe()
    );
    println!("issuer: {issuer}");
    println!(
        "pages: {issuer}{} (device codes), {issuer}{} (a user's connected apps)",
        tokenfn_core::http::DEVICE,
        tokenfn_core::http::ACCOUNT_APPS
    );
    if services.config.playground {
        println!(
            "playground: {issuer}{} (sign in and watch tokens rotate; TOKENFN_PLAYGROUND=off hides it)",
            tokenfn_core::http::PLAYGROUND
        );
    }
    if first_start {
        demo::seed(&services).await?;
    }
    let server = Arc::new(LocalServer::new(services));
    println!("tokenfn listening on http://{local}");

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("shutting down");
                return Ok(());
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(serve_one(&server, req, peer.ip()).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Turns a hyper request into the routers' `http::Request<Bytes>` and back.
/// `peer` is the TCP peer's address: the source address the throttling
/// counts by (never a header the client sent).
async fn serve_one(
    server: &LocalServer,
    req: hyper::Request<Incoming>,
    peer: std::net::IpAddr,
) -> hyper::Response<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(wire::SourceAddr(peer));
    let id = tokenfn_core::domain::secret::new_id().unwrap_or_default();
    parts.extensions.insert(wire::RequestId(id.clone()));
    // The path only: a query string may carry a user code.
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let response = match Limited::new(body, wire::MAX_BODY).collect().await {
        Ok(collected) => {
            server
                .handle(http::Request::from_parts(parts, collected.to_bytes()))
                .await
        }
        Err(_) => wire::json_error(
            413,
            "invalid_request",
            "the body is too large or was cut off",
            &[],
        ),
    };
    tracing::debug!(request_id = %id, %method, %path, status = response.status().as_u16(), "request");
    response.map(Full::new)
}
