//! Meta's webhook body, as `POST /whatsapp` reads it once the signature checks out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::ingress::whatsapp::Delivery;

#[path = "../../shared/tests/common/parser_invariants.rs"]
mod parser_invariants;

fuzz_target!(|data: &[u8]| {
    let delivery = Delivery::read(data, parser_invariants::OUR_NUMBER);
    if let Err(broken) = parser_invariants::check_delivery(data, &delivery) {
        panic!("{broken}");
    }
});
