//! Backoff: with jitter inside a request (the HTTP adapters' [`RetryPolicy`]), and on a schedule
//! between a job's receives (the queue's [`RetrySchedule`]).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const DEFAULT: Self = Self {
        max_retries: 3,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(8),
    };

    /// How long to wait before retry number `retry` (0-based): `base · 2^retry`, capped, with
    /// "full jitter" (a random point in the second half) so many callers do not retry in step.
    /// A server's `retry_after` wins when it is given, capped at `max_delay`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let exponential = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let half = exponential / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How long a job that failed waits before its next receive, by how many times it has been
/// received: seconds at first, so one transient failure costs the customer seconds, then longer,
/// so an outage is not hammered. The last delay repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    /// The production schedule: 2 s, 10 s, 30 s, 2 min, 10 min.
    pub const DEFAULT_SECONDS: [u64; 5] = [2, 10, 30, 120, 600];
    /// The longest wait SQS takes (`ChangeMessageVisibility`: 12 hours).
    pub const MAX_DELAY: Duration = Duration::from_secs(43_200);

    /// A schedule of these delays (the tests wait milliseconds); at least one.
    pub fn new(delays: Vec<Duration>) -> Self {
        assert!(!delays.is_empty(), "a retry schedule needs a delay");
        Self { delays }
    }

    /// The wait after receive number `receive` (1-based) failed: the schedule's, raised (never
    /// lowered) to a service's `hint` (Retell's `retry-after`, a lease still held), at most
    /// [`Self::MAX_DELAY`].
    pub fn delay(&self, receive: u32, hint: Option<Duration>) -> Duration {
        let index = (receive.max(1) as usize - 1).min(self.delays.len() - 1);
        raised(self.delays[index], hint)
    }

    /// The whole schedule of `receives` receives: how long a job keeps trying before it is
    /// dead-lettered.
    pub fn total(&self, receives: u32) -> Duration {
        (1..receives).map(|receive| self.delay(receive, None)).sum()
    }
}

/// `delay` raised (never lowered) to a service's `hint`, at most [`RetrySchedule::MAX_DELAY`].
pub fn raised(delay: Duration, hint: Option<Duration>) -> Duration {
    delay
        .max(hint.unwrap_or_default())
        .min(RetrySchedule::MAX_DELAY)
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::new(
            Self::DEFAULT_SECONDS
                .iter()
                .map(|&s| Duration::from_secs(s))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_their_jitter_and_stop_at_the_cap() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 0..6 {
            let full = (Duration::from_millis(100) * 2u32.pow(retry)).min(Duration::from_secs(1));
            for _ in 0..50 {
                let delay = policy.delay(retry, None);
                assert!(
                    delay >= full / 2 && delay <= full,
                    "retry {retry}: {delay:?} outside {full:?}"
                );
            }
        }
    }

    #[test]
    fn the_schedule_grows_by_receive_repeats_its_last_delay_and_only_rises_to_a_hint() {
        let schedule = RetrySchedule::default();
        let seconds: Vec<u64> = (1..=7)
            .map(|receive| schedule.delay(receive, None).as_secs())
            .collect();
        assert_eq!(seconds, [2, 10, 30, 120, 600, 600, 600]);
        assert_eq!(
            schedule.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            schedule.delay(3, Some(Duration::from_secs(7))),
            Duration::from_secs(30)
        );
        assert_eq!(
            schedule.delay(1, Some(Duration::from_secs(90_000))),
            RetrySchedule::MAX_DELAY
        );
        assert_eq!(schedule.total(5), Duration::from_secs(162));
    }

    #[test]
    fn a_servers_retry_after_wins_up_to_the_cap() {
        let policy = RetryPolicy::DEFAULT;
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(60))),
            policy.max_delay
        );
    }
}
