//! Where the CLI keeps its state: the embedded default (SQLite and a key
//! file in the data folder), or DynamoDB and KMS (`--store dynamodb
//! --signer kms`), which is how it runs against AWS or an emulator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use tokenfn_core::aws::sdk_config;
use tokenfn_core::config::Config;
use tokenfn_core::ports::{Signer, Store, SystemClock};
use tokenfn_core::seal::{KmsBox, LazyLocalBox, NoBox, SecretBox};
use tokenfn_core::service::Services;
use tokenfn_core::sign::{KmsSigner, LocalSigner, NoKey};
use tokenfn_core::store::{DynamoStore, SqliteStore, dynamodb};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Dynamodb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignerKind {
    Local,
    Kms,
}

#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where grants and tokens live.
    #[arg(
        long,
        global = true,
        env = "TOKENFN_STORE",
        value_enum,
        default_value = "sqlite"
    )]
    store: StoreKind,
    /// The DynamoDB table (with --store dynamodb).
    #[arg(long, global = true, env = "TOKENFN_TABLE")]
    table: Option<String>,
    /// What signs tokens.
    #[arg(
        long,
        global = true,
        env = "TOKENFN_SIGNER",
        value_enum,
        default_value = "local"
    )]
    signer: SignerKind,
    /// KMS key id or ARN (with --signer kms); repeat or comma-separate: the
    /// first signs, all are published.
    #[arg(
        long = "kms-key-id",
        global = true,
        env = "TOKENFN_KMS_KEY_IDS",
        value_delimiter = ','
    )]
    kms_key_ids: Vec<String>,
    /// A symmetric KMS key that seals TOTP secrets at rest. Without one,
    /// they are sealed with a key file in the data folder (`totp.key`).
    #[arg(long = "totp-key-id", global = true, env = "TOKENFN_TOTP_KEY_ID")]
    totp_key_id: Option<String>,
}

impl BackendArgs {
    pub fn with_data_dir(self, data_dir: PathBuf) -> Backend {
        Backend {
            data_dir,
            args: self,
        }
    }
}

pub struct Backend {
    pub data_dir: PathBuf,
    args: BackendArgs,
}

impl Backend {
    async fn store(&self) -> Result<Arc<dyn Store>, String> {
        match self.args.store {
            StoreKind::Sqlite => {
                self.ensure_data_dir()?;
                let store = SqliteStore::open(&self.data_dir.join("tokenfn.db"))
                    .map_err(|e| e.to_string())?;
                Ok(Arc::new(store))
            }
            StoreKind::Dynamodb => {
                let table = self.table()?;
                let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
                Ok(Arc::new(DynamoStore::new(client, table)))
            }
        }
    }

    /// The data folder, created (owner-only) if it is missing.
    fn ensure_data_dir(&self) -> Result<(), String> {
        create_private_dir(&self.data_dir).map_err(|e| {
            format!(
                "cannot create the data folder {}: {e}",
                self.data_dir.display()
            )
        })
    }

    fn table(&self) -> Result<String, String> {
        self.args
            .table
            .clone()
            .ok_or_else(|| "--store dynamodb needs --table NAME (or TOKENFN_TABLE)".to_owned())
    }

    /// The store and the signer for `serve`. Returns whether a local key was
    /// created now (a first start).
    pub async fn services(&self, issuer: &str) -> Result<(Arc<Services>, bool), String> {
        let store = self.store().await?;
        let (signer, created): (Arc<dyn Signer>, bool) = match self.args.signer {
            SignerKind::Local => {
                self.ensure_data_dir()?;
                let (signer, created) =
                    LocalSigner::load_or_create(&self.data_dir).map_err(|e| e.to_string())?;
                (Arc::new(signer), created)
            }
            SignerKind::Kms => {
                if self.args.kms_key_ids.is_empty() {
                    return Err(
                        "--signer kms needs --kms-key-id ID (or TOKENFN_KMS_KEY_IDS)".into(),
                    );
                }
                let client = aws_sdk_kms::Client::new(&sdk_config().await);
                let signer = KmsSigner::new(client, &self.args.kms_key_ids)
                    .await
                    .map_err(|e| e.to_string())?;
                (Arc::new(signer), false)
            }
        };
        // The same lifetimes, limits and look as the Lambda functions read;
        // the playground is on unless TOKENFN_PLAYGROUND=off.
        let config = Config::with_settings(issuer, |name| {
            std::env::var(name)
                .ok()
                .or_else(|| (name == "TOKENFN_PLAYGROUND").then(|| "on".to_owned()))
        })
        .map_err(|e| e.to_string())?;
        let services = Services::new(store, signer, Arc::new(SystemClock), config)
            .with_secret_box(self.secret_box().await?);
        Ok((Arc::new(services), created))
    }

    /// Admin commands never sign, so they never load or create a key.
    pub async fn admin_services(&self) -> Result<Arc<Services>, String> {
        let store = self.store().await?;
        let services = Services::new(
            store,
            Arc::new(NoKey),
            Arc::new(SystemClock),
            Config::with_settings("http://admin", |name| std::env::var(name).ok())
                .map_err(|e| e.to_string())?,
        )
        .with_secret_box(self.secret_box().await?);
        Ok(Arc::new(services))
    }

    /// What seals TOTP secrets: the KMS key if one is named, else the key
    /// file in the data folder (read or created when a secret is first
    /// sealed or opened, so that other commands leave none behind).
    async fn secret_box(&self) -> Result<Arc<dyn SecretBox>, String> {
        match (&self.args.totp_key_id, self.args.store) {
            (Some(id), _) => {
                let client = aws_sdk_kms::Client::new(&sdk_config().await);
                Ok(Arc::new(KmsBox::new(client, id)))
            }
            (None, StoreKind::Sqlite) => Ok(Arc::new(LazyLocalBox::new(&self.data_dir))),
            // A secret sealed with this machine's key file could never be
            // opened by the deployed functions: refuse to seal one.
            (None, StoreKind::Dynamodb) => Ok(Arc::new(NoBox::because(
                "with --store dynamodb, TOTP secrets are sealed with a KMS key: pass --totp-key-id \
                 (the stack's TotpKeyId output) or set TOKENFN_TOTP_KEY_ID",
            ))),
        }
    }

    pub fn describe(&self) -> String {
        match (self.args.store, self.args.signer) {
            (StoreKind::Sqlite, SignerKind::Local) => self.data_dir.display().to_string(),
            _ => format!(
                "{} ({:?} store, {:?} signer)",
                self.args
                    .table
                    .as_deref()
                    .unwrap_or(&self.data_dir.display().to_string()),
                self.args.store,
                self.args.signer
            ),
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[derive(Args)]
pub struct AwsInitArgs {
    /// Also create an ECC_NIST_P256 signing key in KMS and print its id.
    #[arg(long)]
    create_key: bool,
    /// Also create a symmetric KMS key that seals TOTP secrets and print its
    /// id (for `--totp-key-id` / `TOKENFN_TOTP_KEY_ID`).
    #[arg(long)]
    create_totp_key: bool,
}

/// Creates a KMS key; returns its id.
async fn create_kms_key(
    kms: &aws_sdk_kms::Client,
    spec: aws_sdk_kms::types::KeySpec,
    usage: aws_sdk_kms::types::KeyUsageType,
    description: &str,
) -> Result<String, String> {
    let key = kms
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .description(description)
        .send()
        .await
        .map_err(|e| {
            format!(
                "KMS CreateKey failed: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )
        })?;
    key.key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or_else(|| "KMS CreateKey returned no key id".to_owned())
}

pub async fn aws_init(backend: &Backend, args: AwsInitArgs) -> Result<(), String> {
    let table = backend
        .args
        .table
        .clone()
        .ok_or_else(|| "aws-init needs --table NAME (or TOKENFN_TABLE)".to_owned())?;
    let sdk = sdk_config().await;
    let created = dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = serde_json::json!({ "table": table, "table_created": created });
    let kms = aws_sdk_kms::Client::new(&sdk);
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    if args.create_key {
        let id = create_kms_key(
            &kms,
            KeySpec::EccNistP256,
            KeyUsageType::SignVerify,
            "tokenfn token signing key",
        )
        .await?;
        out["kms_key_id"] = serde_json::Value::String(id);
    }
    if args.create_totp_key {
        let id = create_kms_key(
            &kms,
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
            "tokenfn TOTP secret sealing key",
        )
        .await?;
        out["totp_key_id"] = serde_json::Value::String(id);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
    );
    Ok(())
}
