//! The revoke function: `POST /oauth/revoke` (RFC 7009) from API Gateway, and
//! admin commands invoked directly, e.g.
//! `{"action":"revoke_user","user_id":"..."}` -> `{"revoked": N}`.

use std::sync::Arc;

use tokenfn_core::aws::Keys;
use tokenfn_core::http::revoke::RevokeRouter;
use tokenfn_core::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let services = lambda::start(Keys::None).await;
    lambda::run_revoke(Arc::new(RevokeRouter::new(services.clone())), services).await
}
