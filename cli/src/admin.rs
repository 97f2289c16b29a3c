//! Admin commands. They open the same data folder as a running server
//! (SQLite in WAL mode takes both) and print JSON.

use std::io::Read as _;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde::Serialize;
use tokenfn_core::domain::client::Lifetimes;
use tokenfn_core::domain::{GrantType, Scopes};
use tokenfn_core::service::Services;
use tokenfn_core::service::admin::{NewClient, RevokeTarget};

use crate::backend::Backend;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints it as JSON (never its secret).
    Add(ClientAdd),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["public", "secret_stdin"])))]
pub struct ClientAdd {
    #[arg(long)]
    client_id: String,
    /// A redirect URI, matched exactly; repeat for several.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// A public client (mobile, SPA): no secret, PKCE required.
    #[arg(long)]
    public: bool,
    /// A confidential client: read its secret (32+ random characters) from stdin.
    #[arg(long)]
    secret_stdin: bool,
    /// Comma-separated: authorization_code,refresh_token,client_credentials.
    #[arg(long, default_value = "authorization_code,refresh_token")]
    grant_types: String,
    #[arg(long, default_value = "openid profile email offline_access")]
    scopes: String,
    /// Shown to users on the login and consent pages (defaults to the id).
    #[arg(long)]
    name: Option<String>,
    /// Access token lifetime, seconds.
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// Absolute refresh lifetime of a grant, seconds.
    #[arg(long)]
    refresh_ttl: Option<i64>,
    /// Idle refresh lifetime, seconds, renewed by each rotation.
    #[arg(long)]
    refresh_idle_ttl: Option<i64>,
    /// Seconds during which the previous refresh token is still accepted once.
    #[arg(long)]
    reuse_leeway: Option<i64>,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin.
    Add(UserAdd),
}

#[derive(Args)]
pub struct UserAdd {
    #[arg(long)]
    username: String,
    /// Read the password from stdin (required: passwords never go on the command line).
    #[arg(long, required = true)]
    password_stdin: bool,
    #[arg(long)]
    email: Option<String>,
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// A user's active grants, as JSON.
    List {
        #[arg(long)]
        user: String,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// Every grant of this user (by username).
    #[arg(long)]
    user: Option<String>,
    /// Every grant of this client.
    #[arg(long)]
    client: Option<String>,
    /// One grant, by id.
    #[arg(long)]
    grant: Option<String>,
}

/// Admin commands never sign, so they never touch the signing key.
async fn services(backend: &Backend) -> Result<Arc<Services>, String> {
    backend.admin_services().await
}

fn print_json<T: Serialize>(value: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn read_stdin_secret(what: &str) -> Result<String, String> {
    let mut raw = String::new();
    std::io::stdin()
        .read_to_string(&mut raw)
        .map_err(|e| format!("cannot read the {what} from stdin: {e}"))?;
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(format!("no {what} on stdin"));
    }
    Ok(value.to_owned())
}

pub async fn client(backend: &Backend, cmd: ClientCommand) -> Result<(), String> {
    let ClientCommand::Add(a) = cmd;
    let grant_types = a
        .grant_types
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| GrantType::parse(g).ok_or_else(|| format!("unknown grant type {g:?} (use authorization_code, refresh_token, client_credentials)")))
        .collect::<Result<Vec<_>, _>>()?;
    let scopes = Scopes::parse(&a.scopes).map_err(|e| format!("--scopes: {}", e.description))?;
    let secret = if a.secret_stdin {
        Some(read_stdin_secret("client secret")?)
    } else {
        None
    };
    let services = services(backend).await?;
    let d = services.config.default_lifetimes;
    let lifetimes = Lifetimes {
        access_token: a.access_token_ttl.unwrap_or(d.access_token),
        refresh_absolute: a.refresh_ttl.unwrap_or(d.refresh_absolute),
        refresh_idle: a.refresh_idle_ttl.unwrap_or(d.refresh_idle),
        reuse_leeway: a.reuse_leeway.unwrap_or(d.reuse_leeway),
    };
    let client = services
        .add_client(NewClient {
            id: a.client_id,
            name: a.name,
            redirect_uris: a.redirect_uris,
            secret,
            grant_types,
            scopes,
            lifetimes,
        })
        .await
        .map_err(|e| e.to_string())?;
    print_json(&client)
}

pub async fn user(backend: &Backend, cmd: UserCommand) -> Result<(), String> {
    let UserCommand::Add(a) = cmd;
    let password = read_stdin_secret("password")?;
    let services = services(backend).await?;
    let user = services
        .add_user(&a.username, &password, a.email)
        .await
        .map_err(|e| e.to_string())?;
    print_json(&user)
}

pub async fn grants(backend: &Backend, cmd: GrantsCommand) -> Result<(), String> {
    let GrantsCommand::List { user } = cmd;
    let services = services(backend).await?;
    let grants = services.grants_of(&user).await.map_err(|e| e.to_string())?;
    print_json(&grants)
}

pub async fn revoke(backend: &Backend, args: RevokeArgs) -> Result<(), String> {
    let services = services(backend).await?;
    let target = match (args.user, args.client, args.grant) {
        (Some(u), None, None) => RevokeTarget::User {
            user_id: services.user_id(&u).await.map_err(|e| e.to_string())?,
        },
        (None, Some(client_id), None) => RevokeTarget::Client { client_id },
        (None, None, Some(grant_id)) => RevokeTarget::Grant { grant_id },
        _ => return Err("name exactly one of --user, --client, --grant".into()),
    };
    let revoked = services
        .revoke_target(&target)
        .await
        .map_err(|e| e.to_string())?;
    print_json(&serde_json::json!({ "revoked": revoked }))
}
