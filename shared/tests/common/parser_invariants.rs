//! What must hold of every reading of outside input, whatever the input. One copy, used by the
//! property tests (`shared/tests/parser_properties.rs`) and the libFuzzer targets (`fuzz/`).

use shared::domain::{CustomerKey, PhoneNumber};
use shared::ingress::DoorError;
use shared::ingress::form::{FormError, MAX_EXTRA_FIELDS, MAX_NAME_CHARS, ValidForm};
use shared::ingress::whatsapp::Delivery;
use shared::whatsapp::webhook::{WebhookPayload, events};

/// The content types `POST /form` is tried with: the accepted ones and some that are not.
pub const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

/// A body that does not make a payload is kept whole, as one unprocessed event; one that does
/// puts each of its events in exactly one list; every message's key reads back from the store.
pub fn check_delivery(body: &[u8], delivery: &Delivery) -> Result<(), String> {
    match serde_json::from_slice::<WebhookPayload>(body) {
        Err(_) => {
            ensure(
                delivery.messages.is_empty() && delivery.statuses.is_empty(),
                "an unreadable body gave messages or statuses",
            )?;
            ensure(
                delivery.unprocessed.len() == 1
                    && delivery.unprocessed[0]
                        .reason
                        .starts_with("unreadable payload"),
                "an unreadable body is one unprocessed event",
            )?;
        }
        Ok(payload) => ensure(
            delivery.messages.len() + delivery.statuses.len() + delivery.unprocessed.len()
                == events(&payload).len(),
            "every event lands in exactly one list",
        )?,
    }
    for message in &delivery.messages {
        let stored = CustomerKey::try_from(message.customer_key.as_str().to_owned());
        ensure(
            stored.as_ref() == Ok(&message.customer_key),
            &format!("{:?} does not read back", message.customer_key),
        )?;
        ensure(
            message.wamid.as_str().len() <= 256,
            "a wamid longer than the store takes",
        )?;
    }
    Ok(())
}

/// A form read under `content_type` is either accepted whole (only as JSON or urlencoded, its
/// name, fields, number and key within bounds and reading back from the store) or refused with
/// a 4xx answer naming a code and a message: 415 for any other content type.
pub fn check_form(
    content_type: Option<&str>,
    read: &Result<ValidForm, FormError>,
) -> Result<(), String> {
    let accepted_type = content_type.is_some_and(|t| t.starts_with("application/"));
    match read {
        Ok(form) => {
            ensure(accepted_type, "a form read under another content type")?;
            ensure(
                !form.name.as_str().is_empty()
                    && form.name.as_str().chars().count() <= MAX_NAME_CHARS,
                "a name out of bounds",
            )?;
            ensure(
                form.fields.len() <= MAX_EXTRA_FIELDS,
                "too many extra fields",
            )?;
            let phone = PhoneNumber::try_from(form.phone.as_str().to_owned());
            ensure(
                phone.as_ref() == Ok(&form.phone),
                "the number does not read back",
            )?;
            let key = CustomerKey::from_phone(&form.phone);
            ensure(
                CustomerKey::try_from(key.as_str().to_owned()).as_ref() == Ok(&key),
                "the key does not read back",
            )?;
        }
        Err(refusal) => {
            let answer = refusal.to_response();
            let status = answer.status();
            ensure(status.is_client_error(), &format!("not a 4xx: {refusal:?}"))?;
            ensure(
                accepted_type || status == 415,
                &format!("another content type is a 415: {refusal:?}"),
            )?;
            let error: serde_json::Value = serde_json::from_str(answer.body())
                .map_err(|e| format!("the answer is not JSON ({e}): {answer:?}"))?;
            ensure(
                error["error"]["code"] == refusal.code() && error["error"]["message"].is_string(),
                &format!("the answer names no code and message: {answer:?}"),
            )?;
        }
    }
    Ok(())
}

fn ensure(holds: bool, what: &str) -> Result<(), String> {
    if holds { Ok(()) } else { Err(what.to_owned()) }
}
