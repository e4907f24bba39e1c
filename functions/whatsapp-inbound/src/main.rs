//! The whatsapp-inbound Lambda: configuration and clients built once at INIT.

use lambda_http::{Error, Request, service_fn};
use shared::config::{Env, QueueConfig, StoreConfig, WhatsAppConfig};
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::SqsQueue;
use shared::store::PostgrestStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let store = PostgrestStore::new(&StoreConfig::from_env(&env)?, shared::http::client());
    let queue = SqsQueue::from_config(&QueueConfig::from_env(&env)?).await;
    let webhook = WhatsAppWebhook::new(store, queue, &WhatsAppConfig::from_env(&env)?);
    let webhook = &webhook;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(whatsapp_inbound::handle_request(webhook, request).await)
    }))
    .await
}
