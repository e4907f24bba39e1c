//! The session store: the port the engine and the webhooks use, and its PostgREST adapter.

mod error;
mod postgrest;

use std::future::Future;
use std::time::Duration;

pub use error::{PostgrestError, StoreError};
pub use postgrest::PostgrestStore;

use chrono::{DateTime, Utc};

use crate::domain::{
    BrowserRecording, ChatAttachment, ChatEvent, ChatEventRecorded, ChatId, CustomerKey,
    DeliveryOutcome, DeliveryUpdate, FormSubmission, InboundMessage, OutboundMessage,
    OutcomeReason, OutreachLimits, RecordedMessage, RecordedSubmission, RecordedWebhook, Session,
    SourceLimit, StaffClaim, StoredSubmission, StrandedWork, SubmissionId, TurnClaim,
    TurnCompletion, TurnFailure, TurnId, TurnRetry, UnprocessedEvent, WebhookContent,
};

/// Every step is atomic and one round trip; every step may be retried after a timeout or an
/// `Unavailable` error without doing anything twice.
pub trait SessionStore: Send + Sync {
    /// Records inbound messages once per wamid and says which ones are new.
    fn record_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> impl Future<Output = Result<Vec<RecordedMessage>, StoreError>> + Send;

    /// Records everything one webhook delivery carries, in one transaction: WhatsApp's user id
    /// changes (first: the session keyed by or carrying the previous id carries the new one),
    /// inbound messages (once per wamid, each under the session its sender belongs to whichever
    /// of their ids they wrote from: the returned key is that session's), delivery statuses,
    /// customers who stopped marketing messages in WhatsApp (opted out, a session created if
    /// they had none), messages staff sent from the WhatsApp Business app (echoes: recorded as
    /// staff messages once per wamid, each pausing the agent), and what could not be used.
    fn record_webhook_content(
        &self,
        content: WebhookContent<'_>,
    ) -> impl Future<Output = Result<RecordedWebhook, StoreError>> + Send;

    /// [`SessionStore::record_webhook_content`] for a delivery without echoes or user id changes.
    fn record_webhook(
        &self,
        messages: &[InboundMessage],
        statuses: &[DeliveryUpdate],
        opt_outs: &[crate::domain::MarketingOptOut],
        unprocessed: &[UnprocessedEvent],
    ) -> impl Future<Output = Result<RecordedWebhook, StoreError>> + Send {
        async move {
            let content = WebhookContent {
                messages,
                statuses,
                opt_outs,
                echoes: &[],
                user_id_changes: &[],
                unprocessed,
            };
            self.record_webhook_content(content).await
        }
    }

    /// Records a form submission once per idempotency key and decides, in the same transaction,
    /// whether its customer may be contacted under `limits`: accepted (`Queued`), `Skipped`
    /// (opted out, paused, a live conversation) or `Held` (the day's limit). Concurrent calls
    /// never accept two outreaches for one customer within the cooldown, nor more than the
    /// limit in a day. The same key for another customer is a [`StoreError::Conflict`].
    fn record_form_submission(
        &self,
        submission: &FormSubmission,
        limits: OutreachLimits,
    ) -> impl Future<Output = Result<RecordedSubmission, StoreError>> + Send;

    /// A browser's form: as [`SessionStore::record_form_submission`], but first, in the same
    /// transaction, the limit of its `source`: when `source.per_hour` forms from that source
    /// were recorded in the last hour (and this idempotency key is new), nothing is recorded
    /// and the answer is [`BrowserRecording::Limited`]. Concurrent calls for one source never
    /// record more than the limit.
    fn record_browser_form_submission(
        &self,
        submission: &FormSubmission,
        limits: OutreachLimits,
        source: &SourceLimit,
    ) -> impl Future<Output = Result<BrowserRecording, StoreError>> + Send;

    fn session(
        &self,
        customer: &CustomerKey,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Takes all of the customer's waiting messages for one turn, under a lease of `lease`.
    /// Messages left in progress by turns that never finished (their lease ran out), claimed
    /// `max_attempts` times already, are given up (failed) instead; messages a turn put back
    /// ([`SessionStore::fail_turn`] with a retry) are claimed whatever their attempts.
    fn claim_turn(
        &self,
        customer: &CustomerKey,
        lease: Duration,
        max_attempts: u32,
    ) -> impl Future<Output = Result<TurnClaim, StoreError>> + Send;

    /// Makes `chat` the customer's chat if their current one is still `expected` (`None`: no chat
    /// yet). A caller that lost a race is told the winner.
    fn attach_chat(
        &self,
        customer: &CustomerKey,
        chat: &ChatId,
        expected: Option<&ChatId>,
        end_reason: Option<&str>,
    ) -> impl Future<Output = Result<ChatAttachment, StoreError>> + Send;

    /// Keeps the agent's answer to a running turn until it is sent. False when the turn no
    /// longer holds its customer.
    fn save_turn_replies(
        &self,
        turn: TurnId,
        chat: &ChatId,
        replies: &[String],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Keeps what a voice note said on its message (`body`), so a retried turn does not
    /// transcribe it again and the dashboard shows what was understood. False when the turn no
    /// longer holds the message.
    fn save_transcript(
        &self,
        turn: TurnId,
        message: &crate::domain::MessageId,
        transcript: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records one reply of a running turn as sent (its parts, if WhatsApp took it in several).
    fn record_sent_reply(
        &self,
        turn: TurnId,
        parts: &[OutboundMessage],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records what a turn sent (last) and marks its messages answered. `chat` is the chat that
    /// answered, if any did.
    fn complete_turn(
        &self,
        turn: TurnId,
        customer: &CustomerKey,
        chat: Option<&ChatId>,
        sent: &[OutboundMessage],
    ) -> impl Future<Output = Result<TurnCompletion, StoreError>> + Send;

    /// Gives a turn up, keeping the reason: its messages wait for another turn
    /// ([`TurnRetry::After`]; a saved answer stays with the turn, to be resumed) or are marked
    /// failed ([`TurnRetry::No`]). A repeated call touches nothing.
    fn fail_turn(
        &self,
        turn: TurnId,
        reason: &str,
        retry: TurnRetry,
    ) -> impl Future<Output = Result<TurnFailure, StoreError>> + Send;

    /// Opts the customer out (or back in). True when that changed something.
    fn set_opt_out(
        &self,
        customer: &CustomerKey,
        opted_out: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn form_submission(
        &self,
        id: SubmissionId,
    ) -> impl Future<Output = Result<Option<StoredSubmission>, StoreError>> + Send;

    /// The form's outreach is done: the chat it started and the template sent.
    fn complete_form_submission(
        &self,
        id: SubmissionId,
        chat: &ChatId,
        sent: &[OutboundMessage],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn fail_form_submission(
        &self,
        id: SubmissionId,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The form's outreach cannot start now and is retried in `delay`: the submission stays
    /// queued with `reason`, and the sweeper queues it again a minute after `delay` if it has
    /// not started by then. False when the submission is not queued.
    fn defer_form_submission(
        &self,
        id: SubmissionId,
        reason: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Finds the work nothing will take, for the caller to queue: customers with waiting
    /// messages and no live turn, and submissions queued and not started, once they have been
    /// left alone for `grace` (or past the time a retry said). Each one found is not found again
    /// for `grace`, and two sweeps at once never find the same one. First gives up what waited
    /// too long (a day).
    fn sweep_stranded_work(
        &self,
        grace: Duration,
    ) -> impl Future<Output = Result<StrandedWork, StoreError>> + Send;

    /// The form's outreach is not made after all (the customer opted out or was taken over
    /// since it was accepted): recorded as skipped with `reason`. False when the submission
    /// was not queued or failed (already started, skipped or held).
    fn skip_form_submission(
        &self,
        id: SubmissionId,
        reason: OutcomeReason,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Applies delivery statuses to outbound messages; statuses never move backwards.
    fn record_delivery_statuses(
        &self,
        statuses: &[DeliveryUpdate],
    ) -> impl Future<Output = Result<Vec<DeliveryOutcome>, StoreError>> + Send;

    /// A person takes over for `minutes` from now (`None`: the store's
    /// `bridge_settings.pause_default_minutes`, 60 unless changed), a session created if the
    /// customer had none: the agent does not answer them until then. Recorded in the customer's
    /// history with `reason`, by `by` (`None`: the database user). Returns the pause's end.
    fn pause_conversation(
        &self,
        customer: &CustomerKey,
        minutes: Option<u32>,
        reason: Option<&str>,
        by: Option<&str>,
    ) -> impl Future<Output = Result<DateTime<Utc>, StoreError>> + Send;

    /// Hands the conversation back to the agent now (recorded). True when it was paused.
    fn resume_conversation(
        &self,
        customer: &CustomerKey,
        by: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The agent asked for a person: pauses the customer as
    /// [`SessionStore::pause_conversation`] and records the request (`needs_attention` lists
    /// it until staff write or resume), in one transaction. Returns the pause's end.
    fn request_human(
        &self,
        customer: &CustomerKey,
        minutes: Option<u32>,
        reason: Option<&str>,
        by: &str,
    ) -> impl Future<Output = Result<DateTime<Utc>, StoreError>> + Send;

    /// Ends a paused customer's turn instead of completing it: its messages are kept `held`,
    /// not answered, and the next turn after the pause carries them as its
    /// [`crate::domain::Turn::context`]. False when another turn had taken over.
    fn hold_turn(
        &self,
        turn: TurnId,
        customer: &CustomerKey,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes staff message `id` to send it, under a lease of five minutes: once, however often
    /// its webhook is delivered ([`StaffClaim::NotClaimed`] after that), and never while a turn
    /// holds the customer ([`StaffClaim::Busy`]). A message whose sender died is claimed again
    /// once its lease has run out.
    fn claim_staff_message(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<StaffClaim, StoreError>> + Send;

    /// Staff message `id` went out (`sent`: its parts): recorded as the business's outbound
    /// message (author staff, for the agent to be told after the pause) and marked sent. False
    /// when it was already (a repeat changes nothing).
    fn complete_staff_message(
        &self,
        id: i64,
        sent: &[OutboundMessage],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Staff message `id` will not go out: `refused` (outside the 24-hour window) or failed,
    /// with `reason` on its row. False when it was not queued or being sent.
    fn refuse_staff_message(
        &self,
        id: i64,
        reason: &str,
        refused: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Sending staff message `id` failed for a reason that may pass: it goes back to queued with
    /// `reason`, for the job's retry in `delay` (else the sweeper queues it a minute after that).
    /// Without this, a retry finds it still being sent until its lease runs out. False when it
    /// was not queued or being sent.
    fn release_staff_message(
        &self,
        id: i64,
        reason: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records one of Retell's chat webhooks: `Ended` (or `Analyzed`, which may come first) keeps
    /// when and why the chat ended on its history row and marks the session's chat ended when it
    /// is the current one; `Analyzed` keeps the analysis. Each is kept once: repeats and any
    /// order leave the same state. A chat that is not ours changes nothing (`known` false).
    fn record_chat_event(
        &self,
        event: &ChatEvent,
    ) -> impl Future<Output = Result<ChatEventRecorded, StoreError>> + Send;

    /// What the outcome hook posts for an analysed chat: `{customer_key, phone, name, chat_id,
    /// summary, user_sentiment, chat_successful, custom_analysis, form_fields, analyzed_at,
    /// started_at, ended_at, disconnection_reason}`. `None` for a chat that is not ours or not
    /// analysed yet.
    fn outcome_for_hook(
        &self,
        chat: &ChatId,
    ) -> impl Future<Output = Result<Option<serde_json::Value>, StoreError>> + Send;
}
