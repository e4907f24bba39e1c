//! Properties of what the bridge reads from outside: Meta's webhook bodies, the web form's bodies
//! and the customer keys folded from phone numbers. Whatever arrives, the parsers answer (never
//! panic); what is valid comes out whole. `make fuzz` runs the same entry points under libFuzzer.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shared::domain::{CountryId, CustomerKey, PhoneNumber};
use shared::ingress::form::{AllowedFields, RESERVED_FIELDS, read_form};
use shared::ingress::whatsapp::Delivery;

mod common;
use common::parser_invariants::{
    CONTENT_TYPES, FORM_FIELDS, OUR_NUMBER, check_delivery, check_form,
};

/// Words of Meta's payloads, so generated JSON reaches past the envelope.
const KEYS: [&str; 26] = [
    "object",
    "entry",
    "id",
    "changes",
    "field",
    "value",
    "messaging_product",
    "metadata",
    "phone_number_id",
    "contacts",
    "wa_id",
    "profile",
    "name",
    "messages",
    "statuses",
    "errors",
    "from",
    "from_user_id",
    "timestamp",
    "type",
    "text",
    "body",
    "user_preferences",
    "category",
    "value",
    "user_id",
];

const WORDS: [&str; 17] = [
    "whatsapp_business_account",
    "messages",
    "text",
    "image",
    "system",
    "unsupported",
    "delivered",
    "failed",
    "5215512345678",
    "US.13491208655302741918",
    "1749416383",
    "wamid.HBgL",
    "user_preferences",
    "marketing_messages",
    "stop",
    "resume",
    "106540352242922",
];

/// Arbitrary JSON, biased towards Meta's keys and values.
fn json_value() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        proptest::sample::select(&WORDS[..]).prop_map(str::to_owned),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word.prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        let key = prop_oneof![
            4 => proptest::sample::select(&KEYS[..]).prop_map(str::to_owned),
            1 => "[a-z_]{0,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A text message as Meta sends it, in a change of its own shape.
fn text_message(wamid: &str, from: &str, text: &str) -> Value {
    json!({
        "from": from,
        "id": wamid,
        "timestamp": "1749416383",
        "type": "text",
        "text": { "body": text }
    })
}

fn webhook_body(messages: &[(String, String, String)]) -> Vec<u8> {
    let contacts: Vec<Value> = messages
        .iter()
        .map(|(_, from, _)| json!({ "profile": { "name": "Ana" }, "wa_id": from }))
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|(wamid, from, text)| text_message(wamid, from, text))
        .collect();
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "15550783881",
                        "phone_number_id": "106540352242922"
                    },
                    "contacts": contacts,
                    "messages": messages
                }
            }]
        }]
    });
    serde_json::to_vec(&payload).unwrap()
}

/// Not a name `read_form` treats itself.
fn extra_field_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,15}".prop_filter("a field of the form's own", |name| {
        !["name", "phone", "consent"].contains(&name.as_str())
            && !RESERVED_FIELDS.contains(&name.as_str())
    })
}

/// A Mexican mobile's 10 digits (area codes whose numbers are all fixed-line-or-mobile).
fn mexican_mobile() -> impl Strategy<Value = String> {
    "(55|56|33|81)[0-9]{8}"
}

/// How a person (or WhatsApp) writes a Mexican mobile.
fn written(digits: &str, style: u8) -> String {
    let (area, rest) = digits.split_at(2);
    let (a, b) = rest.split_at(4);
    match style % 4 {
        0 => digits.to_owned(),
        1 => format!("{area} {a} {b}"),
        2 => format!("+52 {area} {a} {b}"),
        _ => format!("+52 1 {area} {a}-{b}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // --- Webhook payload ---

    #[test]
    fn any_bytes_make_a_delivery(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let delivery = Delivery::read(&body, OUR_NUMBER);
        check_delivery(&body, &delivery).map_err(TestCaseError::fail)?;
        if serde_json::from_slice::<Value>(&body).is_err() {
            prop_assert_eq!(delivery.unprocessed.len(), 1);
            let kept = Value::String(String::from_utf8_lossy(&body).into_owned());
            prop_assert_eq!(&delivery.unprocessed[0].payload, &kept);
        }
    }

    #[test]
    fn json_ish_text_makes_a_delivery(body in r#"[\[\]{}":,0-9a-z. \\-]{0,200}"#) {
        let delivery = Delivery::read(body.as_bytes(), OUR_NUMBER);
        check_delivery(body.as_bytes(), &delivery).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn any_json_makes_a_delivery(
        value in json_value(),
        wrapped in any::<bool>(),
        field in proptest::sample::select(&["messages", "user_preferences"][..]),
        ours in any::<bool>(),
    ) {
        // Wrapped in an envelope, the value is read as an entry, a change's value, …, about our
        // number or, when the value says none, about none.
        let value = if wrapped {
            let mut value = value;
            if let (true, Value::Object(fields)) = (ours, &mut value) {
                fields.insert("metadata".into(), json!({ "phone_number_id": OUR_NUMBER }));
            }
            json!({ "object": "whatsapp_business_account", "entry": [
                { "id": "1", "changes": [{ "field": field, "value": value }] }
            ]})
        } else {
            value
        };
        let body = serde_json::to_vec(&value).unwrap();
        let delivery = Delivery::read(&body, OUR_NUMBER);
        check_delivery(&body, &delivery).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn the_same_messages_for_another_number_are_kept_and_not_answered(
        messages in proptest::collection::vec(
            ("wamid\\.[A-Za-z0-9]{8,20}", "[1-9][0-9]{6,14}", "[a-z ]{0,20}"),
            1..4,
        ),
        other in "[1-9][0-9]{5,15}",
    ) {
        prop_assume!(other != OUR_NUMBER);
        let body = String::from_utf8(webhook_body(&messages))
            .unwrap()
            .replace(OUR_NUMBER, &other);
        let delivery = Delivery::read(body.as_bytes(), OUR_NUMBER);
        check_delivery(body.as_bytes(), &delivery).map_err(TestCaseError::fail)?;
        prop_assert!(delivery.messages.is_empty() && delivery.statuses.is_empty());
        prop_assert_eq!(delivery.unprocessed.len(), 1, "the change, kept whole");
        prop_assert!(delivery.unprocessed[0].reason.contains(&other));
    }

    #[test]
    fn every_text_message_of_a_payload_is_read_in_order(
        messages in proptest::collection::vec(
            (
                "wamid\\.[A-Za-z0-9+/=]{8,60}",
                "[1-9][0-9]{6,14}",
                "\\PC{0,80}",
            ),
            1..8,
        )
    ) {
        let body = webhook_body(&messages);
        let delivery = Delivery::read(&body, OUR_NUMBER);
        prop_assert!(delivery.statuses.is_empty() && delivery.unprocessed.is_empty(), "{:?}", delivery);
        prop_assert_eq!(delivery.messages.len(), messages.len());
        for (read, (wamid, from, text)) in delivery.messages.iter().zip(&messages) {
            prop_assert_eq!(read.wamid.as_str(), wamid.as_str());
            prop_assert_eq!(&read.customer_key, &CustomerKey::from_whatsapp_id(from).unwrap());
            prop_assert_eq!(read.message_type.as_str(), "text");
            // Blank text is no text for the agent.
            let expected = (!text.trim().is_empty()).then_some(text.as_str());
            prop_assert_eq!(read.body.as_deref(), expected);
            prop_assert_eq!(read.wa_id.as_deref(), Some(from.as_str()));
        }
    }

    // --- Form body ---

    #[test]
    fn any_form_body_is_answered_with_a_4xx_naming_a_code(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            "[a-z=&%0-9+{}\":,\\[\\] ]{0,200}".prop_map(String::into_bytes),
            json_value().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        ],
        content_type in proptest::sample::select(&CONTENT_TYPES[..]),
    ) {
        let allowed = AllowedFields::parse(FORM_FIELDS).unwrap();
        for country in [CountryId::MX, CountryId::AR] {
            let read = read_form(content_type, &body, country, &allowed);
            check_form(content_type, &read).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn a_valid_form_is_read_whole_and_keyed_as_whatsapp_keys_the_number(
        name in "[A-Za-zñÁé]{1,18}( [A-Za-zñÁé'-]{1,20}){0,2}",
        digits in mexican_mobile(),
        style in any::<u8>(),
        fields in proptest::collection::btree_map(
            extra_field_name(),
            "[A-Za-z0-9ñ,.:/@-]([A-Za-z0-9ñ ,.:/@-]{0,40}[A-Za-z0-9ñ,.:/@-])?",
            0..5,
        ),
        allow in any::<u8>(),
        urlencoded in any::<bool>(),
    ) {
        // The fields whose bit of `allow` is set reach the agent; the others are dropped.
        let allowed_names: Vec<&str> = fields
            .keys()
            .enumerate()
            .filter(|(i, _)| allow & (1 << i) != 0)
            .map(|(_, name)| name.as_str())
            .collect();
        let allowed = AllowedFields::parse(&allowed_names.join(",")).unwrap();
        let phone = written(&digits, style);
        let (content_type, body) = if urlencoded {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("name", &name).append_pair("phone", &phone).append_pair("consent", "on");
            for (field, value) in &fields {
                form.append_pair(field, value);
            }
            ("application/x-www-form-urlencoded", form.finish().into_bytes())
        } else {
            let mut object = json!({ "name": name, "phone": phone, "consent": true });
            for (field, value) in &fields {
                object[field] = json!(value);
            }
            ("application/json", serde_json::to_vec(&object).unwrap())
        };
        let form = match read_form(Some(content_type), &body, CountryId::MX, &allowed) {
            Ok(form) => form,
            Err(refusal) => return Err(TestCaseError::fail(format!("{phone}: {refusal:?}"))),
        };
        prop_assert_eq!(form.name.as_str(), name.as_str());
        let kept: std::collections::BTreeMap<String, String> = fields
            .iter()
            .filter(|(name, _)| allowed_names.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        prop_assert_eq!(&form.fields, &kept);
        prop_assert_eq!(form.phone.as_str(), format!("+52{digits}"));
        prop_assert_eq!(
            CustomerKey::from_phone(&form.phone),
            CustomerKey::from_whatsapp_id(&format!("521{digits}")).unwrap()
        );
    }

    // --- Customer keys ---

    #[test]
    fn any_text_is_a_whatsapp_id_or_refused(text in prop_oneof![".{0,20}", "[0-9]{0,18}"]) {
        if let Ok(key) = CustomerKey::from_whatsapp_id(&text) {
            let digits = key.as_str();
            prop_assert!((7..=15).contains(&digits.len()), "{}", digits);
            prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
            // Folding a folded key changes nothing, and a stored key reads back as itself.
            prop_assert_eq!(CustomerKey::from_whatsapp_id(digits), Ok(key.clone()));
            prop_assert_eq!(CustomerKey::try_from(digits.to_owned()), Ok(key.clone()));
        }
        let _ = CustomerKey::from_whatsapp_user_id(&text);
    }

    #[test]
    fn a_parsed_number_keys_as_its_whatsapp_id(
        text in prop_oneof![".{0,24}", "\\+?[0-9 ()-]{0,20}"],
        country in proptest::sample::select(
            &[CountryId::MX, CountryId::AR, CountryId::BR, CountryId::US, CountryId::ES][..]
        ),
    ) {
        if let Ok(phone) = PhoneNumber::parse(&text, country) {
            let key = CustomerKey::from_phone(&phone);
            // Valid numbers of a few countries (Austrian and German landlines) are shorter or
            // longer than any WhatsApp id; every other one keys as WhatsApp would.
            if (7..=15).contains(&phone.digits().len()) {
                prop_assert_eq!(CustomerKey::from_whatsapp_id(key.as_str()), Ok(key.clone()));
                prop_assert_eq!(CustomerKey::from_whatsapp_id(phone.digits()), Ok(key.clone()));
            }
        }
    }
}
