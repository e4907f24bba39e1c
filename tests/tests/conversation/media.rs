//! Pictures, documents, stickers, locations, contacts and taps reach the agent as lines it can
//! answer, each from Meta's own webhook examples (vendored in `sandbox/specs/whatsapp.json`);
//! reactions are kept and not answered; Meta's `unsupported` keeps the fixed reply.

use chrono::{TimeDelta, Utc};
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use sandbox::schema::ApiSpec;
use serde_json::{Value, json};
use shared::engine::TurnOutcome;

use crate::support::{Bridge, TestEngine};

/// The message of one of Meta's webhook examples.
fn example(name: &str) -> Value {
    ApiSpec::whatsapp().webhook_examples()[name]["entry"][0]["changes"][0]["value"]["messages"][0]
        .clone()
}

/// The engine, with opt-out words other than Meta's button example's "Unsubscribe" (which
/// opts the customer out, as it should: here the tap is to reach the agent).
fn engine(bridge: &Bridge) -> TestEngine {
    bridge.engine_configured(|worker| worker.engine.opt_out_words = vec!["BAJA".into()])
}

#[tokio::test]
async fn each_of_metas_examples_reaches_the_agent_as_documented() {
    let cases = [
        ("Text Message", "Does it come in another color?"),
        ("Image Message", "[imagen] Taj Mahal"),
        (
            "Location Message",
            "[ubicación: Philz Coffee, 101 Forest Ave, Palo Alto, CA 94301, \
             37.44221496582,-122.16165924072]",
        ),
        (
            "Contact Sharing Message",
            "[contacto: Lucía Gómez, +1 (983) 555-2319]",
        ),
        ("Interactive Button Reply Message", "Cancel"),
        ("Interactive List Reply Message", "Priority Mail Express"),
        ("Button Message", "Unsubscribe"),
    ];
    let bridge = Bridge::new();
    let engine = engine(&bridge);
    for (n, (name, _)) in cases.iter().enumerate() {
        bridge
            .customer_sends_message(example(name), Utc::now())
            .await;
        let outcome = engine.take_turn(&bridge.customer).await.unwrap();
        assert!(
            matches!(outcome, TurnOutcome::Answered { .. }),
            "{name}: {outcome:?}"
        );
        assert_eq!(
            bridge.retell.requests(CreateChatCompletion).len(),
            n + 1,
            "{name}: one completion each"
        );
    }
    let chats = bridge.retell.chats();
    let said: Vec<String> = chats[0]
        .contents("user")
        .into_iter()
        .filter(|content| !content.is_empty())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, line)| *line).collect();
    assert_eq!(said, expected);
    assert_eq!(bridge.whatsapp_sent().len(), cases.len(), "each answered");
}

#[tokio::test]
async fn documents_videos_and_stickers_are_markers_with_their_caption() {
    let bridge = Bridge::new();
    let engine = engine(&bridge);
    let at = |seconds| Utc::now() - TimeDelta::seconds(seconds);
    bridge
        .customer_sends_message(
            json!({ "type": "document", "document": { "id": "1", "mime_type": "application/pdf",
                "filename": "contrato.pdf", "caption": "el firmado" } }),
            at(30),
        )
        .await;
    bridge
        .customer_sends_message(
            json!({ "type": "video", "video": { "id": "2", "mime_type": "video/mp4" } }),
            at(20),
        )
        .await;
    bridge
        .customer_sends_message(
            json!({ "type": "sticker", "sticker": { "id": "3", "mime_type": "image/webp",
                "animated": false } }),
            at(10),
        )
        .await;
    let outcome = engine.take_turn(&bridge.customer).await.unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        bridge.retell.chats()[0].contents("user").last().unwrap(),
        "[documento: contrato.pdf] el firmado\n[video]\n[sticker]",
        "one completion, in the order sent"
    );
}

#[tokio::test]
async fn a_reaction_is_kept_and_not_answered() {
    let bridge = Bridge::new();
    bridge
        .customer_sends_message(example("Reaction Message"), Utc::now())
        .await;
    assert_eq!(
        engine(&bridge).take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Silent
    );
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
    assert!(bridge.whatsapp_sent().is_empty());
    assert!(
        bridge.graph.read_receipts().is_empty(),
        "no typing for nothing"
    );
    let state = bridge
        .db_value("select state from whatsapp_messages where customer_key = $1")
        .await;
    assert_eq!(state, "answered", "stored, done with");
}

#[tokio::test]
async fn a_reaction_beside_a_text_leaves_the_text_alone() {
    let bridge = Bridge::new();
    bridge
        .customer_sends_message(
            example("Reaction Message"),
            Utc::now() - TimeDelta::seconds(5),
        )
        .await;
    bridge
        .customer_writes("¿y el precio?", TimeDelta::zero())
        .await;
    engine(&bridge).take_turn(&bridge.customer).await.unwrap();
    assert_eq!(
        bridge.retell.chats()[0].contents("user").last().unwrap(),
        "¿y el precio?"
    );
}

#[tokio::test]
async fn metas_unsupported_message_keeps_the_fixed_reply() {
    let bridge = Bridge::new();
    bridge
        .customer_sends_message(example("Unsupported Message"), Utc::now())
        .await;
    assert_eq!(
        engine(&bridge).take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
    let sent = bridge.whatsapp_sent();
    assert!(
        sent.len() == 1 && sent[0].1.contains("solo puedo leer mensajes de texto"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn the_types_that_reach_the_agent_are_configured() {
    let bridge = Bridge::new();
    let engine = bridge.engine_configured(|worker| {
        worker.engine.agent_message_types = vec!["text".into()];
    });
    bridge
        .customer_sends_message(example("Image Message"), Utc::now())
        .await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged,
        "images are not among AGENT_MESSAGE_TYPES: the fixed reply"
    );
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
}
