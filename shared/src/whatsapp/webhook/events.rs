//! The domain events a payload carries: messages to answer, delivery statuses, marketing
//! preferences, user id changes, errors, and what the bridge ignores, each kept with its element as Meta sent it.
//!
//! This file holds the event types and `events()`, the walk over entries and changes that turns
//! every element into one event, and reads the `user_preferences` changes; `message.rs` and
//! `status.rs` read the messages and statuses, `user_id.rs` the user id changes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::message::message_event;
use super::payload::{
    Change, Lenient, MessageEcho, MetaError, Phone, UserPreference, WebhookPayload, mask,
};
use super::status::status_event;
use super::storable;
use super::user_id;
use crate::domain::{CustomerKey, DeliveryUpdate, InboundMessage, MessageId};

/// The `object` of every WhatsApp Business Account notification.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// The change `field` that carries messages, statuses and errors.
pub const MESSAGES_FIELD: &str = "messages";

/// The change `field` that says a user stopped or resumed the business's marketing messages.
pub const USER_PREFERENCES_FIELD: &str = "user_preferences";

/// The change `field` of the messages staff sent from the WhatsApp Business app on our number.
pub const ECHOES_FIELD: &str = "smb_message_echoes";

/// The change `field` older documentation gave a user's changed business-scoped user id (now a
/// system message on `messages`; see `user_id.rs`).
pub const USER_ID_UPDATE_FIELD: &str = "user_id_update";

/// Echo types that change an earlier message instead of saying something new.
const ECHOES_NOT_SAID: [&str; 2] = ["revoke", "edit"];

/// The only `category` of a user preference Meta documents.
const MARKETING_MESSAGES: &str = "marketing_messages";

/// What one element of a webhook means to the bridge. Every message, status, user preference
/// and error of a payload yields exactly one event, so nothing is dropped unseen.
#[derive(Clone, PartialEq)]
pub enum WebhookEvent {
    /// A customer's message, to record and answer.
    Message(InboundMessage),
    /// A delivery status of a message the bridge sent.
    Status(StatusEvent),
    /// A user told WhatsApp to stop or to resume the business's marketing messages.
    MarketingPreference(PreferenceEvent),
    /// Staff wrote to a customer from the WhatsApp Business app on our number.
    Echo(EchoEvent),
    /// WhatsApp changed a user's business-scoped user id: the session keyed by or carrying
    /// `previous_user_id` carries `user_id` from now on.
    UserIdChanged {
        previous_user_id: String,
        user_id: String,
        /// The user's new number, when the change came with one (only a WhatsApp id the store
        /// keeps).
        wa_id: Option<String>,
        /// When WhatsApp said it happened.
        at: Option<DateTime<Utc>>,
    },
    /// An error Meta reported, or an element that could not be read.
    Error(WebhookError),
    /// Something valid the bridge does not act on, kept for inspection.
    Ignored { reason: String, raw: Value },
}

/// A delivery update and who the message went to.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    pub update: DeliveryUpdate,
    pub recipient_id: Option<Phone>,
    pub recipient_user_id: Option<String>,
    /// The business number that sent the message.
    pub phone_number_id: Option<String>,
}

/// A user's marketing message preference (`user_preferences`), and who the user is. `Debug`
/// masks the user and leaves the raw element out.
#[derive(Clone, PartialEq)]
pub struct PreferenceEvent {
    /// The user, keyed like the sender of a message.
    pub customer_key: CustomerKey,
    pub wa_id: Option<Phone>,
    pub whatsapp_user_id: Option<String>,
    pub preference: MarketingPreference,
    /// When WhatsApp sent it, when it said.
    pub at: Option<DateTime<Utc>>,
    /// The business number whose marketing messages the user stopped or resumed.
    pub phone_number_id: Option<String>,
    /// The element as Meta sent it.
    pub raw: Value,
}

/// A message staff sent from the WhatsApp Business app (`smb_message_echoes`): recorded as the
/// staff's, and it pauses the agent. `Debug` masks the customer and leaves the text out.
#[derive(Clone, PartialEq)]
pub struct EchoEvent {
    pub wamid: MessageId,
    /// The customer written to (the echo's `to`).
    pub customer_key: CustomerKey,
    /// The customer's WhatsApp id, when the store keeps it.
    pub wa_id: Option<String>,
    pub message_type: String,
    /// What staff wrote: a text's body, a media caption.
    pub body: Option<String>,
    pub sent_at: DateTime<Utc>,
    /// The business number the echo is about.
    pub phone_number_id: Option<String>,
    /// The element as Meta sent it.
    pub raw: Value,
}

impl fmt::Debug for EchoEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoEvent")
            .field("wamid", &self.wamid.as_str())
            .field("customer_key", &self.customer_key.masked())
            .field("message_type", &self.message_type)
            .field("sent_at", &self.sent_at)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// What the user chose for the business's marketing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketingPreference {
    /// `stop`: no more marketing messages from the business.
    Stop,
    /// `resume`: marketing messages are welcome again.
    Resume,
}

#[derive(Clone, PartialEq)]
pub struct WebhookError {
    /// The business number the change was about, when it said.
    pub phone_number_id: Option<String>,
    pub cause: WebhookErrorCause,
    /// The element as Meta sent it.
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookErrorCause {
    /// An error Meta reported that is not about one message (`value.errors[]`).
    Reported(MetaError),
    /// An element this code could not read, and why.
    Unreadable(String),
}

impl fmt::Debug for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Message(message) => f
                .debug_struct("Message")
                .field("wamid", &message.wamid.as_str())
                .field("customer_key", &message.customer_key.masked())
                .field("message_type", &message.message_type)
                .field("body", &message.body)
                .field("sent_at", &message.sent_at)
                .field("wa_id", &message.wa_id.as_deref().map(mask))
                .field("whatsapp_user_id", &message.whatsapp_user_id)
                .field("profile_name", &message.profile_name)
                .finish_non_exhaustive(),
            Self::Status(status) => f.debug_tuple("Status").field(status).finish(),
            Self::MarketingPreference(preference) => f
                .debug_tuple("MarketingPreference")
                .field(preference)
                .finish(),
            Self::Echo(echo) => f.debug_tuple("Echo").field(echo).finish(),
            Self::UserIdChanged {
                previous_user_id,
                user_id,
                wa_id,
                at,
            } => f
                .debug_struct("UserIdChanged")
                .field("previous_user_id", previous_user_id)
                .field("user_id", user_id)
                .field("wa_id", &wa_id.as_deref().map(mask))
                .field("at", at)
                .finish(),
            Self::Error(error) => f.debug_tuple("Error").field(error).finish(),
            Self::Ignored { reason, .. } => f
                .debug_struct("Ignored")
                .field("reason", reason)
                .finish_non_exhaustive(),
        }
    }
}

impl fmt::Debug for PreferenceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreferenceEvent")
            .field("customer_key", &self.customer_key.masked())
            .field("wa_id", &self.wa_id)
            .field("whatsapp_user_id", &self.whatsapp_user_id)
            .field("preference", &self.preference)
            .field("at", &self.at)
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookError")
            .field("phone_number_id", &self.phone_number_id)
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl WebhookEvent {
    /// An element of the payload that could not be read, kept with why and what it was.
    pub(super) fn unreadable(phone_number_id: Option<&str>, reason: String, raw: &Value) -> Self {
        Self::Error(WebhookError {
            phone_number_id: phone_number_id.map(str::to_owned),
            cause: WebhookErrorCause::Unreadable(reason),
            raw: raw.clone(),
        })
    }
}

/// Every event of a payload, in the order Meta listed them: entries, their changes, and in
/// each change its messages, then statuses, then errors.
pub fn events(payload: &WebhookPayload) -> Vec<WebhookEvent> {
    let mut events = Vec::new();
    if let Some(object) = payload.object.as_deref().filter(|o| *o != WHATSAPP_OBJECT) {
        for entry in &payload.entry {
            events.push(WebhookEvent::Ignored {
                reason: format!("the notification is about {object:?}, not {WHATSAPP_OBJECT:?}"),
                raw: entry.raw.clone(),
            });
        }
        return events;
    }
    for entry in &payload.entry {
        match &entry.parsed {
            Ok(parsed) if parsed.changes.is_empty() => events.push(WebhookEvent::Ignored {
                reason: "the entry has no changes".to_owned(),
                raw: entry.raw.clone(),
            }),
            Ok(parsed) => {
                for change in &parsed.changes {
                    change_events(change, &mut events);
                }
            }
            Err(reason) => events.push(WebhookEvent::unreadable(
                None,
                format!("an entry could not be read: {reason}"),
                &entry.raw,
            )),
        }
    }
    events
}

/// Whether the bridge reads changes of this `field`.
fn is_read(field: Option<&str>) -> bool {
    matches!(
        field,
        Some(MESSAGES_FIELD | USER_PREFERENCES_FIELD | ECHOES_FIELD | USER_ID_UPDATE_FIELD)
    )
}

fn change_events(change: &Lenient<Change>, events: &mut Vec<WebhookEvent>) {
    let raw_field = change.raw.get("field").and_then(Value::as_str);
    let parsed = match &change.parsed {
        Ok(parsed) => parsed,
        Err(reason) if is_read(raw_field) => {
            let phone_number_id = change
                .raw
                .pointer("/value/metadata/phone_number_id")
                .and_then(Value::as_str);
            events.push(WebhookEvent::unreadable(
                phone_number_id,
                format!(
                    "a `{}` change could not be read: {reason}",
                    raw_field.unwrap_or_default()
                ),
                &change.raw,
            ));
            return;
        }
        // Other subscriptions have other shapes: not being ours to read is no error.
        Err(_) => {
            events.push(ignored_field(raw_field, &change.raw));
            return;
        }
    };
    let field = parsed.field.as_deref();
    if !is_read(field) {
        events.push(ignored_field(field, &change.raw));
        return;
    }
    let Some(value) = &parsed.value else {
        events.push(WebhookEvent::unreadable(
            None,
            format!("a `{}` change has no value", field.unwrap_or_default()),
            &change.raw,
        ));
        return;
    };
    let phone_number_id = value
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.phone_number_id.as_deref());
    if field == Some(USER_PREFERENCES_FIELD) {
        if value.user_preferences.is_empty() {
            events.push(WebhookEvent::Ignored {
                reason: "a `user_preferences` change with no preferences".to_owned(),
                raw: change.raw.clone(),
            });
        }
        for preference in &value.user_preferences {
            events.push(preference_event(preference, phone_number_id));
        }
        return;
    }
    if field == Some(USER_ID_UPDATE_FIELD) {
        user_id::update_events(
            change.raw.get("value"),
            phone_number_id,
            &change.raw,
            events,
        );
        return;
    }
    if field == Some(ECHOES_FIELD) {
        if value.message_echoes.is_empty() {
            events.push(WebhookEvent::Ignored {
                reason: "a `smb_message_echoes` change with no echoes".to_owned(),
                raw: change.raw.clone(),
            });
        }
        for echo in &value.message_echoes {
            events.push(echo_event(echo, phone_number_id));
        }
        return;
    }
    if value.messages.is_empty() && value.statuses.is_empty() && value.errors.is_empty() {
        events.push(WebhookEvent::Ignored {
            reason: "a `messages` change with no messages, statuses or errors".to_owned(),
            raw: change.raw.clone(),
        });
        return;
    }
    for message in &value.messages {
        events.push(message_event(message, &value.contacts, phone_number_id));
    }
    for status in &value.statuses {
        events.push(status_event(status, phone_number_id));
    }
    for error in &value.errors {
        events.push(match &error.parsed {
            Ok(reported) => WebhookEvent::Error(WebhookError {
                phone_number_id: phone_number_id.map(str::to_owned),
                cause: WebhookErrorCause::Reported(reported.clone()),
                raw: error.raw.clone(),
            }),
            Err(reason) => WebhookEvent::unreadable(
                phone_number_id,
                format!("an error could not be read: {reason}"),
                &error.raw,
            ),
        });
    }
}

/// One user's marketing message preference: who (like a message's sender: WhatsApp id, else
/// business-scoped user id), `stop` or `resume`, and when.
fn preference_event(
    preference: &Lenient<UserPreference>,
    phone_number_id: Option<&str>,
) -> WebhookEvent {
    let ignored = |reason: String| WebhookEvent::Ignored {
        reason,
        raw: preference.raw.clone(),
    };
    let parsed = match &preference.parsed {
        Ok(parsed) => parsed,
        Err(reason) => {
            return WebhookEvent::unreadable(
                phone_number_id,
                format!("a user preference could not be read: {reason}"),
                &preference.raw,
            );
        }
    };
    // Meta documents one category; a preference about anything else is not an opt-out.
    if let Some(category) = parsed
        .category
        .as_deref()
        .filter(|c| *c != MARKETING_MESSAGES)
    {
        return ignored(format!(
            "a user preference about {category:?}, not {MARKETING_MESSAGES:?}"
        ));
    }
    let choice = match parsed.value.as_deref().map(str::to_ascii_lowercase) {
        Some(value) if value == "stop" => MarketingPreference::Stop,
        Some(value) if value == "resume" => MarketingPreference::Resume,
        other => {
            return ignored(format!(
                "a marketing message preference {other:?} is neither \"stop\" nor \"resume\""
            ));
        }
    };
    let by_phone = parsed
        .wa_id
        .as_ref()
        .and_then(|wa_id| CustomerKey::from_whatsapp_id(wa_id.as_str()).ok());
    let Some(customer_key) = by_phone.or_else(|| {
        parsed
            .user_id
            .as_deref()
            .and_then(|user_id| CustomerKey::from_whatsapp_user_id(user_id).ok())
    }) else {
        return ignored(
            "a marketing message preference with no valid `wa_id` (WhatsApp id) nor `user_id` \
             (business-scoped user id) to know the user by"
                .to_owned(),
        );
    };
    let at = parsed
        .timestamp
        .filter(|seconds| seconds.is_finite())
        .and_then(|seconds| storable::time(seconds as i64));
    // The ids a session the opt-out creates keeps: only those the store takes.
    WebhookEvent::MarketingPreference(PreferenceEvent {
        customer_key,
        wa_id: parsed
            .wa_id
            .clone()
            .filter(|wa_id| storable::wa_id(wa_id).is_some()),
        whatsapp_user_id: parsed.user_id.as_deref().and_then(storable::user_id),
        preference: choice,
        at,
        phone_number_id: phone_number_id.map(str::to_owned),
        raw: preference.raw.clone(),
    })
}

/// A message staff sent from the business app: to whom (the echo's `to`, with or without `+`),
/// what, and when. A revoke or an edit of an earlier message says nothing new: ignored.
fn echo_event(echo: &Lenient<MessageEcho>, phone_number_id: Option<&str>) -> WebhookEvent {
    let unreadable = |reason: String| WebhookEvent::unreadable(phone_number_id, reason, &echo.raw);
    let parsed = match &echo.parsed {
        Ok(parsed) => parsed,
        Err(reason) => return unreadable(format!("an echo could not be read: {reason}")),
    };
    let wamid = match MessageId::parse(parsed.id.as_str()) {
        Ok(wamid) => wamid,
        Err(e) => return unreadable(e.to_string()),
    };
    let Some(sent_at) = parsed
        .timestamp
        .filter(|seconds| seconds.is_finite())
        .and_then(|seconds| storable::time(seconds as i64))
    else {
        return unreadable(format!(
            "echo {wamid}: its timestamp is not {}",
            storable::TIME_RULE
        ));
    };
    let message_type = parsed.content.message_type();
    if ECHOES_NOT_SAID.contains(&message_type) {
        return WebhookEvent::Ignored {
            reason: format!(
                "echo {wamid}: a {message_type:?} of an earlier message sent from the business app"
            ),
            raw: echo.raw.clone(),
        };
    }
    if !storable::is_message_type(message_type) {
        return unreadable(format!(
            "echo {wamid}: type {message_type:?} is not one the store takes ({})",
            storable::MESSAGE_TYPE_RULE
        ));
    }
    let to = parsed
        .to
        .as_deref()
        .map(|to| to.trim().trim_start_matches('+'));
    let Some((to, customer_key)) =
        to.and_then(|to| Some((to, CustomerKey::from_whatsapp_id(to).ok()?)))
    else {
        return WebhookEvent::Ignored {
            reason: format!(
                "echo {wamid}: no valid `to` (a WhatsApp number) to know the customer by"
            ),
            raw: echo.raw.clone(),
        };
    };
    WebhookEvent::Echo(EchoEvent {
        wamid,
        customer_key,
        wa_id: storable::wa_id(&Phone(to.to_owned())),
        message_type: message_type.to_owned(),
        body: parsed.content.text().map(str::to_owned),
        sent_at,
        phone_number_id: phone_number_id.map(str::to_owned),
        raw: echo.raw.clone(),
    })
}

fn ignored_field(field: Option<&str>, raw: &Value) -> WebhookEvent {
    WebhookEvent::Ignored {
        reason: match field {
            Some(field) => {
                format!("the change is about {field:?}, not messages or user preferences")
            }
            None => "the change names no field".to_owned(),
        },
        raw: raw.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::webhook::test_support::{
        at, envelope, events_of, message, messages_change, one_event, preferences_change, status,
    };
    use serde_json::json;

    #[test]
    fn metas_user_preferences_example_is_a_stop_of_marketing_messages() {
        let body = r#"{
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "102290129340398",
            "changes": [{
              "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
                "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": "16505551234" }],
                "user_preferences": [{
                  "wa_id": "16505551234",
                  "detail": "User requested to stop marketing messages",
                  "category": "marketing_messages",
                  "value": "stop",
                  "timestamp": 1731705721
                }]
              },
              "field": "user_preferences"
            }]
          }]
        }"#;
        let payload: WebhookPayload = serde_json::from_str(body).unwrap();
        let WebhookEvent::MarketingPreference(preference) = one_event(events(&payload)) else {
            panic!("expected one preference");
        };
        let raw: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            preference,
            PreferenceEvent {
                customer_key: CustomerKey::from_whatsapp_id("16505551234").unwrap(),
                wa_id: Some(Phone("16505551234".to_owned())),
                whatsapp_user_id: None,
                preference: MarketingPreference::Stop,
                at: Some(at(1_731_705_721)),
                phone_number_id: Some("106540352242922".to_owned()),
                raw: raw["entry"][0]["changes"][0]["value"]["user_preferences"][0].clone(),
            }
        );
    }

    #[test]
    fn user_preferences_read_each_user_and_ignore_what_is_no_stop_or_resume() {
        let payload = envelope(vec![preferences_change(json!({
            "user_preferences": [
                { "wa_id": "5215512345678", "category": "marketing_messages", "value": "resume",
                  "detail": "User requested to resume marketing messages", "timestamp": "1731705722" },
                { "user_id": "US.13491208655302741918", "category": "marketing_messages", "value": "STOP" },
                { "wa_id": "5215512345678", "category": "utility_messages", "value": "stop" },
                { "wa_id": "5215512345678", "category": "marketing_messages", "value": "interested" },
                { "category": "marketing_messages", "value": "stop" },
                { "wa_id": 5215512345678_u64, "value": "stop" }
            ]
        }))]);
        let events = events_of(payload);
        let [
            WebhookEvent::MarketingPreference(resume),
            WebhookEvent::MarketingPreference(by_user_id),
            WebhookEvent::Ignored {
                reason: other_category,
                ..
            },
            WebhookEvent::Ignored {
                reason: other_value,
                ..
            },
            WebhookEvent::Ignored { reason: nobody, .. },
            WebhookEvent::Error(unreadable),
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        assert_eq!(resume.preference, MarketingPreference::Resume);
        assert_eq!(resume.customer_key.as_str(), "525512345678");
        assert_eq!(resume.at, Some(at(1_731_705_722)));
        assert_eq!(by_user_id.preference, MarketingPreference::Stop);
        assert_eq!(by_user_id.customer_key.as_str(), "US.13491208655302741918");
        assert_eq!(by_user_id.at, None);
        assert!(
            other_category.contains("utility_messages"),
            "{other_category}"
        );
        assert!(other_value.contains("interested"), "{other_value}");
        assert!(nobody.contains("`wa_id`"), "{nobody}");
        assert_eq!(
            unreadable.phone_number_id.as_deref(),
            Some("106540352242922")
        );
        assert!(
            matches!(&unreadable.cause, WebhookErrorCause::Unreadable(why) if why.contains("user preference")),
            "{unreadable:?}"
        );

        let empty = events_of(envelope(vec![preferences_change(json!({}))]));
        let WebhookEvent::Ignored { reason, .. } = one_event(empty) else {
            panic!("an empty change is ignored");
        };
        assert!(reason.contains("no preferences"), "{reason}");
        let unreadable = events_of(envelope(vec![json!({
            "field": "user_preferences", "value": { "user_preferences": "not an array" }
        })]));
        assert!(
            matches!(one_event(unreadable), WebhookEvent::Error(_)),
            "an unreadable `user_preferences` change is an error, not another subscription"
        );
    }

    #[test]
    fn a_preferences_ids_the_store_refuses_are_left_out_and_the_stop_kept() {
        let payload = envelope(vec![preferences_change(json!({
            "user_preferences": [
                { "wa_id": "55-1234", "user_id": "US.1349", "category": "marketing_messages",
                  "value": "stop", "timestamp": 253402300800_u64 },
                { "wa_id": "5215512345678", "user_id": "", "category": "marketing_messages",
                  "value": "stop", "timestamp": 1731705721 }
            ]
        }))]);
        let events = events_of(payload);
        let [
            WebhookEvent::MarketingPreference(by_user_id),
            WebhookEvent::MarketingPreference(by_phone),
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        assert_eq!(by_user_id.customer_key.as_str(), "US.1349");
        assert_eq!(by_user_id.wa_id, None, "not a WhatsApp id the store keeps");
        assert_eq!(by_user_id.at, None, "year 10000: no time the store reads");
        assert_eq!(by_phone.customer_key.as_str(), "525512345678");
        assert_eq!(
            by_phone.whatsapp_user_id, None,
            "empty: the store keeps 1 to 128"
        );
        assert_eq!(by_phone.at, Some(at(1_731_705_721)));
    }

    #[test]
    fn every_entry_change_message_and_status_yields_an_event_in_order() {
        let payload = json!({
            "object": "whatsapp_business_account",
            "entry": [
                { "id": "waba-1", "changes": [
                    messages_change(json!({
                        "contacts": [
                            { "profile": { "name": "Ana" }, "wa_id": "5215512345678" },
                            { "profile": { "name": "Beto" }, "wa_id": "5491112345678" }
                        ],
                        "messages": [
                            message("wamid.A1", json!({ "type": "text", "text": { "body": "hola" } })),
                            { "from": "5491112345678", "id": "wamid.A2", "timestamp": "1749416384",
                              "type": "text", "text": { "body": "buenas" } }
                        ]
                    })),
                    messages_change(json!({
                        "statuses": [
                            status("wamid.S1", "sent", "1749416390"),
                            status("wamid.S1", "delivered", "1749416391")
                        ]
                    }))
                ]},
                { "id": "waba-2", "changes": [
                    messages_change(json!({
                        "messages": [message("wamid.B1", json!({ "type": "text", "text": { "body": "¿sigue?" } }))],
                        "statuses": [status("wamid.S2", "read", "1749416392")]
                    })),
                    messages_change(json!({
                        "statuses": [status("wamid.S3", "failed", "1749416393")],
                        "messages": [message("wamid.B2", json!({ "type": "text", "text": { "body": "ok" } }))]
                    }))
                ]}
            ]
        });
        let summary: Vec<String> = events_of(payload)
            .iter()
            .map(|event| match event {
                WebhookEvent::Message(m) => format!(
                    "message {} {} {} {:?}",
                    m.wamid,
                    m.customer_key,
                    m.body.as_deref().unwrap(),
                    m.profile_name
                ),
                WebhookEvent::Status(s) => {
                    format!("status {} {:?}", s.update.wamid, s.update.status)
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "message wamid.A1 525512345678 hola Some(\"Ana\")",
                "message wamid.A2 541112345678 buenas Some(\"Beto\")",
                "status wamid.S1 Sent",
                "status wamid.S1 Delivered",
                "message wamid.B1 525512345678 ¿sigue? None",
                "status wamid.S2 Read",
                "message wamid.B2 525512345678 ok None",
                "status wamid.S3 Failed",
            ]
        );
    }

    #[test]
    fn errors_of_the_change_are_reported_with_the_business_number() {
        let payload = envelope(vec![messages_change(json!({
            "errors": [
                { "code": 130429, "title": "Rate limit hit", "message": "Rate limit hit",
                  "error_data": { "details": "Too many messages" },
                  "href": "/documentation/business-messaging/whatsapp/support/error-codes" },
                { "code": 131000, "title": "Something went wrong", "error_data": "a bare string" }
            ]
        }))]);
        let events = events_of(payload);
        let [WebhookEvent::Error(rate_limit), WebhookEvent::Error(bare)] = events.as_slice() else {
            panic!("unexpected {events:?}");
        };
        assert_eq!(
            rate_limit.phone_number_id.as_deref(),
            Some("106540352242922")
        );
        let WebhookErrorCause::Reported(reported) = &rate_limit.cause else {
            panic!("not reported: {rate_limit:?}");
        };
        assert_eq!(reported.code, Some(130429));
        assert_eq!(reported.details(), Some("Too many messages"));
        let WebhookErrorCause::Reported(reported) = &bare.cause else {
            panic!("not reported: {bare:?}");
        };
        assert_eq!(reported.details(), Some("a bare string"));
    }

    #[test]
    fn an_unreadable_element_is_an_error_and_its_neighbours_still_count() {
        let payload = envelope(vec![messages_change(json!({
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5215512345678" }],
            "messages": [
                { "from": "5215512345678", "timestamp": "1749416383", "type": "text", "text": { "body": "no id" } },
                message("wamid.T", json!({ "type": "text", "text": { "body": 42 } })),
                message("wamid.NT", json!({ "type": "text" })),
                { "from": "5215512345678", "id": "wamid.TS", "timestamp": "yesterday", "type": "text",
                  "text": { "body": "x" } },
                message("wamid.OK", json!({ "type": "text", "text": { "body": "bien" } }))
            ],
            "statuses": [{ "id": "wamid.S", "timestamp": "1" }]
        }))]);
        let events = events_of(payload);
        let reasons: Vec<&str> = events[..4]
            .iter()
            .chain(&events[5..])
            .map(|event| match event {
                WebhookEvent::Error(WebhookError {
                    phone_number_id,
                    cause: WebhookErrorCause::Unreadable(reason),
                    ..
                }) => {
                    assert_eq!(phone_number_id.as_deref(), Some("106540352242922"));
                    reason.as_str()
                }
                other => panic!("expected unreadable, got {other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("missing field `id`"), "{}", reasons[0]);
        assert!(reasons[1].contains("`text`"), "{}", reasons[1]);
        assert!(reasons[2].contains("no `text` object"), "{}", reasons[2]);
        assert!(reasons[3].contains("\"yesterday\""), "{}", reasons[3]);
        assert!(
            reasons[4].contains("missing field `status`"),
            "{}",
            reasons[4]
        );
        assert!(
            matches!(&events[4], WebhookEvent::Message(m) if m.body.as_deref() == Some("bien"))
        );
    }

    #[test]
    fn other_fields_other_objects_and_empty_changes_are_ignored_not_dropped() {
        let payload = envelope(vec![
            json!({ "field": "message_template_status_update",
                    "value": { "event": "APPROVED", "message_template_id": 1, "errors": "not an array" } }),
            json!({ "field": "account_update", "value": { "phone_number": "15550783881" } }),
            messages_change(json!({})),
        ]);
        let reasons: Vec<String> = events_of(payload)
            .into_iter()
            .map(|event| match event {
                WebhookEvent::Ignored { reason, .. } => reason,
                other => panic!("expected ignored, got {other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("message_template_status_update"));
        assert!(reasons[1].contains("account_update"));
        assert!(reasons[2].contains("no messages, statuses or errors"));
        assert_eq!(reasons.len(), 3);

        let instagram = json!({ "object": "instagram", "entry": [{ "id": "1", "messaging": [] }] });
        let WebhookEvent::Ignored { reason, .. } = one_event(events_of(instagram)) else {
            panic!("expected one ignored entry");
        };
        assert!(reason.contains("instagram"), "{reason}");
    }

    #[test]
    fn debug_output_masks_phone_numbers() {
        let payload = envelope(vec![
            messages_change(json!({
                "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5215512345678" }],
                "messages": [message("wamid.D", json!({ "type": "text", "text": { "body": "hola" } }))],
                "statuses": [status("wamid.S", "sent", "1750030073")]
            })),
            preferences_change(json!({
                "user_preferences": [{ "wa_id": "5215512345678", "category": "marketing_messages",
                                       "value": "stop", "timestamp": 1731705721 }]
            })),
        ]);
        let parsed: WebhookPayload = serde_json::from_value(payload).unwrap();
        let debug = format!("{parsed:?} {:?}", events(&parsed));
        assert!(!debug.contains("5512345678"), "{debug}");
        assert!(!debug.contains("512345678"), "{debug}");
        assert!(debug.contains("5678"), "{debug}");
    }

    /// An `smb_message_echoes` change to the test business number, with `echoes`.
    fn echoes_change(echoes: Value) -> Value {
        let mut change = messages_change(json!({ "message_echoes": echoes }));
        change["field"] = json!(ECHOES_FIELD);
        change
    }

    #[test]
    fn metas_echo_example_is_a_staff_message_to_the_customer() {
        let echo = json!({
            "from": "15550783881",
            "to": "+5215512345678",
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
            "timestamp": "1739321024",
            "type": "text",
            "text": { "body": "Hola Ana, soy Luis del equipo." }
        });
        let WebhookEvent::Echo(event) =
            one_event(events_of(envelope(vec![echoes_change(json!([
                echo.clone()
            ]))])))
        else {
            panic!("expected one echo");
        };
        assert_eq!(
            event,
            EchoEvent {
                wamid: MessageId::parse(
                    "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
                )
                .unwrap(),
                customer_key: CustomerKey::from_whatsapp_id("5215512345678").unwrap(),
                wa_id: Some("5215512345678".to_owned()),
                message_type: "text".to_owned(),
                body: Some("Hola Ana, soy Luis del equipo.".to_owned()),
                sent_at: at(1_739_321_024),
                phone_number_id: Some("106540352242922".to_owned()),
                raw: echo,
            }
        );
        let debug = format!("{event:?}");
        assert!(
            !debug.contains("Luis") && !debug.contains("5512345678"),
            "{debug}"
        );
    }

    #[test]
    fn echoes_take_a_numeric_timestamp_and_ignore_revokes_and_who_cannot_be_known() {
        let echo = |id: &str, to: Value, fields: Value| {
            let mut echo =
                json!({ "from": "15550783881", "to": to, "id": id, "timestamp": 1739321024 });
            for (key, value) in fields.as_object().unwrap() {
                echo[key] = value.clone();
            }
            echo
        };
        let events = events_of(envelope(vec![
            echoes_change(json!([
                echo(
                    "wamid.IMG",
                    json!("5215512345678"),
                    json!({ "type": "image", "image": { "id": "1", "caption": "La póliza" } })
                ),
                echo(
                    "wamid.REVOKE",
                    json!("5215512345678"),
                    json!({ "type": "revoke", "revoke": { "original_message_id": "wamid.IMG" } })
                ),
                echo(
                    "wamid.NOBODY",
                    json!("ventas"),
                    json!({ "type": "text", "text": { "body": "x" } })
                ),
                json!({ "id": "wamid.BROKEN", "type": "text" }),
            ])),
            echoes_change(json!([])),
        ]));
        let [
            WebhookEvent::Echo(image),
            WebhookEvent::Ignored {
                reason: revoked, ..
            },
            WebhookEvent::Ignored { reason: nobody, .. },
            WebhookEvent::Error(broken),
            WebhookEvent::Ignored { reason: empty, .. },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!(image.message_type, "image");
        assert_eq!(image.body.as_deref(), Some("La póliza"));
        assert_eq!(image.sent_at, at(1_739_321_024));
        assert!(revoked.contains("\"revoke\""), "{revoked}");
        assert!(nobody.contains("`to`"), "{nobody}");
        assert!(
            matches!(&broken.cause, WebhookErrorCause::Unreadable(why) if why.contains("echo")),
            "{broken:?}"
        );
        assert!(empty.contains("no echoes"), "{empty}");
    }
}
