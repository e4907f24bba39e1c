//! Meta's webhook for WhatsApp: the GET verification handshake, the `X-Hub-Signature-256`
//! check, the payload as Meta sends it, and the domain events it carries.
//!
//! Meta retries anything but a 200 for days, so parsing is lenient: every field Meta may omit
//! is optional, unknown fields and message types are tolerated, and one element that cannot be
//! read becomes an [`WebhookEvent::Error`] without costing the others in the same delivery.
//! Each element is also read against the checks of the store it goes to (`storable.rs`), so
//! that no value the store refuses costs the others either.

mod events;
mod handshake;
mod message;
mod payload;
mod signature;
mod status;
mod storable;
mod user_id;

pub use events::{
    ECHOES_FIELD, EchoEvent, MESSAGES_FIELD, MarketingPreference, PreferenceEvent, StatusEvent,
    USER_ID_UPDATE_FIELD, USER_PREFERENCES_FIELD, WHATSAPP_OBJECT, WebhookError, WebhookErrorCause,
    WebhookEvent, events,
};
pub use handshake::{SubscriptionError, SubscriptionQuery, verify_subscription};
pub use payload::{
    Button, Change, ChangeValue, Contact, ContactCard, ContactEmail, ContactName, ContactOrg,
    ContactPhone, ContactUrl, Conversation, Entry, ErrorData, FlowReply, Interactive, Lenient,
    Location, Media, Message, MessageContent, MessageContext, MessageEcho, MetaError, Metadata,
    Order, Phone, Pricing, ProductItem, Profile, Reaction, ReplyChoice, Status, System, Text,
    Unsupported, UserIdUpdate, UserPreference, WebhookPayload,
};
pub use signature::{SIGNATURE_HEADER, SignatureError, verify_signature};
pub use storable::{nul_free, nul_free_json};
pub use user_id::{USER_CHANGED_NUMBER, USER_CHANGED_USER_ID};

/// What the tests of more than one part build payloads and read their events with.
#[cfg(test)]
mod test_support {
    use chrono::{DateTime, Utc};
    use serde_json::{Value, json};

    use super::{WebhookEvent, events};

    /// A message from a Mexican customer, with `fields` (its `type` and object) added.
    pub fn message(wamid: &str, fields: Value) -> Value {
        let mut message = json!({
            "from": "5215512345678",
            "id": wamid,
            "timestamp": "1749416383"
        });
        for (key, value) in fields.as_object().unwrap() {
            message[key] = value.clone();
        }
        message
    }

    /// The events of `payload`, read from its bytes as the handler does.
    pub fn events_of(payload: Value) -> Vec<WebhookEvent> {
        let body = serde_json::to_vec(&payload).unwrap();
        events(&serde_json::from_slice(&body).unwrap())
    }

    /// A WhatsApp Business Account notification with one entry holding `changes`.
    pub fn envelope(changes: Vec<Value>) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": changes }]
        })
    }

    /// A `messages` change to the test business number, with `value`'s fields.
    pub fn messages_change(value: Value) -> Value {
        let mut value = value;
        value["messaging_product"] = json!("whatsapp");
        value["metadata"] = json!({
            "display_phone_number": "15550783881",
            "phone_number_id": "106540352242922"
        });
        json!({ "field": "messages", "value": value })
    }

    /// A `user_preferences` change to the test business number, with `value`'s fields.
    pub fn preferences_change(value: Value) -> Value {
        let mut change = messages_change(value);
        change["field"] = json!("user_preferences");
        change
    }

    /// The only event of `events`.
    pub fn one_event(events: Vec<WebhookEvent>) -> WebhookEvent {
        assert_eq!(events.len(), 1, "{events:?}");
        events.into_iter().next().unwrap()
    }

    /// A status of `wamid` for the Mexican customer.
    pub fn status(wamid: &str, status: &str, timestamp: &str) -> Value {
        json!({
            "id": wamid,
            "status": status,
            "timestamp": timestamp,
            "recipient_id": "5215512345678"
        })
    }

    /// The instant `seconds` after the unix epoch.
    pub fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }
}
