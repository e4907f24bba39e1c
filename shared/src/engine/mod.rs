//! The conversation engine: one continuing Retell chat per customer.
//!
//! Two entry points, both run from the turn queue (one job at a time per customer):
//! [`Engine::start_conversation`] for a form submission, and [`Engine::take_turn`] for the
//! messages a customer sent.

mod start;
mod turn;

use std::collections::BTreeMap;

use tracing::Instrument as _;

use crate::agent::{AgentError, ChatAgent, NewChat};
use crate::config::{EngineConfig, WhatsAppConfig, WorkerConfig};
use crate::domain::{ChatId, CustomerKey, OutboundMessage, Session};
use crate::messenger::{Messenger, MessengerError, SentMessage, Template};
use crate::queue::{JobDisposition, JobHandler, TurnJob};
use crate::retell::RetellClient;
use crate::retry::RetryPolicy;
use crate::store::{PostgrestStore, SessionStore, StoreError};
use crate::whatsapp::GraphClient;

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
        Engine::new(
            PostgrestStore::new(&config.store, http.clone()),
            RetellClient::new(&config.retell, http.clone()),
            GraphClient::new(&config.whatsapp, http),
            config.engine.clone(),
            TemplateConfig::from(&config.whatsapp),
        )
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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Messenger(#[from] MessengerError),
    /// Retell received the customer's words (its completion timed out) and has not answered
    /// them: asking again would repeat them to the agent.
    #[error("Retell received the message but did not answer in time")]
    UnansweredCompletion,
    /// Another caller attached a chat and the store did not say which.
    #[error("the customer's chat changed under us and no current chat was reported")]
    ChatLost,
}

impl EngineError {
    /// Worth running the job again later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Agent(e) => e.is_transient(),
            Self::Messenger(e) => e.is_transient(),
            Self::ChatLost => true,
            Self::UnansweredCompletion => false,
        }
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
        }
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
    async fn handle(&self, job: TurnJob) -> JobDisposition {
        let span = tracing::info_span!("job", customer = %job.customer_key().masked());
        self.run(job).instrument(span).await
    }
}

impl<S: SessionStore, A: ChatAgent, M: Messenger> Engine<S, A, M> {
    async fn run(&self, job: TurnJob) -> JobDisposition {
        let customer = job.customer_key().clone();
        match job {
            TurnJob::StartConversation { submission_id, .. } => match self
                .start_conversation(submission_id)
                .await
            {
                Ok(outcome) => {
                    tracing::info!(?outcome, "conversation start");
                    JobDisposition::Done
                }
                Err(error) if error.is_transient() => JobDisposition::RetryLater(error.to_string()),
                Err(error) => {
                    tracing::error!(%error, "the conversation could not be started");
                    if let Err(store_error) = self
                        .store
                        .fail_form_submission(submission_id, &error.to_string())
                        .await
                    {
                        return JobDisposition::RetryLater(store_error.to_string());
                    }
                    JobDisposition::Done
                }
            },
            TurnJob::TakeTurn { .. } => match self.take_turn(&customer).await {
                Ok(TurnOutcome::Busy) => {
                    JobDisposition::RetryLater("another turn holds the customer".into())
                }
                Ok(outcome) => {
                    tracing::info!(?outcome, "turn");
                    JobDisposition::Done
                }
                Err(error) if error.is_transient() => JobDisposition::RetryLater(error.to_string()),
                Err(error) => {
                    tracing::error!(%error, "the turn failed for good");
                    JobDisposition::Done
                }
            },
        }
    }
}
