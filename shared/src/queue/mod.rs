//! The queue of turns: one job at a time per customer (the customer key is the FIFO group),
//! customers in parallel. SQS FIFO in AWS ([`SqsQueue`]); in-process for the local run and the
//! tests ([`InProcessQueue`]), with the same ordering.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{ChatId, CustomerKey, SubmissionId};
use crate::retry::RetrySchedule;

/// What the worker is asked to do for a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum TurnJob {
    /// A form was submitted: open the conversation (chat, first-contact template).
    StartConversation {
        customer_key: CustomerKey,
        submission_id: SubmissionId,
    },
    /// The customer wrote: answer everything they sent that is still waiting.
    TakeTurn { customer_key: CustomerKey },
    /// Staff inserted a row into `staff_messages` (the Database Webhook's `POST /staff`, or the
    /// sweeper): send it on WhatsApp as the business, in the customer's turn order.
    SendStaffMessage {
        customer_key: CustomerKey,
        staff_message_id: i64,
    },
    /// Retell analysed a chat of the customer's (`POST /retell`'s `chat_analyzed`): POST its
    /// outcome to `OUTCOME_WEBHOOK_URL`, retried on the queue's schedule.
    DeliverOutcome {
        customer_key: CustomerKey,
        chat_id: ChatId,
    },
}

impl TurnJob {
    pub fn customer_key(&self) -> &CustomerKey {
        match self {
            Self::StartConversation { customer_key, .. }
            | Self::TakeTurn { customer_key }
            | Self::SendStaffMessage { customer_key, .. }
            | Self::DeliverOutcome { customer_key, .. } => customer_key,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue could not take the job now; the caller should answer so that it is retried
    /// (the webhook's 503).
    #[error("the turn queue is unavailable: {0}")]
    Unavailable(String),
    #[error("the turn queue refused the job: {0}")]
    Rejected(String),
}

pub trait TurnQueue: Send + Sync {
    /// Queues `job` in its customer's group. `deduplication_id` makes a repeat within the
    /// queue's window (5 minutes on SQS) a no-op: the wamid, or the submission id.
    fn enqueue(
        &self,
        job: &TurnJob,
        deduplication_id: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// When a received job is delivered again: SQS's `ChangeMessageVisibility`, which the worker
/// sets on every record it gives back, so a retry follows the schedule instead of the queue's
/// visibility timeout.
pub trait Redelivery: Send + Sync {
    fn redeliver_after(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobDisposition {
    /// Finished, whatever the outcome (a failed turn is recorded as such): do not run it again.
    Done,
    /// Could not finish for a reason that may pass (a service unavailable, another turn holding
    /// the customer, no time left in the invocation): run it again after the queue's
    /// [`RetrySchedule`](crate::retry::RetrySchedule), until the queue gives up (the dead-letter
    /// queue).
    RetryLater(Retry),
}

/// Why a job is to run again, and the least it should wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub reason: String,
    /// A service's `retry-after`, or a lease still held: the schedule's delay rises to it.
    pub not_before: Option<Duration>,
}

impl JobDisposition {
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::RetryLater(Retry {
            reason: reason.into(),
            not_before: None,
        })
    }

    pub fn retry_after(reason: impl Into<String>, not_before: Duration) -> Self {
        Self::RetryLater(Retry {
            reason: reason.into(),
            not_before: Some(not_before),
        })
    }
}

/// Runs jobs taken from the queue: the conversation engine.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs `job` within its receipt's deadline: what does not fit is put back and asked to be
    /// retried.
    fn handle(&self, job: TurnJob, receipt: Receipt)
    -> impl Future<Output = JobDisposition> + Send;
}

/// One receive of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// When the invocation ends (Lambda's deadline; the in-process queue's
    /// `invocation_timeout` after the receive).
    pub deadline: tokio::time::Instant,
    /// How many times the job has been received, this time included (SQS's
    /// `ApproximateReceiveCount`).
    pub receive: u32,
    /// How long the queue waits before the next receive if this one asks to be retried: its
    /// schedule's delay for this receive (the engine tells the sweeper when the retry is due).
    pub retry_in: Duration,
}

impl Receipt {
    /// The one receive of work run outside a queue (by hand, in the tests): a quarter of an hour,
    /// and the production schedule's first delay.
    pub fn unqueued() -> Self {
        Self {
            deadline: tokio::time::Instant::now() + Duration::from_secs(900),
            receive: 1,
            retry_in: RetrySchedule::default().delay(1, None),
        }
    }

    /// The wait before the next receive, raised to a service's `not_before`.
    pub fn retry_delay(&self, not_before: Option<Duration>) -> Duration {
        crate::retry::raised(self.retry_in, not_before)
    }
}

mod in_process;
mod sqs;

pub use in_process::{InProcessQueue, InProcessSettings, InProcessStats};
pub use sqs::SqsQueue;
