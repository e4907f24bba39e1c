//! Who a customer is, whatever form of their number a message arrives with.
//!
//! WhatsApp reports Mexican mobiles as `521` + 10 digits and Argentine ones as `549` + 10 digits,
//! while forms and CRMs hold `52`/`54` + 10 digits; Brazilian mobiles come with or without the
//! ninth digit. A [`CustomerKey`] folds all of these onto one canonical form, so a form's
//! "55 1234 5678" and a webhook's `5215512345678` find the same session.

use std::fmt;

use phonenumber::country::Id as CountryId;
use serde::{Deserialize, Serialize};

/// The canonical identity of a customer: folded E.164 digits, or a WhatsApp business-scoped user
/// id (`US.1349…`) for a sender who has a username and no phone number in the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerKey(String);

/// A phone number in E.164 form (`+525512345678`), as entered on the form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerKeyError {
    #[error("a WhatsApp id must be 7 to 15 digits, got {0:?}")]
    NotWhatsAppId(String),
    #[error("a WhatsApp user id looks like `US.1234…`, got {0:?}")]
    NotWhatsAppUserId(String),
    #[error("{0:?} is not a phone number")]
    Unparsable(String),
    #[error("{input:?} is not a valid phone number (read as {e164})")]
    Invalid { input: String, e164: String },
}

impl CustomerKey {
    /// The key of a WhatsApp sender id (`from`/`wa_id`: digits, no `+`).
    pub fn from_whatsapp_id(wa_id: &str) -> Result<Self, CustomerKeyError> {
        if !is_e164_digits(wa_id) {
            return Err(CustomerKeyError::NotWhatsAppId(wa_id.to_owned()));
        }
        Ok(Self(fold_alternates(wa_id)))
    }

    /// The key of a username-only sender: the business-scoped user id (`from_user_id`).
    pub fn from_whatsapp_user_id(user_id: &str) -> Result<Self, CustomerKeyError> {
        if !is_business_scoped_user_id(user_id) {
            return Err(CustomerKeyError::NotWhatsAppUserId(user_id.to_owned()));
        }
        Ok(Self(user_id.to_owned()))
    }

    /// The key of a number entered on the form.
    pub fn from_phone(phone: &PhoneNumber) -> Self {
        Self(fold_alternates(phone.digits()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key with all but the last four characters hidden, for logs.
    pub fn masked(&self) -> String {
        let visible = self.0.len().saturating_sub(4);
        format!("{}{}", "*".repeat(visible), &self.0[visible..])
    }
}

impl TryFrom<String> for CustomerKey {
    type Error = CustomerKeyError;

    /// Reads a key back from storage: a stored key is already folded, and folding is idempotent.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_business_scoped_user_id(&value) {
            Ok(Self(value))
        } else {
            Self::from_whatsapp_id(&value)
        }
    }
}

impl From<CustomerKey> for String {
    fn from(key: CustomerKey) -> Self {
        key.0
    }
}

impl fmt::Display for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PhoneNumber {
    /// Parses a number as a person would type it; a number without `+` is read as a number of
    /// `default_country`. Only numbers valid for their country are accepted.
    pub fn parse(input: &str, default_country: CountryId) -> Result<Self, CustomerKeyError> {
        let parsed = phonenumber::parse(Some(default_country), input)
            .map_err(|_| CustomerKeyError::Unparsable(input.to_owned()))?;
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        if !phonenumber::is_valid(&parsed) {
            return Err(CustomerKeyError::Invalid {
                input: input.to_owned(),
                e164,
            });
        }
        Ok(Self(e164))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without the leading `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = CustomerKeyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.strip_prefix('+') {
            Some(digits) if is_e164_digits(digits) => Ok(Self(value)),
            _ => Err(CustomerKeyError::Unparsable(value)),
        }
    }
}

impl From<PhoneNumber> for String {
    fn from(phone: PhoneNumber) -> Self {
        phone.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_e164_digits(s: &str) -> bool {
    (7..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0')
}

/// `CC.` followed by an alphanumeric id, as in Meta's examples (`US.13491208655302741918`).
fn is_business_scoped_user_id(s: &str) -> bool {
    let Some((country, id)) = s.split_once('.') else {
        return false;
    };
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Folds WhatsApp's alternate forms of one number onto one:
/// - Mexico: `521` + 10 digits → `52` + 10 digits (the mobile "1" was retired in 2019);
/// - Argentina: `549` + 10 digits → `54` + 10 digits (the mobile "9");
/// - Brazil: `55` + area code + an 8-digit mobile (first digit 6–9) → with the ninth digit `9`
///   added, the form in use since 2016. Landlines (first digit 2–5) are left alone.
///
/// Every other number is returned unchanged. Folding a folded number changes nothing.
fn fold_alternates(digits: &str) -> String {
    let len = digits.len();
    if len == 13 && digits.starts_with("521") {
        return format!("52{}", &digits[3..]);
    }
    if len == 13 && digits.starts_with("549") {
        return format!("54{}", &digits[3..]);
    }
    if len == 12 && digits.starts_with("55") {
        let (area, subscriber) = (&digits[2..4], &digits[4..]);
        if !area.starts_with('0') && matches!(subscriber.as_bytes()[0], b'6'..=b'9') {
            return format!("55{area}9{subscriber}");
        }
    }
    digits.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(wa_id: &str) -> String {
        CustomerKey::from_whatsapp_id(wa_id).unwrap().0
    }

    fn form_key(input: &str, country: CountryId) -> String {
        CustomerKey::from_phone(&PhoneNumber::parse(input, country).unwrap()).0
    }

    #[test]
    fn mexican_whatsapp_and_form_forms_are_one_customer() {
        assert_eq!(key("5215512345678"), "525512345678");
        assert_eq!(key("525512345678"), "525512345678");
        assert_eq!(form_key("+52 55 1234 5678", CountryId::MX), "525512345678");
        assert_eq!(form_key("55 1234 5678", CountryId::MX), "525512345678");
    }

    #[test]
    fn argentine_whatsapp_and_form_forms_are_one_customer() {
        assert_eq!(key("5491112345678"), "541112345678");
        assert_eq!(key("541112345678"), "541112345678");
        assert_eq!(
            form_key("+54 9 11 1234-5678", CountryId::AR),
            "541112345678"
        );
        assert_eq!(form_key("+54 11 1234-5678", CountryId::AR), "541112345678");
    }

    #[test]
    fn brazilian_mobiles_gain_the_ninth_digit_and_landlines_do_not() {
        assert_eq!(key("551187654321"), "5511987654321");
        assert_eq!(key("5511987654321"), "5511987654321");
        assert_eq!(key("551134567890"), "551134567890", "landline");
        assert_eq!(form_key("(11) 98765-4321", CountryId::BR), "5511987654321");
    }

    #[test]
    fn other_countries_are_untouched() {
        assert_eq!(key("16505551234"), "16505551234");
        assert_eq!(key("34612345678"), "34612345678");
        assert_eq!(form_key("+44 7911 123456", CountryId::MX), "447911123456");
        // Not the Mexican/Argentine mobile shapes: wrong length.
        assert_eq!(key("52155123456"), "52155123456");
        assert_eq!(key("549111234567"), "549111234567");
    }

    #[test]
    fn username_only_senders_are_keyed_by_their_user_id() {
        let k = CustomerKey::from_whatsapp_user_id("US.13491208655302741918").unwrap();
        assert_eq!(k.as_str(), "US.13491208655302741918");
        assert!(CustomerKey::from_whatsapp_user_id("13491208655302741918").is_err());
        assert!(CustomerKey::from_whatsapp_user_id("US.").is_err());
        assert!(CustomerKey::from_whatsapp_user_id("us.123").is_err());
    }

    #[test]
    fn malformed_ids_and_numbers_are_refused_with_the_input_named() {
        for bad in [
            "",
            "+5215512345678",
            "12345",
            "0521551234567",
            "52155123456789012",
            "52 1 55",
        ] {
            let err = CustomerKey::from_whatsapp_id(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(matches!(
            PhoneNumber::parse("not a number", CountryId::MX),
            Err(CustomerKeyError::Unparsable(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+52 55 1234", CountryId::MX),
            Err(CustomerKeyError::Invalid { .. })
        ));
    }

    #[test]
    fn stored_keys_read_back_as_the_same_key() {
        for stored in ["525512345678", "US.123abc"] {
            let k: CustomerKey = serde_json::from_value(serde_json::json!(stored)).unwrap();
            assert_eq!(k.as_str(), stored);
        }
        assert!(serde_json::from_value::<CustomerKey>(serde_json::json!("x")).is_err());
    }

    #[test]
    fn masked_keys_show_only_the_last_four() {
        let k = CustomerKey::from_whatsapp_id("5215512345678").unwrap();
        assert_eq!(k.masked(), "********5678");
    }

    proptest! {
        #[test]
        fn folding_is_idempotent(digits in "[1-9][0-9]{6,14}") {
            let once = fold_alternates(&digits);
            prop_assert_eq!(fold_alternates(&once), once.clone());
            prop_assert_eq!(CustomerKey::from_whatsapp_id(&once).unwrap().0, once);
        }

        #[test]
        fn numbers_of_other_countries_are_left_alone(
            // Country codes that do not start with 52, 54 or 55.
            digits in "(1|7|3[0-9]|4[0-9]|6[0-9]|8[0-9]|9[0-9]|5[0136-9])[0-9]{6,12}"
        ) {
            prop_assert_eq!(fold_alternates(&digits), digits);
        }

        #[test]
        fn mexican_and_argentine_forms_fold_together(national in "[1-9][0-9]{9}") {
            prop_assert_eq!(fold_alternates(&format!("521{national}")), format!("52{national}"));
            prop_assert_eq!(fold_alternates(&format!("549{national}")), format!("54{national}"));
        }
    }
}
