//! `GET /whatsapp` (Meta's verification handshake) and `POST /whatsapp` (Meta's webhook).
//!
//! The webhook answers within milliseconds and never calls Retell or the Graph API: it checks
//! the signature, records what the delivery carries in one store call, queues a turn for each
//! customer with messages waiting, and answers 200. Meta retries anything else for days, so a
//! validly signed payload we cannot use is kept for inspection and still answered 200; only a
//! store or queue outage answers 503, so that Meta delivers again. A delivery repeated after
//! such a failure records nothing twice and queues what still waits.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{DoorError, Response, header_text, text_response};
use crate::config::WebhookConfig;
use crate::domain::{CustomerKey, DeliveryUpdate, InboundMessage, MessageId, UnprocessedEvent};
use crate::queue::{TurnJob, TurnQueue};
use crate::store::SessionStore;
use crate::whatsapp::webhook::{
    SIGNATURE_HEADER, SignatureError, SubscriptionError, SubscriptionQuery, WebhookErrorCause,
    WebhookEvent, WebhookPayload, events, verify_signature, verify_subscription,
};

/// Meta sends at most 3 MB; a little room above that.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What Meta is answered when a delivery is taken.
const RECEIVED: &str = "EVENT_RECEIVED";

/// Why the webhook refused a request. Meta retries anything but a 200 for days.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0} is not GET or POST")]
    MethodNotAllowed(Method),
    #[error(transparent)]
    Verification(#[from] SubscriptionError),
    #[error("Meta's webhooks are at most 3 MB")]
    PayloadTooLarge,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The store or the queue is down: Meta delivers again, and nothing is recorded twice.
    #[error("could not {0}; retry")]
    Unavailable(&'static str),
}

impl DoorError for WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Verification(_) => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Verification(_) => "verification_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Signature(_) => "invalid_signature",
            Self::Unavailable(_) => "unavailable",
        }
    }

    fn add_headers(&self, headers: &mut http::HeaderMap) {
        if let Self::MethodNotAllowed(_) = self {
            headers.insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, POST"),
            );
        }
    }
}

pub struct WhatsAppWebhook<S, Q> {
    store: S,
    queue: Q,
    app_secret: SecretString,
    verify_token: SecretString,
}

impl<S: SessionStore, Q: TurnQueue> WhatsAppWebhook<S, Q> {
    pub fn new(store: S, queue: Q, config: &WebhookConfig) -> Self {
        Self {
            store,
            queue,
            app_secret: config.app_secret.clone(),
            verify_token: config.verify_token.clone(),
        }
    }

    /// `GET` is Meta's verification handshake, `POST` a delivery; anything else is refused.
    pub async fn handle<B: AsRef<[u8]>>(&self, request: &http::Request<B>) -> Response {
        let answer = match *request.method() {
            Method::GET => self.verify(request.uri().query().unwrap_or("")),
            Method::POST => {
                let signature = header_text(request.headers(), SIGNATURE_HEADER);
                self.receive(signature, request.body().as_ref()).await
            }
            ref other => Err(WebhookError::MethodNotAllowed(other.clone())),
        };
        answer.unwrap_or_else(|error| {
            match &error {
                WebhookError::Unavailable(_) => {}
                refused => tracing::warn!(error = %refused, "webhook refused"),
            }
            error.to_response()
        })
    }

    /// Meta's handshake: `hub.mode=subscribe` and our verify token → the challenge, as text.
    fn verify(&self, raw_query: &str) -> Result<Response, WebhookError> {
        let parameters: BTreeMap<String, String> =
            url::form_urlencoded::parse(raw_query.as_bytes())
                .into_owned()
                .collect();
        let query = SubscriptionQuery {
            mode: parameters.get("hub.mode").map(String::as_str),
            verify_token: parameters.get("hub.verify_token").map(String::as_str),
            challenge: parameters.get("hub.challenge").map(String::as_str),
        };
        let challenge = verify_subscription(query, self.verify_token.expose_secret())?;
        Ok(text_response(StatusCode::OK, challenge))
    }

    /// Meta's POST: the signature over the raw body, then one store call, then a turn queued
    /// for each customer with messages waiting.
    #[tracing::instrument(name = "whatsapp_webhook", skip_all, fields(bytes = raw_body.len()))]
    async fn receive(
        &self,
        signature: Option<&str>,
        raw_body: &[u8],
    ) -> Result<Response, WebhookError> {
        if raw_body.len() > MAX_BODY_BYTES {
            return Err(WebhookError::PayloadTooLarge);
        }
        verify_signature(
            self.app_secret.expose_secret().as_bytes(),
            raw_body,
            signature,
        )?;
        let delivery = Delivery::read(raw_body);
        if delivery.is_empty() {
            return Ok(text_response(StatusCode::OK, RECEIVED));
        }
        let recorded = self
            .store
            .record_webhook(
                &delivery.messages,
                &delivery.statuses,
                &delivery.unprocessed,
            )
            .await
            .map_err(|error| {
                tracing::error!(%error, "could not record the webhook: Meta will deliver it again");
                WebhookError::Unavailable("store the delivery")
            })?;
        // One turn per customer with messages waiting; the first waiting wamid dedupes the job.
        let mut waiting: BTreeMap<&CustomerKey, &MessageId> = BTreeMap::new();
        for message in recorded.messages.iter().filter(|m| m.waiting) {
            waiting
                .entry(&message.customer_key)
                .or_insert(&message.wamid);
        }
        for (customer, wamid) in waiting {
            let job = TurnJob::TakeTurn {
                customer_key: customer.clone(),
            };
            self.queue
                .enqueue(&job, wamid.as_str())
                .await
                .map_err(|error| {
                    tracing::error!(%error, customer = %customer.masked(), "could not queue a turn: Meta will deliver again");
                    WebhookError::Unavailable("queue the turn")
                })?;
        }
        tracing::info!(
            messages = delivery.messages.len(),
            new = recorded.messages.iter().filter(|m| m.is_new).count(),
            statuses = delivery.statuses.len(),
            unprocessed = delivery.unprocessed.len(),
            "webhook recorded"
        );
        Ok(text_response(StatusCode::OK, RECEIVED))
    }
}

/// What one delivery carries, sorted for the store.
#[derive(Debug, Default)]
pub struct Delivery {
    /// The customers' messages, in the order of the payload.
    pub messages: Vec<InboundMessage>,
    /// Status updates of the messages we sent.
    pub statuses: Vec<DeliveryUpdate>,
    /// What could not be used (errors, unknown events, an unreadable body), kept for inspection.
    pub unprocessed: Vec<UnprocessedEvent>,
}

impl Delivery {
    /// Whether the delivery carries nothing at all.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.statuses.is_empty() && self.unprocessed.is_empty()
    }

    /// Sorts a webhook body (already authenticated) into messages, statuses and the rest.
    pub fn read(raw_body: &[u8]) -> Delivery {
        let payload: WebhookPayload = match serde_json::from_slice(raw_body) {
            Ok(payload) => payload,
            Err(error) => {
                let payload = serde_json::from_slice(raw_body).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(raw_body).into_owned())
                });
                let reason = format!("unreadable payload: {error}");
                return Delivery {
                    unprocessed: vec![UnprocessedEvent { reason, payload }],
                    ..Delivery::default()
                };
            }
        };
        let mut delivery = Delivery::default();
        for event in events(&payload) {
            match event {
                WebhookEvent::Message(message) => delivery.messages.push(message),
                WebhookEvent::Status(status) => delivery.statuses.push(status.update),
                WebhookEvent::Error(error) => {
                    let reason = match &error.cause {
                        WebhookErrorCause::Reported(meta) => format!(
                            "Meta reported error {}: {}",
                            meta.code.map_or_else(|| "?".into(), |c| c.to_string()),
                            meta.message
                                .as_deref()
                                .or(meta.title.as_deref())
                                .unwrap_or("")
                        ),
                        WebhookErrorCause::Unreadable(why) => why.clone(),
                    };
                    delivery.unprocessed.push(UnprocessedEvent {
                        reason,
                        payload: error.raw,
                    });
                }
                WebhookEvent::Ignored { reason, raw } => {
                    delivery.unprocessed.push(UnprocessedEvent {
                        reason,
                        payload: raw,
                    });
                }
            }
        }
        delivery
    }
}
