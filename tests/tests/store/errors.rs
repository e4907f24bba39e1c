//! Each way the store can fail comes back as the typed error that says what to do about it.

use std::time::Duration;

use sandbox::{LocalStack, sign_jwt};
use serde_json::{Value, json};
use shared::domain::{CountryId, OutreachLimits, PhoneNumber};
use shared::store::{PostgrestStore, SessionStore, StoreError};

use crate::support::{MAX_ATTEMPTS, count, form, new_customer, stack};

#[tokio::test]
async fn a_stopped_database_is_a_transient_unavailable() {
    // A stack of its own: stopping the shared one would break the other tests.
    let own = LocalStack::start().unwrap();
    let store = own.store();
    let customer = new_customer();
    assert_eq!(
        store.session(&customer).await.unwrap(),
        None,
        "works while the database runs"
    );

    own.stop_database().unwrap();
    let err = store.session(&customer).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(reason) if reason.starts_with("HTTP 5")),
        "{err:?}"
    );
    assert!(err.is_transient());
    let err = store
        .claim_turn(&customer, Duration::from_secs(30), MAX_ATTEMPTS)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_api_is_a_transient_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = stack().store_config(&stack().service_role_key);
    config.rest_url = format!("http://127.0.0.1:{port}/api");
    let store = PostgrestStore::new(&config, shared::http::client());
    let err = store.session(&new_customer()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(reason) if reason.contains("connect")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_key_signed_with_another_secret_is_unauthorized() {
    let forged = sign_jwt("service_role", "not-the-secret-this-api-trusts-at-all");
    let store = PostgrestStore::new(&stack().store_config(&forged), shared::http::client());
    let err = store.session(&new_customer()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unauthorized(e) if e.status == 401),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("SUPABASE_SERVICE_ROLE_KEY"),
        "names what to check: {err}"
    );
}

#[tokio::test]
async fn the_anon_key_in_place_of_the_service_key_is_unauthorized() {
    let store = PostgrestStore::new(
        &stack().store_config(&stack().anon_key),
        shared::http::client(),
    );
    let err = store
        .claim_turn(&new_customer(), Duration::from_secs(30), MAX_ATTEMPTS)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Unauthorized(e) if e.code == "42501"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_constraint_violation_is_rejected_with_postgrests_code() {
    let bad = json!({ "p_messages": [{
        "wamid": "wamid.bad-key", "customer_key": "not a customer", "message_type": "text",
        "sent_at": "2026-11-25T10:00:00Z", "body": "hola"
    }]});
    let err = stack()
        .store()
        .call::<Value>("record_inbound_messages", &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Rejected(e) if e.code == "23514" && e.status == 400),
        "{err:?}"
    );

    let left = count(
        "select count(*) from whatsapp_messages where wamid = 'wamid.bad-key'",
        &[],
    )
    .await;
    assert_eq!(left, 0, "nothing half-written");
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_customer_is_a_conflict() {
    let first = PhoneNumber::parse("+52 81 1234 5678", CountryId::MX).unwrap();
    let second = PhoneNumber::parse("+52 33 1234 5678", CountryId::MX).unwrap();
    let store = stack().store();
    store
        .record_form_submission(&form(&first, "Luz", "reused-key"), OutreachLimits::DEFAULT)
        .await
        .unwrap();
    let err = store
        .record_form_submission(&form(&second, "Sol", "reused-key"), OutreachLimits::DEFAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(e) if e.code == "23505" && e.status == 409),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_function_is_rejected_naming_it() {
    let err = stack()
        .store()
        .call::<Value>("no_such_step", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Rejected(e) if e.status == 404),
        "{err:?}"
    );
}
