//! The discovery function: OpenID Provider metadata and the JWK Set, built at init.

use std::sync::Arc;

use tokenfn_core::aws::Keys;
use tokenfn_core::http::discovery::DiscoveryRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let services = lambda::start(Keys::Use).await;
    lambda::run_http(Arc::new(DiscoveryRouter::new(services))).await
}
