//! The sweeper: every minute, work no job is coming for goes back on the queue. A message
//! recorded whose job never reached the queue (the queue was down for longer than Meta retried),
//! a form whose client did not retry a 503, a turn whose worker died before it could say so, a
//! job dead-lettered after its retries, a message an operator put back with `retry_failed`.
//!
//! One SQL function finds it and marks it (`sweep_stranded_work`), so two sweeps, or one run
//! twice, never queue the same work twice; what could not be queued is found again next time.

use std::time::Duration;

use crate::domain::StrandedWork;
use crate::metrics::{Figures, Metric};
use crate::queue::{TurnJob, TurnQueue};
use crate::store::{SessionStore, StoreError};

/// How long work may wait with nothing coming for it before the sweeper queues it: a minute, the
/// schedule's period.
pub const GRACE: Duration = Duration::from_secs(60);

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Customers whose waiting messages were queued for a turn.
    pub turns: usize,
    /// Form submissions whose conversation start was queued.
    pub submissions: usize,
    /// Staff messages whose sending was queued (their Database Webhook was missed).
    pub staff_messages: usize,
    /// Messages and submissions given up for having waited too long.
    pub gave_up: u64,
    /// Found but not queued (the queue refused): found again after `grace`.
    pub not_queued: usize,
}

/// Finds the work stranded for longer than `grace` and queues it.
#[tracing::instrument(name = "sweep", skip_all)]
pub async fn requeue_stranded_work<S: SessionStore, Q: TurnQueue>(
    store: &S,
    queue: &Q,
    grace: Duration,
) -> Result<SweepReport, StoreError> {
    let StrandedWork {
        turns,
        submissions,
        gave_up_messages,
        gave_up_submissions,
        staff_messages,
    } = store.sweep_stranded_work(grace).await?;
    // Unique per sweep: the SQL, not the queue's deduplication, keeps work from being queued twice.
    let sweep = chrono::Utc::now().timestamp_millis();
    let jobs = turns
        .into_iter()
        .map(|customer_key| {
            let id = format!("sweep:{customer_key}:{sweep}");
            (TurnJob::TakeTurn { customer_key }, id)
        })
        .chain(
            submissions
                .into_iter()
                .map(|(submission_id, customer_key)| {
                    let id = format!("sweep:{submission_id}:{sweep}");
                    (
                        TurnJob::StartConversation {
                            customer_key,
                            submission_id,
                        },
                        id,
                    )
                }),
        )
        .chain(
            staff_messages
                .into_iter()
                .map(|(staff_message_id, customer_key)| {
                    let id = format!("sweep:staff:{staff_message_id}:{sweep}");
                    (
                        TurnJob::SendStaffMessage {
                            customer_key,
                            staff_message_id,
                        },
                        id,
                    )
                }),
        );
    let mut report = SweepReport {
        gave_up: gave_up_messages + gave_up_submissions,
        ..SweepReport::default()
    };
    for (job, deduplication_id) in jobs {
        match queue.enqueue(&job, &deduplication_id).await {
            Ok(()) => match job {
                TurnJob::TakeTurn { .. } => report.turns += 1,
                TurnJob::StartConversation { .. } => report.submissions += 1,
                TurnJob::SendStaffMessage { .. } => report.staff_messages += 1,
                // The sweeper finds no outcomes to deliver.
                TurnJob::DeliverOutcome { .. } => {}
            },
            Err(error) => {
                tracing::warn!(%error, customer = %job.customer_key().masked(), "stranded work not queued: the next sweep tries again");
                report.not_queued += 1;
            }
        }
    }
    let requeued = report.turns + report.submissions + report.staff_messages;
    if requeued > 0 || report.gave_up > 0 {
        tracing::warn!(
            turns = report.turns,
            submissions = report.submissions,
            gave_up = report.gave_up,
            not_queued = report.not_queued,
            "the sweeper found stranded work"
        );
    }
    if report.gave_up > 0 {
        tracing::error!(
            messages = gave_up_messages,
            submissions = gave_up_submissions,
            "work waited too long and was given up (see retry_failed in docs/operations.md)"
        );
    }
    Figures::new()
        .add(Metric::SweeperRequeues, requeued as f64)
        .add(Metric::SweeperGaveUp, report.gave_up as f64)
        .emit();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerKey, SubmissionId};
    use crate::fakes::{FakeQueue, FakeStore};
    use crate::queue::QueueError;

    fn customer(n: u8) -> CustomerKey {
        CustomerKey::from_whatsapp_id(&format!("52155123456{n:02}")).unwrap()
    }

    #[tokio::test]
    async fn each_stranded_customer_and_submission_is_queued_once_with_its_job() {
        let store = FakeStore::default();
        let submission = SubmissionId(uuid::Uuid::from_u128(7));
        store.strand(StrandedWork {
            turns: vec![customer(1), customer(2)],
            submissions: vec![(submission, customer(3))],
            gave_up_messages: 1,
            gave_up_submissions: 0,
            ..StrandedWork::default()
        });
        let queue = FakeQueue::default();
        let report = requeue_stranded_work(&store, &queue, GRACE).await.unwrap();
        assert_eq!(
            report,
            SweepReport {
                turns: 2,
                submissions: 1,
                staff_messages: 0,
                gave_up: 1,
                not_queued: 0
            }
        );
        let jobs: Vec<TurnJob> = queue.jobs().into_iter().map(|(job, _)| job).collect();
        assert_eq!(
            jobs,
            [
                TurnJob::TakeTurn {
                    customer_key: customer(1)
                },
                TurnJob::TakeTurn {
                    customer_key: customer(2)
                },
                TurnJob::StartConversation {
                    customer_key: customer(3),
                    submission_id: submission
                },
            ]
        );
        // Marked by the store: a second sweep finds nothing.
        let again = requeue_stranded_work(&store, &queue, GRACE).await.unwrap();
        assert_eq!(again, SweepReport::default());
        assert_eq!(queue.jobs().len(), 3);
    }

    #[tokio::test]
    async fn work_the_queue_refuses_is_counted_and_the_rest_still_queued() {
        let store = FakeStore::default();
        store.strand(StrandedWork {
            turns: vec![customer(1), customer(2)],
            ..StrandedWork::default()
        });
        let queue = FakeQueue::default();
        queue.fail_next(QueueError::Unavailable("down".into()));
        let report = requeue_stranded_work(&store, &queue, GRACE).await.unwrap();
        assert_eq!((report.turns, report.not_queued), (1, 1));
    }
}
