//! tokenfn-bench: the benchmark harness. A black-box load generator for the
//! refresh and client_credentials grants (against tokenfn or any OpenID
//! provider whose login and consent are HTML forms), an AWS call counter,
//! a Lambda cold-start timer, and the smoke run of the test command.
//! scripts/bench.sh drives it and writes BENCHMARKS.md.

mod aws_proxy;
mod coldstart;
mod flow;
mod load;
mod smoke;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::aws_proxy::{ProxyClient, sequential_rounds};
use crate::flow::Credentials;
use crate::load::{Grant, Plan};

#[derive(Parser)]
#[command(name = "tokenfn-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Chained refreshes: each worker gets its own refresh token through the
    /// authorization code flow, then posts grant_type=refresh_token with the
    /// token it got last.
    Refresh(LoadArgs),
    /// The same loop with grant_type=client_credentials.
    ClientCredentials(LoadArgs),
    /// Counts the AWS calls and sequential rounds of single refresh grants,
    /// through a running `aws-proxy` that the server's AWS_ENDPOINT_URL
    /// points at.
    AwsCalls(AwsCallsArgs),
    /// A counting proxy in front of the AWS emulator; runs until killed.
    AwsProxy(AwsProxyArgs),
    /// Times Lambda binaries from spawn to first answer under a local
    /// Runtime API, alternating with a hello-world binary.
    Coldstart(ColdstartArgs),
    /// A few seconds of both loops against a fresh `tokenfn serve`; fails
    /// if any request failed or none succeeded.
    Smoke(SmokeArgs),
}

#[derive(Args)]
struct ClientArgs {
    /// The server's issuer URL (discovery is read from it).
    #[arg(long)]
    base: String,
    #[arg(long)]
    client_id: String,
    /// Without one, the client is public and names itself in the body.
    #[arg(long, env = "TOKENFN_BENCH_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The user who signs in (refresh and aws-calls).
    #[arg(long, default_value = "")]
    username: String,
    #[arg(
        long,
        env = "TOKENFN_BENCH_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    password: String,
    /// Registered for the client; the browser stops at the redirect to it.
    #[arg(long, default_value = smoke::REDIRECT_URI)]
    redirect_uri: String,
    /// The scope of the authorization request (refresh), or of each request
    /// (client-credentials; none when empty).
    #[arg(long)]
    scope: Option<String>,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of the timed loop.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Stop after this many requests in all, even before the duration.
    #[arg(long)]
    max_requests: Option<u64>,
    /// The server's process id: its peak RSS (VmHWM) is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for the run in the report.
    #[arg(long)]
    label: Option<String>,
    /// Sign-ins at once while the workers fetch their tokens (untimed).
    #[arg(long, default_value_t = 1)]
    signin_concurrency: usize,
    /// Print the report as one JSON line on stdout (the text goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AwsCallsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The aws-proxy's URL.
    #[arg(long)]
    aws_proxy: String,
    /// How many single refresh grants to count.
    #[arg(long, default_value_t = 20)]
    grants: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AwsProxyArgs {
    /// Where to listen, e.g. 127.0.0.1:0.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The emulator's URL.
    #[arg(long)]
    upstream: String,
}

#[derive(Args)]
struct ColdstartArgs {
    /// NAME=PATH of a function binary (authorize, token, refresh, revoke,
    /// discovery pick the request it is sent); repeat.
    #[arg(long = "function", required = true)]
    functions: Vec<String>,
    /// The hello-world binary (tokenfn-bench-hello).
    #[arg(long)]
    hello: PathBuf,
    /// Starts of each function (and as many of hello before each).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// An aws-proxy's URL that the functions' AWS_ENDPOINT_URL points at:
    /// their init calls are counted.
    #[arg(long)]
    aws_proxy: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SmokeArgs {
    /// The tokenfn binary to run `serve` and the admin commands with.
    #[arg(long)]
    tokenfn: PathBuf,
}

impl ClientArgs {
    fn credentials(&self, default_scope: &str) -> Credentials {
        Credentials {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone().filter(|s| !s.is_empty()),
            username: self.username.clone(),
            password: self.password.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scope: self
                .scope
                .clone()
                .unwrap_or_else(|| default_scope.to_owned()),
        }
    }

    fn check_user(&self) -> Result<(), String> {
        if self.username.is_empty() || self.password.is_empty() {
            return Err("the refresh loop signs in: give --username and --password".into());
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokenfn-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenfn-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Refresh(args) => {
            args.client.check_user()?;
            load_run(args, Grant::RefreshToken).await
        }
        Cmd::ClientCredentials(args) => load_run(args, Grant::ClientCredentials).await,
        Cmd::AwsCalls(args) => aws_calls(args).await,
        Cmd::AwsProxy(args) => aws_proxy::serve(&args.listen, &args.upstream).await,
        Cmd::Coldstart(args) => {
            let functions = args
                .functions
                .iter()
                .map(|f| coldstart::Function::parse(f))
                .collect::<Result<Vec<_>, _>>()?;
            let hello = coldstart::Function::parse(&format!("hello={}", args.hello.display()))?;
            let proxy = args
                .aws_proxy
                .as_deref()
                .map(ProxyClient::new)
                .transpose()?;
            let report =
                coldstart::run(&functions, &hello, args.runs.max(1), proxy.as_ref()).await?;
            emit(args.json, &coldstart::text(&report), &report);
            Ok(())
        }
        Cmd::Smoke(args) => {
            for report in smoke::run(&args.tokenfn).await? {
                println!("{}", report.text());
            }
            println!("smoke: ok");
            Ok(())
        }
    }
}

async fn load_run(args: LoadArgs, grant: Grant) -> Result<(), String> {
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return Err("--duration must be a positive number of seconds".into());
    }
    let default_scope = match grant {
        Grant::RefreshToken => "openid offline_access",
        Grant::ClientCredentials => "",
    };
    let creds = args.client.credentials(default_scope);
    let cc_scope =
        (grant == Grant::ClientCredentials && !creds.scope.is_empty()).then(|| creds.scope.clone());
    let report = load::run(Plan {
        base: args.client.base.clone(),
        grant,
        creds,
        cc_scope,
        concurrency: args.concurrency,
        duration: Duration::from_secs_f64(args.duration),
        max_requests: args.max_requests,
        server_pid: args.server_pid,
        label: args.label,
        signin_concurrency: args.signin_concurrency,
    })
    .await?;
    emit(args.json, &report.text(), &report.json());
    if report.ok == 0 {
        return Err(format!("no {} request succeeded", grant.name()));
    }
    Ok(())
}

/// Text on stdout, or with `json` the JSON line on stdout and the text on stderr.
fn emit(json: bool, text: &str, value: &serde_json::Value) {
    if json {
        eprintln!("{text}");
        println!("{value}");
    } else {
        println!("{text}");
    }
}

async fn aws_calls(args: AwsCallsArgs) -> Result<(), String> {
    args.client.check_user()?;
    let proxy = ProxyClient::new(&args.aws_proxy)?;
    let creds = args.client.credentials("openid offline_access");
    let endpoints = flow::discover(&args.client.base).await?;
    let mut token = flow::refresh_token_by_code_flow(&endpoints, &creds).await?;
    let http = flow::plain_client()?;
    let mut calls_per_grant = Vec::new();
    let mut rounds_per_grant = Vec::new();
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..args.grants.max(1) {
        proxy.reset().await?;
        let body = flow::token_request(
            &http,
            &endpoints.token,
            &creds,
            &[("grant_type", "refresh_token"), ("refresh_token", &token)],
        )
        .await?;
        token = body["refresh_token"]
            .as_str()
            .ok_or("a refresh answered without a refresh_token")?
            .to_owned();
        let calls = proxy.calls().await?;
        calls_per_grant.push(calls.len());
        rounds_per_grant.push(sequential_rounds(&calls));
        for c in &calls {
            *ops.entry(c.name().to_owned()).or_default() += 1;
        }
    }
    let n = calls_per_grant.len();
    let ops: BTreeMap<String, f64> = ops
        .into_iter()
        .map(|(k, v)| (k, v as f64 / n as f64))
        .collect();
    let max_calls = calls_per_grant.iter().copied().max().unwrap_or(0);
    let max_rounds = rounds_per_grant.iter().copied().max().unwrap_or(0);
    let mut rounds_histogram: BTreeMap<usize, usize> = BTreeMap::new();
    for r in &rounds_per_grant {
        *rounds_histogram.entry(*r).or_default() += 1;
    }
    let mean_calls = calls_per_grant.iter().sum::<usize>() as f64 / n as f64;
    let report = json!({
        "grants": n,
        "calls_mean": mean_calls,
        "calls_max": max_calls,
        "rounds_max": max_rounds,
        "rounds_histogram": rounds_histogram,
        "ops_per_grant": ops,
    });
    let text = format!(
        "AWS calls per refresh grant, over {n} grants: {mean_calls:.2} on average, at most {max_calls}, \
         in at most {max_rounds} sequential rounds ({}); per grant: {}",
        rounds_histogram
            .iter()
            .map(|(r, n)| format!("{n}× {r} rounds"))
            .collect::<Vec<_>>()
            .join(", "),
        ops.iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    emit(args.json, &text, &report);
    Ok(())
}
