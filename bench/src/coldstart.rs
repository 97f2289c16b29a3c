//! Cold starts: each Lambda binary started under the local Runtime API, the
//! time from spawning the process to its first answer, for a request that
//! needs no AWS call. Starts alternate with the hello-world binary's, so
//! both see the same machine. With a counting AWS proxy, one more start per
//! function counts the calls its init makes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::aws_proxy::{ProxyClient, sequential_rounds};
use tokenfn_blackbox::runtime_api::{Outcome, RuntimeApi, api_gateway_event};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long calls that init started in the background are given to finish.
const SETTLE: Duration = Duration::from_millis(500);

pub struct Function {
    pub name: String,
    pub path: PathBuf,
}

impl Function {
    /// `NAME=PATH`.
    pub fn parse(s: &str) -> Result<Function, String> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PATH, got {s:?}"))?;
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!("{}: no such binary", path.display()));
        }
        Ok(Function {
            name: name.to_owned(),
            path,
        })
    }
}

/// The request each function answers without AWS: discovery's metadata
/// (built at init), and for the others a request they refuse before any
/// lookup (no client, no token).
pub fn event_for(name: &str) -> Value {
    match name {
        "discovery" => event("GET", "/.well-known/openid-configuration", None),
        "authorize" => event("GET", "/authorize", None),
        "token" => event("POST", "/oauth/token", Some("grant_type=")),
        "refresh" => event("POST", "/oauth/refresh", Some("")),
        "revoke" => event("POST", "/oauth/revoke", Some("")),
        _ => event("GET", "/", None),
    }
}

fn event(method: &str, path: &str, body: Option<&str>) -> Value {
    let mut headers = json!({ "host": "id.example.com" });
    if body.is_some() {
        headers["content-type"] = json!("application/x-www-form-urlencoded");
    }
    api_gateway_event(method, path, "", headers, body)
}

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(api: &RuntimeApi, f: &Function) -> Result<Running, String> {
    let mut cmd = Command::new(&f.path);
    cmd.envs(api.lambda_env(&f.name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", f.path.display()))?;
    Ok(Running { child })
}

/// One cold start: (time to the first answer, the answer's status code).
async fn one_start(f: &Function) -> Result<(Duration, u16), String> {
    let api = RuntimeApi::start()
        .await
        .map_err(|e| format!("cannot start the Runtime API: {e}"))?;
    // Queued before the process exists: its first poll finds it.
    let rx = api.submit(&event_for(&f.name))?;
    let t0 = Instant::now();
    let _running = spawn(&api, f)?;
    let outcome = RuntimeApi::answer(rx, TIMEOUT).await;
    let took = t0.elapsed();
    let outcome = outcome.map_err(|e| match api.init_error() {
        Some(init) => format!("{}: init failed: {init}", f.name),
        None => format!("{}: {e}", f.name),
    })?;
    match outcome {
        Outcome::Response(v) => Ok((took, v["statusCode"].as_u64().unwrap_or(0) as u16)),
        Outcome::Error(e) => Err(format!("{}: the function reported an error: {e}", f.name)),
    }
}

/// What a start costs in AWS calls: during init, and for the request.
async fn count_calls(f: &Function, proxy: &ProxyClient) -> Result<Value, String> {
    let api = RuntimeApi::start()
        .await
        .map_err(|e| format!("cannot start the Runtime API: {e}"))?;
    proxy.reset().await?;
    let _running = spawn(&api, f)?;
    api.wait_ready(TIMEOUT)
        .await
        .map_err(|e| format!("{}: {e}", f.name))?;
    // Init's own calls include what it started and did not wait for (the
    // KMS signer's read of its public keys): let them land first.
    tokio::time::sleep(SETTLE).await;
    let init = proxy.calls().await?;
    proxy.reset().await?;
    api.invoke(&event_for(&f.name), TIMEOUT)
        .await
        .map_err(|e| format!("{}: {e}", f.name))?;
    let request = proxy.calls().await?;
    Ok(json!({
        "init_calls": init.len(),
        "init_rounds": sequential_rounds(&init),
        "init_ops": init.iter().map(|c| c.name().to_owned()).collect::<Vec<_>>(),
        "request_calls": request.len(),
    }))
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort_unstable();
    let n = samples.len();
    if n == 0 {
        return 0.0;
    }
    let mid = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    };
    mid.as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `runs` starts of every function, each preceded by a start of
/// `hello`, and returns the medians (JSON).
pub async fn run(
    functions: &[Function],
    hello: &Function,
    runs: usize,
    proxy: Option<&ProxyClient>,
) -> Result<Value, String> {
    let mut hello_samples = Vec::new();
    let mut results = Vec::new();
    // One start of each first, not counted: the page cache holds the binaries.
    one_start(hello).await?;
    for f in functions {
        one_start(f).await?;
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); functions.len()];
    let mut statuses: Vec<u16> = vec![0; functions.len()];
    let mut paired_hello: Vec<Vec<Duration>> = vec![Vec::new(); functions.len()];
    for _ in 0..runs {
        for (i, f) in functions.iter().enumerate() {
            let (h, _) = one_start(hello).await?;
            hello_samples.push(h);
            paired_hello[i].push(h);
            let (d, status) = one_start(f).await?;
            samples[i].push(d);
            statuses[i] = status;
        }
    }
    let hello_median = median_ms(&mut hello_samples);
    for (i, f) in functions.iter().enumerate() {
        let median = median_ms(&mut samples[i]);
        let paired = median_ms(&mut paired_hello[i]);
        let mut entry = json!({
            "function": f.name,
            "runs": runs,
            "status": statuses[i],
            "median_ms": round3(median),
            "hello_median_ms": round3(paired),
            "over_hello_ms": round3(median - paired),
        });
        if let Some(proxy) = proxy {
            entry["aws"] = count_calls(f, proxy).await?;
        }
        results.push(entry);
    }
    Ok(json!({
        "runs": runs,
        "hello_median_ms": round3(hello_median),
        "functions": results,
    }))
}

pub fn text(report: &Value) -> String {
    let mut out = format!(
        "cold start, spawn to first answer, median of {} (hello: {:.3} ms)\n",
        report["runs"],
        report["hello_median_ms"].as_f64().unwrap_or(0.0)
    );
    for f in report["functions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<10} {:>8.3} ms  hello {:>7.3} ms  +{:.3} ms  (HTTP {})",
            f["function"].as_str().unwrap_or(""),
            f["median_ms"].as_f64().unwrap_or(0.0),
            f["hello_median_ms"].as_f64().unwrap_or(0.0),
            f["over_hello_ms"].as_f64().unwrap_or(0.0),
            f["status"],
        ));
        if let Some(aws) = f.get("aws") {
            out.push_str(&format!(
                "  init: {} AWS calls in {} rounds {}, request: {} calls",
                aws["init_calls"], aws["init_rounds"], aws["init_ops"], aws["request_calls"]
            ));
        }
        out.push('\n');
    }
    out
}
