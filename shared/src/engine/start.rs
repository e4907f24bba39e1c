//! A form was submitted: open the conversation with the first-contact template.

use super::{
    Deadline, Engine, EngineError, SHORTEST_COMPLETION, base_variables, metadata, outbound,
};
use crate::agent::{ChatAgent, NewChat};
use crate::domain::{OutcomeReason, Session, SubmissionId, SubmissionStatus};
use crate::messenger::{Messenger, Recipient};
use crate::metrics::{Figures, Metric};
use crate::store::SessionStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The chat was created and the template sent.
    Started,
    /// A repeated job: the submission's outreach was done before.
    AlreadyStarted,
    /// The customer is not contacted: the form was skipped or held when it was recorded, or
    /// since it was accepted they opted out or a person took over (now recorded as skipped).
    NotContacted(Option<OutcomeReason>),
    /// No such submission (it was never recorded): nothing to do.
    UnknownSubmission,
}

impl<S: SessionStore, A: ChatAgent, M: Messenger> Engine<S, A, M> {
    /// Creates the customer's chat with the form's name and fields as dynamic variables,
    /// attaches it (an earlier chat stays in the history), lets the agent ask its opening
    /// question into the transcript, and sends the approved template, which asks the same.
    ///
    /// A repeated job does nothing twice once the outreach is recorded. A job that dies after
    /// WhatsApp took the template and before it was recorded sends it again when retried.
    ///
    /// Nobody is contacted for a submission the store skipped or held, nor when the session
    /// shows the customer opted out or taken over by a person since the form was accepted:
    /// that submission is recorded as skipped.
    ///
    /// Its failures are logged by the caller, which knows whether they are retried.
    #[tracing::instrument(
        name = "start_conversation",
        skip_all,
        fields(submission = %submission_id)
    )]
    pub async fn start_conversation(
        &self,
        submission_id: SubmissionId,
    ) -> Result<StartOutcome, EngineError> {
        let deadline = Deadline(crate::queue::Receipt::unqueued().deadline);
        self.start_conversation_by(submission_id, deadline).await
    }

    /// [`Self::start_conversation`] within an invocation that ends at `deadline`: without the
    /// time for a chat, its opening and the template, nothing is begun.
    pub(crate) async fn start_conversation_by(
        &self,
        submission_id: SubmissionId,
        deadline: Deadline,
    ) -> Result<StartOutcome, EngineError> {
        let Some(submission) = self.store.form_submission(submission_id).await? else {
            tracing::warn!("no such form submission");
            return Ok(StartOutcome::UnknownSubmission);
        };
        match submission.status {
            SubmissionStatus::Started => return Ok(StartOutcome::AlreadyStarted),
            SubmissionStatus::Skipped | SubmissionStatus::Held => {
                return Ok(StartOutcome::NotContacted(submission.outcome_reason));
            }
            SubmissionStatus::Queued | SubmissionStatus::Failed => {}
        }
        let customer = &submission.customer_key;
        if deadline
            .left_after(self.send_reserve, SHORTEST_COMPLETION)
            .is_none()
        {
            return Err(EngineError::OutOfTime);
        }
        let session = self.store.session(customer).await?;
        // Consent is final and a person who took over decides, whenever that happened.
        if let Some(reason) = session.as_ref().and_then(not_to_contact) {
            let skipped = self
                .store
                .skip_form_submission(submission.id, reason)
                .await?;
            tracing::info!(%reason, skipped, "the customer is not contacted");
            return Ok(StartOutcome::NotContacted(Some(reason)));
        }

        let mut chat = NewChat {
            metadata: metadata(customer),
            dynamic_variables: base_variables(session.as_ref(), Some(&submission.name)),
        };
        chat.metadata
            .insert("submission_id".into(), serde_json::json!(submission.id));
        for (field, value) in &submission.fields {
            chat.dynamic_variables
                .entry(field.clone())
                .or_insert_with(|| value.clone());
        }
        // A chat attached since the submission was made for it by an earlier try of this job
        // (or the customer wrote first in the meantime): continue it rather than start another.
        let opened_for_this_submission = session
            .as_ref()
            .filter(|s| {
                s.chat_started_at
                    .is_some_and(|started| started >= submission.created_at)
            })
            .and_then(|s| s.current_chat_id.clone());
        let fresh_chat = opened_for_this_submission.is_none();
        let chat_id = match opened_for_this_submission {
            Some(chat_id) => chat_id,
            None => {
                let current = session.as_ref().and_then(|s| s.current_chat_id.as_ref());
                self.open_chat(customer, chat, current, "a new form submission")
                    .await?
            }
        };

        if self.config.open_with_empty_completion && fresh_chat {
            // The agent's opening goes into its transcript only: the customer gets the template.
            let limit = deadline
                .left_after(self.send_reserve, SHORTEST_COMPLETION)
                .ok_or(EngineError::OutOfTime)?;
            let opening = self
                .agent
                .complete_within(&chat_id, "", Some(limit))
                .await?;
            tracing::debug!(
                messages = opening.len(),
                "agent opening kept out of WhatsApp"
            );
        }
        let template = self.template_for(Some(&submission.name));
        let sent = self
            .messenger
            .send_template(&Recipient::for_customer(customer), &template)
            .await?;
        Figures::new().add(Metric::TemplatesSent, 1.0).emit();
        self.store
            .complete_form_submission(submission.id, &chat_id, &[outbound(sent)])
            .await?;
        Ok(StartOutcome::Started)
    }
}

/// Why a session's customer may not be contacted now, if they may not.
fn not_to_contact(session: &Session) -> Option<OutcomeReason> {
    if session.is_opted_out() {
        Some(OutcomeReason::OptedOut)
    } else if session.is_paused(chrono::Utc::now()) {
        Some(OutcomeReason::Paused)
    } else {
        None
    }
}
