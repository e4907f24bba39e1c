//! The session store: the port the engine and the webhooks use, and its PostgREST adapter.

mod error;
mod postgrest;

use std::future::Future;
use std::time::Duration;

pub use error::{PostgrestError, StoreError};
pub use postgrest::PostgrestStore;

use crate::domain::{
    ChatAttachment, ChatId, CustomerKey, DeliveryOutcome, DeliveryUpdate, FormSubmission,
    InboundMessage, OutboundMessage, RecordedMessage, RecordedSubmission, Session, TurnClaim,
    TurnCompletion, TurnFailure, TurnId,
};

/// Every step is atomic and one round trip; every step may be retried after a timeout or an
/// `Unavailable` error without doing anything twice.
pub trait SessionStore: Send + Sync {
    /// Records inbound messages once per wamid and says which ones are new.
    fn record_inbound(
        &self,
        messages: &[InboundMessage],
    ) -> impl Future<Output = Result<Vec<RecordedMessage>, StoreError>> + Send;

    /// Records a form submission once per idempotency key. The same key for another customer is
    /// a [`StoreError::Conflict`].
    fn record_form_submission(
        &self,
        submission: &FormSubmission,
    ) -> impl Future<Output = Result<RecordedSubmission, StoreError>> + Send;

    fn session(
        &self,
        customer: &CustomerKey,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Takes all of the customer's waiting messages for one turn, under a lease of `lease`.
    fn claim_turn(
        &self,
        customer: &CustomerKey,
        lease: Duration,
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

    /// Records what a turn sent and marks its messages answered.
    fn complete_turn(
        &self,
        turn: TurnId,
        customer: &CustomerKey,
        chat: &ChatId,
        sent: &[OutboundMessage],
    ) -> impl Future<Output = Result<TurnCompletion, StoreError>> + Send;

    /// Gives a turn up, keeping the reason: its messages wait for another turn (`retry`) or are
    /// marked failed.
    fn fail_turn(
        &self,
        turn: TurnId,
        reason: &str,
        retry: bool,
    ) -> impl Future<Output = Result<TurnFailure, StoreError>> + Send;

    /// Applies delivery statuses to outbound messages; statuses never move backwards.
    fn record_delivery_statuses(
        &self,
        statuses: &[DeliveryUpdate],
    ) -> impl Future<Output = Result<Vec<DeliveryOutcome>, StoreError>> + Send;
}
