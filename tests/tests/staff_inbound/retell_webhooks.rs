//! `POST /retell`: Retell's chat webhooks, from the fixtures shaped as Retell documents chats,
//! signed as Retell signs them, on the local stack with moto's SQS as the turn queue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sandbox::LocalStack;
use sandbox::moto::MotoServer;
use serde_json::{Value, json};
use shared::config::{Env, StaffConfig};
use shared::ingress::staff::StaffDoor;
use shared::notify::StaffAlerts;
use shared::queue::SqsQueue;
use shared::signature::hmac_sha256_hex;

use super::{Door, RETELL_KEY, SECRET, customer, drain, event, respond, unique};

const STARTED: &str =
    include_str!("../../../functions/staff-inbound/tests/fixtures/retell_chat_started.json");
const ENDED: &str =
    include_str!("../../../functions/staff-inbound/tests/fixtures/retell_chat_ended.json");
const ANALYZED: &str =
    include_str!("../../../functions/staff-inbound/tests/fixtures/retell_chat_analyzed.json");

/// The key with Retell's webhook badge, other than the one the functions are signed with.
const WEBHOOK_KEY: &str = "key_retell_webhook_badge_chat_events";

struct Harness {
    door: Door,
    sqs: aws_sdk_sqs::Client,
    turns_url: String,
}

async fn harness() -> Harness {
    let moto = MotoServer::shared();
    let sqs = moto.sqs_client().await;
    let turns_url = moto.create_fifo_queue(&unique("retell-turns")).await;
    let env = Env::from_pairs([
        ("STAFF_WEBHOOK_SECRET", SECRET),
        ("RETELL_API_KEY", RETELL_KEY),
        ("RETELL_WEBHOOK_API_KEY", WEBHOOK_KEY),
        (
            "OUTCOME_WEBHOOK_URL",
            "https://crm.example.com/hooks/outcomes",
        ),
    ]);
    let config = StaffConfig::from_env(&env).unwrap();
    let queue = SqsQueue::from_client(sqs.clone(), turns_url.clone());
    let alerts = StaffAlerts {
        sns: None,
        webhook: None,
    };
    Harness {
        door: StaffDoor::new(LocalStack::shared().store(), queue, alerts, &config),
        sqs,
        turns_url,
    }
}

/// A customer whose current chat is `chat_id`, as the engine leaves them.
async fn customer_in_chat() -> (String, String) {
    let customer = customer();
    let chat_id = unique("chat_fixture_");
    let db = LocalStack::shared().database().await.unwrap();
    db.execute(
        "insert into chat_sessions (customer_key, current_chat_id, chat_status, chat_started_at) \
         values ($1::text, $2::text, 'ongoing', now())",
        &[&customer, &chat_id],
    )
    .await
    .unwrap();
    db.execute(
        "insert into chat_history (chat_id, customer_key) values ($1::text, $2::text)",
        &[&chat_id, &customer],
    )
    .await
    .unwrap();
    (customer, chat_id)
}

/// The fixture with its chat and customer.
fn payload(fixture: &str, customer: &str, chat_id: &str) -> String {
    fixture
        .replace("CHAT_ID", chat_id)
        .replace("CUSTOMER_KEY", customer)
}

fn signature_at(body: &str, key: &str, at_ms: u128) -> String {
    let at = at_ms.to_string();
    format!(
        "v={at},d={}",
        hmac_sha256_hex(key.as_bytes(), &[body.as_bytes(), at.as_bytes()])
    )
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

async fn deliver(h: &Harness, body: &str, signature: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| vec![("x-retell-signature", s)])
        .unwrap_or_default();
    let (status, answer) = respond(&h.door, event("/retell", "/retell", &headers, body)).await;
    (
        status,
        serde_json::from_str(&answer).unwrap_or(Value::String(answer)),
    )
}

async fn signed(h: &Harness, body: &str) -> (u16, Value) {
    deliver(h, body, Some(&signature_at(body, WEBHOOK_KEY, now_ms()))).await
}

/// What the chat's history row and its session say about how it went.
async fn chat_state(customer: &str, chat_id: &str) -> Value {
    let db = LocalStack::shared().database().await.unwrap();
    let row = db
        .query_one(
            "select jsonb_build_object(
                'ended', h.retell_ended_at is not null,
                'retell_ended_at', h.retell_ended_at,
                'disconnection_reason', h.disconnection_reason,
                'analyzed', h.analyzed_at is not null,
                'summary', h.summary,
                'user_sentiment', h.user_sentiment,
                'chat_successful', h.chat_successful,
                'custom_analysis', h.custom_analysis,
                'session_chat_status', s.chat_status)::text
             from chat_history h join chat_sessions s using (customer_key)
             where h.chat_id = $1::text and h.customer_key = $2::text",
            &[&chat_id, &customer],
        )
        .await
        .unwrap();
    serde_json::from_str(row.get(0)).unwrap()
}

async fn outcome_jobs(h: &Harness, wait: Duration) -> Vec<Value> {
    drain(&h.sqs, &h.turns_url, wait)
        .await
        .iter()
        .map(|body| serde_json::from_str::<Value>(body).unwrap())
        .filter(|job| job["job"] == "deliver_outcome")
        .collect()
}

#[tokio::test]
async fn each_signed_event_is_answered_and_the_chat_learns_how_it_went() {
    let h = harness().await;
    let (customer, chat_id) = customer_in_chat().await;
    let (status, answer) = signed(&h, &payload(STARTED, &customer, &chat_id)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "ignored");

    let (status, answer) = signed(&h, &payload(ENDED, &customer, &chat_id)).await;
    assert_eq!(status, 200, "{answer}");
    let state = chat_state(&customer, &chat_id).await;
    assert_eq!(state["ended"], true, "{state}");
    assert_eq!(state["session_chat_status"], "ended", "{state}");
    assert_eq!(state["analyzed"], false, "{state}");

    let (status, answer) = signed(&h, &payload(ANALYZED, &customer, &chat_id)).await;
    assert_eq!(status, 200, "{answer}");
    let state = chat_state(&customer, &chat_id).await;
    assert_eq!(state["analyzed"], true, "{state}");
    assert_eq!(state["user_sentiment"], "Positive");
    assert_eq!(state["chat_successful"], true);
    assert_eq!(state["custom_analysis"]["plan_interest"], "B");
    assert!(
        state["summary"].as_str().unwrap().contains("plan B"),
        "{state}"
    );
    let jobs = outcome_jobs(&h, Duration::from_secs(2)).await;
    assert_eq!(
        jobs,
        [json!({ "job": "deliver_outcome", "customer_key": customer, "chat_id": chat_id })]
    );
}

#[tokio::test]
async fn forged_stale_and_tampered_deliveries_are_refused_and_change_nothing() {
    let h = harness().await;
    let (customer, chat_id) = customer_in_chat().await;
    let before = chat_state(&customer, &chat_id).await;
    let body = payload(ANALYZED, &customer, &chat_id);
    let now = now_ms();
    let tampered = body.replace("plan B", "plan C");
    let six_minutes = 6 * 60 * 1000;
    for (label, body, signature) in [
        ("unsigned", body.clone(), None),
        (
            "forged",
            body.clone(),
            Some(signature_at(&body, "not the key", now)),
        ),
        (
            "the functions' key, not the webhook's",
            body.clone(),
            Some(signature_at(&body, RETELL_KEY, now)),
        ),
        (
            "stale",
            body.clone(),
            Some(signature_at(&body, WEBHOOK_KEY, now - six_minutes)),
        ),
        (
            "tampered",
            tampered,
            Some(signature_at(&body, WEBHOOK_KEY, now)),
        ),
    ] {
        let (status, answer) = deliver(&h, &body, signature.as_deref()).await;
        assert_eq!(status, 401, "{label}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{label}");
    }
    assert_eq!(chat_state(&customer, &chat_id).await, before);
    assert!(outcome_jobs(&h, Duration::from_secs(2)).await.is_empty());
}

#[tokio::test]
async fn a_duplicate_is_stored_once_and_queues_one_outcome() {
    let h = harness().await;
    let (customer, chat_id) = customer_in_chat().await;
    let ended = payload(ENDED, &customer, &chat_id);
    let analyzed = payload(ANALYZED, &customer, &chat_id);
    for body in [&ended, &ended, &analyzed] {
        assert_eq!(signed(&h, body).await.0, 200);
    }
    let once = chat_state(&customer, &chat_id).await;
    // Retell's retries, and a later analysis that differs, change nothing stored.
    let (status, answer) = signed(&h, &analyzed).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "already_analyzed", "{answer}");
    let changed = analyzed.replace("Positive", "Negative");
    assert_eq!(signed(&h, &changed).await.0, 200);
    assert_eq!(signed(&h, &ended).await.0, 200);
    assert_eq!(chat_state(&customer, &chat_id).await, once);
    let jobs = outcome_jobs(&h, Duration::from_secs(3)).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
}

#[tokio::test]
async fn analyzed_before_ended_ends_in_the_same_state() {
    let h = harness().await;
    let (in_order, in_order_chat) = customer_in_chat().await;
    let (out_of_order, out_of_order_chat) = customer_in_chat().await;
    for body in [
        payload(ENDED, &in_order, &in_order_chat),
        payload(ANALYZED, &in_order, &in_order_chat),
        payload(ANALYZED, &out_of_order, &out_of_order_chat),
        payload(ENDED, &out_of_order, &out_of_order_chat),
    ] {
        assert_eq!(signed(&h, &body).await.0, 200);
    }
    let first = chat_state(&in_order, &in_order_chat).await;
    let second = chat_state(&out_of_order, &out_of_order_chat).await;
    assert_eq!(first, second);
    assert_eq!(second["ended"], true);
    assert_eq!(second["session_chat_status"], "ended");
    assert_eq!(outcome_jobs(&h, Duration::from_secs(2)).await.len(), 2);
}

#[tokio::test]
async fn unknown_events_and_chats_not_ours_are_answered_200_and_ignored() {
    let h = harness().await;
    let (customer, chat_id) = customer_in_chat().await;
    let before = chat_state(&customer, &chat_id).await;
    let transcript =
        payload(ENDED, &customer, &chat_id).replace("chat_ended", "transcript_updated");
    let future = payload(ENDED, &customer, &chat_id).replace("chat_ended", "chat_reviewed");
    let (status, answer) = signed(&h, &transcript).await;
    assert_eq!((status, &answer["status"]), (200, &json!("ignored")));
    let (status, answer) = signed(&h, &future).await;
    assert_eq!((status, &answer["status"]), (200, &json!("ignored")));
    assert_eq!(chat_state(&customer, &chat_id).await, before);

    let stranger = unique("chat_not_ours_");
    for fixture in [ENDED, ANALYZED] {
        let (status, answer) = signed(&h, &payload(fixture, &customer, &stranger)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "ignored", "{answer}");
    }
    assert!(outcome_jobs(&h, Duration::from_secs(2)).await.is_empty());
}

/// Where the stand-in's webhooks land: each body with its signature, in arrival order.
async fn capture() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
) {
    use axum::http::HeaderMap;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let router = axum::Router::new().route(
        "/retell",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let signature = headers
                    .get("x-retell-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock().unwrap().push((body, signature));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/retell", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, received)
}

#[tokio::test]
async fn the_stand_in_sends_signed_ended_then_analyzed_webhooks_that_the_door_records() {
    use shared::agent::{ChatAgent, NewChat};
    let h = harness().await;
    let retell = sandbox::RetellStandIn::start();
    let (url, received) = capture().await;
    retell.send_webhooks_to(&url, WEBHOOK_KEY);
    let client = shared::retell::RetellClient::new(&retell.config(), shared::http::client());
    let customer = customer();
    let mut new_chat = NewChat::default();
    new_chat
        .metadata
        .insert("customer_key".into(), json!(customer));
    let chat = client.create_chat(&new_chat).await.unwrap();
    let chat_id = chat.chat_id.as_str().to_owned();
    let db = LocalStack::shared().database().await.unwrap();
    db.execute(
        "insert into chat_sessions (customer_key, current_chat_id, chat_status, chat_started_at) \
         values ($1::text, $2::text, 'ongoing', now())",
        &[&customer, &chat_id],
    )
    .await
    .unwrap();
    db.execute(
        "insert into chat_history (chat_id, customer_key) values ($1::text, $2::text)",
        &[&chat_id, &customer],
    )
    .await
    .unwrap();

    retell.end(&chat_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deliveries = received.lock().unwrap().clone();
    let events: Vec<Value> = deliveries
        .iter()
        .map(|(body, _)| serde_json::from_str::<Value>(body).unwrap()["event"].clone())
        .collect();
    assert_eq!(events, [json!("chat_ended"), json!("chat_analyzed")]);
    for (body, signature) in &deliveries {
        let (status, answer) = deliver(&h, body, Some(signature)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "recorded", "{answer}");
    }
    let state = chat_state(&customer, &chat_id).await;
    assert_eq!(state["ended"], true, "{state}");
    assert_eq!(state["analyzed"], true, "{state}");
    assert!(
        state["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{state}"
    );
    // Ending it again sends nothing more.
    retell.end(&chat_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().len(), 2);
}
