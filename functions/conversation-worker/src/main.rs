//! The conversation-worker Lambda: configuration and clients built once at INIT, then each SQS
//! batch handed to the engine, and each scheduled event to the sweeper.

use conversation_worker::{Config, WorkerEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::Env;
use shared::engine::BridgeEngine;
use shared::queue::SqsQueue;
use shared::retry::RetrySchedule;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The secret's keys (BRIDGE_SECRET_ID), else the environment's: see shared::secrets.
    let env = shared::secrets::read_into(Env::from_process(), conversation_worker::SECRETS).await?;
    let config = Config::from_env(&env)?;
    let engine = BridgeEngine::from_config(&config.worker, shared::http::client());
    let queue = SqsQueue::from_config(&config.queue).await;
    let schedule = RetrySchedule::default();
    let (engine, queue, schedule) = (&engine, &queue, &schedule);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<WorkerEvent>| async move {
        match event.payload {
            WorkerEvent::Batch(batch) => {
                let deadline = conversation_worker::deadline_instant(event.context.deadline());
                let response =
                    conversation_worker::handle_batch(engine, queue, schedule, batch, deadline)
                        .await;
                Ok::<_, Error>(serde_json::to_value(response)?)
            }
            WorkerEvent::Schedule(_) => {
                let report = shared::sweep::requeue_stranded_work(
                    engine.store(),
                    queue,
                    shared::sweep::GRACE,
                )
                .await?;
                Ok(serde_json::json!({ "turns": report.turns, "submissions": report.submissions,
                                       "staff_messages": report.staff_messages,
                                       "gave_up": report.gave_up, "not_queued": report.not_queued }))
            }
        }
    }))
    .await
}
