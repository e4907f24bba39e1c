//! The web form's body, under each content type `POST /form` may be sent with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::{CountryId, CustomerKey, PhoneNumber};
use shared::ingress::form::read_form;

const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

const COUNTRIES: [CountryId; 3] = [CountryId::MX, CountryId::AR, CountryId::BR];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the default country; the rest is the body, read as each type.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let country = COUNTRIES[usize::from(selector) % COUNTRIES.len()];
    for content_type in CONTENT_TYPES {
        match read_form(content_type, body, country) {
            Ok(form) => {
                assert!(content_type.is_some_and(|t| t.starts_with("application/")));
                assert!(!form.name.is_empty() && form.name.chars().count() <= 100);
                assert!(form.fields.len() <= 20);
                // An accepted form is stored: its number and its key must read back as they are.
                let phone = PhoneNumber::try_from(form.phone.as_str().to_owned());
                assert_eq!(phone.as_ref(), Ok(&form.phone));
                let key = CustomerKey::from_phone(&form.phone);
                assert_eq!(
                    CustomerKey::try_from(key.as_str().to_owned()).as_ref(),
                    Ok(&key)
                );
            }
            Err(answer) => {
                assert!((400..500).contains(&answer.status), "{answer:?}");
                let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
                assert!(error["error"]["code"].is_string(), "{answer:?}");
            }
        }
    }
});
