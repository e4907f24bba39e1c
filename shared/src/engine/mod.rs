//! The conversation engine: one continuing Retell chat per customer.
//!
//! Three entry points, all run from the turn queue (one job at a time per customer):
//! [`Engine::start_conversation`] for a form submission, [`Engine::take_turn`] for the
//! messages a customer sent, and [`Engine::send_staff_message`] for what staff wrote.

pub mod media;
mod staff;
mod start;
mod turn;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument as _;

use crate::agent::{AgentError, ChatAgent, NewChat};
use crate::config::{EngineConfig, WhatsAppConfig, WorkerConfig};
use crate::domain::{AccountProblem, ChatId, CustomerKey, FailureCause, OutboundMessage, Session};
use crate::messenger::{Messenger, MessengerError, SentMessage, Template};
use crate::metrics::{Figures, Metric};
use crate::outcome::{OutcomeHook, OutcomeHookError};
use crate::queue::{JobDisposition, JobHandler, Receipt, TurnJob};
use crate::retell::RetellClient;
use crate::retry::RetryPolicy;
use crate::store::{PostgrestStore, SessionStore, StoreError};
use crate::transcribe::{TranscribeError, Transcriber};
use crate::whatsapp::GraphClient;

pub use staff::{OPTED_OUT, OUTSIDE_WINDOW, StaffOutcome};
pub use start::StartOutcome;
pub use turn::TurnOutcome;

/// What the engine needs of WhatsApp beyond the port: the approved template.
#[derive(Debug, Clone)]
pub struct TemplateConfig {
    pub name: String,
    pub language: String,
}

impl From<&WhatsAppConfig> for TemplateConfig {
    fn from(whatsapp: &WhatsAppConfig) -> Self {
        Self {
            name: whatsapp.template_name.clone(),
            language: whatsapp.template_language.clone(),
        }
    }
}

/// The engine on the real adapters: Supabase's PostgREST, Retell, the Graph API.
pub type BridgeEngine = Engine<PostgrestStore, RetellClient, GraphClient>;

impl BridgeEngine {
    /// The engine as the worker builds it at INIT, every client sharing `http`. The tests,
    /// `make dev` and the chaos run build theirs here too, from a configuration of their own.
    pub fn from_config(config: &WorkerConfig, http: reqwest::Client) -> Self {
        let mut engine = Engine::new(
            PostgrestStore::new(&config.store, http.clone()),
            RetellClient::new(&config.retell, http.clone()),
            GraphClient::new(&config.whatsapp, http.clone()),
            config.engine.clone(),
            TemplateConfig::from(&config.whatsapp),
        );
        engine.outcome_hook = config
            .outcome_hook
            .as_ref()
            .map(|hook| OutcomeHook::new(hook, http.clone()));
        engine.transcriber = config
            .transcribe
            .as_ref()
            .map(|transcribe| Transcriber::new(transcribe, http.clone()));
        // A reply, and the template should WhatsApp want one instead.
        engine.send_reserve = config.whatsapp.request_timeout * 2;
        engine.answer_wait = config.retell.completion_timeout;
        engine
    }

    /// Both clients retrying by `policy`, the Graph client's pair rate limit counted in
    /// `pair_rate_limit_unit` (tests wait milliseconds where production waits seconds).
    pub fn with_retry_policy(
        mut self,
        policy: RetryPolicy,
        pair_rate_limit_unit: std::time::Duration,
    ) -> Self {
        self.agent = self.agent.with_retry_policy(policy);
        self.messenger = self
            .messenger
            .with_retry_policy(policy, pair_rate_limit_unit);
        self
    }
}

pub struct Engine<S, A, M> {
    store: S,
    agent: A,
    messenger: M,
    config: EngineConfig,
    template: TemplateConfig,
    /// The time kept for sending once the agent has answered: the completion gets what is left.
    send_reserve: Duration,
    /// How long Retell may take to answer a completion (the client's timeout): a text it took
    /// longer ago than this and left unanswered was answered with silence.
    answer_wait: Duration,
    /// Where analysed chats' outcomes go (`OUTCOME_WEBHOOK_URL`), if anywhere.
    outcome_hook: Option<OutcomeHook>,
    /// Where voice notes are transcribed (`TRANSCRIBE_URL`); without it they get the polite
    /// reply.
    transcriber: Option<Transcriber>,
}

/// The least a completion is given: with less time left the turn is put back for the next
/// invocation instead.
const SHORTEST_COMPLETION: Duration = Duration::from_secs(5);

/// When the invocation ends, as a step sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// What is left after keeping `reserve`, if that is at least `least`.
    fn left_after(self, reserve: Duration, least: Duration) -> Option<Duration> {
        Some(self.remaining().checked_sub(reserve)?).filter(|left| *left >= least)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Messenger(#[from] MessengerError),
    /// A voice note could not be transcribed (or downloaded: then it is [`Self::Messenger`]).
    #[error(transparent)]
    Transcription(#[from] TranscribeError),
    /// Retell received the customer's words (its completion timed out) and has not answered
    /// them: asking again would repeat them to the agent.
    #[error("Retell received the message but did not answer in time")]
    UnansweredCompletion,
    /// Another caller attached a chat and the store did not say which.
    #[error("the customer's chat changed under us and no current chat was reported")]
    ChatLost,
    /// The invocation has too little time left for the next step: it is put back whole.
    #[error("too little time left in this invocation; put back for the next one")]
    OutOfTime,
}

impl EngineError {
    /// What the failure means for the messages and the job.
    pub fn cause(&self) -> FailureCause {
        let account_problem = match self {
            Self::Store(StoreError::Unauthorized(_)) => Some(AccountProblem::StoreKey),
            Self::Agent(e) => e.account_problem(),
            Self::Messenger(e) => e.account_problem(),
            Self::Transcription(e) => e.account_problem(),
            _ => None,
        };
        if let Some(problem) = account_problem {
            return FailureCause::AccountWide(problem);
        }
        let transient = match self {
            Self::Store(e) => e.is_transient(),
            Self::Agent(e) => e.is_transient(),
            Self::Messenger(e) => e.is_transient(),
            Self::Transcription(e) => e.is_transient(),
            // The next try reads the chat back and finds the answer once Retell has it.
            Self::UnansweredCompletion | Self::ChatLost | Self::OutOfTime => true,
        };
        match (transient, self) {
            (true, Self::Agent(AgentError::RateLimited { retry_after })) => {
                FailureCause::Transient {
                    not_before: *retry_after,
                }
            }
            (true, Self::Transcription(e)) => FailureCause::Transient {
                not_before: e.retry_after(),
            },
            (true, _) => FailureCause::Transient { not_before: None },
            (false, _) => FailureCause::Permanent,
        }
    }

    /// Worth running the job again later.
    pub fn is_transient(&self) -> bool {
        self.cause().is_retried()
    }
}

impl<S: SessionStore, A: ChatAgent, M: Messenger> Engine<S, A, M> {
    pub fn new(
        store: S,
        agent: A,
        messenger: M,
        config: EngineConfig,
        template: TemplateConfig,
    ) -> Self {
        Self {
            store,
            agent,
            messenger,
            config,
            template,
            send_reserve: Duration::from_secs(20),
            answer_wait: Duration::from_secs(120),
            outcome_hook: None,
            transcriber: None,
        }
    }

    /// Voice notes transcribed by `transcriber` (unset: the polite reply).
    pub fn with_transcriber(mut self, transcriber: Option<Transcriber>) -> Self {
        self.transcriber = transcriber;
        self
    }

    /// Analysed chats' outcomes POSTed to `hook` ([`TurnJob::DeliverOutcome`]).
    pub fn with_outcome_hook(mut self, hook: Option<OutcomeHook>) -> Self {
        self.outcome_hook = hook;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The first-contact template, addressed to `name`.
    fn template_for(&self, name: Option<&str>) -> Template {
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.config.name_fallback);
        Template {
            name: self.template.name.clone(),
            language: self.template.language.clone(),
            body_parameters: vec![name.to_owned()],
        }
    }

    /// Starts a chat for the customer and makes it theirs (replacing `replaced`, which stays
    /// in the history). When another caller attached one first, that one is used and ours ended.
    async fn open_chat(
        &self,
        customer: &CustomerKey,
        chat: NewChat,
        replaced: Option<&ChatId>,
        reason: &str,
    ) -> Result<ChatId, EngineError> {
        let created = self.agent.create_chat(&chat).await?;
        let attachment = self
            .store
            .attach_chat(customer, &created.chat_id, replaced, Some(reason))
            .await?;
        if attachment.attached {
            return Ok(created.chat_id);
        }
        if let Err(error) = self.agent.end_chat(&created.chat_id).await {
            tracing::warn!(%error, chat = %created.chat_id, "could not end a chat that lost the race");
        }
        attachment.current_chat_id.ok_or(EngineError::ChatLost)
    }
}

/// The dynamic variables every chat of a customer starts with.
fn base_variables(session: Option<&Session>, name: Option<&str>) -> BTreeMap<String, String> {
    let name = name.or_else(|| session.and_then(Session::display_name));
    name.map(|n| BTreeMap::from([("customer_name".to_owned(), n.to_owned())]))
        .unwrap_or_default()
}

fn metadata(customer: &CustomerKey) -> serde_json::Map<String, serde_json::Value> {
    serde_json::Map::from_iter([("customer_key".to_owned(), serde_json::json!(customer))])
}

fn outbound(sent: SentMessage) -> OutboundMessage {
    OutboundMessage {
        wamid: sent.wamid,
        message_type: sent.message_type.to_owned(),
        body: Some(sent.body),
        payload: Some(sent.payload),
    }
}

impl<S, A, M> JobHandler for Engine<S, A, M>
where
    S: SessionStore + 'static,
    A: ChatAgent + 'static,
    M: Messenger + 'static,
{
    async fn handle(&self, job: TurnJob, receipt: Receipt) -> JobDisposition {
        let span = tracing::info_span!(
            "job",
            customer = %job.customer_key().masked(),
            receive = receipt.receive
        );
        self.run(job, receipt).instrument(span).await
    }
}

impl<S: SessionStore, A: ChatAgent, M: Messenger> Engine<S, A, M> {
    async fn run(&self, job: TurnJob, receipt: Receipt) -> JobDisposition {
        let customer = job.customer_key().clone();
        let deadline = Deadline(receipt.deadline);
        let result = match job {
            TurnJob::StartConversation { submission_id, .. } => self
                .start_conversation_by(submission_id, deadline)
                .await
                .map(|outcome| tracing::info!(?outcome, "conversation start")),
            TurnJob::TakeTurn { .. } => match self.take_turn_by(&customer, receipt).await {
                Ok(TurnOutcome::Busy { lease_left }) => {
                    return JobDisposition::retry_after(
                        "another turn holds the customer",
                        lease_left,
                    );
                }
                Ok(outcome) => {
                    tracing::info!(?outcome, "turn");
                    Ok(())
                }
                Err(error) => Err(error),
            },
            TurnJob::SendStaffMessage {
                staff_message_id, ..
            } => match self
                .send_staff_message_by(&customer, staff_message_id, receipt)
                .await
            {
                Ok(StaffOutcome::Busy { lease_left }) => {
                    // Never between a turn's replies: after them.
                    return JobDisposition::retry_after("a turn holds the customer", lease_left);
                }
                Ok(outcome) => {
                    tracing::info!(?outcome, "staff message");
                    Ok(())
                }
                Err(error) => Err(error),
            },
            TurnJob::DeliverOutcome { chat_id, .. } => {
                return self.deliver_outcome(&chat_id).await;
            }
        };
        let Err(error) = result else {
            return JobDisposition::Done;
        };
        let cause = error.cause();
        if matches!(error, EngineError::OutOfTime) {
            Figures::new().add(Metric::DeadlineReleases, 1.0).emit();
        } else {
            for figures in Figures::failure(cause) {
                figures.emit();
            }
        }
        match cause {
            FailureCause::Permanent => {
                tracing::error!(%error, "the job failed for good");
                if let TurnJob::StartConversation { submission_id, .. } = job {
                    if let Err(store_error) = self
                        .store
                        .fail_form_submission(submission_id, &error.to_string())
                        .await
                    {
                        return JobDisposition::retry(store_error.to_string());
                    }
                }
                JobDisposition::Done
            }
            FailureCause::AccountWide(problem) => {
                tracing::error!(%error, %problem, "the whole account fails: the job waits and retries");
                self.retry_job(&job, &error, receipt, None).await
            }
            FailureCause::Transient { not_before } => {
                tracing::warn!(%error, "the job will be retried");
                self.retry_job(&job, &error, receipt, not_before).await
            }
        }
    }

    /// POSTs an analysed chat's outcome to the business's hook: delivered (2xx) or refused (any
    /// other 4xx, logged as an error) is done; a receiver that fails, limits us, is slow or
    /// unreachable gets the job again on the queue's schedule. Without a hook, nothing to do.
    #[tracing::instrument(skip_all, fields(chat = %chat_id))]
    pub async fn deliver_outcome(&self, chat_id: &ChatId) -> JobDisposition {
        let Some(hook) = &self.outcome_hook else {
            tracing::info!("no OUTCOME_WEBHOOK_URL: the outcome stays in the database only");
            return JobDisposition::Done;
        };
        let outcome = match self.store.outcome_for_hook(chat_id).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => {
                tracing::warn!("no analysed chat by this id: no outcome to deliver");
                return JobDisposition::Done;
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "could not read the outcome: the job will be retried");
                return JobDisposition::retry(error.to_string());
            }
            Err(error) => {
                tracing::error!(%error, "could not read the outcome: not delivered");
                return JobDisposition::Done;
            }
        };
        match hook.deliver(&outcome).await {
            Ok(()) => {
                tracing::info!("outcome delivered");
                JobDisposition::Done
            }
            Err(error @ OutcomeHookError::Transient(_)) => {
                tracing::warn!(%error, "the outcome hook failed: the job will be retried");
                JobDisposition::retry(error.to_string())
            }
            Err(error @ OutcomeHookError::Refused { .. }) => {
                tracing::error!(%error, "the outcome hook refused the outcome: not sent again");
                JobDisposition::Done
            }
        }
    }

    /// Puts a conversation start back for its retry, telling the sweeper when that is due (a
    /// failed turn told it already, in `fail_turn`).
    async fn retry_job(
        &self,
        job: &TurnJob,
        error: &EngineError,
        receipt: Receipt,
        not_before: Option<Duration>,
    ) -> JobDisposition {
        let delay = receipt.retry_delay(not_before);
        if let TurnJob::StartConversation { submission_id, .. } = job {
            if let Err(store_error) = self
                .store
                .defer_form_submission(*submission_id, &error.to_string(), delay)
                .await
            {
                // The sweeper still finds the submission queued; it just may not know to wait.
                tracing::warn!(%store_error, "could not record when the start is retried");
            }
        }
        JobDisposition::RetryLater(crate::queue::Retry {
            reason: error.to_string(),
            not_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::GraphError;
    use crate::store::PostgrestError;

    fn graph(code: i64, subcode: Option<i64>) -> EngineError {
        EngineError::Messenger(MessengerError::Permanent(GraphError {
            status: 400,
            code,
            subcode,
            message: "x".into(),
            details: None,
        }))
    }

    #[test]
    fn failures_of_the_whole_account_are_told_from_a_messages_own() {
        use AccountProblem::*;
        let account_wide = |error: EngineError| match error.cause() {
            FailureCause::AccountWide(problem) => Some(problem),
            _ => None,
        };
        assert_eq!(account_wide(graph(190, None)), Some(WhatsAppToken));
        assert_eq!(account_wide(graph(10, None)), Some(WhatsAppPermission));
        assert_eq!(account_wide(graph(200, None)), Some(WhatsAppPermission));
        assert_eq!(account_wide(graph(100, Some(33))), Some(WhatsAppPermission));
        assert_eq!(
            account_wide(EngineError::Agent(AgentError::PaymentRequired("".into()))),
            Some(RetellBilling)
        );
        assert_eq!(
            account_wide(EngineError::Agent(AgentError::Unauthorized("".into()))),
            Some(RetellKey)
        );
        let refused =
            PostgrestError::from_body(401, b"{\"code\":\"PGRST301\",\"message\":\"JWT\"}");
        assert_eq!(
            account_wide(EngineError::Store(StoreError::from_response(refused))),
            Some(StoreKey)
        );
        // A bad parameter, an undeliverable number: this message's, not the account's.
        assert_eq!(graph(100, None).cause(), FailureCause::Permanent);
        assert_eq!(graph(131_026, None).cause(), FailureCause::Permanent);
    }

    #[test]
    fn a_services_retry_after_is_kept_and_an_unanswered_completion_is_retried() {
        let limited = EngineError::Agent(AgentError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        });
        assert_eq!(
            limited.cause(),
            FailureCause::Transient {
                not_before: Some(Duration::from_secs(3))
            }
        );
        assert!(EngineError::UnansweredCompletion.is_transient());
        assert!(EngineError::OutOfTime.is_transient());
    }

    #[test]
    fn a_transcription_failure_is_retried_or_the_accounts_or_the_notes_own() {
        let limited = EngineError::Transcription(TranscribeError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        });
        assert_eq!(
            limited.cause(),
            FailureCause::Transient {
                not_before: Some(Duration::from_secs(1))
            }
        );
        assert!(EngineError::Transcription(TranscribeError::Timeout).is_transient());
        let refused = EngineError::Transcription(TranscribeError::Unauthorized {
            status: 401,
            message: "x".into(),
        });
        assert_eq!(
            refused.cause(),
            FailureCause::AccountWide(AccountProblem::TranscriptionKey)
        );
        let too_large = EngineError::Transcription(TranscribeError::Refused {
            status: 413,
            message: "x".into(),
        });
        assert_eq!(too_large.cause(), FailureCause::Permanent);
        assert_eq!(
            EngineError::Messenger(MessengerError::MediaTooLarge { limit: 1 }).cause(),
            FailureCause::Permanent
        );
    }
}
