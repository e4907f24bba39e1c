//! WhatsApp's notices that a user's business-scoped user id changed. Since August 2026 they come
//! on the `messages` field as system messages: `user_changed_user_id` (only the id changed) and
//! `user_changed_number` (a new number, which regenerates the id: both ids beside the new
//! `wa_id`). Older documentation had a `user_id_update` change field; it is read too. Each
//! change becomes one [`WebhookEvent::UserIdChanged`], so the customer keeps their session.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::events::WebhookEvent;
use super::payload::{Phone, System, UserIdUpdate};
use super::status::from_unix_seconds;
use super::storable;

/// The system message of a changed business-scoped user id (no number shared).
pub const USER_CHANGED_USER_ID: &str = "user_changed_user_id";

/// The system message of a changed number; it names the user ids since August 2026.
pub const USER_CHANGED_NUMBER: &str = "user_changed_number";

/// The arrays a `user_id_update` change's value may hold its updates in.
const UPDATE_ARRAYS: [&str; 2] = ["user_id_update", "users"];

/// A system message as a user id change: `None` when it is another notice (a changed number
/// without the ids, as before August 2026), which the caller ignores as before.
pub(super) fn system_event(
    system: &System,
    timestamp: &str,
    raw: &Value,
    phone_number_id: Option<&str>,
) -> Option<WebhookEvent> {
    let system_type = system.system_type.as_deref();
    let names_ids = system.previous_user_id.is_some() || system.user_id.is_some();
    if system_type != Some(USER_CHANGED_USER_ID)
        && !(system_type == Some(USER_CHANGED_NUMBER) && names_ids)
    {
        return None;
    }
    Some(change_event(
        &format!("a {:?} system message", system_type.unwrap_or_default()),
        system.previous_user_id.as_deref(),
        system.user_id.as_deref(),
        system.wa_id.as_ref(),
        from_unix_seconds(timestamp),
        raw,
        phone_number_id,
    ))
}

/// The updates of a `user_id_update` change (its `value` as Meta sent it), each one event.
pub(super) fn update_events(
    value: Option<&Value>,
    phone_number_id: Option<&str>,
    change_raw: &Value,
    events: &mut Vec<WebhookEvent>,
) {
    let found = value.and_then(|value| UPDATE_ARRAYS.iter().find_map(|key| value.get(key)));
    let updates = match found {
        Some(Value::Array(updates)) if !updates.is_empty() => updates.as_slice(),
        // One update on its own, not in an array: read it all the same.
        Some(update @ Value::Object(_)) => std::slice::from_ref(update),
        Some(Value::Array(_)) | None => {
            events.push(WebhookEvent::Ignored {
                reason: "a `user_id_update` change with no user id updates".to_owned(),
                raw: change_raw.clone(),
            });
            return;
        }
        Some(_) => {
            events.push(WebhookEvent::unreadable(
                phone_number_id,
                "a `user_id_update` change whose updates are neither a list nor an object"
                    .to_owned(),
                change_raw,
            ));
            return;
        }
    };
    for update in updates {
        events.push(match UserIdUpdate::deserialize(update) {
            Ok(parsed) => change_event(
                "a user id update",
                parsed.previous_user_id.as_deref(),
                parsed.user_id.as_deref(),
                parsed.wa_id.as_ref(),
                parsed
                    .timestamp
                    .and_then(|seconds| i64::try_from(seconds).ok())
                    .and_then(storable::time),
                update,
                phone_number_id,
            ),
            Err(reason) => WebhookEvent::unreadable(
                phone_number_id,
                format!("a user id update could not be read: {reason}"),
                update,
            ),
        });
    }
}

/// A change from `previous` to `new`: both ids must be ones the store keeps, else the element
/// is kept as unreadable; the same id twice changes nothing and is ignored.
fn change_event(
    what: &str,
    previous: Option<&str>,
    new: Option<&str>,
    wa_id: Option<&Phone>,
    at: Option<DateTime<Utc>>,
    raw: &Value,
    phone_number_id: Option<&str>,
) -> WebhookEvent {
    let id = |id: Option<&str>| id.map(str::trim).and_then(storable::user_id);
    let (Some(previous_user_id), Some(user_id)) = (id(previous), id(new)) else {
        return WebhookEvent::unreadable(
            phone_number_id,
            format!(
                "{what} without a `previous_user_id` and a `user_id` the store keeps (1 to 128 \
                 characters)"
            ),
            raw,
        );
    };
    if previous_user_id == user_id {
        return WebhookEvent::Ignored {
            reason: format!("{what} from a user id to the same one"),
            raw: raw.clone(),
        };
    }
    WebhookEvent::UserIdChanged {
        previous_user_id,
        user_id,
        wa_id: wa_id.and_then(storable::wa_id),
        at,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::whatsapp::webhook::USER_ID_UPDATE_FIELD;
    use crate::whatsapp::webhook::test_support::{at, envelope, events_of, messages_change};

    /// A system message from `from`, of `system`'s fields.
    fn system_message(from: Value, system: Value) -> Value {
        let mut message = json!({
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=",
            "timestamp": "1739321024",
            "type": "system",
            "system": system
        });
        if !from.is_null() {
            message["from"] = from;
        }
        message
    }

    #[test]
    fn a_changed_user_id_and_a_changed_number_with_ids_are_changes() {
        let payload = envelope(vec![messages_change(json!({
            "messages": [
                system_message(Value::Null, json!({
                    "body": "User Sheena Nelson changed their business-scoped user ID",
                    "type": "user_changed_user_id",
                    "previous_user_id": "US.13491208655302741918",
                    "user_id": "US.99887766554433221100",
                    "previous_parent_user_id": "US.ENT.11815799212886844830",
                    "parent_user_id": "US.ENT.22815799212886844830"
                })),
                system_message(json!("16505551234"), json!({
                    "body": "User Sheena Nelson changed from 16505551234 to 12195555358",
                    "wa_id": "12195555358",
                    "type": "user_changed_number",
                    "previous_user_id": "US.99887766554433221100",
                    "user_id": "US.55887766554433221100"
                }))
            ]
        }))]);
        let events = events_of(payload);
        assert_eq!(
            events,
            [
                WebhookEvent::UserIdChanged {
                    previous_user_id: "US.13491208655302741918".to_owned(),
                    user_id: "US.99887766554433221100".to_owned(),
                    wa_id: None,
                    at: Some(at(1_739_321_024)),
                },
                WebhookEvent::UserIdChanged {
                    previous_user_id: "US.99887766554433221100".to_owned(),
                    user_id: "US.55887766554433221100".to_owned(),
                    wa_id: Some("12195555358".to_owned()),
                    at: Some(at(1_739_321_024)),
                },
            ]
        );
    }

    #[test]
    fn a_change_without_both_ids_is_kept_and_other_system_messages_stay_ignored() {
        let events = events_of(envelope(vec![messages_change(json!({
            "messages": [
                system_message(json!("16505551234"), json!({
                    "type": "user_changed_user_id", "user_id": "US.1" })),
                system_message(json!("16505551234"), json!({
                    "type": "user_changed_user_id", "previous_user_id": "US.1",
                    "user_id": format!("US.{}", "1".repeat(200)) })),
                system_message(json!("16505551234"), json!({
                    "type": "user_changed_user_id", "previous_user_id": "US.1", "user_id": "US.1" })),
                // Before August 2026: a changed number without the ids.
                system_message(json!("16505551234"), json!({
                    "type": "user_changed_number", "wa_id": "12195555358" })),
                system_message(json!("16505551234"), json!({
                    "type": "customer_identity_changed", "user_id": "US.2", "previous_user_id": "US.1" }))
            ]
        }))]));
        let [
            WebhookEvent::Error(no_previous),
            WebhookEvent::Error(too_long),
            WebhookEvent::Ignored { reason: same, .. },
            WebhookEvent::Ignored {
                reason: old_number, ..
            },
            WebhookEvent::Ignored {
                reason: identity, ..
            },
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        for error in [no_previous, too_long] {
            assert_eq!(error.phone_number_id.as_deref(), Some("106540352242922"));
            assert!(
                format!("{:?}", error.cause).contains("`previous_user_id`"),
                "{error:?}"
            );
            assert_eq!(error.raw["type"], "system");
        }
        assert!(same.contains("same"), "{same}");
        assert!(old_number.contains("user_changed_number"), "{old_number}");
        assert!(identity.contains("customer_identity_changed"), "{identity}");
    }

    /// A `user_id_update` change to the test business number, with `value`'s fields.
    fn update_change(value: Value) -> Value {
        let mut change = messages_change(value);
        change["field"] = json!(USER_ID_UPDATE_FIELD);
        change
    }

    #[test]
    fn a_user_id_update_change_is_read_leniently() {
        let events = events_of(envelope(vec![
            update_change(json!({ "user_id_update": [
                { "previous_user_id": "US.1", "user_id": "US.2", "wa_id": "5215512345678",
                  "timestamp": "1739321024" },
                { "previous_user_id": "US.3", "user_id": "US.4", "wa_id": "+52 55", "timestamp": 1739321025 },
                { "previous_user_id": 7, "user_id": "US.6" },
                { "user_id": "US.8" }
            ]})),
            update_change(json!({ "users": { "previous_user_id": "US.9", "user_id": "US.10" } })),
            update_change(json!({})),
            update_change(json!({ "users": "US.11" })),
        ]));
        let [
            WebhookEvent::UserIdChanged {
                previous_user_id: first_previous,
                user_id: first,
                wa_id: first_wa_id,
                at: first_at,
            },
            WebhookEvent::UserIdChanged {
                wa_id: refused_wa_id,
                at: second_at,
                ..
            },
            WebhookEvent::Error(unreadable),
            WebhookEvent::Error(no_previous),
            WebhookEvent::UserIdChanged {
                previous_user_id: alone_previous,
                at: alone_at,
                ..
            },
            WebhookEvent::Ignored { reason: empty, .. },
            WebhookEvent::Error(not_a_list),
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        assert_eq!((first_previous.as_str(), first.as_str()), ("US.1", "US.2"));
        assert_eq!(first_wa_id.as_deref(), Some("5215512345678"));
        assert_eq!(*first_at, Some(at(1_739_321_024)));
        assert_eq!(*refused_wa_id, None, "not a WhatsApp id the store keeps");
        assert_eq!(*second_at, Some(at(1_739_321_025)));
        assert!(
            format!("{:?}", unreadable.cause).contains("could not be read"),
            "{unreadable:?}"
        );
        assert_eq!(unreadable.raw["user_id"], "US.6");
        assert_eq!(no_previous.raw["user_id"], "US.8");
        assert_eq!((alone_previous.as_str(), *alone_at), ("US.9", None));
        assert!(empty.contains("no user id updates"), "{empty}");
        assert_eq!(not_a_list.raw["field"], USER_ID_UPDATE_FIELD);
    }
}
