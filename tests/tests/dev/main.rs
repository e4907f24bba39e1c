//! `make dev`'s assembly, driven over HTTP as a customer and a web form would: the form starts
//! the conversation with the template, three WhatsApp replies continue one chat.

use std::collections::HashMap;

use sandbox::dev::{DevBridge, SANDBOX_FORM_SECRET};
use sandbox::meta_webhook::signature;
use serde_json::json;
use shared::whatsapp::webhook::SIGNATURE_HEADER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_then_three_whatsapp_replies_make_one_conversation_in_the_sandbox() {
    let bridge = DevBridge::assemble(&HashMap::new()).unwrap();
    assert!(
        bridge.summary.iter().any(|line| line.contains("SANDBOX")),
        "{:?}",
        bridge.summary
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = bridge.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    let form = http
        .post(format!("{base}/form"))
        .bearer_auth(SANDBOX_FORM_SECRET)
        .json(&json!({ "name": "Guadalupe", "phone": "33 1234 5678", "consent": true, "interes": "seguro de auto" }))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 202, "{}", form.text().await.unwrap());
    bridge.queue.idle().await;
    let graph = bridge.graph.as_ref().unwrap();
    let retell = bridge.retell.as_ref().unwrap();
    assert_eq!(graph.accepted().len(), 1);
    assert_eq!(graph.accepted()[0].message_type, "template");
    assert_eq!(graph.accepted()[0].to, "+523312345678");

    let secret = "standin-app-secret";
    for (n, text) in ["Sí, soy yo", "Es un Versa 2021", "¿Cuánto cuesta?"]
        .into_iter()
        .enumerate()
    {
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{
            "field": "messages", "value": { "messaging_product": "whatsapp",
              "metadata": { "display_phone_number": "15550000000", "phone_number_id": "106540352242922" },
              "contacts": [{ "profile": { "name": "Lupita" }, "wa_id": "5213312345678" }],
              "messages": [{ "from": "5213312345678", "id": format!("wamid.DEV.{}.{n}", std::process::id()),
                             "timestamp": chrono::Utc::now().timestamp().to_string(),
                             "type": "text", "text": { "body": text } }] } }] }] })
        .to_string();
        let answer = http
            .post(format!("{base}/whatsapp"))
            .header(SIGNATURE_HEADER, signature(body.as_bytes(), secret))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        bridge.queue.idle().await;
    }

    let chats = retell.chats();
    assert_eq!(chats.len(), 1, "one conversation");
    let replies: Vec<String> = graph
        .accepted()
        .into_iter()
        .skip(1)
        .map(|m| m.text)
        .collect();
    let chat_id = &chats[0].chat_id;
    assert_eq!(
        replies,
        [
            format!("[{chat_id} · turno 1] Recibido: Sí, soy yo"),
            format!("[{chat_id} · turno 2] Recibido: Es un Versa 2021"),
            format!("[{chat_id} · turno 3] Recibido: ¿Cuánto cuesta?"),
        ]
    );
    let outbox: serde_json::Value = http
        .get(format!("{base}/sandbox/outbox?to=%2B523312345678"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        outbox.as_array().unwrap().len(),
        4,
        "the sandbox shows what was sent"
    );
}
