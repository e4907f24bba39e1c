//! A username customer whose business-scoped user id WhatsApp changes keeps their session: the
//! signed notice (a `user_changed_user_id` system message, or an older `user_id_update` change)
//! moves the id, and a later message from the new id queues a turn for the same customer.

use sandbox::LocalStack;
use serde_json::json;
use shared::domain::CustomerKey;
use shared::queue::TurnJob;

use super::{RecordingQueue, change_delivery, count, respond, signed, unique, user_id, webhook};

/// The business number the stand-in's webhook configuration answers for.
const OURS: &str = "106540352242922";

/// A text from a username-only sender: `user_id`, no phone number.
fn username_text(user_id: &str, wamid: &str) -> String {
    change_delivery(
        "messages",
        OURS,
        json!({
            "contacts": [{ "profile": { "name": "sam", "username": "@sam" }, "user_id": user_id }],
            "messages": [{ "from_user_id": user_id, "id": wamid,
                           "timestamp": chrono::Utc::now().timestamp().to_string(),
                           "type": "text", "text": { "body": "hola" } }]
        }),
    )
}

/// Meta's system message: the user's business-scoped user id changed from `previous` to `new`.
fn changed_user_id(previous: &str, new: &str, wamid: &str) -> String {
    change_delivery(
        "messages",
        OURS,
        json!({
            "messages": [{ "from_user_id": previous, "id": wamid,
                           "timestamp": chrono::Utc::now().timestamp().to_string(),
                           "type": "system",
                           "system": { "body": "User sam changed their business-scoped user ID",
                                       "type": "user_changed_user_id",
                                       "previous_user_id": previous, "user_id": new } }]
        }),
    )
}

/// The customers of the queued turns, in order.
fn queued(queue: &RecordingQueue) -> Vec<CustomerKey> {
    queue
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|(job, _)| match job {
            TurnJob::TakeTurn { customer_key } => customer_key.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

async fn whatsapp_user_id(stack: &LocalStack, customer: &CustomerKey) -> Option<String> {
    let db = stack.database().await.unwrap();
    db.query_one(
        "select whatsapp_user_id from chat_sessions where customer_key = $1",
        &[&customer.as_str()],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn a_changed_user_id_keeps_the_customer_and_their_next_message_queues_their_turn() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let (first, second, third) = (user_id(), user_id(), user_id());
    let customer = CustomerKey::from_whatsapp_user_id(&first).unwrap();

    let body = username_text(&first, &unique("wamid.uid"));
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(queued(&queue), std::slice::from_ref(&customer));

    let notice = unique("wamid.sys");
    let body = changed_user_id(&first, &second, &notice);
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(
        whatsapp_user_id(stack, &customer).await.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(queue.jobs.lock().unwrap().len(), 1, "a notice is no turn");
    assert_eq!(
        count(
            stack,
            "select count(*) from unprocessed_webhook_events where payload->>'id' = $1",
            &notice
        )
        .await,
        0,
        "the notice was used, not kept as unprocessed"
    );
    assert_eq!(
        count(
            stack,
            "select count(*) from conversation_events where kind = 'user_id_changed' and customer_key = $1",
            customer.as_str()
        )
        .await,
        1
    );
    // Meta delivers the notice again: nothing changes twice.
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);

    let from_new_id = unique("wamid.uid");
    let body = username_text(&second, &from_new_id);
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(
        queued(&queue),
        [customer.clone(), customer.clone()],
        "the new id's message is the same customer's turn"
    );
    assert_eq!(
        count(
            stack,
            "select count(*) from whatsapp_messages where customer_key = $1",
            customer.as_str()
        )
        .await,
        2
    );
    let new_key = CustomerKey::from_whatsapp_user_id(&second).unwrap();
    assert_eq!(
        count(
            stack,
            "select count(*) from chat_sessions where customer_key = $1",
            new_key.as_str()
        )
        .await,
        0,
        "no session for the new id"
    );

    // The older `user_id_update` change field is followed too.
    let update = change_delivery(
        "user_id_update",
        OURS,
        json!({ "user_id_update": [{ "previous_user_id": second, "user_id": third,
                                     "timestamp": chrono::Utc::now().timestamp() }] }),
    );
    assert_eq!(respond(&webhook, signed(&update)).await.0, 200);
    assert_eq!(
        whatsapp_user_id(stack, &customer).await.as_deref(),
        Some(third.as_str())
    );
    let body = username_text(&third, &unique("wamid.uid"));
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(queued(&queue).last(), Some(&customer));
}
