use sandbox::retell_standin::RetellOperation::{CreateChat, CreateChatCompletion};
use shared::engine::{StartOutcome, TurnOutcome};
use shared::queue::{JobDisposition, JobHandler, TurnJob};

use crate::support::{Bridge, minutes, receipt};

/// The product's reason to exist: a form lead answers over hours, once after a cold start,
/// and every reply continues the one chat the form started.
#[tokio::test]
async fn a_form_lead_answering_three_times_stays_in_one_chat() {
    let bridge = Bridge::new();
    let submission = bridge.submit_form("Guadalupe").await;
    let engine = bridge.engine();
    assert_eq!(
        engine.start_conversation(submission).await.unwrap(),
        StartOutcome::Started
    );
    assert_eq!(
        engine.start_conversation(submission).await.unwrap(),
        StartOutcome::AlreadyStarted
    );

    let chats = bridge.retell.chats();
    assert_eq!(chats.len(), 1);
    let chat = &chats[0];
    assert_eq!(chat.dynamic_variables["customer_name"], "Guadalupe");
    assert_eq!(
        chat.dynamic_variables["producto"], "seguro de auto",
        "form fields reach the agent"
    );
    assert_eq!(
        bridge.whatsapp_sent(),
        [("template".to_owned(), "primer_contacto".to_owned())]
    );
    let opening = chat.contents("agent");
    assert_eq!(
        opening,
        ["¡Hola! ¿Me comunico con Guadalupe?"],
        "the agent's transcript holds its question"
    );

    for (reply, engine) in [
        ("Sí, soy yo", bridge.engine()),
        ("Es un Versa 2021", bridge.engine()),
    ] {
        bridge.customer_writes(reply, minutes(0)).await;
        assert!(matches!(
            engine.take_turn(&bridge.customer).await.unwrap(),
            TurnOutcome::Answered { .. }
        ));
    }
    // Hours later, on a cold start: a new engine with new clients reads the session back.
    bridge.customer_writes("¿Cuánto cuesta?", minutes(0)).await;
    let cold = bridge.engine();
    let TurnOutcome::Answered { chat_id, replies } =
        cold.take_turn(&bridge.customer).await.unwrap()
    else {
        panic!("answered")
    };
    assert_eq!(chat_id.as_str(), chat.chat_id);
    assert_eq!(replies, 1);

    assert_eq!(
        bridge.retell.requests(CreateChat).len(),
        1,
        "no second chat"
    );
    let chat = bridge.retell.chat(&chat.chat_id).unwrap();
    assert_eq!(
        chat.contents("user"),
        ["Sí, soy yo", "Es un Versa 2021", "¿Cuánto cuesta?"]
    );
    let sent = bridge.whatsapp_sent();
    assert_eq!(sent.len(), 4, "the template and three answers: {sent:?}");
    assert!(
        sent.iter()
            .all(|(_, text)| !text.contains("¿Me comunico con")),
        "the opening never went out as text"
    );
    assert_eq!(sent[3].1, "Recibido: ¿Cuánto cuesta?");
}

#[tokio::test]
async fn after_retell_ends_the_chat_the_next_reply_is_answered_in_a_new_chat_that_carries_over() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    let submission = bridge.submit_form("Rosa").await;
    engine.start_conversation(submission).await.unwrap();
    bridge.customer_writes("Sí, soy Rosa", minutes(0)).await;
    let TurnOutcome::Answered { chat_id: first, .. } =
        engine.take_turn(&bridge.customer).await.unwrap()
    else {
        panic!()
    };

    // The agent's idle timeout passes (end_chat_after_silence_ms).
    bridge.retell.end(first.as_str());
    bridge
        .customer_writes("Perdón, se me fue la señal. ¿Siguen ahí?", minutes(0))
        .await;
    let TurnOutcome::Answered {
        chat_id: second, ..
    } = engine.take_turn(&bridge.customer).await.unwrap()
    else {
        panic!()
    };
    assert_ne!(second, first);

    let new_chat = bridge.retell.chat(second.as_str()).unwrap();
    assert_eq!(new_chat.dynamic_variables["customer_name"], "Rosa");
    assert_eq!(new_chat.dynamic_variables["producto"], "seguro de auto");
    assert_eq!(new_chat.dynamic_variables["conversation_continues"], "true");
    let gist = &new_chat.dynamic_variables["previous_conversation"];
    assert!(
        gist.contains("Cliente: Sí, soy Rosa")
            && gist.contains("Agente: ¡Hola! ¿Me comunico con Rosa?"),
        "{gist}"
    );
    assert_eq!(
        new_chat.contents("user"),
        ["Perdón, se me fue la señal. ¿Siguen ahí?"],
        "the reply is its first turn"
    );
    assert_eq!(
        new_chat.contents("agent"),
        ["Recibido: Perdón, se me fue la señal. ¿Siguen ahí?"],
        "no greeting"
    );

    let history = bridge
        .db_value("select string_agg(chat_id || ':' || (ended_at is not null), ',' order by started_at) from chat_history where customer_key = $1")
        .await;
    assert_eq!(
        history,
        format!("{first}:true,{second}:false"),
        "the old chat stays in the history"
    );
    assert!(
        bridge
            .whatsapp_sent()
            .iter()
            .all(|(_, text)| !text.contains("¿Me comunico con"))
    );
}

#[tokio::test]
async fn a_customer_who_writes_first_gets_a_chat_of_their_own() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("Hola, vi su anuncio", minutes(0))
        .await;
    let disposition = bridge
        .engine()
        .handle(
            TurnJob::TakeTurn {
                customer_key: bridge.customer.clone(),
            },
            receipt(),
        )
        .await;
    assert_eq!(disposition, JobDisposition::Done);
    let chats = bridge.retell.chats();
    assert_eq!(chats.len(), 1);
    assert_eq!(
        chats[0].dynamic_variables["customer_name"], "Lupita",
        "the WhatsApp profile name"
    );
    assert_eq!(
        bridge.whatsapp_sent(),
        [(
            "text".to_owned(),
            "Recibido: Hola, vi su anuncio".to_owned()
        )]
    );
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
}

#[tokio::test]
async fn every_agent_message_of_a_completion_is_relayed_in_order() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("¿Qué coberturas tienen?", minutes(0))
        .await;
    bridge.retell.script_reply(&[
        "Tenemos tres planes.",
        "El básico cubre daños a terceros.",
        "¿Cuál te interesa?",
    ]);
    bridge.engine().take_turn(&bridge.customer).await.unwrap();
    let texts: Vec<String> = bridge.whatsapp_sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts,
        [
            "Tenemos tres planes.",
            "El básico cubre daños a terceros.",
            "¿Cuál te interesa?"
        ]
    );
    let answered = bridge.db_value("select string_agg(state, ',') from whatsapp_messages where customer_key = $1 and direction = 'inbound'").await;
    assert_eq!(answered, "answered");
    let outbound = bridge.db_value("select count(*)::text from whatsapp_messages where customer_key = $1 and direction = 'outbound'").await;
    assert_eq!(outbound, "3");
}

#[tokio::test]
async fn a_message_whatsapp_could_not_deliver_gets_the_polite_reply_and_no_agent_call() {
    let bridge = Bridge::new();
    bridge
        .customer_sends(None, "unsupported", chrono::Utc::now())
        .await;
    assert_eq!(
        bridge.engine().take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
    let sent = bridge.whatsapp_sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].1.contains("solo puedo leer mensajes de texto"),
        "{sent:?}"
    );
}
