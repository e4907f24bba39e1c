//! The messenger port: how the bridge talks to a customer. The WhatsApp Cloud API is the
//! adapter ([`crate::whatsapp::GraphClient`]).

use std::fmt;
use std::future::Future;

use crate::domain::{AccountProblem, CustomerKey, MessageId, Session};

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// E.164 with the `+`: WhatsApp prepends the business number's country code otherwise.
    Phone(String),
    /// A username-only customer's business-scoped user id.
    User(String),
}

impl Recipient {
    /// The folded key is the dialable form (`52…`, `54…`): WhatsApp refuses the `549…` form of
    /// Argentine numbers on send (131030) and rewrites Mexican ones itself.
    pub fn for_customer(customer: &CustomerKey) -> Self {
        let key = customer.as_str();
        if key.bytes().all(|b| b.is_ascii_digit()) {
            Self::Phone(format!("+{key}"))
        } else {
            Self::User(key.to_owned())
        }
    }

    /// A customer as their session knows them: by phone, else by their business-scoped user id
    /// as WhatsApp last reported it (it changes; the session keeps the key it started with).
    pub fn for_session(session: &Session) -> Self {
        match (
            Self::for_customer(&session.customer_key),
            &session.whatsapp_user_id,
        ) {
            (Self::User(_), Some(current)) => Self::User(current.clone()),
            (recipient, _) => recipient,
        }
    }
}

/// An approved template with positional body parameters (`{{1}}` = the customer's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub language: String,
    pub body_parameters: Vec<String>,
}

/// A message WhatsApp accepted (a 200 means accepted, not delivered).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub wamid: MessageId,
    /// `text` or `template`.
    pub message_type: &'static str,
    /// The text sent (for a template, its parameters).
    pub body: String,
    /// The request body as sent, for the record.
    pub payload: serde_json::Value,
}

/// A media file a customer sent (a voice note), downloaded.
#[derive(Clone, PartialEq, Eq)]
pub struct Media {
    pub bytes: Vec<u8>,
    /// As WhatsApp gave it: `audio/ogg; codecs=opus`.
    pub mime_type: String,
}

impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Media")
            .field("bytes", &self.bytes.len())
            .field("mime_type", &self.mime_type)
            .finish()
    }
}

/// Graph's error object: `{"error": {"code", "message", "error_data": {"details"}, ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub status: u16,
    pub code: i64,
    /// `error_subcode`, when Graph gave one (100 with 33: the number is not ours to use).
    pub subcode: Option<i64>,
    pub message: String,
    pub details: Option<String>,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Graph error {} (HTTP {}): {}",
            self.code, self.status, self.message
        )?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        Ok(())
    }
}

/// Classified by Graph's error code, as Meta asks, not by HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum MessengerError {
    /// 131047: more than 24 hours since the customer last wrote; only a template may be sent.
    #[error("WhatsApp needs a template here: {0}")]
    NeedsTemplate(GraphError),
    /// Throughput limits (130429, 131056, 4, 80007) that outlasted our retries.
    #[error("WhatsApp is rate limiting us: {0}")]
    RateLimited(GraphError),
    /// Temporary trouble on Meta's side (131000, 131057, 131016, 133004, 2, 5xx).
    #[error("WhatsApp is temporarily unavailable: {0}")]
    Unavailable(GraphError),
    /// Anything a retry cannot fix: undeliverable (131026), bad template (132000, 132001),
    /// bad parameter (100), expired token (190), …
    #[error("WhatsApp refused the message: {0}")]
    Permanent(GraphError),
    /// No answer in time: the message may or may not have been sent.
    #[error("WhatsApp did not answer in time")]
    Timeout,
    #[error("could not connect to WhatsApp: {0}")]
    Connect(String),
    #[error("WhatsApp answered something unexpected")]
    Unexpected(#[source] anyhow::Error),
    /// A media file larger than the caller takes: it is not downloaded (or not past the limit).
    #[error("the media file has more than the {limit} bytes allowed")]
    MediaTooLarge { limit: u64 },
}

impl MessengerError {
    /// Worth another try later (by the queue).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited(_) | Self::Unavailable(_) | Self::Timeout | Self::Connect(_)
        )
    }

    /// A failure of the whole WhatsApp account rather than of this message: the token (190), a
    /// permission or capability (3, 10, 200–299, 131005), or a phone number id the token may
    /// not use (100 with subcode 33). Every customer is affected until a person fixes it.
    pub fn account_problem(&self) -> Option<AccountProblem> {
        let Self::Permanent(error) = self else {
            return None;
        };
        match (error.code, error.subcode) {
            (190, _) => Some(AccountProblem::WhatsAppToken),
            (3 | 10 | 200..=299 | 131_005, _) | (100, Some(33)) => {
                Some(AccountProblem::WhatsAppPermission)
            }
            _ => None,
        }
    }

    /// The Graph error code, when WhatsApp gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::NeedsTemplate(e)
            | Self::RateLimited(e)
            | Self::Unavailable(e)
            | Self::Permanent(e) => Some(e.code),
            _ => None,
        }
    }
}

pub trait Messenger: Send + Sync {
    /// Sends text, split into several messages when it is longer than WhatsApp allows; the
    /// first one quotes `reply_to`.
    fn send_text(
        &self,
        to: &Recipient,
        text: &str,
        reply_to: Option<&MessageId>,
    ) -> impl Future<Output = Result<Vec<SentMessage>, MessengerError>> + Send;

    fn send_template(
        &self,
        to: &Recipient,
        template: &Template,
    ) -> impl Future<Output = Result<SentMessage, MessengerError>> + Send;

    /// Marks an inbound message (and those before it) read, optionally showing "typing…"
    /// until the reply or for 25 seconds.
    fn mark_read(
        &self,
        message: &MessageId,
        show_typing: bool,
    ) -> impl Future<Output = Result<(), MessengerError>> + Send;

    /// Downloads a media file a customer sent, by its id; one larger than `max_bytes` is
    /// refused ([`MessengerError::MediaTooLarge`]) without reading it whole.
    fn fetch_media(
        &self,
        media_id: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Media, MessengerError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_are_addressed_by_their_dialable_number_or_user_id() {
        let mx = CustomerKey::from_whatsapp_id("5215512345678").unwrap();
        assert_eq!(
            Recipient::for_customer(&mx),
            Recipient::Phone("+525512345678".into())
        );
        let user = CustomerKey::from_whatsapp_user_id("US.13491208655302741918").unwrap();
        assert_eq!(
            Recipient::for_customer(&user),
            Recipient::User("US.13491208655302741918".into())
        );
    }
}
