//! The staff-inbound Lambda handler, driven with API Gateway (HTTP API, payload 2.0) events, on
//! the local stack, with moto's SQS as the turn queue and moto's SNS as the staff alert topic
//! (subscribed by a queue the test reads).

mod retell_webhooks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use sandbox::LocalStack;
use sandbox::moto::MotoServer;
use serde_json::{Value, json};
use shared::config::{Env, StaffConfig};
use shared::ingress::staff::StaffDoor;
use shared::notify::{SnsNotifier, StaffAlerts};
use shared::queue::SqsQueue;
use shared::signature::hmac_sha256_hex;
use shared::store::PostgrestStore;

const SECRET: &str = "a-staff-secret-of-at-least-32-characters";
const RETELL_KEY: &str = "key_retell_webhook_badge_for_tests";
const REPLY: &str = "Te comunico con una persona del equipo.";

type Door = StaffDoor<PostgrestStore, SqsQueue, StaffAlerts>;

struct Harness {
    door: Door,
    sqs: aws_sdk_sqs::Client,
    turns_url: String,
    alerts_url: String,
}

fn unique(label: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{label}{}{n:03}", std::process::id() % 100_000)
}

/// A Mexican customer key no other test uses.
fn customer() -> String {
    let digits = unique("");
    format!("5281{:0>8}", &digits[digits.len().saturating_sub(8)..])
}

async fn sns_client(moto: &MotoServer) -> aws_sdk_sns::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::from_static(sandbox::moto::REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .endpoint_url(moto.endpoint_url())
        .load()
        .await;
    aws_sdk_sns::Client::new(&config)
}

/// The door on the shared stack, a FIFO queue of its own, and a topic of its own that a
/// standard queue subscribes to.
async fn harness() -> Harness {
    let moto = MotoServer::shared();
    let sqs = moto.sqs_client().await;
    let turns_url = moto.create_fifo_queue(&unique("staff-turns")).await;
    let alerts_url = sqs
        .create_queue()
        .queue_name(unique("staff-alerts"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let alerts_arn = sqs
        .get_queue_attributes()
        .queue_url(&alerts_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let sns = sns_client(moto).await;
    let topic_arn = sns
        .create_topic()
        .name(unique("staff-alert-topic"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(alerts_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    let env = Env::from_pairs([
        ("STAFF_WEBHOOK_SECRET", SECRET),
        ("RETELL_API_KEY", RETELL_KEY),
        ("REQUEST_HUMAN_REPLY", REPLY),
        ("PAUSE_DEFAULT_MINUTES", "30"),
    ]);
    let config = StaffConfig::from_env(&env).unwrap();
    let alerts = StaffAlerts {
        sns: Some(SnsNotifier::from_client(sns, topic_arn)),
        webhook: None,
    };
    let queue = SqsQueue::from_client(sqs.clone(), turns_url.clone());
    Harness {
        door: StaffDoor::new(LocalStack::shared().store(), queue, alerts, &config),
        sqs,
        turns_url,
        alerts_url,
    }
}

/// API Gateway's event for a POST of `body` to `path`, with `headers`.
fn event(path: &str, route: &str, headers: &[(&str, &str)], body: &str) -> lambda_http::Request {
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("POST {route}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "content-length": body.len().to_string(),
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "domainPrefix": "abc123",
            "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "100.20.5.228", "userAgent": "test" },
            "requestId": unique("req"), "routeKey": format!("POST {route}"), "stage": "$default",
            "time": "25/Nov/2026:10:00:00 +0000", "timeEpoch": 1764064800000_i64
        },
        "body": body,
        "isBase64Encoded": false
    });
    if let Some(name) = path.strip_prefix("/retell/functions/") {
        event["pathParameters"] = json!({ "name": name });
    }
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn retell_signature(body: &str, key: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    format!(
        "v={now},d={}",
        hmac_sha256_hex(key.as_bytes(), &[body.as_bytes(), now.as_bytes()])
    )
}

fn request_human_call(customer: &str) -> String {
    json!({
        "name": "request_human",
        "args": { "reason": "quiere hablar con un asesor" },
        "call": {
            "chat_id": unique("chat_"),
            "agent_id": "agent_1",
            "chat_status": "ongoing",
            "metadata": { "customer_key": customer },
            "transcript": "User: quiero hablar con una persona\n"
        }
    })
    .to_string()
}

async fn respond(door: &Door, request: lambda_http::Request) -> (u16, String) {
    let response = door.handle(&request).await;
    (response.status().as_u16(), response.into_body())
}

/// Every message on `queue_url` within `wait` (none deleted: each test has its own queues).
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str, wait: Duration) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        bodies.extend(
            output
                .messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
    }
    bodies
}

async fn session_pause(customer: &str) -> (bool, Vec<(String, Option<String>, Option<String>)>) {
    let db = LocalStack::shared().database().await.unwrap();
    let paused = db
        .query_opt(
            "select paused_until > now() from chat_sessions where customer_key = $1",
            &[&customer],
        )
        .await
        .unwrap()
        .is_some_and(|row| row.get::<_, Option<bool>>(0) == Some(true));
    let events = db
        .query(
            "select kind, by, reason from conversation_events where customer_key = $1 order by id",
            &[&customer],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    (paused, events)
}

#[tokio::test]
async fn a_forged_request_human_changes_nothing() {
    let h = harness().await;
    let customer = customer();
    let body = request_human_call(&customer);
    let path = "/retell/functions/request_human";
    let route = "/retell/functions/{name}";
    for signature in [
        None,
        Some(retell_signature(&body, "not the key")),
        Some("v=1,d=00".to_owned()),
    ] {
        let headers: Vec<(&str, &str)> = signature
            .as_deref()
            .map(|s| vec![("x-retell-signature", s)])
            .unwrap_or_default();
        let (status, answer) = respond(&h.door, event(path, route, &headers, &body)).await;
        assert_eq!(status, 401, "{answer}");
        assert!(answer.contains("invalid_signature"), "{answer}");
    }
    assert_eq!(session_pause(&customer).await, (false, vec![]));
    assert!(
        drain(&h.sqs, &h.alerts_url, Duration::from_secs(2))
            .await
            .is_empty(),
        "no alert"
    );
}

#[tokio::test]
async fn a_signed_request_human_pauses_tells_staff_and_gives_the_agent_its_words() {
    let h = harness().await;
    let customer = customer();
    let body = request_human_call(&customer);
    let signature = retell_signature(&body, RETELL_KEY);
    let (status, answer) = respond(
        &h.door,
        event(
            "/retell/functions/request_human",
            "/retell/functions/{name}",
            &[("x-retell-signature", &signature)],
            &body,
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!(REPLY)
    );

    let (paused, events) = session_pause(&customer).await;
    assert!(paused, "the customer is paused");
    let kinds: Vec<&str> = events.iter().map(|(kind, _, _)| kind.as_str()).collect();
    assert!(kinds.contains(&"paused"), "{events:?}");
    assert!(kinds.contains(&"human_requested"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|(_, by, reason)| by.as_deref() == Some("agent")
                && reason.as_deref() == Some("quiere hablar con un asesor")),
        "{events:?}"
    );

    let alerts = drain(&h.sqs, &h.alerts_url, Duration::from_secs(3)).await;
    let [alert] = alerts.as_slice() else {
        panic!("one alert on the topic: {alerts:?}");
    };
    assert!(alert.contains(&customer), "{alert}");
    assert!(alert.contains("quiere hablar con un asesor"), "{alert}");
    assert!(alert.contains("staff_messages"), "{alert}");
}

#[tokio::test]
async fn the_database_webhook_needs_the_secret_and_queues_each_staff_message_once() {
    let h = harness().await;
    let customer = customer();
    let db = LocalStack::shared().database().await.unwrap();
    // Staff write to customers the bridge knows.
    db.execute(
        "insert into chat_sessions (customer_key) values ($1::text)",
        &[&customer],
    )
    .await
    .unwrap();
    let id: i64 = db
        .query_one(
            "insert into staff_messages (customer_key, body) values ($1::text, 'Hola, soy Luis') returning id",
            &[&customer],
        )
        .await
        .unwrap()
        .get(0);
    let record = db
        .query_one(
            "select to_jsonb(m)::text from staff_messages m where id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let body = json!({
        "type": "INSERT",
        "table": "staff_messages",
        "schema": "public",
        "record": serde_json::from_str::<Value>(&record).unwrap(),
        "old_record": null
    })
    .to_string();

    let wrong = format!("Bearer {}", SECRET.replace('a', "b"));
    for headers in [vec![], vec![("authorization", wrong.as_str())]] {
        let (status, answer) = respond(&h.door, event("/staff", "/staff", &headers, &body)).await;
        assert_eq!(status, 401, "{answer}");
    }

    let bearer = format!("Bearer {SECRET}");
    for _ in 0..2 {
        let (status, answer) = respond(
            &h.door,
            event("/staff", "/staff", &[("authorization", &bearer)], &body),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }
    let jobs = drain(&h.sqs, &h.turns_url, Duration::from_secs(2)).await;
    let [job] = jobs.as_slice() else {
        panic!("one job for a delivery made twice: {jobs:?}");
    };
    assert_eq!(
        serde_json::from_str::<Value>(job).unwrap(),
        json!({ "job": "send_staff_message", "customer_key": customer, "staff_message_id": id })
    );
}

/// What staff write from the WhatsApp Business app on our number (Meta's `smb_message_echoes`)
/// reaches whatsapp-inbound: it is recorded as a staff message, once, and pauses the agent; an
/// echo about another number of the app pauses nobody.
#[tokio::test]
async fn an_echo_from_the_business_app_is_a_staff_message_and_pauses() {
    use sandbox::GraphStandIn;
    use sandbox::graph_standin::PHONE_NUMBER_ID;
    use shared::ingress::whatsapp::WhatsAppWebhook;

    let h = harness().await;
    let config = GraphStandIn::start().webhook_config();
    let queue = SqsQueue::from_client(h.sqs.clone(), h.turns_url.clone());
    let webhook = WhatsAppWebhook::new(LocalStack::shared().store(), queue, &config);
    let (ours, theirs) = (customer(), customer());
    let wamid = unique("wamid.ECHO");
    let change = |number: &str, to: &str, wamid: &str| {
        json!({ "field": "smb_message_echoes", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": number },
            "message_echoes": [{
                "from": "15550783881", "to": format!("+{to}"), "id": wamid,
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "type": "text", "text": { "body": "Hola, te escribe Luis desde la tienda." }
            }]
        }})
    };
    let body =
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "waba", "changes": [
            change(PHONE_NUMBER_ID, &ours, &wamid),
            change("999000111222333", &theirs, &unique("wamid.OTHER")),
        ]}]})
        .to_string();
    let signature = sandbox::meta_webhook::signature(body.as_bytes(), "standin-app-secret");
    for _ in 0..2 {
        let request = http::Request::post("/whatsapp")
            .header(shared::whatsapp::webhook::SIGNATURE_HEADER, &signature)
            .body(body.clone().into_bytes())
            .unwrap();
        let response = webhook.handle(&request).await;
        assert_eq!(response.status(), 200, "{}", response.body());
    }
    let db = LocalStack::shared().database().await.unwrap();
    let staff: Vec<(String, String)> = db
        .query(
            "select status, body from staff_messages where customer_key = $1::text",
            &[&ours],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        staff,
        [(
            "sent".to_owned(),
            "Hola, te escribe Luis desde la tienda.".to_owned()
        )],
        "one staff message for an echo delivered twice"
    );
    let author: String = db
        .query_one(
            "select author from whatsapp_messages where wamid = $1::text",
            &[&wamid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(author, "staff");
    assert!(session_pause(&ours).await.0, "the agent is paused");
    assert_eq!(
        session_pause(&theirs).await,
        (false, vec![]),
        "another number's echo"
    );
}
