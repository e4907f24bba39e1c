//! `GET /whatsapp` (Meta's verification handshake) and `POST /whatsapp` (Meta's webhook).
//!
//! The webhook answers within milliseconds and never calls Retell or the Graph API: it checks
//! the signature, records what the delivery carries in one store call, queues a turn for each
//! customer with messages waiting, and answers 200. Only our number counts: a change about any
//! other business number of the app is kept as ignored, its messages never answered and its
//! statuses never applied. A customer who stops our marketing messages in WhatsApp
//! (`user_preferences`) is opted out in the same store call, and a user whose business-scoped
//! user id WhatsApp changed keeps their session (the store follows the change first, so a
//! message from the new id in the same delivery is the same customer's). Meta retries anything else for
//! days, so a validly signed payload we cannot use is kept for inspection and still answered
//! 200. So is a delivery the store refuses: each element is read against the store's checks
//! first, so that one value it would refuse is kept alone; should it still refuse the delivery
//! (a rule not foreseen here), the delivery is kept whole as unprocessed and answered 200,
//! rather than have Meta deliver every other customer's messages in it again for days. Only a
//! store or queue outage, or a store that refuses our key, answers 503, so that Meta delivers
//! again. A delivery repeated after such a failure records nothing twice and queues what still
//! waits.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{DoorError, Response, header_text, text_response};
use crate::config::WebhookConfig;
use crate::domain::{
    BusinessEcho, CustomerKey, DeliveryUpdate, InboundMessage, MarketingOptOut, MessageId,
    UnprocessedEvent, UserIdChange, WebhookContent,
};
use crate::queue::{TurnJob, TurnQueue};
use crate::store::{SessionStore, StoreError};
use crate::whatsapp::webhook::{
    ECHOES_FIELD, MESSAGES_FIELD, MarketingPreference, SIGNATURE_HEADER, SignatureError,
    SubscriptionError, SubscriptionQuery, USER_PREFERENCES_FIELD, WHATSAPP_OBJECT,
    WebhookErrorCause, WebhookEvent, WebhookPayload, events, nul_free, nul_free_json,
    verify_signature, verify_subscription,
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
    /// The store refused our key or its role (401/403): no delivery can be recorded until the
    /// deployment is fixed. Meta keeps delivering each one for days, so none is lost meanwhile.
    #[error("could not store the delivery: the store refused our key; retry")]
    StoreUnauthorized,
}

impl DoorError for WebhookError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Verification(_) => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Unavailable(_) | Self::StoreUnauthorized => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Verification(_) => "verification_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Signature(_) => "invalid_signature",
            Self::Unavailable(_) => "unavailable",
            Self::StoreUnauthorized => "store_unauthorized",
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
    phone_number_id: String,
}

impl<S: SessionStore, Q: TurnQueue> WhatsAppWebhook<S, Q> {
    pub fn new(store: S, queue: Q, config: &WebhookConfig) -> Self {
        Self {
            store,
            queue,
            app_secret: config.app_secret.clone(),
            verify_token: config.verify_token.clone(),
            phone_number_id: config.phone_number_id.clone(),
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
                // Logged at ERROR with their cause where they happen.
                WebhookError::Unavailable(_) | WebhookError::StoreUnauthorized => {}
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
        let delivery = Delivery::read(raw_body, &self.phone_number_id).storable();
        if delivery.is_empty() {
            return Ok(text_response(StatusCode::OK, RECEIVED));
        }
        let recorded = match self
            .store
            .record_webhook_content(WebhookContent {
                messages: &delivery.messages,
                statuses: &delivery.statuses,
                opt_outs: &delivery.opt_outs,
                echoes: &delivery.echoes,
                user_id_changes: &delivery.user_id_changes,
                unprocessed: &delivery.unprocessed,
            })
            .await
        {
            Ok(recorded) => recorded,
            Err(error) if is_refusal(&error) => {
                return self.keep_refused(raw_body, &delivery, error).await;
            }
            Err(error) => return Err(store_failure(error)),
        };
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
            opted_out = recorded.opt_outs.iter().filter(|o| o.changed).count(),
            echoes = delivery.echoes.len(),
            new_echoes = recorded.echoes.iter().filter(|e| e.is_new).count(),
            user_id_changes = delivery.user_id_changes.len(),
            sessions_changed = recorded
                .user_id_changes
                .iter()
                .map(|c| c.customer_keys.len())
                .sum::<usize>(),
            unprocessed = delivery.unprocessed.len(),
            "webhook recorded"
        );
        Ok(text_response(StatusCode::OK, RECEIVED))
    }

    /// A delivery the store refused though every element was read against its checks: a rule
    /// not foreseen here, which would refuse it again each time Meta delivers it, for days, and
    /// every other customer's messages in it with it. It is kept whole, as one unprocessed event
    /// with the store's reason, and answered 200: its messages are not answered, and the ERROR
    /// line says so. Should the store refuse even that, the delivery is answered 200 all the
    /// same, and only the ERROR line is left of it. An outage on the way answers 503 as ever.
    async fn keep_refused(
        &self,
        raw_body: &[u8],
        delivery: &Delivery,
        refusal: StoreError,
    ) -> Result<Response, WebhookError> {
        let why = match &refusal {
            StoreError::Rejected(answer) | StoreError::Conflict(answer) => answer.to_string(),
            other => other.to_string(),
        };
        let mut whole = UnprocessedEvent {
            reason: format!("the store refused the delivery, kept whole: {why}"),
            payload: whole_payload(raw_body),
        };
        nul_free(&mut whole.reason);
        nul_free_json(&mut whole.payload);
        let (messages, statuses, opt_outs) = (
            delivery.messages.len(),
            delivery.statuses.len(),
            delivery.opt_outs.len(),
        );
        match self
            .store
            .record_webhook(&[], &[], &[], std::slice::from_ref(&whole))
            .await
        {
            Ok(_) => tracing::error!(
                error = %refusal, messages, statuses, opt_outs,
                "the store refused the delivery: kept whole in unprocessed_webhook_events, \
                 its messages not answered"
            ),
            Err(again) if is_refusal(&again) => {
                let wamids: Vec<&str> =
                    delivery.messages.iter().map(|m| m.wamid.as_str()).collect();
                tracing::error!(
                    error = %refusal, again = %again, messages, statuses, opt_outs, ?wamids,
                    bytes = raw_body.len(),
                    "the store refused the delivery, and again kept whole as unprocessed: it is \
                     lost, answered 200 so that Meta does not deliver it again for days"
                );
            }
            Err(error) => return Err(store_failure(error)),
        }
        Ok(text_response(StatusCode::OK, RECEIVED))
    }
}

/// Whether the store refused what we sent, so that sending it again would be refused again:
/// a check (4xx), or a key that clashes (409: `record_webhook` writes with `on conflict`
/// everywhere, so a clash is a rule not foreseen, as deterministic as a check).
fn is_refusal(error: &StoreError) -> bool {
    matches!(error, StoreError::Rejected(_) | StoreError::Conflict(_))
}

/// What a store call that failed for another reason answers Meta: 503, so that it delivers
/// again, with the cause at ERROR. A refused key is every delivery's failure, not this one's:
/// Meta keeps delivering for days, time to fix the deployment.
fn store_failure(error: StoreError) -> WebhookError {
    match error {
        StoreError::Unauthorized(_) => {
            tracing::error!(
                %error,
                "the store refused our key: no delivery is recorded until the deployment is \
                 fixed; Meta will deliver this one again"
            );
            WebhookError::StoreUnauthorized
        }
        error => {
            tracing::error!(%error, "could not record the webhook: Meta will deliver it again");
            WebhookError::Unavailable("store the delivery")
        }
    }
}

/// The whole body as JSON, or as text when it is not JSON.
fn whole_payload(raw_body: &[u8]) -> Value {
    serde_json::from_slice(raw_body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw_body).into_owned()))
}

/// What one delivery carries, sorted for the store.
#[derive(Debug, Default)]
pub struct Delivery {
    /// The customers' messages, in the order of the payload.
    pub messages: Vec<InboundMessage>,
    /// Status updates of the messages we sent.
    pub statuses: Vec<DeliveryUpdate>,
    /// Customers who told WhatsApp to stop our marketing messages: opted out.
    pub opt_outs: Vec<MarketingOptOut>,
    /// What staff sent from the WhatsApp Business app on our number: recorded as staff
    /// messages, which pauses the agent.
    pub echoes: Vec<BusinessEcho>,
    /// Users whose business-scoped user id WhatsApp changed: their session follows.
    pub user_id_changes: Vec<UserIdChange>,
    /// What could not be used (errors, unknown events, an unreadable body, changes about another
    /// business number), kept for inspection.
    pub unprocessed: Vec<UnprocessedEvent>,
}

impl Delivery {
    /// The delivery with every U+0000 (`\u0000` in Meta's JSON, or a NUL byte in a body that
    /// is not JSON) replaced by U+FFFD: PostgreSQL's `text` and `jsonb` cannot hold it, and one
    /// in a message would have the store refuse the whole delivery.
    pub fn storable(mut self) -> Delivery {
        let text = |text: &mut Option<String>| text.iter_mut().for_each(nul_free);
        let json = |json: &mut Option<Value>| json.iter_mut().for_each(nul_free_json);
        for message in &mut self.messages {
            text(&mut message.body);
            text(&mut message.profile_name);
            text(&mut message.wa_id);
            text(&mut message.whatsapp_user_id);
            json(&mut message.payload);
        }
        for status in &mut self.statuses {
            json(&mut status.errors);
        }
        for opt_out in &mut self.opt_outs {
            text(&mut opt_out.wa_id);
            text(&mut opt_out.whatsapp_user_id);
        }
        for echo in &mut self.echoes {
            text(&mut echo.body);
            json(&mut echo.payload);
        }
        for change in &mut self.user_id_changes {
            nul_free(&mut change.previous_user_id);
            nul_free(&mut change.user_id);
            text(&mut change.wa_id);
        }
        for event in &mut self.unprocessed {
            nul_free(&mut event.reason);
            nul_free_json(&mut event.payload);
        }
        self
    }

    /// Whether the delivery carries nothing at all.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.statuses.is_empty()
            && self.opt_outs.is_empty()
            && self.echoes.is_empty()
            && self.user_id_changes.is_empty()
            && self.unprocessed.is_empty()
    }

    /// Sorts a webhook body (already authenticated) into messages, statuses, opt-outs, echoes,
    /// user id changes and the rest. Only changes about `our_phone_number_id` count: see [`set_apart_other_numbers`].
    /// Each element is read against the store's checks; see also [`Delivery::storable`].
    pub fn read(raw_body: &[u8], our_phone_number_id: &str) -> Delivery {
        let mut payload: WebhookPayload = match serde_json::from_slice(raw_body) {
            Ok(payload) => payload,
            Err(error) => {
                let reason = format!("unreadable payload: {error}");
                return Delivery {
                    unprocessed: vec![UnprocessedEvent {
                        reason,
                        payload: whole_payload(raw_body),
                    }],
                    ..Delivery::default()
                };
            }
        };
        let mut delivery = Delivery {
            unprocessed: set_apart_other_numbers(&mut payload, our_phone_number_id),
            ..Delivery::default()
        };
        for event in events(&payload) {
            match event {
                WebhookEvent::Message(message) => delivery.messages.push(message),
                WebhookEvent::Status(status) => delivery.statuses.push(status.update),
                WebhookEvent::Echo(echo) => delivery.echoes.push(BusinessEcho {
                    wamid: echo.wamid,
                    customer_key: echo.customer_key,
                    message_type: echo.message_type,
                    body: echo.body,
                    payload: Some(echo.raw),
                    sent_at: echo.sent_at,
                    wa_id: echo.wa_id,
                }),
                WebhookEvent::UserIdChanged {
                    previous_user_id,
                    user_id,
                    wa_id,
                    at,
                } => delivery.user_id_changes.push(UserIdChange {
                    previous_user_id,
                    user_id,
                    wa_id,
                    at,
                }),
                WebhookEvent::MarketingPreference(preference) => match preference.preference {
                    MarketingPreference::Stop => delivery.opt_outs.push(MarketingOptOut {
                        customer_key: preference.customer_key,
                        wa_id: preference.wa_id.map(|wa_id| wa_id.as_str().to_owned()),
                        whatsapp_user_id: preference.whatsapp_user_id,
                        at: preference.at,
                    }),
                    // Meta says only that marketing messages are welcome again; opting back in
                    // to the agent stays with the customer's own words (OPT_IN_WORDS).
                    MarketingPreference::Resume => delivery.unprocessed.push(UnprocessedEvent {
                        reason: "the customer resumed marketing messages in WhatsApp: an opt-out \
                                 stays until they write an opt-in word"
                            .to_owned(),
                        payload: preference.raw,
                    }),
                },
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

/// Takes out of `payload` every change about a business number other than ours, and returns
/// each as an event kept for inspection, its reason naming the number. A change names its
/// number in `value.metadata.phone_number_id`; a `messages` or `user_preferences` change that
/// names none is not ours either. Changes of other fields that name no number (the account's
/// own, like `account_update`) stay, to be ignored as before; so does a notification about
/// another object than WhatsApp. An entry left without changes goes too.
pub fn set_apart_other_numbers(
    payload: &mut WebhookPayload,
    our_phone_number_id: &str,
) -> Vec<UnprocessedEvent> {
    let mut set_apart = Vec::new();
    if payload
        .object
        .as_deref()
        .is_some_and(|object| object != WHATSAPP_OBJECT)
    {
        return set_apart;
    }
    payload.entry.retain_mut(|entry| {
        let Ok(parsed) = &mut entry.parsed else {
            return true;
        };
        if parsed.changes.is_empty() {
            return true;
        }
        parsed.changes.retain(|change| {
            let number = change.raw.pointer("/value/metadata/phone_number_id");
            let field = change.raw.get("field").and_then(Value::as_str);
            let reason = match number {
                Some(Value::String(number)) if number == our_phone_number_id => return true,
                Some(number) => format!(
                    "the change is about phone number id {number}, not ours \
                     ({our_phone_number_id:?}): not answered, statuses not applied"
                ),
                None if matches!(
                    field,
                    Some(MESSAGES_FIELD | USER_PREFERENCES_FIELD | ECHOES_FIELD)
                ) =>
                {
                    format!(
                        "a {:?} change names no phone number id, so it is not about ours \
                     ({our_phone_number_id:?}): not answered, statuses not applied",
                        field.unwrap_or_default()
                    )
                }
                None => return true,
            };
            set_apart.push(UnprocessedEvent {
                reason,
                payload: change.raw.clone(),
            });
            false
        });
        !parsed.changes.is_empty()
    });
    set_apart
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OURS: &str = "106540352242922";

    /// A change of `field` about business number `number` (none: no metadata), with `value`.
    fn change(field: &str, number: Option<&str>, value: Value) -> Value {
        let mut value = value;
        value["messaging_product"] = json!("whatsapp");
        if let Some(number) = number {
            value["metadata"] =
                json!({ "display_phone_number": "15550783881", "phone_number_id": number });
        }
        json!({ "field": field, "value": value })
    }

    fn text(wamid: &str, from: &str) -> Value {
        json!({ "from": from, "id": wamid, "timestamp": "1749416383", "type": "text",
                "text": { "body": "hola" } })
    }

    fn status(wamid: &str) -> Value {
        json!({ "id": wamid, "status": "read", "timestamp": "1749416390",
                "recipient_id": "5215512345678" })
    }

    fn preference(wa_id: &str, value: &str) -> Value {
        json!({ "wa_id": wa_id, "category": "marketing_messages", "value": value,
                "detail": "User requested to stop marketing messages", "timestamp": 1731705721 })
    }

    fn read(payload: Value) -> Delivery {
        Delivery::read(&serde_json::to_vec(&payload).unwrap(), OURS)
    }

    #[test]
    fn only_our_number_is_answered_and_other_numbers_are_kept_naming_theirs() {
        let other = "999000111222333";
        let payload = json!({ "object": "whatsapp_business_account", "entry": [
            { "id": "waba-1", "changes": [
                change("messages", Some(OURS), json!({
                    "messages": [text("wamid.OURS", "5215512345678")],
                    "statuses": [status("wamid.OUT1")]
                })),
                change("messages", Some(other), json!({
                    "messages": [text("wamid.THEIRS", "5491112345678")],
                    "statuses": [status("wamid.OUT2")]
                })),
                change("user_preferences", Some(other), json!({
                    "user_preferences": [preference("5491112345678", "stop")]
                }))
            ]},
            // An entry all about the other number goes whole: no "entry without changes" left.
            { "id": "waba-2", "changes": [
                change("messages", Some(other), json!({ "messages": [text("wamid.T2", "5215512345678")] }))
            ]},
            { "id": "waba-3", "changes": [
                change("messages", None, json!({ "messages": [text("wamid.NONE", "5215512345678")] })),
                change("messages", Some(""), json!({ "statuses": [status("wamid.OUT3")] })),
                json!({ "field": "messages", "value": { "metadata": { "phone_number_id": 106540352242922_u64 },
                        "statuses": [status("wamid.OUT4")] } }),
                // The account's own news names no number: ignored as before.
                json!({ "field": "account_update", "value": { "event": "VERIFIED_ACCOUNT" } })
            ]}
        ]});
        let delivery = read(payload);
        let wamids: Vec<&str> = delivery.messages.iter().map(|m| m.wamid.as_str()).collect();
        assert_eq!(wamids, ["wamid.OURS"]);
        let statuses: Vec<&str> = delivery.statuses.iter().map(|s| s.wamid.as_str()).collect();
        assert_eq!(
            statuses,
            ["wamid.OUT1"],
            "no status of another number is applied"
        );
        assert!(delivery.opt_outs.is_empty(), "{:?}", delivery.opt_outs);
        let reasons: Vec<&str> = delivery
            .unprocessed
            .iter()
            .map(|u| u.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 7, "{reasons:#?}");
        for reason in &reasons[..3] {
            assert!(reason.contains("\"999000111222333\""), "{reason}");
            assert!(reason.contains(OURS), "{reason}");
        }
        assert!(
            reasons[3].contains("names no phone number id"),
            "{}",
            reasons[3]
        );
        assert!(
            reasons[4].contains("phone number id \"\""),
            "{}",
            reasons[4]
        );
        assert!(
            reasons[5].contains("phone number id 106540352242922,"),
            "a number where Meta sends a string is not ours: {}",
            reasons[5]
        );
        assert!(reasons[6].contains("account_update"), "{}", reasons[6]);
        // Each kept change is whole, with the messages it carried.
        assert_eq!(
            delivery.unprocessed[0].payload["value"]["messages"][0]["id"],
            "wamid.THEIRS"
        );
        assert_eq!(delivery.unprocessed[1].payload["field"], "user_preferences");
    }

    #[test]
    fn a_stop_of_our_marketing_messages_is_an_opt_out_and_a_resume_clears_nothing() {
        let payload = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "waba", "changes": [
            change("user_preferences", Some(OURS), json!({
                "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5215512345678" }],
                "user_preferences": [preference("5215512345678", "stop"), preference("5491112345678", "resume")]
            }))
        ]}]});
        let delivery = read(payload);
        assert_eq!(
            delivery.opt_outs,
            [MarketingOptOut {
                customer_key: CustomerKey::from_whatsapp_id("5215512345678").unwrap(),
                wa_id: Some("5215512345678".to_owned()),
                whatsapp_user_id: None,
                at: chrono::DateTime::from_timestamp(1_731_705_721, 0),
            }]
        );
        assert!(delivery.messages.is_empty() && delivery.statuses.is_empty());
        let [resumed] = delivery.unprocessed.as_slice() else {
            panic!("the resume is kept: {:?}", delivery.unprocessed);
        };
        assert!(resumed.reason.contains("resumed"), "{}", resumed.reason);
        assert_eq!(resumed.payload["wa_id"], "5491112345678");
        assert!(!delivery.is_empty());
    }

    #[test]
    fn a_changed_user_id_goes_to_the_store_beside_the_messages_not_as_unprocessed() {
        let system = json!({ "from_user_id": "US.1", "id": "wamid.SYS", "timestamp": "1749416383",
            "type": "system", "system": { "type": "user_changed_user_id",
                "previous_user_id": "US.1", "user_id": "US.2" } });
        let payload = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "waba", "changes": [
            change("messages", Some(OURS), json!({
                "messages": [system, { "from_user_id": "US.2", "id": "wamid.NEW", "timestamp": "1749416384",
                                       "type": "text", "text": { "body": "hola" } }]
            })),
            change("user_id_update", Some(OURS), json!({
                "user_id_update": [{ "previous_user_id": "US.2", "user_id": "US.3", "wa_id": "5215512345678" }]
            }))
        ]}]});
        let delivery = read(payload);
        assert_eq!(
            delivery.user_id_changes,
            [
                UserIdChange {
                    previous_user_id: "US.1".to_owned(),
                    user_id: "US.2".to_owned(),
                    wa_id: None,
                    at: chrono::DateTime::from_timestamp(1_749_416_383, 0),
                },
                UserIdChange {
                    previous_user_id: "US.2".to_owned(),
                    user_id: "US.3".to_owned(),
                    wa_id: Some("5215512345678".to_owned()),
                    at: None,
                },
            ]
        );
        assert_eq!(delivery.messages.len(), 1);
        assert!(
            delivery.unprocessed.is_empty(),
            "{:?}",
            delivery.unprocessed
        );
        assert!(!delivery.is_empty());
    }

    #[test]
    fn a_nul_anywhere_becomes_the_replacement_character_before_the_store() {
        let mut message = text("wamid.NUL", "5215512345678");
        message["text"]["body"] = json!("ho\u{0}la");
        let mut failed = status("wamid.OUT");
        failed["status"] = json!("failed");
        failed["errors"] = json!([{ "code": 131000, "title": "x\u{0}" }]);
        let payload = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "waba", "changes": [
            change("messages", Some(OURS), json!({
                "contacts": [{ "profile": { "name": "A\u{0}na" }, "wa_id": "5215512345678" }],
                "messages": [message, text("wamid.\u{0}", "5215512345678")],
                "statuses": [failed]
            }))
        ]}]});
        let delivery = read(payload).storable();
        let [message] = delivery.messages.as_slice() else {
            panic!("{:?}", delivery.messages);
        };
        assert_eq!(message.body.as_deref(), Some("ho\u{FFFD}la"));
        assert_eq!(message.profile_name.as_deref(), Some("A\u{FFFD}na"));
        assert_eq!(
            message.payload.as_ref().unwrap()["text"]["body"],
            "ho\u{FFFD}la"
        );
        assert_eq!(
            delivery.statuses[0].errors.as_ref().unwrap()[0]["title"],
            "x\u{FFFD}"
        );
        // A wamid with a NUL is no wamid: kept, and storable too.
        let [bad_wamid] = delivery.unprocessed.as_slice() else {
            panic!("{:?}", delivery.unprocessed);
        };
        assert_eq!(bad_wamid.payload["id"], "wamid.\u{FFFD}");
        assert!(!bad_wamid.reason.contains('\0'), "{}", bad_wamid.reason);

        // A body that is not JSON, with a NUL byte.
        let delivery = Delivery::read(b"{not\0json", OURS).storable();
        assert_eq!(delivery.unprocessed[0].payload, json!("{not\u{FFFD}json"));
        assert!(
            !serde_json::to_string(&delivery.unprocessed)
                .unwrap()
                .contains("\\u0000")
        );
    }

    #[test]
    fn a_refusal_is_kept_and_an_outage_or_a_refused_key_answers_503() {
        let error = |status: u16, code: &str| {
            let body = json!({ "code": code, "message": "m" }).to_string();
            StoreError::from_response(crate::store::PostgrestError::from_body(
                status,
                body.as_bytes(),
            ))
        };
        assert!(is_refusal(&error(400, "23514")), "a check");
        assert!(is_refusal(&error(400, "22P05")), "a NUL in jsonb");
        assert!(is_refusal(&error(409, "23505")), "a key not foreseen");
        for outage in [error(503, "PGRST"), error(500, "40001")] {
            assert!(!is_refusal(&outage));
            let answer = store_failure(outage).to_response();
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                answer.body().contains("\"unavailable\""),
                "{}",
                answer.body()
            );
        }
        for refused_key in [error(401, "PGRST301"), error(403, "42501")] {
            assert!(!is_refusal(&refused_key));
            let answer = store_failure(refused_key).to_response();
            assert_eq!(
                answer.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "Meta delivers again once the key is fixed"
            );
            assert!(
                answer.body().contains("store_unauthorized"),
                "{}",
                answer.body()
            );
        }
        let unexpected = StoreError::Unexpected(anyhow::anyhow!("a schema mismatch"));
        assert!(!is_refusal(&unexpected));
        assert_eq!(
            store_failure(unexpected).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn another_object_is_ignored_whole_and_an_unreadable_body_is_kept() {
        let instagram = json!({ "object": "instagram", "entry": [{ "id": "1", "changes": [
            change("messages", Some("1"), json!({ "messages": [text("wamid.I", "5215512345678")] }))
        ]}]});
        let delivery = read(instagram);
        assert!(delivery.messages.is_empty());
        let [ignored] = delivery.unprocessed.as_slice() else {
            panic!("{:?}", delivery.unprocessed);
        };
        assert!(ignored.reason.contains("instagram"), "{}", ignored.reason);

        let delivery = Delivery::read(b"{not json", OURS);
        assert_eq!(delivery.unprocessed.len(), 1);
        assert!(
            delivery.unprocessed[0]
                .reason
                .starts_with("unreadable payload")
        );
    }
}
