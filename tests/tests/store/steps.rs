//! Each step of a conversation through the adapter: what goes in comes back typed.

use std::time::Duration;

use chrono::Utc;
use shared::domain::{
    ChatId, ChatStatus, CountryId, DeliveryStatus, DeliveryUpdate, OutboundMessage, OutreachLimits,
    PhoneNumber, SubmissionStatus, TurnClaim, TurnRetry,
};
use shared::store::SessionStore;

use crate::support::{MAX_ATTEMPTS, at, form, stack, text_from, wamid};

#[tokio::test]
async fn a_conversation_goes_from_form_to_answered_turn_to_delivery() {
    let store = stack().store();
    let phone = PhoneNumber::parse("+52 222 123 4567", CountryId::MX).unwrap();
    let submission = form(&phone, "Rosa", "steps");
    let customer = submission.customer_key.clone();

    let recorded = store
        .record_form_submission(&submission, OutreachLimits::DEFAULT)
        .await
        .unwrap();
    assert_eq!(
        (recorded.is_new, recorded.status),
        (true, SubmissionStatus::Queued)
    );
    let again = store
        .record_form_submission(&submission, OutreachLimits::DEFAULT)
        .await
        .unwrap();
    assert_eq!(
        (again.is_new, again.submission_id),
        (false, recorded.submission_id),
        "a repeat is harmless"
    );

    let chat = ChatId::parse("chat_steps_1").unwrap();
    let attached = store
        .attach_chat(&customer, &chat, None, None)
        .await
        .unwrap();
    assert!(attached.attached);
    let retried = store
        .attach_chat(&customer, &chat, None, None)
        .await
        .unwrap();
    assert!(
        retried.attached,
        "attaching the current chat again is harmless"
    );

    let replies = [
        text_from(&customer, wamid("s1"), "Sí, soy Rosa", at(10)),
        text_from(&customer, wamid("s2"), "¿cuánto cuesta?", at(12)),
    ];
    let recorded = store.record_inbound(&replies).await.unwrap();
    assert!(recorded.iter().all(|r| r.is_new));

    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, Duration::from_secs(60), MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("a turn")
    };
    assert_eq!(turn.session.current_chat_id.as_ref(), Some(&chat));
    assert_eq!(turn.session.chat_status, Some(ChatStatus::Ongoing));
    assert_eq!(turn.session.name.as_deref(), Some("Rosa"));
    assert_eq!(turn.session.last_inbound_at, Some(at(12)));
    assert!(!turn.session.is_paused(Utc::now()) && !turn.session.is_opted_out());
    assert_eq!(turn.messages.len(), 2);

    let answer = OutboundMessage {
        wamid: wamid("out"),
        message_type: "text".into(),
        body: Some("Hola Rosa, el seguro cuesta…".into()),
        payload: None,
    };
    let done = store
        .complete_turn(
            turn.turn_id,
            &customer,
            Some(&chat),
            std::slice::from_ref(&answer),
        )
        .await
        .unwrap();
    assert_eq!((done.completed, done.answered, done.recorded), (true, 2, 1));
    let repeat = store
        .complete_turn(
            turn.turn_id,
            &customer,
            Some(&chat),
            std::slice::from_ref(&answer),
        )
        .await
        .unwrap();
    assert_eq!(
        (repeat.answered, repeat.recorded),
        (0, 0),
        "a repeated completion changes nothing"
    );

    let update = |status, seconds| DeliveryUpdate {
        wamid: answer.wamid.clone(),
        status,
        at: at(seconds),
        errors: None,
    };
    let outcomes = store
        .record_delivery_statuses(&[update(DeliveryStatus::Delivered, 20)])
        .await
        .unwrap();
    assert_eq!(
        (outcomes[0].applied, outcomes[0].delivery_status),
        (true, Some(DeliveryStatus::Delivered))
    );
    let late = store
        .record_delivery_statuses(&[update(DeliveryStatus::Sent, 19)])
        .await
        .unwrap();
    assert_eq!(
        (late[0].applied, late[0].delivery_status),
        (false, Some(DeliveryStatus::Delivered)),
        "never backwards"
    );

    // The chat ends; a new one replaces it and the old one stays in the history.
    let next = ChatId::parse("chat_steps_2").unwrap();
    let rotated = store
        .attach_chat(&customer, &next, Some(&chat), Some("ended after silence"))
        .await
        .unwrap();
    assert_eq!(
        (rotated.attached, rotated.previous_chat_id.as_ref()),
        (true, Some(&chat))
    );
    let stale = store
        .attach_chat(
            &customer,
            &ChatId::parse("chat_steps_3").unwrap(),
            Some(&chat),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (stale.attached, stale.current_chat_id.as_ref()),
        (false, Some(&next))
    );
}

#[tokio::test]
async fn a_failed_turn_keeps_its_reason_and_releases_or_fails_its_messages() {
    let store = stack().store();
    let customer = crate::support::new_customer();
    store
        .record_inbound(&[text_from(&customer, wamid("f1"), "hola", at(0))])
        .await
        .unwrap();

    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, Duration::from_secs(60), MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!()
    };
    let released = store
        .fail_turn(
            turn.turn_id,
            "Retell answered 500",
            TurnRetry::After {
                delay: Duration::from_secs(2),
                count_attempt: true,
            },
        )
        .await
        .unwrap();
    assert_eq!((released.released, released.failed), (1, 0));

    let TurnClaim::Claimed(turn) = store
        .claim_turn(&customer, Duration::from_secs(60), MAX_ATTEMPTS)
        .await
        .unwrap()
    else {
        panic!("released messages are claimed by the next turn")
    };
    let failed = store
        .fail_turn(
            turn.turn_id,
            "Graph error 131026: undeliverable",
            TurnRetry::No,
        )
        .await
        .unwrap();
    assert_eq!((failed.released, failed.failed), (0, 1));
    assert_eq!(
        store
            .claim_turn(&customer, Duration::from_secs(60), MAX_ATTEMPTS)
            .await
            .unwrap(),
        TurnClaim::Idle
    );

    let db = stack().database().await.unwrap();
    let row = db
        .query_one(
            "select state, failure_reason from whatsapp_messages where customer_key = $1",
            &[&customer.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, String>(1), "Graph error 131026: undeliverable");
}
