use std::collections::BTreeMap;
use std::time::Duration;

use sandbox::retell_standin::{API_KEY, RetellOperation::*};
use sandbox::{RetellFault, RetellStandIn};
use serde_json::json;
use shared::agent::{AgentError, ChatAgent, NewChat};
use shared::domain::{ChatId, ChatStatus};
use shared::retell::RetellClient;

use crate::FAST_RETRIES;

fn client(retell: &RetellStandIn) -> RetellClient {
    RetellClient::new(&retell.config(), shared::http::client()).with_retry_policy(FAST_RETRIES)
}

fn new_chat() -> NewChat {
    let mut chat = NewChat::default();
    chat.metadata
        .insert("customer_key".into(), json!("525512345678"));
    chat.dynamic_variables = BTreeMap::from([("customer_name".to_owned(), "Ana".to_owned())]);
    chat
}

#[tokio::test]
async fn every_request_the_client_sends_passes_its_operations_schema() {
    let retell = RetellStandIn::start();
    let client = client(&retell);
    let chat = client.create_chat(&new_chat()).await.unwrap();
    assert_eq!(chat.chat_status, ChatStatus::Ongoing);
    let opening = client.complete(&chat.chat_id, "").await.unwrap();
    assert_eq!(
        opening[0].agent_text(),
        Some("¡Hola! ¿Me comunico con Ana?")
    );
    client.complete(&chat.chat_id, "Sí, soy yo").await.unwrap();
    let stored = client.get_chat(&chat.chat_id).await.unwrap();
    assert_eq!(stored.messages.len(), 3);
    client.end_chat(&chat.chat_id).await.unwrap();

    for operation in [CreateChat, CreateChatCompletion, GetChat, EndChat] {
        let requests = retell.requests(operation);
        assert!(!requests.is_empty(), "{operation:?} was called");
        assert!(
            requests.iter().all(|r| r.status < 300),
            "{operation:?}: {requests:?}"
        );
    }
    let created = &retell.requests(CreateChat)[0].body;
    assert_eq!(
        created["retell_llm_dynamic_variables"]["customer_name"],
        "Ana"
    );
    assert_eq!(created["metadata"]["customer_key"], "525512345678");
    assert_eq!(
        retell.chat(chat.chat_id.as_str()).unwrap().status,
        ChatStatus::Ended
    );
}

#[tokio::test]
async fn a_malformed_request_is_refused_like_the_real_api() {
    let retell = RetellStandIn::start();
    let url = format!("{}/create-chat", retell.config().base_url);
    let answer = reqwest::Client::new()
        .post(url)
        .bearer_auth(API_KEY)
        .json(&json!({ "agent_idd": "agent_standin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let message = answer.json::<serde_json::Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("agent_idd") && message.contains("agent_id"),
        "names both fields: {message}"
    );
}

#[tokio::test]
async fn an_ended_chat_answers_chat_ended_to_a_completion() {
    let retell = RetellStandIn::start();
    let client = client(&retell);
    let chat = client.create_chat(&new_chat()).await.unwrap();
    retell.end(chat.chat_id.as_str());
    let error = client
        .complete(&chat.chat_id, "¿sigues ahí?")
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::ChatEnded(ref m) if m == "Chat already ended"),
        "{error:?}"
    );
    assert_eq!(
        retell.requests(CreateChatCompletion).len(),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn a_chat_left_silent_past_the_agents_timeout_is_ended() {
    let retell = RetellStandIn::start();
    retell.end_chats_after_silence(Duration::from_millis(50));
    let client = client(&retell);
    let chat = client.create_chat(&new_chat()).await.unwrap();
    client.complete(&chat.chat_id, "hola").await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        client.get_chat(&chat.chat_id).await.unwrap().chat_status,
        ChatStatus::Ended
    );
    assert!(matches!(
        client.complete(&chat.chat_id, "hola?").await,
        Err(AgentError::ChatEnded(_))
    ));
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_for_every_operation() {
    let retell = RetellStandIn::start();
    let client = client(&retell);
    retell.fail_next(CreateChat, RetellFault::RateLimited { retry_after_ms: 5 });
    let chat = client.create_chat(&new_chat()).await.unwrap();
    retell.fail_next(
        CreateChatCompletion,
        RetellFault::RateLimited { retry_after_ms: 5 },
    );
    client.complete(&chat.chat_id, "hola").await.unwrap();

    assert_eq!(statuses(&retell, CreateChat), [429, 201]);
    assert_eq!(statuses(&retell, CreateChatCompletion), [429, 201]);
    let stored = retell.chat(chat.chat_id.as_str()).unwrap();
    assert_eq!(
        stored.contents("user"),
        ["hola"],
        "a 429 was not received: one user turn"
    );
}

#[tokio::test]
async fn server_errors_are_retried_for_create_get_and_end_but_never_for_a_completion() {
    let retell = RetellStandIn::start();
    let client = client(&retell);
    retell.fail_next(CreateChat, RetellFault::ServerError);
    let chat = client.create_chat(&new_chat()).await.unwrap();
    retell.fail_next(GetChat, RetellFault::ServerError);
    retell.fail_next(GetChat, RetellFault::ServerError);
    client.get_chat(&chat.chat_id).await.unwrap();
    assert_eq!(statuses(&retell, CreateChat), [500, 201]);
    assert_eq!(statuses(&retell, GetChat), [500, 500, 200]);

    retell.fail_next(CreateChatCompletion, RetellFault::ServerError);
    let error = client.complete(&chat.chat_id, "hola").await.unwrap_err();
    assert!(
        matches!(error, AgentError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert!(
        error.is_transient(),
        "the queue may try the turn again later"
    );
    assert_eq!(statuses(&retell, CreateChatCompletion), [500]);
}

#[tokio::test]
async fn retries_stop_after_the_policys_count() {
    let retell = RetellStandIn::start();
    for _ in 0..5 {
        retell.fail_next(EndChat, RetellFault::ServerError);
    }
    let error = client(&retell)
        .end_chat(&ChatId::parse("chat_x").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Server { .. }));
    assert_eq!(
        retell.requests(EndChat).len(),
        1 + FAST_RETRIES.max_retries as usize
    );
}

#[tokio::test]
async fn a_completion_that_timed_out_is_not_sent_again() {
    let retell = RetellStandIn::start();
    let mut config = retell.config();
    config.completion_timeout = Duration::from_millis(100);
    let client = RetellClient::new(&config, shared::http::client()).with_retry_policy(FAST_RETRIES);
    let chat = client.create_chat(&new_chat()).await.unwrap();
    retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(300)),
    );

    let error = client
        .complete(&chat.chat_id, "quiero cotizar")
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Timeout), "{error:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        retell.requests(CreateChatCompletion).len(),
        1,
        "no blind retry"
    );
    let stored = retell.chat(chat.chat_id.as_str()).unwrap();
    assert_eq!(
        stored.contents("user"),
        ["quiero cotizar"],
        "Retell did receive it, once"
    );
}

#[tokio::test]
async fn a_refused_key_payment_and_an_unknown_chat_each_have_their_error() {
    let retell = RetellStandIn::start();
    let mut config = retell.config();
    config.api_key = "key_wrong".to_owned().into();
    let wrong_key =
        RetellClient::new(&config, shared::http::client()).with_retry_policy(FAST_RETRIES);
    assert!(matches!(
        wrong_key.create_chat(&new_chat()).await,
        Err(AgentError::Unauthorized(_))
    ));
    assert_eq!(statuses(&retell, CreateChat), [401], "not retried");

    let client = client(&retell);
    retell.fail_next(CreateChat, RetellFault::PaymentRequired);
    assert!(matches!(
        client.create_chat(&new_chat()).await,
        Err(AgentError::PaymentRequired(_))
    ));
    let unknown = ChatId::parse("chat_unknown").unwrap();
    assert!(matches!(
        client.complete(&unknown, "hola").await,
        Err(AgentError::NotFound(_))
    ));
}

#[tokio::test]
async fn an_unreachable_service_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = RetellStandIn::start().config();
    config.base_url = format!("http://127.0.0.1:{port}");
    let client = RetellClient::new(&config, shared::http::client()).with_retry_policy(FAST_RETRIES);
    let error = client
        .complete(&ChatId::parse("chat_x").unwrap(), "hola")
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::Connect(_)) && error.is_transient(),
        "{error:?}"
    );
}

fn statuses(retell: &RetellStandIn, operation: sandbox::RetellOperation) -> Vec<u16> {
    retell
        .requests(operation)
        .iter()
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn the_stand_ins_answers_match_the_response_schemas_of_the_spec() {
    use sandbox::schema::{ApiSpec, validate};
    let retell = RetellStandIn::start();
    let client = client(&retell);
    let chat = client.create_chat(&new_chat()).await.unwrap();
    client.complete(&chat.chat_id, "hola").await.unwrap();

    let http = reqwest::Client::new();
    let base = retell.config().base_url;
    let calls = [
        (
            "createChat",
            http.post(format!("{base}/create-chat"))
                .json(&json!({ "agent_id": "agent_standin" })),
        ),
        (
            "createChatCompletion",
            http.post(format!("{base}/create-chat-completion"))
                .json(&json!({ "chat_id": chat.chat_id, "content": "¿precio?" })),
        ),
        (
            "getChat",
            http.get(format!("{base}/get-chat/{}", chat.chat_id)),
        ),
        ("getChat", http.get(format!("{base}/get-chat/chat_unknown"))),
        (
            "createChatCompletion",
            http.post(format!("{base}/create-chat-completion"))
                .json(&json!({})),
        ),
    ];
    for (operation, request) in calls {
        let answer = request.bearer_auth(API_KEY).send().await.unwrap();
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap();
        let schema = ApiSpec::retell()
            .operation(operation)
            .response(status)
            .unwrap_or_else(|| panic!("{operation} documents no {status}"));
        validate(schema, &body).unwrap_or_else(|v| panic!("{operation} {status}: {v:?} in {body}"));
    }
}
