//! The counting proxy in front of the AWS emulator (moto's server), run as
//! its own process (`tokenfn-bench aws-proxy`) so that servers and Lambda
//! binaries can be pointed at it with `AWS_ENDPOINT_URL`. It is the
//! black-box tests' recording proxy (`tokenfn_blackbox::aws_proxy`); this
//! module starts it and reads its calls over HTTP.

use std::time::Duration;

use tokenfn_blackbox::aws_proxy::AwsProxy;
pub use tokenfn_blackbox::aws_proxy::{Call, sequential_rounds};

use crate::flow::chain;

/// Serves until the process is killed.
pub async fn serve(listen: &str, upstream: &str) -> Result<(), String> {
    let proxy = AwsProxy::start_on(listen, upstream)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("aws-proxy listening on {}", proxy.url());
    std::future::pending::<()>().await;
    Ok(())
}

/// Talks to a running proxy.
#[derive(Clone)]
pub struct ProxyClient {
    base: String,
    http: reqwest::Client,
}

impl ProxyClient {
    pub fn new(base: &str) -> Result<ProxyClient, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ProxyClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub async fn reset(&self) -> Result<(), String> {
        let url = format!("{}/__proxy/reset", self.base);
        self.http
            .post(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("the AWS proxy at {url}: {}", chain(&e)))?;
        Ok(())
    }

    pub async fn calls(&self) -> Result<Vec<Call>, String> {
        let url = format!("{}/__proxy/calls", self.base);
        let body = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("the AWS proxy at {url}: {}", chain(&e)))?
            .bytes()
            .await
            .map_err(|e| format!("the AWS proxy at {url}: {}", chain(&e)))?;
        serde_json::from_slice::<Vec<Call>>(&body)
            .map_err(|e| format!("the AWS proxy at {url} answered no call list: {e}"))
    }
}
