//! What a web form may carry besides the phone number: the customer's name, and extra fields
//! the agent gets as dynamic variables. Each value is cleaned and checked once, when it is made:
//! the customer reads the name in our template and the agent reads the fields, so neither may
//! carry what the sender hid in it (invisible or reordering characters) and the name may not
//! carry a link, an e-mail address or a phone number.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Dynamic variables the engine sets itself: a form field may not take their names.
pub const RESERVED_FIELDS: [&str; 3] = [
    "customer_name",
    "conversation_continues",
    "previous_conversation",
];

/// The form's own fields: they are never extra fields.
pub const FORM_OWN_FIELDS: [&str; 3] = ["name", "phone", "consent"];

/// Characters that show nothing but change what a text looks like or how it compares: the
/// zero-width ones (U+200B–U+200D, U+2060, U+FEFF) and the bidirectional controls (U+061C,
/// U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which can reorder what the reader sees.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FEFF}'
            | '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// The name a customer gave, as the template shows it: in Unicode NFC, without control,
/// zero-width or bidirectional characters, every run of white space (line breaks and tabs
/// included) one space, trimmed, 1 to [`CustomerName::MAX_CHARS`] characters, and holding no
/// link, e-mail address or phone number.
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
    #[error("name must be a name, not a link")]
    Link,
    #[error("name must be a name, not an e-mail address")]
    Email,
    #[error("name must be a name, not a phone number")]
    PhoneNumber,
}

impl CustomerName {
    /// The longest name, in characters (after cleaning).
    pub const MAX_CHARS: usize = 60;
    /// A run of this many digits, separators aside, is a phone number.
    const PHONE_DIGITS: usize = 7;

    pub fn parse(text: &str) -> Result<Self, NameError> {
        let mut cleaned = String::with_capacity(text.len());
        let mut pending_space = false;
        for c in text.chars() {
            if c.is_whitespace() {
                pending_space = true;
            } else if !c.is_control() && !is_invisible(c) {
                if pending_space && !cleaned.is_empty() {
                    cleaned.push(' ');
                }
                pending_space = false;
                cleaned.push(c);
            }
        }
        // Composed once nothing stands between a letter and its accents any more.
        let name: String = cleaned.nfc().collect();
        if name.is_empty() {
            return Err(NameError::Blank);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(NameError::TooLong);
        }
        // Looked for in the compatibility form, where full-width and other look-alike
        // letters, digits and signs are the plain ones.
        let folded = name.as_str().nfkc().collect::<String>().to_lowercase();
        if has_link(&folded) {
            return Err(NameError::Link);
        }
        if has_email(&folded) {
            return Err(NameError::Email);
        }
        if has_phone_number(&folded, Self::PHONE_DIGITS) {
            return Err(NameError::PhoneNumber);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `http://`, `https://`, `www.`, or a `word.tld/` shape (`bit.ly/x`, `example.com/`).
fn has_link(text: &str) -> bool {
    if ["http://", "https://", "www."]
        .iter()
        .any(|start| text.contains(start))
    {
        return true;
    }
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().any(|(slash, &c)| {
        if c != '/' {
            return false;
        }
        // Back from the slash: the top-level domain's letters, a dot, a label.
        let tld = chars[..slash]
            .iter()
            .rev()
            .take_while(|c| c.is_alphabetic())
            .count();
        let dot = slash - tld;
        tld >= 2
            && dot >= 2
            && chars[dot - 1] == '.'
            && (chars[dot - 2].is_alphanumeric() || chars[dot - 2] == '-')
    })
}

/// `local@domain.tld`: something before the `@`, and a dot between letters after it.
fn has_email(text: &str) -> bool {
    text.split_whitespace().any(|word| {
        word.split_once('@').is_some_and(|(local, domain)| {
            let domain = domain.trim_end_matches(|c: char| !c.is_alphanumeric());
            !local.is_empty()
                && domain
                    .split_once('.')
                    .is_some_and(|(host, tld)| !host.is_empty() && !tld.is_empty())
        })
    })
}

/// `digits` or more digits in a row, whatever separates them (spaces, dashes, dots, brackets,
/// `+`): only a letter ends the run.
fn has_phone_number(text: &str, digits: usize) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_numeric() {
            run += 1;
            if run >= digits {
                return true;
            }
        } else if c.is_alphabetic() {
            run = 0;
        }
    }
    false
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

// A set of names is looked up by a plain `&str`: the derived order is the text's.
impl Borrow<str> for FieldName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The extra fields that reach the agent (`FORM_FIELDS`): every other field a form sends is
/// dropped. Empty (the default): none does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedFields(BTreeSet<FieldName>);

impl AllowedFields {
    /// The most names the list may hold: as many dynamic variables as a form may give.
    pub const MAX_FIELDS: usize = 20;

    /// `producto, utm_source` → those two: each a [`FieldName`], none the form's own (`name`,
    /// `phone`, `consent`), at most [`AllowedFields::MAX_FIELDS`]; blank entries are skipped.
    /// The error says what is wrong with the list.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut names = BTreeSet::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if FORM_OWN_FIELDS.contains(&entry) {
                return Err(format!("{entry} is the form's own field, not an extra one"));
            }
            names.insert(FieldName::parse(entry).map_err(|e| e.to_string())?);
        }
        if names.len() > Self::MAX_FIELDS {
            return Err(format!(
                "at most {} fields may reach the agent, {} are listed",
                Self::MAX_FIELDS,
                names.len()
            ));
        }
        Ok(Self(names))
    }

    /// No extra field reaches the agent.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn allows(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &FieldName> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An allowed extra field and its value: in Unicode NFC, without zero-width, bidirectional or
/// control characters other than line breaks and tabs, trimmed, at most
/// [`ExtraField::MAX_VALUE_CHARS`] characters.
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
}

impl ExtraFieldError {
    /// The field at fault.
    pub fn field(&self) -> &str {
        match self {
            Self::NotAName(name) | Self::Reserved(name) | Self::TooLong(name) => name,
        }
    }
}

impl ExtraField {
    /// The longest value, in characters (after cleaning).
    pub const MAX_VALUE_CHARS: usize = 500;

    pub fn new(name: FieldName, value: &str) -> Result<Self, ExtraFieldError> {
        let value: String = value
            .chars()
            .filter(|&c| !is_invisible(c) && (!c.is_control() || matches!(c, '\n' | '\r' | '\t')))
            .nfc()
            .collect();
        let value = value.trim();
        if value.chars().count() > Self::MAX_VALUE_CHARS {
            return Err(ExtraFieldError::TooLong(name.0));
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

/// The per-source limit a browser's form is recorded under: its source's keyed hash (hex
/// HMAC-SHA256 of the address it came from; the address itself is never stored) and how many
/// forms one source may have recorded per hour. Servers' forms have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimit {
    /// 64 lower-case hex digits.
    pub source_hash: String,
    pub per_hour: u32,
}

/// What became of a browser's form: recorded (and decided, as a server's), or not recorded
/// because its source reached its hourly limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserRecording {
    Recorded(super::RecordedSubmission),
    /// Nothing was recorded; one more form from this source fits after `retry_after`.
    Limited {
        retry_after: std::time::Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_counted_in_characters() {
        let name = CustomerName::parse("  Lupita Pérez ").unwrap();
        assert_eq!(name.as_str(), "Lupita Pérez");
        // 60 characters, 120 bytes.
        let sixty = "ñ".repeat(60);
        assert_eq!(CustomerName::parse(&sixty).unwrap().as_str(), sixty);
        assert_eq!(
            CustomerName::parse(&"a".repeat(61)),
            Err(NameError::TooLong)
        );
        // Counted once cleaned: invisible characters do not count.
        let padded = format!("{}\u{200B}\u{200B}", "a".repeat(60));
        assert_eq!(CustomerName::parse(&padded).unwrap().as_str().len(), 60);
        assert_eq!(
            NameError::TooLong.to_string(),
            "name must be at most 60 characters"
        );
    }

    #[test]
    fn a_name_is_required() {
        for blank in ["", "   ", "\t\n", "\u{200B}\u{FEFF}", "\u{202E} \u{0}"] {
            assert_eq!(
                CustomerName::parse(blank),
                Err(NameError::Blank),
                "{blank:?}"
            );
        }
        assert_eq!(NameError::Blank.to_string(), "name is required");
    }

    #[test]
    fn a_name_is_in_nfc_on_one_line_without_invisible_or_bidi_characters() {
        for (given, shown) in [
            // "é" as e and a combining acute accent → one precomposed character, also when
            // a zero-width character stood between them.
            ("Jose\u{301} Luis", "José Luis"),
            ("Mari\u{200B}\u{301}a", "María"),
            // Line breaks, tabs and runs of spaces → one space.
            ("Ana\nBeto", "Ana Beto"),
            ("Ana\t\t  Beto\r\n", "Ana Beto"),
            ("Ana\u{2028}Beto", "Ana Beto"),
            // Other control characters go.
            ("Ana\u{0}", "Ana"),
            ("a\u{1b}[31m", "a[31m"),
            ("Ana\u{7f}\u{85}Beto", "Ana Beto"),
            // Zero-width.
            ("A\u{200B}n\u{200C}a\u{200D}", "Ana"),
            ("\u{FEFF}Ana\u{2060}", "Ana"),
            // Bidirectional: an override that would show "Ana" reversed, isolates, marks.
            ("\u{202E}anA\u{202C}", "anA"),
            ("\u{2066}Ana\u{2069} \u{2067}Beto\u{2068}", "Ana Beto"),
            ("\u{200E}Ana\u{200F}\u{061C}", "Ana"),
            ("\u{202A}\u{202B}\u{202D}Ana", "Ana"),
        ] {
            let name = CustomerName::parse(given).unwrap();
            assert_eq!(name.as_str(), shown, "{given:?}");
        }
        // Already clean names, in any script, pass as they are.
        for name in ["María José O'Neill-Ruiz", "Zoë", "محمد", "李小龙", "Ana 👩🏽"] {
            assert_eq!(CustomerName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn a_name_with_a_link_an_email_or_a_phone_number_is_refused() {
        for (text, expected) in [
            ("Ana http://x.io", NameError::Link),
            ("Gana dinero https://spam.example", NameError::Link),
            ("HTTPS://EVIL.EXAMPLE", NameError::Link),
            ("Ana www.premio.mx", NameError::Link),
            ("visita bit.ly/premio", NameError::Link),
            ("Ana example.com/", NameError::Link),
            // Hidden behind a zero-width space, or in full-width letters.
            ("Ana www\u{200B}.premio.mx", NameError::Link),
            ("Ana ｗｗｗ．premio．mx", NameError::Link),
            ("Ana bit\u{200B}.ly/x", NameError::Link),
            ("ana@example.com", NameError::Email),
            ("Escribe a Ana.Perez@correo.com.mx", NameError::Email),
            ("Ana ana+promo@example.org.", NameError::Email),
            ("Ana 5512345678", NameError::PhoneNumber),
            ("Llama al +52 (55) 1234-5678", NameError::PhoneNumber),
            ("Ana 55.12.34.5", NameError::PhoneNumber),
            ("Ana 123 4567", NameError::PhoneNumber),
            ("Ana １２３４５６７", NameError::PhoneNumber),
        ] {
            assert_eq!(CustomerName::parse(text), Err(expected), "{text:?}");
        }
        // Dots, slashes, @ and digits that are none of those.
        for name in [
            "J.R. Smith",
            "Ana M.Pérez",
            "Ana/Beto",
            "Ana @ casa",
            "Ana@casa",
            "Luis XIV",
            "Agente 007",
            "Ana 123456",
            "Calle 12 34 56 y 78",
        ] {
            assert_eq!(
                CustomerName::parse(name).map(|n| n.0),
                Ok(name.to_owned()),
                "{name:?}"
            );
        }
        assert_eq!(
            NameError::Email.to_string(),
            "name must be a name, not an e-mail address"
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
        assert!(serde_json::from_str::<CustomerName>("\"www.x.mx\"").is_err());
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
    fn the_allowed_fields_are_a_checked_list_of_names() {
        let allowed = AllowedFields::parse(" producto, utm_source,,producto ").unwrap();
        let names: Vec<&str> = allowed.names().map(FieldName::as_str).collect();
        assert_eq!(names, ["producto", "utm_source"]);
        assert!(allowed.allows("producto") && allowed.allows("utm_source"));
        assert!(!allowed.allows("ciudad") && !allowed.allows("Producto"));
        assert!(AllowedFields::parse("").unwrap().is_empty());
        assert!(!AllowedFields::none().allows("producto"));

        let twenty: Vec<String> = (0..20).map(|n| format!("campo_{n}")).collect();
        assert!(AllowedFields::parse(&twenty.join(",")).is_ok());
        for (list, says) in [
            (format!("{},uno_mas", twenty.join(",")), "at most 20"),
            ("producto,Ciudad".to_owned(), "not a field name"),
            ("producto;ciudad".to_owned(), "not a field name"),
            ("customer_name".to_owned(), "set by the bridge"),
            ("phone".to_owned(), "the form's own"),
        ] {
            let error = AllowedFields::parse(&list).unwrap_err();
            assert!(error.contains(says), "{list}: {error}");
        }
    }

    #[test]
    fn field_values_are_cleaned_trimmed_bounded_text_that_may_have_line_breaks() {
        let name = || FieldName::parse("notas").unwrap();
        let field = ExtraField::new(name(), &format!(" {}\r\n\t", "é".repeat(500))).unwrap();
        assert_eq!(field.value().chars().count(), 500, "trimmed");
        let field = ExtraField::new(name(), "hola\nadiós\r\n\tfin").unwrap();
        assert_eq!(
            field.into_parts(),
            ("notas".into(), "hola\nadiós\r\n\tfin".into())
        );
        assert_eq!(ExtraField::new(name(), "  ").unwrap().value(), "");
        for (given, kept) in [
            ("adio\u{301}s", "adiós"),
            ("adio\u{2060}\u{301}s", "adiós"),
            ("a\u{1b}[31m", "a[31m"),
            ("a\u{0}b\u{7f}", "ab"),
            ("\u{202E}sup\u{202C}\u{200B}er\nlínea", "super\nlínea"),
            ("\u{2066}x\u{2069}\u{FEFF}", "x"),
        ] {
            assert_eq!(ExtraField::new(name(), given).unwrap().value(), kept);
        }
        // Counted once cleaned.
        let hidden = format!("{}{}", "x".repeat(500), "\u{200B}".repeat(50));
        assert!(ExtraField::new(name(), &hidden).is_ok());

        let error = ExtraField::new(name(), &"x".repeat(501)).unwrap_err();
        assert_eq!(error, ExtraFieldError::TooLong("notas".into()));
        assert_eq!(error.to_string(), "notas must be at most 500 characters");
    }
}
