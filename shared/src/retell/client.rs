//! The Retell chat API adapter for the [`ChatAgent`] port.
//!
//! Retries: create, get and end chat are retried after connection errors, 429 and 5xx, with
//! backoff. A completion is not idempotent (a repeat would add the user's turn twice), so it
//! is retried only where it provably was not received: a failed connection, or a 429.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::agent::{AgentError, Chat, ChatAgent, ChatMessage, NewChat};
use crate::config::RetellConfig;
use crate::domain::ChatId;
use crate::retry::RetryPolicy;

#[derive(Clone)]
pub struct RetellClient {
    base_url: url::Url,
    authorization: HeaderValue,
    agent_id: String,
    agent_version: Option<u32>,
    client: reqwest::Client,
    request_timeout: Duration,
    completion_timeout: Duration,
    retry: RetryPolicy,
}

impl std::fmt::Debug for RetellClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetellClient")
            .field("base_url", &self.base_url)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// Whether a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idempotence {
    /// Create, get and end: a repeat does no harm (at worst an unused chat).
    Repeatable,
    /// A completion: repeat only what the service cannot have received.
    OnlyIfNotReceived,
}

#[derive(Deserialize)]
struct CompletionResponse {
    messages: Vec<ChatMessage>,
}

impl RetellClient {
    /// `client` is the process's shared HTTP client ([`crate::http::client`]).
    pub fn new(config: &RetellConfig, client: reqwest::Client) -> Self {
        Self {
            base_url: url::Url::parse(&config.base_url).expect("RetellConfig holds a valid URL"),
            authorization: crate::http::bearer(config.api_key.expose_secret()),
            agent_id: config.agent_id.clone(),
            agent_version: config.agent_version,
            client,
            request_timeout: config.request_timeout,
            completion_timeout: config.completion_timeout,
            retry: RetryPolicy::DEFAULT,
        }
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A failure is logged: at ERROR when a person must act (the key, the account), at INFO
    /// for an ended chat (the engine carries the conversation over), else at WARN.
    #[tracing::instrument(
        name = "retell",
        skip_all,
        fields(method = %method, path = %path.join("/"))
    )]
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&Value>,
        timeout: Duration,
        idempotence: Idempotence,
    ) -> Result<T, AgentError> {
        let mut retry = 0;
        loop {
            let error = match self.send(method.clone(), path, body, timeout).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let worth_retrying = match error {
                AgentError::Connect(_) | AgentError::RateLimited { .. } => true,
                AgentError::Server { .. } => idempotence == Idempotence::Repeatable,
                _ => false,
            };
            if !worth_retrying || retry >= self.retry.max_retries {
                match &error {
                    AgentError::Unauthorized(_) | AgentError::PaymentRequired(_) => {
                        tracing::error!(%error, retries = retry, "Retell refused us")
                    }
                    AgentError::ChatEnded(_) => tracing::info!(%error, "Retell ended the chat"),
                    _ => tracing::warn!(%error, retries = retry, "Retell failed"),
                }
                return Err(error);
            }
            let retry_after = match error {
                AgentError::RateLimited { retry_after } => retry_after,
                _ => None,
            };
            let delay = self.retry.delay(retry, retry_after);
            tracing::warn!(%error, retry, ?delay, "retrying Retell");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<T, AgentError> {
        let mut url = self.base_url.clone();
        // Each segment escaped on its own: a chat id is one segment whatever it contains.
        url.path_segments_mut()
            .expect("an http(s) URL")
            .pop_if_empty()
            .extend(path);
        let mut request = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, self.authorization.clone())
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(classify(status, retry_after, &bytes));
        }
        // 204 (end chat) has no body: read it as JSON null.
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes)
            .with_context(|| {
                format!(
                    "reading {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                )
            })
            .map_err(AgentError::Unexpected)
    }
}

impl ChatAgent for RetellClient {
    async fn create_chat(&self, chat: &NewChat) -> Result<Chat, AgentError> {
        let mut body = json!({ "agent_id": self.agent_id });
        if let Some(version) = self.agent_version {
            body["agent_version"] = json!(version);
        }
        if !chat.metadata.is_empty() {
            body["metadata"] = Value::Object(chat.metadata.clone());
        }
        if !chat.dynamic_variables.is_empty() {
            body["retell_llm_dynamic_variables"] = json!(chat.dynamic_variables);
        }
        self.call(
            Method::POST,
            &["create-chat"],
            Some(&body),
            self.request_timeout,
            Idempotence::Repeatable,
        )
        .await
    }

    async fn complete_within(
        &self,
        chat: &ChatId,
        content: &str,
        limit: Option<Duration>,
    ) -> Result<Vec<ChatMessage>, AgentError> {
        let body = json!({ "chat_id": chat, "content": content });
        let timeout = limit.map_or(self.completion_timeout, |limit| {
            limit.min(self.completion_timeout)
        });
        let response: CompletionResponse = self
            .call(
                Method::POST,
                &["create-chat-completion"],
                Some(&body),
                timeout,
                Idempotence::OnlyIfNotReceived,
            )
            .await?;
        Ok(response.messages)
    }

    async fn get_chat(&self, chat: &ChatId) -> Result<Chat, AgentError> {
        self.call(
            Method::GET,
            &["get-chat", chat.as_str()],
            None,
            self.request_timeout,
            Idempotence::Repeatable,
        )
        .await
    }

    async fn end_chat(&self, chat: &ChatId) -> Result<(), AgentError> {
        let _: Value = self
            .call(
                Method::PATCH,
                &["end-chat", chat.as_str()],
                None,
                self.request_timeout,
                Idempotence::Repeatable,
            )
            .await?;
        Ok(())
    }
}

/// Maps an error answer to what the caller should do. Retell's body is
/// `{"status": "error", "message": "..."}`; a completion on an ended chat is a 400 whose
/// message says so ("Chat already ended").
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> AgentError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    match status.as_u16() {
        400 if message.to_ascii_lowercase().contains("ended") => AgentError::ChatEnded(message),
        401 | 403 => AgentError::Unauthorized(message),
        402 => AgentError::PaymentRequired(message),
        404 | 422 => AgentError::NotFound(message),
        429 => AgentError::RateLimited { retry_after },
        status @ 500..=599 => AgentError::Server { status, message },
        status => AgentError::Rejected { status, message },
    }
}

/// `retry-after-ms` (Retell's SDKs read it first) or `retry-after` in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n: &f64| *n >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number(RETRY_AFTER.as_str()).map(Duration::from_secs_f64))
}

fn transport_error(error: reqwest::Error) -> AgentError {
    if error.is_connect() {
        AgentError::Connect(error.to_string())
    } else {
        // Timed out, or the connection broke after the request went out: it may have arrived.
        AgentError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_classified_by_status_and_message() {
        let body = |m: &str| {
            json!({ "status": "error", "message": m })
                .to_string()
                .into_bytes()
        };
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, &body("Chat already ended")),
            AgentError::ChatEnded(_)
        ));
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                None,
                &body("Invalid request format")
            ),
            AgentError::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, &body("x")),
            AgentError::Unauthorized(_)
        ));
        assert!(matches!(
            classify(StatusCode::PAYMENT_REQUIRED, None, &body("x")),
            AgentError::PaymentRequired(_)
        ));
        assert!(matches!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, None, &body("x")),
            AgentError::NotFound(_)
        ));
        let limited = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            b"",
        );
        assert!(
            matches!(limited, AgentError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2))
        );
        let failed = classify(StatusCode::BAD_GATEWAY, None, b"<html>");
        assert!(
            matches!(failed, AgentError::Server { status: 502, ref message } if message == "<html>")
        );
    }

    #[test]
    fn retry_after_reads_milliseconds_first_then_seconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        headers.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    }
}
