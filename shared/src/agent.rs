//! The chat agent port: a conversation partner that keeps each chat's history server-side.
//! Retell is the adapter ([`crate::retell::RetellClient`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{AccountProblem, ChatId, ChatStatus};

/// What a new chat starts with.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NewChat {
    /// Stored with the chat and echoed in webhooks (customer key, submission id).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Injected into the agent's prompt: the customer's name, form fields, the earlier gist.
    pub dynamic_variables: BTreeMap<String, String>,
}

/// A chat as the agent's service reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Chat {
    pub chat_id: ChatId,
    pub chat_status: ChatStatus,
    #[serde(default)]
    pub start_timestamp: Option<i64>,
    #[serde(default)]
    pub end_timestamp: Option<i64>,
    /// The whole history, in order (`message_with_tool_calls`).
    #[serde(default, rename = "message_with_tool_calls")]
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, rename = "retell_llm_dynamic_variables")]
    pub dynamic_variables: BTreeMap<String, String>,
    /// What the agent gathered during the chat (only once it has ended). Retell's older spec
    /// typed the values as anything, so they are kept as JSON.
    #[serde(default, deserialize_with = "null_as_default")]
    pub collected_dynamic_variables: BTreeMap<String, serde_json::Value>,
    /// Retell's post-chat analysis (only once it has ended and been analysed).
    #[serde(default)]
    pub chat_analysis: Option<ChatAnalysis>,
}

impl Chat {
    /// The analysis's summary, when Retell has analysed the chat and it is not blank.
    pub fn summary(&self) -> Option<&str> {
        self.chat_analysis
            .as_ref()?
            .chat_summary
            .as_deref()
            .map(str::trim)
            .filter(|summary| !summary.is_empty())
    }
}

/// Retell's post-chat analysis (`ChatAnalysis` in its API): every field optional.
pub use crate::domain::ChatAnalysis;

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One message of a chat. Roles other than `agent` and `user` (tool calls, node transitions,
/// and whatever Retell adds next) are kept and skipped by [`ChatMessage::agent_text`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp: Option<i64>,
}

impl ChatMessage {
    /// The text the customer should see, if this is a non-empty agent message.
    pub fn agent_text(&self) -> Option<&str> {
        (self.role == "agent")
            .then_some(self.content.as_deref())
            .flatten()
            .filter(|text| !text.trim().is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The chat can take no more messages: start a new one.
    #[error("the chat has ended: {0}")]
    ChatEnded(String),
    #[error("the agent service does not know this chat or agent: {0}")]
    NotFound(String),
    #[error("the agent service refused our API key (check RETELL_API_KEY): {0}")]
    Unauthorized(String),
    #[error("the agent service wants payment: {0}")]
    PaymentRequired(String),
    #[error("the agent service is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the agent service failed (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// No answer in time: the request may or may not have been processed.
    #[error("the agent service did not answer in time")]
    Timeout,
    /// The request never reached the service.
    #[error("could not connect to the agent service: {0}")]
    Connect(String),
    #[error("the agent service rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the agent service answered something unexpected")]
    Unexpected(#[source] anyhow::Error),
}

impl AgentError {
    /// Retell refuses the whole account (401: the key; 402: billing), whatever the chat.
    pub fn account_problem(&self) -> Option<AccountProblem> {
        match self {
            Self::Unauthorized(_) => Some(AccountProblem::RetellKey),
            Self::PaymentRequired(_) => Some(AccountProblem::RetellBilling),
            _ => None,
        }
    }

    /// Worth another try later (by the queue), as opposed to a fault a retry cannot fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout | Self::Connect(_)
        )
    }
}

pub trait ChatAgent: Send + Sync {
    fn create_chat(&self, chat: &NewChat) -> impl Future<Output = Result<Chat, AgentError>> + Send;

    /// Sends one user turn and returns the messages the agent produced for it, in order. An
    /// empty `content` asks for the agent's opening message without a user turn.
    fn complete(
        &self,
        chat: &ChatId,
        content: &str,
    ) -> impl Future<Output = Result<Vec<ChatMessage>, AgentError>> + Send {
        self.complete_within(chat, content, None)
    }

    /// [`Self::complete`], waiting no longer than `limit` (what is left of the turn's time)
    /// when that is shorter than the client's completion timeout.
    fn complete_within(
        &self,
        chat: &ChatId,
        content: &str,
        limit: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<ChatMessage>, AgentError>> + Send;

    fn get_chat(&self, chat: &ChatId) -> impl Future<Output = Result<Chat, AgentError>> + Send;

    fn end_chat(&self, chat: &ChatId) -> impl Future<Output = Result<(), AgentError>> + Send;
}
