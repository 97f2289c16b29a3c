//! The refresh function: `POST /oauth/refresh`, the refresh_token grant alone.

use std::sync::Arc;

use tokenfn_core::aws::Keys;
use tokenfn_core::http::refresh::RefreshRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let services = lambda::start(Keys::Use).await;
    lambda::run_http(Arc::new(RefreshRouter::new(services))).await
}
