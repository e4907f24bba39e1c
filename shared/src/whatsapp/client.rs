//! The WhatsApp Cloud API (Graph) adapter for the [`Messenger`] port.
//!
//! Retries by Graph error code: throughput limits and Meta's temporary failures are retried
//! with backoff; 131056 (too many messages to one customer) waits 4^n seconds as Meta asks.
//! A timed-out send is not retried: the message may have gone out.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::text::{MAX_TEXT_CHARS, split_text};
use crate::config::WhatsAppConfig;
use crate::domain::MessageId;
use crate::messenger::{
    GraphError, Media, Messenger, MessengerError, Recipient, SentMessage, Template,
};
use crate::retry::RetryPolicy;

/// Graph's "too many messages to this customer" code: back off 4^n seconds for that customer.
const PAIR_RATE_LIMIT: i64 = 131_056;

#[derive(Clone)]
pub struct GraphClient {
    messages_url: String,
    /// `<graph_url>/<version>`: media are `GET <graph_base>/<media-id>`.
    graph_base: String,
    authorization: HeaderValue,
    client: reqwest::Client,
    request_timeout: Duration,
    retry: RetryPolicy,
    /// The n of Meta's 4^n: one second in production.
    pair_rate_limit_unit: Duration,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("messages_url", &self.messages_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SendResponse {
    messages: Vec<SentId>,
}

#[derive(Deserialize)]
struct SentId {
    id: MessageId,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<Value>,
    #[serde(default)]
    error_subcode: Option<i64>,
}

impl GraphClient {
    /// `client` is the process's shared HTTP client ([`crate::http::client`]).
    pub fn new(config: &WhatsAppConfig, client: reqwest::Client) -> Self {
        Self {
            messages_url: format!(
                "{}/{}/{}/messages",
                config.graph_url, config.api_version, config.phone_number_id
            ),
            graph_base: format!("{}/{}", config.graph_url, config.api_version),
            authorization: crate::http::bearer(config.access_token.expose_secret()),
            client,
            request_timeout: config.request_timeout,
            retry: RetryPolicy::DEFAULT,
            pair_rate_limit_unit: Duration::from_secs(1),
        }
    }

    /// Tests shrink the waits; production keeps Meta's.
    pub fn with_retry_policy(mut self, retry: RetryPolicy, pair_rate_limit_unit: Duration) -> Self {
        self.retry = retry;
        self.pair_rate_limit_unit = pair_rate_limit_unit;
        self
    }

    /// Posts to `/<version>/<phone-number-id>/messages`, retrying what Meta says to retry. A
    /// failure is logged at WARN (DEBUG for a closed window, which the engine answers with the
    /// template); the caller logs what it makes of it.
    #[tracing::instrument(name = "graph", skip_all)]
    async fn post(&self, body: &Value) -> Result<Value, MessengerError> {
        let mut retry = 0;
        loop {
            let error = match self.post_once(body).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let delay = match &error {
                MessengerError::RateLimited(e) if e.code == PAIR_RATE_LIMIT => Some(
                    self.pair_rate_limit_unit
                        .saturating_mul(4u32.saturating_pow(retry)),
                ),
                MessengerError::RateLimited(_)
                | MessengerError::Unavailable(_)
                | MessengerError::Connect(_) => Some(self.retry.delay(retry, None)),
                _ => None,
            };
            match delay {
                Some(delay) if retry < self.retry.max_retries => {
                    tracing::warn!(%error, retry, ?delay, "retrying WhatsApp");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                _ => {
                    match &error {
                        MessengerError::NeedsTemplate(_) => {
                            tracing::debug!(%error, "WhatsApp wants a template")
                        }
                        _ => tracing::warn!(%error, retries = retry, "WhatsApp failed"),
                    }
                    return Err(error);
                }
            }
        }
    }

    async fn post_once(&self, body: &Value) -> Result<Value, MessengerError> {
        let bytes = self
            .authorized(self.client.post(&self.messages_url).json(body))
            .await?
            .bytes()
            .await
            .map_err(transport_error)?;
        serde_json::from_slice(&bytes)
            .with_context(|| {
                format!(
                    "reading {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                )
            })
            .map_err(MessengerError::Unexpected)
    }

    /// Sends `request` with the access token; a Graph error answer is classified, a success
    /// is returned unread.
    async fn authorized(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, MessengerError> {
        let response = request
            .header(AUTHORIZATION, self.authorization.clone())
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.map_err(transport_error)?;
        Err(classify(graph_error(status, &bytes)))
    }

    /// One try at a media file: its short-lived URL from Graph, then the bytes from that URL
    /// (the access token is needed for both), read no further than `max_bytes`.
    async fn fetch_media_once(
        &self,
        media_id: &str,
        max_bytes: u64,
    ) -> Result<Media, MessengerError> {
        let bytes = self
            .authorized(self.client.get(format!("{}/{media_id}", self.graph_base)))
            .await?
            .bytes()
            .await
            .map_err(transport_error)?;
        let info: Value = serde_json::from_slice(&bytes)
            .context("reading the media's URL")
            .map_err(MessengerError::Unexpected)?;
        let url = info["url"]
            .as_str()
            .context("Graph gave the media no URL")
            .map_err(MessengerError::Unexpected)?;
        // A number in Meta's examples; read a numeric string too.
        let size = info["file_size"]
            .as_u64()
            .or_else(|| info["file_size"].as_str()?.parse().ok());
        if size.is_some_and(|size| size > max_bytes) {
            return Err(MessengerError::MediaTooLarge { limit: max_bytes });
        }
        let mut response = self.authorized(self.client.get(url)).await?;
        if response.content_length().is_some_and(|len| len > max_bytes) {
            return Err(MessengerError::MediaTooLarge { limit: max_bytes });
        }
        let mut audio = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if (audio.len() + chunk.len()) as u64 > max_bytes {
                return Err(MessengerError::MediaTooLarge { limit: max_bytes });
            }
            audio.extend_from_slice(&chunk);
        }
        Ok(Media {
            bytes: audio,
            mime_type: info["mime_type"]
                .as_str()
                .unwrap_or("application/octet-stream")
                .to_owned(),
        })
    }

    async fn send(
        &self,
        payload: Value,
        message_type: &'static str,
        body: String,
    ) -> Result<SentMessage, MessengerError> {
        let answer = self.post(&payload).await?;
        let sent: SendResponse = serde_json::from_value(answer)
            .context("reading the sent message's id")
            .map_err(MessengerError::Unexpected)?;
        let wamid = sent
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .context("WhatsApp accepted the message without an id")
            .map_err(MessengerError::Unexpected)?;
        Ok(SentMessage {
            wamid,
            message_type,
            body,
            payload,
        })
    }
}

/// The addressing part of a send body.
fn envelope(to: &Recipient) -> Value {
    match to {
        Recipient::Phone(phone) => {
            json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": phone })
        }
        Recipient::User(user_id) => {
            json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "recipient": user_id })
        }
    }
}

impl Messenger for GraphClient {
    async fn send_text(
        &self,
        to: &Recipient,
        text: &str,
        reply_to: Option<&MessageId>,
    ) -> Result<Vec<SentMessage>, MessengerError> {
        let mut sent = Vec::new();
        for (i, part) in split_text(text, MAX_TEXT_CHARS).into_iter().enumerate() {
            let mut payload = envelope(to);
            payload["type"] = json!("text");
            payload["text"] = json!({ "preview_url": false, "body": part });
            if let (0, Some(quoted)) = (i, reply_to) {
                payload["context"] = json!({ "message_id": quoted });
            }
            sent.push(self.send(payload, "text", part).await?);
        }
        Ok(sent)
    }

    async fn send_template(
        &self,
        to: &Recipient,
        template: &Template,
    ) -> Result<SentMessage, MessengerError> {
        let mut payload = envelope(to);
        payload["type"] = json!("template");
        let parameters: Vec<Value> = template
            .body_parameters
            .iter()
            .map(|text| json!({ "type": "text", "text": text }))
            .collect();
        payload["template"] = json!({
            "name": template.name,
            "language": { "code": template.language },
            "components": [{ "type": "body", "parameters": parameters }],
        });
        self.send(payload, "template", template.body_parameters.join(" | "))
            .await
    }

    async fn mark_read(
        &self,
        message: &MessageId,
        show_typing: bool,
    ) -> Result<(), MessengerError> {
        let mut payload =
            json!({ "messaging_product": "whatsapp", "status": "read", "message_id": message });
        if show_typing {
            payload["typing_indicator"] = json!({ "type": "text" });
        }
        self.post(&payload).await.map(drop)
    }

    /// Fetching is safe to repeat: Meta's temporary failures are retried as sends are.
    #[tracing::instrument(name = "graph_media", skip_all)]
    async fn fetch_media(&self, media_id: &str, max_bytes: u64) -> Result<Media, MessengerError> {
        // The id becomes a path segment: only what Graph's ids are made of.
        if media_id.is_empty()
            || !media_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(MessengerError::Unexpected(anyhow::anyhow!(
                "{media_id:?} is not a media id"
            )));
        }
        let mut retry = 0;
        loop {
            let error = match self.fetch_media_once(media_id, max_bytes).await {
                Ok(media) => return Ok(media),
                Err(error) => error,
            };
            match &error {
                MessengerError::RateLimited(_)
                | MessengerError::Unavailable(_)
                | MessengerError::Connect(_)
                    if retry < self.retry.max_retries =>
                {
                    let delay = self.retry.delay(retry, None);
                    tracing::warn!(%error, retry, ?delay, "retrying the media download");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                _ => {
                    tracing::warn!(%error, retries = retry, "the media download failed");
                    return Err(error);
                }
            }
        }
    }
}

fn graph_error(status: StatusCode, body: &[u8]) -> GraphError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => GraphError {
            status: status.as_u16(),
            code: error.code,
            subcode: error.error_subcode,
            message: error.message,
            // `error_data` is usually {"details": "..."}, sometimes a plain string.
            details: error.error_data.and_then(|data| match data {
                Value::String(details) => Some(details),
                data => data
                    .get("details")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }),
        },
        // No Graph error object (a proxy's page): only the status tells.
        Err(_) => GraphError {
            status: status.as_u16(),
            code: if status.is_server_error() { 2 } else { 0 },
            subcode: None,
            message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            details: None,
        },
    }
}

/// Meta: "build your app's error handling around error codes", not HTTP statuses.
fn classify(error: GraphError) -> MessengerError {
    match error.code {
        131_047 => MessengerError::NeedsTemplate(error),
        130_429 | PAIR_RATE_LIMIT | 4 | 80_007 => MessengerError::RateLimited(error),
        131_000 | 131_057 | 131_016 | 133_004 | 2 => MessengerError::Unavailable(error),
        _ => MessengerError::Permanent(error),
    }
}

fn transport_error(error: reqwest::Error) -> MessengerError {
    if error.is_connect() {
        MessengerError::Connect(error.to_string())
    } else {
        MessengerError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_body(code: i64) -> Vec<u8> {
        json!({ "error": { "message": "(#x) y", "type": "OAuthException", "code": code,
                           "error_data": { "messaging_product": "whatsapp", "details": "why" },
                           "fbtrace_id": "Az8or2yhqkZfEZ" } })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn errors_are_classified_by_code_not_status() {
        let classified = |status: u16, code| {
            classify(graph_error(
                StatusCode::from_u16(status).unwrap(),
                &error_body(code),
            ))
        };
        assert!(matches!(
            classified(400, 131_047),
            MessengerError::NeedsTemplate(_)
        ));
        assert!(matches!(
            classified(400, 130_429),
            MessengerError::RateLimited(_)
        ));
        assert!(matches!(
            classified(429, 131_056),
            MessengerError::RateLimited(_)
        ));
        for code in [131_000, 131_057, 131_016, 133_004, 2] {
            assert!(
                matches!(classified(500, code), MessengerError::Unavailable(_)),
                "{code}"
            );
        }
        for code in [131_026, 131_051, 132_000, 132_001, 100, 190] {
            let error = classified(400, code);
            assert!(
                matches!(error, MessengerError::Permanent(_)) && !error.is_transient(),
                "{code}"
            );
            assert_eq!(error.code(), Some(code));
        }
    }

    #[test]
    fn error_data_may_be_a_string_and_a_bodyless_5xx_is_temporary() {
        let body = json!({ "error": { "code": 100, "message": "bad", "error_data": "plain" } })
            .to_string();
        assert_eq!(
            graph_error(StatusCode::BAD_REQUEST, body.as_bytes())
                .details
                .as_deref(),
            Some("plain")
        );
        let error = classify(graph_error(StatusCode::BAD_GATEWAY, b"<html>"));
        assert!(matches!(error, MessengerError::Unavailable(_)));
    }

    #[test]
    fn username_only_customers_are_addressed_by_recipient() {
        let body = envelope(&Recipient::User("US.1".into()));
        assert_eq!(body["recipient"], "US.1");
        assert!(body.get("to").is_none());
    }
}
