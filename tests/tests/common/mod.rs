//! Harness for the black-box tests: runs a real `tokenfn serve` on a free
//! loopback port with its own data directory, drives the admin CLI, and plays
//! the browser (cookie jar, redirects followed by hand, HTML forms) and the app
//! (the `openidconnect` and `oauth2` crates).
//!
//! The backend is the embedded one (SQLite and a key file in the data
//! directory) unless `TOKENFN_BLACKBOX_BACKEND=aws`: then each data directory
//! gets its own DynamoDB table and KMS key from `tokenfn aws-init` (at
//! `AWS_ENDPOINT_URL`, moto's server in scripts/test.sh), and every `tokenfn`
//! run through this harness on that directory gets `--store dynamodb --table
//! T --signer kms --kms-key-id K` (besides `--data-dir`, which is then unused).
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType,
    CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, RevocationUrl, Scope, StandardErrorResponse,
};
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use url::Url;

// ---------------------------------------------------------------------------
// Fixed test data
// ---------------------------------------------------------------------------

/// Redirect URI registered for the test clients. Nothing listens there: the
/// browser stops at the redirect and the test reads the `Location` header.
pub const REDIRECT_URI: &str = "http://127.0.0.1:53682/callback";
/// A second registered redirect URI (of `web`).
pub const REDIRECT_URI_2: &str = "http://127.0.0.1:53682/other-callback";

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct-horse-battery-staple";
pub const USER_EMAIL: &str = "alice@example.test";
pub const USER2: &str = "bob";
pub const PASSWORD2: &str = "bobs-own-password-42";

/// Public client (no secret, PKCE required).
pub const SPA: &str = "spa";
/// Confidential client, default grant types and scopes.
pub const WEB: &str = "web";
pub const WEB_SECRET: &str = "web-secret-0123456789abcdefghijklmnopqrstuvwxyz";
/// A second confidential client, for cross-client checks.
pub const OTHER: &str = "other";
pub const OTHER_SECRET: &str = "other-secret-0123456789abcdefghijklmnopqrstuvw";
/// Machine client with the client_credentials grant only.
pub const SVC: &str = "svc";
pub const SVC_SECRET: &str = "svc-secret-0123456789abcdefghijklmnopqrstuvwxyz";
pub const SVC_SCOPES: &str = "api.read api.write";

const START_TIMEOUT: Duration = Duration::from_secs(90);
const CLI_TIMEOUT: Duration = Duration::from_secs(90);
const LISTENING_PREFIX: &str = "tokenfn listening on ";

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// Path of the `tokenfn` binary: `TOKENFN_BIN`, else `<target>/debug/tokenfn`.
pub fn tokenfn_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TOKENFN_BIN") {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    };
    let bin = target.join("debug").join("tokenfn");
    assert!(
        bin.is_file(),
        "tokenfn binary not found at {}: run `cargo build -p tokenfn` first (or set TOKENFN_BIN)",
        bin.display()
    );
    bin
}

fn base_command() -> Command {
    let mut cmd = Command::new(tokenfn_bin());
    // The backend is chosen by the harness alone, never by the environment
    // the tests happen to run in.
    for var in [
        "TOKENFN_DATA_DIR",
        "TOKENFN_STORE",
        "TOKENFN_TABLE",
        "TOKENFN_SIGNER",
        "TOKENFN_KMS_KEY_IDS",
        "TOKENFN_TOTP_KEY_ID",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

// ---------------------------------------------------------------------------
// The backend: embedded (default) or DynamoDB + KMS
// ---------------------------------------------------------------------------

/// Selects the backend the suite runs `tokenfn` on: unset, empty or
/// `embedded` for SQLite and a local key, `aws` for DynamoDB and KMS.
pub const BACKEND_ENV: &str = "TOKENFN_BLACKBOX_BACKEND";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and a local key file in the data directory.
    Embedded,
    /// DynamoDB and KMS at `AWS_ENDPOINT_URL`.
    Aws,
}

/// The backend selected by [`BACKEND_ENV`]; panics on an unknown value.
pub fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    *BACKEND.get_or_init(
        || match std::env::var(BACKEND_ENV).unwrap_or_default().trim() {
            "" | "embedded" => Backend::Embedded,
            "aws" => Backend::Aws,
            other => panic!("{BACKEND_ENV}={other:?}: expected `aws` or `embedded` (or unset)"),
        },
    )
}

pub fn is_aws() -> bool {
    backend() == Backend::Aws
}

/// For tests about the embedded backend only: on the aws backend, says on
/// stderr that the test is skipped and why, and returns true (the caller
/// returns). On the embedded backend, returns false.
pub fn skip_on_aws(why: &str) -> bool {
    if !is_aws() {
        return false;
    }
    let current = thread::current();
    let test = current.name().unwrap_or("this test");
    eprintln!("{test}: skipped on {BACKEND_ENV}=aws: {why}");
    true
}

/// The DynamoDB table and KMS key of one test environment (aws backend).
#[derive(Clone, Debug)]
pub struct AwsResources {
    pub table: String,
    pub kms_key_id: String,
    /// The symmetric key TOTP secrets are sealed with.
    pub totp_key_id: String,
}

impl AwsResources {
    /// `--store dynamodb --table T --signer kms --kms-key-id K --totp-key-id S`.
    pub fn flags(&self) -> Vec<OsString> {
        [
            "--store",
            "dynamodb",
            "--table",
            &self.table,
            "--signer",
            "kms",
            "--kms-key-id",
            &self.kms_key_id,
            "--totp-key-id",
            &self.totp_key_id,
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }
}

type AwsRegistry = Mutex<HashMap<PathBuf, Arc<OnceLock<AwsResources>>>>;

/// The table and key of the environment whose data directory is `data_dir`,
/// created with `tokenfn aws-init` on first use: every test environment (one
/// data directory) has its own, and a restart on the same directory finds
/// the same ones. `None` (an invocation naming no data directory) shares one
/// table and key per test binary.
pub fn aws_resources(data_dir: Option<&Path>) -> AwsResources {
    static REGISTRY: OnceLock<AwsRegistry> = OnceLock::new();
    let slot = {
        let mut registry = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = data_dir.map(Path::to_path_buf).unwrap_or_default();
        Arc::clone(registry.entry(key).or_default())
    };
    // Created outside the registry lock: environments provision in parallel.
    slot.get_or_init(aws_init).clone()
}

/// `tokenfn aws-init --table <unique name> --create-key`.
fn aws_init() -> AwsResources {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.trim().is_empty(),
        "{BACKEND_ENV}=aws needs AWS_ENDPOINT_URL pointing at the DynamoDB/KMS emulator \
         (moto's server; scripts/test.sh starts one and sets it)"
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!(
        "tokenfn-bb-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let args: Vec<OsString> = [
        "aws-init",
        "--table",
        &table,
        "--create-key",
        "--create-totp-key",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let out = run_command(base_command(), &args, None, &[]);
    assert!(
        out.status.success(),
        "tokenfn aws-init --table {table} --create-key (AWS_ENDPOINT_URL={endpoint}) exited with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let init = out.json();
    assert_eq!(init["table"], table.as_str(), "aws-init output: {init}");
    assert_eq!(
        init["table_created"], true,
        "aws-init must create the fresh table {table}: {init}"
    );
    let kms_key_id = init["kms_key_id"]
        .as_str()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| panic!("aws-init --create-key prints a kms_key_id: {init}"))
        .to_string();
    let totp_key_id = init["totp_key_id"]
        .as_str()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| panic!("aws-init --create-totp-key prints a totp_key_id: {init}"))
        .to_string();
    AwsResources {
        table,
        kms_key_id,
        totp_key_id,
    }
}

/// The backend flags for a `tokenfn` run on `data_dir`: none on the embedded
/// backend, those of [`AwsResources::flags`] on the aws backend.
pub fn backend_flags(data_dir: Option<&Path>) -> Vec<OsString> {
    match backend() {
        Backend::Embedded => vec![],
        Backend::Aws => aws_resources(data_dir).flags(),
    }
}

/// The data directory a raw invocation names: `--data-dir DIR` or
/// `--data-dir=DIR` anywhere in `args`, else `TOKENFN_DATA_DIR` in `envs`.
fn data_dir_of(args: &[OsString], envs: &[(&str, OsString)]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--data-dir" {
            return it.next().map(PathBuf::from);
        }
        if let Some(dir) = arg.to_str().and_then(|a| a.strip_prefix("--data-dir=")) {
            return Some(PathBuf::from(dir));
        }
    }
    envs.iter()
        .find(|(k, _)| *k == "TOKENFN_DATA_DIR")
        .map(|(_, v)| PathBuf::from(v))
}

// ---------------------------------------------------------------------------
// Admin CLI
// ---------------------------------------------------------------------------

/// What one CLI invocation produced.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts success and parses stdout as one JSON document.
    pub fn json(&self) -> Value {
        assert!(
            self.status.success(),
            "tokenfn exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "tokenfn stdout is not one JSON document ({e}):\n{}",
                self.stdout
            )
        })
    }

    /// Asserts the command failed the way a user should see it fail: non-zero
    /// exit, a message on stderr, and no panic or backtrace.
    pub fn assert_clean_failure(&self) {
        assert!(
            !self.status.success(),
            "expected a non-zero exit, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            self.status.code().is_some(),
            "tokenfn was killed by a signal ({}); stderr:\n{}",
            self.status,
            self.stderr
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "expected a readable message on stderr, got nothing (stdout: {})",
            self.stdout
        );
        for needle in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(needle) && !self.stdout.contains(needle),
                "a bad argument must not panic; found {needle:?} in output:\n{}",
                self.stderr
            );
        }
    }
}

/// Runs `tokenfn` with these arguments and environment additions, preceded
/// by the backend flags of the data directory they name (see
/// [`backend_flags`]; none on the embedded backend).
pub fn run_cli_raw(args: &[OsString], stdin: Option<&str>, envs: &[(&str, OsString)]) -> CliOutput {
    let mut all = backend_flags(data_dir_of(args, envs).as_deref());
    all.extend(args.iter().cloned());
    run_command(base_command(), &all, stdin, envs)
}

fn run_command(
    mut cmd: Command,
    args: &[OsString],
    stdin: Option<&str>,
    envs: &[(&str, OsString)],
) -> CliOutput {
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn tokenfn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // The CLI may exit before reading stdin (bad arguments): ignore EPIPE.
        let _ = pipe.write_all(input.as_bytes());
        drop(pipe);
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_TIMEOUT) {
        Ok(out) => {
            let out = out.expect("wait for tokenfn");
            CliOutput {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("tokenfn {args:?} did not finish within {CLI_TIMEOUT:?}");
        }
    }
}

/// Runs `tokenfn --data-dir DIR ARGS...` (plus the backend flags).
pub fn tokenfn(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> CliOutput {
    let mut all: Vec<OsString> = vec!["--data-dir".into(), data_dir.into()];
    all.extend(args.iter().map(OsString::from));
    run_cli_raw(&all, stdin, &[])
}

/// A client to register with `tokenfn client add`.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Option<String>,
    pub scopes: Option<String>,
    pub extra: Vec<String>,
}

impl ClientSpec {
    pub fn public(id: &str) -> Self {
        ClientSpec {
            id: id.into(),
            secret: None,
            redirect_uris: vec![REDIRECT_URI.into()],
            grant_types: None,
            scopes: None,
            extra: vec![],
        }
    }

    pub fn confidential(id: &str, secret: &str) -> Self {
        ClientSpec {
            secret: Some(secret.into()),
            ..ClientSpec::public(id)
        }
    }

    pub fn redirect_uri(mut self, uri: &str) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    pub fn grant_types(mut self, grant_types: &str) -> Self {
        self.grant_types = Some(grant_types.into());
        self
    }

    pub fn scopes(mut self, scopes: &str) -> Self {
        self.scopes = Some(scopes.into());
        self
    }

    /// An extra `--flag value` pair, e.g. `("--reuse-leeway", "5")`.
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.extra.push(flag.into());
        self.extra.push(value.into());
        self
    }

    pub fn cli_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["client".into(), "add".into(), "--client-id".into()];
        args.push(self.id.clone());
        for uri in &self.redirect_uris {
            args.push("--redirect-uri".into());
            args.push(uri.clone());
        }
        args.push(if self.secret.is_some() {
            "--secret-stdin".into()
        } else {
            "--public".into()
        });
        if let Some(g) = &self.grant_types {
            args.push("--grant-types".into());
            args.push(g.clone());
        }
        if let Some(s) = &self.scopes {
            args.push("--scopes".into());
            args.push(s.clone());
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// `tokenfn client add`; asserts success and returns the printed JSON.
pub fn add_client(data_dir: &Path, spec: &ClientSpec) -> Value {
    let args = spec.cli_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdin = spec.secret.as_ref().map(|s| format!("{s}\n"));
    tokenfn(data_dir, &args, stdin.as_deref()).json()
}

/// `tokenfn user add`; asserts success and returns the printed JSON.
pub fn add_user(data_dir: &Path, username: &str, password: &str, email: Option<&str>) -> Value {
    let mut args = vec!["user", "add", "--username", username, "--password-stdin"];
    if let Some(email) = email {
        args.extend(["--email", email]);
    }
    tokenfn(data_dir, &args, Some(&format!("{password}\n"))).json()
}

/// The users and clients most tests share.
pub fn seed_standard(data_dir: &Path) {
    add_user(data_dir, USER, PASSWORD, Some(USER_EMAIL));
    add_user(data_dir, USER2, PASSWORD2, None);
    add_client(data_dir, &ClientSpec::public(SPA));
    add_client(
        data_dir,
        &ClientSpec::confidential(WEB, WEB_SECRET).redirect_uri(REDIRECT_URI_2),
    );
    add_client(data_dir, &ClientSpec::confidential(OTHER, OTHER_SECRET));
    add_client(
        data_dir,
        &ClientSpec::confidential(SVC, SVC_SECRET)
            .grant_types("client_credentials")
            .scopes(SVC_SCOPES),
    );
}

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

/// How much of a server's stdout and of its stderr is kept.
pub const OUTPUT_KEPT: usize = 16 << 20;

/// A running `tokenfn serve`; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, from the listening line.
    pub base: String,
    pub port: u16,
    /// stdout lines printed before the listening line.
    pub startup: Vec<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `tokenfn --data-dir DIR serve --addr 127.0.0.1:0 EXTRA...` (plus the
    /// backend flags), waiting for the listening line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data_dir, extra, &[])
    }

    /// [`Server::start`] with more environment variables (`TOKENFN_LOG`, say).
    pub fn start_with_env(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = base_command();
        cmd.envs(envs.iter().copied());
        cmd.args(backend_flags(Some(data_dir)))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tokenfn serve");

        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = mpsc::channel::<String>();
        let all_stdout = Arc::new(Mutex::new(String::new()));
        let stdout_sink = Arc::clone(&all_stdout);
        thread::spawn(move || {
            // Keep draining after the receiver is gone so the server never
            // blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                {
                    let mut kept = stdout_sink.lock().unwrap();
                    if kept.len() < OUTPUT_KEPT {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                }
                let _ = tx.send(line);
            }
        });

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap();
                if s.len() < OUTPUT_KEPT {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let mut startup = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(LISTENING_PREFIX) {
                    Some(rest) => break rest.trim().to_string(),
                    None => startup.push(line),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "tokenfn serve printed no `{LISTENING_PREFIX}...` line within {START_TIMEOUT:?}\nstdout so far:\n{}\nstderr:\n{}",
                        startup.join("\n"),
                        stderr.lock().unwrap()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    thread::sleep(Duration::from_millis(100));
                    panic!(
                        "tokenfn serve exited ({status:?}) before printing `{LISTENING_PREFIX}...`\nstdout:\n{}\nstderr:\n{}",
                        startup.join("\n"),
                        stderr.lock().unwrap()
                    );
                }
            }
        };
        let port: u16 = base
            .strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("listening line must read `{LISTENING_PREFIX}http://127.0.0.1:PORT`, got {base:?}")
            });
        assert_ne!(port, 0, "the listening line must show the bound port");
        Server {
            child,
            base,
            port,
            startup,
            stdout: all_stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything the server printed on stdout (up to [`OUTPUT_KEPT`]).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(mut self) {
        self.kill();
    }

    /// Kills the server, then returns all it printed: (stdout, stderr).
    pub fn stop_for_output(mut self) -> (String, String) {
        self.kill();
        // The readers finish once the pipes close.
        thread::sleep(Duration::from_millis(300));
        (self.stdout(), self.stderr())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- tokenfn serve at {} ----\nstartup stdout:\n{}\nstderr (last 8 KiB):\n{}",
                self.base,
                self.startup.join("\n"),
                tail(&self.stderr.lock().unwrap(), 8192)
            );
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------
// One test's world: data dir + server + app HTTP client
// ---------------------------------------------------------------------------

pub type Oidc = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

pub type TokenResult = Result<
    CoreTokenResponse,
    RequestTokenError<
        <reqwest::Client as AsyncHttpClient<'static>>::Error,
        StandardErrorResponse<CoreErrorResponseType>,
    >,
>;

pub struct TestEnv {
    // Declared first: dropped (killed) before the data dir is removed.
    pub server: Server,
    /// The app's HTTP client: no cookies, no redirects.
    pub http: reqwest::Client,
    pub dir: TempDir,
}

pub fn temp_data_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("tokenfn-bb-")
        .tempdir()
        .expect("tempdir")
}

pub fn app_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

impl TestEnv {
    /// Fresh data dir with the standard users and clients, server started.
    pub fn start() -> TestEnv {
        let dir = temp_data_dir();
        seed_standard(dir.path());
        TestEnv::start_in(dir, &[])
    }

    /// Like [`TestEnv::start`], registering `extra` clients before the start.
    pub fn start_with_clients(extra: &[ClientSpec]) -> TestEnv {
        let dir = temp_data_dir();
        seed_standard(dir.path());
        for spec in extra {
            add_client(dir.path(), spec);
        }
        TestEnv::start_in(dir, &[])
    }

    pub fn start_in(dir: TempDir, serve_args: &[&str]) -> TestEnv {
        let server = Server::start(dir.path(), serve_args);
        TestEnv {
            server,
            http: app_http_client(),
            dir,
        }
    }

    /// Kills the server and starts a new one on the same data dir.
    pub fn restart(self, serve_args: &[&str]) -> TestEnv {
        let TestEnv { server, dir, .. } = self;
        server.stop();
        TestEnv::start_in(dir, serve_args)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn issuer(&self) -> &str {
        &self.server.base
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        tokenfn(self.data_dir(), args, stdin)
    }

    pub fn browser(&self) -> Browser {
        Browser::new()
    }

    pub async fn get_json(&self, url: &str) -> Value {
        let resp = self.http.get(url).send().await.expect("GET");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "GET {url}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }

    pub async fn discovery(&self) -> Value {
        self.get_json(&self.url("/.well-known/openid-configuration"))
            .await
    }

    pub async fn jwks(&self) -> Value {
        let discovery = self.discovery().await;
        let uri = discovery["jwks_uri"]
            .as_str()
            .expect("jwks_uri in discovery")
            .to_string();
        self.get_json(&uri).await
    }

    /// An `openidconnect` client built from discovery, with the redirect URI
    /// and the discovered revocation endpoint (see [`RevocationTransport`]).
    pub async fn oidc(&self, client_id: &str, secret: Option<&str>) -> Oidc {
        self.oidc_with_redirect(client_id, secret, REDIRECT_URI)
            .await
    }

    pub async fn oidc_with_redirect(
        &self,
        client_id: &str,
        secret: Option<&str>,
        redirect_uri: &str,
    ) -> Oidc {
        let issuer = IssuerUrl::new(self.issuer().to_string()).expect("issuer URL");
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .unwrap_or_else(|e| panic!("OpenID discovery failed: {}", error_chain(&e)));
        let revocation = self.discovery().await["revocation_endpoint"]
            .as_str()
            .expect("revocation_endpoint in discovery")
            .to_string();
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_string()),
            secret.map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_string()).expect("redirect URL"))
        .set_revocation_url(
            RevocationUrl::new(RevocationTransport::https_alias(&revocation))
                .expect("revocation URL"),
        )
    }

    /// Browser login as `user` + consent (if asked) + code exchange with PKCE.
    pub async fn sign_in(
        &self,
        oidc: &Oidc,
        user: (&str, &str),
        scopes: &[&str],
    ) -> (AuthRequest, CoreTokenResponse) {
        let browser = self.browser();
        let req = AuthRequest::new(oidc, scopes);
        let flow = browser.authorize(&req.url, user, REDIRECT_URI).await;
        let code = flow.callback.expect_code(&req, self.issuer());
        let tokens = exchange(oidc, &self.http, code, &req).await;
        (req, tokens)
    }

    /// [`TestEnv::sign_in`] as alice.
    pub async fn tokens(&self, oidc: &Oidc, scopes: &[&str]) -> (AuthRequest, CoreTokenResponse) {
        self.sign_in(oidc, (USER, PASSWORD), scopes).await
    }

    /// Verifies an access token against the served JWKS with `jsonwebtoken`
    /// (ES256, issuer, exp, required claims). Checks `typ` = `at+jwt`.
    pub async fn verify_access_token(&self, token: &str) -> (jsonwebtoken::Header, Value) {
        let jwks = self.jwks().await;
        verify_jwt(&jwks, token, self.issuer(), Some("at+jwt"))
    }

    /// POST an `application/x-www-form-urlencoded` body to `path`.
    pub async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> JsonResponse {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some((user, pass)) = basic {
            req = req.basic_auth(user, Some(pass));
        }
        JsonResponse::read(req.send().await.expect("POST")).await
    }

    /// Refresh at `/oauth/token` with a raw request (client_secret_basic when
    /// `secret` is given, else client_id in the body).
    pub async fn raw_refresh(
        &self,
        client_id: &str,
        secret: Option<&str>,
        refresh_token: &str,
    ) -> JsonResponse {
        match secret {
            Some(secret) => {
                self.post_form(
                    "/oauth/token",
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh_token),
                    ],
                    Some((client_id, secret)),
                )
                .await
            }
            None => {
                self.post_form(
                    "/oauth/token",
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh_token),
                        ("client_id", client_id),
                    ],
                    None,
                )
                .await
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The app side: authorization requests, code exchange, error codes
// ---------------------------------------------------------------------------

/// One authorization request made with `openidconnect` (PKCE S256, state, nonce).
pub struct AuthRequest {
    pub url: String,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

#[derive(Default)]
pub struct AuthOptions<'a> {
    pub prompt: Option<CoreAuthPrompt>,
    pub max_age: Option<Duration>,
    pub extra: Vec<(&'a str, &'a str)>,
}

impl AuthRequest {
    /// `scopes` besides `openid`, which `openidconnect` always adds.
    pub fn new(oidc: &Oidc, scopes: &[&str]) -> AuthRequest {
        AuthRequest::with(oidc, scopes, AuthOptions::default())
    }

    pub fn with(oidc: &Oidc, scopes: &[&str], options: AuthOptions<'_>) -> AuthRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = oidc
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in scopes.iter().filter(|s| **s != "openid") {
            req = req.add_scope(Scope::new(scope.to_string()));
        }
        if let Some(prompt) = options.prompt {
            req = req.add_prompt(prompt);
        }
        if let Some(max_age) = options.max_age {
            req = req.set_max_age(max_age);
        }
        for (k, v) in options.extra {
            req = req.add_extra_param(k, v);
        }
        let (url, state, nonce) = req.url();
        AuthRequest {
            url: url.to_string(),
            state,
            nonce,
            verifier,
        }
    }

    pub fn verifier(&self) -> PkceCodeVerifier {
        PkceCodeVerifier::new(self.verifier.secret().clone())
    }
}

/// Exchanges a code with the library (PKCE verifier included); panics on error.
pub async fn exchange(
    oidc: &Oidc,
    http: &reqwest::Client,
    code: AuthorizationCode,
    req: &AuthRequest,
) -> CoreTokenResponse {
    try_exchange(oidc, http, code, req)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {}", describe_token_error(&e)))
}

pub async fn try_exchange(
    oidc: &Oidc,
    http: &reqwest::Client,
    code: AuthorizationCode,
    req: &AuthRequest,
) -> TokenResult {
    oidc.exchange_code(code)
        .expect("token endpoint from discovery")
        .set_pkce_verifier(req.verifier())
        .request_async(http)
        .await
}

/// The RFC 6749 error code of a failed token request; panics if the request
/// failed any other way (transport, unparsable response).
pub fn token_error_code(result: TokenResult) -> String {
    match result {
        Ok(resp) => panic!(
            "expected an OAuth error, got tokens (scope {:?})",
            resp_scope(&resp)
        ),
        Err(RequestTokenError::ServerResponse(e)) => e.error().as_ref().to_string(),
        Err(other) => panic!(
            "expected an OAuth error response, got {}",
            describe_token_error(&other)
        ),
    }
}

pub fn describe_token_error<RE: std::error::Error + 'static>(
    e: &RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!(
            "server error {} ({:?})",
            r.error().as_ref(),
            r.error_description()
        ),
        RequestTokenError::Parse(err, body) => format!(
            "unparsable token response ({err}): {}",
            String::from_utf8_lossy(body)
        ),
        other => error_chain(other),
    }
}

pub use tokenfn_blackbox::error_chain;

fn resp_scope(resp: &CoreTokenResponse) -> Option<String> {
    use openidconnect::OAuth2TokenResponse;
    resp.scopes()
        .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
}

/// Splits a space-separated scope string (or JSON array) into a set.
pub fn scope_set(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("scope string").to_string())
            .collect(),
        other => panic!("not a scope list: {other}"),
    }
}

pub fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The granted scopes of a token response as a set (panics if absent).
pub fn granted_scopes(resp: &CoreTokenResponse) -> BTreeSet<String> {
    use openidconnect::OAuth2TokenResponse;
    resp.scopes()
        .expect("token response carries `scope`")
        .iter()
        .map(|s| s.as_str().to_string())
        .collect()
}

/// `oauth2` refuses to send a revocation request to a non-HTTPS URL (RFC 7009
/// §2). The test server speaks plain HTTP on loopback, so the client is given
/// the `https://` spelling of the discovered revocation endpoint and this
/// transport sends the library's request, unchanged otherwise, over HTTP.
pub struct RevocationTransport;

type HttpClientError = <reqwest::Client as AsyncHttpClient<'static>>::Error;
pub type ResponseFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, HttpClientError>> + Send>,
>;

impl RevocationTransport {
    pub fn https_alias(url: &str) -> String {
        match url.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => url.to_string(),
        }
    }

    /// A closure usable as `oauth2`'s `AsyncHttpClient`.
    pub fn client(http: &reqwest::Client) -> impl Fn(HttpRequest) -> ResponseFuture + use<> {
        let http = http.clone();
        move |mut request: HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let uri = request.uri().to_string();
                if let Some(rest) = uri.strip_prefix("https://") {
                    *request.uri_mut() = format!("http://{rest}").parse().expect("uri");
                }
                http.call(request).await
            })
        }
    }
}

// ---------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------

/// An HTML page the server answered with.
#[derive(Clone, Debug)]
pub struct Page {
    pub status: StatusCode,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: String,
}

/// Where a navigation ended: a page from the server, or the redirect to the
/// client's redirect URI.
#[derive(Clone, Debug)]
pub enum Step {
    Page(Page),
    Callback(Callback),
}

impl Step {
    pub fn page(self) -> Page {
        match self {
            Step::Page(p) => p,
            Step::Callback(c) => panic!("expected an HTML page, got a redirect to {}", c.url),
        }
    }

    pub fn callback(self) -> Callback {
        match self {
            Step::Callback(c) => c,
            Step::Page(p) => panic!(
                "expected a redirect to the client, got HTTP {} at {}:\n{}",
                p.status,
                p.url,
                p.text()
            ),
        }
    }
}

/// The redirect back to the client (the browser does not follow it).
#[derive(Clone, Debug)]
pub struct Callback {
    pub url: Url,
    pub status: StatusCode,
    pub params: HashMap<String, String>,
}

impl Callback {
    fn parse(url: Url, status: StatusCode) -> Callback {
        let params = url.query_pairs().into_owned().collect();
        Callback {
            url,
            status,
            params,
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Checks a success redirect (state, iss, code) and returns the code.
    pub fn expect_code(&self, req: &AuthRequest, issuer: &str) -> AuthorizationCode {
        assert!(
            self.get("error").is_none(),
            "authorization failed: {}",
            self.url
        );
        assert_eq!(
            self.get("state"),
            Some(req.state.secret().as_str()),
            "state in {}",
            self.url
        );
        assert_eq!(
            self.get("iss"),
            Some(issuer),
            "iss (RFC 9207) in {}",
            self.url
        );
        let code = self
            .get("code")
            .unwrap_or_else(|| panic!("no code in {}", self.url));
        assert!(!code.is_empty(), "empty code in {}", self.url);
        AuthorizationCode::new(code.to_string())
    }

    /// Checks an error redirect (error, state, iss, no code).
    pub fn expect_error(&self, error: &str, state: &str, issuer: &str) {
        assert_eq!(self.get("error"), Some(error), "error in {}", self.url);
        assert_eq!(self.get("state"), Some(state), "state in {}", self.url);
        assert_eq!(
            self.get("iss"),
            Some(issuer),
            "iss (RFC 9207) in {}",
            self.url
        );
        assert!(
            self.get("code").is_none(),
            "an error redirect carries no code: {}",
            self.url
        );
    }
}

/// An HTML form: its action, method and every named control's value
/// (hidden and text inputs as rendered; buttons listed apart).
#[derive(Clone, Debug)]
pub struct Form {
    pub action: String,
    pub method: String,
    pub inputs: Vec<(String, String, String)>, // (type, name, value)
    pub buttons: Vec<(String, String)>,        // (name, value)
}

impl Form {
    pub fn hidden(&self) -> Vec<(String, String)> {
        self.inputs
            .iter()
            .filter(|(t, _, _)| t == "hidden")
            .map(|(_, n, v)| (n.clone(), v.clone()))
            .collect()
    }

    pub fn hidden_value(&self, name: &str) -> Option<String> {
        self.hidden()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|(_, n, _)| n == name)
    }

    pub fn input_type(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(t, _, _)| t.as_str())
    }
}

impl Page {
    pub fn text(&self) -> String {
        html_text(&self.body)
    }

    pub fn forms(&self) -> Vec<Form> {
        parse_forms(&self.body)
    }

    /// The form whose action is `action` (e.g. "/login").
    pub fn form(&self, action: &str) -> Option<Form> {
        self.forms().into_iter().find(|f| {
            f.action == action
                || self
                    .url
                    .join(&f.action)
                    .map(|u| u.path() == action)
                    .unwrap_or(false)
        })
    }

    pub fn login_form(&self) -> Option<Form> {
        self.form("/login")
    }

    pub fn consent_form(&self) -> Option<Form> {
        self.form("/consent")
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    }
}

pub fn parse_forms(html: &str) -> Vec<Form> {
    use scraper::{Html, Selector};
    let doc = Html::parse_document(html);
    let form_sel = Selector::parse("form").unwrap();
    let input_sel = Selector::parse("input").unwrap();
    let button_sel = Selector::parse("button, input[type=submit]").unwrap();
    doc.select(&form_sel)
        .map(|form| {
            let attr = |name: &str| form.value().attr(name).unwrap_or("").to_string();
            let inputs = form
                .select(&input_sel)
                .filter_map(|i| {
                    let name = i.value().attr("name")?;
                    let ty = i
                        .value()
                        .attr("type")
                        .unwrap_or("text")
                        .to_ascii_lowercase();
                    let value = i.value().attr("value").unwrap_or("");
                    Some((ty, name.to_string(), value.to_string()))
                })
                .collect();
            let buttons = form
                .select(&button_sel)
                .filter_map(|b| {
                    let name = b.value().attr("name")?;
                    Some((
                        name.to_string(),
                        b.value().attr("value").unwrap_or("").to_string(),
                    ))
                })
                .collect();
            Form {
                action: attr("action"),
                method: attr("method").to_ascii_lowercase(),
                inputs,
                buttons,
            }
        })
        .collect()
}

/// The visible text of an HTML document, whitespace collapsed (no attribute
/// values, no script or style content).
pub fn html_text(html: &str) -> String {
    use scraper::{Html, Node};
    let doc = Html::parse_document(html);
    let mut words = Vec::new();
    for node in doc.tree.nodes() {
        if let Node::Text(t) = node.value() {
            let hidden_parent = node
                .parent()
                .and_then(|p| p.value().as_element().map(|e| e.name().to_string()))
                .is_some_and(|n| n == "script" || n == "style" || n == "title");
            if !hidden_parent {
                words.extend(t.split_whitespace().map(str::to_string));
            }
        }
    }
    words.join(" ")
}

/// What one pass through authorize went through.
pub struct Flow {
    pub callback: Callback,
    pub login_page: Option<Page>,
    pub consent_page: Option<Page>,
}

/// A browser: cookie jar, redirects followed by hand (so each hop is seen).
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("browser client");
        Browser { http, jar }
    }

    /// Cookie header the browser would send to `url`.
    pub fn cookies_for(&self, url: &str) -> String {
        self.jar
            .cookies(&Url::parse(url).expect("url"))
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    pub fn has_cookie(&self, url: &str, name: &str) -> bool {
        self.cookies_for(url)
            .split(';')
            .any(|c| c.trim().starts_with(&format!("{name}=")))
    }

    /// GET `url`, following redirects within the server until a page or a
    /// redirect to `redirect_uri`.
    pub async fn open(&self, url: &str, redirect_uri: &str) -> Step {
        let url = Url::parse(url).expect("url");
        let resp = self.http.get(url.clone()).send().await.expect("GET");
        self.follow(url, resp, redirect_uri).await
    }

    async fn follow(&self, mut url: Url, mut resp: reqwest::Response, redirect_uri: &str) -> Step {
        for _ in 0..10 {
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .unwrap_or_else(|| panic!("HTTP {status} without Location at {url}"))
                    .to_str()
                    .expect("Location is ASCII")
                    .to_string();
                let next = url.join(&location).expect("Location is a URL");
                if is_redirect_to(&next, redirect_uri) {
                    return Step::Callback(Callback::parse(next, status));
                }
                url = next;
                resp = self.http.get(url.clone()).send().await.expect("GET");
                continue;
            }
            let headers = resp.headers().clone();
            let body = resp.text().await.expect("body");
            return Step::Page(Page {
                status,
                url,
                headers,
                body,
            });
        }
        panic!("more than 10 redirects from {url}");
    }

    /// Submits `form` (found on `page`) with its hidden fields plus `fields`.
    pub async fn submit(
        &self,
        page: &Page,
        form: &Form,
        fields: &[(&str, &str)],
        redirect_uri: &str,
    ) -> Step {
        let mut body: Vec<(String, String)> = form.hidden();
        body.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let url = page.url.join(&form.action).expect("form action");
        let resp = self
            .http
            .post(url.clone())
            .form(&body)
            .send()
            .await
            .expect("POST form");
        self.follow(url, resp, redirect_uri).await
    }

    /// Fills and submits the login form on `page`.
    pub async fn login(&self, page: &Page, user: (&str, &str), redirect_uri: &str) -> Step {
        let form = page.login_form().unwrap_or_else(|| {
            panic!(
                "expected a login page (form action=/login), got HTTP {}:\n{}",
                page.status, page.body
            )
        });
        self.submit(
            page,
            &form,
            &[("username", user.0), ("password", user.1)],
            redirect_uri,
        )
        .await
    }

    /// Submits the consent form on `page` with `decision` (allow or deny).
    pub async fn decide(&self, page: &Page, decision: &str, redirect_uri: &str) -> Step {
        let form = page.consent_form().unwrap_or_else(|| {
            panic!(
                "expected a consent page (form action=/consent), got HTTP {}:\n{}",
                page.status, page.body
            )
        });
        assert!(
            form.buttons
                .iter()
                .any(|(n, v)| n == "decision" && v == decision),
            "consent form has no decision={decision} button: {:?}",
            form.buttons
        );
        self.submit(page, &form, &[("decision", decision)], redirect_uri)
            .await
    }

    /// Opens `auth_url`; logs in if asked; allows consent if asked; returns
    /// the redirect back to the client.
    pub async fn authorize(&self, auth_url: &str, user: (&str, &str), redirect_uri: &str) -> Flow {
        let mut step = self.open(auth_url, redirect_uri).await;
        let mut login_page = None;
        let mut consent_page = None;
        for _ in 0..4 {
            let page = match step {
                Step::Callback(callback) => {
                    return Flow {
                        callback,
                        login_page,
                        consent_page,
                    };
                }
                Step::Page(page) => page,
            };
            if page.login_form().is_some() && login_page.is_none() {
                step = self.login(&page, user, redirect_uri).await;
                login_page = Some(page);
            } else if page.consent_form().is_some() && consent_page.is_none() {
                step = self.decide(&page, "allow", redirect_uri).await;
                consent_page = Some(page);
            } else {
                panic!(
                    "unexpected page during authorize (HTTP {} at {}):\n{}",
                    page.status,
                    page.url,
                    page.text()
                );
            }
        }
        panic!("authorize did not finish");
    }
}

fn is_redirect_to(url: &Url, redirect_uri: &str) -> bool {
    let s = url.as_str();
    match s.strip_prefix(redirect_uri) {
        Some(rest) => rest.is_empty() || rest.starts_with('?') || rest.starts_with('#'),
        None => false,
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP responses
// ---------------------------------------------------------------------------

pub struct JsonResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl JsonResponse {
    pub async fn read(resp: reqwest::Response) -> JsonResponse {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        JsonResponse {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }

    /// `Cache-Control` contains `no-store`.
    pub fn assert_no_store(&self) {
        let cc = self.header("cache-control").unwrap_or_default();
        assert!(
            cc.to_ascii_lowercase().contains("no-store"),
            "expected Cache-Control: no-store, got {cc:?} (HTTP {}: {})",
            self.status,
            self.text
        );
    }

    pub fn assert_json(&self) {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.to_ascii_lowercase().starts_with("application/json"),
            "expected a JSON content type, got {ct:?} (HTTP {}: {})",
            self.status,
            self.text
        );
        assert!(
            self.body.is_object(),
            "expected a JSON object, got: {}",
            self.text
        );
    }

    /// An RFC 6749 §5.2 error: status, JSON with `error` and
    /// `error_description`, `Cache-Control: no-store`.
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(
            (self.status.as_u16(), self.body["error"].as_str()),
            (status, Some(error)),
            "expected HTTP {status} {{\"error\": {error:?}}}, got HTTP {}: {}",
            self.status,
            self.text
        );
        self.assert_json();
        assert!(
            self.body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "error responses carry an error_description: {}",
            self.text
        );
        self.assert_no_store();
    }

    /// A successful token response (200, JSON, no-store, Bearer).
    pub fn assert_tokens(&self) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected tokens, got HTTP {}: {}",
            self.status,
            self.text
        );
        self.assert_json();
        self.assert_no_store();
        assert!(
            self.body["access_token"].as_str().is_some(),
            "no access_token: {}",
            self.text
        );
        assert!(
            self.body["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
            "token_type Bearer: {}",
            self.text
        );
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key:?} in {}", self.text))
            .to_string()
    }
}

// ---------------------------------------------------------------------------
// JOSE
// ---------------------------------------------------------------------------

/// RFC 7638 thumbprint of an EC JWK: SHA-256 over the required members in
/// lexicographic order, base64url without padding.
pub fn ec_thumbprint(jwk: &Value) -> String {
    let member = |k: &str| {
        jwk[k]
            .as_str()
            .unwrap_or_else(|| panic!("JWK has no {k}: {jwk}"))
            .to_string()
    };
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
        member("crv"),
        member("kty"),
        member("x"),
        member("y")
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Verifies an ES256 JWT against `jwks` with `jsonwebtoken`. The header's kid
/// picks the key. Checks signature, iss, exp, presence of sub/aud/iat, and the
/// header `typ` if given.
pub fn verify_jwt(
    jwks: &Value,
    token: &str,
    issuer: &str,
    typ: Option<&str>,
) -> (jsonwebtoken::Header, Value) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let header =
        jsonwebtoken::decode_header(token).unwrap_or_else(|e| panic!("not a JWT ({e}): {token}"));
    assert_eq!(header.alg, Algorithm::ES256, "JWT alg");
    if let Some(typ) = typ {
        assert_eq!(
            header.typ.as_deref().map(str::to_ascii_lowercase),
            Some(typ.to_ascii_lowercase()),
            "JWT header typ"
        );
    }
    let kid = header.kid.clone().expect("JWT header has a kid");
    let keys = jwks["keys"].as_array().expect("JWKS keys");
    let jwk = keys
        .iter()
        .find(|k| k["kid"].as_str() == Some(kid.as_str()))
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS {jwks}"));
    let key = DecodingKey::from_ec_components(
        jwk["x"].as_str().expect("x"),
        jwk["y"].as_str().expect("y"),
    )
    .expect("EC decoding key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false; // checked by the callers
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("JWT does not verify against the JWKS: {e:?}"));
    (header, data.claims)
}

/// The `aud` claim as a list.
pub fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Finds the value after `key=` in a line of `key=value key=value` pairs.
pub fn field_in_lines(lines: &[String], key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    lines.iter().find_map(|line| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(&prefix).map(str::to_string))
    })
}

// ---------------------------------------------------------------------------
// ID tokens (verified by openidconnect)
// ---------------------------------------------------------------------------

/// Verifies the ID token of `resp` with the client's verifier (signature
/// against the discovered JWKS, iss, aud, exp, nonce). The token endpoint's
/// ID token has no `at_hash` (optional there, OIDC Core §3.1.3.6).
/// Returns the claims.
pub fn verify_id_token(
    oidc: &Oidc,
    resp: &CoreTokenResponse,
    nonce: &Nonce,
) -> openidconnect::core::CoreIdTokenClaims {
    use openidconnect::TokenResponse;
    let id_token = resp.id_token().expect("token response has an id_token");
    let claims = id_token
        .claims(&oidc.id_token_verifier(), nonce)
        .unwrap_or_else(|e| panic!("ID token does not verify: {}", error_chain(&e)))
        .clone();
    assert!(
        claims.access_token_hash().is_none(),
        "no at_hash at the token endpoint"
    );
    claims
}

/// Verifies a refreshed ID token: same checks, but there must be NO nonce.
pub fn verify_refreshed_id_token(
    oidc: &Oidc,
    resp: &CoreTokenResponse,
) -> openidconnect::core::CoreIdTokenClaims {
    use openidconnect::TokenResponse;
    let id_token = resp
        .id_token()
        .expect("a refresh of an openid grant returns a new id_token");
    let verifier = oidc.id_token_verifier();
    id_token
        .claims(&verifier, |nonce: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(n) => Err(format!(
                "a refreshed ID token must not carry a nonce, got {}",
                n.secret()
            )),
        })
        .unwrap_or_else(|e| panic!("refreshed ID token does not verify: {}", error_chain(&e)))
        .clone()
}
