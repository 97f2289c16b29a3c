//! The smoke run of the test command: a few seconds of the real harness
//! against a fresh `tokenfn serve`, so that the harness never rots. It
//! proves that the flows and loops work, not how fast they are.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::flow::Credentials;
use crate::load::{self, Grant, Plan, Report};

/// The benchmark's own throwaway registrations.
pub const WEB_CLIENT: &str = "bench-web";
pub const WEB_SECRET: &str = "bench-web-secret-0123456789abcdefghijklmnop";
pub const SVC_CLIENT: &str = "bench-svc";
pub const SVC_SECRET: &str = "bench-svc-secret-0123456789abcdefghijklmnop";
pub const SVC_SCOPE: &str = "api.read";
pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-password-0123456789";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin(tokenfn: &Path, dir: &Path, args: &[&str], stdin: &str) -> Result<(), String> {
    let mut child = Command::new(tokenfn)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("TOKENFN_STORE")
        .env_remove("TOKENFN_SIGNER")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", tokenfn.display()))?;
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "tokenfn {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Registers the benchmark's clients and user in `dir`.
pub fn seed(tokenfn: &Path, dir: &Path) -> Result<(), String> {
    admin(
        tokenfn,
        dir,
        &[
            "client",
            "add",
            "--client-id",
            WEB_CLIENT,
            "--secret-stdin",
            "--redirect-uri",
            REDIRECT_URI,
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            "openid offline_access",
        ],
        WEB_SECRET,
    )?;
    admin(
        tokenfn,
        dir,
        &[
            "client",
            "add",
            "--client-id",
            SVC_CLIENT,
            "--secret-stdin",
            "--grant-types",
            "client_credentials",
            "--scopes",
            SVC_SCOPE,
        ],
        SVC_SECRET,
    )?;
    admin(
        tokenfn,
        dir,
        &["user", "add", "--username", USER, "--password-stdin"],
        PASSWORD,
    )
}

fn start(tokenfn: &Path, dir: &Path) -> Result<(Server, String), String> {
    let mut child = Command::new(tokenfn)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env_remove("TOKENFN_STORE")
        .env_remove("TOKENFN_SIGNER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {} serve: {e}", tokenfn.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keeps reading so that the server never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("tokenfn listening on ") {
                let _ = tx.send(base.trim().to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "tokenfn serve printed no listening line within 60 s".to_owned())?;
    Ok((server, base))
}

pub async fn run(tokenfn: &Path) -> Result<Vec<Report>, String> {
    let dir = tempfile::Builder::new()
        .prefix("tokenfn-bench-smoke-")
        .tempdir()
        .map_err(|e| format!("cannot make a temp dir: {e}"))?;
    seed(tokenfn, dir.path())?;
    let (server, base) = start(tokenfn, dir.path())?;
    let pid = server.0.id();
    let web = Credentials {
        client_id: WEB_CLIENT.into(),
        client_secret: Some(WEB_SECRET.into()),
        username: USER.into(),
        password: PASSWORD.into(),
        redirect_uri: REDIRECT_URI.into(),
        scope: "openid offline_access".into(),
    };
    let svc = Credentials {
        client_id: SVC_CLIENT.into(),
        client_secret: Some(SVC_SECRET.into()),
        ..web.clone()
    };
    let mut reports = Vec::new();
    for (grant, creds, concurrency, secs) in [
        (Grant::RefreshToken, web, 2, 2),
        (Grant::ClientCredentials, svc, 2, 1),
    ] {
        let report = load::run(Plan {
            base: base.clone(),
            grant,
            creds,
            cc_scope: (grant == Grant::ClientCredentials).then(|| SVC_SCOPE.to_owned()),
            concurrency,
            duration: Duration::from_secs(secs),
            max_requests: Some(100_000),
            server_pid: Some(pid),
            label: Some("smoke".into()),
            signin_concurrency: 1,
        })
        .await?;
        if report.ok == 0 {
            return Err(format!(
                "smoke: no {} request succeeded\n{}",
                grant.name(),
                report.text()
            ));
        }
        if report.error_count() > 0 {
            return Err(format!(
                "smoke: {} requests failed\n{}",
                grant.name(),
                report.text()
            ));
        }
        reports.push(report);
    }
    drop(server);
    Ok(reports)
}
