//! The whatsapp-inbound Lambda: configuration and clients built once at INIT (the SQS client at
//! the first turn queued: see `SqsQueue::from_config`).

use lambda_http::{Error, Request, service_fn};
use shared::config::Env;
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::SqsQueue;
use shared::store::PostgrestStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The secret's keys (BRIDGE_SECRET_ID), else the environment's: see shared::secrets.
    let env = shared::secrets::read_into(Env::from_process(), whatsapp_inbound::SECRETS).await?;
    let config = whatsapp_inbound::Config::from_env(&env)?;
    let store = PostgrestStore::new(&config.store, shared::http::client());
    let queue = SqsQueue::from_config(&config.queue).await;
    let webhook = WhatsAppWebhook::new(store, queue, &config.webhook);
    let webhook = &webhook;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(webhook.handle(&request).await)
    }))
    .await
}
