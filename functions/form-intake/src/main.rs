//! The form-intake Lambda: configuration and clients built once at INIT, then each request
//! handed to the form.

use lambda_http::{Error, Request, service_fn};
use shared::config::{Env, FormConfig, QueueConfig, StoreConfig};
use shared::ingress::form::FormIntake;
use shared::queue::SqsQueue;
use shared::store::PostgrestStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let store_config = StoreConfig::from_env(&env)?;
    let form_config = FormConfig::from_env(&env)?;
    let queue_config = QueueConfig::from_env(&env)?;
    let store = PostgrestStore::new(&store_config, shared::http::client());
    let queue = SqsQueue::from_config(&queue_config).await;
    let intake = FormIntake::new(store, queue, form_config);
    let intake = &intake;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(form_intake::handle_request(intake, request).await)
    }))
    .await
}
