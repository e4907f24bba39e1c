//! The whatsapp-inbound Lambda handler, driven with API Gateway (HTTP API, payload 2.0) events,
//! on the local stack, with a queue that records what it is given.

mod user_ids;

use std::sync::Mutex;

use sandbox::meta_webhook::{TextMessage, signature, text_delivery};
use sandbox::{GraphStandIn, LocalStack};
use serde_json::{Value, json};
use shared::domain::CustomerKey;
use shared::ingress::whatsapp::WhatsAppWebhook;
use shared::queue::{QueueError, TurnJob, TurnQueue};
use shared::store::PostgrestStore;
use shared::whatsapp::webhook::SIGNATURE_HEADER;

const POST_FIXTURE: &str =
    include_str!("../../../functions/whatsapp-inbound/tests/fixtures/post-whatsapp.json");
const GET_FIXTURE: &str =
    include_str!("../../../functions/whatsapp-inbound/tests/fixtures/get-whatsapp-verify.json");
const APP_SECRET: &str = "standin-app-secret";

/// Takes jobs like SQS FIFO (a repeated deduplication id is dropped), or fails when told to.
#[derive(Default)]
struct RecordingQueue {
    jobs: Mutex<Vec<(TurnJob, String)>>,
    down: Mutex<bool>,
}

impl TurnQueue for &RecordingQueue {
    async fn enqueue(&self, job: &TurnJob, deduplication_id: &str) -> Result<(), QueueError> {
        if *self.down.lock().unwrap() {
            return Err(QueueError::Unavailable("the queue is down (test)".into()));
        }
        let mut jobs = self.jobs.lock().unwrap();
        if !jobs.iter().any(|(_, id)| id == deduplication_id) {
            jobs.push((job.clone(), deduplication_id.to_owned()));
        }
        Ok(())
    }
}

/// API Gateway's event for Meta's POST of `body`, with this signature header (or none).
fn post_event(body: &str, signature: Option<String>) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(POST_FIXTURE).unwrap();
    event["body"] = json!(body);
    event["headers"]["content-length"] = json!(body.len().to_string());
    match signature {
        Some(signature) => event["headers"][SIGNATURE_HEADER] = json!(signature),
        None => {
            event["headers"]
                .as_object_mut()
                .unwrap()
                .remove(SIGNATURE_HEADER);
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn signed(body: &str) -> lambda_http::Request {
    post_event(body, Some(signature(body.as_bytes(), APP_SECRET)))
}

/// Text messages from Mexican mobiles in WhatsApp's `521…` form: (wa_id, wamid, text).
fn text_payload(wa_ids_and_texts: &[(&str, &str, &str)]) -> String {
    let messages: Vec<TextMessage> = wa_ids_and_texts
        .iter()
        .map(|(wa_id, wamid, text)| TextMessage {
            wa_id: wa_id.to_string(),
            wamid: wamid.to_string(),
            timestamp: chrono::Utc::now().timestamp(),
            text: text.to_string(),
        })
        .collect();
    text_delivery(&messages)
}

fn unique(label: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{label}{}{n:03}", std::process::id() % 100_000)
}

/// A Mexican WhatsApp id no other test uses.
fn wa_id() -> String {
    let digits = unique("");
    format!("52181{:0>8}", &digits[digits.len().saturating_sub(8)..])
}

async fn respond(
    webhook: &WhatsAppWebhook<PostgrestStore, &RecordingQueue>,
    request: lambda_http::Request,
) -> (u16, String) {
    let response = webhook.handle(&request).await;
    (response.status().as_u16(), response.into_body())
}

fn webhook<'q>(
    stack: &LocalStack,
    queue: &'q RecordingQueue,
) -> WhatsAppWebhook<PostgrestStore, &'q RecordingQueue> {
    // The stand-in's configuration carries the app secret and verify token the fixtures use.
    WhatsAppWebhook::new(
        stack.store(),
        queue,
        &GraphStandIn::start().webhook_config(),
    )
}

async fn count(stack: &LocalStack, sql: &str, param: &str) -> i64 {
    stack
        .database()
        .await
        .unwrap()
        .query_one(sql, &[&param])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_handshake_answers_the_challenge_only_to_our_token() {
    let queue = RecordingQueue::default();
    let webhook = webhook(LocalStack::shared(), &queue);
    let request = lambda_http::request::from_str(GET_FIXTURE).unwrap();
    assert_eq!(
        respond(&webhook, request).await,
        (200, "1158201444".to_owned())
    );

    let wrong = GET_FIXTURE.replace("standin-verify-token", "guess");
    let (status, body) = respond(&webhook, lambda_http::request::from_str(&wrong).unwrap()).await;
    assert_eq!(status, 403, "{body}");
    let wrong_mode = GET_FIXTURE
        .replace("hub.mode=subscribe", "hub.mode=unsubscribe")
        .replace("\"subscribe\"", "\"unsubscribe\"");
    assert_eq!(
        respond(
            &webhook,
            lambda_http::request::from_str(&wrong_mode).unwrap()
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_nothing_is_stored() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let wamid = unique("wamid.sig");
    let body = text_payload(&[(&wa_id(), &wamid, "¿Dónde están? 😀")]);

    let cases = [
        ("missing", post_event(&body, None)),
        (
            "wrong secret",
            post_event(
                &body,
                Some(signature(body.as_bytes(), "another-app-secret")),
            ),
        ),
        ("not hex", post_event(&body, Some("sha256=zz".into()))),
        (
            "tampered body",
            post_event(
                &body.replace("Dónde", "Donde"),
                Some(signature(body.as_bytes(), APP_SECRET)),
            ),
        ),
    ];
    for (case, request) in cases {
        let (status, answer) = respond(&webhook, request).await;
        assert_eq!(status, 401, "{case}: {answer}");
        assert!(answer.contains("invalid_signature"), "{case}: {answer}");
    }
    assert_eq!(
        count(
            stack,
            "select count(*) from whatsapp_messages where wamid = $1",
            &wamid
        )
        .await,
        0
    );
    assert!(queue.jobs.lock().unwrap().is_empty());

    let (status, _) = respond(&webhook, signed(&body)).await;
    assert_eq!(
        status, 200,
        "the same body, rightly signed (accents and emoji over the raw bytes)"
    );
}

#[tokio::test]
async fn a_batch_queues_one_turn_per_customer_and_a_duplicate_delivery_queues_nothing_new() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let (ana, beto) = (wa_id(), wa_id());
    let body = text_payload(&[
        (&ana, &unique("wamid.a"), "hola"),
        (&ana, &unique("wamid.a"), "¿precio?"),
        (&beto, &unique("wamid.b"), "buenas"),
    ]);
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    let jobs: Vec<TurnJob> = queue
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|(job, _)| job.clone())
        .collect();
    let customers: Vec<CustomerKey> = jobs.iter().map(|j| j.customer_key().clone()).collect();
    assert_eq!(jobs.len(), 2, "one turn per customer: {jobs:?}");
    assert!(customers.contains(&CustomerKey::from_whatsapp_id(&ana).unwrap()));
    let folded = CustomerKey::from_whatsapp_id(&ana).unwrap();
    assert_eq!(
        count(
            stack,
            "select count(*) from whatsapp_messages where customer_key = $1",
            folded.as_str()
        )
        .await,
        2
    );

    // Meta delivers the same POST again.
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(queue.jobs.lock().unwrap().len(), 2, "nothing new queued");
    assert_eq!(
        count(
            stack,
            "select count(*) from whatsapp_messages where customer_key = $1",
            folded.as_str()
        )
        .await,
        2
    );
}

#[tokio::test]
async fn statuses_only_and_unusable_but_signed_payloads_are_acknowledged() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let statuses = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "messages",
        "value": { "messaging_product": "whatsapp", "metadata": { "phone_number_id": "106540352242922" },
                   "statuses": [{ "id": unique("wamid.unknown"), "status": "delivered", "timestamp": "1764064800",
                                  "recipient_id": "16505551234" }] } }] }] })
    .to_string();
    assert_eq!(respond(&webhook, signed(&statuses)).await.0, 200);

    let marker = unique("garbage");
    let unreadable =
        format!("{{\"object\": \"whatsapp_business_account\", \"entry\": \"{marker}\"}}");
    assert_eq!(
        respond(&webhook, signed(&unreadable)).await.0,
        200,
        "Meta would retry for days otherwise"
    );
    let kept = count(
        stack,
        "select count(*) from unprocessed_webhook_events where payload::text like '%' || $1 || '%'",
        &marker,
    )
    .await;
    assert_eq!(kept, 1, "kept for inspection");
    assert!(queue.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn when_the_queue_is_down_meta_is_told_to_retry_and_the_retry_queues_the_turn() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let body = text_payload(&[(&wa_id(), &unique("wamid.q"), "hola")]);
    *queue.down.lock().unwrap() = true;
    assert_eq!(respond(&webhook, signed(&body)).await.0, 503);
    *queue.down.lock().unwrap() = false;
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(
        queue.jobs.lock().unwrap().len(),
        1,
        "the message recorded the first time still gets its turn"
    );
}

#[tokio::test]
async fn when_the_store_is_down_meta_is_told_to_retry_and_nothing_is_lost() {
    let own = LocalStack::start().unwrap();
    let queue = RecordingQueue::default();
    let webhook = webhook(&own, &queue);
    let wamid = unique("wamid.down");
    let body = text_payload(&[(&wa_id(), &wamid, "¿hay alguien?")]);

    own.stop_database().unwrap();
    assert_eq!(respond(&webhook, signed(&body)).await.0, 503);
    assert!(queue.jobs.lock().unwrap().is_empty());

    own.start_database().unwrap();
    let mut status = 0;
    for _ in 0..50 {
        // Meta retries until it gets a 200.
        status = respond(&webhook, signed(&body)).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(
        count(
            &own,
            "select count(*) from whatsapp_messages where wamid = $1",
            &wamid
        )
        .await,
        1
    );
    assert_eq!(queue.jobs.lock().unwrap().len(), 1);
}

/// A delivery of one change of `field` about business number `phone_number_id`.
fn change_delivery(field: &str, phone_number_id: &str, value: Value) -> String {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] =
        json!({ "display_phone_number": "15550783881", "phone_number_id": phone_number_id });
    json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398",
        "changes": [{ "field": field, "value": value }] }] })
    .to_string()
}

/// Meta's `user_preferences` change: `wa_id` stopped (or resumed) marketing messages.
fn preference_delivery(phone_number_id: &str, wa_id: &str, preference: &str) -> String {
    change_delivery(
        "user_preferences",
        phone_number_id,
        json!({
            "contacts": [{ "profile": { "name": "Lupita" }, "wa_id": wa_id }],
            "user_preferences": [{ "wa_id": wa_id, "category": "marketing_messages",
                "value": preference, "detail": format!("User requested to {preference} marketing messages"),
                "timestamp": chrono::Utc::now().timestamp() }]
        }),
    )
}

async fn delivery_status(stack: &LocalStack, wamid: &str) -> String {
    let db = stack.database().await.unwrap();
    db.query_one(
        "select delivery_status from whatsapp_messages where wamid = $1",
        &[&wamid],
    )
    .await
    .unwrap()
    .get(0)
}

async fn opted_out(stack: &LocalStack, customer: &CustomerKey) -> Option<bool> {
    let db = stack.database().await.unwrap();
    db.query_opt(
        "select opted_out_at is not null from chat_sessions where customer_key = $1::text",
        &[&customer.as_str()],
    )
    .await
    .unwrap()
    .map(|row| row.get(0))
}

#[tokio::test]
async fn a_delivery_for_another_number_is_kept_as_ignored_and_changes_nothing_of_ours() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let other = "987654321098765";

    // A reply we sent, WhatsApp says `sent`.
    let ours = wa_id();
    let customer = CustomerKey::from_whatsapp_id(&ours).unwrap();
    let sent = unique("wamid.out");
    let db = stack.database().await.unwrap();
    db.execute(
        "insert into chat_sessions (customer_key, wa_id) values ($1::text, $2)",
        &[&customer.as_str(), &ours],
    )
    .await
    .unwrap();
    db.execute(
        "insert into whatsapp_messages (wamid, customer_key, direction, message_type, body, sent_at, delivery_status)
         values ($1, $2::text, 'outbound', 'text', '¡Hola!', now(), 'sent')",
        &[&sent, &customer.as_str()],
    )
    .await
    .unwrap();

    // Another number of the same app: a message to it and a status with our wamid.
    let inbound = unique("wamid.other");
    let body = change_delivery(
        "messages",
        other,
        json!({
            "contacts": [{ "profile": { "name": "Lupita" }, "wa_id": ours }],
            "messages": [{ "from": ours, "id": inbound, "timestamp": chrono::Utc::now().timestamp().to_string(),
                           "type": "text", "text": { "body": "hola" } }],
            "statuses": [{ "id": sent, "status": "read", "timestamp": chrono::Utc::now().timestamp().to_string(),
                           "recipient_id": ours }]
        }),
    );
    assert_eq!(
        respond(&webhook, signed(&body)).await,
        (200, "EVENT_RECEIVED".to_owned())
    );
    assert!(queue.jobs.lock().unwrap().is_empty(), "no turn queued");
    assert_eq!(
        count(
            stack,
            "select count(*) from whatsapp_messages where wamid = $1",
            &inbound
        )
        .await,
        0,
        "its message is not one of ours to answer"
    );
    assert_eq!(
        delivery_status(stack, &sent).await,
        "sent",
        "its status is not applied"
    );
    assert_eq!(
        count(
            stack,
            "select count(*) from unprocessed_webhook_events
             where reason like '%\"987654321098765\"%' and payload::text like '%' || $1 || '%'",
            &inbound,
        )
        .await,
        1,
        "kept as ignored, whole, the reason naming the other number"
    );
    // A stop for the other number opts nobody out.
    let body = preference_delivery(other, &ours, "stop");
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(opted_out(stack, &customer).await, Some(false));

    // The same status for our number is applied: the number was all that kept it out.
    let body = change_delivery(
        "messages",
        sandbox::graph_standin::PHONE_NUMBER_ID,
        json!({ "statuses": [{ "id": sent, "status": "read",
                               "timestamp": chrono::Utc::now().timestamp().to_string(), "recipient_id": ours }] }),
    );
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(delivery_status(stack, &sent).await, "read");
}

#[tokio::test]
async fn a_stop_of_marketing_messages_in_whatsapp_opts_the_customer_out() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let ours = sandbox::graph_standin::PHONE_NUMBER_ID;

    // A customer who wrote to us, and one we never met.
    let (known, stranger) = (wa_id(), wa_id());
    let body = text_payload(&[(&known, &unique("wamid.pref"), "hola")]);
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(queue.jobs.lock().unwrap().len(), 1);
    let known_key = CustomerKey::from_whatsapp_id(&known).unwrap();
    let stranger_key = CustomerKey::from_whatsapp_id(&stranger).unwrap();
    assert_eq!(opted_out(stack, &known_key).await, Some(false));

    for wa_id in [&known, &stranger] {
        let body = preference_delivery(ours, wa_id, "stop");
        assert_eq!(
            respond(&webhook, signed(&body)).await,
            (200, "EVENT_RECEIVED".to_owned())
        );
        // Meta delivers it again: nothing changes.
        assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    }
    assert_eq!(
        opted_out(stack, &known_key).await,
        Some(true),
        "opted out like an opt-out word"
    );
    assert_eq!(
        opted_out(stack, &stranger_key).await,
        Some(true),
        "a session holds the opt-out"
    );
    assert_eq!(
        queue.jobs.lock().unwrap().len(),
        1,
        "an opt-out queues no turn: no reply"
    );

    // Resuming marketing messages clears nothing: opting back in is the customer's own words.
    let body = preference_delivery(ours, &known, "resume");
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(opted_out(stack, &known_key).await, Some(true));
}

/// A username-only sender's business-scoped user id no other test uses.
fn user_id() -> String {
    format!("US.{}", unique("x"))
}

#[tokio::test]
async fn a_value_the_store_would_refuse_costs_only_its_own_element() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    let webhook = webhook(stack, &queue);
    let ours = sandbox::graph_standin::PHONE_NUMBER_ID;
    let (ana, beto, carla, username) = (wa_id(), wa_id(), wa_id(), user_id());
    let [good, bad_type, future, nul, by_username] = ["good", "type", "future", "nul", "username"]
        .map(|label| unique(&format!("wamid.{label}")));
    let now = chrono::Utc::now().timestamp().to_string();
    let long_name = "Carla ".repeat(60);
    let body = change_delivery(
        "messages",
        ours,
        json!({
            "contacts": [
                { "profile": { "name": "Ana" }, "wa_id": ana },
                { "profile": { "name": "Beto" }, "wa_id": beto },
                { "profile": { "name": long_name }, "wa_id": carla },
                // WhatsApp ids the store refuses (`^[0-9]{6,20}$`) and a user id too long.
                { "profile": { "name": "Dani" }, "wa_id": "12345", "user_id": username }
            ],
            "messages": [
                { "from": ana, "id": good, "timestamp": now, "type": "text", "text": { "body": "hola" } },
                // A type the store refuses (`^[a-z_]{1,40}$`) and a time it cannot hold.
                { "from": beto, "id": bad_type, "timestamp": now, "type": "Poll-Vote",
                  "Poll-Vote": { "option": 1 } },
                { "from": beto, "id": future, "timestamp": "253402300800", "type": "text",
                  "text": { "body": "year 10000" } },
                // A NUL, which neither text nor jsonb holds.
                { "from": carla, "id": nul, "timestamp": now, "type": "text",
                  "text": { "body": "ho\u{0}la" } },
                { "from_user_id": username, "id": by_username, "timestamp": now, "type": "text",
                  "text": { "body": "buenas" } }
            ],
            "statuses": [{ "id": unique("wamid.out"), "status": "failed", "timestamp": now,
                           "recipient_id": ana, "errors": [{ "code": 131000, "title": "x\u{0}" }] }]
        }),
    );
    assert_eq!(
        respond(&webhook, signed(&body)).await,
        (200, "EVENT_RECEIVED".to_owned())
    );

    let recorded = |wamid: String| async move {
        count(
            stack,
            "select count(*) from whatsapp_messages where wamid = $1",
            &wamid,
        )
        .await
    };
    for wamid in [&good, &nul, &by_username] {
        assert_eq!(recorded(wamid.clone()).await, 1, "{wamid} recorded");
    }
    for wamid in [&bad_type, &future] {
        assert_eq!(recorded(wamid.clone()).await, 0, "{wamid} not recorded");
        assert_eq!(
            count(
                stack,
                "select count(*) from unprocessed_webhook_events
                 where reason like '%' || $1 || '%' and payload->>'id' = $1",
                wamid,
            )
            .await,
            1,
            "{wamid} kept as unprocessed, its reason naming it"
        );
    }
    let db = stack.database().await.unwrap();
    let reason: String = db
        .query_one(
            "select reason from unprocessed_webhook_events where payload->>'id' = $1",
            &[&bad_type],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("type \"Poll-Vote\""), "{reason}");
    let body_of_nul: String = db
        .query_one(
            "select body from whatsapp_messages where wamid = $1",
            &[&nul],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(body_of_nul, "ho\u{FFFD}la");

    // The sender's details the store would refuse are fitted, the messages kept.
    let session = |key: String| {
        let db = &db;
        async move {
            db.query_one(
                "select wa_id, whatsapp_user_id, whatsapp_profile_name from chat_sessions
                 where customer_key = $1::text",
                &[&key],
            )
            .await
            .unwrap()
        }
    };
    let carla_key = CustomerKey::from_whatsapp_id(&carla).unwrap();
    let row = session(carla_key.as_str().to_owned()).await;
    let name: String = row.get(2);
    assert_eq!(name, long_name[..200].trim_end(), "cut to 200 characters");
    let row = session(username.clone()).await;
    assert_eq!(
        row.get::<_, Option<String>>(0),
        None,
        "no WhatsApp id of 5 digits"
    );
    assert_eq!(row.get::<_, Option<String>>(1), Some(username.clone()));

    let mut queued: Vec<String> = queue
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|(job, _)| job.customer_key().as_str().to_owned())
        .collect();
    queued.sort();
    let mut expected = vec![
        CustomerKey::from_whatsapp_id(&ana)
            .unwrap()
            .as_str()
            .to_owned(),
        carla_key.as_str().to_owned(),
        username.clone(),
    ];
    expected.sort();
    assert_eq!(
        queued, expected,
        "a turn for each customer recorded, none for Beto"
    );

    // A stop from a user known by id, with a WhatsApp id the store refuses: opted out.
    let stopper = user_id();
    let body = change_delivery(
        "user_preferences",
        ours,
        json!({ "user_preferences": [{ "wa_id": "55-1234", "user_id": stopper,
            "category": "marketing_messages", "value": "stop", "timestamp": 253402300800_u64 }] }),
    );
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    let stopper_key = CustomerKey::from_whatsapp_user_id(&stopper).unwrap();
    assert_eq!(opted_out(stack, &stopper_key).await, Some(true));
}

#[tokio::test]
async fn a_delivery_the_store_refuses_is_kept_whole_and_answered_200_not_retried_for_days() {
    // A stack of our own, given rules the bridge does not know of.
    let own = LocalStack::start().unwrap();
    let queue = RecordingQueue::default();
    let webhook = webhook(&own, &queue);
    let db = own.database().await.unwrap();
    db.batch_execute(
        "alter table public.whatsapp_messages add constraint unforeseen
           check (body is distinct from 'an unforeseen rule')",
    )
    .await
    .unwrap();
    let (ana, beto) = (wa_id(), wa_id());
    let (hola, refused) = (unique("wamid.hola"), unique("wamid.refused"));
    let body = text_payload(&[
        (&ana, &hola, "hola"),
        (&beto, &refused, "an unforeseen rule"),
    ]);
    assert_eq!(
        respond(&webhook, signed(&body)).await,
        (200, "EVENT_RECEIVED".to_owned()),
        "Meta would deliver Ana's message again for days with it"
    );
    for wamid in [&hola, &refused] {
        assert_eq!(
            count(
                &own,
                "select count(*) from whatsapp_messages where wamid = $1",
                wamid
            )
            .await,
            0,
            "one transaction: nothing of the delivery recorded"
        );
    }
    let kept = db
        .query(
            "select reason, payload::text from unprocessed_webhook_events
             where payload::text like '%' || $1 || '%'",
            &[&hola],
        )
        .await
        .unwrap();
    let [kept] = kept.as_slice() else {
        panic!("kept once: {kept:?}");
    };
    let reason: String = kept.get(0);
    assert!(
        reason.starts_with("the store refused the delivery, kept whole: HTTP 400 23514")
            && reason.contains("unforeseen"),
        "{reason}"
    );
    let payload: Value = serde_json::from_str(kept.get(1)).unwrap();
    assert_eq!(
        payload,
        serde_json::from_str::<Value>(&body).unwrap(),
        "the whole delivery, as Meta sent it"
    );
    assert!(queue.jobs.lock().unwrap().is_empty(), "nothing queued");

    // Refused even as unprocessed: still 200, and only the log keeps it.
    db.batch_execute(
        "alter table public.unprocessed_webhook_events add constraint unforeseen_too
           check (payload::text not like '%refused everywhere%')",
    )
    .await
    .unwrap();
    let lost = unique("wamid.lost");
    let body = text_payload(&[
        (&ana, &lost, "refused everywhere"),
        (&beto, &unique("wamid.refused"), "an unforeseen rule"),
    ]);
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(
        count(
            &own,
            "select count(*) from unprocessed_webhook_events where payload::text like '%' || $1 || '%'",
            &lost
        )
        .await,
        0
    );
    assert!(queue.jobs.lock().unwrap().is_empty());

    // A delivery the rules allow goes through as ever.
    let fine = unique("wamid.fine");
    let body = text_payload(&[(&ana, &fine, "¿sigue ahí?")]);
    assert_eq!(respond(&webhook, signed(&body)).await.0, 200);
    assert_eq!(queue.jobs.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_store_that_refuses_our_key_answers_503_so_that_meta_delivers_again() {
    let stack = LocalStack::shared();
    let queue = RecordingQueue::default();
    // The anon key where the service-role key belongs: every call is refused (401/403).
    let webhook = WhatsAppWebhook::new(
        PostgrestStore::new(&stack.store_config(&stack.anon_key), shared::http::client()),
        &queue,
        &GraphStandIn::start().webhook_config(),
    );
    let wamid = unique("wamid.key");
    let body = text_payload(&[(&wa_id(), &wamid, "hola")]);
    let (status, answer) = respond(&webhook, signed(&body)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("store_unauthorized"), "{answer}");
    assert_eq!(
        count(
            stack,
            "select count(*) from unprocessed_webhook_events where payload::text like '%' || $1 || '%'",
            &wamid
        )
        .await,
        0,
        "not kept as refused: the delivery is not at fault"
    );
    assert!(queue.jobs.lock().unwrap().is_empty());
}
