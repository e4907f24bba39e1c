//! The conversation-worker Lambda: configuration and clients built once at INIT, then each SQS
//! batch handed to the engine.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::{EngineConfig, Env, RetellConfig, StoreConfig, WhatsAppConfig};
use shared::engine::{Engine, TemplateConfig};
use shared::retell::RetellClient;
use shared::store::PostgrestStore;
use shared::whatsapp::GraphClient;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let env = Env::from_process();
    let whatsapp = WhatsAppConfig::from_env(&env)?;
    let http = shared::http::client();
    let engine = Engine::new(
        PostgrestStore::new(&StoreConfig::from_env(&env)?, http.clone()),
        RetellClient::new(&RetellConfig::from_env(&env)?, http.clone()),
        GraphClient::new(&whatsapp, http),
        EngineConfig::from_env(&env)?,
        TemplateConfig {
            name: whatsapp.template_name.clone(),
            language: whatsapp.template_language.clone(),
        },
    );
    let engine = &engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(conversation_worker::handle_batch(engine, event.payload).await)
    }))
    .await
}
