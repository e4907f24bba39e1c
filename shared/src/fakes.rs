//! In-memory fakes of the store and the queue for the doors' unit tests: only what the form and
//! the sweep need is implemented; the rest panics, naming itself. Compiled for tests, and for
//! other crates' tests with the `fakes` feature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bot_check::{BotCheck, BotCheckError, Challenge, Expected};
use crate::domain::{
    BrowserRecording, ChatAttachment, ChatEvent, ChatEventRecorded, ChatId, CustomerKey,
    DeliveryOutcome, DeliveryUpdate, FormSubmission, InboundMessage, OutboundMessage,
    OutcomeReason, OutreachLimits, RecordedMessage, RecordedSubmission, RecordedWebhook, Session,
    SourceLimit, StaffClaim, StoredSubmission, StrandedWork, SubmissionId, SubmissionStatus,
    TurnClaim, TurnCompletion, TurnFailure, TurnId, TurnRetry, WebhookContent,
};
use crate::queue::{QueueError, TurnJob, TurnQueue};
use crate::store::{PostgrestError, SessionStore, StoreError};

#[derive(Default)]
struct StoreState {
    /// By idempotency key: the customer, id, status and outcome reason.
    submissions: HashMap<
        String,
        (
            CustomerKey,
            SubmissionId,
            SubmissionStatus,
            Option<OutcomeReason>,
        ),
    >,
    recorded: Vec<FormSubmission>,
    /// The limits each call was made under.
    limits: Vec<OutreachLimits>,
    /// What new submissions are decided to be (`None`: accepted, queued).
    decision: Option<(SubmissionStatus, OutcomeReason)>,
    fail_next: Option<StoreError>,
    /// What the next sweep finds.
    stranded: StrandedWork,
    /// The grace each sweep was made with.
    sweeps: Vec<Duration>,
    /// The source of each browser form recorded (by call, limited ones included).
    sources: Vec<SourceLimit>,
    /// Browser forms recorded per source hash (the fake's hour never ends).
    per_source: HashMap<String, u32>,
    /// Deferred submissions: id, reason, delay.
    deferred: Vec<(SubmissionId, String, Duration)>,
}

/// Records submissions once per idempotency key, like `record_form_submission`.
#[derive(Clone, Default)]
pub struct FakeStore(Arc<Mutex<StoreState>>);

impl FakeStore {
    pub fn fail_next(&self, error: StoreError) {
        self.0.lock().unwrap().fail_next = Some(error);
    }

    pub fn recorded(&self) -> Vec<FormSubmission> {
        self.0.lock().unwrap().recorded.clone()
    }

    /// The limits each call was made under, in order.
    pub fn limits(&self) -> Vec<OutreachLimits> {
        self.0.lock().unwrap().limits.clone()
    }

    /// From now on new submissions are decided `status` for `reason` (skipped or held), as the
    /// store's rules would; `None` accepts them again.
    pub fn decide(&self, decision: Option<(SubmissionStatus, OutcomeReason)>) {
        self.0.lock().unwrap().decision = decision;
    }

    /// As if `key` had been used for `customer` before.
    pub fn claim_key(&self, key: &str, customer: CustomerKey) {
        let id = SubmissionId(uuid::Uuid::from_u128(u128::MAX));
        self.0.lock().unwrap().submissions.insert(
            key.to_owned(),
            (customer, id, SubmissionStatus::Queued, None),
        );
    }

    /// The next sweep finds `work` (and the one after it nothing, as the store's would).
    pub fn strand(&self, work: StrandedWork) {
        self.0.lock().unwrap().stranded = work;
    }

    /// The grace each sweep was made with, in order.
    pub fn sweeps(&self) -> Vec<Duration> {
        self.0.lock().unwrap().sweeps.clone()
    }

    /// The submissions deferred, with the reason and delay, in order.
    pub fn deferred(&self) -> Vec<(SubmissionId, String, Duration)> {
        self.0.lock().unwrap().deferred.clone()
    }

    /// The source limit of each browser form the store was asked to record, in order.
    pub fn sources(&self) -> Vec<SourceLimit> {
        self.0.lock().unwrap().sources.clone()
    }

    pub fn set_status(&self, id: SubmissionId, status: SubmissionStatus) {
        for entry in self.0.lock().unwrap().submissions.values_mut() {
            if entry.1 == id {
                entry.2 = status;
            }
        }
    }
}

impl SessionStore for FakeStore {
    async fn record_form_submission(
        &self,
        submission: &FormSubmission,
        limits: OutreachLimits,
    ) -> Result<RecordedSubmission, StoreError> {
        let mut state = self.0.lock().unwrap();
        if let Some(error) = state.fail_next.take() {
            return Err(error);
        }
        state.recorded.push(submission.clone());
        state.limits.push(limits);
        let key = submission.idempotency_key.as_str().to_owned();
        if let Some((customer, id, status, outcome_reason)) = state.submissions.get(&key) {
            if *customer != submission.customer_key {
                return Err(StoreError::Conflict(PostgrestError::from_body(
                    409,
                    br#"{"code":"23505","message":"idempotency key was already used for another customer"}"#,
                )));
            }
            return Ok(RecordedSubmission {
                submission_id: *id,
                is_new: false,
                status: *status,
                outcome_reason: *outcome_reason,
            });
        }
        let id = SubmissionId(uuid::Uuid::from_u128(state.recorded.len() as u128));
        let (status, outcome_reason) = match state.decision {
            Some((status, reason)) => (status, Some(reason)),
            None => (SubmissionStatus::Queued, None),
        };
        state.submissions.insert(
            key,
            (submission.customer_key.clone(), id, status, outcome_reason),
        );
        Ok(RecordedSubmission {
            submission_id: id,
            is_new: true,
            status,
            outcome_reason,
        })
    }

    /// Limits by source like the SQL, over an hour that never ends: a source's forms past its
    /// limit are [`BrowserRecording::Limited`] (retry after an hour), a repeated key never.
    async fn record_browser_form_submission(
        &self,
        submission: &FormSubmission,
        limits: OutreachLimits,
        source: &SourceLimit,
    ) -> Result<BrowserRecording, StoreError> {
        {
            let mut state = self.0.lock().unwrap();
            state.sources.push(source.clone());
            let known = state
                .submissions
                .contains_key(submission.idempotency_key.as_str());
            let count = state
                .per_source
                .get(&source.source_hash)
                .copied()
                .unwrap_or(0);
            if !known && count >= source.per_hour && state.fail_next.is_none() {
                return Ok(BrowserRecording::Limited {
                    retry_after: Duration::from_secs(3600),
                });
            }
        }
        let recorded = self.record_form_submission(submission, limits).await?;
        if recorded.is_new {
            *self
                .0
                .lock()
                .unwrap()
                .per_source
                .entry(source.source_hash.clone())
                .or_default() += 1;
        }
        Ok(BrowserRecording::Recorded(recorded))
    }

    async fn record_inbound(
        &self,
        _: &[InboundMessage],
    ) -> Result<Vec<RecordedMessage>, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn record_webhook_content(
        &self,
        _: WebhookContent<'_>,
    ) -> Result<RecordedWebhook, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn session(&self, _: &CustomerKey) -> Result<Option<Session>, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn claim_turn(
        &self,
        _: &CustomerKey,
        _: Duration,
        _: u32,
    ) -> Result<TurnClaim, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn attach_chat(
        &self,
        _: &CustomerKey,
        _: &ChatId,
        _: Option<&ChatId>,
        _: Option<&str>,
    ) -> Result<ChatAttachment, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn save_turn_replies(
        &self,
        _: TurnId,
        _: &ChatId,
        _: &[String],
    ) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn save_transcript(
        &self,
        _: TurnId,
        _: &crate::domain::MessageId,
        _: &str,
    ) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn record_sent_reply(&self, _: TurnId, _: &[OutboundMessage]) -> Result<(), StoreError> {
        unimplemented!("not used by the form")
    }
    async fn complete_turn(
        &self,
        _: TurnId,
        _: &CustomerKey,
        _: Option<&ChatId>,
        _: &[OutboundMessage],
    ) -> Result<TurnCompletion, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn fail_turn(&self, _: TurnId, _: &str, _: TurnRetry) -> Result<TurnFailure, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn set_opt_out(&self, _: &CustomerKey, _: bool) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn form_submission(
        &self,
        _: SubmissionId,
    ) -> Result<Option<StoredSubmission>, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn complete_form_submission(
        &self,
        _: SubmissionId,
        _: &ChatId,
        _: &[OutboundMessage],
    ) -> Result<(), StoreError> {
        unimplemented!("not used by the form")
    }
    async fn fail_form_submission(&self, _: SubmissionId, _: &str) -> Result<(), StoreError> {
        unimplemented!("not used by the form")
    }
    async fn skip_form_submission(
        &self,
        _: SubmissionId,
        _: OutcomeReason,
    ) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    /// True when the submission was recorded here and is queued.
    async fn defer_form_submission(
        &self,
        id: SubmissionId,
        reason: &str,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let mut state = self.0.lock().unwrap();
        if let Some(error) = state.fail_next.take() {
            return Err(error);
        }
        let queued = state
            .submissions
            .values()
            .any(|entry| entry.1 == id && entry.2 == SubmissionStatus::Queued);
        if queued {
            state.deferred.push((id, reason.to_owned(), delay));
        }
        Ok(queued)
    }
    /// What [`FakeStore::strand`] set, once.
    async fn sweep_stranded_work(&self, grace: Duration) -> Result<StrandedWork, StoreError> {
        let mut state = self.0.lock().unwrap();
        if let Some(error) = state.fail_next.take() {
            return Err(error);
        }
        state.sweeps.push(grace);
        Ok(std::mem::take(&mut state.stranded))
    }
    async fn record_delivery_statuses(
        &self,
        _: &[DeliveryUpdate],
    ) -> Result<Vec<DeliveryOutcome>, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn pause_conversation(
        &self,
        _: &CustomerKey,
        _: Option<u32>,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn resume_conversation(
        &self,
        _: &CustomerKey,
        _: Option<&str>,
    ) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn request_human(
        &self,
        _: &CustomerKey,
        _: Option<u32>,
        _: Option<&str>,
        _: &str,
    ) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn hold_turn(&self, _: TurnId, _: &CustomerKey) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn claim_staff_message(&self, _: i64) -> Result<StaffClaim, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn complete_staff_message(
        &self,
        _: i64,
        _: &[OutboundMessage],
    ) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn refuse_staff_message(&self, _: i64, _: &str, _: bool) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn release_staff_message(
        &self,
        _: i64,
        _: &str,
        _: Duration,
    ) -> Result<bool, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn record_chat_event(&self, _: &ChatEvent) -> Result<ChatEventRecorded, StoreError> {
        unimplemented!("not used by the form")
    }
    async fn outcome_for_hook(&self, _: &ChatId) -> Result<Option<serde_json::Value>, StoreError> {
        unimplemented!("not used by the form")
    }
}

#[derive(Default)]
struct QueueState {
    jobs: Vec<(TurnJob, String)>,
    fail_next: Option<QueueError>,
}

/// Keeps every job with its deduplication id.
#[derive(Clone, Default)]
pub struct FakeQueue(Arc<Mutex<QueueState>>);

impl FakeQueue {
    pub fn jobs(&self) -> Vec<(TurnJob, String)> {
        self.0.lock().unwrap().jobs.clone()
    }

    pub fn fail_next(&self, error: QueueError) {
        self.0.lock().unwrap().fail_next = Some(error);
    }
}

impl TurnQueue for FakeQueue {
    async fn enqueue(&self, job: &TurnJob, deduplication_id: &str) -> Result<(), QueueError> {
        let mut state = self.0.lock().unwrap();
        if let Some(error) = state.fail_next.take() {
            return Err(error);
        }
        state.jobs.push((job.clone(), deduplication_id.to_owned()));
        Ok(())
    }
}

/// A token the fake bot check was asked about, with what was expected of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedToken {
    pub token: String,
    pub remote_ip: Option<std::net::IpAddr>,
    pub action: String,
    pub hostnames: Vec<String>,
}

#[derive(Default)]
struct BotCheckState {
    /// What every non-empty token is answered (`None`: it passes).
    refusal: Option<BotCheckError>,
    checked: Vec<CheckedToken>,
}

/// A bot check that passes every non-empty token (an empty one is `Missing`) unless told to
/// refuse, and records what it was asked.
#[derive(Clone, Default)]
pub struct FakeBotCheck(Arc<Mutex<BotCheckState>>);

impl FakeBotCheck {
    /// From now on every token is answered `refusal` (`None`: passes again).
    pub fn answer(&self, refusal: Option<BotCheckError>) {
        self.0.lock().unwrap().refusal = refusal;
    }

    pub fn checked(&self) -> Vec<CheckedToken> {
        self.0.lock().unwrap().checked.clone()
    }
}

impl BotCheck for FakeBotCheck {
    async fn verify(
        &self,
        challenge: &Challenge<'_>,
        expected: &Expected<'_>,
    ) -> Result<(), BotCheckError> {
        let mut state = self.0.lock().unwrap();
        state.checked.push(CheckedToken {
            token: challenge.token.to_owned(),
            remote_ip: challenge.remote_ip,
            action: expected.action.to_owned(),
            hostnames: expected.hostnames.to_vec(),
        });
        if challenge.token.trim().is_empty() {
            return Err(BotCheckError::Missing);
        }
        state.refusal.clone().map_or(Ok(()), Err)
    }
}
