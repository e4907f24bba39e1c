//! The turn queue inside the process, for the local run and the tests, with SQS FIFO's guarantees:
//! a customer's jobs run one at a time in the order they were queued, customers run in parallel,
//! a deduplication id seen within the window is dropped, a job asking to be retried runs again
//! after its schedule's delay (as the worker sets an SQS message's visibility; holding back its
//! customer's later jobs meanwhile) until it has been received `max_receives` times, and then
//! goes to the dead letters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use super::sqs::job_kind;
use super::{JobDisposition, JobHandler, QueueError, Receipt, Retry, TurnJob, TurnQueue};
use crate::retry::RetrySchedule;

/// How the in-process queue imitates SQS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProcessSettings {
    /// How long a job that asked to be retried waits before it runs again, by receive (the
    /// worker sets the SQS message's visibility to the same).
    pub schedule: RetrySchedule,
    /// How many times a job runs before it goes to the dead letters (a redrive policy's
    /// `maxReceiveCount`).
    pub max_receives: u32,
    /// How long a deduplication id drops repeats (SQS: 5 minutes).
    pub deduplication_window: Duration,
    /// How long one receive may run (the worker's Lambda timeout): the job's deadline.
    pub invocation_timeout: Duration,
}

impl Default for InProcessSettings {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            max_receives: 5,
            deduplication_window: Duration::from_secs(5 * 60),
            invocation_timeout: Duration::from_secs(180),
        }
    }
}

/// What the queue has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InProcessStats {
    /// Jobs accepted (repeats not counted).
    pub enqueued: usize,
    /// Jobs dropped as repeats of a deduplication id.
    pub duplicates: usize,
    /// Times the handler ran (every retry counts).
    pub receives: usize,
    /// Jobs the handler finished ([`JobDisposition::Done`]).
    pub done: usize,
    /// Jobs that went to the dead letters.
    pub dead_lettered: usize,
}

/// [`TurnQueue`] running jobs on tokio tasks of this process. Cheap to clone: clones share the
/// queue. Enqueueing needs a tokio runtime and never waits for a running job.
pub struct InProcessQueue<H: JobHandler> {
    inner: Arc<Inner<H>>,
}

impl<H: JobHandler> Clone for InProcessQueue<H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<H> {
    handler: Arc<H>,
    settings: InProcessSettings,
    state: Mutex<State>,
    /// Jobs accepted and not yet finished (done or dead-lettered), retries waiting included.
    unfinished: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    /// The customers with jobs, each served by one task while it has any.
    groups: HashMap<String, VecDeque<TurnJob>>,
    /// When each deduplication id was first seen.
    seen: HashMap<String, Instant>,
    dead_letters: Vec<(TurnJob, String)>,
    stats: InProcessStats,
}

impl<H: JobHandler> InProcessQueue<H> {
    pub fn new(handler: Arc<H>, settings: InProcessSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                handler,
                settings,
                state: Mutex::new(State::default()),
                unfinished: watch::Sender::new(0),
            }),
        }
    }

    pub fn handler(&self) -> &Arc<H> {
        &self.inner.handler
    }

    pub fn settings(&self) -> &InProcessSettings {
        &self.inner.settings
    }

    /// Resolves once every job queued so far, and every job those jobs queued, has finished
    /// (done or dead-lettered), retries included. Resolves at once when nothing is queued.
    pub async fn idle(&self) {
        let mut unfinished = self.inner.unfinished.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = unfinished.wait_for(|n| *n == 0).await;
    }

    /// Jobs accepted and not finished yet.
    pub fn unfinished(&self) -> usize {
        *self.inner.unfinished.borrow()
    }

    /// The jobs that were received `max_receives` times without finishing, each with the reason
    /// its last run gave, in the order they gave up.
    pub fn dead_letters(&self) -> Vec<(TurnJob, String)> {
        self.inner.state().dead_letters.clone()
    }

    pub fn stats(&self) -> InProcessStats {
        self.inner.state().stats
    }

    /// Times the handler ran, retries included.
    pub fn handled(&self) -> usize {
        self.stats().receives
    }

    fn accept(&self, job: &TurnJob, deduplication_id: &str) -> bool {
        let now = Instant::now();
        let window = self.inner.settings.deduplication_window;
        let mut state = self.inner.state();
        state
            .seen
            .retain(|_, first_seen| now.duration_since(*first_seen) < window);
        if state.seen.contains_key(deduplication_id) {
            state.stats.duplicates += 1;
            return false;
        }
        state.seen.insert(deduplication_id.to_owned(), now);
        state.stats.enqueued += 1;
        self.inner.unfinished.send_modify(|n| *n += 1);
        let key = job.customer_key().as_str().to_owned();
        let start_worker = !state.groups.contains_key(&key);
        state
            .groups
            .entry(key.clone())
            .or_default()
            .push_back(job.clone());
        drop(state);
        if start_worker {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(inner.serve_group(key));
        }
        true
    }
}

impl<H: JobHandler> TurnQueue for InProcessQueue<H> {
    async fn enqueue(&self, job: &TurnJob, deduplication_id: &str) -> Result<(), QueueError> {
        let _span = tracing::debug_span!(
            "enqueue",
            queue = "in_process",
            customer = %job.customer_key().masked(),
            job = job_kind(job),
        )
        .entered();
        if self.accept(job, deduplication_id) {
            tracing::debug!("job queued");
        } else {
            tracing::debug!("job dropped: its deduplication id was seen within the window");
        }
        Ok(())
    }
}

impl<H: JobHandler> Inner<H> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a customer's jobs one at a time, each until it is done or dead, while there are
    /// any; a job enqueued meanwhile waits at the back of the group. The group (and so the
    /// right to start another task for it) ends under the same lock `accept` checks.
    async fn serve_group(self: Arc<Self>, key: String) {
        loop {
            let job = {
                let mut state = self.state();
                let group = state.groups.get_mut(&key).expect("a served group exists");
                match group.front() {
                    Some(job) => job.clone(),
                    None => {
                        state.groups.remove(&key);
                        return;
                    }
                }
            };
            self.run_until_finished(&job).await;
            let mut state = self.state();
            if let Some(group) = state.groups.get_mut(&key) {
                group.pop_front();
            }
            drop(state);
            self.unfinished.send_modify(|n| *n -= 1);
        }
    }

    async fn run_until_finished(&self, job: &TurnJob) {
        let span = tracing::info_span!(
            "turn_job",
            queue = "in_process",
            customer = %job.customer_key().masked(),
            job = job_kind(job),
        );
        let mut receives = 0;
        loop {
            receives += 1;
            self.state().stats.receives += 1;
            let disposition = self.run_once(job, receives).instrument(span.clone()).await;
            let Retry { reason, not_before } = match disposition {
                JobDisposition::Done => {
                    self.state().stats.done += 1;
                    return;
                }
                JobDisposition::RetryLater(retry) => retry,
            };
            if receives >= self.settings.max_receives {
                span.in_scope(|| tracing::error!(receives, %reason, "job dead-lettered"));
                let mut state = self.state();
                state.dead_letters.push((job.clone(), reason));
                state.stats.dead_lettered += 1;
                return;
            }
            let delay = self.settings.schedule.delay(receives, not_before);
            span.in_scope(|| tracing::info!(receives, %reason, ?delay, "job to be retried"));
            tokio::time::sleep(delay).await;
        }
    }

    /// One receive, on a task of its own so that a panicking handler counts as a failed
    /// receive (as a crashed Lambda's message comes back) instead of stalling the group.
    async fn run_once(&self, job: &TurnJob, receive: u32) -> JobDisposition {
        let handler = Arc::clone(&self.handler);
        let job = job.clone();
        let deadline = tokio::time::Instant::now() + self.settings.invocation_timeout;
        // Past its deadline a receive is cut short, as Lambda ends an invocation.
        let receipt = Receipt {
            deadline,
            receive,
            retry_in: self.settings.schedule.delay(receive, None),
        };
        let run =
            tokio::time::timeout_at(deadline, async move { handler.handle(job, receipt).await });
        match tokio::spawn(run).await {
            Ok(Ok(disposition)) => disposition,
            Ok(Err(_)) => JobDisposition::retry("the invocation timed out"),
            Err(e) => JobDisposition::retry(format!("the handler failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::domain::{CustomerKey, SubmissionId};

    const CUSTOMER_A: &str = "5215512345678";
    const CUSTOMER_B: &str = "5491112345678";

    fn job(customer: &str, n: u128) -> TurnJob {
        TurnJob::StartConversation {
            customer_key: CustomerKey::from_whatsapp_id(customer).unwrap(),
            submission_id: SubmissionId(uuid::Uuid::from_u128(n)),
        }
    }

    fn number(job: &TurnJob) -> u128 {
        match job {
            TurnJob::StartConversation { submission_id, .. } => submission_id.0.as_u128(),
            TurnJob::TakeTurn { .. }
            | TurnJob::SendStaffMessage { .. }
            | TurnJob::DeliverOutcome { .. } => u128::MAX,
        }
    }

    #[derive(Debug, Clone)]
    struct Run {
        customer: String,
        job: u128,
        start: Instant,
        end: Instant,
    }

    /// Sleeps as long as told for each job, fails a job as many times as told (or panics),
    /// and records every run.
    #[derive(Default)]
    struct FakeHandler {
        delay: HashMap<u128, Duration>,
        failures: HashMap<u128, usize>,
        panics: HashMap<u128, usize>,
        runs: Mutex<Vec<Run>>,
    }

    impl FakeHandler {
        fn delay(mut self, job: u128, delay: Duration) -> Self {
            self.delay.insert(job, delay);
            self
        }

        fn fail(mut self, job: u128, times: usize) -> Self {
            self.failures.insert(job, times);
            self
        }

        fn panic(mut self, job: u128, times: usize) -> Self {
            self.panics.insert(job, times);
            self
        }

        fn runs(&self) -> Vec<Run> {
            self.runs.lock().unwrap().clone()
        }

        fn order(&self, customer: &str) -> Vec<u128> {
            let key = CustomerKey::from_whatsapp_id(customer).unwrap();
            self.runs()
                .into_iter()
                .filter(|run| run.customer == key.as_str())
                .map(|run| run.job)
                .collect()
        }
    }

    impl JobHandler for FakeHandler {
        async fn handle(&self, job: TurnJob, _receipt: Receipt) -> JobDisposition {
            let n = number(&job);
            let start = Instant::now();
            let earlier = self.runs().iter().filter(|run| run.job == n).count();
            tokio::time::sleep(
                self.delay
                    .get(&n)
                    .copied()
                    .unwrap_or(Duration::from_millis(1)),
            )
            .await;
            self.runs.lock().unwrap().push(Run {
                customer: job.customer_key().as_str().to_owned(),
                job: n,
                start,
                end: Instant::now(),
            });
            let panics = self.panics.get(&n).copied().unwrap_or(0);
            if earlier < panics {
                panic!("job {n} panics");
            }
            if earlier < panics + self.failures.get(&n).copied().unwrap_or(0) {
                return JobDisposition::retry(format!("job {n} failed on run {}", earlier + 1));
            }
            JobDisposition::Done
        }
    }

    fn fast() -> InProcessSettings {
        InProcessSettings {
            schedule: RetrySchedule::new(vec![Duration::from_millis(20)]),
            max_receives: 3,
            ..InProcessSettings::default()
        }
    }

    async fn idle<H: JobHandler>(queue: &InProcessQueue<H>) {
        tokio::time::timeout(Duration::from_secs(10), queue.idle())
            .await
            .expect("the queue became idle");
    }

    #[test]
    fn defaults_are_sqs_like() {
        let settings = InProcessSettings::default();
        assert_eq!(settings.schedule, RetrySchedule::default());
        assert_eq!(settings.max_receives, 5);
        assert_eq!(settings.deduplication_window, Duration::from_secs(300));
    }

    #[tokio::test]
    async fn idle_resolves_at_once_when_nothing_is_queued() {
        let queue = InProcessQueue::new(Arc::new(FakeHandler::default()), fast());
        idle(&queue).await;
        assert_eq!(queue.stats(), InProcessStats::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_customers_jobs_run_one_at_a_time_in_order() {
        // Earlier jobs are slower: without the group they would finish last.
        let mut handler = FakeHandler::default();
        for n in 0..6 {
            handler = handler.delay(n, Duration::from_millis(30 - 5 * n as u64));
        }
        let handler = Arc::new(handler);
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        for n in 0..6 {
            queue
                .enqueue(&job(CUSTOMER_A, n), &format!("id-{n}"))
                .await
                .unwrap();
        }
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), (0..6).collect::<Vec<_>>());
        let runs = handler.runs();
        for pair in runs.windows(2) {
            assert!(pair[0].end <= pair[1].start, "runs overlap: {pair:?}");
        }
        assert_eq!(queue.handled(), 6);
        assert_eq!(queue.stats().done, 6);
        assert_eq!(queue.unfinished(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn customers_run_in_parallel() {
        let slow = Duration::from_millis(300);
        let handler = Arc::new(FakeHandler::default().delay(1, slow).delay(2, slow));
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        let started = Instant::now();
        queue.enqueue(&job(CUSTOMER_A, 1), "a").await.unwrap();
        queue.enqueue(&job(CUSTOMER_B, 2), "b").await.unwrap();
        idle(&queue).await;
        let elapsed = started.elapsed();
        let runs = handler.runs();
        assert_eq!(runs.len(), 2);
        let (a, b) = (&runs[0], &runs[1]);
        assert!(
            a.start < b.end && b.start < a.end,
            "the two customers' jobs did not overlap: {runs:?}"
        );
        assert!(elapsed < 2 * slow, "{elapsed:?}");
    }

    #[tokio::test]
    async fn enqueue_does_not_wait_for_a_running_job() {
        let handler = Arc::new(FakeHandler::default().delay(1, Duration::from_millis(300)));
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await; // job 1 is running
        let started = Instant::now();
        queue.enqueue(&job(CUSTOMER_A, 2), "2").await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(queue.unfinished(), 2);
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), [1, 2]);
    }

    #[tokio::test]
    async fn a_repeated_deduplication_id_is_dropped() {
        let handler = Arc::new(FakeHandler::default());
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        queue.enqueue(&job(CUSTOMER_A, 1), "wamid.1").await.unwrap();
        queue.enqueue(&job(CUSTOMER_A, 2), "wamid.1").await.unwrap();
        idle(&queue).await;
        // Also after the first one has finished, within the window.
        queue.enqueue(&job(CUSTOMER_B, 3), "wamid.1").await.unwrap();
        queue.enqueue(&job(CUSTOMER_A, 4), "wamid.2").await.unwrap();
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), [1, 4]);
        assert_eq!(handler.order(CUSTOMER_B), [] as [u128; 0]);
        let stats = queue.stats();
        assert_eq!((stats.enqueued, stats.duplicates, stats.done), (2, 2, 2));
    }

    #[tokio::test]
    async fn a_deduplication_id_is_forgotten_after_the_window() {
        let handler = Arc::new(FakeHandler::default());
        let settings = InProcessSettings {
            deduplication_window: Duration::from_millis(50),
            ..fast()
        };
        let queue = InProcessQueue::new(Arc::clone(&handler), settings);
        queue.enqueue(&job(CUSTOMER_A, 1), "same").await.unwrap();
        idle(&queue).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        queue.enqueue(&job(CUSTOMER_A, 2), "same").await.unwrap();
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), [1, 2]);
    }

    #[tokio::test]
    async fn a_job_asking_for_a_retry_runs_again_after_its_schedules_growing_delay() {
        let handler = Arc::new(FakeHandler::default().fail(1, 2));
        let settings = InProcessSettings {
            schedule: RetrySchedule::new(vec![
                Duration::from_millis(20),
                Duration::from_millis(150),
            ]),
            ..fast()
        };
        let queue = InProcessQueue::new(Arc::clone(&handler), settings);
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        idle(&queue).await;
        let runs = handler.runs();
        assert_eq!(handler.order(CUSTOMER_A), [1, 1, 1]);
        let gaps: Vec<Duration> = runs
            .windows(2)
            .map(|pair| pair[1].start.duration_since(pair[0].end))
            .collect();
        assert!(
            gaps[0] >= Duration::from_millis(20),
            "first retry after {gaps:?}"
        );
        assert!(
            gaps[1] >= Duration::from_millis(150),
            "second retry after {gaps:?}"
        );
        assert!(queue.dead_letters().is_empty());
        let stats = queue.stats();
        assert_eq!((stats.receives, stats.done, stats.dead_lettered), (3, 1, 0));
    }

    /// Asks to be retried no sooner than 120 ms, once.
    struct HintedHandler(Mutex<Vec<Instant>>);

    impl JobHandler for HintedHandler {
        async fn handle(&self, _job: TurnJob, _receipt: Receipt) -> JobDisposition {
            let mut runs = self.0.lock().unwrap();
            runs.push(Instant::now());
            match runs.len() {
                1 => JobDisposition::retry_after("rate limited", Duration::from_millis(120)),
                _ => JobDisposition::Done,
            }
        }
    }

    #[tokio::test]
    async fn a_retry_after_hint_raises_the_delay() {
        let handler = Arc::new(HintedHandler(Mutex::new(Vec::new())));
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        idle(&queue).await;
        let runs = handler.0.lock().unwrap().clone();
        assert_eq!(runs.len(), 2);
        assert!(runs[1] - runs[0] >= Duration::from_millis(120), "{runs:?}");
    }

    #[tokio::test]
    async fn a_receive_past_the_invocation_timeout_is_cut_short_and_retried() {
        let handler = Arc::new(FakeHandler::default().delay(1, Duration::from_secs(30)));
        let settings = InProcessSettings {
            invocation_timeout: Duration::from_millis(50),
            max_receives: 2,
            ..fast()
        };
        let queue = InProcessQueue::new(Arc::clone(&handler), settings);
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        idle(&queue).await;
        assert_eq!(
            queue.dead_letters(),
            [(job(CUSTOMER_A, 1), "the invocation timed out".to_owned())]
        );
        assert!(handler.runs().is_empty(), "no receive ran to its end");
    }

    #[tokio::test]
    async fn a_job_failing_max_receives_times_is_dead_lettered() {
        let handler = Arc::new(FakeHandler::default().fail(1, usize::MAX));
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        queue.enqueue(&job(CUSTOMER_A, 2), "2").await.unwrap();
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), [1, 1, 1, 2]);
        assert_eq!(
            queue.dead_letters(),
            [(job(CUSTOMER_A, 1), "job 1 failed on run 3".to_owned())]
        );
        let stats = queue.stats();
        assert_eq!((stats.receives, stats.done, stats.dead_lettered), (4, 1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_waiting_for_its_retry_holds_back_its_customer_only() {
        let settings = InProcessSettings {
            schedule: RetrySchedule::new(vec![Duration::from_millis(100)]),
            ..fast()
        };
        let handler = Arc::new(FakeHandler::default().fail(1, 2));
        let queue = InProcessQueue::new(Arc::clone(&handler), settings);
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        queue.enqueue(&job(CUSTOMER_A, 2), "2").await.unwrap();
        queue.enqueue(&job(CUSTOMER_B, 3), "3").await.unwrap();
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), [1, 1, 1, 2]);
        let runs = handler.runs();
        let last_of_1 = runs
            .iter()
            .filter(|run| run.job == 1)
            .map(|run| run.end)
            .max()
            .unwrap();
        let run_of = |n| runs.iter().find(|run| run.job == n).unwrap();
        assert!(
            run_of(2).start >= last_of_1,
            "job 2 overtook job 1: {runs:?}"
        );
        // Customer B did not wait for A's retries.
        let second_of_1 = runs.iter().filter(|run| run.job == 1).nth(1).unwrap().start;
        assert!(run_of(3).end < second_of_1, "{runs:?}");
    }

    #[tokio::test]
    async fn a_panicking_handler_counts_as_a_failed_receive() {
        let handler = Arc::new(FakeHandler::default().panic(1, 1));
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        queue.enqueue(&job(CUSTOMER_A, 2), "2").await.unwrap();
        idle(&queue).await;
        assert_eq!(handler.order(CUSTOMER_A), [1, 1, 2]);
        assert!(queue.dead_letters().is_empty());
        assert_eq!(queue.stats().done, 2);
    }

    #[tokio::test]
    async fn clones_share_the_queue() {
        let handler = Arc::new(FakeHandler::default());
        let queue = InProcessQueue::new(Arc::clone(&handler), fast());
        let clone = queue.clone();
        queue.enqueue(&job(CUSTOMER_A, 1), "1").await.unwrap();
        clone.enqueue(&job(CUSTOMER_A, 2), "1").await.unwrap();
        clone.idle().await;
        assert_eq!(handler.order(CUSTOMER_A), [1]);
        assert_eq!(queue.stats().duplicates, 1);
    }
}
