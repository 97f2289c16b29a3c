//! The discovery function: OpenID Provider metadata and the JWK Set, built at init.

use std::sync::Arc;

use tokenfn_core::aws::{self, Keys};
use tokenfn_core::http::discovery::DiscoveryRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_logging();
    let services = aws::init(Keys::Use)
        .await
        .unwrap_or_else(|e| lambda::init_failed(&e));
    lambda::run_http(Arc::new(DiscoveryRouter::new(services))).await
}
