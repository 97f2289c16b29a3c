//! The load loop: C workers, each with its own connection (keep-alive) and,
//! for the refresh grant, its own chain of refresh tokens, posting to the
//! token endpoint until the time or the request budget runs out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};

use crate::flow::{self, Credentials};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    RefreshToken,
    ClientCredentials,
}

impl Grant {
    pub fn name(self) -> &'static str {
        match self {
            Grant::RefreshToken => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

pub struct Plan {
    pub base: String,
    pub grant: Grant,
    pub creds: Credentials,
    /// `scope` sent with each client_credentials request, if any.
    pub cc_scope: Option<String>,
    pub concurrency: usize,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub server_pid: Option<u32>,
    pub label: Option<String>,
    /// How many sign-ins run at once while the tokens are fetched.
    pub signin_concurrency: usize,
}

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    pub label: Option<String>,
    pub grant: Grant,
    pub concurrency: usize,
    pub elapsed: Duration,
    pub requests: u64,
    pub ok: u64,
    /// HTTP status (or "transport", "no_refresh_token") -> count.
    pub errors: BTreeMap<String, u64>,
    /// Latencies of every answered request, microseconds, sorted.
    latencies: Vec<u32>,
    pub peak_rss_kib: Option<u64>,
    pub setup: Duration,
    pub sample: Option<Value>,
    pub first_error: Option<String>,
    /// VmHWM after the tokens were fetched, before the loop.
    pub setup_peak_rss_kib: Option<u64>,
    /// Whether VmHWM was reset before the loop (so `peak_rss_kib` is the loop's).
    pub peak_reset: bool,
    /// CPU time used during the loop, as a percentage of one CPU.
    pub server_cpu_pct: Option<f64>,
    pub generator_cpu_pct: Option<f64>,
}

impl Report {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The q-quantile latency in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        f64::from(self.latencies[rank - 1]) / 1000.0
    }

    pub fn json(&self) -> Value {
        json!({
            "label": self.label,
            "grant": self.grant.name(),
            "concurrency": self.concurrency,
            "duration_s": round(self.elapsed.as_secs_f64(), 3),
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "requests_per_s": round(self.rate(), 1),
            "latency_ms": {
                "p50": round(self.quantile_ms(0.50), 3),
                "p90": round(self.quantile_ms(0.90), 3),
                "p99": round(self.quantile_ms(0.99), 3),
                "max": round(self.quantile_ms(1.0), 3),
            },
            "peak_rss_kib": self.peak_rss_kib,
            "peak_rss_is_loop_only": self.peak_reset,
            "setup_peak_rss_kib": self.setup_peak_rss_kib,
            "server_cpu_pct": self.server_cpu_pct.map(|p| round(p, 1)),
            "generator_cpu_pct": self.generator_cpu_pct.map(|p| round(p, 1)),
            "setup_s": round(self.setup.as_secs_f64(), 3),
            "sample_response": self.sample,
            "first_error": self.first_error,
        })
    }

    pub fn text(&self) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            let counts = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            match &self.first_error {
                Some(first) => format!("{counts} (the first: {first})"),
                None => counts,
            }
        };
        let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
        let rss = match (self.peak_rss_kib, self.setup_peak_rss_kib) {
            (Some(peak), Some(setup)) if self.peak_reset => {
                format!(
                    "{} in the loop ({} before it, fetching tokens)",
                    mib(peak),
                    mib(setup)
                )
            }
            (Some(peak), _) => format!("{} (since the server started)", mib(peak)),
            _ => "not measured (no --server-pid)".into(),
        };
        format!(
            "{label}{grant}, concurrency {c}, {secs:.1} s (tokens fetched in {setup:.1} s before)\n  \
             requests    {n} ({ok} ok), {rate:.1}/s\n  \
             latency ms  p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  max {max:.3}\n  \
             errors      {errors}\n  \
             server peak RSS {rss}\n  \
             CPU         server {server_cpu}, generator {generator_cpu} (of one CPU)",
            label = self
                .label
                .as_deref()
                .map(|l| format!("{l}: "))
                .unwrap_or_default(),
            grant = self.grant.name(),
            c = self.concurrency,
            secs = self.elapsed.as_secs_f64(),
            setup = self.setup.as_secs_f64(),
            n = self.requests,
            ok = self.ok,
            rate = self.rate(),
            p50 = self.quantile_ms(0.50),
            p90 = self.quantile_ms(0.90),
            p99 = self.quantile_ms(0.99),
            max = self.quantile_ms(1.0),
            server_cpu = pct(self.server_cpu_pct),
            generator_cpu = pct(self.generator_cpu_pct),
        )
    }
}

fn pct(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.0}%"))
        .unwrap_or_else(|| "not measured".into())
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The peak resident set size of a process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM in {path}"))
}

/// CPU time (user + system) a process has used so far, from
/// /proc/PID/stat (`self` for this process), in USER_HZ ticks (1/100 s on Linux).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resets the process's VmHWM to its current RSS (Linux: writing 5 to
/// /proc/PID/clear_refs), so that a later VmHWM is the peak since now.
pub fn reset_peak_rss(pid: u32) -> Result<(), String> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").map_err(|e| format!("cannot write {path}: {e}"))
}

#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// The first successful answer, described (no token values).
    sample: Option<Value>,
    /// The first failed answer: status and (shortened) body.
    first_error: Option<String>,
}

/// What a token response holds, without any token: its members, and the
/// JOSE header and claim names of its JWTs. Shows that both servers answer
/// alike (ES256 JWT access tokens, an ID token on refresh).
fn describe(body: &Value) -> Value {
    let jwt = |k: &str| {
        let token = body[k].as_str()?;
        let mut parts = token.split('.');
        let decode = |p: Option<&str>| -> Option<Value> {
            let bytes = URL_SAFE_NO_PAD.decode(p?).ok()?;
            serde_json::from_slice(&bytes).ok()
        };
        let header = decode(parts.next())?;
        let claims = decode(parts.next())?;
        let names: Vec<&String> = claims.as_object()?.keys().collect();
        Some(json!({ "alg": header["alg"], "typ": header["typ"], "claims": names }))
    };
    let members: Vec<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    json!({
        "members": members,
        "access_token": jwt("access_token"),
        "id_token": jwt("id_token"),
    })
}

/// Fetches every worker's tokens, then runs the timed loop.
pub async fn run(plan: Plan) -> Result<Report, String> {
    if plan.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if let Some(pid) = plan.server_pid {
        // Fail before the run, not after it.
        peak_rss_kib(pid)?;
    }
    let endpoints = flow::discover(&plan.base).await?;
    let setup_start = Instant::now();

    // Untimed: each worker's refresh token, through the code flow, one
    // sign-in at a time as users arrive (and so that the memory of several
    // argon2 runs at once does not stand in for the loop's).
    let mut tokens: Vec<Option<String>> = vec![None; plan.concurrency];
    if plan.grant == Grant::RefreshToken {
        let gate = Arc::new(Semaphore::new(plan.signin_concurrency.max(1)));
        let mut tasks = Vec::new();
        for _ in 0..plan.concurrency {
            let (gate, endpoints, creds) = (gate.clone(), endpoints.clone(), plan.creds.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                flow::refresh_token_by_code_flow(&endpoints, &creds).await
            }));
        }
        for (slot, task) in tokens.iter_mut().zip(tasks) {
            let token = task
                .await
                .map_err(|e| format!("a sign-in task failed: {e}"))??;
            *slot = Some(token);
        }
    }
    let setup = setup_start.elapsed();
    // The peak so far is sign-in's (argon2 runs there); the report's peak is
    // the loop's, when the reset works, and the earlier one is kept beside it.
    let (setup_peak_rss_kib, peak_reset) = match plan.server_pid {
        Some(pid) => (Some(peak_rss_kib(pid)?), reset_peak_rss(pid).is_ok()),
        None => (None, false),
    };

    let budget = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(plan.concurrency + 1));
    let mut workers = Vec::new();
    for token in tokens {
        let http = flow::plain_client()?;
        let worker = Worker {
            http,
            token_endpoint: endpoints.token.clone(),
            creds: plan.creds.clone(),
            cc_scope: plan.cc_scope.clone(),
            grant: plan.grant,
            refresh_token: token,
            budget: budget.clone(),
            max: plan.max_requests,
        };
        let barrier = barrier.clone();
        let duration = plan.duration;
        workers.push(tokio::spawn(async move {
            barrier.wait().await;
            worker.run(Instant::now() + duration).await
        }));
    }
    let server_pid = plan.server_pid.map(|p| p.to_string());
    let cpu_at_start = (server_pid.as_deref().and_then(cpu_ticks), cpu_ticks("self"));
    barrier.wait().await;
    let start = Instant::now();
    let mut total = Tally::default();
    for w in workers {
        let t = w.await.map_err(|e| format!("a worker failed: {e}"))?;
        total.latencies.extend(t.latencies);
        total.ok += t.ok;
        if total.sample.is_none() {
            total.sample = t.sample;
        }
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed();
    let share = |before: Option<u64>, after: Option<u64>| {
        let ticks = after?.checked_sub(before?)?;
        Some(ticks as f64 / 100.0 / elapsed.as_secs_f64() * 100.0)
    };
    let server_cpu_pct = share(cpu_at_start.0, server_pid.as_deref().and_then(cpu_ticks));
    let generator_cpu_pct = share(cpu_at_start.1, cpu_ticks("self"));
    total.latencies.sort_unstable();
    let peak_rss_kib = match plan.server_pid {
        Some(pid) => Some(peak_rss_kib(pid)?),
        None => None,
    };
    Ok(Report {
        label: plan.label,
        grant: plan.grant,
        concurrency: plan.concurrency,
        elapsed,
        requests: total.latencies.len() as u64,
        ok: total.ok,
        errors: total.errors,
        latencies: total.latencies,
        peak_rss_kib,
        setup,
        sample: total.sample,
        first_error: total.first_error,
        setup_peak_rss_kib,
        peak_reset,
        server_cpu_pct,
        generator_cpu_pct,
    })
}

struct Worker {
    http: reqwest::Client,
    token_endpoint: String,
    creds: Credentials,
    cc_scope: Option<String>,
    grant: Grant,
    refresh_token: Option<String>,
    budget: Arc<AtomicU64>,
    max: Option<u64>,
}

impl Worker {
    async fn run(mut self, deadline: Instant) -> Tally {
        let mut tally = Tally::default();
        let mut failures_in_a_row = 0;
        while Instant::now() < deadline {
            if let Some(max) = self.max
                && self.budget.fetch_add(1, Ordering::Relaxed) >= max
            {
                break;
            }
            let mut form: Vec<(&str, &str)> = vec![("grant_type", self.grant.name())];
            match self.grant {
                Grant::RefreshToken => {
                    form.push(("refresh_token", self.refresh_token.as_deref().unwrap_or("")))
                }
                Grant::ClientCredentials => {
                    if let Some(scope) = &self.cc_scope {
                        form.push(("scope", scope));
                    }
                }
            }
            let req = flow::authenticate(self.http.post(&self.token_endpoint), &self.creds, &form);
            let sent = Instant::now();
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.bytes().await.map(|b| (status, b))
                }
                Err(e) => Err(e),
            };
            let took = sent.elapsed();
            let failure = match outcome {
                Ok((status, body)) => {
                    if status.is_success() && tally.sample.is_none() {
                        tally.sample = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .map(|v| describe(&v));
                    }
                    tally
                        .latencies
                        .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    if !status.is_success() {
                        if tally.first_error.is_none() {
                            tally.first_error = Some(format!(
                                "HTTP {status}: {}",
                                flow::short(&String::from_utf8_lossy(&body))
                            ));
                        }
                        Some(status.as_u16().to_string())
                    } else if self.grant == Grant::RefreshToken {
                        let next = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|v| v["refresh_token"].as_str().map(str::to_owned));
                        match next {
                            // The old token is spent: carry on with its successor.
                            Some(next) => {
                                self.refresh_token = Some(next);
                                None
                            }
                            None => Some("no_refresh_token".to_owned()),
                        }
                    } else {
                        None
                    }
                }
                Err(e) => {
                    if tally.first_error.is_none() {
                        tally.first_error = Some(flow::chain(&e));
                    }
                    Some("transport".to_owned())
                }
            };
            match failure {
                None => {
                    tally.ok += 1;
                    failures_in_a_row = 0;
                }
                Some(kind) => {
                    *tally.errors.entry(kind).or_default() += 1;
                    failures_in_a_row += 1;
                    // A chain that failed this often is dead (or the server
                    // is): stop this worker rather than spin on errors.
                    if failures_in_a_row >= 5 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        tally
    }
}
