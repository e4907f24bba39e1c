//! The form-intake Lambda: configuration and clients built once at INIT (the SQS client at the
//! first job queued: see `SqsQueue::from_config`), then each request handed to the form as
//! `lambda_http` gives it, and its answer handed back.

use lambda_http::{Error, Request, service_fn};
use shared::config::Env;
use shared::ingress::form::FormIntake;
use shared::queue::SqsQueue;
use shared::store::PostgrestStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The secret's keys (BRIDGE_SECRET_ID), else the environment's: see shared::secrets.
    let env = shared::secrets::read_into(Env::from_process(), form_intake::SECRETS).await?;
    let config = form_intake::Config::from_env(&env)?;
    let store = PostgrestStore::new(&config.store, shared::http::client());
    let queue = SqsQueue::from_config(&config.queue).await;
    let intake = FormIntake::new(store, queue, config.form);
    let intake = &intake;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(intake.handle(&request).await)
    }))
    .await
}
