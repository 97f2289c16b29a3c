//! Wiring for AWS: the SDK configuration, the DynamoDB store and the KMS
//! signer, built once per process (per Lambda container), outside any handler.

use std::sync::Arc;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime::client::defaults::default_http_client_plugin_v2;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;

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
/// Every client made from it shares one HTTPS client, built on first use.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build();
    let loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    match OnFirstCall::sdk_default() {
        Some(http) => loader.http_client(http),
        None => loader,
    }
    .load()
    .await
}

/// The SDK's default HTTPS client, except that it sets up TLS (the system's
/// root certificates, read and parsed: about 3 ms here) when the first
/// request needs a connection, not when each SDK client is made. Left to
/// itself, the SDK does that work at init for every client (a function has
/// up to three), and again for each one's first request; a function whose
/// first request needs no AWS call now does none of it before answering.
#[derive(Debug)]
struct OnFirstCall(SharedHttpClient);

impl OnFirstCall {
    /// The client the SDK would pick itself (aws-smithy-runtime's default
    /// for this behavior version), wrapped.
    fn sdk_default() -> Option<Self> {
        let plugin = default_http_client_plugin_v2(BehaviorVersion::latest())?;
        let components = plugin.runtime_components(&RuntimeComponentsBuilder::new("tokenfn"));
        components.http_client().map(Self)
    }
}

impl HttpClient for OnFirstCall {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The inner client builds a connector per settings once and caches it.
        self.0.http_connector(settings, components)
    }

    // validate_base_client_config is left to the trait's default, which does
    // nothing: the inner client's builds a throwaway connector, TLS and all.

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Builds the services a function needs. With `Keys::Use` the signer makes
/// the one AWS round trip of a container's init (GetPublicKey for each key,
/// in parallel) in the background, and nothing waits for it before a
/// request needs a key: see [`KmsSigner::start`].
pub async fn services(settings: &AwsSettings, keys: Keys) -> Result<Arc<Services>, String> {
    let sdk = sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), settings.table.clone());
    let signer: Arc<dyn Signer> = match keys {
        Keys::Use => Arc::new(
            KmsSigner::start(
                aws_sdk_kms::Client::new(&sdk),
                &settings.kms_key_ids,
                settings.signing_alg,
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_clients_share_the_sdk_https_client_and_reach_aws_through_it() {
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            "needs moto running and AWS_ENDPOINT_URL pointing at it (scripts/test.sh starts it)"
        );
        let sdk = sdk_config().await;
        let http = sdk
            .http_client()
            .expect("the configuration carries an HTTP client");
        assert!(format!("{http:?}").contains("OnFirstCall"), "{http:?}");

        // Both services' first requests go through the client set up on the first call.
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let kms = aws_sdk_kms::Client::new(&sdk);
        let (tables, keys) = tokio::join!(dynamodb.list_tables().send(), kms.list_keys().send());
        tables.expect("DynamoDB answered");
        keys.expect("KMS answered");
    }
}
