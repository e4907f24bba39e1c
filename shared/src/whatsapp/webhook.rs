//! Meta's webhook for WhatsApp: the GET verification handshake, the `X-Hub-Signature-256`
//! check, the payload as Meta sends it, and the domain events it carries.
//!
//! Meta retries anything but a 200 for days, so parsing is lenient: every field Meta may omit
//! is optional, unknown fields and message types are tolerated, and one element that cannot be
//! read becomes an [`WebhookEvent::Error`] without costing the others in the same delivery.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde_json::Value;
use sha2::Sha256;

use crate::domain::{CustomerKey, DeliveryStatus, DeliveryUpdate, InboundMessage, MessageId};

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs each POST with: `sha256=<hex HMAC-SHA256(app secret, raw body)>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The `object` of every WhatsApp Business Account notification.
const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// The change `field` that carries messages, statuses and errors.
const MESSAGES_FIELD: &str = "messages";

// --- Signature -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=<64 hex digits>`: {0}")]
    Malformed(&'static str),
    #[error("the X-Hub-Signature-256 signature does not match the body")]
    Mismatch,
}

/// Checks `X-Hub-Signature-256` against the body exactly as received: re-serialised JSON
/// differs from Meta's bytes (escaped accents and emoji), so only the raw bytes verify.
/// The hex digest is accepted in either case; Meta sends lowercase.
pub fn verify_signature(
    app_secret: &[u8],
    raw_body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed("no `sha256=` prefix"))?;
    let digest = hex::decode(hex_digest)
        .map_err(|_| SignatureError::Malformed("the digest is not hexadecimal"))?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed(
            "the digest is not 32 bytes (64 hex digits)",
        ));
    }
    let mut mac = HmacSha256::new_from_slice(app_secret).expect("HMAC takes a key of any length");
    mac.update(raw_body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

// --- Verification handshake ----------------------------------------------------------------

/// The query of Meta's GET handshake: `hub.mode`, `hub.verify_token` and `hub.challenge`, each
/// absent when the request lacks it. No `Debug`: the token may be the real one.
#[derive(Clone, Copy, Default)]
pub struct SubscriptionQuery<'a> {
    pub mode: Option<&'a str>,
    pub verify_token: Option<&'a str>,
    pub challenge: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("the verification request has no hub.{0}")]
    MissingParameter(&'static str),
    #[error("hub.mode must be `subscribe`, got {0:?}")]
    WrongMode(String),
    #[error("hub.verify_token does not match the configured verify token")]
    WrongToken,
}

/// Checks Meta's subscription handshake and returns the challenge to echo back, unchanged, as
/// the plain-text body of a 200.
pub fn verify_subscription(
    query: SubscriptionQuery<'_>,
    expected_token: &str,
) -> Result<String, SubscriptionError> {
    let mode = query
        .mode
        .ok_or(SubscriptionError::MissingParameter("mode"))?;
    if mode != "subscribe" {
        return Err(SubscriptionError::WrongMode(mode.to_owned()));
    }
    let token = query
        .verify_token
        .ok_or(SubscriptionError::MissingParameter("verify_token"))?;
    if !tokens_match(token, expected_token) {
        return Err(SubscriptionError::WrongToken);
    }
    query
        .challenge
        .map(str::to_owned)
        .ok_or(SubscriptionError::MissingParameter("challenge"))
}

/// Compares two tokens in constant time: both are MACed under the expected token, and
/// `verify_slice` compares the fixed-length tags without an early exit.
fn tokens_match(given: &str, expected: &str) -> bool {
    let tag_of = |token: &str| {
        let mut mac = HmacSha256::new_from_slice(expected.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(token.as_bytes());
        mac
    };
    let expected_tag = tag_of(expected).finalize().into_bytes();
    tag_of(given).verify_slice(&expected_tag).is_ok()
}

// --- Payload -------------------------------------------------------------------------------

/// A POST body: `{"object": "whatsapp_business_account", "entry": [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WebhookPayload {
    pub object: Option<String>,
    #[serde(default)]
    pub entry: Vec<Lenient<Entry>>,
}

/// An element kept exactly as Meta sent it, with its typed reading, or why there is none.
/// `Debug` leaves the raw JSON out: it holds phone numbers.
#[derive(Clone, PartialEq)]
pub struct Lenient<T> {
    pub raw: Value,
    pub parsed: Result<T, String>,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(deserializer)?;
        let parsed = T::deserialize(&raw).map_err(|e| e.to_string());
        Ok(Self { raw, parsed })
    }
}

impl<T: fmt::Debug> fmt::Debug for Lenient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lenient")
            .field("parsed", &self.parsed)
            .finish_non_exhaustive()
    }
}

/// One WhatsApp Business Account's changes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    /// The WABA id (not the phone number id).
    pub id: Option<String>,
    #[serde(default)]
    pub changes: Vec<Lenient<Change>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    /// `messages` for messages, statuses and errors; other subscriptions name other fields.
    pub field: Option<String>,
    pub value: Option<ChangeValue>,
}

/// The `value` of a `messages` change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChangeValue {
    pub messaging_product: Option<String>,
    pub metadata: Option<Metadata>,
    /// The senders of `messages` (absent for `system` messages).
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub messages: Vec<Lenient<Message>>,
    #[serde(default)]
    pub statuses: Vec<Lenient<Status>>,
    /// Errors not tied to one message.
    #[serde(default)]
    pub errors: Vec<Lenient<MetaError>>,
}

/// The business number the change is about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub display_phone_number: Option<String>,
    /// The id to reply from: the send URL's `<PHONE_NUMBER_ID>`.
    pub phone_number_id: Option<String>,
}

/// A phone number or WhatsApp id as Meta wrote it (`from`, `wa_id`, `recipient_id`: digits, no
/// `+`). `Debug` shows only its last four characters, so parsed payloads can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", mask(&self.0))
    }
}

/// All but the last four characters hidden.
fn mask(text: &str) -> String {
    let hidden = text.chars().count().saturating_sub(4);
    text.chars()
        .enumerate()
        .map(|(i, c)| if i < hidden { '*' } else { c })
        .collect()
}

/// A sender of the messages in the same change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Contact {
    /// Absent for a username-only sender.
    pub wa_id: Option<Phone>,
    /// The business-scoped user id (`US.1349…`).
    pub user_id: Option<String>,
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
    pub username: Option<String>,
}

/// A message from a customer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    /// The wamid: deduplicates deliveries.
    pub id: String,
    /// Unix seconds, as a string.
    pub timestamp: String,
    /// Absent for a username-only sender: see `from_user_id`.
    pub from: Option<Phone>,
    pub from_user_id: Option<String>,
    pub context: Option<MessageContext>,
    /// Click-to-WhatsApp ad data.
    pub referral: Option<Value>,
    /// Why an `unsupported` message could not be delivered.
    #[serde(default)]
    pub errors: Vec<MetaError>,
    /// The `type` and the object named after it.
    #[serde(flatten)]
    pub content: MessageContent,
}

/// What a message answers or how it came: a reply (`from`, `id`), a forward, a product enquiry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageContext {
    /// The business number the quoted message came from.
    pub from: Option<String>,
    /// The wamid of the quoted message.
    pub id: Option<String>,
    pub forwarded: Option<bool>,
    pub frequently_forwarded: Option<bool>,
    pub referred_product: Option<Value>,
}

/// A message's `type` with the object of that name (`"type": "text", "text": {...}`).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(Text),
    Image(Media),
    Video(Media),
    Document(Media),
    Audio(Media),
    Sticker(Media),
    Location(Location),
    Contacts(Vec<ContactCard>),
    Interactive(Interactive),
    /// A template's quick-reply button.
    Button(Button),
    Reaction(Reaction),
    Order(Order),
    /// WhatsApp's notice about the user (a changed number), not the user's words.
    System(System),
    /// A message WhatsApp could not deliver to the API (polls, …): see the message's `errors`.
    Unsupported(Unsupported),
    /// A type this code does not know yet (`edit`, `revoke`, …), with its object as sent.
    Unknown {
        message_type: String,
        object: Option<Value>,
    },
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::<String, Value>::deserialize(deserializer)?;
        let message_type = match fields.remove("type") {
            Some(Value::String(message_type)) => message_type,
            Some(_) => return Err(de::Error::custom("the message `type` is not a string")),
            None => return Err(de::Error::missing_field("type")),
        };
        let object = fields.remove(&message_type);
        Ok(match message_type.as_str() {
            "text" => Self::Text(type_object(object, "text")?),
            "image" => Self::Image(type_object(object, "image")?),
            "video" => Self::Video(type_object(object, "video")?),
            "document" => Self::Document(type_object(object, "document")?),
            "audio" => Self::Audio(type_object(object, "audio")?),
            "sticker" => Self::Sticker(type_object(object, "sticker")?),
            "location" => Self::Location(type_object(object, "location")?),
            "contacts" => Self::Contacts(type_object(object, "contacts")?),
            "interactive" => Self::Interactive(type_object(object, "interactive")?),
            "button" => Self::Button(type_object(object, "button")?),
            "reaction" => Self::Reaction(type_object(object, "reaction")?),
            "order" => Self::Order(type_object(object, "order")?),
            "system" => Self::System(type_object(object, "system")?),
            // Meta's own example of an unsupported message has no `unsupported` object.
            "unsupported" => Self::Unsupported(match object {
                Some(object) => type_object(Some(object), "unsupported")?,
                None => Unsupported::default(),
            }),
            _ => Self::Unknown {
                message_type,
                object,
            },
        })
    }
}

/// Reads the object a known message type names; a known type without it is malformed.
fn type_object<T: DeserializeOwned, E: de::Error>(
    object: Option<Value>,
    message_type: &str,
) -> Result<T, E> {
    let object = object.ok_or_else(|| {
        E::custom(format!(
            "a `{message_type}` message has no `{message_type}` object"
        ))
    })?;
    T::deserialize(object).map_err(|e| E::custom(format!("`{message_type}`: {e}")))
}

impl MessageContent {
    /// WhatsApp's name of the type, as stored with the message.
    pub fn message_type(&self) -> &str {
        match self {
            Self::Text(_) => "text",
            Self::Image(_) => "image",
            Self::Video(_) => "video",
            Self::Document(_) => "document",
            Self::Audio(_) => "audio",
            Self::Sticker(_) => "sticker",
            Self::Location(_) => "location",
            Self::Contacts(_) => "contacts",
            Self::Interactive(_) => "interactive",
            Self::Button(_) => "button",
            Self::Reaction(_) => "reaction",
            Self::Order(_) => "order",
            Self::System(_) => "system",
            Self::Unsupported(_) => "unsupported",
            Self::Unknown { message_type, .. } => message_type,
        }
    }

    /// The text the agent reads: a text's body, a button's or list item's title, a media
    /// caption. Other types (and blank text) have none.
    pub fn text(&self) -> Option<&str> {
        let text = match self {
            Self::Text(text) => text.body.as_deref(),
            Self::Button(button) => button.text.as_deref(),
            Self::Interactive(interactive) => interactive
                .button_reply
                .as_ref()
                .or(interactive.list_reply.as_ref())
                .and_then(|choice| choice.title.as_deref()),
            Self::Image(media)
            | Self::Video(media)
            | Self::Document(media)
            | Self::Audio(media)
            | Self::Sticker(media) => media.caption.as_deref(),
            _ => None,
        };
        text.filter(|text| !text.trim().is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Text {
    pub body: Option<String>,
}

/// An image, video, document, audio or sticker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Media {
    /// The media id, to download it with.
    pub id: Option<String>,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    /// Images, videos and documents only.
    pub caption: Option<String>,
    /// Documents only.
    pub filename: Option<String>,
    /// Audio only: a voice note.
    pub voice: Option<bool>,
    /// Stickers only.
    pub animated: Option<bool>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Location {
    /// Numbers in Meta's examples, strings in its OpenAPI file: both are read.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub latitude: Option<f64>,
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub longitude: Option<f64>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub url: Option<String>,
}

/// A shared contact card. Its other parts (addresses, …) stay in the raw message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactCard {
    pub name: Option<ContactName>,
    #[serde(default)]
    pub phones: Vec<ContactPhone>,
    #[serde(default)]
    pub emails: Vec<ContactEmail>,
    pub org: Option<ContactOrg>,
    #[serde(default)]
    pub urls: Vec<ContactUrl>,
    pub birthday: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactName {
    pub formatted_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactPhone {
    pub phone: Option<Phone>,
    pub wa_id: Option<Phone>,
    #[serde(rename = "type")]
    pub phone_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactEmail {
    pub email: Option<String>,
    #[serde(rename = "type")]
    pub email_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactOrg {
    pub company: Option<String>,
    pub department: Option<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContactUrl {
    pub url: Option<String>,
    #[serde(rename = "type")]
    pub url_type: Option<String>,
}

/// A tap on an interactive message: reply button, list item, or a Flow's answer (`nfm_reply`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Interactive {
    #[serde(rename = "type")]
    pub interactive_type: Option<String>,
    pub button_reply: Option<ReplyChoice>,
    pub list_reply: Option<ReplyChoice>,
    pub nfm_reply: Option<FlowReply>,
}

/// The button or list item the customer chose.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReplyChoice {
    pub id: Option<String>,
    pub title: Option<String>,
    /// List items only.
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FlowReply {
    pub name: Option<String>,
    pub body: Option<String>,
    /// The Flow's answers, as a JSON string.
    pub response_json: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Button {
    pub payload: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reaction {
    /// The wamid reacted to.
    pub message_id: Option<String>,
    /// Missing or empty when the reaction is removed.
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Order {
    pub catalog_id: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProductItem {
    pub product_retailer_id: Option<String>,
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub quantity: Option<f64>,
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub item_price: Option<f64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct System {
    pub body: Option<String>,
    /// `user_changed_number` (older: `customer_changed_number`, `customer_identity_changed`).
    #[serde(rename = "type")]
    pub system_type: Option<String>,
    /// The user's new WhatsApp id.
    pub wa_id: Option<Phone>,
}

#[derive(Default, Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Unsupported {
    /// What the user sent: `poll_creation`, `gif`, …
    #[serde(rename = "type")]
    pub unsupported_type: Option<String>,
}

/// The delivery status of a message the business sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Status {
    /// The wamid the send call returned.
    pub id: String,
    /// `sent`, `delivered`, `read`, `failed`, `played`, …
    pub status: String,
    /// Unix seconds, as a string.
    pub timestamp: String,
    pub recipient_id: Option<Phone>,
    pub recipient_user_id: Option<String>,
    pub recipient_type: Option<String>,
    pub biz_opaque_callback_data: Option<String>,
    pub conversation: Option<Conversation>,
    pub pricing: Option<Pricing>,
    /// Why a `failed` message failed.
    #[serde(default)]
    pub errors: Vec<MetaError>,
}

/// Omitted since v24.0 except in free entry-point windows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Conversation {
    pub id: Option<String>,
    pub expiration_timestamp: Option<String>,
    pub origin: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pricing {
    pub billable: Option<bool>,
    pub pricing_model: Option<String>,
    #[serde(rename = "type")]
    pub pricing_type: Option<String>,
    pub category: Option<String>,
}

/// An error as WhatsApp reports it in webhooks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetaError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub message: Option<String>,
    pub error_data: Option<ErrorData>,
    pub href: Option<String>,
}

/// `{"details": "..."}` in Meta's documentation; a bare string has been seen too.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ErrorData {
    Text(String),
    Details { details: Option<String> },
    Other(Value),
}

impl MetaError {
    /// The explanation in `error_data`, whichever shape it came in.
    pub fn details(&self) -> Option<&str> {
        match self.error_data.as_ref()? {
            ErrorData::Text(details) => Some(details),
            ErrorData::Details { details } => details.as_deref(),
            ErrorData::Other(_) => None,
        }
    }
}

/// Reads a number sent either as a JSON number or as a numeric string; anything else is absent.
fn number_or_numeric_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        Some(Value::Number(number)) => number.as_f64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    })
}

// --- Events --------------------------------------------------------------------------------

/// What one element of a webhook means to the bridge. Every message, status and error of a
/// payload yields exactly one event, so nothing is dropped unseen.
#[derive(Clone, PartialEq)]
pub enum WebhookEvent {
    /// A customer's message, to record and answer.
    Message(InboundMessage),
    /// A delivery status of a message the bridge sent.
    Status(StatusEvent),
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
            Self::Error(error) => f.debug_tuple("Error").field(error).finish(),
            Self::Ignored { reason, .. } => f
                .debug_struct("Ignored")
                .field("reason", reason)
                .finish_non_exhaustive(),
        }
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

impl WebhookError {
    fn unreadable(phone_number_id: Option<&str>, reason: String, raw: &Value) -> Self {
        Self {
            phone_number_id: phone_number_id.map(str::to_owned),
            cause: WebhookErrorCause::Unreadable(reason),
            raw: raw.clone(),
        }
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
            Err(reason) => events.push(WebhookEvent::Error(WebhookError::unreadable(
                None,
                format!("an entry could not be read: {reason}"),
                &entry.raw,
            ))),
        }
    }
    events
}

fn change_events(change: &Lenient<Change>, events: &mut Vec<WebhookEvent>) {
    let raw_field = change.raw.get("field").and_then(Value::as_str);
    let parsed = match &change.parsed {
        Ok(parsed) => parsed,
        Err(reason) if raw_field == Some(MESSAGES_FIELD) => {
            let phone_number_id = change
                .raw
                .pointer("/value/metadata/phone_number_id")
                .and_then(Value::as_str);
            events.push(WebhookEvent::Error(WebhookError::unreadable(
                phone_number_id,
                format!("a `messages` change could not be read: {reason}"),
                &change.raw,
            )));
            return;
        }
        // Other subscriptions have other shapes: not being ours to read is no error.
        Err(_) => {
            events.push(ignored_field(raw_field, &change.raw));
            return;
        }
    };
    if parsed.field.as_deref() != Some(MESSAGES_FIELD) {
        events.push(ignored_field(parsed.field.as_deref(), &change.raw));
        return;
    }
    let Some(value) = &parsed.value else {
        events.push(WebhookEvent::Error(WebhookError::unreadable(
            None,
            "a `messages` change has no value".to_owned(),
            &change.raw,
        )));
        return;
    };
    if value.messages.is_empty() && value.statuses.is_empty() && value.errors.is_empty() {
        events.push(WebhookEvent::Ignored {
            reason: "a `messages` change with no messages, statuses or errors".to_owned(),
            raw: change.raw.clone(),
        });
        return;
    }
    let phone_number_id = value
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.phone_number_id.as_deref());
    for message in &value.messages {
        events.push(message_event(message, &value.contacts, phone_number_id));
    }
    for status in &value.statuses {
        events.push(status_event(status, phone_number_id));
    }
    for error in &value.errors {
        events.push(WebhookEvent::Error(match &error.parsed {
            Ok(reported) => WebhookError {
                phone_number_id: phone_number_id.map(str::to_owned),
                cause: WebhookErrorCause::Reported(reported.clone()),
                raw: error.raw.clone(),
            },
            Err(reason) => WebhookError::unreadable(
                phone_number_id,
                format!("an error could not be read: {reason}"),
                &error.raw,
            ),
        }));
    }
}

fn ignored_field(field: Option<&str>, raw: &Value) -> WebhookEvent {
    WebhookEvent::Ignored {
        reason: match field {
            Some(field) => format!("the change is about {field:?}, not messages"),
            None => "the change names no field".to_owned(),
        },
        raw: raw.clone(),
    }
}

fn message_event(
    message: &Lenient<Message>,
    contacts: &[Contact],
    phone_number_id: Option<&str>,
) -> WebhookEvent {
    let unreadable = |reason: String| {
        WebhookEvent::Error(WebhookError::unreadable(
            phone_number_id,
            reason,
            &message.raw,
        ))
    };
    let parsed = match &message.parsed {
        Ok(parsed) => parsed,
        Err(reason) => return unreadable(format!("a message could not be read: {reason}")),
    };
    if let MessageContent::System(system) = &parsed.content {
        return WebhookEvent::Ignored {
            reason: format!(
                "a system message ({}) is WhatsApp's notice, not the customer's words",
                system.system_type.as_deref().unwrap_or("of no type")
            ),
            raw: message.raw.clone(),
        };
    }
    let wamid = match MessageId::parse(parsed.id.as_str()) {
        Ok(wamid) => wamid,
        Err(e) => return unreadable(e.to_string()),
    };
    let Some(sent_at) = from_unix_seconds(&parsed.timestamp) else {
        return unreadable(format!(
            "message {wamid}: timestamp {:?} is not unix seconds",
            parsed.timestamp
        ));
    };
    let Some(customer_key) = sender_key(parsed) else {
        return WebhookEvent::Ignored {
            reason: format!(
                "message {wamid}: the sender has no valid `from` (WhatsApp id) nor \
                 `from_user_id` (business-scoped user id) to be known by"
            ),
            raw: message.raw.clone(),
        };
    };
    let contact = sender_contact(parsed, contacts);
    WebhookEvent::Message(InboundMessage {
        wamid,
        customer_key,
        message_type: parsed.content.message_type().to_owned(),
        body: parsed.content.text().map(str::to_owned),
        payload: Some(message.raw.clone()),
        sent_at,
        wa_id: contact
            .and_then(|contact| contact.wa_id.as_ref())
            .or(parsed.from.as_ref())
            .map(|wa_id| wa_id.as_str().to_owned()),
        whatsapp_user_id: parsed
            .from_user_id
            .clone()
            .or_else(|| contact.and_then(|contact| contact.user_id.clone())),
        profile_name: contact
            .and_then(|contact| contact.profile.as_ref())
            .and_then(|profile| profile.name.clone()),
    })
}

/// The customer a message is from: its phone id, else (a username-only sender) its
/// business-scoped user id.
fn sender_key(message: &Message) -> Option<CustomerKey> {
    let by_phone = message
        .from
        .as_ref()
        .and_then(|from| CustomerKey::from_whatsapp_id(from.as_str()).ok());
    by_phone.or_else(|| {
        message
            .from_user_id
            .as_deref()
            .and_then(|user_id| CustomerKey::from_whatsapp_user_id(user_id).ok())
    })
}

/// The `contacts[]` entry of a message's sender: the one with its id, else the only one.
fn sender_contact<'a>(message: &Message, contacts: &'a [Contact]) -> Option<&'a Contact> {
    let same_id = |contact: &&Contact| {
        (message.from.is_some() && contact.wa_id == message.from)
            || (message.from_user_id.is_some() && contact.user_id == message.from_user_id)
    };
    contacts.iter().find(same_id).or(match contacts {
        [only] => Some(only),
        _ => None,
    })
}

fn status_event(status: &Lenient<Status>, phone_number_id: Option<&str>) -> WebhookEvent {
    let unreadable = |reason: String| {
        WebhookEvent::Error(WebhookError::unreadable(
            phone_number_id,
            reason,
            &status.raw,
        ))
    };
    let parsed = match &status.parsed {
        Ok(parsed) => parsed,
        Err(reason) => return unreadable(format!("a status could not be read: {reason}")),
    };
    let delivery_status = match parsed.status.as_str() {
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Read,
        "failed" => DeliveryStatus::Failed,
        // `played` (a voice note was listened to) and statuses Meta adds later.
        other => {
            return WebhookEvent::Ignored {
                reason: format!("status {other:?} is not a delivery state the bridge tracks"),
                raw: status.raw.clone(),
            };
        }
    };
    let wamid = match MessageId::parse(parsed.id.as_str()) {
        Ok(wamid) => wamid,
        Err(e) => return unreadable(e.to_string()),
    };
    let Some(at) = from_unix_seconds(&parsed.timestamp) else {
        return unreadable(format!(
            "status of {wamid}: timestamp {:?} is not unix seconds",
            parsed.timestamp
        ));
    };
    WebhookEvent::Status(StatusEvent {
        update: DeliveryUpdate {
            wamid,
            status: delivery_status,
            at,
            // The array exactly as Meta sent it, for the dashboard.
            errors: status.raw.get("errors").cloned(),
        },
        recipient_id: parsed.recipient_id.clone(),
        recipient_user_id: parsed.recipient_user_id.clone(),
        phone_number_id: phone_number_id.map(str::to_owned),
    })
}

/// Meta's timestamps: unix seconds, as a string.
fn from_unix_seconds(timestamp: &str) -> Option<DateTime<Utc>> {
    let seconds = timestamp.trim().parse::<i64>().ok()?;
    DateTime::from_timestamp(seconds, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"app-secret";

    fn signature_header(secret: &[u8], body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn events_of(payload: Value) -> Vec<WebhookEvent> {
        let body = serde_json::to_vec(&payload).unwrap();
        events(&serde_json::from_slice(&body).unwrap())
    }

    fn envelope(changes: Vec<Value>) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": changes }]
        })
    }

    fn messages_change(value: Value) -> Value {
        let mut value = value;
        value["messaging_product"] = json!("whatsapp");
        value["metadata"] = json!({
            "display_phone_number": "15550783881",
            "phone_number_id": "106540352242922"
        });
        json!({ "field": "messages", "value": value })
    }

    /// A message from a Mexican customer, with `fields` (its `type` and object) added.
    fn message(wamid: &str, fields: Value) -> Value {
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

    fn one_event(events: Vec<WebhookEvent>) -> WebhookEvent {
        assert_eq!(events.len(), 1, "{events:?}");
        events.into_iter().next().unwrap()
    }

    fn only_message(fields: Value) -> InboundMessage {
        let payload = envelope(vec![messages_change(json!({
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5215512345678" }],
            "messages": [message("wamid.1", fields)]
        }))]);
        match events_of(payload).as_slice() {
            [WebhookEvent::Message(message)] => message.clone(),
            other => panic!("expected one message, got {other:?}"),
        }
    }

    fn status(wamid: &str, status: &str, timestamp: &str) -> Value {
        json!({
            "id": wamid,
            "status": status,
            "timestamp": timestamp,
            "recipient_id": "5215512345678"
        })
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    // --- Signature ---

    #[test]
    fn a_signature_over_the_body_verifies() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = signature_header(SECRET, body);
        assert_eq!(verify_signature(SECRET, body, Some(&header)), Ok(()));
        let uppercase = format!("sha256={}", header["sha256=".len()..].to_uppercase());
        assert_eq!(verify_signature(SECRET, body, Some(&uppercase)), Ok(()));
    }

    #[test]
    fn a_missing_signature_is_refused() {
        assert_eq!(
            verify_signature(SECRET, b"{}", None),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn malformed_signatures_are_refused_saying_what_is_wrong() {
        let body = b"{}";
        let digest = signature_header(SECRET, body)["sha256=".len()..].to_owned();
        for (header, what) in [
            (digest.clone(), "prefix"),
            (format!("sha1={digest}"), "prefix"),
            (format!("sha256={}", "zz".repeat(32)), "hexadecimal"),
            (format!("sha256={}", &digest[..62]), "32 bytes"),
            (format!("sha256={digest}00"), "32 bytes"),
            ("sha256=".to_owned(), "32 bytes"),
        ] {
            let err = verify_signature(SECRET, body, Some(&header)).unwrap_err();
            assert!(matches!(err, SignatureError::Malformed(_)), "{header}");
            assert!(err.to_string().contains(what), "{header}: {err}");
        }
    }

    #[test]
    fn a_body_changed_by_one_byte_or_another_secret_does_not_verify() {
        let body = br#"{"entry":[{"id":"1"}]}"#.to_vec();
        let header = signature_header(SECRET, &body);
        let mut changed = body.clone();
        changed[12] ^= 1;
        assert_eq!(
            verify_signature(SECRET, &changed, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another secret", &body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn accents_and_emoji_verify_over_the_raw_bytes_not_a_reserialisation() {
        let body = r#"{"text":{"body":"¿Dónde está? 😀"}}"#.as_bytes();
        let header = signature_header(SECRET, body);
        assert_eq!(verify_signature(SECRET, body, Some(&header)), Ok(()));
        // The same JSON with its characters escaped, as a re-serialiser may write it.
        let escaped = br#"{"text":{"body":"\u00bfD\u00f3nde est\u00e1? \ud83d\ude00"}}"#;
        assert_eq!(
            serde_json::from_slice::<Value>(escaped).unwrap(),
            serde_json::from_slice::<Value>(body).unwrap()
        );
        assert_eq!(
            verify_signature(SECRET, escaped, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    // --- Handshake ---

    fn handshake<'a>(mode: &'a str, token: &'a str) -> SubscriptionQuery<'a> {
        SubscriptionQuery {
            mode: Some(mode),
            verify_token: Some(token),
            challenge: Some("1158201444"),
        }
    }

    #[test]
    fn the_handshake_echoes_the_challenge_for_the_right_token() {
        assert_eq!(
            verify_subscription(handshake("subscribe", "my token"), "my token"),
            Ok("1158201444".to_owned())
        );
    }

    #[test]
    fn the_handshake_refuses_a_wrong_token() {
        for token in ["my tokeN", "my toke", "my token ", ""] {
            assert_eq!(
                verify_subscription(handshake("subscribe", token), "my token"),
                Err(SubscriptionError::WrongToken),
                "{token:?}"
            );
        }
    }

    #[test]
    fn the_handshake_refuses_a_wrong_mode_or_missing_parameters() {
        assert_eq!(
            verify_subscription(handshake("unsubscribe", "my token"), "my token"),
            Err(SubscriptionError::WrongMode("unsubscribe".to_owned()))
        );
        let no_challenge = SubscriptionQuery {
            challenge: None,
            ..handshake("subscribe", "my token")
        };
        assert_eq!(
            verify_subscription(no_challenge, "my token"),
            Err(SubscriptionError::MissingParameter("challenge"))
        );
        let err = verify_subscription(SubscriptionQuery::default(), "my token").unwrap_err();
        assert_eq!(err.to_string(), "the verification request has no hub.mode");
    }

    // --- Events ---

    #[test]
    fn metas_own_text_example_becomes_a_message() {
        let body = r#"{
          "object": "whatsapp_business_account",
          "entry": [{
            "id": "102290129340398",
            "changes": [{
              "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
                "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": "16505551234" }],
                "messages": [{
                  "from": "16505551234",
                  "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                  "timestamp": "1749416383",
                  "type": "text",
                  "text": { "body": "Does it come in another color?" }
                }]
              },
              "field": "messages"
            }]
          }]
        }"#;
        let payload: WebhookPayload = serde_json::from_str(body).unwrap();
        let WebhookEvent::Message(message) = one_event(events(&payload)) else {
            panic!("expected one message");
        };
        let raw: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            message,
            InboundMessage {
                wamid: MessageId::parse(
                    "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
                )
                .unwrap(),
                customer_key: CustomerKey::from_whatsapp_id("16505551234").unwrap(),
                message_type: "text".to_owned(),
                body: Some("Does it come in another color?".to_owned()),
                payload: Some(raw["entry"][0]["changes"][0]["value"]["messages"][0].clone()),
                sent_at: at(1_749_416_383),
                wa_id: Some("16505551234".to_owned()),
                whatsapp_user_id: None,
                profile_name: Some("Sheena Nelson".to_owned()),
            }
        );
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
    fn each_message_type_reads_as_its_text_or_none() {
        let media = |kind: &str, caption: Option<&str>| {
            let mut object =
                json!({ "id": "media-1", "mime_type": "image/jpeg", "sha256": "abc=" });
            if let Some(caption) = caption {
                object["caption"] = json!(caption);
            }
            json!({ "type": kind, kind: object })
        };
        let cases = [
            (
                json!({ "type": "text", "text": { "body": "¿Dónde está? 😀" } }),
                "text",
                Some("¿Dónde está? 😀"),
            ),
            (
                json!({ "type": "text", "text": { "body": "  " } }),
                "text",
                None,
            ),
            (
                json!({ "type": "button", "button": { "payload": "YES", "text": "Sí, soy yo" } }),
                "button",
                Some("Sí, soy yo"),
            ),
            (
                json!({ "type": "interactive", "context": { "from": "15550783881", "id": "wamid.Q" },
                     "interactive": { "type": "button_reply", "button_reply": { "id": "b1", "title": "Agendar" } } }),
                "interactive",
                Some("Agendar"),
            ),
            (
                json!({ "type": "interactive",
                     "interactive": { "type": "list_reply", "list_reply": { "id": "l2", "title": "Martes", "description": "10:00" } } }),
                "interactive",
                Some("Martes"),
            ),
            (
                json!({ "type": "interactive",
                     "interactive": { "type": "nfm_reply", "nfm_reply": { "name": "flow", "body": "Sent", "response_json": "{}" } } }),
                "interactive",
                None,
            ),
            (media("image", Some("mi casa")), "image", Some("mi casa")),
            (media("video", Some("el video")), "video", Some("el video")),
            (
                media("document", Some("contrato")),
                "document",
                Some("contrato"),
            ),
            (media("image", None), "image", None),
            (
                json!({ "type": "audio", "audio": { "id": "a1", "mime_type": "audio/ogg", "voice": true } }),
                "audio",
                None,
            ),
            (
                json!({ "type": "sticker", "sticker": { "id": "s1", "animated": false } }),
                "sticker",
                None,
            ),
            (
                json!({ "type": "location", "location": { "latitude": 19.43, "longitude": "-99.13", "name": "Zócalo" } }),
                "location",
                None,
            ),
            (
                json!({ "type": "contacts", "contacts": [{ "name": { "formatted_name": "Luis" },
                     "phones": [{ "phone": "+52 55 1111 2222", "wa_id": "5215511112222", "type": "CELL" }] }] }),
                "contacts",
                None,
            ),
            (
                json!({ "type": "reaction", "reaction": { "message_id": "wamid.Q", "emoji": "👍" } }),
                "reaction",
                None,
            ),
            (
                json!({ "type": "order", "order": { "catalog_id": "c1", "text": "esto",
                     "product_items": [{ "product_retailer_id": "p1", "quantity": 2, "item_price": "10.5", "currency": "MXN" }] } }),
                "order",
                None,
            ),
        ];
        for (fields, message_type, body) in cases {
            let message = only_message(fields.clone());
            assert_eq!(message.message_type, message_type, "{fields}");
            assert_eq!(message.body.as_deref(), body, "{fields}");
            assert_eq!(message.profile_name.as_deref(), Some("Ana"));
        }
    }

    #[test]
    fn typed_objects_keep_what_meta_sent() {
        let location =
            json!({ "type": "location", "location": { "latitude": "19.43", "longitude": -99.13 } });
        let parsed: Message = serde_json::from_value(message("wamid.L", location)).unwrap();
        let MessageContent::Location(location) = parsed.content else {
            panic!("not a location");
        };
        assert_eq!(
            (location.latitude, location.longitude),
            (Some(19.43), Some(-99.13))
        );

        let order = json!({ "type": "order", "order": { "product_items": [{ "quantity": "3" }] } });
        let parsed: Message = serde_json::from_value(message("wamid.O", order)).unwrap();
        let MessageContent::Order(order) = parsed.content else {
            panic!("not an order");
        };
        assert_eq!(order.product_items[0].quantity, Some(3.0));
    }

    #[test]
    fn a_username_only_sender_is_keyed_by_their_user_id() {
        let payload = envelope(vec![messages_change(json!({
            "contacts": [{ "user_id": "US.13491208655302741918",
                           "profile": { "name": "Ana", "username": "ana.mx" } }],
            "messages": [{
                "from_user_id": "US.13491208655302741918",
                "id": "wamid.U1",
                "timestamp": "1749416383",
                "type": "text",
                "text": { "body": "hola" }
            }]
        }))]);
        let WebhookEvent::Message(message) = one_event(events_of(payload)) else {
            panic!("expected one message");
        };
        assert_eq!(message.customer_key.as_str(), "US.13491208655302741918");
        assert_eq!(message.wa_id, None);
        assert_eq!(
            message.whatsapp_user_id.as_deref(),
            Some("US.13491208655302741918")
        );
        assert_eq!(message.profile_name.as_deref(), Some("Ana"));
    }

    #[test]
    fn the_sender_contact_is_found_by_id_among_several() {
        let payload = envelope(vec![messages_change(json!({
            "contacts": [
                { "profile": { "name": "Otro" }, "wa_id": "16505551234" },
                { "profile": { "name": "Ana" }, "user_id": "US.1", "wa_id": "5215512345678" }
            ],
            "messages": [message("wamid.C", json!({ "type": "text", "text": { "body": "x" } }))]
        }))]);
        let WebhookEvent::Message(message) = one_event(events_of(payload)) else {
            panic!("expected one message");
        };
        assert_eq!(message.profile_name.as_deref(), Some("Ana"));
        assert_eq!(message.wa_id.as_deref(), Some("5215512345678"));
        assert_eq!(message.whatsapp_user_id.as_deref(), Some("US.1"));
    }

    #[test]
    fn a_sender_who_cannot_be_keyed_is_ignored_with_the_reason() {
        let payload = envelope(vec![messages_change(json!({
            "messages": [
                { "id": "wamid.N1", "timestamp": "1749416383", "type": "text", "text": { "body": "?" } },
                { "from": "not-a-number", "id": "wamid.N2", "timestamp": "1749416383",
                  "type": "text", "text": { "body": "?" } }
            ]
        }))]);
        let events = events_of(payload);
        assert_eq!(events.len(), 2);
        for event in events {
            let WebhookEvent::Ignored { reason, raw } = event else {
                panic!("expected ignored, got {event:?}");
            };
            assert!(reason.contains("from_user_id"), "{reason}");
            assert_eq!(raw["type"], "text");
        }
    }

    #[test]
    fn an_unknown_message_type_is_kept_with_its_object() {
        let fields =
            json!({ "type": "poll_vote", "poll_vote": { "option": 2 }, "brand_new_field": true });
        let inbound = only_message(fields.clone());
        assert_eq!(inbound.message_type, "poll_vote");
        assert_eq!(inbound.body, None);
        assert_eq!(inbound.payload.as_ref().unwrap()["poll_vote"]["option"], 2);

        let parsed: Message = serde_json::from_value(message("wamid.P", fields)).unwrap();
        assert_eq!(
            parsed.content,
            MessageContent::Unknown {
                message_type: "poll_vote".to_owned(),
                object: Some(json!({ "option": 2 })),
            }
        );
    }

    #[test]
    fn a_system_message_is_ignored_and_an_unsupported_one_is_a_message_with_its_errors() {
        let payload = envelope(vec![messages_change(json!({
            "messages": [
                { "from": "5215512345678", "id": "wamid.SYS", "timestamp": "1749416383", "type": "system",
                  "system": { "body": "User A changed from 5215512345678 to 5215587654321",
                              "wa_id": "5215587654321", "type": "user_changed_number" } },
                { "from": "5215512345678", "id": "wamid.UNS", "timestamp": "1749416384", "type": "unsupported",
                  "unsupported": { "type": "poll_creation" },
                  "errors": [{ "code": 131051, "title": "Message type unknown", "message": "Message type unknown",
                               "error_data": { "details": "Message type is currently not supported." } }] }
            ]
        }))]);
        let events = events_of(payload);
        let [
            WebhookEvent::Ignored { reason, raw },
            WebhookEvent::Message(unsupported),
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        assert!(reason.contains("user_changed_number"), "{reason}");
        assert_eq!(raw["id"], "wamid.SYS");
        assert_eq!(unsupported.message_type, "unsupported");
        assert_eq!(unsupported.body, None);
        assert_eq!(
            unsupported.payload.as_ref().unwrap()["errors"][0]["code"],
            131051
        );

        let parsed: Message = serde_json::from_value(raw_message_of(&events[1])).unwrap();
        assert_eq!(parsed.errors[0].code, Some(131051));
        assert_eq!(
            parsed.errors[0].details(),
            Some("Message type is currently not supported.")
        );
    }

    fn raw_message_of(event: &WebhookEvent) -> Value {
        match event {
            WebhookEvent::Message(message) => message.payload.clone().unwrap(),
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn statuses_map_to_delivery_updates_and_failed_ones_keep_their_errors() {
        let failed_errors = json!([{
            "code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
            "error_data": { "details": "Message failed to send because more than 24 hours have passed." },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
        }]);
        let mut failed = status("wamid.F", "failed", "1751142888");
        failed["errors"] = failed_errors.clone();
        let mut sent = status("wamid.S", "sent", "1750030073");
        sent["pricing"] = json!({ "billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing" });
        sent["conversation"] = json!({ "id": "c1", "origin": { "type": "marketing" } });
        let payload = envelope(vec![messages_change(json!({
            "statuses": [sent, failed, status("wamid.V", "played", "1751142889"), status("wamid.W", "deleted", "1751142890")]
        }))]);
        let events = events_of(payload);
        let [
            WebhookEvent::Status(sent),
            WebhookEvent::Status(failed),
            WebhookEvent::Ignored { reason: played, .. },
            WebhookEvent::Ignored {
                reason: unknown, ..
            },
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        assert_eq!(
            sent,
            &StatusEvent {
                update: DeliveryUpdate {
                    wamid: MessageId::parse("wamid.S").unwrap(),
                    status: DeliveryStatus::Sent,
                    at: at(1_750_030_073),
                    errors: None,
                },
                recipient_id: Some(Phone("5215512345678".to_owned())),
                recipient_user_id: None,
                phone_number_id: Some("106540352242922".to_owned()),
            }
        );
        assert_eq!(failed.update.status, DeliveryStatus::Failed);
        assert_eq!(failed.update.errors, Some(failed_errors));
        assert!(played.contains("\"played\""), "{played}");
        assert!(unknown.contains("\"deleted\""), "{unknown}");
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
        let payload = envelope(vec![messages_change(json!({
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "5215512345678" }],
            "messages": [message("wamid.D", json!({ "type": "text", "text": { "body": "hola" } }))],
            "statuses": [status("wamid.S", "sent", "1750030073")]
        }))]);
        let parsed: WebhookPayload = serde_json::from_value(payload).unwrap();
        let debug = format!("{parsed:?} {:?}", events(&parsed));
        assert!(!debug.contains("5512345678"), "{debug}");
        assert!(!debug.contains("512345678"), "{debug}");
        assert!(debug.contains("5678"), "{debug}");
    }
}
