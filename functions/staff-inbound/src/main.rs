//! The staff-inbound Lambda: configuration and clients built once at INIT (the SQS and SNS
//! clients at their first use: see `SqsQueue::from_config`, `SnsNotifier::new`).

use lambda_http::{Error, Request, service_fn};
use shared::config::Env;
use shared::ingress::staff::StaffDoor;
use shared::notify::{SnsNotifier, StaffAlerts, WebhookNotifier};
use shared::queue::SqsQueue;
use shared::store::PostgrestStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The secret's keys (BRIDGE_SECRET_ID), else the environment's: see shared::secrets.
    let env = shared::secrets::read_into(Env::from_process(), staff_inbound::SECRETS).await?;
    let config = staff_inbound::Config::from_env(&env)?;
    let http = shared::http::client();
    let store = PostgrestStore::new(&config.store, http.clone());
    let queue = SqsQueue::from_config(&config.queue).await;
    let sns = match &config.staff.alert_topic_arn {
        Some(arn) => Some(SnsNotifier::new(arn, config.staff.sns_endpoint_url.as_ref()).await),
        None => None,
    };
    let webhook = config
        .staff
        .alert_webhook_url
        .clone()
        .map(|url| WebhookNotifier::new(url, http));
    let door = StaffDoor::new(store, queue, StaffAlerts { sns, webhook }, &config.staff);
    let door = &door;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(door.handle(&request).await)
    }))
    .await
}
