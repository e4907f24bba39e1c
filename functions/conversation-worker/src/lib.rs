//! The conversation worker's entry point: SQS records in, jobs run by the engine, failures
//! reported per record (`ReportBatchItemFailures`) so SQS redelivers only those, and moves them
//! to the dead-letter queue after the redrive policy's receive count.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use shared::queue::{JobDisposition, JobHandler, TurnJob};

/// What the function reads from its environment at INIT.
pub use shared::config::WorkerConfig as Config;

/// The keys of the deployment's secret the function takes ([`shared::secrets::read_into`]):
/// those its [`Config`] reads.
pub const SECRETS: &[&str] = &[
    "SUPABASE_SERVICE_ROLE_KEY",
    "RETELL_API_KEY",
    "WHATSAPP_ACCESS_TOKEN",
];

/// Runs every record of a batch and names those to deliver again.
///
/// A FIFO batch may hold several customers (message groups). Once a record of a group is to be
/// retried, the group's later records are returned unprocessed too, so they cannot overtake it;
/// other groups go on.
pub async fn handle_batch<H: JobHandler>(handler: &H, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut held_groups = HashSet::new();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        if group.as_ref().is_some_and(|g| held_groups.contains(g)) {
            response.add_failure(message_id);
            continue;
        }
        let disposition = match record.body.as_deref().map(serde_json::from_str::<TurnJob>) {
            Some(Ok(job)) => handler.handle(job).await,
            // Never runnable: returned until it lands in the dead-letter queue for a person to see.
            Some(Err(error)) => JobDisposition::RetryLater(format!("not a turn job: {error}")),
            None => JobDisposition::RetryLater("a record without a body".into()),
        };
        if let JobDisposition::RetryLater(reason) = disposition {
            tracing::warn!(%message_id, %reason, "returning the record to the queue");
            response.add_failure(message_id);
            held_groups.extend(group);
        }
    }
    response
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
        async fn handle(&self, job: TurnJob) -> JobDisposition {
            self.ran.lock().unwrap().push(job.clone());
            if self.retry.iter().any(|c| c == job.customer_key().as_str()) {
                JobDisposition::RetryLater("busy".into())
            } else {
                JobDisposition::Done
            }
        }
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
        let response = handle_batch(&handler, event(&[("m1", "g1", &turn("16505550001"))])).await;
        assert!(failures(&response).is_empty());
        assert_eq!(handler.ran.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_retried_record_holds_back_its_group_and_only_its_group() {
        let handler = ScriptedHandler {
            retry: vec!["16505550001".into()],
            ..Default::default()
        };
        let batch = event(&[
            ("m1", "16505550001", &turn("16505550001")),
            ("m2", "16505550002", &turn("16505550002")),
            ("m3", "16505550001", &turn("16505550001")),
        ]);
        let response = handle_batch(&handler, batch).await;
        assert_eq!(failures(&response), ["m1", "m3"]);
        assert_eq!(
            handler.ran.lock().unwrap().len(),
            2,
            "m3 was not run ahead of m1"
        );
    }

    #[tokio::test]
    async fn a_record_that_is_not_a_job_goes_back_toward_the_dead_letter_queue() {
        let handler = ScriptedHandler::default();
        let response = handle_batch(&handler, event(&[("m1", "g1", "{\"job\":\"dance\"}")])).await;
        assert_eq!(failures(&response), ["m1"]);
        assert!(handler.ran.lock().unwrap().is_empty());
    }
}
