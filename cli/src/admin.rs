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
    /// Change a registered client; prints it as JSON.
    Update(ClientUpdate),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["require_mfa", "no_require_mfa"])))]
pub struct ClientUpdate {
    #[arg(long)]
    client_id: String,
    /// Users must sign in with a second factor; refresh tokens of grants
    /// made without one stop working.
    #[arg(long)]
    require_mfa: bool,
    /// Undo --require-mfa.
    #[arg(long)]
    no_require_mfa: bool,
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
    /// Comma-separated: authorization_code, refresh_token, client_credentials,
    /// password, device_code (urn:ietf:params:oauth:grant-type:device_code).
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
    /// The user's second factor (TOTP, RFC 6238).
    #[command(subcommand)]
    Mfa(MfaCommand),
}

#[derive(Subcommand)]
pub enum MfaCommand {
    /// Give the user a new TOTP secret; prints the otpauth:// URI to enrol
    /// an authenticator app with. From then on the login asks for a code.
    Enroll {
        #[arg(long)]
        username: String,
    },
    /// Remove the user's second factor.
    Reset {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
pub enum ConsentCommand {
    /// Forget a user's consent for a client and revoke their grants; the
    /// next authorize asks for consent again.
    Revoke {
        /// The username.
        #[arg(long)]
        user: String,
        /// The client id.
        #[arg(long)]
        client: String,
    },
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
    let a = match cmd {
        ClientCommand::Add(a) => a,
        ClientCommand::Update(u) => {
            let services = services(backend).await?;
            let client = services
                .set_require_mfa(&u.client_id, u.require_mfa && !u.no_require_mfa)
                .await
                .map_err(|e| e.to_string())?;
            return print_json(&client);
        }
    };
    let grant_types = a
        .grant_types
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| GrantType::parse(g).ok_or_else(|| format!("unknown grant type {g:?} (use authorization_code, refresh_token, client_credentials, password, device_code)")))
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
    let a = match cmd {
        UserCommand::Add(a) => a,
        UserCommand::Mfa(MfaCommand::Enroll { username }) => {
            let services = services(backend).await?;
            let uri = services
                .enroll_mfa(&username)
                .await
                .map_err(|e| e.to_string())?;
            return print_json(&serde_json::json!({ "username": username, "otpauth_uri": uri }));
        }
        UserCommand::Mfa(MfaCommand::Reset { username }) => {
            let services = services(backend).await?;
            let had = services
                .reset_mfa(&username)
                .await
                .map_err(|e| e.to_string())?;
            return print_json(&serde_json::json!({ "username": username, "removed": had }));
        }
    };
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

pub async fn consent(backend: &Backend, cmd: ConsentCommand) -> Result<(), String> {
    let ConsentCommand::Revoke { user, client } = cmd;
    let services = services(backend).await?;
    let known = services
        .store
        .get_client(&client)
        .await
        .map_err(|e| e.to_string())?;
    if known.is_none() {
        return Err(format!("no client with id {client:?}"));
    }
    let target = RevokeTarget::Consent {
        user_id: services.user_id(&user).await.map_err(|e| e.to_string())?,
        client_id: client,
    };
    let revoked = services
        .revoke_target(&target)
        .await
        .map_err(|e| e.to_string())?;
    print_json(&serde_json::json!({ "revoked": revoked }))
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
