//! A customer is one session whichever of their WhatsApp ids they write from, through the
//! adapter: a form customer who writes with their number and user id, then with the user id
//! only; a username customer who later shares their number; a user id WhatsApp changed. And a
//! voice note's transcript is kept only under the turn that holds it.

use std::time::Duration;

use shared::domain::{
    CountryId, CustomerKey, InboundMessage, OutreachLimits, PhoneNumber, TurnClaim, TurnId,
    UserIdChange, WebhookContent,
};
use shared::store::{PostgrestStore, SessionStore};

use crate::support::{MAX_ATTEMPTS, at, count, form, new_customer, stack, text_from, wamid};

/// A business-scoped user id no other test uses.
fn new_user_id() -> String {
    let customer = new_customer();
    format!("MX.u{}", customer.as_str())
}

/// A text from `customer_key` carrying `user_id` (a username-only sender: no WhatsApp id).
fn text_with_user_id(
    customer_key: &CustomerKey,
    user_id: &str,
    body: &str,
    seconds: i64,
) -> InboundMessage {
    let phone = customer_key.as_str().bytes().all(|b| b.is_ascii_digit());
    InboundMessage {
        whatsapp_user_id: Some(user_id.to_owned()),
        wa_id: phone.then(|| customer_key.as_str().to_owned()),
        ..text_from(customer_key, wamid("uid"), body, at(seconds))
    }
}

async fn sessions_of(store: &PostgrestStore, keys: &[&CustomerKey]) -> usize {
    let mut found = 0;
    for key in keys {
        found += usize::from(store.session(key).await.unwrap().is_some());
    }
    found
}

#[tokio::test]
async fn a_form_customer_who_writes_with_the_user_id_only_is_the_same_customer() {
    let store = stack().store();
    // A Cancún mobile (998 + 7 digits): no other test uses the area.
    let local = std::process::id() % 10_000_000;
    let phone = PhoneNumber::parse(&format!("+52 998 {local:07}"), CountryId::MX).unwrap();
    let key = CustomerKey::from_phone(&phone);
    store
        .record_form_submission(&form(&phone, "Lucía", "uid-form"), OutreachLimits::DEFAULT)
        .await
        .unwrap();
    let user_id = new_user_id();
    let user_key = CustomerKey::from_whatsapp_user_id(&user_id).unwrap();

    let both = store
        .record_inbound(&[text_with_user_id(&key, &user_id, "hola", 0)])
        .await
        .unwrap();
    assert_eq!(both[0].customer_key, key);
    let only_user_id = text_with_user_id(&user_key, &user_id, "¿sigue en pie?", 10);
    let recorded = store
        .record_inbound(std::slice::from_ref(&only_user_id))
        .await
        .unwrap();
    assert_eq!(
        recorded[0].customer_key, key,
        "the form customer's key comes back, so the turn is queued for their session"
    );
    assert!(recorded[0].is_new);
    assert_eq!(
        sessions_of(&store, &[&user_key]).await,
        0,
        "no session for the user id"
    );
    let session = store.session(&key).await.unwrap().unwrap();
    assert_eq!(session.name.as_deref(), Some("Lucía"));
    assert_eq!(session.whatsapp_user_id.as_deref(), Some(user_id.as_str()));
    assert_eq!(session.last_inbound_at, Some(at(10)));
    assert_eq!(
        count(
            "select count(*) from whatsapp_messages where customer_key = $1",
            &[&key.as_str()]
        )
        .await,
        2
    );
    // The same delivery again: the same session, nothing new.
    let again = store.record_inbound(&[only_user_id]).await.unwrap();
    assert_eq!(
        (again[0].customer_key.clone(), again[0].is_new),
        (key, false)
    );
}

#[tokio::test]
async fn a_username_customer_who_later_shares_their_number_keeps_their_session() {
    let store = stack().store();
    let user_id = new_user_id();
    let user_key = CustomerKey::from_whatsapp_user_id(&user_id).unwrap();
    let first = store
        .record_inbound(&[text_with_user_id(&user_key, &user_id, "hola", 0)])
        .await
        .unwrap();
    assert_eq!(first[0].customer_key, user_key);

    let phone_key = new_customer();
    let with_number = store
        .record_inbound(&[text_with_user_id(&phone_key, &user_id, "mi número", 5)])
        .await
        .unwrap();
    assert_eq!(with_number[0].customer_key, user_key);
    assert_eq!(sessions_of(&store, &[&phone_key]).await, 0);
    let session = store.session(&user_key).await.unwrap().unwrap();
    assert_eq!(session.wa_id.as_deref(), Some(phone_key.as_str()));
    assert_eq!(session.last_inbound_at, Some(at(5)));
}

#[tokio::test]
async fn after_a_user_id_change_the_new_id_writes_to_the_same_session() {
    let store = stack().store();
    let (old_id, new_id) = (new_user_id(), new_user_id());
    let old_key = CustomerKey::from_whatsapp_user_id(&old_id).unwrap();
    let new_key = CustomerKey::from_whatsapp_user_id(&new_id).unwrap();
    store
        .record_inbound(&[text_with_user_id(&old_key, &old_id, "hola", 0)])
        .await
        .unwrap();

    let change = UserIdChange {
        previous_user_id: old_id.clone(),
        user_id: new_id.clone(),
        wa_id: None,
        at: Some(at(20)),
    };
    let from_new_id = text_with_user_id(&new_key, &new_id, "sigo siendo yo", 30);
    let recorded = store
        .record_webhook_content(WebhookContent {
            messages: std::slice::from_ref(&from_new_id),
            user_id_changes: std::slice::from_ref(&change),
            ..WebhookContent::default()
        })
        .await
        .unwrap();
    assert_eq!(recorded.user_id_changes.len(), 1);
    assert_eq!(
        recorded.user_id_changes[0].customer_keys,
        std::slice::from_ref(&old_key)
    );
    assert_eq!(recorded.messages[0].customer_key, old_key);
    assert!(recorded.messages[0].waiting);
    assert_eq!(sessions_of(&store, &[&new_key]).await, 0);
    let session = store.session(&old_key).await.unwrap().unwrap();
    assert_eq!(session.whatsapp_user_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(
        count(
            "select count(*) from conversation_events where customer_key = $1 and kind = 'user_id_changed'",
            &[&old_key.as_str()]
        )
        .await,
        1
    );

    // The change delivered again changes nothing.
    let again = store
        .record_webhook_content(WebhookContent {
            user_id_changes: &[change],
            ..WebhookContent::default()
        })
        .await
        .unwrap();
    assert!(again.user_id_changes[0].customer_keys.is_empty());
}

#[tokio::test]
async fn a_transcript_is_kept_only_under_the_turn_that_holds_the_voice_note() {
    let store = stack().store();
    let customer = new_customer();
    let note = InboundMessage {
        message_type: "audio".into(),
        body: None,
        payload: Some(
            serde_json::json!({ "type": "audio", "audio": { "id": "1", "voice": true } }),
        ),
        ..text_from(&customer, wamid("voice"), "", at(0))
    };
    let text = text_from(&customer, wamid("text"), "¿y el precio?", at(1));
    store
        .record_inbound(&[note.clone(), text.clone()])
        .await
        .unwrap();
    // A turn id no turn has.
    let stranger = TurnId(uuid::Uuid::from_u128(0x1717_1717));
    assert!(
        !store
            .save_transcript(stranger, &note.wamid, "hola")
            .await
            .unwrap(),
        "no turn holds it yet"
    );

    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, Duration::from_secs(60), MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("the two messages wait");
    };
    assert!(
        !store
            .save_transcript(stranger, &note.wamid, "hola")
            .await
            .unwrap()
    );
    assert!(
        !store
            .save_transcript(turn.turn_id, &text.wamid, "no")
            .await
            .unwrap(),
        "a text is no voice note"
    );
    assert!(
        store
            .save_transcript(turn.turn_id, &note.wamid, "Hola, quiero saber el precio")
            .await
            .unwrap()
    );
    let db = stack().database().await.unwrap();
    let bodies: Vec<Option<String>> = db
        .query(
            "select body from whatsapp_messages where wamid = any($1) order by sent_at",
            &[&vec![note.wamid.as_str(), text.wamid.as_str()]],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        bodies,
        [
            Some("Hola, quiero saber el precio".to_owned()),
            Some("¿y el precio?".to_owned())
        ]
    );
}
