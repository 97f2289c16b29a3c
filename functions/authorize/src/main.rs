//! The authorize function: `GET /authorize` and the login and consent forms.

use std::sync::Arc;

use tokenfn_core::aws::{self, Keys};
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    lambda::init_logging();
    let services = aws::init(Keys::None)
        .await
        .unwrap_or_else(|e| lambda::init_failed(&e));
    lambda::run_http(Arc::new(AuthorizeRouter::new(services))).await
}
