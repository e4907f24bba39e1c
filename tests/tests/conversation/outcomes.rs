//! Retell's analysis of a chat: the summary and what the agent collected carried into the next
//! chat, and the outcome POSTed, signed, to the business's hook.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use sandbox::LocalStack;
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use sandbox::standin::Server;
use serde_json::{Value, json};
use shared::config::{Env, OutcomeHookConfig};
use shared::domain::ChatId;
use shared::engine::TurnOutcome;
use shared::outcome::OutcomeHook;
use shared::queue::{JobDisposition, JobHandler, TurnJob};

use crate::support::{Bridge, TestEngine, minutes, receipt};

const SECRET: &str = "0123456789abcdef0123456789abcdef-outcomes";

/// Records what Retell's `chat_analyzed` webhook records (the SQL the door calls).
async fn record_analysis(chat_id: &ChatId, analysis: &Value) {
    let db = LocalStack::shared().database().await.unwrap();
    db.execute(
        "select public.record_chat_event('chat_analyzed', $1, now(), 'inactivity', $2::text::jsonb)",
        &[&chat_id.as_str(), &analysis.to_string()],
    )
    .await
    .unwrap();
}

/// A form lead's first exchange: their chat, answered once.
async fn first_chat(bridge: &Bridge, engine: &TestEngine) -> ChatId {
    let submission = bridge.submit_form("Marisol").await;
    engine.start_conversation(submission).await.unwrap();
    bridge.customer_writes("Sí, soy Marisol", minutes(0)).await;
    let TurnOutcome::Answered { chat_id, .. } = engine.take_turn(&bridge.customer).await.unwrap()
    else {
        panic!("answered")
    };
    chat_id
}

fn analysis() -> Value {
    json!({
        "chat_summary": "Marisol quiere el plan B para su Versa 2021; prefiere que la llamen el lunes.",
        "user_sentiment": "Positive",
        "chat_successful": true,
        "custom_analysis_data": { "plan": "B", "appointment_date": "2026-12-07" }
    })
}

#[tokio::test]
async fn after_retell_ended_and_analysed_a_chat_the_next_chat_starts_from_its_summary() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    let first = first_chat(&bridge, &engine).await;
    // Retell ends the chat after its silence, analyses it, and says so (the webhook).
    bridge.retell.set_analysis(
        first.as_str(),
        analysis(),
        json!({ "auto": "Versa 2021", "producto": "seguro de auto y hogar" }),
    );
    record_analysis(&first, &analysis()).await;
    assert_eq!(
        bridge
            .db_value("select chat_status from public.chat_sessions where customer_key = $1")
            .await,
        "ended"
    );
    let completions_before = bridge.retell.requests(CreateChatCompletion).len();

    bridge
        .customer_writes("Hola, ¿me pueden llamar el martes mejor?", minutes(0))
        .await;
    let TurnOutcome::Answered {
        chat_id: second, ..
    } = engine.take_turn(&bridge.customer).await.unwrap()
    else {
        panic!("answered")
    };
    assert_ne!(second, first);
    let completions: Vec<_> = bridge.retell.requests(CreateChatCompletion)[completions_before..]
        .iter()
        .map(|r| r.body["chat_id"].clone())
        .collect();
    assert_eq!(
        completions,
        [json!(second.as_str())],
        "no completion tried on the ended chat"
    );

    let new_chat = bridge.retell.chat(second.as_str()).unwrap();
    let variables = &new_chat.dynamic_variables;
    assert_eq!(
        variables["previous_conversation_summary"],
        analysis()["chat_summary"].as_str().unwrap()
    );
    assert_eq!(variables["auto"], "Versa 2021", "what the agent collected");
    assert_eq!(
        variables["producto"], "seguro de auto y hogar",
        "what the agent collected is newer than the form's"
    );
    assert_eq!(variables["customer_name"], "Marisol");
    assert_eq!(variables["conversation_continues"], "true");
    assert!(
        !variables.contains_key("previous_conversation"),
        "no raw tail beside a summary: {variables:?}"
    );
    assert_eq!(
        new_chat.contents("user"),
        ["Hola, ¿me pueden llamar el martes mejor?"]
    );
}

/// What the business's receiver got: each POST's signature header and raw body.
#[derive(Default)]
struct Received {
    posts: Vec<(String, String)>,
    /// Statuses to answer with, in order; then 200.
    statuses: Vec<StatusCode>,
}

fn receiver() -> (Server, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let mut received = state.lock().unwrap();
                let signature = headers
                    .get("x-bridge-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                received.posts.push((signature, body));
                if received.statuses.is_empty() {
                    StatusCode::OK
                } else {
                    received.statuses.remove(0)
                }
            }
        }),
    );
    (Server::start(router), received)
}

/// The receiver's check: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, recent.
fn verify(header: &str, body: &str) -> bool {
    let Some((t, v1)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let Ok(timestamp) = t.parse::<i64>() else {
        return false;
    };
    let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() <= 300;
    let Ok(digest) = hex::decode(v1) else {
        return false;
    };
    fresh
        && shared::signature::verify_hmac_sha256(
            SECRET.as_bytes(),
            &[t.as_bytes(), b".", body.as_bytes()],
            &digest,
        )
}

fn hook_to(server: &Server) -> OutcomeHook {
    let url = format!("{}/hook", server.url());
    let config = OutcomeHookConfig::from_env(&Env::from_pairs([
        ("OUTCOME_WEBHOOK_URL", url.as_str()),
        ("OUTCOME_WEBHOOK_SECRET", SECRET),
    ]))
    .unwrap()
    .expect("configured");
    OutcomeHook::new(&config, shared::http::client())
}

#[tokio::test]
async fn each_analysed_chat_is_posted_signed_to_the_outcome_hook_also_when_the_first_try_fails() {
    let bridge = Bridge::new();
    let (server, received) = receiver();
    let engine = bridge.engine().with_outcome_hook(Some(hook_to(&server)));
    let chat_id = first_chat(&bridge, &engine).await;
    record_analysis(&chat_id, &analysis()).await;
    received.lock().unwrap().statuses = vec![StatusCode::INTERNAL_SERVER_ERROR];

    let job = TurnJob::DeliverOutcome {
        customer_key: bridge.customer.clone(),
        chat_id: chat_id.clone(),
    };
    assert!(
        matches!(
            engine.handle(job.clone(), receipt()).await,
            JobDisposition::RetryLater(_)
        ),
        "a receiver that failed gets it again"
    );
    assert_eq!(engine.handle(job, receipt()).await, JobDisposition::Done);

    let posts = std::mem::take(&mut received.lock().unwrap().posts);
    assert_eq!(posts.len(), 2, "the failed try and the delivery");
    for (signature, body) in &posts {
        assert!(verify(signature, body), "signed: {signature}");
        assert!(!verify(signature, &body.replace("Marisol", "Marisa")));
    }
    let outcome: Value = serde_json::from_str(&posts[1].1).unwrap();
    assert_eq!(outcome["customer_key"], bridge.customer.as_str());
    assert_eq!(outcome["chat_id"], chat_id.as_str());
    assert_eq!(outcome["name"], "Marisol");
    assert_eq!(outcome["phone"], bridge.phone.as_str());
    assert_eq!(outcome["summary"], analysis()["chat_summary"]);
    assert_eq!(outcome["user_sentiment"], "Positive");
    assert_eq!(outcome["chat_successful"], true);
    assert_eq!(
        outcome["custom_analysis"],
        analysis()["custom_analysis_data"]
    );
    assert_eq!(outcome["form_fields"]["producto"], "seguro de auto");
    assert!(outcome["analyzed_at"].is_string());
}

#[tokio::test]
async fn a_refused_outcome_is_not_sent_again_and_no_hook_means_nothing_to_do() {
    let bridge = Bridge::new();
    let (server, received) = receiver();
    let engine = bridge.engine();
    let chat_id = first_chat(&bridge, &engine).await;
    record_analysis(&chat_id, &analysis()).await;
    let job = TurnJob::DeliverOutcome {
        customer_key: bridge.customer.clone(),
        chat_id,
    };
    assert_eq!(
        engine.handle(job.clone(), receipt()).await,
        JobDisposition::Done,
        "no hook configured"
    );

    received.lock().unwrap().statuses = vec![StatusCode::UNPROCESSABLE_ENTITY];
    let engine = engine.with_outcome_hook(Some(hook_to(&server)));
    assert_eq!(engine.handle(job, receipt()).await, JobDisposition::Done);
    assert_eq!(
        received.lock().unwrap().posts.len(),
        1,
        "refused once, not again"
    );
}
