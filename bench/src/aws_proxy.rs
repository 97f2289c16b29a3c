//! A counting proxy in front of the AWS emulator (moto's server), run as its
//! own process (`tokenfn-bench aws-proxy`) so that servers and Lambda
//! binaries can be pointed at it with `AWS_ENDPOINT_URL`. It records every
//! call (the `X-Amz-Target` operation, when it started and ended) and shows
//! them on `GET /__bench/calls`; `POST /__bench/reset` forgets them. The AWS
//! JSON protocols post to `/`, so these paths never clash with a real call.
//!
//! The same idea as the black-box tests' recording proxy
//! (tests/src/aws_proxy.rs), without its fault injection.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::flow::chain;

/// One recorded call, times in microseconds since the proxy started.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub op: String,
    pub start_us: u64,
    pub end_us: u64,
}

struct State {
    epoch: Instant,
    calls: Vec<Call>,
}

/// Serves until the process is killed.
pub async fn serve(listen: &str, upstream: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("aws-proxy listening on http://{addr}");
    let state = Arc::new(Mutex::new(State {
        epoch: Instant::now(),
        calls: Vec::new(),
    }));
    let upstream: Arc<str> = upstream.trim_end_matches('/').into();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let (st, upstream, client) = (state.clone(), upstream.clone(), client.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (st, upstream, client) = (st.clone(), upstream.clone(), client.clone());
                async move { Ok::<_, Infallible>(handle(req, &st, &upstream, &client).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: &Mutex<State>,
    upstream: &str,
    client: &Client<HttpConnector, Full<Bytes>>,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/__bench/calls") => {
            let calls: Vec<Value> = state
                .lock()
                .map(|st| {
                    st.calls
                        .iter()
                        .map(|c| json!({"op": c.op, "start_us": c.start_us, "end_us": c.end_us}))
                        .collect()
                })
                .unwrap_or_default();
            return reply(StatusCode::OK, json!({ "calls": calls }).to_string());
        }
        (&Method::POST, "/__bench/reset") => {
            if let Ok(mut st) = state.lock() {
                st.calls.clear();
            }
            return reply(StatusCode::OK, "{}".into());
        }
        _ => {}
    }
    let start = Instant::now();
    let op = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut builder = Request::builder().method(parts.method).uri(uri);
    for (k, v) in parts.headers.iter() {
        if k != "host" {
            builder = builder.header(k, v);
        }
    }
    let response = match builder.body(Full::new(body)) {
        Err(e) => reply(StatusCode::BAD_GATEWAY, e.to_string()),
        Ok(upstream_req) => match client.request(upstream_req).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Response::from_parts(parts, Full::new(bytes))
            }
            Err(e) => reply(StatusCode::BAD_GATEWAY, chain(&e)),
        },
    };
    if let Ok(mut st) = state.lock() {
        let since = |t: Instant| t.duration_since(st.epoch).as_micros() as u64;
        let call = Call {
            op,
            start_us: since(start),
            end_us: since(Instant::now()),
        };
        st.calls.push(call);
    }
    response
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Talks to a running proxy.
#[derive(Clone)]
pub struct ProxyClient {
    base: String,
    http: reqwest::Client,
}

impl ProxyClient {
    pub fn new(base: &str) -> Result<ProxyClient, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ProxyClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub async fn reset(&self) -> Result<(), String> {
        let url = format!("{}/__bench/reset", self.base);
        self.http
            .post(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("the AWS proxy at {url}: {}", chain(&e)))?;
        Ok(())
    }

    pub async fn calls(&self) -> Result<Vec<Call>, String> {
        let url = format!("{}/__bench/calls", self.base);
        let body: Value = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("the AWS proxy at {url}: {}", chain(&e)))?
            .bytes()
            .await
            .map_err(|e| format!("the AWS proxy at {url}: {}", chain(&e)))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
        Ok(body["calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| Call {
                        op: c["op"].as_str().unwrap_or("").to_owned(),
                        start_us: c["start_us"].as_u64().unwrap_or(0),
                        end_us: c["end_us"].as_u64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// The operation without its service prefix (`GetItem`, `Sign`).
pub fn op_name(op: &str) -> &str {
    op.rsplit('.').next().unwrap_or(op)
}

/// How many round trips the calls make one after another: calls that
/// overlap in time are one round; a call that starts after another ended
/// is a round later.
pub fn sequential_rounds(calls: &[Call]) -> usize {
    let mut sorted: Vec<&Call> = calls.iter().collect();
    sorted.sort_by_key(|c| c.start_us);
    let mut depth: Vec<usize> = Vec::with_capacity(sorted.len());
    for (i, c) in sorted.iter().enumerate() {
        let before = (0..i)
            .filter(|&j| sorted[j].end_us <= c.start_us)
            .map(|j| depth[j])
            .max()
            .unwrap_or(0);
        depth.push(before + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start_us: u64, end_us: u64) -> Call {
        Call {
            op: "X.Op".into(),
            start_us,
            end_us,
        }
    }

    #[test]
    fn overlapping_calls_are_one_round() {
        assert_eq!(sequential_rounds(&[]), 0);
        assert_eq!(sequential_rounds(&[call(0, 10), call(1, 9)]), 1);
        let calls = [
            call(0, 10),
            call(0, 8),
            call(11, 30),
            call(11, 15),
            call(16, 20),
        ];
        assert_eq!(sequential_rounds(&calls), 3);
        assert_eq!(op_name("DynamoDB_20120810.GetItem"), "GetItem");
    }
}
