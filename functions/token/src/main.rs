//! The token function: `POST /oauth/token` (authorization_code, refresh_token, client_credentials).

use std::sync::Arc;

use tokenfn_core::aws::Keys;
use tokenfn_core::http::token::TokenRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let services = lambda::start(Keys::Use).await;
    lambda::run_http(Arc::new(TokenRouter::new(services))).await
}
