//! WhatsApp delivers webhooks concurrently and more than once, and several workers may run at
//! once: each claim here is made by many callers at the same time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use shared::domain::{
    ChatId, DeliveryStatus, DeliveryUpdate, MessageId, OutboundMessage, RecordedWebhook, TurnClaim,
};
use shared::store::SessionStore;

use crate::support::{MAX_ATTEMPTS, at, count, new_customer, stack, text_from, wamid};

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_deliveries_of_one_wamid_record_it_once() {
    let customer = new_customer();
    let message = text_from(&customer, wamid("dup"), "hola", at(0));
    let store = stack().store();
    let deliveries = (0..50).map(|_| {
        let (store, message) = (store.clone(), message.clone());
        tokio::spawn(async move { store.record_inbound(&[message]).await.unwrap() })
    });
    let results: Vec<_> = join_all(deliveries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let new = results.iter().filter(|recorded| recorded[0].is_new).count();
    assert_eq!(new, 1, "exactly one delivery is new");
    let rows = count(
        "select count(*) from whatsapp_messages where wamid = $1",
        &[&message.wamid.as_str()],
    )
    .await;
    assert_eq!(rows, 1);
}

/// The path production uses: Meta delivers the same webhook (two customers' messages and the
/// statuses of two replies) to eight callers at once. Each message is stored once and is new to
/// exactly one caller, and waits for a turn whichever caller queues it; each status is applied
/// by exactly one caller, and the stored status is the delivery's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_simultaneous_deliveries_of_one_webhook_record_it_once() {
    const CALLERS: usize = 8;
    let store = stack().store();
    let (ana, beto) = (new_customer(), new_customer());

    // Two replies the bridge sent Ana earlier, for the statuses to apply to.
    store
        .record_inbound(&[text_from(&ana, wamid("earlier"), "hola", at(0))])
        .await
        .unwrap();
    let TurnClaim::Claimed(turn) = store.claim_turn(&ana, LEASE, MAX_ATTEMPTS).await.unwrap()
    else {
        panic!("claimed")
    };
    let replies: Vec<OutboundMessage> = ["¡Hola!", "¿En qué te ayudo?"]
        .iter()
        .map(|body| OutboundMessage {
            wamid: wamid("reply"),
            message_type: "text".into(),
            body: Some((*body).into()),
            payload: None,
        })
        .collect();
    let chat = ChatId::parse("chat_webhook_race").unwrap();
    store
        .complete_turn(turn.turn_id, &ana, Some(&chat), &replies)
        .await
        .unwrap();

    let messages = [
        text_from(&ana, wamid("race-ana"), "¿cuánto cuesta?", at(60)),
        text_from(&beto, wamid("race-beto"), "buenas", at(61)),
    ];
    let statuses = [
        DeliveryUpdate {
            wamid: replies[0].wamid.clone(),
            status: DeliveryStatus::Read,
            at: at(62),
            errors: None,
        },
        DeliveryUpdate {
            wamid: replies[1].wamid.clone(),
            status: DeliveryStatus::Delivered,
            at: at(62),
            errors: None,
        },
    ];
    let deliveries = (0..CALLERS).map(|_| {
        let (store, messages, statuses) = (store.clone(), messages.clone(), statuses.clone());
        tokio::spawn(async move {
            store
                .record_webhook(&messages, &statuses, &[], &[])
                .await
                .unwrap()
        })
    });
    let results: Vec<RecordedWebhook> = join_all(deliveries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    for message in &messages {
        let outcomes: Vec<_> = results
            .iter()
            .map(|r| {
                r.messages
                    .iter()
                    .find(|m| m.wamid == message.wamid)
                    .expect("every caller is told about every message")
            })
            .collect();
        assert_eq!(
            outcomes.iter().filter(|m| m.is_new).count(),
            1,
            "{} is new to exactly one caller",
            message.wamid.as_str()
        );
        assert!(
            outcomes.iter().all(|m| m.waiting),
            "{} waits for a turn, whichever caller queues it",
            message.wamid.as_str()
        );
        let rows = count(
            "select count(*) from whatsapp_messages where wamid = $1",
            &[&message.wamid.as_str()],
        )
        .await;
        assert_eq!(rows, 1, "{} is stored once", message.wamid.as_str());
    }
    for status in &statuses {
        let applied = results
            .iter()
            .flat_map(|r| &r.statuses)
            .filter(|o| o.wamid == status.wamid && o.applied)
            .count();
        assert_eq!(applied, 1, "{} is applied once", status.wamid.as_str());
        assert!(
            results
                .iter()
                .flat_map(|r| &r.statuses)
                .filter(|o| o.wamid == status.wamid)
                .all(|o| o.delivery_status == Some(status.status)),
            "every caller is told the stored status"
        );
    }
    let db = stack().database().await.unwrap();
    let stored: BTreeMap<String, String> = db
        .query(
            "select wamid, delivery_status from whatsapp_messages where wamid = any($1)",
            &[&replies.iter().map(|r| r.wamid.as_str()).collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        stored,
        BTreeMap::from([
            (replies[0].wamid.as_str().to_owned(), "read".to_owned()),
            (replies[1].wamid.as_str().to_owned(), "delivered".to_owned()),
        ])
    );
    let waiting = count(
        "select count(*) from whatsapp_messages where customer_key = any($1) and state = 'pending'",
        &[&vec![ana.as_str(), beto.as_str()]],
    )
    .await;
    assert_eq!(waiting, 2, "both messages wait for their turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_first_chats_keep_one_and_tell_everyone_which() {
    let customer = new_customer();
    let store = stack().store();
    let attempts = (0..20).map(|i| {
        let (store, customer) = (store.clone(), customer.clone());
        tokio::spawn(async move {
            let chat = ChatId::parse(format!("chat_race_{}_{i}", customer.as_str())).unwrap();
            (
                chat.clone(),
                store
                    .attach_chat(&customer, &chat, None, None)
                    .await
                    .unwrap(),
            )
        })
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let winners: Vec<&ChatId> = results
        .iter()
        .filter(|(_, a)| a.attached)
        .map(|(chat, _)| chat)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one chat is attached");
    for (_, attachment) in &results {
        assert_eq!(
            attachment.current_chat_id.as_ref(),
            Some(winners[0]),
            "every caller is told the winner"
        );
    }
    let session = store.session(&customer).await.unwrap().unwrap();
    assert_eq!(session.current_chat_id.as_ref(), Some(winners[0]));
    let chats = count(
        "select count(*) from chat_history where customer_key = $1",
        &[&customer.as_str()],
    )
    .await;
    assert_eq!(chats, 1, "the losers' chats were not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_message() {
    let customer = new_customer();
    let store = stack().store();
    let messages: Vec<_> = (0..10)
        .map(|i| text_from(&customer, wamid("claim"), &format!("m{i}"), at(i)))
        .collect();
    store.record_inbound(&messages).await.unwrap();

    let claims = (0..10).map(|_| {
        let (store, customer) = (store.clone(), customer.clone());
        tokio::spawn(async move {
            store
                .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
                .await
                .unwrap()
        })
    });
    let claims: Vec<TurnClaim> = join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let claimed: Vec<_> = claims
        .iter()
        .filter_map(|c| {
            if let TurnClaim::Claimed(t) = c {
                Some(t)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(claimed.len(), 1, "one claim wins: {claims:?}");
    let turn = claimed[0];
    assert!(claims.iter().all(|c| match c {
        TurnClaim::Busy { turn_id, .. } => *turn_id == turn.turn_id,
        TurnClaim::Claimed(_) => true,
        TurnClaim::Idle => false,
    }));
    let bodies: Vec<_> = turn
        .messages
        .iter()
        .map(|m| m.body.clone().unwrap())
        .collect();
    let expected: Vec<_> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(
        bodies, expected,
        "all waiting messages, in the order they were sent"
    );
}

#[tokio::test]
async fn a_dead_turns_messages_are_claimed_again_after_its_lease_and_answered_ones_never() {
    let customer = new_customer();
    let store = stack().store();
    let first = text_from(&customer, wamid("lease"), "¿sigue disponible?", at(0));
    store
        .record_inbound(std::slice::from_ref(&first))
        .await
        .unwrap();

    let TurnClaim::Claimed(dead) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed")
    };
    assert!(matches!(
        store
            .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
            .await
            .unwrap(),
        TurnClaim::Busy { .. }
    ));

    // The worker dies; its lease runs out.
    expire_lease(&customer).await;
    let TurnClaim::Claimed(retaken) = store
        .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("claimed again")
    };
    assert_ne!(retaken.turn_id, dead.turn_id);
    assert_eq!(retaken.messages[0].wamid, first.wamid);
    assert_eq!(retaken.messages[0].attempts, 2);

    // The dead worker wakes up and completes: too late, nothing of the new turn is touched.
    let chat = ChatId::parse("chat_lease").unwrap();
    let late = store
        .complete_turn(dead.turn_id, &customer, Some(&chat), &[])
        .await
        .unwrap();
    assert!(!late.completed);
    assert_eq!(late.answered, 0);

    let done = store
        .complete_turn(retaken.turn_id, &customer, Some(&chat), &[])
        .await
        .unwrap();
    assert!(done.completed);
    assert_eq!(done.answered, 1);
    expire_lease(&customer).await;
    assert_eq!(
        store
            .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
            .await
            .unwrap(),
        TurnClaim::Idle,
        "answered is never claimed again"
    );
}

/// Messages keep arriving while three workers claim and complete turns: every message is
/// answered by exactly one turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_racing_arrivals_answer_every_message_exactly_once() {
    const MESSAGES: usize = 40;
    let customer = new_customer();
    let store = stack().store();
    let arrivals = {
        let (store, customer) = (store.clone(), customer.clone());
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let message = text_from(&customer, wamid("race"), &format!("r{i}"), at(i as i64));
                store.record_inbound(&[message]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let answered: Arc<tokio::sync::Mutex<BTreeMap<MessageId, u32>>> = Arc::default();
    let workers = (0..3).map(|_| {
        let (store, customer, answered) = (store.clone(), customer.clone(), answered.clone());
        tokio::spawn(async move {
            let chat = ChatId::parse("chat_workers").unwrap();
            for _ in 0..2_000 {
                if answered.lock().await.len() == MESSAGES {
                    return;
                }
                match store
                    .claim_turn(&customer, LEASE, MAX_ATTEMPTS)
                    .await
                    .unwrap()
                {
                    TurnClaim::Claimed(turn) => {
                        let mut seen = answered.lock().await;
                        for message in &turn.messages {
                            *seen.entry(message.wamid.clone()).or_default() += 1;
                        }
                        drop(seen);
                        let done = store
                            .complete_turn(turn.turn_id, &customer, Some(&chat), &[])
                            .await
                            .unwrap();
                        assert!(done.completed);
                        assert_eq!(done.answered as usize, turn.messages.len());
                    }
                    TurnClaim::Busy { .. } | TurnClaim::Idle => {
                        tokio::time::sleep(Duration::from_millis(3)).await
                    }
                }
            }
        })
    });
    arrivals.await.unwrap();
    for worker in join_all(workers).await {
        worker.unwrap();
    }

    let answered = answered.lock().await;
    assert_eq!(answered.len(), MESSAGES, "every message was claimed");
    let twice: BTreeSet<_> = answered
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(w, _)| w)
        .collect();
    assert!(twice.is_empty(), "claimed by two turns: {twice:?}");
    let unanswered = count(
        "select count(*) from whatsapp_messages where customer_key = $1 and state <> 'answered'",
        &[&customer.as_str()],
    )
    .await;
    assert_eq!(unanswered, 0);
}

async fn expire_lease(customer: &shared::domain::CustomerKey) {
    let db = stack().database().await.unwrap();
    db.execute(
        "update chat_sessions set turn_lease_expires_at = now() - interval '1 second' \
         where customer_key = $1 and turn_id is not null",
        &[&customer.as_str()],
    )
    .await
    .unwrap();
}
