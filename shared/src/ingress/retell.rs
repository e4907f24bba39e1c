//! `POST /retell`: Retell's chat webhooks (served by the staff-inbound function, next to the
//! agent's custom functions, which Retell signs the same way).
//!
//! The signature (`x-retell-signature` over the raw body, the 5-minute window) is checked first,
//! with `RETELL_WEBHOOK_API_KEY` when set, else `RETELL_API_KEY`: a forged, stale or tampered
//! delivery is 401 and changes nothing. The body `{"event", "chat": {...}}` is read defensively
//! (Retell documents the envelope for calls only): fields this code does not know, or of a type
//! it does not expect, are left out.
//!
//! - `chat_ended`: the chat's history row is marked ended (its end and reason kept once), and
//!   its session too when it is the current chat, so the customer's next message goes to a new
//!   chat without a failed completion first.
//! - `chat_analyzed`: the analysis is stored once on the history row (the chat counted ended too:
//!   it may come before its `chat_ended`), and, the first time and when `OUTCOME_WEBHOOK_URL` is
//!   configured, [`TurnJob::DeliverOutcome`] is queued (deduplicated by `outcome:<chat_id>`). The
//!   queue down is logged and still answered 200: the hook is best effort from here.
//! - `chat_started`, `transcript_updated`, any other event, and a chat that is not ours: 200,
//!   ignored.
//!
//! Retell retries a delivery up to 3 times without a 2xx within 10 s: repeats are harmless (the
//! store records each fact once), and the store's and the queue's calls are bounded so the answer
//! always comes in time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{DoorError, Response, json_response};
use crate::config::StaffConfig;
use crate::domain::{ChatAnalysis, ChatEvent, ChatEventKind, ChatId};
use crate::queue::{TurnJob, TurnQueue};
use crate::retell::webhook::{RetellBodyError, RetellSignatureError, signed_body};
use crate::store::{SessionStore, StoreError};

/// The route Retell's chat webhooks are sent to.
pub const RETELL_PATH: &str = "/retell";

/// The largest body read: a chat's whole transcript and its messages.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The store's call, at most: Retell waits 10 s.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The queue's call, at most.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest end reason kept, in characters.
const MAX_REASON_CHARS: usize = 200;

/// Why a chat webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetellWebhookError {
    #[error("{0} is not POST")]
    MethodNotAllowed(Method),
    #[error(transparent)]
    Signature(#[from] RetellSignatureError),
    #[error("the body is over {MAX_BODY_BYTES} bytes")]
    PayloadTooLarge,
    #[error("the body is not the JSON expected: {0}")]
    MalformedBody(String),
    #[error("{field} is not valid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The store is down or slow: Retell retries, and nothing is recorded twice.
    #[error("could not {0}; retry")]
    Unavailable(&'static str),
}

impl From<RetellBodyError> for RetellWebhookError {
    fn from(error: RetellBodyError) -> Self {
        match error {
            RetellBodyError::Signature(error) => Self::Signature(error),
            RetellBodyError::TooLarge => Self::PayloadTooLarge,
        }
    }
}

impl DoorError for RetellWebhookError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Signature(_) => "invalid_signature",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MalformedBody(_) => "malformed_body",
            Self::InvalidField { .. } => "invalid_field",
            Self::Unavailable(_) => "unavailable",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    fn add_headers(&self, headers: &mut http::HeaderMap) {
        if let Self::MethodNotAllowed(_) = self {
            headers.insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        }
    }
}

/// The chat webhooks' door: the key they are signed with and whether outcomes are delivered.
pub struct RetellWebhooks {
    api_key: SecretString,
    outcome_hook: bool,
}

impl RetellWebhooks {
    pub fn new(config: &StaffConfig) -> Self {
        Self {
            api_key: config
                .retell_webhook_api_key
                .clone()
                .unwrap_or_else(|| config.retell_api_key.clone()),
            outcome_hook: config.outcome_hook,
        }
    }

    /// `POST /retell`, answered as the module says; a refusal is logged at WARN (the store
    /// down at ERROR, where it happens).
    #[tracing::instrument(name = "retell_webhook", skip_all)]
    pub async fn handle<S: SessionStore, Q: TurnQueue, B: AsRef<[u8]>>(
        &self,
        store: &S,
        queue: &Q,
        request: &http::Request<B>,
    ) -> Response {
        self.receive(store, queue, request, now_ms())
            .await
            .unwrap_or_else(|error| {
                if !matches!(error, RetellWebhookError::Unavailable(_)) {
                    tracing::warn!(%error, "a Retell webhook refused");
                }
                error.to_response()
            })
    }

    async fn receive<S: SessionStore, Q: TurnQueue, B: AsRef<[u8]>>(
        &self,
        store: &S,
        queue: &Q,
        request: &http::Request<B>,
        now_ms: i64,
    ) -> Result<Response, RetellWebhookError> {
        if request.method() != Method::POST {
            return Err(RetellWebhookError::MethodNotAllowed(
                request.method().clone(),
            ));
        }
        let body = signed_body(
            request,
            self.api_key.expose_secret().as_bytes(),
            MAX_BODY_BYTES,
            now_ms,
        )?;
        let Some(event) = parse(body)? else {
            return Ok(ignored("only chat_ended and chat_analyzed are recorded"));
        };
        let recorded = tokio::time::timeout(STORE_TIMEOUT, store.record_chat_event(&event))
            .await
            .map_err(|_| {
                tracing::error!(chat_id = %event.chat_id, "the store did not answer in time: Retell retries");
                RetellWebhookError::Unavailable("record the chat event")
            })?
            .map_err(|error| store_failure(&error))?;
        if !recorded.known {
            tracing::info!(chat_id = %event.chat_id, kind = ?event.kind, "a chat that is not ours: ignored");
            return Ok(ignored("the chat is not one of the bridge's"));
        }
        tracing::info!(
            chat_id = %event.chat_id, kind = ?event.kind, first_analysis = recorded.first_analysis,
            "chat event recorded"
        );
        let mut outcome = "not_configured";
        if let (true, true, Some(customer_key)) = (
            event.kind == ChatEventKind::Analyzed && recorded.first_analysis,
            self.outcome_hook,
            recorded.customer_key,
        ) {
            let job = TurnJob::DeliverOutcome {
                customer_key: customer_key.clone(),
                chat_id: event.chat_id.clone(),
            };
            let dedup = format!("outcome:{}", event.chat_id);
            outcome = match tokio::time::timeout(QUEUE_TIMEOUT, queue.enqueue(&job, &dedup)).await {
                Ok(Ok(())) => "queued",
                Ok(Err(error)) => {
                    tracing::error!(%error, chat_id = %event.chat_id, customer = %customer_key.masked(), "the outcome was not queued: its hook is not sent");
                    "not_queued"
                }
                Err(_) => {
                    tracing::error!(chat_id = %event.chat_id, customer = %customer_key.masked(), "the queue did not answer in time: the outcome's hook is not sent");
                    "not_queued"
                }
            };
        } else if event.kind == ChatEventKind::Analyzed && self.outcome_hook {
            outcome = "already_analyzed";
        }
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "status": "recorded",
                "chat_id": event.chat_id.as_str(),
                "outcome": (event.kind == ChatEventKind::Analyzed).then_some(outcome),
            }),
        ))
    }
}

/// The event the body describes, `None` for an event that changes nothing here.
fn parse(body: &[u8]) -> Result<Option<ChatEvent>, RetellWebhookError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| RetellWebhookError::MalformedBody(e.to_string()))?;
    let event = body.get("event").and_then(Value::as_str).ok_or_else(|| {
        RetellWebhookError::InvalidField {
            field: "event",
            reason: "the event's name, a string".to_owned(),
        }
    })?;
    let kind = match event {
        "chat_ended" => ChatEventKind::Ended,
        "chat_analyzed" => ChatEventKind::Analyzed,
        other => {
            tracing::info!(
                event = other,
                "a Retell event that changes nothing: ignored"
            );
            return Ok(None);
        }
    };
    // Retell documents `call` for calls; a chat agent's may be sent under either.
    let chat = body
        .get("chat")
        .or_else(|| body.get("call"))
        .filter(|chat| chat.is_object())
        .ok_or_else(|| RetellWebhookError::InvalidField {
            field: "chat",
            reason: "the chat the event is about, an object".to_owned(),
        })?;
    let chat_id = chat
        .get("chat_id")
        .and_then(Value::as_str)
        .ok_or_else(|| "missing".to_owned())
        .and_then(|id| ChatId::parse(id).map_err(|e| e.to_string()))
        .map_err(|reason| RetellWebhookError::InvalidField {
            field: "chat.chat_id",
            reason,
        })?;
    let ended_at = chat
        .get("end_timestamp")
        .and_then(Value::as_i64)
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    // Chats carry no `disconnection_reason` in Retell's API today (calls do); read it should it
    // come, else the status the chat ended with (`ended`, `error`).
    let reason = ["disconnection_reason", "chat_status"]
        .iter()
        .find_map(|name| chat.get(*name).and_then(Value::as_str))
        .map(|reason| {
            reason
                .chars()
                .filter(|c| *c != '\0')
                .take(MAX_REASON_CHARS)
                .collect::<String>()
        })
        .filter(|reason| !reason.trim().is_empty());
    let analysis = match kind {
        ChatEventKind::Analyzed => chat
            .get("chat_analysis")
            .filter(|analysis| analysis.is_object())
            .map(|analysis| ChatAnalysis {
                chat_summary: text(analysis, "chat_summary"),
                user_sentiment: text(analysis, "user_sentiment"),
                chat_successful: analysis.get("chat_successful").and_then(Value::as_bool),
                custom_analysis_data: analysis
                    .get("custom_analysis_data")
                    .filter(|data| !data.is_null())
                    .cloned(),
            }),
        _ => None,
    };
    Ok(Some(ChatEvent {
        kind,
        chat_id,
        ended_at,
        reason,
        analysis,
    }))
}

fn text(object: &Value, name: &str) -> Option<String> {
    object
        .get(name)
        .and_then(Value::as_str)
        .map(|text| text.replace('\0', ""))
        .filter(|text| !text.trim().is_empty())
}

/// `{"status": "ignored", "reason": …}`, 200: Retell does not send it again.
fn ignored(reason: &str) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::json!({ "status": "ignored", "reason": reason }),
    )
}

fn store_failure(error: &StoreError) -> RetellWebhookError {
    tracing::error!(%error, "the chat event was not recorded: Retell retries");
    RetellWebhookError::Unavailable("record the chat event")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
