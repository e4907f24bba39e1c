//! A delivery status as an event, and Meta's timestamps (unix seconds, as a string).

use chrono::{DateTime, Utc};

use super::events::{StatusEvent, WebhookEvent};
use super::payload::{Lenient, Status};
use super::storable;
use crate::domain::{DeliveryStatus, DeliveryUpdate, MessageId};

pub(super) fn status_event(
    status: &Lenient<Status>,
    phone_number_id: Option<&str>,
) -> WebhookEvent {
    let unreadable =
        |reason: String| WebhookEvent::unreadable(phone_number_id, reason, &status.raw);
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
            "status of {wamid}: timestamp {:?} is not {}",
            parsed.timestamp,
            storable::TIME_RULE
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

/// Meta's timestamps: unix seconds, as a string; only a time the store takes.
pub(super) fn from_unix_seconds(timestamp: &str) -> Option<DateTime<Utc>> {
    storable::time(timestamp.trim().parse::<i64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::webhook::Phone;
    use crate::whatsapp::webhook::test_support::{
        at, envelope, events_of, messages_change, status,
    };
    use serde_json::json;

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
    fn a_status_at_a_time_the_store_cannot_hold_is_kept_unreadable() {
        let payload = envelope(vec![messages_change(json!({
            "statuses": [status("wamid.Y", "read", "253402300800"), status("wamid.Z", "read", "1750030073")]
        }))]);
        let events = events_of(payload);
        let [WebhookEvent::Error(error), WebhookEvent::Status(fine)] = events.as_slice() else {
            panic!("unexpected {events:?}");
        };
        assert!(
            matches!(&error.cause, crate::whatsapp::webhook::WebhookErrorCause::Unreadable(why)
                if why.contains("wamid.Y") && why.contains("years 1 to 9999")),
            "{error:?}"
        );
        assert_eq!(fine.update.wamid.as_str(), "wamid.Z");
    }
}
