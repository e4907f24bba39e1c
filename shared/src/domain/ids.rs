//! Identifiers that cross our boundaries, each parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a string newtype that is non-empty, at most `$max` bytes, and without control
/// characters: the shape every external id we store has.
macro_rules! bounded_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                if value.is_empty() || value.len() > $max || value.chars().any(char::is_control) {
                    return Err(IdError { what: $what, max: $max, value });
                }
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to {max} characters without control characters, got {value:?}")]
pub struct IdError {
    pub what: &'static str,
    pub max: usize,
    pub value: String,
}

bounded_id!(
    /// A WhatsApp message id (`wamid.HBgL…`): unique per message, so it deduplicates deliveries.
    MessageId, "a WhatsApp message id", 256
);
bounded_id!(
    /// A Retell chat id.
    ChatId, "a Retell chat id", 200
);
bounded_id!(
    /// What makes two form submissions "the same one": the `Idempotency-Key` header, or a hash
    /// of the body.
    IdempotencyKey, "an idempotency key", 200
);

/// One turn of a customer's conversation, as claimed from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TurnId(pub uuid::Uuid);

/// A recorded form submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubmissionId(pub uuid::Uuid);

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_empty_long_and_control_characters_naming_what_they_are() {
        assert!(
            MessageId::parse("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=")
                .is_ok()
        );
        let err = MessageId::parse("").unwrap_err();
        assert!(err.to_string().starts_with("a WhatsApp message id must be"));
        assert!(ChatId::parse("x".repeat(201)).is_err());
        assert!(IdempotencyKey::parse("a\nb").is_err());
        assert!(serde_json::from_str::<ChatId>("\"\"").is_err());
    }
}
