//! The customer wrote: answer everything they sent that is still waiting, in one turn.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::media::{self, AgentLine};
use super::{
    Deadline, Engine, EngineError, SHORTEST_COMPLETION, base_variables, metadata, outbound,
};
use crate::agent::{AgentError, ChatAgent, NewChat};
use crate::domain::{
    Author, ChatId, ChatStatus, ClaimedMessage, ContextLine, CustomerKey, FailureCause, MessageId,
    Session, Turn, TurnClaim, TurnRetry,
};
use crate::messenger::{Messenger, MessengerError, Recipient};
use crate::metrics::{Figures, Metric};
use crate::queue::Receipt;
use crate::store::SessionStore;
use crate::transcribe::Transcriber;

/// How long a turn's lease outlasts its invocation: a turn whose invocation was cut short frees
/// its customer seconds after, not after `TURN_LEASE_SECONDS`.
const LEASE_BEYOND_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnOutcome {
    /// Nothing was waiting (a repeated job, or a later job whose messages an earlier turn took).
    Idle,
    /// Another turn holds the customer: try again after its lease, `lease_left` from now.
    Busy { lease_left: Duration },
    /// The agent answered; `replies` messages went out (templates included).
    Answered { chat_id: ChatId, replies: usize },
    /// Only a fixed reply went out (opt-out or opt-in confirmation, "text only please").
    Acknowledged,
    /// Stored and not answered: a person has taken over (the messages are kept `held`, and the
    /// agent hears of them in the first turn after the pause), or the customer opted out.
    Held,
    /// Only reactions: stored, nothing to answer.
    Silent,
}

/// What a turn's messages came to.
enum Understood {
    Answered {
        chat_id: ChatId,
        replies: Vec<String>,
    },
    /// Nothing the agent could be told (only voice notes that could not be heard).
    Nothing,
    /// Another turn took the customer's messages meanwhile.
    Lost,
}

/// A voice note, as the turn could hear it.
enum Heard {
    Transcript(String),
    /// It cannot be transcribed: the agent gets a marker, or the customer the polite reply.
    Unheard,
    /// Its message is no longer this turn's.
    Lost,
}

/// The least a voice note is given (download and transcription): with less time left the turn
/// is put back for the next invocation.
const SHORTEST_TRANSCRIPTION: Duration = Duration::from_secs(5);

/// How much of a transcript the store keeps on the message (`save_transcript`).
const MAX_TRANSCRIPT_CHARS: usize = 10_000;

impl<S: SessionStore, A: ChatAgent, M: Messenger> Engine<S, A, M> {
    /// Claims every waiting message of the customer and answers them as one turn. A failure
    /// is recorded on the turn: a transient one puts the messages back for a retry (or, once the
    /// agent had answered, keeps the answer so the retry only sends it); a permanent one marks
    /// them failed with the reason.
    ///
    /// Its failures are logged by the caller, which knows whether they are retried.
    #[tracing::instrument(
        name = "take_turn",
        skip_all,
        fields(customer = %customer.masked(), turn = tracing::field::Empty)
    )]
    pub async fn take_turn(&self, customer: &CustomerKey) -> Result<TurnOutcome, EngineError> {
        self.take_turn_by(customer, Receipt::unqueued()).await
    }

    /// [`Self::take_turn`] as one receive of its job: the lease ends shortly after the receipt's
    /// deadline, a step that cannot fit puts the turn
    /// back (not counted as an attempt), and a failed turn tells the sweeper when its retry is due.
    pub(crate) async fn take_turn_by(
        &self,
        customer: &CustomerKey,
        receipt: Receipt,
    ) -> Result<TurnOutcome, EngineError> {
        let deadline = Deadline(receipt.deadline);
        if deadline
            .left_after(self.send_reserve, SHORTEST_COMPLETION)
            .is_none()
        {
            return Err(EngineError::OutOfTime);
        }
        let lease = self
            .config
            .turn_lease
            .min(deadline.remaining() + LEASE_BEYOND_DEADLINE);
        let turn = match self
            .store
            .claim_turn(customer, lease, self.config.max_attempts)
            .await?
        {
            TurnClaim::Idle => return Ok(TurnOutcome::Idle),
            TurnClaim::Busy {
                lease_expires_at, ..
            } => {
                let lease_left = (lease_expires_at - Utc::now()).to_std().unwrap_or_default();
                return Ok(TurnOutcome::Busy { lease_left });
            }
            TurnClaim::Claimed(turn) => turn,
        };
        tracing::Span::current().record("turn", tracing::field::display(turn.turn_id));
        let started = std::time::Instant::now();
        match self.answer(&turn, deadline).await {
            Ok(outcome) => {
                let waited = turn
                    .messages
                    .first()
                    .and_then(|m| (Utc::now() - m.sent_at).to_std().ok());
                let mut figures = Figures::new()
                    .add(Metric::Turns, 1.0)
                    .add(Metric::TurnLatency, started.elapsed().as_secs_f64() * 1e3);
                if let (Some(waited), TurnOutcome::Answered { .. }) = (waited, &outcome) {
                    figures = figures.add(Metric::ReplyDelay, waited.as_secs_f64() * 1e3);
                }
                figures.emit();
                Ok(outcome)
            }
            Err(error) => {
                let retry = match error.cause() {
                    FailureCause::Permanent => TurnRetry::No,
                    FailureCause::Transient { not_before } => TurnRetry::After {
                        delay: receipt.retry_delay(not_before),
                        count_attempt: !matches!(error, EngineError::OutOfTime),
                    },
                    FailureCause::AccountWide(_) => TurnRetry::After {
                        delay: receipt.retry_delay(None),
                        count_attempt: false,
                    },
                };
                if let Err(store_error) = self
                    .store
                    .fail_turn(turn.turn_id, &error.to_string(), retry)
                    .await
                {
                    // The lease runs out instead and the sweeper or the retry takes them over.
                    tracing::warn!(%store_error, "could not record the failed turn");
                }
                Err(error)
            }
        }
    }

    async fn answer(&self, turn: &Turn, deadline: Deadline) -> Result<TurnOutcome, EngineError> {
        let session = &turn.session;
        if let Some(resume) = &turn.resume {
            let replies =
                &resume.replies[(resume.replies_sent as usize).min(resume.replies.len())..];
            return self.deliver(turn, &resume.chat_id, replies, deadline).await;
        }
        // What the customer typed (a voice note's transcript is not a word they chose to send).
        let texts: Vec<&str> = turn
            .messages
            .iter()
            .filter(|m| m.message_type != "audio")
            .filter_map(|m| m.body.as_deref())
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .collect();

        if session.is_opted_out() {
            if texts
                .iter()
                .any(|t| self.is_word(t, &self.config.opt_in_words))
            {
                self.store.set_opt_out(&session.customer_key, false).await?;
                return self
                    .acknowledge(turn, &self.config.opt_in_confirmation)
                    .await;
            }
            return self.hold(turn).await;
        }
        if texts
            .iter()
            .any(|t| self.is_word(t, &self.config.opt_out_words))
        {
            self.store.set_opt_out(&session.customer_key, true).await?;
            Figures::new().add(Metric::OptOuts, 1.0).emit();
            return self
                .acknowledge(turn, &self.config.opt_out_confirmation)
                .await;
        }
        if session.is_paused(Utc::now()) {
            return self.hold_for_staff(turn, deadline).await;
        }

        let lines: Vec<(AgentLine, &ClaimedMessage)> = turn
            .messages
            .iter()
            .map(|m| {
                let line = media::agent_line(m, &self.config, self.transcriber.is_some());
                (line, m)
            })
            .collect();
        if !lines.is_empty() && lines.iter().all(|(line, _)| *line == AgentLine::Silent) {
            // Only reactions: kept, nothing to answer.
            self.hold(turn).await?;
            return Ok(TurnOutcome::Silent);
        }
        let for_the_agent = |line: &AgentLine| {
            matches!(line, AgentLine::Text(_) | AgentLine::NeedsTranscript { .. })
        };
        if !lines.iter().any(|(line, _)| for_the_agent(line)) {
            return self.acknowledge(turn, &self.config.unsupported_reply).await;
        }

        let Some(last) = turn.messages.last() else {
            return self.acknowledge(turn, &self.config.unsupported_reply).await;
        };
        // "Typing…" while the agent thinks; a receipt that fails must not fail the turn.
        if let Err(error) = self.messenger.mark_read(&last.wamid, true).await {
            tracing::warn!(%error, "could not mark the message read");
        }
        let understood = self
            .while_typing(&last.wamid, self.understand(turn, &lines, deadline))
            .await?;
        let (chat_id, replies) = match understood {
            Understood::Answered { chat_id, replies } => (chat_id, replies),
            Understood::Nothing => {
                return self.acknowledge(turn, &self.config.unsupported_reply).await;
            }
            Understood::Lost => {
                tracing::warn!("the turn lost its customer to another turn before answering");
                return Ok(TurnOutcome::Busy {
                    lease_left: Duration::ZERO,
                });
            }
        };
        if !self
            .store
            .save_turn_replies(turn.turn_id, &chat_id, &replies)
            .await?
        {
            tracing::warn!("the turn lost its customer to another turn before replying");
            return Ok(TurnOutcome::Busy {
                lease_left: Duration::ZERO,
            });
        }
        self.deliver(turn, &chat_id, &replies, deadline).await
    }

    /// Runs `work` (the transcriptions and the completion), showing "typing…" again every
    /// `typing_renewal`. Each renewal is awaited before the work is polled again, so none is in
    /// flight once the work is done: the reply that follows is never followed by "typing…".
    async fn while_typing<T>(
        &self,
        message: &MessageId,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let mut work = std::pin::pin!(work);
        let every = self.config.typing_renewal;
        loop {
            if let Ok(done) = tokio::time::timeout(every, work.as_mut()).await {
                return done;
            }
            // Bounded: a slow receipt must not hold up the answer behind it.
            match tokio::time::timeout(every, self.messenger.mark_read(message, true)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "could not renew the typing indicator"),
                Err(_) => tracing::warn!("renewing the typing indicator took too long"),
            }
        }
    }

    /// What the customer said, a line each in the order they sent it (voice notes transcribed
    /// and their transcripts stored first), and the agent's answer to it.
    async fn understand(
        &self,
        turn: &Turn,
        lines: &[(AgentLine, &ClaimedMessage)],
        deadline: Deadline,
    ) -> Result<Understood, EngineError> {
        let mut written: Vec<(String, DateTime<Utc>)> = Vec::new();
        let mut understood_any = false;
        for (line, message) in lines {
            let text = match line {
                AgentLine::Text(text) => text.clone(),
                AgentLine::NeedsTranscript {
                    media_id,
                    mime_type,
                } => match self
                    .hear(turn, message, media_id, mime_type.as_deref(), deadline)
                    .await?
                {
                    Heard::Transcript(transcript) => media::heard(&self.config, &transcript),
                    Heard::Unheard => {
                        written.push((media::unheard(&self.config), message.sent_at));
                        continue;
                    }
                    Heard::Lost => return Ok(Understood::Lost),
                },
                AgentLine::Unsupported | AgentLine::Silent => continue,
            };
            understood_any = true;
            written.push((text, message.sent_at));
        }
        if !understood_any {
            // Only notes that could not be heard: the polite reply, never silence.
            return Ok(Understood::Nothing);
        }
        // A message claimed before may have reached the agent in a turn that then died.
        let retried = turn
            .messages
            .iter()
            .any(|m| m.attempts > 1 || m.failed_before);
        // What happened while the agent was not listening (a pause: the customer's held messages,
        // the staff's) goes first, in the first text's completion: a retried turn reads back the
        // texts as they were sent.
        if let (Some(block), Some(first)) = (self.context_block(&turn.context), written.first_mut())
        {
            first.0 = format!("{block}\n{}", first.0);
        }
        let pieces: Vec<(&str, DateTime<Utc>)> = written
            .iter()
            .map(|(text, sent_at)| (text.as_str(), *sent_at))
            .collect();
        let (chat_id, replies) = self
            .converse(&turn.session, &pieces, retried, deadline)
            .await?;
        Ok(Understood::Answered { chat_id, replies })
    }

    /// A voice note's transcript, stored on its message before the agent hears it (a retried
    /// turn reads it back instead of transcribing again). A failure that may pass fails the
    /// turn, for the queue to retry, until the note's `TRANSCRIBE_ATTEMPTS`; then, or at once
    /// for a note that can never be heard (too long, too large, refused), it is unheard.
    async fn hear(
        &self,
        turn: &Turn,
        message: &ClaimedMessage,
        media_id: &str,
        mime_type: Option<&str>,
        deadline: Deadline,
    ) -> Result<Heard, EngineError> {
        let Some(transcriber) = &self.transcriber else {
            return Ok(Heard::Unheard);
        };
        if message.attempts > self.config.transcribe_attempts {
            // An earlier turn gave up on it: the agent may have had it as unheard already.
            return Ok(Heard::Unheard);
        }
        // The note gets what the completion and the reply leave.
        let budget = deadline
            .left_after(
                self.send_reserve + SHORTEST_COMPLETION,
                SHORTEST_TRANSCRIPTION,
            )
            .ok_or(EngineError::OutOfTime)?;
        let started = std::time::Instant::now();
        let attempt = self.transcribe(transcriber, &turn.session, media_id, mime_type);
        let Ok(result) = tokio::time::timeout(budget, attempt).await else {
            return Err(EngineError::OutOfTime);
        };
        let transcript = match result {
            Ok(transcript) => transcript,
            Err(error) => {
                let give_up = match error.cause() {
                    FailureCause::AccountWide(_) => false,
                    FailureCause::Transient { .. } => {
                        message.attempts >= self.config.transcribe_attempts
                    }
                    FailureCause::Permanent => true,
                };
                if !give_up {
                    return Err(error);
                }
                tracing::warn!(
                    %error,
                    attempts = message.attempts,
                    "the voice note cannot be transcribed: the customer gets the polite reply"
                );
                Figures::new().add(Metric::UnheardVoiceNotes, 1.0).emit();
                return Ok(Heard::Unheard);
            }
        };
        // As the store keeps it, so the line the agent gets now is the one a retry reads back.
        let transcript: String = transcript
            .chars()
            .filter(|c| *c != '\0')
            .take(MAX_TRANSCRIPT_CHARS)
            .collect();
        let transcript = transcript.trim().to_owned();
        Figures::new()
            .add(Metric::Transcriptions, 1.0)
            .add(
                Metric::TranscriptionLatency,
                started.elapsed().as_secs_f64() * 1e3,
            )
            .emit();
        if !self
            .store
            .save_transcript(turn.turn_id, &message.wamid, &transcript)
            .await?
        {
            return Ok(Heard::Lost);
        }
        Ok(Heard::Transcript(transcript))
    }

    /// Downloads the note, checks its limits and transcribes it.
    async fn transcribe(
        &self,
        transcriber: &Transcriber,
        session: &Session,
        media_id: &str,
        mime_type: Option<&str>,
    ) -> Result<String, EngineError> {
        let media = self
            .messenger
            .fetch_media(media_id, transcriber.max_bytes())
            .await?;
        transcriber.check_limits(&media.bytes)?;
        // Graph's type of the file, else the webhook's.
        let mime_type = match media.mime_type.as_str() {
            "" | "application/octet-stream" => mime_type.unwrap_or("audio/ogg"),
            given => given,
        };
        let language = transcriber.language_for(session);
        Ok(transcriber
            .transcribe(&media.bytes, mime_type, language.as_deref())
            .await?)
    }

    /// Sends the customer's texts to their live chat and returns the agent's replies. A chat
    /// Retell has ended is replaced by one that carries the name and the gist of the earlier
    /// conversation, and the text goes to it as its first turn, so the agent answers instead of
    /// greeting. A retried turn first reads the chat back, so that what the agent already has
    /// is not sent twice.
    async fn converse(
        &self,
        session: &Session,
        written: &[(&str, DateTime<Utc>)],
        retried: bool,
        deadline: Deadline,
    ) -> Result<(ChatId, Vec<String>), EngineError> {
        // A retried turn reads back the chat its texts may have gone to, ended since or not:
        // what that chat took is not given to a new one again.
        let (earlier, unsent) = match (retried, &session.current_chat_id) {
            (true, Some(current)) => self.answered_before(current, written).await?,
            _ => (Vec::new(), Cow::Borrowed(written)),
        };
        if let (true, Some(current)) = (unsent.is_empty(), &session.current_chat_id) {
            return Ok((current.clone(), earlier));
        }
        let chat_id = match (&session.current_chat_id, session.chat_status) {
            (Some(chat_id), Some(ChatStatus::Ongoing)) => chat_id.clone(),
            (previous, _) => {
                self.carry_over(session, previous.as_ref(), "the chat had ended")
                    .await?
            }
        };
        let text = join_texts(&unsent);
        let (chat_id, replies) = match self.complete(&chat_id, &text, deadline).await {
            Err(EngineError::Agent(AgentError::ChatEnded(reason))) => {
                let chat_id = self
                    .carry_over(session, Some(&chat_id), &format!("Retell: {reason}"))
                    .await?;
                let replies = self.complete(&chat_id, &text, deadline).await?;
                (chat_id, replies)
            }
            answer => (chat_id, answer?),
        };
        Ok((chat_id, [earlier, replies].concat()))
    }

    /// What the agent already has of a retried turn's texts. Turns that died after Retell took
    /// their completion (a worker killed mid-turn, a timeout whose read-back failed) left some
    /// of the texts as the chat's last user messages, one completion each, created after those
    /// texts were sent (a message WhatsApp delivered late may sort among them): returns the
    /// agent's replies to them and the texts still to send, in order.
    async fn answered_before<'w, 't>(
        &self,
        chat_id: &ChatId,
        written: &'w [(&'t str, DateTime<Utc>)],
    ) -> Result<(Vec<String>, Cow<'w, [(&'t str, DateTime<Utc>)]>), EngineError> {
        let chat = self.agent.get_chat(chat_id).await?;
        let users: Vec<usize> = (0..chat.messages.len())
            .filter(|&i| chat.messages[i].role == "user")
            .collect();
        // The longest run of last user messages that each carry some of the texts.
        let Some((first_user, taken)) = (1..=users.len().min(written.len())).rev().find_map(|n| {
            let run = &users[users.len() - n..];
            let pieces = run.iter().map(|&i| &chat.messages[i]);
            Some((run[0], carried(pieces, written)?))
        }) else {
            return Ok((Vec::new(), Cow::Borrowed(written)));
        };
        let replies = agent_texts(&chat.messages[first_user + 1..]);
        if replies.is_empty() {
            // Still thinking, or done with nothing to say: only time tells them apart.
            let last_taken = chat.messages[users[users.len() - 1]].created_timestamp;
            let since = last_taken.map(|at| Utc::now().timestamp_millis() - at);
            if since.is_none_or(|ms| ms < self.answer_wait.as_millis() as i64) {
                return Err(EngineError::UnansweredCompletion);
            }
            tracing::warn!(
                "Retell took these texts long ago and answered nothing: nothing to send"
            );
        }
        let unsent: Vec<_> = written
            .iter()
            .zip(&taken)
            .filter(|(_, taken)| !**taken)
            .map(|(text, _)| *text)
            .collect();
        tracing::warn!(
            received = written.len() - unsent.len(),
            "the agent had these messages from turns that died: using its answer"
        );
        Ok((replies, Cow::Owned(unsent)))
    }

    /// One completion, and the agent's replies. A completion that timed out may have been
    /// received, and sending it again would give the agent the customer's words twice: the
    /// chat is read back instead. Received and answered: that answer is used. Received and not
    /// answered: the turn fails for good. Not received: it may be tried again later.
    ///
    /// It gets the time left before the deadline, less what sending needs; with too little left
    /// the turn is put back before Retell receives anything.
    async fn complete(
        &self,
        chat_id: &ChatId,
        text: &str,
        deadline: Deadline,
    ) -> Result<Vec<String>, EngineError> {
        let limit = deadline
            .left_after(self.send_reserve, SHORTEST_COMPLETION)
            .ok_or(EngineError::OutOfTime)?;
        match self.agent.complete_within(chat_id, text, Some(limit)).await {
            Ok(messages) => Ok(agent_texts(&messages)),
            Err(AgentError::Timeout) => {
                let chat = self.agent.get_chat(chat_id).await?;
                let Some(received) = chat.messages.iter().rposition(|m| m.role == "user") else {
                    return Err(AgentError::Timeout.into());
                };
                if chat.messages[received].content.as_deref() != Some(text) {
                    return Err(AgentError::Timeout.into());
                }
                let replies = agent_texts(&chat.messages[received + 1..]);
                if replies.is_empty() {
                    return Err(EngineError::UnansweredCompletion);
                }
                tracing::warn!(
                    "the completion timed out but Retell had answered: using that answer"
                );
                Ok(replies)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A new chat for the customer, replacing `previous`, with what the agent needs to go on.
    async fn carry_over(
        &self,
        session: &Session,
        previous: Option<&ChatId>,
        reason: &str,
    ) -> Result<ChatId, EngineError> {
        let mut chat = NewChat {
            metadata: metadata(&session.customer_key),
            dynamic_variables: base_variables(Some(session), None),
        };
        if let Some(previous) = previous {
            match self.agent.get_chat(previous).await {
                Ok(earlier) => {
                    // The form's fields and anything else the earlier chat knew.
                    carry_variables(&mut chat, &earlier, self.config.carry_over_messages);
                }
                Err(error) => tracing::warn!(%error, "no gist of the earlier chat"),
            }
            chat.dynamic_variables
                .insert("conversation_continues".into(), "true".into());
            chat.metadata
                .insert("previous_chat_id".into(), serde_json::json!(previous));
        }
        let chat_id = self
            .open_chat(&session.customer_key, chat, previous, reason)
            .await?;
        if previous.is_some() {
            Figures::new().add(Metric::CarryOvers, 1.0).emit();
        }
        Ok(chat_id)
    }

    /// Sends the agent's replies (free text inside the 24-hour window, else the template once)
    /// and completes the turn. Each reply is recorded as it goes out, so a retried turn sends
    /// only what is left.
    async fn deliver(
        &self,
        turn: &Turn,
        chat_id: &ChatId,
        replies: &[String],
        deadline: Deadline,
    ) -> Result<TurnOutcome, EngineError> {
        let session = &turn.session;
        let to = Recipient::for_session(session);
        if !session.within_service_window(Utc::now()) {
            return self.send_template_and_complete(turn, Some(chat_id)).await;
        }
        let mut last_parts = Vec::new();
        for (index, reply) in replies.iter().enumerate() {
            // What was sent is recorded: the rest goes in the next invocation.
            if deadline.remaining() < self.send_reserve / 2 {
                return Err(EngineError::OutOfTime);
            }
            let parts = match self.messenger.send_text(&to, reply, None).await {
                Ok(parts) => parts.into_iter().map(outbound).collect::<Vec<_>>(),
                Err(MessengerError::NeedsTemplate(error)) => {
                    tracing::info!(%error, "the window had closed: sending the template instead");
                    return self.send_template_and_complete(turn, Some(chat_id)).await;
                }
                Err(error) => return Err(error.into()),
            };
            if index + 1 < replies.len() {
                self.store.record_sent_reply(turn.turn_id, &parts).await?;
            } else {
                last_parts = parts;
            }
        }
        self.store
            .complete_turn(
                turn.turn_id,
                &session.customer_key,
                Some(chat_id),
                &last_parts,
            )
            .await?;
        Ok(TurnOutcome::Answered {
            chat_id: chat_id.clone(),
            replies: replies.len(),
        })
    }

    async fn send_template_and_complete(
        &self,
        turn: &Turn,
        chat_id: Option<&ChatId>,
    ) -> Result<TurnOutcome, EngineError> {
        let session = &turn.session;
        let template = self.template_for(session.display_name());
        let sent = self
            .messenger
            .send_template(&Recipient::for_session(session), &template)
            .await?;
        Figures::new().add(Metric::TemplatesSent, 1.0).emit();
        self.store
            .complete_turn(
                turn.turn_id,
                &session.customer_key,
                chat_id,
                &[outbound(sent)],
            )
            .await?;
        Ok(match chat_id {
            Some(chat_id) => TurnOutcome::Answered {
                chat_id: chat_id.clone(),
                replies: 1,
            },
            None => TurnOutcome::Acknowledged,
        })
    }

    /// A fixed reply, no agent: free text in the window, else nothing (a template would say
    /// something else entirely).
    async fn acknowledge(&self, turn: &Turn, reply: &str) -> Result<TurnOutcome, EngineError> {
        let session = &turn.session;
        let mut sent = Vec::new();
        if session.within_service_window(Utc::now()) {
            let parts = self
                .messenger
                .send_text(&Recipient::for_session(session), reply, None)
                .await?;
            sent.extend(parts.into_iter().map(outbound));
        }
        self.store
            .complete_turn(turn.turn_id, &session.customer_key, None, &sent)
            .await?;
        Ok(TurnOutcome::Acknowledged)
    }

    /// A person has taken over: say nothing and keep the messages `held`, for the agent to hear
    /// of when the pause is over.
    async fn hold_for_staff(
        &self,
        turn: &Turn,
        deadline: Deadline,
    ) -> Result<TurnOutcome, EngineError> {
        // Staff reading the conversation see what a voice note said, and the agent hears it
        // after the pause. Best effort: a note that cannot be heard now is held as it is.
        for message in &turn.messages {
            let can_transcribe = self.transcriber.is_some();
            if let AgentLine::NeedsTranscript {
                media_id,
                mime_type,
            } = media::agent_line(message, &self.config, can_transcribe)
            {
                let heard = self
                    .hear(turn, message, &media_id, mime_type.as_deref(), deadline)
                    .await;
                if let Err(error) = heard {
                    tracing::warn!(%error, "a held voice note was not transcribed");
                }
            }
        }
        if !self
            .store
            .hold_turn(turn.turn_id, &turn.session.customer_key)
            .await?
        {
            tracing::warn!("the turn lost its customer to another turn before holding");
        }
        Ok(TurnOutcome::Held)
    }

    /// The lines the agent has not heard, each marked by who said it, a line each (`None`: none).
    fn context_block(&self, context: &[ContextLine]) -> Option<String> {
        let lines: Vec<String> = context
            .iter()
            .filter_map(|line| {
                let body = match (line.author, line.message_type.as_deref()) {
                    (Author::Customer, Some("audio")) if line.body == "(audio)" => {
                        media::unheard(&self.config)
                    }
                    (Author::Customer, Some("audio")) => media::heard(&self.config, &line.body),
                    _ => line.body.trim().to_owned(),
                };
                let marker = match line.author {
                    Author::Customer => &self.config.context_customer_marker,
                    // Whoever spoke for the business: staff, or the business app.
                    _ => &self.config.context_staff_marker,
                };
                (!body.is_empty()).then(|| format!("{marker} {body}"))
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Store the messages as handled, say nothing.
    async fn hold(&self, turn: &Turn) -> Result<TurnOutcome, EngineError> {
        self.store
            .complete_turn(turn.turn_id, &turn.session.customer_key, None, &[])
            .await?;
        Ok(TurnOutcome::Held)
    }

    /// A message that is just one of `words`, ignoring case, accents and punctuation around it.
    fn is_word(&self, text: &str, words: &[String]) -> bool {
        let text = fold(text);
        words.iter().any(|word| fold(word) == text)
    }
}

/// What the new chat takes from the `earlier` one: its dynamic variables (the form's fields),
/// what the agent collected in it, and what it amounted to: Retell's summary once it has
/// analysed the chat (`previous_conversation_summary`), else its last `limit` lines
/// (`previous_conversation`, beside the summary of the chat before it, if the earlier chat had
/// one). The new chat's own variables (the customer's name) are kept.
fn carry_variables(chat: &mut NewChat, earlier: &crate::agent::Chat, limit: usize) {
    let variables = &mut chat.dynamic_variables;
    for (name, value) in &earlier.dynamic_variables {
        variables
            .entry(name.clone())
            .or_insert_with(|| value.clone());
    }
    for (name, value) in &earlier.collected_dynamic_variables {
        let value = match value {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        // What the agent collected is newer than what the earlier chat started with.
        if !variables.contains_key(name) || earlier.dynamic_variables.contains_key(name) {
            variables.insert(name.clone(), value);
        }
    }
    // The earlier chat's own raw tail (of the chat before it) is older than what follows.
    variables.remove(PREVIOUS_CONVERSATION);
    match earlier.summary() {
        Some(summary) => {
            variables.insert(PREVIOUS_SUMMARY.into(), summary.to_owned());
        }
        None => {
            let gist = gist(&earlier.messages, limit);
            if !gist.is_empty() {
                variables.insert(PREVIOUS_CONVERSATION.into(), gist);
            }
        }
    }
}

/// The dynamic variable with Retell's summary of the previous chat.
const PREVIOUS_SUMMARY: &str = "previous_conversation_summary";
/// The dynamic variable with the previous chat's last lines, when it has no summary yet.
const PREVIOUS_CONVERSATION: &str = "previous_conversation";

/// Which of `written` the user messages `pieces` carry, one completion each: every piece is some
/// of the texts not taken by another piece, in order (a message WhatsApp delivered late may sit
/// between them), all sent before the piece was created (else it is the customer repeating an
/// older message). `None` unless every piece carries some.
fn carried<'m>(
    pieces: impl Iterator<Item = &'m crate::agent::ChatMessage>,
    written: &[(&str, DateTime<Utc>)],
) -> Option<Vec<bool>> {
    let mut taken = vec![false; written.len()];
    for piece in pieces {
        let created = piece.created_timestamp?;
        let mut rest = piece.content.as_deref().unwrap_or("");
        let mut picked = Vec::new();
        for (i, (text, sent)) in written.iter().enumerate() {
            if rest.is_empty() {
                break;
            }
            if taken[i] || created < sent.timestamp_millis() {
                continue;
            }
            rest = match rest.strip_prefix(text) {
                Some("") => "",
                Some(after) if after.starts_with('\n') => &after[1..],
                _ => continue,
            };
            picked.push(i);
        }
        if !rest.is_empty() || picked.is_empty() {
            return None;
        }
        for i in picked {
            taken[i] = true;
        }
    }
    Some(taken)
}

/// One completion's content: the texts of a turn, a line each.
fn join_texts(written: &[(&str, DateTime<Utc>)]) -> String {
    let texts: Vec<&str> = written.iter().map(|(text, _)| *text).collect();
    texts.join("\n")
}

fn agent_texts(messages: &[crate::agent::ChatMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| m.agent_text())
        .map(str::to_owned)
        .collect()
}

/// The last `limit` messages of a chat as lines a prompt can read.
fn gist(messages: &[crate::agent::ChatMessage], limit: usize) -> String {
    let lines: Vec<String> = messages
        .iter()
        .filter_map(|m| {
            let content = m.content.as_deref()?.trim();
            let speaker = match m.role.as_str() {
                "agent" => "Agente",
                "user" => "Cliente",
                _ => return None,
            };
            (!content.is_empty()).then(|| format!("{speaker}: {content}"))
        })
        .collect();
    lines[lines.len().saturating_sub(limit)..].join("\n")
}

/// Uppercase, without accents or surrounding punctuation: "¡Baja!" and "baja" are one word.
fn fold(text: &str) -> String {
    text.trim_matches(|c: char| !c.is_alphanumeric())
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'ä' | 'â' | 'Á' | 'À' | 'Ä' | 'Â' => 'A',
            'é' | 'è' | 'ë' | 'ê' | 'É' | 'È' | 'Ë' | 'Ê' => 'E',
            'í' | 'ì' | 'ï' | 'î' | 'Í' | 'Ì' | 'Ï' | 'Î' => 'I',
            'ó' | 'ò' | 'ö' | 'ô' | 'Ó' | 'Ò' | 'Ö' | 'Ô' => 'O',
            'ú' | 'ù' | 'ü' | 'û' | 'Ú' | 'Ù' | 'Ü' | 'Û' => 'U',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ChatMessage;

    #[test]
    fn opt_out_words_match_without_case_accents_or_punctuation() {
        assert_eq!(fold("¡Baja!"), "BAJA");
        assert_eq!(fold("  stop. "), "STOP");
        assert_eq!(fold("Cancelación"), "CANCELACION");
        assert_ne!(fold("no quiero la baja"), "BAJA");
    }

    #[test]
    fn a_completion_that_led_with_the_context_is_read_back_as_the_texts_it_carried() {
        let sent = Utc::now() - chrono::TimeDelta::seconds(10);
        let first = "[Cliente] ¿hola?\n[Equipo] Te llamamos mañana\nGracias";
        let written = [(first, sent), ("¿a qué hora?", sent)];
        let piece = |content: &str| ChatMessage {
            role: "user".into(),
            content: Some(content.into()),
            message_id: None,
            created_timestamp: Some(Utc::now().timestamp_millis()),
        };
        let both = piece("[Cliente] ¿hola?\n[Equipo] Te llamamos mañana\nGracias\n¿a qué hora?");
        assert_eq!(
            carried([&both].into_iter(), &written),
            Some(vec![true, true])
        );
        let context_and_first = piece(first);
        assert_eq!(
            carried([&context_and_first].into_iter(), &written),
            Some(vec![true, false]),
            "the second text still to send, without the context the agent has"
        );
        assert_eq!(
            carried([&piece("Gracias")].into_iter(), &written),
            None,
            "the text without its context is not what this turn sent"
        );
    }

    #[test]
    fn the_gist_is_the_last_messages_of_user_and_agent() {
        let message = |role: &str, content: &str| ChatMessage {
            role: role.into(),
            content: Some(content.into()),
            message_id: None,
            created_timestamp: None,
        };
        let messages = [
            message("agent", "¿Me comunico con Ana?"),
            message("user", "Sí"),
            message("tool_call_result", "{}"),
            message("agent", "¿Qué auto tienes?"),
            message("user", "Un Versa 2021"),
        ];
        assert_eq!(
            gist(&messages, 3),
            "Cliente: Sí\nAgente: ¿Qué auto tienes?\nCliente: Un Versa 2021"
        );
    }
}
