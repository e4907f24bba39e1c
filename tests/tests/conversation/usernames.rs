//! A username customer with no phone number is answered through the Cloud API's `recipient`,
//! and keeps their conversation when WhatsApp changes their business-scoped user id: the reply
//! goes to the new id, and the same Retell chat continues.

use chrono::Utc;
use sandbox::retell_standin::RetellOperation::CreateChat;
use shared::domain::{CustomerKey, InboundMessage, MessageId, UserIdChange, WebhookContent};
use shared::engine::TurnOutcome;
use shared::store::SessionStore;

use crate::support::Bridge;

/// A user id of this bridge's own (its customer's digits), and a second one for after a change.
fn user_ids(bridge: &Bridge) -> (String, String) {
    let digits = &bridge.customer.as_str()[2..];
    (format!("MX.u{digits}"), format!("MX.v{digits}"))
}

/// A text from a username-only sender, recorded as the webhook records it (with a user id
/// change in the same delivery, if any); the customer key the store answers.
async fn username_writes(
    bridge: &Bridge,
    user_id: &str,
    label: &str,
    text: &str,
    changes: &[UserIdChange],
) -> CustomerKey {
    let message = InboundMessage {
        wamid: MessageId::parse(format!("wamid.IN.{}.{label}", bridge.customer)).unwrap(),
        customer_key: CustomerKey::from_whatsapp_user_id(user_id).unwrap(),
        message_type: "text".into(),
        body: Some(text.into()),
        payload: None,
        sent_at: Utc::now(),
        wa_id: None,
        whatsapp_user_id: Some(user_id.into()),
        profile_name: Some("sam".into()),
    };
    let recorded = bridge
        .store()
        .record_webhook_content(WebhookContent {
            messages: &[message],
            user_id_changes: changes,
            ..WebhookContent::default()
        })
        .await
        .unwrap();
    assert!(recorded.messages[0].is_new && recorded.messages[0].waiting);
    recorded.messages[0].customer_key.clone()
}

#[tokio::test]
async fn a_username_sender_is_answered_through_recipient_and_followed_across_an_id_change() {
    let bridge = Bridge::new();
    let (first_id, second_id) = user_ids(&bridge);
    let engine = bridge.engine();

    let customer = username_writes(&bridge, &first_id, "1", "Hola, ¿tienen seguros?", &[]).await;
    assert_eq!(customer.as_str(), first_id);
    let TurnOutcome::Answered { chat_id, .. } = engine.take_turn(&customer).await.unwrap() else {
        panic!("answered");
    };
    let sent = bridge.graph.accepted();
    let [reply] = sent.as_slice() else {
        panic!("one reply: {sent:?}");
    };
    assert_eq!(reply.to, first_id);
    assert_eq!(reply.body["recipient"], first_id.as_str());
    assert!(
        reply.body.get("to").is_none(),
        "no phone number to send to: {}",
        reply.body
    );

    // WhatsApp changes the id; the customer writes from the new one in the same delivery.
    let change = UserIdChange {
        previous_user_id: first_id.clone(),
        user_id: second_id.clone(),
        wa_id: None,
        at: Some(Utc::now()),
    };
    let same = username_writes(&bridge, &second_id, "2", "¿Y el precio?", &[change]).await;
    assert_eq!(same, customer, "the same customer's turn");
    let TurnOutcome::Answered {
        chat_id: same_chat, ..
    } = bridge.engine().take_turn(&customer).await.unwrap()
    else {
        panic!("answered");
    };
    assert_eq!(same_chat, chat_id, "the same Retell chat continues");
    assert_eq!(
        bridge.retell.requests(CreateChat).len(),
        1,
        "no second chat"
    );
    let sent = bridge.graph.accepted();
    let [_, reply] = sent.as_slice() else {
        panic!("two replies: {sent:?}");
    };
    assert_eq!(reply.to, second_id, "the reply goes to the new id");
    assert_eq!(reply.body["recipient"], second_id.as_str());
    assert!(reply.body.get("to").is_none(), "{}", reply.body);
    let chat = bridge.retell.chat(chat_id.as_str()).unwrap();
    assert_eq!(
        chat.contents("user"),
        ["Hola, ¿tienen seguros?", "¿Y el precio?"]
    );
}
