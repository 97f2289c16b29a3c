//! A hello-world `lambda_http` function: the cold-start yardstick. It does
//! what every tokenfn function does before its first answer (start the
//! runtime, poll for an event, answer it) and nothing else.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_req: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
