//! Meta's webhook body, as `POST /whatsapp` reads it once the signature checks out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::domain::CustomerKey;
use shared::ingress::whatsapp::Delivery;
use shared::whatsapp::webhook::{WebhookPayload, events};

fuzz_target!(|data: &[u8]| {
    let delivery = Delivery::read(data);
    match serde_json::from_slice::<WebhookPayload>(data) {
        // An unreadable body is kept whole, as one unprocessed event.
        Err(_) => {
            assert!(delivery.messages.is_empty() && delivery.statuses.is_empty());
            assert_eq!(delivery.unprocessed.len(), 1);
            assert!(
                delivery.unprocessed[0]
                    .reason
                    .starts_with("unreadable payload")
            );
        }
        // Every event lands in exactly one list.
        Ok(payload) => assert_eq!(
            delivery.messages.len() + delivery.statuses.len() + delivery.unprocessed.len(),
            events(&payload).len()
        ),
    }
    for message in &delivery.messages {
        // The store's copy of the key reads back as the same key.
        let stored = CustomerKey::try_from(message.customer_key.as_str().to_owned());
        assert_eq!(stored.as_ref(), Ok(&message.customer_key));
        assert!(message.wamid.as_str().len() <= 256);
    }
});
