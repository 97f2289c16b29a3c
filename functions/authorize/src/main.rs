//! The authorize function: `GET /authorize` and the login and consent forms.

use std::sync::Arc;

use tokenfn_core::aws::Keys;
use tokenfn_core::http::authorize::AuthorizeRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let services = lambda::start(Keys::None).await;
    lambda::run_http(Arc::new(AuthorizeRouter::new(services))).await
}
