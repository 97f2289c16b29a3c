//! `tokenfn`: the local server and the admin commands, on one data folder.

mod admin;
mod backend;
mod demo;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tokenfn",
    version,
    about = "OAuth 2.0 + OpenID Connect token service"
)]
struct Cli {
    /// Folder holding the embedded store and the signing key.
    #[arg(
        long,
        global = true,
        env = "TOKENFN_DATA_DIR",
        default_value = ".tokenfn"
    )]
    data_dir: PathBuf,
    #[command(flatten)]
    backend: backend::BackendArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every endpoint in one local HTTP server.
    Serve(serve::ServeArgs),
    /// Register and update clients.
    #[command(subcommand)]
    Client(admin::ClientCommand),
    /// Manage users.
    #[command(subcommand)]
    User(admin::UserCommand),
    /// List grants.
    #[command(subcommand)]
    Grants(admin::GrantsCommand),
    /// Users' consents.
    #[command(subcommand)]
    Consent(admin::ConsentCommand),
    /// Revoke every grant of a user, a client, or one grant.
    Revoke(admin::RevokeArgs),
    /// Create the DynamoDB table (TTL on, indexes; idempotent) and optionally
    /// a KMS signing key, wherever AWS_ENDPOINT_URL or the AWS config points.
    AwsInit(backend::AwsInitArgs),
    /// Print each Lambda function's HTTP routes as JSON (for infrastructure checks).
    Routes,
}

fn main() -> ExitCode {
    tokenfn_core::process::release_large_blocks();
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    init_logging(if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let backend = cli.backend.with_data_dir(cli.data_dir);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&backend, args).await,
            Command::Client(cmd) => admin::client(&backend, cmd).await,
            Command::User(cmd) => admin::user(&backend, cmd).await,
            Command::Grants(cmd) => admin::grants(&backend, cmd).await,
            Command::Consent(cmd) => admin::consent(&backend, cmd).await,
            Command::Revoke(args) => admin::revoke(&backend, args).await,
            Command::AwsInit(args) => backend::aws_init(&backend, args).await,
            Command::Routes => print_routes(),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn print_routes() -> Result<(), String> {
    let routes: serde_json::Map<String, serde_json::Value> = tokenfn_core::http::FUNCTIONS
        .iter()
        .map(|f| {
            let list = f
                .routes
                .iter()
                .map(|r| serde_json::json!({ "method": r.method.as_str(), "path": r.path }))
                .collect();
            (f.name.to_owned(), serde_json::Value::Array(list))
        })
        .collect();
    let text = serde_json::to_string_pretty(&routes).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tokenfn: error: {message}");
    ExitCode::FAILURE
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENFN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
