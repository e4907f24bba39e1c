use std::time::Duration;

use sandbox::graph_standin::{
    ACCESS_TOKEN, API_VERSION, PHONE_NUMBER_ID, TEMPLATE_LANGUAGE, TEMPLATE_NAME,
};
use sandbox::{GraphFault, GraphStandIn};
use serde_json::json;
use shared::domain::{CustomerKey, MessageId};
use shared::messenger::{Messenger, MessengerError, Recipient, Template};
use shared::whatsapp::{GraphClient, MAX_TEXT_CHARS};

use crate::FAST_RETRIES;

fn client(graph: &GraphStandIn) -> GraphClient {
    GraphClient::new(&graph.config(), shared::http::client())
        .with_retry_policy(FAST_RETRIES, Duration::from_millis(1))
}

fn customer() -> Recipient {
    Recipient::for_customer(&CustomerKey::from_whatsapp_id("5491123456789").unwrap())
}

/// A request body posted as is, bypassing our client.
async fn post_raw(graph: &GraphStandIn, body: serde_json::Value) -> reqwest::Response {
    let url = format!(
        "{}/{API_VERSION}/{PHONE_NUMBER_ID}/messages",
        graph.config().graph_url
    );
    reqwest::Client::new()
        .post(url)
        .bearer_auth(ACCESS_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn template() -> Template {
    Template {
        name: TEMPLATE_NAME.into(),
        language: TEMPLATE_LANGUAGE.into(),
        body_parameters: vec!["Martín".into()],
    }
}

#[tokio::test]
async fn text_template_and_read_receipt_pass_the_send_schema() {
    let graph = GraphStandIn::start();
    let client = client(&graph);
    let inbound = MessageId::parse("wamid.HBgLNTQ5MTEyMzQ1Njc4ORUCABIYFDNBMDI=").unwrap();

    let sent = client
        .send_template(&customer(), &template())
        .await
        .unwrap();
    let replies = client
        .send_text(
            &customer(),
            "¡Hola Martín! ¿En qué te ayudo? 😀",
            Some(&inbound),
        )
        .await
        .unwrap();
    client.mark_read(&inbound, true).await.unwrap();

    assert!(graph.rejected().is_empty(), "{:?}", graph.rejected());
    let accepted = graph.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].wamid, sent.wamid.as_str());
    assert_eq!(
        accepted[0].to, "+541123456789",
        "the dialable form, never 549…"
    );
    assert_eq!(
        accepted[0].body["template"]["components"][0]["parameters"][0]["text"],
        "Martín"
    );
    assert_eq!(accepted[1].wamid, replies[0].wamid.as_str());
    assert_eq!(accepted[1].body["context"]["message_id"], inbound.as_str());
    assert_eq!(
        replies[0].payload, accepted[1].body,
        "what we record is what was sent"
    );
    let receipts = graph.read_receipts();
    assert_eq!(
        receipts,
        [json!({ "messaging_product": "whatsapp", "status": "read",
                                  "message_id": inbound.as_str(), "typing_indicator": { "type": "text" } })]
    );
}

#[tokio::test]
async fn a_malformed_request_is_refused_with_graphs_error_object() {
    let graph = GraphStandIn::start();
    let answer = post_raw(
        &graph,
        json!({ "messaging_product": "whatsapp", "to": "+541123456789", "type": "text",
                       "text": { "bodyy": "hola" } }),
    )
    .await;
    assert_eq!(answer.status(), 400);
    let error = answer.json::<serde_json::Value>().await.unwrap();
    assert_eq!(error["error"]["code"], 100);
    let details = error["error"]["error_data"]["details"].as_str().unwrap();
    assert!(details.contains("bodyy"), "{details}");
}

#[tokio::test]
async fn a_ten_thousand_character_reply_arrives_as_ordered_messages_that_fit() {
    let graph = GraphStandIn::start();
    let sentence = "Tu póliza cubre robo total, daños a terceros y asistencia vial las 24 horas. ";
    let reply = sentence.repeat(10_000 / sentence.chars().count() + 1);
    let sent = client(&graph)
        .send_text(&customer(), &reply, None)
        .await
        .unwrap();

    let accepted = graph.accepted();
    assert!(accepted.len() >= 3);
    assert_eq!(sent.len(), accepted.len());
    assert!(
        accepted
            .iter()
            .all(|m| m.text.chars().count() <= MAX_TEXT_CHARS)
    );
    let joined = accepted
        .iter()
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(joined, reply.trim(), "in order, no word cut");
}

#[tokio::test]
async fn throughput_limits_and_temporary_failures_are_retried_by_code() {
    let graph = GraphStandIn::start();
    let client = client(&graph);
    for code in [130_429, 131_056, 131_000, 131_057, 2, 131_016, 133_004] {
        graph.fail_next(GraphFault::Code(code));
        let before = graph.request_count();
        let sent = client.send_text(&customer(), "hola", None).await;
        assert!(sent.is_ok(), "{code}: {sent:?}");
        assert_eq!(
            graph.request_count() - before,
            2,
            "{code}: one failure, one retry"
        );
    }
}

#[tokio::test]
async fn a_limit_that_outlasts_the_retries_is_reported_as_transient() {
    let graph = GraphStandIn::start();
    for _ in 0..5 {
        graph.fail_next(GraphFault::Code(130_429));
    }
    let error = client(&graph)
        .send_text(&customer(), "hola", None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, MessengerError::RateLimited(ref e) if e.code == 130_429),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(graph.request_count(), 1 + FAST_RETRIES.max_retries as usize);
}

#[tokio::test]
async fn the_pair_rate_limit_waits_four_to_the_n_units() {
    let graph = GraphStandIn::start();
    let client = GraphClient::new(&graph.config(), shared::http::client())
        .with_retry_policy(FAST_RETRIES, Duration::from_millis(20));
    graph.fail_next(GraphFault::Code(131_056));
    graph.fail_next(GraphFault::Code(131_056));
    let started = std::time::Instant::now();
    client.send_text(&customer(), "hola", None).await.unwrap();
    // 4^0 + 4^1 units = 100 ms at least.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(graph.request_count(), 3);
}

#[tokio::test]
async fn needing_a_template_and_permanent_refusals_are_not_retried() {
    let graph = GraphStandIn::start();
    let client = client(&graph);
    graph.fail_next(GraphFault::Code(131_047));
    let error = client
        .send_text(&customer(), "hola", None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, MessengerError::NeedsTemplate(_)),
        "{error:?}"
    );
    graph.fail_next(GraphFault::Code(131_026));
    let error = client
        .send_text(&customer(), "hola", None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, MessengerError::Permanent(ref e) if e.code == 131_026)
            && !error.is_transient()
    );
    assert_eq!(graph.request_count(), 2, "one attempt each");
    assert!(graph.accepted().is_empty());
}

#[tokio::test]
async fn an_unapproved_template_and_a_bad_token_are_permanent() {
    let graph = GraphStandIn::start();
    let unapproved = Template {
        name: "bienvenida".into(),
        ..template()
    };
    let error = client(&graph)
        .send_template(&customer(), &unapproved)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(132_001));

    let mut config = graph.config();
    config.access_token = "EAAGexpired".to_owned().into();
    let expired = GraphClient::new(&config, shared::http::client())
        .with_retry_policy(FAST_RETRIES, Duration::ZERO);
    let error = expired
        .send_text(&customer(), "hola", None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, MessengerError::Permanent(ref e) if e.code == 190 && e.status == 401),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_send_that_timed_out_is_not_sent_again() {
    let graph = GraphStandIn::start();
    let mut config = graph.config();
    config.request_timeout = Duration::from_millis(100);
    let client = GraphClient::new(&config, shared::http::client())
        .with_retry_policy(FAST_RETRIES, Duration::ZERO);
    graph.fail_next(GraphFault::SlowAnswer(Duration::from_millis(300)));
    let error = client
        .send_text(&customer(), "hola", None)
        .await
        .unwrap_err();
    assert!(matches!(error, MessengerError::Timeout), "{error:?}");
    assert_eq!(graph.request_count(), 1);
    assert_eq!(
        graph.accepted().len(),
        1,
        "WhatsApp took it: a retry would send it twice"
    );
}

#[tokio::test]
async fn the_stand_ins_answer_matches_the_send_response_schema_of_the_spec() {
    use sandbox::schema::{ApiSpec, validate};
    let graph = GraphStandIn::start();
    let answer = post_raw(
        &graph,
        json!({ "messaging_product": "whatsapp", "to": "+541123456789", "type": "text",
                       "text": { "body": "hola" } }),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let schema = ApiSpec::whatsapp()
        .operation("sendMessage")
        .response(200)
        .expect("a 200 schema");
    validate(schema, &body).unwrap_or_else(|v| panic!("{v:?} in {body}"));
}
