//! A form was submitted: open the conversation with the first-contact template.

use super::{Engine, EngineError, base_variables, metadata, outbound};
use crate::agent::{ChatAgent, NewChat};
use crate::domain::{SubmissionId, SubmissionStatus};
use crate::messenger::{Messenger, Recipient};
use crate::store::SessionStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The chat was created and the template sent.
    Started,
    /// A repeated job: the submission's outreach was done before.
    AlreadyStarted,
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
        let Some(submission) = self.store.form_submission(submission_id).await? else {
            tracing::warn!("no such form submission");
            return Ok(StartOutcome::UnknownSubmission);
        };
        if submission.status == SubmissionStatus::Started {
            return Ok(StartOutcome::AlreadyStarted);
        }
        let customer = &submission.customer_key;
        let session = self.store.session(customer).await?;

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
            let opening = self.agent.complete(&chat_id, "").await?;
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
        self.store
            .complete_form_submission(submission.id, &chat_id, &[outbound(sent)])
            .await?;
        Ok(StartOutcome::Started)
    }
}
