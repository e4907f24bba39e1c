//! A person takes over and hands back, through the adapter: pauses and their end, a paused
//! customer's turn held and its messages given to the agent after the pause with what staff
//! sent, staff messages sent once however often their webhook is delivered, and the business
//! app's echoes recorded once. Staff rows are inserted behind the API, as the Table Editor does.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::future::join_all;
use sandbox::LocalStack;
use shared::domain::{
    Author, BusinessEcho, ChatId, CustomerKey, MessageId, OutboundMessage, StaffClaim,
    StaffMessageStatus, TurnClaim, TurnRetry, WebhookContent,
};
use shared::store::{PostgrestStore, SessionStore};

use crate::support::{MAX_ATTEMPTS, at, count, new_customer, stack, text_from, wamid};

const LEASE: Duration = Duration::from_secs(60);

/// A row of `staff_messages`, inserted as staff do in the Table Editor; its id.
async fn staff_writes(customer: &CustomerKey, body: &str) -> i64 {
    let db = stack().database().await.unwrap();
    db.query_one(
        "insert into staff_messages (customer_key, body, created_by) values ($1::text, $2, 'ana@example.com') \
         returning id",
        &[&customer.as_str(), &body],
    )
    .await
    .unwrap()
    .get(0)
}

/// The reasons `needs_attention` lists the customer for, sorted.
async fn needs_attention(customer: &CustomerKey) -> Vec<String> {
    let db = stack().database().await.unwrap();
    db.query(
        "select reason from needs_attention where customer_key = $1 order by reason",
        &[&customer.as_str()],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// The kinds of the customer's `conversation_events`, in order.
async fn events(customer: &CustomerKey) -> Vec<String> {
    let db = stack().database().await.unwrap();
    db.query(
        "select kind from conversation_events where customer_key = $1 order by id",
        &[&customer.as_str()],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// A customer who wrote (the 24-hour window open).
async fn customer_who_wrote(store: &PostgrestStore) -> CustomerKey {
    let customer = new_customer();
    let message = text_from(&customer, wamid("hola"), "hola", Utc::now());
    store.record_inbound(&[message]).await.unwrap();
    customer
}

fn sent(wamid: MessageId, body: &str) -> OutboundMessage {
    OutboundMessage {
        wamid,
        message_type: "text".into(),
        body: Some(body.into()),
        payload: None,
    }
}

#[tokio::test]
async fn a_pause_is_recorded_and_resume_hands_back() {
    let store = stack().store();
    let customer = new_customer();

    let until = store
        .pause_conversation(
            &customer,
            Some(30),
            Some("calling them"),
            Some("ana@example.com"),
        )
        .await
        .unwrap();
    let expected = Utc::now() + TimeDelta::minutes(30);
    assert!(
        (until - expected).abs() < TimeDelta::seconds(30),
        "{until} ≈ {expected}"
    );
    let session = store
        .session(&customer)
        .await
        .unwrap()
        .expect("a session is made");
    assert!(session.is_paused(Utc::now()));
    assert_eq!(session.paused_until, Some(until));
    assert_eq!(needs_attention(&customer).await, ["paused"]);

    assert!(store.resume_conversation(&customer, None).await.unwrap());
    assert!(
        !store.resume_conversation(&customer, None).await.unwrap(),
        "a repeat resumes nothing"
    );
    let session = store.session(&customer).await.unwrap().unwrap();
    assert!(!session.is_paused(Utc::now()));
    assert_eq!(events(&customer).await, ["paused", "resumed"]);
    assert!(needs_attention(&customer).await.is_empty());
}

#[tokio::test]
async fn a_pause_ends_by_itself_and_leaves_needs_attention() {
    let store = stack().store();
    let customer = new_customer();
    store
        .pause_conversation(&customer, None, None, None)
        .await
        .unwrap();
    assert_eq!(needs_attention(&customer).await, ["paused"]);

    // The pause runs out.
    let db = stack().database().await.unwrap();
    db.execute(
        "update chat_sessions set paused_until = now() - interval '1 second' where customer_key = $1",
        &[&customer.as_str()],
    )
    .await
    .unwrap();
    let session = store.session(&customer).await.unwrap().unwrap();
    assert!(!session.is_paused(Utc::now()), "the agent answers again");
    assert!(needs_attention(&customer).await.is_empty());
}

#[tokio::test]
async fn the_sweeper_records_an_expired_pause_once() {
    // A stack of its own: a sweep here finds only what this test left.
    let own = LocalStack::start().unwrap();
    let store = own.store();
    let customer = new_customer();
    store
        .pause_conversation(&customer, Some(1), None, None)
        .await
        .unwrap();
    let db = own.database().await.unwrap();
    db.execute(
        "update chat_sessions set paused_until = now() - interval '1 second' where customer_key = $1",
        &[&customer.as_str()],
    )
    .await
    .unwrap();
    store.sweep_stranded_work(LEASE).await.unwrap();
    store.sweep_stranded_work(LEASE).await.unwrap();
    let expired: i64 = db
        .query_one(
            "select count(*) from conversation_events where customer_key = $1 and kind = 'pause_expired'",
            &[&customer.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(expired, 1);
}

#[tokio::test]
async fn the_agent_asking_for_a_person_pauses_and_is_listed_until_staff_write() {
    let store = stack().store();
    let customer = customer_who_wrote(&store).await;
    let until = store
        .request_human(
            &customer,
            Some(45),
            Some("quiere hablar con alguien"),
            "agent",
        )
        .await
        .unwrap();
    assert!(until > Utc::now() + TimeDelta::minutes(44));
    assert_eq!(events(&customer).await, ["paused", "human_requested"]);
    assert_eq!(
        needs_attention(&customer).await,
        ["human_requested", "paused"]
    );

    staff_writes(&customer, "Hola, soy Ana").await;
    assert_eq!(needs_attention(&customer).await, ["paused"]);
}

#[tokio::test]
async fn a_paused_turn_is_held_and_the_next_turn_after_the_pause_carries_it_with_the_staff_messages()
 {
    let store = stack().store();
    let customer = new_customer();
    let chat = ChatId::parse("chat_staff_context").unwrap();
    store
        .record_inbound(&[text_from(&customer, wamid("held"), "¿Hay alguien?", at(0))])
        .await
        .unwrap();
    store
        .pause_conversation(&customer, Some(60), None, None)
        .await
        .unwrap();

    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("the message is claimed");
    };
    assert!(turn.context.is_empty());
    assert!(store.hold_turn(turn.turn_id, &customer).await.unwrap());
    assert_eq!(
        store
            .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
            .await
            .unwrap(),
        TurnClaim::Idle,
        "a held message waits for no turn"
    );

    // Staff answer while the agent is paused.
    let id = staff_writes(&customer, "Le llamo en 5 minutos").await;
    let StaffClaim::Claimed { message, .. } = store.claim_staff_message(id).await.unwrap() else {
        panic!("the staff message is claimed");
    };
    assert_eq!(message.status, StaffMessageStatus::Sending);
    assert!(
        store
            .complete_staff_message(id, &[sent(wamid("staff"), "Le llamo en 5 minutos")])
            .await
            .unwrap()
    );

    assert!(store.resume_conversation(&customer, None).await.unwrap());
    store
        .record_inbound(&[text_from(
            &customer,
            wamid("after"),
            "¿Sigue ahí?",
            Utc::now(),
        )])
        .await
        .unwrap();
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("the new message is claimed");
    };
    let context: Vec<(Author, &str)> = turn
        .context
        .iter()
        .map(|line| (line.author, line.body.as_str()))
        .collect();
    assert_eq!(
        context,
        [
            (Author::Customer, "¿Hay alguien?"),
            (Author::Staff, "Le llamo en 5 minutos")
        ],
        "the held message and the staff's, in order"
    );
    assert_eq!(turn.messages.len(), 1);
    assert_eq!(turn.messages[0].body.as_deref(), Some("¿Sigue ahí?"));

    // A turn put back tells nothing; the one that answers with the agent tells all of it.
    store
        .fail_turn(
            turn.turn_id,
            "Retell answered 500",
            TurnRetry::After {
                delay: Duration::ZERO,
                count_attempt: true,
            },
        )
        .await
        .unwrap();
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed again");
    };
    assert_eq!(turn.context.len(), 2, "the retry carries the context again");
    let completion = store
        .complete_turn(
            turn.turn_id,
            &customer,
            Some(&chat),
            &[sent(wamid("reply"), "Sí")],
        )
        .await
        .unwrap();
    assert!(completion.completed);
    assert_eq!(
        count(
            "select count(*) from whatsapp_messages where customer_key = $1 \
             and given_to_agent_at is null and (state = 'held' or author = 'staff')",
            &[&customer.as_str()]
        )
        .await,
        0,
        "everything was told to the agent"
    );
    store
        .record_inbound(&[text_from(&customer, wamid("later"), "Gracias", Utc::now())])
        .await
        .unwrap();
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed");
    };
    assert!(turn.context.is_empty(), "nothing is told twice");
}

#[tokio::test]
async fn a_staff_message_claimed_twice_at_once_is_claimed_once() {
    let store = stack().store();
    let customer = customer_who_wrote(&store).await;
    let id = staff_writes(&customer, "Hola").await;

    let claims = join_all((0..8).map(|_| store.claim_staff_message(id))).await;
    let claimed: Vec<_> = claims
        .into_iter()
        .map(Result::unwrap)
        .filter_map(|claim| match claim {
            StaffClaim::Claimed { message, session } => Some((message, session)),
            StaffClaim::NotClaimed => None,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(claimed.len(), 1, "one sender");
    let (message, session) = &claimed[0];
    assert_eq!(message.customer_key, customer);
    assert_eq!(message.body, "Hola");
    assert_eq!(message.created_by, "ana@example.com");
    let session = session.as_ref().expect("the customer's session");
    assert!(session.within_service_window(Utc::now()));
    assert!(
        session.is_paused(Utc::now()),
        "the staff message paused the agent"
    );

    let parts = [sent(wamid("sent"), "Hola")];
    assert!(store.complete_staff_message(id, &parts).await.unwrap());
    assert!(
        !store.complete_staff_message(id, &parts).await.unwrap(),
        "a repeat (the store's answer was lost) changes nothing"
    );
    assert_eq!(
        store.claim_staff_message(id).await.unwrap(),
        StaffClaim::NotClaimed,
        "a repeated webhook after the send sends nothing"
    );
    assert_eq!(
        count(
            "select count(*) from whatsapp_messages where customer_key = $1 and author = 'staff'",
            &[&customer.as_str()]
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_staff_message_waits_for_the_running_turn_and_is_refused_or_released() {
    let store = stack().store();
    let customer = customer_who_wrote(&store).await;
    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed");
    };
    let id = staff_writes(&customer, "Un momento").await;
    let StaffClaim::Busy { lease_expires_at } = store.claim_staff_message(id).await.unwrap() else {
        panic!("busy while the turn runs");
    };
    assert_eq!(lease_expires_at, turn.lease_expires_at);
    store.hold_turn(turn.turn_id, &customer).await.unwrap();

    assert!(matches!(
        store.claim_staff_message(id).await.unwrap(),
        StaffClaim::Claimed { .. }
    ));
    assert!(
        store
            .release_staff_message(id, "Graph answered 500", Duration::from_secs(2))
            .await
            .unwrap()
    );
    assert!(
        matches!(
            store.claim_staff_message(id).await.unwrap(),
            StaffClaim::Claimed { .. }
        ),
        "the retry claims it again"
    );
    assert!(
        store
            .refuse_staff_message(id, "outside the 24-hour window", true)
            .await
            .unwrap()
    );
    assert!(
        !store
            .refuse_staff_message(id, "again", false)
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim_staff_message(id).await.unwrap(),
        StaffClaim::NotClaimed
    );
    assert_eq!(
        store.claim_staff_message(i64::MAX).await.unwrap(),
        StaffClaim::NotClaimed,
        "no such message"
    );
}

#[tokio::test]
async fn business_app_echoes_are_recorded_once_and_pause() {
    let store = stack().store();
    let customer = new_customer();
    let echo = BusinessEcho {
        wamid: wamid("echo"),
        customer_key: customer.clone(),
        message_type: "text".into(),
        body: Some("Hola, te escribo desde la app".into()),
        payload: Some(serde_json::json!({ "type": "text" })),
        sent_at: Utc::now(),
        wa_id: Some(customer.as_str().into()),
    };
    let echoes = [echo];
    let deliveries = (0..4).map(|_| {
        store.record_webhook_content(WebhookContent {
            echoes: &echoes,
            ..WebhookContent::default()
        })
    });
    let recorded: Vec<_> = join_all(deliveries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recorded
            .iter()
            .filter(|r| r.echoes.iter().any(|e| e.is_new))
            .count(),
        1,
        "{recorded:?}"
    );
    assert_eq!(
        count(
            "select count(*) from staff_messages where customer_key = $1 and status = 'sent'",
            &[&customer.as_str()]
        )
        .await,
        1
    );
    assert_eq!(
        count(
            "select count(*) from whatsapp_messages where customer_key = $1 and author = 'staff'",
            &[&customer.as_str()]
        )
        .await,
        1
    );
    let session = store.session(&customer).await.unwrap().unwrap();
    assert!(session.is_paused(Utc::now()), "an echo pauses the agent");
}
