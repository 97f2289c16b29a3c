//! A proxy in front of the AWS emulator (moto's server). It records every
//! call (service operation, start, end) so that tests and the benchmark can
//! count the round trips a grant makes, and it injects faults per
//! operation or per call (only the Nth call of an operation): error
//! statuses, throttling, slow answers, dropped connections, and calls that
//! moto applies but whose answer is lost on the way back.
//!
//! Run as a process of its own (`tokenfn-bench aws-proxy`), it shows the
//! calls on `GET /__proxy/calls` and forgets them on `POST /__proxy/reset`.
//! The AWS JSON protocols post to `/`, so these paths never clash with a call.

use std::collections::HashMap;
use std::net::SocketAddr;
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
use tokio::net::TcpListener;

/// One call that went through: `op` is the `X-Amz-Target` operation, e.g.
/// `DynamoDB_20120810.GetItem` or `TrentService.Sign`; times are in
/// microseconds since the proxy started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    pub op: String,
    pub start_us: u64,
    pub end_us: u64,
}

impl Call {
    /// The operation without its service prefix (`GetItem`, `Sign`).
    pub fn name(&self) -> &str {
        self.op.rsplit('.').next().unwrap_or(&self.op)
    }
}

/// What to do instead of forwarding a call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and an AWS JSON error of this `__type`.
    Error { status: u16, kind: &'static str },
    /// Forward, but only after this long (past the SDK's timeouts).
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
    /// Forward to moto (which applies the call), then lose its answer: close
    /// the connection, or answer this status instead. A commit whose
    /// response never arrives.
    Lost { status: Option<u16> },
}

impl Fault {
    pub fn throttle() -> Fault {
        Fault::Error {
            status: 400,
            kind: "ThrottlingException",
        }
    }
    pub fn server_error() -> Fault {
        Fault::Error {
            status: 500,
            kind: "InternalServerError",
        }
    }
}

/// A fault for one call: the `nth` call of `op` counted from when it was armed.
struct OneShot {
    op: String,
    nth: usize,
    seen: usize,
    fault: Fault,
}

struct State {
    epoch: Instant,
    calls: Vec<Call>,
    /// Operation name (without prefix) -> fault applied to every call of it.
    faults: HashMap<String, Fault>,
    one_shots: Vec<OneShot>,
    /// Calls received and not yet answered (or dropped).
    in_flight: usize,
}

impl State {
    /// The fault for the call of `name` arriving now, counting it against
    /// the armed one-shots; a one-shot is spent when its call comes.
    fn fault_for(&mut self, name: &str) -> Option<Fault> {
        let mut hit = None;
        self.one_shots.retain_mut(|s| {
            if s.op != name {
                return true;
            }
            s.seen += 1;
            if s.seen == s.nth && hit.is_none() {
                hit = Some(s.fault.clone());
                return false;
            }
            true
        });
        hit.or_else(|| self.faults.get(name).cloned())
    }
}

#[derive(Clone)]
pub struct AwsProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl AwsProxy {
    /// Listens on a free loopback port and forwards to `upstream` (http://host:port).
    pub async fn start(upstream: &str) -> std::io::Result<AwsProxy> {
        Self::start_on("127.0.0.1:0", upstream).await
    }

    /// Listens on `listen` (host:port) and forwards to `upstream`.
    pub async fn start_on(listen: &str, upstream: &str) -> std::io::Result<AwsProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            epoch: Instant::now(),
            calls: Vec::new(),
            faults: HashMap::new(),
            one_shots: Vec::new(),
            in_flight: 0,
        }));
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (st, upstream, client) = (st.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (st, upstream, client) = (st.clone(), upstream.clone(), client.clone());
                        async move { forward(req, &st, &upstream, &client).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(AwsProxy { addr, state })
    }

    /// The value of `AWS_ENDPOINT_URL` for a process that should go through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets the calls recorded so far.
    pub fn clear_calls(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.calls.clear();
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state
            .lock()
            .map(|st| st.calls.clone())
            .unwrap_or_default()
    }

    /// Applies `fault` to every call of `op` (e.g. "Sign", "TransactWriteItems")
    /// until `heal` is called.
    pub fn break_op(&self, op: &str, fault: Fault) {
        if let Ok(mut st) = self.state.lock() {
            st.faults.insert(op.to_owned(), fault);
        }
    }

    /// Applies `fault` to the `nth` call (1-based) of `op` from now on, and
    /// to no other call.
    pub fn break_nth(&self, op: &str, nth: usize, fault: Fault) {
        if let Ok(mut st) = self.state.lock() {
            st.one_shots.push(OneShot {
                op: op.to_owned(),
                nth,
                seen: 0,
                fault,
            });
        }
    }

    /// Applies `fault` to the next call of `op` only.
    pub fn break_next(&self, op: &str, fault: Fault) {
        self.break_nth(op, 1, fault);
    }

    /// Removes every fault, for all calls and for single calls.
    pub fn heal(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.faults.clear();
            st.one_shots.clear();
        }
    }

    /// Whether a one-shot fault is still waiting for its call.
    pub fn armed(&self) -> bool {
        self.state
            .lock()
            .map(|st| !st.one_shots.is_empty())
            .unwrap_or(false)
    }

    /// Waits until no call is in flight through the proxy (a delayed call
    /// has reached moto or been abandoned), at most `limit`.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let busy = self.state.lock().map(|st| st.in_flight).unwrap_or(0);
            if busy == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Counts a call in flight until dropped, whether answered or abandoned
/// (hyper drops the handler when the caller closes the connection).
struct InFlight<'a>(&'a Mutex<State>);

impl<'a> InFlight<'a> {
    fn enter(state: &'a Mutex<State>) -> Self {
        if let Ok(mut st) = state.lock() {
            st.in_flight += 1;
        }
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.lock() {
            st.in_flight -= 1;
        }
    }
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

async fn forward(
    req: Request<Incoming>,
    state: &Mutex<State>,
    upstream: &str,
    client: &Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/__proxy/calls") => {
            let calls = state.lock().map(|st| st.calls.clone()).unwrap_or_default();
            let body = serde_json::to_vec(&calls).map_err(std::io::Error::other)?;
            return Ok(Response::new(Full::new(Bytes::from(body))));
        }
        (&Method::POST, "/__proxy/reset") => {
            if let Ok(mut st) = state.lock() {
                st.calls.clear();
            }
            return Ok(Response::new(Full::new(Bytes::new())));
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
    let name = op.rsplit('.').next().unwrap_or(&op).to_owned();
    let _in_flight = InFlight::enter(state);
    let fault = state.lock().ok().and_then(|mut st| st.fault_for(&name));
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();

    let response = match fault {
        Some(Fault::Error { status, kind }) => error_response(status, kind),
        // An error here makes hyper close the connection without a response.
        Some(Fault::Drop) => {
            record(state, op, start);
            return Err(std::io::Error::other("dropped by the test proxy"));
        }
        other => {
            if let Some(Fault::Delay(d)) = other {
                tokio::time::sleep(d).await;
            }
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
            let upstream_req = builder
                .body(Full::new(body))
                .map_err(std::io::Error::other)?;
            match client.request(upstream_req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let bytes = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    match other {
                        Some(Fault::Lost { status: None }) => {
                            record(state, op, start);
                            return Err(std::io::Error::other("answer lost by the test proxy"));
                        }
                        Some(Fault::Lost {
                            status: Some(status),
                        }) => error_response(status, "InternalServerError"),
                        _ => Response::from_parts(parts, Full::new(bytes)),
                    }
                }
                Err(e) => Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Full::new(Bytes::from(e.to_string())))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
            }
        }
    };
    record(state, op, start);
    Ok(response)
}

fn error_response(status: u16, kind: &str) -> Response<Full<Bytes>> {
    let body = format!(r#"{{"__type":"{kind}","message":"injected by the test proxy"}}"#);
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", kind)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn record(state: &Mutex<State>, op: String, start: Instant) {
    if let Ok(mut st) = state.lock() {
        let since = |t: Instant| t.duration_since(st.epoch).as_micros() as u64;
        let call = Call {
            op,
            start_us: since(start),
            end_us: since(Instant::now()),
        };
        st.calls.push(call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start_ms: u64, end_ms: u64) -> Call {
        Call {
            op: "X.Op".into(),
            start_us: start_ms * 1000,
            end_us: end_ms * 1000,
        }
    }

    #[test]
    fn overlapping_calls_are_one_round() {
        assert_eq!(sequential_rounds(&[]), 0);
        assert_eq!(sequential_rounds(&[call(0, 10), call(1, 9)]), 1);
        // Reads, then a write beside a signature, then a second signature.
        let calls = [
            call(0, 10),
            call(0, 8),
            call(11, 30),
            call(11, 15),
            call(16, 20),
        ];
        assert_eq!(sequential_rounds(&calls), 3);
        assert_eq!(calls[0].name(), "Op");
    }
}
