use chrono::{TimeDelta, Utc};
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use shared::domain::{DeliveryStatus, DeliveryUpdate, MessageId};
use shared::engine::TurnOutcome;
use shared::store::SessionStore;

use crate::support::{Bridge, minutes};

#[tokio::test]
async fn a_reply_to_a_message_older_than_24_hours_goes_as_the_template() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("¿Me pueden llamar?", TimeDelta::hours(25))
        .await;
    assert!(matches!(
        bridge.engine().take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Answered { .. }
    ));
    assert_eq!(
        bridge.whatsapp_sent(),
        [("template".to_owned(), "primer_contacto".to_owned())]
    );
}

#[tokio::test]
async fn a_131047_status_flips_the_next_reply_to_the_template() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("hola", minutes(30)).await;
    engine.take_turn(&bridge.customer).await.unwrap();
    let (_, first_reply) = (
        bridge.graph.accepted().remove(0).message_type,
        bridge.graph.accepted().remove(0).wamid,
    );

    // WhatsApp later reports the reply failed: the window had closed (a clock skew, Meta's
    // "rare cases").
    let failed = DeliveryUpdate {
        wamid: MessageId::parse(first_reply).unwrap(),
        status: DeliveryStatus::Failed,
        at: Utc::now(),
        errors: Some(serde_json::json!([{ "code": 131047, "title": "Re-engagement message" }])),
    };
    assert!(
        bridge
            .store()
            .record_delivery_statuses(&[failed])
            .await
            .unwrap()[0]
            .applied
    );

    // A message the customer sent before that failure arrives late: the window is still closed.
    bridge.customer_writes("¿sigues ahí?", minutes(20)).await;
    engine.take_turn(&bridge.customer).await.unwrap();
    let sent = bridge.whatsapp_sent();
    assert_eq!(
        sent[1],
        ("template".to_owned(), "primer_contacto".to_owned()),
        "{sent:?}"
    );

    // The customer writes again: the window is open again.
    bridge.customer_writes("hola de nuevo", minutes(0)).await;
    engine.take_turn(&bridge.customer).await.unwrap();
    assert_eq!(
        bridge.whatsapp_sent()[2],
        ("text".to_owned(), "Recibido: hola de nuevo".to_owned())
    );
}

#[tokio::test]
async fn a_synchronous_131047_sends_the_template_instead() {
    let bridge = Bridge::new();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.graph.fail_next(sandbox::GraphFault::Code(131_047));
    bridge.engine().take_turn(&bridge.customer).await.unwrap();
    assert_eq!(
        bridge.whatsapp_sent(),
        [("template".to_owned(), "primer_contacto".to_owned())]
    );
}

#[tokio::test]
async fn while_a_person_has_taken_over_messages_are_stored_and_not_answered() {
    let bridge = Bridge::new();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.db_execute("update chat_sessions set paused_until = now() + interval '1 hour' where customer_key = $1").await;
    assert_eq!(
        bridge.engine().take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Held
    );
    assert!(
        bridge.retell.requests(CreateChatCompletion).is_empty(),
        "no Retell call"
    );
    assert!(bridge.whatsapp_sent().is_empty());
    let state = bridge
        .db_value("select state from whatsapp_messages where customer_key = $1")
        .await;
    assert_eq!(
        state, "held",
        "kept for the agent to hear of after the pause, not waiting for a turn"
    );
}

#[tokio::test]
async fn opting_out_is_confirmed_once_then_silence_until_opting_in() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("¡Baja!", minutes(0)).await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    bridge.customer_writes("hola?", minutes(0)).await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Held
    );
    bridge.customer_writes("STOP", minutes(0)).await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Held,
        "confirmed once only"
    );
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());

    bridge.customer_writes("alta", minutes(0)).await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    bridge.customer_writes("quiero cotizar", minutes(0)).await;
    assert!(matches!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Answered { .. }
    ));

    let texts: Vec<String> = bridge.whatsapp_sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[0].contains("no te enviaremos más mensajes"));
    assert!(texts[1].contains("Bienvenido de vuelta"));
    assert_eq!(texts[2], "Recibido: quiero cotizar");
}

/// The form was accepted, then, before its job ran, the customer opted out (or a person took
/// over): the job contacts nobody and records why.
#[tokio::test]
async fn a_customer_who_opted_out_or_was_taken_over_after_the_form_is_not_contacted() {
    use sandbox::retell_standin::RetellOperation::CreateChat;
    use shared::domain::OutcomeReason;
    use shared::engine::StartOutcome;

    for (change, reason) in [
        (
            "update chat_sessions set opted_out_at = now() where customer_key = $1",
            OutcomeReason::OptedOut,
        ),
        (
            "update chat_sessions set paused_until = now() + interval '1 hour' where customer_key = $1",
            OutcomeReason::Paused,
        ),
    ] {
        let bridge = Bridge::new();
        let submission = bridge.submit_form("Renata").await;
        assert_eq!(
            bridge
                .db_value("select status from form_submissions where customer_key = $1")
                .await,
            "queued",
            "sanity: the form was accepted"
        );
        bridge.db_execute(change).await;
        let engine = bridge.engine();
        assert_eq!(
            engine.start_conversation(submission).await.unwrap(),
            StartOutcome::NotContacted(Some(reason)),
            "{reason}"
        );
        assert!(
            bridge.retell.requests(CreateChat).is_empty(),
            "{reason}: no chat"
        );
        assert!(
            bridge.retell.requests(CreateChatCompletion).is_empty(),
            "{reason}: no Retell call"
        );
        assert!(bridge.whatsapp_sent().is_empty(), "{reason}: no template");
        assert_eq!(
            bridge
                .db_value(
                    "select status || ': ' || outcome_reason from form_submissions \
                     where customer_key = $1"
                )
                .await,
            format!("skipped: {reason}")
        );
        // The job again (a redelivery): still nobody contacted.
        assert_eq!(
            engine.start_conversation(submission).await.unwrap(),
            StartOutcome::NotContacted(Some(reason))
        );
        assert!(bridge.whatsapp_sent().is_empty());
    }
}
