//! Staff wrote to a customer (a row in `staff_messages`, from the dashboard or the business
//! app's echo): send it on WhatsApp as the business, in the customer's turn order.

use std::time::Duration;

use chrono::Utc;

use super::{Deadline, Engine, EngineError, outbound};
use crate::agent::ChatAgent;
use crate::domain::{CustomerKey, FailureCause, StaffClaim};
use crate::messenger::{Messenger, MessengerError, Recipient};
use crate::metrics::{Figures, Metric};
use crate::queue::Receipt;
use crate::store::SessionStore;

/// Why a staff message outside the customer service window is not sent, on its row.
pub const OUTSIDE_WINDOW: &str =
    "outside WhatsApp's 24-hour window: send a template or wait for the customer";

/// Why a staff message to a customer who opted out is not sent, on its row.
pub const OPTED_OUT: &str =
    "the customer opted out: nothing is sent to them until they write an opt-in word";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaffOutcome {
    /// It went out on WhatsApp and is recorded as the business's.
    Sent,
    /// Sent, refused or being sent already (a repeated delivery), or no such row: nothing to do.
    NotClaimed,
    /// A turn holds the customer: try again after its lease, `lease_left` from now, so the
    /// message never goes out between the replies of a turn.
    Busy { lease_left: Duration },
    /// Not sent, with the reason on the row (`refused`: outside the window; `failed`: WhatsApp
    /// would not take it).
    Refused { reason: String },
}

impl<S: SessionStore, A: ChatAgent, M: Messenger> Engine<S, A, M> {
    /// Sends staff message `id` to `customer` once: claims it (a repeated job finds it claimed
    /// and does nothing), refuses it outside the 24-hour window or to a customer who opted out,
    /// else sends it and records it.
    /// A failure that may pass is returned for the queue to retry; one that will not is recorded
    /// on the row.
    #[tracing::instrument(
        name = "send_staff_message",
        skip_all,
        fields(customer = %customer.masked(), staff_message = id)
    )]
    pub async fn send_staff_message(
        &self,
        customer: &CustomerKey,
        id: i64,
    ) -> Result<StaffOutcome, EngineError> {
        self.send_staff_message_by(customer, id, Receipt::unqueued())
            .await
    }

    /// [`Self::send_staff_message`] as one receive of its job, by the receipt's deadline: a
    /// failure that may pass puts the message back for the retry the queue makes after the
    /// receipt's delay.
    pub(crate) async fn send_staff_message_by(
        &self,
        customer: &CustomerKey,
        id: i64,
        receipt: Receipt,
    ) -> Result<StaffOutcome, EngineError> {
        let deadline = Deadline(receipt.deadline);
        if deadline.remaining() < self.send_reserve {
            return Err(EngineError::OutOfTime);
        }
        let (message, session) = match self.store.claim_staff_message(id).await? {
            StaffClaim::Claimed { message, session } => (*message, session),
            StaffClaim::Busy { lease_expires_at } => {
                let lease_left = (lease_expires_at - Utc::now()).to_std().unwrap_or_default();
                return Ok(StaffOutcome::Busy { lease_left });
            }
            StaffClaim::NotClaimed => return Ok(StaffOutcome::NotClaimed),
        };
        if &message.customer_key != customer {
            // The row is what staff wrote: its customer is the one written to.
            tracing::warn!("the job named another customer than the staff message's row");
        }
        let to = match &session {
            Some(session) => Recipient::for_session(session),
            None => Recipient::for_customer(&message.customer_key),
        };
        // Consent is final, whoever writes.
        if session
            .as_ref()
            .is_some_and(|session| session.is_opted_out())
        {
            return self.refuse(id, OPTED_OUT, true).await;
        }
        let within_window = session
            .as_ref()
            .is_some_and(|session| session.within_service_window(Utc::now()));
        if !within_window {
            return self.refuse(id, OUTSIDE_WINDOW, true).await;
        }
        let parts = match self.messenger.send_text(&to, &message.body, None).await {
            Ok(parts) => parts,
            Err(MessengerError::NeedsTemplate(error)) => {
                let reason = format!("{OUTSIDE_WINDOW} (WhatsApp: {error})");
                return self.refuse(id, &reason, true).await;
            }
            Err(error) => {
                let error = EngineError::from(error);
                let not_before = match error.cause() {
                    FailureCause::Permanent => {
                        return self.refuse(id, &error.to_string(), false).await;
                    }
                    FailureCause::Transient { not_before } => not_before,
                    FailureCause::AccountWide(_) => None,
                };
                let delay = receipt.retry_delay(not_before);
                if let Err(store_error) = self
                    .store
                    .release_staff_message(id, &error.to_string(), delay)
                    .await
                {
                    // Its lease runs out instead, and the sweeper or the retry sends it then.
                    tracing::warn!(%store_error, "could not put the staff message back");
                }
                return Err(error);
            }
        };
        let parts: Vec<_> = parts.into_iter().map(outbound).collect();
        self.store.complete_staff_message(id, &parts).await?;
        Figures::new().add(Metric::StaffMessagesSent, 1.0).emit();
        Ok(StaffOutcome::Sent)
    }

    /// Records on the row why the message did not go out: `refused` (outside the window) or
    /// `failed` (WhatsApp would not take it).
    async fn refuse(
        &self,
        id: i64,
        reason: &str,
        refused: bool,
    ) -> Result<StaffOutcome, EngineError> {
        tracing::warn!(reason, refused, "the staff message was not sent");
        self.store.refuse_staff_message(id, reason, refused).await?;
        Ok(StaffOutcome::Refused {
            reason: reason.to_owned(),
        })
    }
}
