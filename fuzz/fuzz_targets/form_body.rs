//! The web form's body, under each content type `POST /form` may be sent with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::CountryId;
use shared::ingress::form::{AllowedFields, read_form};

#[path = "../../shared/tests/common/parser_invariants.rs"]
mod parser_invariants;

const COUNTRIES: [CountryId; 3] = [CountryId::MX, CountryId::AR, CountryId::BR];

fuzz_target!(|data: &[u8]| {
    // The first byte picks the default country; the rest is the body, read as each type.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let country = COUNTRIES[usize::from(selector) % COUNTRIES.len()];
    let allowed = AllowedFields::parse(parser_invariants::FORM_FIELDS).expect("valid names");
    for content_type in parser_invariants::CONTENT_TYPES {
        let read = read_form(content_type, body, country, &allowed);
        if let Err(broken) = parser_invariants::check_form(content_type, &read) {
            panic!("{broken}");
        }
    }
});
