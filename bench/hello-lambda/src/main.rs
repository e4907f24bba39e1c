//! The least a `lambda_http` function can be: every request answered "hello". `make bench`
//! measures the functions' cold starts against this one, built with the same profile.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_request: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
