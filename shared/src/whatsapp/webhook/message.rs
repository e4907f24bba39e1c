//! A customer's message as an event: its content, its sender (keyed by phone, else by
//! username) and the sender's contact card.

use super::events::WebhookEvent;
use super::payload::{Contact, Lenient, Message, MessageContent};
use super::status::from_unix_seconds;
use super::storable;
use super::user_id;
use crate::domain::{CustomerKey, InboundMessage, MessageId};

pub(super) fn message_event(
    message: &Lenient<Message>,
    contacts: &[Contact],
    phone_number_id: Option<&str>,
) -> WebhookEvent {
    let unreadable =
        |reason: String| WebhookEvent::unreadable(phone_number_id, reason, &message.raw);
    let parsed = match &message.parsed {
        Ok(parsed) => parsed,
        Err(reason) => return unreadable(format!("a message could not be read: {reason}")),
    };
    if let MessageContent::System(system) = &parsed.content {
        if let Some(change) =
            user_id::system_event(system, &parsed.timestamp, &message.raw, phone_number_id)
        {
            return change;
        }
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
            "message {wamid}: timestamp {:?} is not {}",
            parsed.timestamp,
            storable::TIME_RULE
        ));
    };
    let message_type = parsed.content.message_type();
    if !storable::is_message_type(message_type) {
        return unreadable(format!(
            "message {wamid}: type {message_type:?} is not one the store takes ({})",
            storable::MESSAGE_TYPE_RULE
        ));
    }
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
    // Who the sender is besides the key: only what the store keeps (see `storable.rs`).
    WebhookEvent::Message(InboundMessage {
        wamid,
        customer_key,
        message_type: message_type.to_owned(),
        body: parsed.content.text().map(str::to_owned),
        payload: Some(message.raw.clone()),
        sent_at,
        wa_id: contact
            .and_then(|contact| contact.wa_id.as_ref())
            .and_then(storable::wa_id)
            .or_else(|| parsed.from.as_ref().and_then(storable::wa_id)),
        whatsapp_user_id: parsed
            .from_user_id
            .as_deref()
            .and_then(storable::user_id)
            .or_else(|| {
                contact
                    .and_then(|contact| contact.user_id.as_deref())
                    .and_then(storable::user_id)
            }),
        profile_name: contact
            .and_then(|contact| contact.profile.as_ref())
            .and_then(|profile| profile.name.as_deref())
            .map(storable::profile_name),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::webhook::test_support::{
        at, envelope, events_of, message, messages_change, one_event,
    };
    use crate::whatsapp::webhook::{WebhookPayload, events};
    use serde_json::{Value, json};

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

    #[test]
    fn what_the_store_refuses_costs_only_its_own_message_and_the_sender_is_fitted() {
        let long_user_id = format!("US.{}", "1".repeat(200));
        let payload = envelope(vec![messages_change(json!({
            // One contact that does not name the sender: its WhatsApp id is not one either.
            "contacts": [{ "profile": { "name": "😀".repeat(300) }, "wa_id": "not-digits",
                           "user_id": long_user_id }],
            "messages": [
                message("wamid.TYPE", json!({ "type": "Poll-Vote", "Poll-Vote": { "option": 1 } })),
                message("wamid.LONGTYPE", json!({ "type": "a".repeat(41) })),
                { "from": "5215512345678", "id": "wamid.FUTURE", "timestamp": "253402300800",
                  "type": "text", "text": { "body": "year 10000" } },
                { "from": "5215512345678", "id": "wamid.PAST", "timestamp": "-62135596801",
                  "type": "text", "text": { "body": "year 0" } },
                { "from": "5215512345678", "from_user_id": long_user_id, "id": "wamid.OK",
                  "timestamp": "1749416383", "type": "text", "text": { "body": "hola" } }
            ]
        }))]);
        let events = events_of(payload);
        let [
            WebhookEvent::Error(bad_type),
            WebhookEvent::Error(long_type),
            WebhookEvent::Error(future),
            WebhookEvent::Error(past),
            WebhookEvent::Message(kept),
        ] = events.as_slice()
        else {
            panic!("unexpected {events:?}");
        };
        let reason = |error: &crate::whatsapp::webhook::WebhookError| match &error.cause {
            crate::whatsapp::webhook::WebhookErrorCause::Unreadable(why) => why.clone(),
            other => panic!("not unreadable: {other:?}"),
        };
        assert!(
            reason(bad_type).contains("wamid.TYPE: type \"Poll-Vote\""),
            "{}",
            reason(bad_type)
        );
        assert!(reason(bad_type).contains("a to z and _"));
        assert_eq!(bad_type.raw["Poll-Vote"]["option"], 1, "kept whole");
        assert!(reason(long_type).contains("wamid.LONGTYPE: type"));
        for (error, wamid) in [(future, "wamid.FUTURE"), (past, "wamid.PAST")] {
            let why = reason(error);
            assert!(why.contains(wamid) && why.contains("timestamp"), "{why}");
            assert!(why.contains("years 1 to 9999"), "{why}");
        }
        assert_eq!(kept.wamid.as_str(), "wamid.OK");
        assert_eq!(
            kept.wa_id.as_deref(),
            Some("5215512345678"),
            "the sender's own id, not the contact's"
        );
        assert_eq!(kept.whatsapp_user_id, None, "longer than the store keeps");
        assert_eq!(
            kept.profile_name.as_deref(),
            Some("😀".repeat(200).as_str()),
            "cut to what the store keeps, not lost"
        );
    }

    #[test]
    fn a_username_only_senders_contact_id_the_store_refuses_is_left_out() {
        let payload = envelope(vec![messages_change(json!({
            "contacts": [{ "user_id": "US.1349", "wa_id": "12345",
                           "profile": { "name": "Ana" } }],
            "messages": [{ "from_user_id": "US.1349", "id": "wamid.U", "timestamp": "1749416383",
                           "type": "text", "text": { "body": "hola" } }]
        }))]);
        let WebhookEvent::Message(message) = one_event(events_of(payload)) else {
            panic!("expected one message");
        };
        assert_eq!(message.customer_key.as_str(), "US.1349");
        assert_eq!(message.wa_id, None, "5 digits: the store keeps 6 to 20");
        assert_eq!(message.whatsapp_user_id.as_deref(), Some("US.1349"));
    }

    fn raw_message_of(event: &WebhookEvent) -> Value {
        match event {
            WebhookEvent::Message(message) => message.payload.clone().unwrap(),
            other => panic!("not a message: {other:?}"),
        }
    }
}
