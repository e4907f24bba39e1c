//! Retell's chat webhooks through the adapter: `chat_ended` marks the current chat ended on the
//! session, an analysis before its end leaves the same state, a repeat stores once, a chat that is
//! not ours changes nothing, and the outcome hook's JSON.

use chrono::{DateTime, Utc};
use shared::domain::{ChatAnalysis, ChatEvent, ChatEventKind, ChatId, ChatStatus, CustomerKey};
use shared::store::{PostgrestStore, SessionStore};

use crate::support::{count, new_customer, stack};

/// A chat id no other test uses.
fn new_chat(label: &str) -> ChatId {
    ChatId::parse(format!("chat_outcome_{}_{}", std::process::id(), label)).unwrap()
}

fn event(kind: ChatEventKind, chat: &ChatId, ended_at: DateTime<Utc>) -> ChatEvent {
    ChatEvent {
        kind,
        chat_id: chat.clone(),
        ended_at: Some(ended_at),
        reason: Some("inactivity".into()),
        analysis: (kind == ChatEventKind::Analyzed).then(|| ChatAnalysis {
            chat_summary: Some("Wants plan B.".into()),
            user_sentiment: Some("Positive".into()),
            chat_successful: Some(true),
            custom_analysis_data: Some(serde_json::json!({ "plan": "B" })),
        }),
    }
}

/// A customer whose current chat is `chat`.
async fn customer_with_chat(store: &PostgrestStore, chat: &ChatId) -> CustomerKey {
    let customer = new_customer();
    assert!(
        store
            .attach_chat(&customer, chat, None, None)
            .await
            .unwrap()
            .attached
    );
    customer
}

/// The chat's history row: when Retell ended it, why, and the analysis, as text.
async fn history(
    chat: &ChatId,
) -> (
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<bool>,
) {
    let db = stack().database().await.unwrap();
    let row = db
        .query_one(
            "select extract(epoch from retell_ended_at)::bigint, disconnection_reason, summary, chat_successful from chat_history where chat_id = $1",
            &[&chat.as_str()],
        )
        .await
        .unwrap();
    let ended_at: Option<i64> = row.get(0);
    (
        ended_at.map(|seconds| DateTime::from_timestamp(seconds, 0).unwrap()),
        row.get(1),
        row.get(2),
        row.get(3),
    )
}

#[tokio::test]
async fn chat_ended_marks_the_current_chat_ended_on_the_session() {
    let store = stack().store();
    let chat = new_chat("ended");
    let customer = customer_with_chat(&store, &chat).await;
    let ended_at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();

    let recorded = store
        .record_chat_event(&event(ChatEventKind::Ended, &chat, ended_at))
        .await
        .unwrap();
    assert!(recorded.known);
    assert_eq!(recorded.customer_key.as_ref(), Some(&customer));
    assert!(!recorded.first_analysis);

    let session = store.session(&customer).await.unwrap().unwrap();
    assert_eq!(session.current_chat_id.as_ref(), Some(&chat));
    assert_eq!(session.chat_status, Some(ChatStatus::Ended));
    assert_eq!(
        history(&chat).await,
        (Some(ended_at), Some("inactivity".into()), None, None)
    );
    assert!(
        store.outcome_for_hook(&chat).await.unwrap().is_none(),
        "not analysed yet"
    );
}

#[tokio::test]
async fn an_analysis_before_its_end_leaves_the_same_state_and_a_repeat_stores_once() {
    let store = stack().store();
    let ended_at = DateTime::from_timestamp(1_764_000_100, 0).unwrap();
    let in_order = new_chat("in_order");
    let out_of_order = new_chat("out_of_order");
    let first = customer_with_chat(&store, &in_order).await;
    let second = customer_with_chat(&store, &out_of_order).await;

    let ended = store
        .record_chat_event(&event(ChatEventKind::Ended, &in_order, ended_at))
        .await
        .unwrap();
    let analyzed = store
        .record_chat_event(&event(ChatEventKind::Analyzed, &in_order, ended_at))
        .await
        .unwrap();
    assert!(!ended.first_analysis);
    assert!(analyzed.first_analysis);

    let analyzed = store
        .record_chat_event(&event(ChatEventKind::Analyzed, &out_of_order, ended_at))
        .await
        .unwrap();
    let ended = store
        .record_chat_event(&event(ChatEventKind::Ended, &out_of_order, ended_at))
        .await
        .unwrap();
    assert!(analyzed.first_analysis);
    assert!(!ended.first_analysis);

    let expected = (
        Some(ended_at),
        Some("inactivity".into()),
        Some("Wants plan B.".into()),
        Some(true),
    );
    assert_eq!(history(&in_order).await, expected);
    assert_eq!(history(&out_of_order).await, expected);
    for customer in [&first, &second] {
        let session = store.session(customer).await.unwrap().unwrap();
        assert_eq!(session.chat_status, Some(ChatStatus::Ended));
    }

    // Retell retries: the analysis is stored once, and told first only once.
    let mut changed = event(ChatEventKind::Analyzed, &in_order, ended_at);
    changed.analysis.as_mut().unwrap().chat_summary = Some("something else".into());
    for _ in 0..2 {
        let repeat = store.record_chat_event(&changed).await.unwrap();
        assert!(repeat.known && !repeat.first_analysis);
    }
    assert_eq!(history(&in_order).await, expected);
}

#[tokio::test]
async fn a_chat_that_is_not_ours_changes_nothing() {
    let store = stack().store();
    let chat = new_chat("not_ours");
    let before = count("select count(*) from chat_history", &[]).await;
    for kind in [
        ChatEventKind::Started,
        ChatEventKind::Ended,
        ChatEventKind::Analyzed,
    ] {
        let recorded = store
            .record_chat_event(&event(kind, &chat, Utc::now()))
            .await
            .unwrap();
        assert!(!recorded.known);
        assert_eq!(recorded.customer_key, None);
        assert!(!recorded.first_analysis);
    }
    assert_eq!(
        count(
            "select count(*) from chat_history where chat_id = $1",
            &[&chat.as_str()]
        )
        .await,
        0
    );
    assert!(count("select count(*) from chat_history", &[]).await >= before);
    assert!(store.outcome_for_hook(&chat).await.unwrap().is_none());
}

#[tokio::test]
async fn chat_started_records_nothing() {
    let store = stack().store();
    let chat = new_chat("started");
    let customer = customer_with_chat(&store, &chat).await;
    let recorded = store
        .record_chat_event(&event(ChatEventKind::Started, &chat, Utc::now()))
        .await
        .unwrap();
    assert!(recorded.known && !recorded.first_analysis);
    let session = store.session(&customer).await.unwrap().unwrap();
    assert_eq!(session.chat_status, Some(ChatStatus::Ongoing));
    assert_eq!(history(&chat).await, (None, None, None, None));
}

#[tokio::test]
async fn the_outcome_hook_gets_the_customer_the_analysis_and_the_form_fields() {
    let store = stack().store();
    let chat = new_chat("hook");
    let customer = customer_with_chat(&store, &chat).await;
    let db = stack().database().await.unwrap();
    db.execute(
        "update chat_sessions set name = 'Ana', phone_e164 = '+' || customer_key::text where customer_key = $1",
        &[&customer.as_str()],
    )
    .await
    .unwrap();
    db.execute(
        "insert into form_submissions (idempotency_key, customer_key, phone_e164, name, consent, fields) \
         values ($1, $2::text, '+' || $2::text, 'Ana', true, '{\"product\": \"auto\"}')",
        &[&format!("outcome-{}", chat.as_str()), &customer.as_str()],
    )
    .await
    .unwrap();
    let ended_at = DateTime::from_timestamp(1_764_000_200, 0).unwrap();
    store
        .record_chat_event(&event(ChatEventKind::Analyzed, &chat, ended_at))
        .await
        .unwrap();

    let mut outcome = store
        .outcome_for_hook(&chat)
        .await
        .unwrap()
        .expect("an analysed chat");
    let object = outcome.as_object_mut().unwrap();
    let analyzed_at: DateTime<Utc> =
        serde_json::from_value(object.remove("analyzed_at").unwrap()).unwrap();
    assert!((Utc::now() - analyzed_at).num_seconds().abs() < 60);
    object.remove("started_at").expect("started_at");
    let ended: DateTime<Utc> = serde_json::from_value(object.remove("ended_at").unwrap()).unwrap();
    assert_eq!(ended, ended_at);
    assert_eq!(
        outcome,
        serde_json::json!({
            "customer_key": customer.as_str(),
            "phone": format!("+{}", customer.as_str()),
            "name": "Ana",
            "chat_id": chat.as_str(),
            "summary": "Wants plan B.",
            "user_sentiment": "Positive",
            "chat_successful": true,
            "custom_analysis": { "plan": "B" },
            "form_fields": { "product": "auto" },
            "disconnection_reason": "inactivity",
        })
    );
}
