//! A customer is found again under any form of their number, by any client instance.

use shared::domain::{CountryId, CustomerKey, OutreachLimits, PhoneNumber};
use shared::store::SessionStore;

use crate::support::{at, form, stack, text_from, wamid};

#[tokio::test]
async fn a_mexican_form_lead_is_found_from_the_521_whatsapp_id_by_a_new_client() {
    let phone = PhoneNumber::parse("+52 55 1234 5678", CountryId::MX).unwrap();
    let recorded = stack()
        .store()
        .record_form_submission(
            &form(&phone, "Ana López", "mx-lookup"),
            OutreachLimits::DEFAULT,
        )
        .await
        .unwrap();
    assert!(recorded.is_new);

    // A later webhook, handled by another instance: a new client, a new store.
    let from_whatsapp = CustomerKey::from_whatsapp_id("5215512345678").unwrap();
    let store = stack().store();
    let session = store
        .session(&from_whatsapp)
        .await
        .unwrap()
        .expect("the form's session");
    assert_eq!(session.name.as_deref(), Some("Ana López"));
    assert_eq!(
        session.phone_e164.as_ref().map(PhoneNumber::as_str),
        Some("+525512345678")
    );

    let reply = text_from(&from_whatsapp, wamid("mx"), "Sí, soy yo", at(0));
    let reply = shared::domain::InboundMessage {
        wa_id: Some("5215512345678".into()),
        ..reply
    };
    let recorded = store.record_inbound(&[reply]).await.unwrap();
    assert_eq!(recorded[0].customer_key.as_str(), "525512345678");
    let session = store.session(&from_whatsapp).await.unwrap().unwrap();
    assert_eq!(
        session.wa_id.as_deref(),
        Some("5215512345678"),
        "the id WhatsApp uses is kept"
    );
    assert_eq!(
        session.name.as_deref(),
        Some("Ana López"),
        "the form's name is kept"
    );
}

#[tokio::test]
async fn an_argentine_lead_is_found_from_both_549_and_54_ids() {
    let phone = PhoneNumber::parse("011 15 2345-6789", CountryId::AR).unwrap();
    assert_eq!(
        phone.as_str(),
        "+5491123456789",
        "libphonenumber's E.164 for an Argentine mobile"
    );
    stack()
        .store()
        .record_form_submission(
            &form(&phone, "Martín", "ar-lookup"),
            OutreachLimits::DEFAULT,
        )
        .await
        .unwrap();

    for wa_id in ["5491123456789", "541123456789"] {
        let key = CustomerKey::from_whatsapp_id(wa_id).unwrap();
        let session = stack().store().session(&key).await.unwrap();
        assert_eq!(
            session.and_then(|s| s.name).as_deref(),
            Some("Martín"),
            "looked up as {wa_id}"
        );
    }
}

#[tokio::test]
async fn a_customer_never_seen_has_no_session() {
    let key = CustomerKey::from_whatsapp_id("4915112345678").unwrap();
    assert_eq!(stack().store().session(&key).await.unwrap(), None);
}
