//! Wiring for AWS: the SDK configuration, the DynamoDB store and the KMS
//! signer, built once per process (per Lambda container), outside any handler.

use std::sync::Arc;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

use crate::config::AwsSettings;
use crate::ports::{Signer, SystemClock};
use crate::seal::{KmsBox, NoBox, SecretBox};
use crate::service::Services;
use crate::sign::{KmsSigner, NoKey};
use crate::store::DynamoStore;

/// Whether a function signs tokens or publishes keys (and so talks to KMS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    Use,
    None,
}

/// The SDK configuration from the environment (region, credentials, and
/// `AWS_ENDPOINT_URL` for an emulator). The SDK sets no timeouts of its own;
/// without these a stalled dependency would hold a request until Lambda
/// kills it, instead of answering 503 with the caller's token intact.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// Builds the services a function needs. With `Keys::Use` this makes the one
/// AWS round trip of a container's init: GetPublicKey for each key, in parallel.
pub async fn services(settings: &AwsSettings, keys: Keys) -> Result<Arc<Services>, String> {
    let sdk = sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), settings.table.clone());
    let signer: Arc<dyn Signer> = match keys {
        Keys::Use => Arc::new(
            KmsSigner::new(aws_sdk_kms::Client::new(&sdk), &settings.kms_key_ids)
                .await
                .map_err(|e| e.to_string())?,
        ),
        Keys::None => Arc::new(NoKey),
    };
    // TOTP secrets are sealed with a symmetric KMS key (TOKENFN_TOTP_KEY_ID);
    // without one, two-step sign-in fails loudly rather than store them plain.
    let secret_box: Arc<dyn SecretBox> = match &settings.totp_key_id {
        Some(id) => Arc::new(KmsBox::new(aws_sdk_kms::Client::new(&sdk), id)),
        None => Arc::new(NoBox::because(
            "TOKENFN_TOTP_KEY_ID is not set: this function cannot open TOTP secrets",
        )),
    };
    Ok(Arc::new(
        Services::new(
            Arc::new(store),
            signer,
            Arc::new(SystemClock),
            settings.config.clone(),
        )
        .with_secret_box(secret_box),
    ))
}

/// A function's init: settings from the environment, then the services.
pub async fn init(keys: Keys) -> Result<Arc<Services>, String> {
    let settings = AwsSettings::from_env(keys == Keys::Use).map_err(|e| e.to_string())?;
    services(&settings, keys).await
}
