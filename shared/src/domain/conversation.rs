//! The state of a customer's conversation and the steps that change it.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ChatId, CustomerKey, CustomerName, IdempotencyKey, MessageId, PhoneNumber, SubmissionId, TurnId,
};

/// WhatsApp lets a business send free text for this long after the customer's last message.
pub const CUSTOMER_SERVICE_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Retell's status of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatStatus {
    Ongoing,
    Ended,
    Error,
}

/// One customer's conversation, as stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Session {
    pub customer_key: CustomerKey,
    pub phone_e164: Option<PhoneNumber>,
    /// The last WhatsApp id the customer wrote from (may be the `521…`/`549…` form).
    pub wa_id: Option<String>,
    pub whatsapp_user_id: Option<String>,
    pub name: Option<String>,
    pub whatsapp_profile_name: Option<String>,
    pub current_chat_id: Option<ChatId>,
    pub chat_status: Option<ChatStatus>,
    pub chat_started_at: Option<DateTime<Utc>>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    pub last_outbound_at: Option<DateTime<Utc>>,
    pub last_activity_at: DateTime<Utc>,
    pub paused_until: Option<DateTime<Utc>>,
    pub opted_out_at: Option<DateTime<Utc>>,
    /// WhatsApp refused free text (131047) at this time.
    pub window_closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Session {
    /// A person has taken over: store the customer's messages, don't answer them.
    pub fn is_paused(&self, now: DateTime<Utc>) -> bool {
        self.paused_until.is_some_and(|until| until > now)
    }

    pub fn is_opted_out(&self) -> bool {
        self.opted_out_at.is_some()
    }

    /// Free text may be sent: the customer wrote in the last 24 hours, and WhatsApp has not
    /// refused free text (131047) since. Otherwise only an approved template.
    pub fn within_service_window(&self, now: DateTime<Utc>) -> bool {
        self.last_inbound_at.is_some_and(|last| {
            now - last < CUSTOMER_SERVICE_WINDOW
                && self.window_closed_at.is_none_or(|closed| closed < last)
        })
    }

    /// The name to greet the customer with: the form's, else their WhatsApp profile name.
    pub fn display_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .or(self.whatsapp_profile_name.as_deref())
    }
}

/// An inbound WhatsApp message to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundMessage {
    pub wamid: MessageId,
    pub customer_key: CustomerKey,
    /// WhatsApp's type: `text`, `button`, `interactive`, `image`, …
    pub message_type: String,
    /// The text the agent reads: body, button or list title, or media caption.
    pub body: Option<String>,
    /// The message as WhatsApp delivered it, kept for inspection.
    pub payload: Option<serde_json::Value>,
    /// WhatsApp's timestamp: turns take messages in this order.
    pub sent_at: DateTime<Utc>,
    pub wa_id: Option<String>,
    pub whatsapp_user_id: Option<String>,
    pub profile_name: Option<String>,
}

/// What recording an inbound message did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedMessage {
    pub wamid: MessageId,
    pub customer_key: CustomerKey,
    /// False for a repeated delivery of a message already recorded.
    pub is_new: bool,
    /// Still waiting for a turn (new, or recorded by a delivery whose turn was never queued).
    #[serde(default)]
    pub waiting: bool,
}

/// Signed webhook content the bridge could not use, kept for inspection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnprocessedEvent {
    pub reason: String,
    pub payload: serde_json::Value,
}

/// A customer told WhatsApp to stop the business's marketing messages (Meta's
/// `user_preferences` webhook): opted out as by an opt-out word, without a confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketingOptOut {
    pub customer_key: CustomerKey,
    /// Kept on a session the opt-out creates.
    pub wa_id: Option<String>,
    pub whatsapp_user_id: Option<String>,
    /// When WhatsApp said so, when it did.
    pub at: Option<DateTime<Utc>>,
}

/// An opt-out as recorded: `changed` is false when the customer already was opted out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedOptOut {
    pub customer_key: CustomerKey,
    pub changed: bool,
}

/// What recording one webhook delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedWebhook {
    pub messages: Vec<RecordedMessage>,
    pub statuses: Vec<DeliveryOutcome>,
    #[serde(default)]
    pub opt_outs: Vec<RecordedOptOut>,
    #[serde(default)]
    pub echoes: Vec<RecordedEcho>,
    #[serde(default)]
    pub user_id_changes: Vec<RecordedUserIdChange>,
}

/// WhatsApp changed a user's business-scoped user id (a system message, or an older
/// `user_id_update` change): the session keyed by or carrying `previous_user_id` carries
/// `user_id` from now on, so replies reach the customer and their messages the same session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserIdChange {
    pub previous_user_id: String,
    pub user_id: String,
    /// The user's new WhatsApp number, when the change came with one (`user_changed_number`).
    pub wa_id: Option<String>,
    /// When WhatsApp said it happened.
    pub at: Option<DateTime<Utc>>,
}

/// A user id change as recorded: the sessions it changed (none for a user never met, or a
/// change already made).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedUserIdChange {
    pub previous_user_id: String,
    pub user_id: String,
    pub customer_keys: Vec<CustomerKey>,
}

/// Everything one webhook delivery carries, for the store to record in one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookContent<'a> {
    pub messages: &'a [InboundMessage],
    pub statuses: &'a [DeliveryUpdate],
    pub opt_outs: &'a [MarketingOptOut],
    pub echoes: &'a [BusinessEcho],
    pub user_id_changes: &'a [UserIdChange],
    pub unprocessed: &'a [UnprocessedEvent],
}

/// A form submission that passed validation: the lead the agent will contact.
#[derive(Debug, Clone, PartialEq)]
pub struct FormSubmission {
    pub idempotency_key: IdempotencyKey,
    pub customer_key: CustomerKey,
    pub phone: PhoneNumber,
    pub name: CustomerName,
    /// Other fields of the form, passed to the agent as dynamic variables.
    pub fields: BTreeMap<String, String>,
}

/// Where a form's outreach stands. The form answers all of them alike; staff read them in
/// `form_submissions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionStatus {
    /// Accepted: its job creates the chat and sends the template.
    Queued,
    Started,
    Failed,
    /// Not contacted, by the rules (see [`OutcomeReason`]).
    Skipped,
    /// Not contacted: the day's limit of outreaches was reached.
    Held,
}

/// Why a form's customer was not contacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeReason {
    /// The customer opted out: consent is final.
    OptedOut,
    /// A person has taken the conversation over (`paused_until` in the future).
    Paused,
    /// The customer wrote, or was written to, within the cooldown: their chat goes on.
    ConversationLive,
    /// The bridge reached its limit of outreaches for the day (held).
    DailyLimit,
}

impl OutcomeReason {
    /// As stored in `form_submissions.outcome_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted_out",
            Self::Paused => "paused",
            Self::ConversationLive => "conversation_live",
            Self::DailyLimit => "daily_limit",
        }
    }
}

impl std::fmt::Display for OutcomeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits a form's outreach is decided under, atomically with its recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutreachLimits {
    /// A customer who wrote, was written to, or had a form accepted this recently gets no new
    /// outreach (zero: no cooldown).
    pub cooldown: std::time::Duration,
    /// Outreaches accepted per day (UTC) for the whole bridge; past it forms are held.
    pub daily_limit: u32,
}

impl OutreachLimits {
    pub const DEFAULT: Self = Self {
        cooldown: std::time::Duration::from_secs(24 * 60 * 60),
        daily_limit: 500,
    };
}

impl Default for OutreachLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedSubmission {
    pub submission_id: SubmissionId,
    /// False when the same idempotency key was recorded before.
    pub is_new: bool,
    /// `Queued` only when the customer may be contacted: only then is its job queued.
    pub status: SubmissionStatus,
    /// Set when skipped or held.
    #[serde(default)]
    pub outcome_reason: Option<OutcomeReason>,
}

/// An inbound message taken by a turn.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClaimedMessage {
    pub wamid: MessageId,
    pub message_type: String,
    pub body: Option<String>,
    pub payload: Option<serde_json::Value>,
    pub sent_at: DateTime<Utc>,
    /// How many turns have taken this message, this one included.
    pub attempts: u32,
    /// An earlier turn with this message failed (its reason is kept), counted or not: the
    /// agent may have it already.
    #[serde(default)]
    pub failed_before: bool,
}

/// The messages one turn answers, with the session as it was when claimed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Turn {
    pub turn_id: TurnId,
    pub lease_expires_at: DateTime<Utc>,
    pub session: Session,
    /// In the order the customer sent them.
    pub messages: Vec<ClaimedMessage>,
    /// Set when this turn was taken over after the agent had answered: send what is left.
    #[serde(default)]
    pub resume: Option<TurnResume>,
    /// What the agent has not been told, in time order: the customer's messages held while a
    /// person had taken over, and what staff sent. Told to the agent once this turn completes
    /// with a chat ([`crate::store::SessionStore::complete_turn`] with `chat`).
    #[serde(default)]
    pub context: Vec<ContextLine>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    /// The customer (every inbound message).
    Customer,
    /// The agent's replies.
    Agent,
    /// A person: a row of `staff_messages`, or the WhatsApp Business app on a shared number.
    Staff,
    /// The bridge's own messages: templates.
    Bridge,
}

/// A message the agent was not told when it was written: the customer's, held during a pause,
/// or staff's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContextLine {
    pub author: Author,
    /// The text; a message without one reads `(image)`, `(sticker)`, … (its type).
    pub body: String,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// WhatsApp's type of the message (`audio`: `body` is the voice note's transcript, or
    /// `(audio)` when it has none).
    #[serde(default)]
    pub message_type: Option<String>,
}

/// Where a staff message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StaffMessageStatus {
    /// Written, not sent yet.
    Queued,
    /// A worker is sending it (under a lease).
    Sending,
    Sent,
    /// Not sent: outside the customer service window (see `status_reason`).
    Refused,
    /// Not sent: WhatsApp would not take it, or it waited too long (see `status_reason`).
    Failed,
}

/// A row of `staff_messages`: what staff wrote to a customer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StaffMessage {
    pub id: i64,
    pub customer_key: CustomerKey,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The staff member's e-mail or database user, or `WhatsApp Business app`.
    pub created_by: String,
    pub status: StaffMessageStatus,
    pub status_reason: Option<String>,
    pub wamid: Option<MessageId>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The answer to "take this staff message to send it".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StaffClaim {
    /// Ours to send, under a lease: `session` says whether the 24-hour window is open.
    Claimed {
        message: Box<StaffMessage>,
        session: Option<Box<Session>>,
    },
    /// A turn holds the customer (its lease, or its agent's answer not all sent): send after it,
    /// never between its replies. The message stays queued.
    Busy { lease_expires_at: DateTime<Utc> },
    /// Nothing to do: sent, refused, failed or being sent already (a repeated delivery), or no
    /// such message.
    NotClaimed,
}

/// A message staff sent from the WhatsApp Business app on the bridge's number (Meta's
/// `smb_message_echoes`): recorded as a staff message, once per wamid, and it pauses the agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusinessEcho {
    pub wamid: MessageId,
    /// The customer it was sent to.
    pub customer_key: CustomerKey,
    /// WhatsApp's type: `text`, `image`, …
    pub message_type: String,
    pub body: Option<String>,
    /// The echo as WhatsApp delivered it, kept for inspection.
    pub payload: Option<serde_json::Value>,
    /// WhatsApp's timestamp.
    pub sent_at: DateTime<Utc>,
    /// Kept on a session the echo creates.
    pub wa_id: Option<String>,
}

/// An echo as recorded: `is_new` is false for a repeated delivery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordedEcho {
    pub wamid: MessageId,
    pub customer_key: CustomerKey,
    pub is_new: bool,
}

/// The agent's saved answer to a turn that did not finish sending it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TurnResume {
    pub chat_id: ChatId,
    pub replies: Vec<String>,
    /// How many of `replies` went out already.
    pub replies_sent: u32,
}

/// A form submission as stored, for the job that starts its conversation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredSubmission {
    pub id: SubmissionId,
    pub customer_key: CustomerKey,
    pub phone_e164: PhoneNumber,
    pub name: String,
    pub fields: BTreeMap<String, String>,
    pub status: SubmissionStatus,
    /// Set when skipped or held.
    #[serde(default)]
    pub outcome_reason: Option<OutcomeReason>,
    pub chat_id: Option<ChatId>,
    pub created_at: DateTime<Utc>,
}

/// The answer to "claim the next turn of this customer".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TurnClaim {
    /// Nothing is waiting.
    Idle,
    /// Another turn holds the customer until its lease expires.
    Busy {
        turn_id: TurnId,
        lease_expires_at: DateTime<Utc>,
    },
    Claimed(Box<Turn>),
}

/// The answer to "make this the customer's chat".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatAttachment {
    /// False when another caller attached a chat first (or the expected chat was stale).
    pub attached: bool,
    /// The chat the customer now has: ours, or the winner's.
    pub current_chat_id: Option<ChatId>,
    /// The chat ours replaced, now in the customer's history.
    pub previous_chat_id: Option<ChatId>,
}

/// A message a turn sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboundMessage {
    pub wamid: MessageId,
    /// `text` or `template`.
    pub message_type: String,
    pub body: Option<String>,
    pub payload: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TurnCompletion {
    /// False when the turn's lease had passed to another turn: its replies are recorded, but
    /// the messages it claimed now belong to the other turn.
    pub completed: bool,
    pub answered: u32,
    pub recorded: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TurnFailure {
    /// Messages put back to wait for another turn.
    pub released: u32,
    /// Messages marked failed.
    pub failed: u32,
}

/// What becomes of a failed turn's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRetry {
    /// They are marked failed, with the reason.
    No,
    /// They wait for the next turn, expected in `delay` (the job's retry): a minute after that,
    /// if no turn has taken them, the sweeper queues the customer again. Messages put back are
    /// never given up by a claim, whatever their attempts. `count_attempt: false` gives the
    /// claim's attempt back, for a turn put back through no fault of its messages (out of time,
    /// an account-wide failure).
    After {
        delay: std::time::Duration,
        count_attempt: bool,
    },
}

/// What the sweeper found that nothing would take, for it to queue, each customer and
/// submission once; and what it gave up for having waited too long.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StrandedWork {
    /// Customers with waiting messages and no live turn, oldest waiting message first.
    pub turns: Vec<CustomerKey>,
    /// Form submissions queued and not started, oldest first.
    pub submissions: Vec<(SubmissionId, CustomerKey)>,
    /// Inbound messages failed for having waited too long.
    pub gave_up_messages: u64,
    /// Queued submissions failed for not having started in time.
    pub gave_up_submissions: u64,
    /// Staff messages nothing will send (their webhook was missed, their worker died), oldest
    /// first: their id and customer.
    pub staff_messages: Vec<(i64, CustomerKey)>,
}

/// WhatsApp's delivery status of an outbound message. `Accepted` is ours: the Graph API took
/// the message and no webhook has reported on it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Accepted,
    Sent,
    Delivered,
    Read,
    Failed,
}

/// A status webhook about one outbound message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryUpdate {
    pub wamid: MessageId,
    pub status: DeliveryStatus,
    pub at: DateTime<Utc>,
    /// WhatsApp's `errors` array of a failed delivery.
    pub errors: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeliveryOutcome {
    pub wamid: MessageId,
    /// The status now stored; `None` for a message the bridge did not send.
    pub delivery_status: Option<DeliveryStatus>,
    /// False when the update was late or repeated (statuses never move backwards).
    pub applied: bool,
}

/// Which of Retell's chat webhooks an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatEventKind {
    /// `chat_started`: nothing to record.
    Started,
    /// `chat_ended`: the chat is over (it ended or errored).
    Ended,
    /// `chat_analyzed`: the chat with its post-chat analysis (it ended too).
    Analyzed,
}

impl ChatEventKind {
    /// Retell's name of the event, as the store takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "chat_started",
            Self::Ended => "chat_ended",
            Self::Analyzed => "chat_analyzed",
        }
    }
}

/// Retell's post-chat analysis of a chat, as stored on its history row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatAnalysis {
    pub chat_summary: Option<String>,
    /// `Positive`, `Negative`, `Neutral` or `Unknown`.
    pub user_sentiment: Option<String>,
    pub chat_successful: Option<bool>,
    /// The business's own fields (the agent's post-chat analysis settings).
    pub custom_analysis_data: Option<serde_json::Value>,
}

/// One of Retell's chat webhooks, for the store to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatEvent {
    pub kind: ChatEventKind,
    pub chat_id: ChatId,
    /// When the chat ended (Retell's `end_timestamp`); `None`: when recorded.
    pub ended_at: Option<DateTime<Utc>>,
    /// Retell's `disconnection_reason`.
    pub reason: Option<String>,
    /// `chat_analyzed` only; `None` there reads as an empty analysis.
    pub analysis: Option<ChatAnalysis>,
}

/// What recording a chat event did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatEventRecorded {
    /// False for a chat that is not ours: nothing was recorded.
    pub known: bool,
    /// The customer whose chat it is (when known).
    pub customer_key: Option<CustomerKey>,
    /// True only for the call that stored the chat's analysis (a repeat, or any other event, is
    /// false): the outcome hook is queued then.
    pub first_analysis: bool,
}
