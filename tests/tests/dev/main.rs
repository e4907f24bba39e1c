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
    let base = serve(&bridge).await;
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

/// `make chat`'s `/voice`: the note's bytes go to the WhatsApp stand-in through
/// `POST /sandbox/media`, a signed `audio` message names its media id, and the sandbox's
/// transcription stand-in (started since TRANSCRIBE_URL is unset) hears it: the agent gets the
/// transcript and the customer a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_sent_as_make_chat_does_is_transcribed_in_the_sandbox() {
    use sandbox::transcribe_standin::{DEFAULT_TRANSCRIPT, VOICE_NOTE_MIME_TYPE};

    let bridge = DevBridge::assemble(&HashMap::new()).unwrap();
    let transcribe = bridge
        .transcribe
        .clone()
        .expect("the transcription stand-in");
    assert!(
        bridge
            .summary
            .iter()
            .any(|line| line.contains("SANDBOX transcription stand-in")),
        "{:?}",
        bridge.summary
    );
    let base = serve(&bridge).await;
    let http = reqwest::Client::new();

    let media: serde_json::Value = http
        .post(format!("{base}/sandbox/media"))
        .header("content-type", VOICE_NOTE_MIME_TYPE)
        .body(sandbox::VOICE_NOTE_OGG.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let media_id = media["id"].as_str().expect("a media id");
    let empty = http
        .post(format!("{base}/sandbox/media"))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);

    let wa_id = "5213398765432";
    let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{
        "field": "messages", "value": { "messaging_product": "whatsapp",
          "metadata": { "display_phone_number": "15550000000", "phone_number_id": "106540352242922" },
          "contacts": [{ "profile": { "name": "Lupita" }, "wa_id": wa_id }],
          "messages": [{ "from": wa_id, "id": format!("wamid.DEVVOICE.{}", std::process::id()),
                         "timestamp": chrono::Utc::now().timestamp().to_string(), "type": "audio",
                         "audio": { "id": media_id, "mime_type": VOICE_NOTE_MIME_TYPE,
                                    "sha256": "bm90LWNoZWNrZWQ=", "voice": true } }] } }] }] })
    .to_string();
    let answer = http
        .post(format!("{base}/whatsapp"))
        .header(
            SIGNATURE_HEADER,
            signature(body.as_bytes(), "standin-app-secret"),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    bridge.queue.idle().await;

    let graph = bridge.graph.as_ref().unwrap();
    assert_eq!(graph.media_downloads(), 1);
    let heard = transcribe.requests();
    assert_eq!(heard.len(), 1);
    assert_eq!(heard[0].bytes, sandbox::VOICE_NOTE_OGG);
    let replies: Vec<_> = graph
        .accepted()
        .into_iter()
        .filter(|m| m.to == "+523398765432")
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0]
            .text
            .ends_with(&format!("[nota de voz] {DEFAULT_TRANSCRIPT}")),
        "{}",
        replies[0].text
    );
}

/// With the real Graph API, media cannot be made up and voice notes are not given to a
/// stand-in that would answer a fixed sentence for them: as deployed without TRANSCRIBE_URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_sandbox_there_is_no_sandbox_media_nor_transcription_stand_in() {
    let mut env: HashMap<String, String> = [
        // Nothing is reached: the routes answering here do not call out.
        ("SUPABASE_REST_URL", "http://127.0.0.1:9/rest/v1"),
        ("SUPABASE_SERVICE_ROLE_KEY", "not-a-key"),
        ("RETELL_API_KEY", "key_not_used"),
        ("RETELL_AGENT_ID", "agent_not_used"),
        ("RETELL_BASE_URL", "http://127.0.0.1:9"),
        ("WHATSAPP_ACCESS_TOKEN", "EAAGnotused"),
        ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922"),
        ("WHATSAPP_GRAPH_URL", "http://127.0.0.1:9"),
        ("WHATSAPP_TEMPLATE_NAME", "primer_contacto"),
        ("WHATSAPP_TEMPLATE_LANGUAGE", "es_MX"),
        ("WHATSAPP_APP_SECRET", "app-secret"),
        ("WHATSAPP_VERIFY_TOKEN", "verify-token"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let bridge = DevBridge::assemble(&env).unwrap();
    assert!(bridge.graph.is_none() && bridge.transcribe.is_none());
    assert!(
        bridge
            .summary
            .iter()
            .any(|line| line.starts_with("voice notes: not transcribed")),
        "{:?}",
        bridge.summary
    );
    let base = serve(&bridge).await;
    let answer = reqwest::Client::new()
        .post(format!("{base}/sandbox/media"))
        .header("content-type", "audio/ogg")
        .body(sandbox::VOICE_NOTE_OGG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);

    // A real transcription API is used as given, never replaced.
    env.insert("TRANSCRIBE_URL".into(), "http://127.0.0.1:9/v1".into());
    let bridge = DevBridge::assemble(&env).unwrap();
    assert!(bridge.transcribe.is_none());
    assert!(
        bridge
            .summary
            .iter()
            .any(|line| line.contains("TRANSCRIBE_URL (real)")),
        "{:?}",
        bridge.summary
    );
}

/// The dev server's routes on a free port, as `make dev` serves them; returns its base URL.
async fn serve(bridge: &DevBridge) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = bridge.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}
