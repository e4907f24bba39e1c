//! The conversation worker's entry point: SQS records in, jobs run by the engine, failures
//! reported per record (`ReportBatchItemFailures`) after setting each one's visibility to the
//! retry schedule's delay, so a retry comes in seconds rather than after the queue's visibility
//! timeout; SQS moves a record to the dead-letter queue after the redrive policy's receive count
//! (`TURN_MAX_ATTEMPTS`). Every minute a scheduled event runs the sweeper instead.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::FutureExt as _;
use serde::Deserialize;
use shared::config::{ConfigError, Env, QueueConfig, WorkerConfig};
use shared::queue::{JobDisposition, JobHandler, Receipt, Redelivery, Retry, TurnJob};
use shared::retry::RetrySchedule;
use tokio::time::Instant;

/// What the function reads from its environment at INIT: the engine's configuration and the
/// queue it gives records back to and the sweeper queues on.
#[derive(Debug, Clone)]
pub struct Config {
    pub worker: WorkerConfig,
    pub queue: QueueConfig,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            worker: WorkerConfig::from_env(env)?,
            queue: QueueConfig::from_env(env)?,
        })
    }
}

/// The keys of the deployment's secret the function takes ([`shared::secrets::read_into`]):
/// those its [`Config`] reads.
pub const SECRETS: &[&str] = &[
    "SUPABASE_SERVICE_ROLE_KEY",
    "RETELL_API_KEY",
    "WHATSAPP_ACCESS_TOKEN",
    // Optional: only with OUTCOME_WEBHOOK_URL.
    "OUTCOME_WEBHOOK_SECRET",
    // Optional: only with TRANSCRIBE_URL.
    "TRANSCRIBE_API_KEY",
];

/// What invokes the worker: the queue's batches, or EventBridge's schedule.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WorkerEvent {
    Schedule(ScheduledEvent),
    Batch(SqsEvent),
}

/// An EventBridge scheduled event (only what tells it apart).
#[derive(Debug, Deserialize)]
pub struct ScheduledEvent {
    pub source: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
}

/// Lambda's deadline (the wall clock's) as an instant of this process's clock.
pub fn deadline_instant(deadline: std::time::SystemTime) -> Instant {
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

/// Time kept back at the end of an invocation to give the records back before Lambda ends it.
const GIVE_BACK_TIME: Duration = Duration::from_secs(2);

/// Runs every record of a batch by `deadline` (the invocation's) and names those to deliver
/// again, each after its delay on `schedule`.
///
/// A FIFO batch may hold several customers (message groups). Once a record of a group is to be
/// retried, the group's later records are returned unprocessed too, with the same delay, so
/// they cannot overtake it; other groups go on. A job that panics, or does not finish by the
/// deadline, is returned like a failed one.
pub async fn handle_batch<H: JobHandler, R: Redelivery>(
    handler: &H,
    redelivery: &R,
    schedule: &RetrySchedule,
    event: SqsEvent,
    deadline: Instant,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    // The groups held back, with the delay of the record that holds each.
    let mut held_groups: HashMap<String, Duration> = HashMap::new();
    let deadline = deadline.checked_sub(GIVE_BACK_TIME).unwrap_or(deadline);
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        let receive: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let receipt = Receipt {
            deadline,
            receive,
            retry_in: schedule.delay(receive, None),
        };
        let held = group.as_ref().and_then(|g| held_groups.get(g)).copied();
        let disposition = if let Some(held_delay) = held {
            JobDisposition::retry_after(
                "an earlier job of the customer is to be retried",
                held_delay,
            )
        } else {
            match record.body.as_deref().map(serde_json::from_str::<TurnJob>) {
                Some(Ok(job)) => run(handler, job, receipt).await,
                // Never runnable: returned until it lands in the dead-letter queue for a person.
                Some(Err(error)) => JobDisposition::retry(format!("not a turn job: {error}")),
                None => JobDisposition::retry("a record without a body"),
            }
        };
        let JobDisposition::RetryLater(Retry { reason, not_before }) = disposition else {
            continue;
        };
        let delay = receipt.retry_delay(not_before);
        tracing::warn!(%message_id, %reason, receive, ?delay, "returning the record to the queue");
        if let Some(receipt_handle) = &record.receipt_handle {
            if let Err(error) = redelivery.redeliver_after(receipt_handle, delay).await {
                // It comes back after the queue's visibility timeout instead.
                tracing::warn!(%error, %message_id, "could not set when the record comes back");
            }
        }
        response.add_failure(message_id);
        if let Some(group) = group {
            held_groups.entry(group).or_insert(delay);
        }
    }
    response
}

/// One job, cut short at the deadline and shielded from its panics.
async fn run<H: JobHandler>(handler: &H, job: TurnJob, receipt: Receipt) -> JobDisposition {
    let job = AssertUnwindSafe(handler.handle(job, receipt)).catch_unwind();
    match tokio::time::timeout_at(receipt.deadline, job).await {
        Ok(Ok(disposition)) => disposition,
        Ok(Err(_)) => JobDisposition::retry("the job panicked"),
        Err(_) => JobDisposition::retry("the invocation ran out of time"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use shared::domain::CustomerKey;

    use super::*;

    /// Runs jobs from a script: customers listed in `retry` ask to be retried.
    #[derive(Default)]
    struct ScriptedHandler {
        retry: Vec<String>,
        ran: Mutex<Vec<TurnJob>>,
    }

    impl JobHandler for ScriptedHandler {
        async fn handle(&self, job: TurnJob, receipt: Receipt) -> JobDisposition {
            self.ran.lock().unwrap().push(job.clone());
            if job.customer_key().as_str() == "16505550009" {
                tokio::time::sleep_until(receipt.deadline + Duration::from_secs(1)).await;
            }
            if self.retry.iter().any(|c| c == job.customer_key().as_str()) {
                JobDisposition::retry_after("busy", Duration::from_secs(7))
            } else {
                JobDisposition::Done
            }
        }
    }

    /// Records the visibility each receipt handle was given.
    #[derive(Default)]
    struct RecordedVisibility(Mutex<Vec<(String, Duration)>>);

    impl Redelivery for RecordedVisibility {
        async fn redeliver_after(
            &self,
            receipt_handle: &str,
            delay: Duration,
        ) -> Result<(), shared::queue::QueueError> {
            self.0
                .lock()
                .unwrap()
                .push((receipt_handle.to_owned(), delay));
            Ok(())
        }
    }

    async fn handle(
        handler: &ScriptedHandler,
        event: SqsEvent,
    ) -> (SqsBatchResponse, Vec<(String, Duration)>) {
        let visibility = RecordedVisibility::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let response = handle_batch(
            handler,
            &visibility,
            &RetrySchedule::default(),
            event,
            deadline,
        )
        .await;
        let set = visibility.0.into_inner().unwrap();
        (response, set)
    }

    /// An event as Lambda delivers it from a FIFO queue.
    fn event(records: &[(&str, &str, &str)]) -> SqsEvent {
        let records: Vec<serde_json::Value> = records
            .iter()
            .map(|(id, group, body)| {
                serde_json::json!({
                    "messageId": id,
                    "receiptHandle": format!("AQEB{id}"),
                    "body": body,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": "1764000000000",
                        "SequenceNumber": "18849496460467696128",
                        "MessageGroupId": group,
                        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                        "MessageDeduplicationId": format!("dedup-{id}"),
                        "ApproximateFirstReceiveTimestamp": "1764000000001"
                    },
                    "messageAttributes": {},
                    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:turns.fifo",
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    fn turn(customer: &str) -> String {
        let job = TurnJob::TakeTurn {
            customer_key: CustomerKey::from_whatsapp_id(customer).unwrap(),
        };
        serde_json::to_string(&job).unwrap()
    }

    fn failures(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_batch_that_all_succeeds_reports_no_failure() {
        let handler = ScriptedHandler::default();
        let (response, visibility) =
            handle(&handler, event(&[("m1", "g1", &turn("16505550001"))])).await;
        assert!(failures(&response).is_empty());
        assert!(visibility.is_empty());
        assert_eq!(handler.ran.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_retried_record_comes_back_on_the_schedule_and_holds_back_its_group_only() {
        let handler = ScriptedHandler {
            retry: vec!["16505550001".into()],
            ..Default::default()
        };
        let batch = event(&[
            ("m1", "16505550001", &turn("16505550001")),
            ("m2", "16505550002", &turn("16505550002")),
            ("m3", "16505550001", &turn("16505550001")),
        ]);
        let (response, visibility) = handle(&handler, batch).await;
        assert_eq!(failures(&response), ["m1", "m3"]);
        assert_eq!(
            handler.ran.lock().unwrap().len(),
            2,
            "m3 was not run ahead of m1"
        );
        // Receive 1 waits 2 s by the schedule, raised to the job's 7 s; m3 waits as long.
        assert_eq!(
            visibility,
            [
                ("AQEBm1".to_owned(), Duration::from_secs(7)),
                ("AQEBm3".to_owned(), Duration::from_secs(7))
            ]
        );
    }

    #[tokio::test]
    async fn the_delay_grows_with_the_receive_count() {
        let handler = ScriptedHandler {
            retry: vec!["16505550001".into()],
            ..Default::default()
        };
        let mut batch = event(&[("m1", "g1", &turn("16505550001"))]);
        batch.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), "4".into());
        let (_, visibility) = handle(&handler, batch).await;
        assert_eq!(
            visibility,
            [("AQEBm1".to_owned(), Duration::from_secs(120))]
        );
    }

    #[tokio::test]
    async fn a_record_that_is_not_a_job_goes_back_toward_the_dead_letter_queue() {
        let handler = ScriptedHandler::default();
        let (response, _) = handle(&handler, event(&[("m1", "g1", "{\"job\":\"dance\"}")])).await;
        assert_eq!(failures(&response), ["m1"]);
        assert!(handler.ran.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_job_still_running_at_the_deadline_is_given_back_before_the_invocation_ends() {
        let handler = ScriptedHandler::default();
        let visibility = RecordedVisibility::default();
        let invocation_ends = Instant::now() + GIVE_BACK_TIME + Duration::from_millis(300);
        let batch = event(&[("m1", "g1", &turn("16505550009"))]);
        let response = handle_batch(
            &handler,
            &visibility,
            &RetrySchedule::default(),
            batch,
            invocation_ends,
        )
        .await;
        assert!(Instant::now() < invocation_ends, "given back in time");
        assert_eq!(failures(&response), ["m1"]);
        let set = visibility.0.into_inner().unwrap();
        assert_eq!(set, [("AQEBm1".to_owned(), Duration::from_secs(2))]);
    }

    #[test]
    fn a_scheduled_event_is_told_from_a_batch() {
        let scheduled = serde_json::json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-29T18:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/sweep"], "detail": {}
        });
        assert!(matches!(
            serde_json::from_value::<WorkerEvent>(scheduled).unwrap(),
            WorkerEvent::Schedule(ScheduledEvent { source, .. }) if source == "aws.events"
        ));
        let batch = serde_json::to_value(event(&[("m1", "g1", &turn("16505550001"))])).unwrap();
        assert!(matches!(
            serde_json::from_value::<WorkerEvent>(batch).unwrap(),
            WorkerEvent::Batch(SqsEvent { records, .. }) if records.len() == 1
        ));
    }
}
