//! Who a form may reach, end to end: a customer who opted out, one a person has taken over and
//! one whose conversation is live get no template, no chat and no Retell call, and their form is
//! answered exactly as a contacted customer's. After the cooldown a new form starts a new chat,
//! and the old one stays in the history.

use http::Response;
use sandbox::LocalStack;
use serde_json::Value;
use shared::domain::{CountryId, CustomerKey, PhoneNumber};

use super::{Bridge, IDEMPOTENCY_KEY_HEADER, body, form, post_json, unique_phone};

fn customer(phone: &str) -> CustomerKey {
    CustomerKey::from_phone(&PhoneNumber::parse(phone, CountryId::MX).unwrap())
}

async fn execute(sql: &str, customer: &CustomerKey) {
    let db = LocalStack::shared().database().await.unwrap();
    db.execute(sql, &[&customer.as_str()]).await.unwrap();
}

/// The customer's submissions, oldest first: (status, outcome_reason).
async fn submissions(customer: &CustomerKey) -> Vec<(String, Option<String>)> {
    let db = LocalStack::shared().database().await.unwrap();
    db.query(
        "select status, outcome_reason from form_submissions where customer_key = $1 \
         order by created_at, id",
        &[&customer.as_str()],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// Everything an answer tells the caller, but the submission's own id (a UUID either way).
fn shape(answer: &Response<String>) -> (u16, Vec<(String, Vec<u8>)>, Value, usize) {
    let mut reply = body(answer);
    let id = reply["submission_id"].take();
    assert!(
        id.as_str()
            .is_some_and(|id| id.parse::<uuid::Uuid>().is_ok()),
        "{id}"
    );
    let headers = answer
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    (
        answer.status().as_u16(),
        headers,
        reply,
        answer.body().len(),
    )
}

/// Posts `form` under its own `Idempotency-Key`.
async fn post_keyed(bridge: &Bridge, key: &str, form: &Value) -> Response<String> {
    let key = format!("{key}-{}", std::process::id());
    bridge
        .send(post_json().header(IDEMPOTENCY_KEY_HEADER, key), form)
        .await
}

#[tokio::test]
async fn opted_out_paused_and_live_customers_get_nothing_and_the_same_answer() {
    let bridge = Bridge::new();
    // A customer the bridge contacts, to compare the answers with.
    let contacted = bridge.post(&form("Ana", &unique_phone())).await;
    bridge.idle().await;
    assert_eq!(
        bridge.graph.accepted().len(),
        1,
        "sanity: Ana got the template"
    );
    assert_eq!(bridge.retell.chats().len(), 1, "sanity: and a chat");

    let cases = [
        (
            "opted out",
            "insert into chat_sessions (customer_key, opted_out_at) values ($1::text, now() - interval '2 days')",
            "opted_out",
        ),
        (
            "paused",
            "insert into chat_sessions (customer_key, name, paused_until) \
             values ($1::text, 'Pau', now() + interval '1 hour')",
            "paused",
        ),
        (
            "wrote two hours ago",
            "insert into chat_sessions (customer_key, last_inbound_at) values ($1::text, now() - interval '2 hours')",
            "conversation_live",
        ),
    ];
    for (case, setup, reason) in cases {
        let phone = unique_phone();
        let customer = customer(&phone);
        execute(setup, &customer).await;
        let answer = bridge.post(&form("Beatriz", &phone)).await;
        assert_eq!(
            shape(&answer),
            shape(&contacted),
            "{case}: {}",
            answer.body()
        );
        // Posted again (a retry): still the same answer.
        let again = bridge.post(&form("Beatriz", &phone)).await;
        assert_eq!(shape(&again), shape(&contacted), "{case}");
        assert_eq!(
            body(&again)["submission_id"],
            body(&answer)["submission_id"]
        );
        bridge.idle().await;
        assert_eq!(
            submissions(&customer).await,
            [("skipped".to_owned(), Some(reason.to_owned()))],
            "{case}"
        );
    }
    assert_eq!(bridge.graph.accepted().len(), 1, "no template but Ana's");
    assert_eq!(bridge.retell.chats().len(), 1, "no Retell chat but Ana's");
    assert!(
        bridge
            .retell
            .chats()
            .iter()
            .all(|chat| chat.dynamic_variables["customer_name"] == "Ana"),
        "Retell heard of nobody else"
    );
    assert!(bridge.queue.dead_letters().is_empty());
}

#[tokio::test]
async fn a_second_form_within_the_cooldown_keeps_the_chat_and_one_after_it_starts_a_new_one() {
    let bridge = Bridge::new();
    let phone = unique_phone();
    let customer = customer(&phone);
    let first = post_keyed(
        &bridge,
        &format!("first-{customer}"),
        &form("Carla", &phone),
    )
    .await;
    bridge.idle().await;
    let chats = bridge.retell.chats();
    assert_eq!(chats.len(), 1);
    let first_chat = chats[0].chat_id.clone();

    // The customer answered the template.
    execute(
        "update chat_sessions set last_inbound_at = now() - interval '5 minutes' where customer_key = $1",
        &customer,
    )
    .await;
    let second = post_keyed(
        &bridge,
        &format!("second-{customer}"),
        &form("Carla M.", &phone),
    )
    .await;
    assert_eq!(shape(&second), shape(&first));
    bridge.idle().await;
    assert_eq!(bridge.graph.accepted().len(), 1, "no second template");
    assert_eq!(bridge.retell.chats().len(), 1, "no second chat");
    assert_eq!(
        submissions(&customer).await,
        [
            ("started".to_owned(), None),
            ("skipped".to_owned(), Some("conversation_live".to_owned()))
        ]
    );
    let db = LocalStack::shared().database().await.unwrap();
    let row = db
        .query_one(
            "select current_chat_id, name from chat_sessions where customer_key = $1",
            &[&customer.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (first_chat.to_string(), "Carla".to_owned()),
        "the live chat goes on, and the name is not changed"
    );

    // A day and more later.
    execute(
        "update form_submissions set created_at = created_at - interval '25 hours' where customer_key = $1",
        &customer,
    )
    .await;
    execute(
        "update chat_sessions set last_inbound_at = last_inbound_at - interval '25 hours', \
         last_outbound_at = last_outbound_at - interval '25 hours', \
         chat_started_at = chat_started_at - interval '25 hours' where customer_key = $1",
        &customer,
    )
    .await;
    let third = post_keyed(
        &bridge,
        &format!("third-{customer}"),
        &form("Carla", &phone),
    )
    .await;
    assert_eq!(shape(&third), shape(&first));
    bridge.idle().await;
    let chats = bridge.retell.chats();
    assert_eq!(chats.len(), 2, "a new chat after the cooldown");
    assert_eq!(bridge.graph.accepted().len(), 2, "and a new template");
    let new_chat = chats[1].chat_id.clone();
    assert_ne!(new_chat, first_chat);
    let history = db
        .query(
            "select chat_id, ended_at is not null from chat_history where customer_key = $1 \
             order by started_at",
            &[&customer.as_str()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, bool>(1)))
        .collect::<Vec<_>>();
    assert_eq!(
        history,
        [
            (first_chat.to_string(), true),
            (new_chat.to_string(), false)
        ],
        "the old chat stays in the history"
    );
    assert_eq!(
        submissions(&customer).await.last().unwrap(),
        &("started".to_owned(), None)
    );
    assert!(bridge.queue.dead_letters().is_empty());
}
