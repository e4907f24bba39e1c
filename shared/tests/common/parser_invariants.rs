//! What must hold of every reading of outside input, whatever the input. One copy, used by the
//! property tests (`shared/tests/parser_properties.rs`) and the libFuzzer targets (`fuzz/`).

use shared::domain::{CustomerKey, PhoneNumber};
use shared::ingress::DoorError;
use shared::ingress::form::{FormError, MAX_EXTRA_FIELDS, MAX_NAME_CHARS, ValidForm};
use shared::ingress::whatsapp::{Delivery, set_apart_other_numbers};
use shared::whatsapp::webhook::{WebhookPayload, events};

/// The business number the deliveries are read for.
pub const OUR_NUMBER: &str = "106540352242922";

/// The extra fields the form is read with (`FORM_FIELDS`): some of them words of Meta's
/// payloads, which the generated bodies use as keys.
pub const FORM_FIELDS: &str = "producto,ciudad,notas,id,text,body,type,value,from";

/// The content types `POST /form` is tried with: the accepted ones and some that are not.
pub const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

/// A body that does not make a payload is kept whole, as one unprocessed event; one that does
/// puts each event of our number in exactly one list, and each change about another number in
/// the unprocessed one; nothing is answered, applied or opted out unless a change names our
/// number; every message's key reads back from the store. `delivery` is `body` read for
/// [`OUR_NUMBER`].
pub fn check_delivery(body: &[u8], delivery: &Delivery) -> Result<(), String> {
    match serde_json::from_slice::<WebhookPayload>(body) {
        Err(_) => {
            ensure(
                delivery.messages.is_empty()
                    && delivery.statuses.is_empty()
                    && delivery.opt_outs.is_empty(),
                "an unreadable body gave messages, statuses or opt-outs",
            )?;
            ensure(
                delivery.unprocessed.len() == 1
                    && delivery.unprocessed[0]
                        .reason
                        .starts_with("unreadable payload"),
                "an unreadable body is one unprocessed event",
            )?;
        }
        Ok(mut payload) => {
            let set_apart = set_apart_other_numbers(&mut payload, OUR_NUMBER);
            ensure(
                delivery.messages.len()
                    + delivery.statuses.len()
                    + delivery.opt_outs.len()
                    + delivery.unprocessed.len()
                    == events(&payload).len() + set_apart.len(),
                "every event lands in exactly one list",
            )?;
            ensure(
                names_our_number(body)
                    || (delivery.messages.is_empty()
                        && delivery.statuses.is_empty()
                        && delivery.opt_outs.is_empty()),
                "a delivery naming only other numbers gave messages, statuses or opt-outs",
            )?;
        }
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
            let name = form.name.as_str();
            ensure(
                !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS,
                "a name out of bounds",
            )?;
            ensure(
                name.trim() == name && !name.chars().any(char::is_control),
                "a name untrimmed or with control characters",
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

/// Whether some change of the body, read as plain JSON, says it is about our number.
fn names_our_number(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let entries = value["entry"].as_array().into_iter().flatten();
    entries
        .flat_map(|entry| entry["changes"].as_array().into_iter().flatten())
        .any(|change| change["value"]["metadata"]["phone_number_id"] == OUR_NUMBER)
}

fn ensure(holds: bool, what: &str) -> Result<(), String> {
    if holds { Ok(()) } else { Err(what.to_owned()) }
}
