//! The conversation-worker Lambda: configuration and clients built once at INIT, then each SQS
//! batch handed to the engine.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::Env;
use shared::engine::BridgeEngine;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The secret's keys (BRIDGE_SECRET_ID), else the environment's: see shared::secrets.
    let env = shared::secrets::read_into(Env::from_process(), conversation_worker::SECRETS).await?;
    let config = conversation_worker::Config::from_env(&env)?;
    let engine = BridgeEngine::from_config(&config, shared::http::client());
    let engine = &engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(conversation_worker::handle_batch(engine, event.payload).await)
    }))
    .await
}
