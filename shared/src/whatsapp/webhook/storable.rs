//! What the store takes, checked before it is asked. `record_webhook` writes a whole delivery in
//! one transaction, so one value its tables refuse would refuse every other customer's messages
//! with it, and Meta would deliver them all again for days. The checks of the tables it writes
//! (`supabase/migrations`) are mirrored here, and each element is read against them:
//!
//! | The store's check                                        | Here                                  |
//! |----------------------------------------------------------|---------------------------------------|
//! | `whatsapp_messages.wamid`: 1 to 256 characters           | `MessageId` (at most 256 bytes)       |
//! | `whatsapp_messages.message_type ~ '^[a-z_]{1,40}$'`      | [`is_message_type`]: else unprocessed |
//! | `sent_at`, a status's `at`: a `timestamptz`              | [`time`]: the years 1 to 9999         |
//! | the `customer_key` domain                                | `CustomerKey`                         |
//! | `chat_sessions.wa_id ~ '^[0-9]{6,20}$'`                  | [`wa_id`]: else left out              |
//! | `chat_sessions.whatsapp_user_id`: 1 to 128 characters    | [`user_id`]: else left out            |
//! | `chat_sessions.whatsapp_profile_name`: at most 200       | [`profile_name`]: cut to 200          |
//! | a status is `sent`, `delivered`, `read` or `failed`      | `status.rs`: others are ignored       |
//! | text and `jsonb` hold no U+0000                          | [`nul_free`], [`nul_free_json`]       |
//! | `unprocessed_webhook_events.reason`: 1 to 2000           | cut by the SQL itself                 |
//!
//! A message whose own words the store cannot hold (its id, its type, its time) is kept as
//! unprocessed, naming the field. What only describes the sender is fitted instead, so that the
//! message is still answered: a WhatsApp id or user id the store refuses is left out (the reply
//! goes to the customer key, which is read from the sender and checked on its own), and a profile
//! name longer than the store holds is cut. WhatsApp lets a profile name have 25 characters, so a
//! longer one is not a person's name as they chose it; its first 200 characters still are what
//! the customer is called there, which is what a business greeting them wants, and the message
//! is answered either way.

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;

use super::payload::Phone;

/// `whatsapp_messages.message_type ~ '^[a-z_]{1,40}$'`.
pub(super) fn is_message_type(message_type: &str) -> bool {
    (1..=40).contains(&message_type.len())
        && message_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// What the store says a message type must be, for the reasons that quote it.
pub(super) const MESSAGE_TYPE_RULE: &str = "1 to 40 of the letters a to z and _";

/// Unix seconds as a time the store takes: `timestamptz` reads the years 1 to 9999 as chrono
/// writes them (a later year gets a `+` PostgreSQL refuses, an earlier one a sign or year 0).
pub(super) fn time(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0).filter(|at| (1..=9999).contains(&at.year()))
}

/// The years [`time`] takes, for the reasons that quote it.
pub(super) const TIME_RULE: &str = "unix seconds within the years 1 to 9999";

/// A WhatsApp id the store keeps (`chat_sessions.wa_id ~ '^[0-9]{6,20}$'`).
pub(super) fn wa_id(wa_id: &Phone) -> Option<String> {
    let digits = wa_id.as_str();
    ((6..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.to_owned())
}

/// A business-scoped user id the store keeps (`chat_sessions.whatsapp_user_id`: 1 to 128
/// characters).
pub(super) fn user_id(user_id: &str) -> Option<String> {
    (1..=128)
        .contains(&user_id.chars().count())
        .then(|| user_id.to_owned())
}

/// `chat_sessions.whatsapp_profile_name`: at most 200 characters.
const MAX_PROFILE_NAME_CHARS: usize = 200;

/// A profile name the store keeps: its first 200 characters (see the module's comment).
pub(super) fn profile_name(name: &str) -> String {
    match name.char_indices().nth(MAX_PROFILE_NAME_CHARS) {
        Some((cut, _)) => name[..cut].trim_end().to_owned(),
        None => name.to_owned(),
    }
}

/// What U+0000 becomes: PostgreSQL's `text` and `jsonb` cannot hold it.
const NUL_STANDS_FOR: &str = "\u{FFFD}";

/// `text` without U+0000, which PostgreSQL cannot hold: each becomes U+FFFD.
pub fn nul_free(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', NUL_STANDS_FOR);
    }
}

/// `value` without U+0000 in any string or key, which `jsonb` refuses (`\u0000 cannot be
/// converted to text`): each becomes U+FFFD.
pub fn nul_free_json(value: &mut Value) {
    match value {
        Value::String(text) => nul_free(text),
        Value::Array(items) => items.iter_mut().for_each(nul_free_json),
        Value::Object(fields) => {
            if fields.keys().any(|key| key.contains('\0')) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(mut key, value)| {
                        nul_free(&mut key);
                        (key, value)
                    })
                    .collect();
            }
            fields.values_mut().for_each(nul_free_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn message_types_are_what_the_store_takes() {
        for taken in ["text", "poll_vote", "unsupported", &"a".repeat(40)] {
            assert!(is_message_type(taken), "{taken}");
        }
        for refused in [
            "",
            "Poll",
            "poll-vote",
            "v2",
            "tëxt",
            "text\n",
            &"a".repeat(41),
        ] {
            assert!(!is_message_type(refused), "{refused}");
        }
    }

    #[test]
    fn times_are_within_the_years_the_store_reads() {
        assert_eq!(time(1_749_416_383).unwrap().year(), 2025);
        assert_eq!(time(0).unwrap().year(), 1970);
        assert!(time(-1).is_some(), "before 1970 is still a time");
        // 9999-12-31T23:59:59Z and the second after it.
        assert!(time(253_402_300_799).is_some());
        assert_eq!(time(253_402_300_800), None, "year 10000");
        assert_eq!(time(-62_135_596_801), None, "year 0");
        assert_eq!(time(i64::MAX), None);
    }

    #[test]
    fn ids_the_store_refuses_are_left_out() {
        let phone = |digits: &str| Phone(digits.to_owned());
        assert_eq!(
            wa_id(&phone("5215512345678")).as_deref(),
            Some("5215512345678")
        );
        assert_eq!(wa_id(&phone("123456")).as_deref(), Some("123456"));
        for refused in ["12345", "+5215512345678", "52 155", "", &"1".repeat(21)] {
            assert_eq!(wa_id(&phone(refused)), None, "{refused}");
        }
        assert_eq!(user_id("US.1").as_deref(), Some("US.1"));
        assert_eq!(
            user_id(&"ñ".repeat(128)).map(|id| id.chars().count()),
            Some(128)
        );
        assert_eq!(user_id(""), None);
        assert_eq!(user_id(&"x".repeat(129)), None);
    }

    #[test]
    fn a_long_profile_name_is_cut_to_200_characters() {
        assert_eq!(profile_name("Ana"), "Ana");
        let exact = "ñ".repeat(200);
        assert_eq!(profile_name(&exact), exact);
        let long = format!("{} {}", "ñ".repeat(199), "😀".repeat(50));
        assert_eq!(profile_name(&long), "ñ".repeat(199), "cut, then trimmed");
        assert_eq!(profile_name(&"😀".repeat(300)).chars().count(), 200);
    }

    #[test]
    fn nul_becomes_the_replacement_character_everywhere() {
        let mut value = json!({
            "a\u{0}b": ["x\u{0}", { "deep": "\u{0}\u{0}" }, 1, null, true],
            "fine": "ok"
        });
        nul_free_json(&mut value);
        assert_eq!(
            value,
            json!({ "a\u{FFFD}b": ["x\u{FFFD}", { "deep": "\u{FFFD}\u{FFFD}" }, 1, null, true],
                    "fine": "ok" })
        );
        assert!(!value.to_string().contains("\\u0000"));
        let mut text = "hola\u{0}".to_owned();
        nul_free(&mut text);
        assert_eq!(text, "hola\u{FFFD}");
    }
}
