//! The payload as Meta sends it, read leniently: one element that cannot be read is kept, raw,
//! with the reason, and costs none of its neighbours.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde_json::Value;

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
    /// In a `user_preferences` change: users who stopped or resumed marketing messages.
    #[serde(default)]
    pub user_preferences: Vec<Lenient<UserPreference>>,
    /// In a `smb_message_echoes` change: messages staff sent from the WhatsApp Business app (or
    /// a device linked to it) on the same number.
    #[serde(default)]
    pub message_echoes: Vec<Lenient<MessageEcho>>,
}

/// A message the business sent from the WhatsApp Business app on a number it shares with the
/// Cloud API (coexistence): Meta's `smb_message_echoes` webhook.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessageEcho {
    /// The wamid of the message sent.
    pub id: String,
    /// Unix seconds: a string in Meta's example, an integer in its table; both are read.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub timestamp: Option<f64>,
    /// The business's display number.
    pub from: Option<String>,
    /// The customer's number, as the business app addressed it (perhaps with a `+`).
    pub to: Option<String>,
    /// The `type` and the object named after it, as in a customer's message.
    #[serde(flatten)]
    pub content: MessageContent,
}

/// The business number the change is about.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub display_phone_number: Option<String>,
    /// The id to reply from: the send URL's `<PHONE_NUMBER_ID>`.
    pub phone_number_id: Option<String>,
}

/// A WhatsApp user's marketing message preference (the `user_preferences` webhook): they told
/// WhatsApp to stop, or to resume, the business's marketing messages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserPreference {
    /// The user's WhatsApp id.
    pub wa_id: Option<Phone>,
    /// The business-scoped user id (`US.1349…`), for a user known by username.
    pub user_id: Option<String>,
    /// `User requested to stop marketing messages`, …
    pub detail: Option<String>,
    /// `marketing_messages`.
    pub category: Option<String>,
    /// `stop` or `resume`.
    pub value: Option<String>,
    /// Unix seconds: a number in Meta's documentation; a numeric string is read too.
    #[serde(default, deserialize_with = "number_or_numeric_string")]
    pub timestamp: Option<f64>,
}

/// A phone number or WhatsApp id as Meta wrote it (`from`, `wa_id`, `recipient_id`: digits, no
/// `+`). `Debug` shows only its last four characters, so parsed payloads can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Phone(pub(super) String);

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
pub(super) fn mask(text: &str) -> String {
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
    /// `user_changed_number` or `user_changed_user_id` (older: `customer_changed_number`,
    /// `customer_identity_changed`).
    #[serde(rename = "type")]
    pub system_type: Option<String>,
    /// The user's new WhatsApp id.
    pub wa_id: Option<Phone>,
    /// The user's business-scoped user id before the change, and after it (a changed number
    /// changes it too).
    pub previous_user_id: Option<String>,
    pub user_id: Option<String>,
    /// The same for the parent business-scoped user id, when the business has them enabled.
    pub previous_parent_user_id: Option<String>,
    pub parent_user_id: Option<String>,
}

/// One user's business-scoped user id change in a `user_id_update` change (older
/// documentation; Meta now sends it as a system message).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserIdUpdate {
    pub previous_user_id: Option<String>,
    pub user_id: Option<String>,
    /// The user's WhatsApp number, when it can be shared.
    pub wa_id: Option<Phone>,
    /// Unix seconds: a number or a numeric string.
    #[serde(default, deserialize_with = "number_or_numeric_string_u64")]
    pub timestamp: Option<u64>,
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

/// [`number_or_numeric_string`], as whole seconds (`Eq` stays derivable).
fn number_or_numeric_string_u64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Ok(number_or_numeric_string(deserializer)?
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(|seconds| seconds as u64))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::webhook::test_support::message;
    use serde_json::json;

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
}
