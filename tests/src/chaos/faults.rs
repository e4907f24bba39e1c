//! The run's own faults: workers killed at any moment of a turn, and a turn queue that refuses
//! sends for a while.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::engine::BridgeEngine;
use shared::queue::{JobDisposition, JobHandler, QueueError, Receipt, TurnJob, TurnQueue};

use super::lock;

/// Before the run has seen enough turns to know how long they take, kill moments are drawn
/// log-uniformly between these: as many in the first 40 ms (the claim, the store's reads) as
/// between 40 ms and 3 s (Retell's and Graph's calls, their timeouts and retries, the sends and
/// their records).
const KILL_EARLIEST: Duration = Duration::from_millis(1);
const KILL_LATEST: Duration = Duration::from_secs(3);
/// Jobs shorter than this did nothing but find nothing waiting: not a turn to learn from.
const SHORTEST_TURN: Duration = Duration::from_millis(10);
/// Only a job's first receives may be killed: a kill costs a receive of the five the queue
/// allows, as it does in AWS, and a job that an outage already cost three must not lose the
/// last two to kills that no real worker suffers this often.
const KILLED_RECEIVES: u32 = 2;
/// How many recent turns the kill moments are drawn from.
const TURNS_REMEMBERED: usize = 200;

/// A job whose worker was killed.
#[derive(Debug, Clone)]
pub(super) struct Kill {
    pub customer: String,
    pub job_started: Instant,
    pub killed_at: Instant,
}

#[derive(Debug, Default)]
struct JobLog {
    /// How long recent turns took, unkilled, oldest first.
    turns: std::collections::VecDeque<Duration>,
    kills: Vec<Kill>,
    /// Kills drawn for a moment after the job had finished.
    too_late: usize,
    /// Receives that asked to be retried, by reason (kills included).
    retries: BTreeMap<String, usize>,
    receives: Vec<ReceiveRecord>,
}

/// One receive of a job, as the worker saw it.
#[derive(Debug, Clone)]
pub(super) struct ReceiveRecord {
    pub customer: String,
    /// The receive's number (1 the first).
    pub receive: u32,
    pub started: Instant,
    pub ended: Instant,
    /// `done`, `killed`, or the kind of reason it asked to be retried for.
    pub outcome: String,
}

/// The worker, killed now and then at any moment of a job's first or second receive: its future
/// is dropped mid-flight, as a Lambda that dies takes its requests with it, and the job comes
/// back on the queue's retry schedule. The moment is drawn uniformly over the length of a turn of the run picked at random,
/// so kills fall in every part of a turn as often as turns spend there, slow turns included.
pub(super) struct KillingWorker {
    engine: BridgeEngine,
    kill_rate: f64,
    /// Set when the run's faults end: no more kills.
    spared: std::sync::atomic::AtomicBool,
    log: Mutex<JobLog>,
}

impl KillingWorker {
    pub fn new(engine: BridgeEngine, kill_rate: f64) -> Self {
        Self {
            engine,
            kill_rate,
            spared: std::sync::atomic::AtomicBool::new(false),
            log: Mutex::default(),
        }
    }

    /// No worker is killed from now on.
    pub fn spare(&self) {
        self.spared.store(true, Ordering::Relaxed);
    }

    /// How many receives there were, by their number (1st, 2nd, …).
    pub fn receive_counts(&self) -> BTreeMap<u32, usize> {
        let mut counts = BTreeMap::new();
        for record in &lock(&self.log).receives {
            *counts.entry(record.receive).or_default() += 1;
        }
        counts
    }

    pub fn kills(&self) -> Vec<Kill> {
        lock(&self.log).kills.clone()
    }

    pub fn kills_too_late(&self) -> usize {
        lock(&self.log).too_late
    }

    /// Receives that asked to be retried, by reason (kills included).
    pub fn retries(&self) -> BTreeMap<String, usize> {
        lock(&self.log).retries.clone()
    }

    /// The turns' lengths the kill moments are drawn from: (p50, p90) of the recent ones.
    pub fn turn_lengths(&self) -> Option<(Duration, Duration)> {
        let mut turns: Vec<Duration> = lock(&self.log).turns.iter().copied().collect();
        turns.sort();
        let at = |q: f64| turns[((turns.len() - 1) as f64 * q).round() as usize];
        (!turns.is_empty()).then(|| (at(0.5), at(0.9)))
    }

    fn kill_moment(&self) -> Duration {
        let log = lock(&self.log);
        if log.turns.len() < 20 {
            return log_uniform_moment();
        }
        let turn = log.turns[fastrand::usize(..log.turns.len())];
        turn.mul_f64(fastrand::f64())
    }

    /// Each receive of `customer`'s jobs, in the order they ended.
    pub fn receives_of(&self, customer: &str) -> Vec<ReceiveRecord> {
        lock(&self.log)
            .receives
            .iter()
            .filter(|record| record.customer == customer)
            .cloned()
            .collect()
    }

    fn record(
        &self,
        customer: String,
        receipt: Receipt,
        started: Instant,
        disposition: &JobDisposition,
    ) {
        let took = started.elapsed();
        let mut log = lock(&self.log);
        let outcome = match disposition {
            JobDisposition::Done => "done".to_owned(),
            JobDisposition::RetryLater(retry) => reason_kind(&retry.reason),
        };
        log.receives.push(ReceiveRecord {
            customer,
            receive: receipt.receive,
            started,
            ended: Instant::now(),
            outcome,
        });
        if took >= SHORTEST_TURN {
            if log.turns.len() == TURNS_REMEMBERED {
                log.turns.pop_front();
            }
            log.turns.push_back(took);
        }
        if let JobDisposition::RetryLater(retry) = disposition {
            *log.retries.entry(reason_kind(&retry.reason)).or_default() += 1;
        }
    }
}

/// A retry's reason without what is particular to one job (ids, addresses, bodies).
fn reason_kind(reason: &str) -> String {
    let kind = reason.split(": ").take(2).collect::<Vec<_>>().join(": ");
    let kind: String = kind.chars().take(90).collect();
    kind.split(['(', '{'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn log_uniform_moment() -> Duration {
    let (low, high) = (
        KILL_EARLIEST.as_secs_f64().ln(),
        KILL_LATEST.as_secs_f64().ln(),
    );
    Duration::from_secs_f64((low + (high - low) * fastrand::f64()).exp())
}

impl KillingWorker {
    /// A receive that died: killed by the run, or cut short at its invocation's deadline.
    fn died(&self, customer: String, receive: u32, started: Instant, how: &str) {
        let mut log = lock(&self.log);
        let now = Instant::now();
        log.receives.push(ReceiveRecord {
            customer: customer.clone(),
            receive,
            started,
            ended: now,
            outcome: how.to_owned(),
        });
        log.kills.push(Kill {
            customer,
            job_started: started,
            killed_at: now,
        });
        *log.retries.entry(how.to_owned()).or_default() += 1;
    }

    async fn run(&self, job: TurnJob, receipt: Receipt, started: Instant) -> JobDisposition {
        let customer = job.customer_key().as_str().to_owned();
        if receipt.receive > KILLED_RECEIVES
            || self.spared.load(Ordering::Relaxed)
            || fastrand::f64() >= self.kill_rate
        {
            let disposition = self.engine.handle(job, receipt).await;
            self.record(customer, receipt, started, &disposition);
            return disposition;
        }
        let kill_after = self.kill_moment();
        tokio::select! {
            disposition = self.engine.handle(job, receipt) => {
                lock(&self.log).too_late += 1;
                self.record(customer, receipt, started, &disposition);
                disposition
            }
            () = tokio::time::sleep(kill_after) => {
                self.died(customer, receipt.receive, started, KILLED);
                JobDisposition::retry(KILLED)
            }
        }
    }
}

const KILLED: &str = "the worker was killed mid-turn";

/// Records a receive the queue cut short at its invocation's deadline (its future dropped, as
/// Lambda ends an invocation that runs out of time): a death the run did not cause.
struct CutShort<'w> {
    worker: &'w KillingWorker,
    customer: String,
    receive: u32,
    started: Instant,
    armed: bool,
}

impl Drop for CutShort<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.worker.died(
                std::mem::take(&mut self.customer),
                self.receive,
                self.started,
                "cut short at the invocation's deadline",
            );
        }
    }
}

impl JobHandler for KillingWorker {
    async fn handle(&self, job: TurnJob, receipt: Receipt) -> JobDisposition {
        let mut cut_short = CutShort {
            worker: self,
            customer: job.customer_key().as_str().to_owned(),
            receive: receipt.receive,
            started: Instant::now(),
            armed: true,
        };
        let disposition = self.run(job, receipt, cut_short.started).await;
        cut_short.armed = false;
        disposition
    }
}

/// A switch the run turns on for a while, and the moments it was on.
#[derive(Debug, Default)]
pub(super) struct OutageSwitch {
    until: Mutex<Option<Instant>>,
}

impl OutageSwitch {
    pub fn fail_for(&self, duration: Duration) -> Instant {
        let until = Instant::now() + duration;
        *lock(&self.until) = Some(until);
        until
    }

    pub fn is_on(&self) -> bool {
        lock(&self.until).is_some_and(|until| Instant::now() < until)
    }
}

/// The turn queue, refusing every send while its outage is on (SQS unreachable, throttled):
/// the webhook answers 503 and Meta delivers again; the form answers 503 and its client may or
/// may not try again.
pub(super) struct RefusingQueue<Q> {
    inner: Q,
    outage: Arc<OutageSwitch>,
    refused: Arc<AtomicUsize>,
}

impl<Q: Clone> Clone for RefusingQueue<Q> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            outage: Arc::clone(&self.outage),
            refused: Arc::clone(&self.refused),
        }
    }
}

impl<Q> RefusingQueue<Q> {
    pub fn new(inner: Q) -> Self {
        Self {
            inner,
            outage: Arc::default(),
            refused: Arc::default(),
        }
    }

    pub fn inner(&self) -> &Q {
        &self.inner
    }

    pub fn outage(&self) -> &OutageSwitch {
        &self.outage
    }

    /// Sends refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl<Q: TurnQueue> TurnQueue for RefusingQueue<Q> {
    async fn enqueue(&self, job: &TurnJob, deduplication_id: &str) -> Result<(), QueueError> {
        if self.outage.is_on() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Unavailable(
                "the chaos run's queue outage: sends refused".into(),
            ));
        }
        self.inner.enqueue(job, deduplication_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_kill_moments_cover_a_long_turn() {
        let moments: Vec<Duration> = (0..10_000).map(|_| log_uniform_moment()).collect();
        assert!(
            moments
                .iter()
                .all(|m| (KILL_EARLIEST..=KILL_LATEST).contains(m))
        );
        let share = |low: u64, high: u64| {
            moments
                .iter()
                .filter(|&&m| {
                    (Duration::from_millis(low)..Duration::from_millis(high)).contains(&m)
                })
                .count() as f64
                / moments.len() as f64
        };
        assert!(share(1, 40) > 0.35, "{}", share(1, 40));
        assert!(share(500, 3_000) > 0.15, "{}", share(500, 3_000));
    }

    #[test]
    fn retry_reasons_are_told_apart_by_kind_not_by_job() {
        assert_eq!(
            reason_kind(
                "the store is unavailable: HTTP 503 PGRST001: Database client error. Retrying."
            ),
            "the store is unavailable: HTTP 503 PGRST001"
        );
        assert_eq!(
            reason_kind("another turn holds the customer"),
            "another turn holds the customer"
        );
    }
}
