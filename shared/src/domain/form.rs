//! What a web form may carry besides the phone number: the customer's name, and extra fields
//! the agent gets as dynamic variables. Each value is checked once, when it is made.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Dynamic variables the engine sets itself: a form field may not take their names.
pub const RESERVED_FIELDS: [&str; 3] = [
    "customer_name",
    "conversation_continues",
    "previous_conversation",
];

/// The name a customer gave: trimmed, 1 to [`CustomerName::MAX_CHARS`] characters, on one line
/// and without other control characters (it goes into a WhatsApp template).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerName(String);

/// Why a text is not a [`CustomerName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is required")]
    Blank,
    #[error("name must be at most {} characters", CustomerName::MAX_CHARS)]
    TooLong,
    #[error("name must not contain control characters (line breaks, tabs, …)")]
    ControlCharacter,
}

impl CustomerName {
    /// The longest name, in characters (after trimming).
    pub const MAX_CHARS: usize = 100;

    pub fn parse(text: &str) -> Result<Self, NameError> {
        let name = text.trim();
        if name.is_empty() {
            return Err(NameError::Blank);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(NameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, NameError> {
        Self::parse(&value)
    }
}

impl From<CustomerName> for String {
    fn from(name: CustomerName) -> String {
        name.0
    }
}

impl fmt::Display for CustomerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an extra field: 1 to [`FieldName::MAX_CHARS`] of `[a-z0-9_]`, and not one of
/// the [`RESERVED_FIELDS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldName(String);

impl FieldName {
    /// The longest field name.
    pub const MAX_CHARS: usize = 40;

    pub fn parse(name: &str) -> Result<Self, ExtraFieldError> {
        let well_formed = (1..=Self::MAX_CHARS).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return Err(ExtraFieldError::NotAName(Self::shown(name)));
        }
        if RESERVED_FIELDS.contains(&name) {
            return Err(ExtraFieldError::Reserved(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Any would-be field name as an error may echo it: bounded, without control characters.
    pub fn shown(name: &str) -> String {
        name.chars()
            .filter(|c| !c.is_control())
            .take(Self::MAX_CHARS + 20)
            .collect()
    }
}

/// An extra field and its value: trimmed, at most [`ExtraField::MAX_VALUE_CHARS`] characters,
/// without control characters other than line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraField {
    name: FieldName,
    value: String,
}

/// Why a field is not an [`ExtraField`]; each names the field (as [`FieldName::shown`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtraFieldError {
    #[error(
        "{0:?} is not a field name: 1 to {max} lowercase letters, digits or underscores",
        max = FieldName::MAX_CHARS
    )]
    NotAName(String),
    #[error("{0} is set by the bridge itself; give the field another name")]
    Reserved(String),
    #[error("{0} must be at most {max} characters", max = ExtraField::MAX_VALUE_CHARS)]
    TooLong(String),
    #[error("{0} must not contain control characters")]
    ControlCharacter(String),
}

impl ExtraFieldError {
    /// The field at fault.
    pub fn field(&self) -> &str {
        match self {
            Self::NotAName(name)
            | Self::Reserved(name)
            | Self::TooLong(name)
            | Self::ControlCharacter(name) => name,
        }
    }
}

impl ExtraField {
    /// The longest value, in characters (after trimming).
    pub const MAX_VALUE_CHARS: usize = 500;

    pub fn new(name: FieldName, value: &str) -> Result<Self, ExtraFieldError> {
        let value = value.trim();
        if value.chars().count() > Self::MAX_VALUE_CHARS {
            return Err(ExtraFieldError::TooLong(name.0));
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ExtraFieldError::ControlCharacter(name.0));
        }
        Ok(Self {
            name,
            value: value.to_owned(),
        })
    }

    pub fn name(&self) -> &FieldName {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// The name and the value, as the agent's dynamic variables hold them.
    pub fn into_parts(self) -> (String, String) {
        (self.name.0, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_counted_in_characters() {
        let name = CustomerName::parse("  Lupita Pérez ").unwrap();
        assert_eq!(name.as_str(), "Lupita Pérez");
        // 100 characters, 200 bytes.
        let hundred = "ñ".repeat(100);
        assert_eq!(CustomerName::parse(&hundred).unwrap().as_str(), hundred);
        assert_eq!(
            CustomerName::parse(&"a".repeat(101)),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn a_name_is_required_and_on_one_line() {
        for blank in ["", "   ", "\t\n"] {
            assert_eq!(
                CustomerName::parse(blank),
                Err(NameError::Blank),
                "{blank:?}"
            );
        }
        for text in ["Ana\nBeto", "Ana\u{0}", "Ana\tBeto", "a\u{1b}[31m"] {
            assert_eq!(
                CustomerName::parse(text),
                Err(NameError::ControlCharacter),
                "{text:?}"
            );
        }
        assert_eq!(NameError::Blank.to_string(), "name is required");
        assert_eq!(
            NameError::TooLong.to_string(),
            "name must be at most 100 characters"
        );
    }

    #[test]
    fn a_name_serializes_as_its_text_and_reads_back_only_if_valid() {
        let name = CustomerName::parse(" Ana ").unwrap();
        assert_eq!(serde_json::to_value(&name).unwrap(), "Ana");
        assert_eq!(
            serde_json::from_str::<CustomerName>("\"Ana\"").unwrap(),
            name
        );
        assert!(serde_json::from_str::<CustomerName>("\"\"").is_err());
    }

    #[test]
    fn field_names_are_plain_bounded_and_not_reserved() {
        for name in ["producto", "utm_source", "a", "campo_2", &"b".repeat(40)] {
            assert_eq!(FieldName::parse(name).unwrap().as_str(), name);
        }
        let long = "a".repeat(41);
        for name in ["Producto", "mi-campo", "", long.as_str(), "ñandú", "a b"] {
            assert_eq!(
                FieldName::parse(name),
                Err(ExtraFieldError::NotAName(name.to_owned())),
                "{name:?}"
            );
        }
        for name in RESERVED_FIELDS {
            let error = FieldName::parse(name).unwrap_err();
            assert_eq!(error, ExtraFieldError::Reserved(name.to_owned()));
            assert_eq!(error.field(), name);
        }
    }

    #[test]
    fn a_bad_field_name_is_shown_bounded_and_without_control_characters() {
        let error = FieldName::parse(&format!("x\u{1b}[31m{}", "y".repeat(200))).unwrap_err();
        let shown = error.field();
        assert_eq!(shown.chars().count(), 60);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[test]
    fn field_values_are_trimmed_bounded_text_that_may_have_line_breaks() {
        let name = || FieldName::parse("notas").unwrap();
        let field = ExtraField::new(name(), &format!(" {}\r\n\t", "é".repeat(500))).unwrap();
        assert_eq!(field.value().chars().count(), 500, "trimmed");
        let field = ExtraField::new(name(), "hola\nadiós\r\n\tfin").unwrap();
        assert_eq!(
            field.into_parts(),
            ("notas".into(), "hola\nadiós\r\n\tfin".into())
        );
        assert_eq!(ExtraField::new(name(), "  ").unwrap().value(), "");

        let error = ExtraField::new(name(), &"x".repeat(501)).unwrap_err();
        assert_eq!(error, ExtraFieldError::TooLong("notas".into()));
        assert_eq!(error.to_string(), "notas must be at most 500 characters");
        for value in ["a\u{1b}[31m", "a\u{0}b", "a\u{7f}"] {
            assert_eq!(
                ExtraField::new(name(), value),
                Err(ExtraFieldError::ControlCharacter("notas".into())),
                "{value:?}"
            );
        }
    }
}
