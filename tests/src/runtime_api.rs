//! A local Lambda Runtime API (the 2018-06-01 interface a `bootstrap`
//! polls): enough of it to start a function binary, hand it events one at
//! a time and collect what it answers, so that tests prove the binary
//! itself and not only its router, and the benchmark times its cold start
//! (an event can be queued before the process starts).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";

/// What a function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    /// The function reported an error (`errorType`, `errorMessage`).
    Error(Value),
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Bytes)>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<Value>,
    next_id: u64,
    /// When the first `next` call arrived: the function finished its init.
    first_poll: Option<std::time::Instant>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    polled: Arc<Notify>,
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let arrived = Arc::new(Notify::new());
        let polled = Arc::new(Notify::new());
        let (s, a, p) = (state.clone(), arrived.clone(), polled.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, a, p) = (s.clone(), a.clone(), p.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (s, a, p) = (s.clone(), a.clone(), p.clone());
                        async move { Ok::<_, Infallible>(route(req, &s, &a, &p).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(RuntimeApi {
            addr,
            state,
            arrived,
            polled,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a function run under this API.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The environment Lambda gives a function, plus this API's address.
    pub fn lambda_env(&self, function_name: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Waits until the function polls for its first event (init is over) or
    /// reports an init error.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.polled.notified();
            {
                let st = self.state.lock().map_err(|e| e.to_string())?;
                if let Some(err) = &st.init_error {
                    return Err(format!("init error: {err}"));
                }
                if st.first_poll.is_some() {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err("the function never polled for an event".into());
            }
        }
    }

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Result<Outcome, String> {
        let rx = self.submit(event)?;
        Self::answer(rx, timeout).await
    }

    /// Queues `event` for the function's next poll; the receiver gets its answer.
    pub fn submit(&self, event: &Value) -> Result<oneshot::Receiver<Outcome>, String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.state.lock().map_err(|e| e.to_string())?;
            st.next_id += 1;
            let id = format!("req-{}", st.next_id);
            st.waiting.insert(id.clone(), tx);
            st.queue.push_back((id, Bytes::from(event.to_string())));
        }
        self.arrived.notify_one();
        Ok(rx)
    }

    /// Waits for the answer to a submitted event.
    pub async fn answer(
        rx: oneshot::Receiver<Outcome>,
        timeout: Duration,
    ) -> Result<Outcome, String> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err("the invocation was dropped".into()),
            Err(_) => Err("the function did not answer in time".into()),
        }
    }

    /// The init error the function reported, if any.
    pub fn init_error(&self) -> Option<Value> {
        self.state.lock().ok().and_then(|st| st.init_error.clone())
    }
}

async fn route(
    req: Request<Incoming>,
    state: &Mutex<State>,
    arrived: &Notify,
    polled: &Notify,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(StatusCode::NOT_FOUND, Bytes::new(), None);
    };
    if method == Method::GET && rest == "/invocation/next" {
        if let Ok(mut st) = state.lock() {
            st.first_poll.get_or_insert_with(std::time::Instant::now);
        }
        polled.notify_waiters();
        loop {
            let notified = arrived.notified();
            let next = state.lock().ok().and_then(|mut st| st.queue.pop_front());
            if let Some((id, body)) = next {
                return reply(StatusCode::OK, body, Some(&id));
            }
            notified.await;
        }
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if method == Method::POST && rest == "/init/error" {
        if let Ok(mut st) = state.lock() {
            st.init_error = Some(value);
        }
        polled.notify_waiters();
        return reply(StatusCode::ACCEPTED, Bytes::new(), None);
    }
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    if method == Method::POST && parts.len() == 3 && parts[0] == "invocation" {
        let outcome = match parts[2] {
            "response" => Outcome::Response(value),
            "error" => Outcome::Error(value),
            _ => return reply(StatusCode::NOT_FOUND, Bytes::new(), None),
        };
        let waiter = state
            .lock()
            .ok()
            .and_then(|mut st| st.waiting.remove(parts[1]));
        if let Some(tx) = waiter {
            let _ = tx.send(outcome);
        }
        return reply(StatusCode::ACCEPTED, Bytes::new(), None);
    }
    reply(StatusCode::NOT_FOUND, Bytes::new(), None)
}

fn reply(status: StatusCode, body: Bytes, request_id: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(id) = request_id {
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d + Duration::from_secs(30))
            .unwrap_or_default()
            .as_millis();
        builder = builder
            .header("lambda-runtime-aws-request-id", id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:tokenfn-local",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            );
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// An API Gateway HTTP API (payload 2.0) event, as the functions receive it.
pub fn api_gateway_event(
    method: &str,
    path: &str,
    query: &str,
    headers: Value,
    body: Option<&str>,
) -> Value {
    let mut e = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5",
            "domainName": "id.example.com", "domainPrefix": "id",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "192.0.2.10", "userAgent": "tokenfn" },
            "requestId": "req", "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "26/Nov/2026:14:00:00 +0000", "timeEpoch": 1_795_701_600_000u64
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
        e["isBase64Encoded"] = json!(true);
    }
    e
}
