use std::time::Duration;

use sandbox::GraphFault;
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use shared::engine::TurnOutcome;
use shared::queue::{JobDisposition, JobHandler, TurnJob};

use crate::support::{Bridge, minutes, receipt};

#[tokio::test]
async fn the_same_queue_message_delivered_twice_answers_once() {
    let bridge = Bridge::new();
    bridge.customer_writes("hola", minutes(0)).await;
    let job = TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    };
    assert_eq!(
        bridge.engine().handle(job.clone(), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        bridge.engine().handle(job, receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
}

/// The worker dies after Retell answered, while the reply is on its way to WhatsApp: the turn
/// taken over after the lease sends the saved answer once, without asking Retell again.
#[tokio::test]
async fn a_worker_that_dies_after_the_agent_answered_does_not_reply_twice() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("¿tienen seguro de moto?", minutes(0))
        .await;
    bridge
        .graph
        .fail_next(GraphFault::StallBeforeAccepting(Duration::from_secs(30)));
    let engine = bridge.engine();
    let customer = bridge.customer.clone();
    let dying = tokio::spawn(async move { engine.take_turn(&customer).await });
    while bridge
        .retell
        .requests(CreateChatCompletion)
        .iter()
        .all(|r| r.status != 201)
    {
        assert!(
            !dying.is_finished(),
            "the turn ended before Retell answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    dying.abort(); // the process dies mid-send
    assert!(dying.await.unwrap_err().is_cancelled());
    assert!(
        bridge.whatsapp_sent().is_empty(),
        "nothing reached WhatsApp"
    );

    bridge
        .db_execute(
            "update chat_sessions set turn_lease_expires_at = now() where customer_key = $1",
        )
        .await;
    let outcome = bridge.engine().take_turn(&bridge.customer).await.unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { replies: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        bridge.whatsapp_sent(),
        [(
            "text".to_owned(),
            "Recibido: ¿tienen seguro de moto?".to_owned()
        )]
    );
    assert_eq!(
        bridge.retell.requests(CreateChatCompletion).len(),
        1,
        "Retell was not asked twice"
    );
}

/// Two replies; the second cannot be sent (WhatsApp down past the retries): the retried turn
/// sends only the second.
#[tokio::test]
async fn a_retried_turn_sends_only_the_replies_that_did_not_go_out() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("precio", minutes(0)).await;
    bridge.retell.script_reply(&[
        "El plan básico cuesta $450 al mes.",
        "¿Quieres que te lo envíe por correo?",
    ]);
    bridge
        .graph
        .fail_next(GraphFault::SlowAnswer(Duration::ZERO));
    for _ in 0..3 {
        bridge.graph.fail_next(GraphFault::Code(131_000));
    }
    let job = TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    };
    assert!(matches!(
        engine.handle(job.clone(), receipt()).await,
        JobDisposition::RetryLater(_)
    ));
    assert_eq!(bridge.whatsapp_sent().len(), 1);

    assert_eq!(engine.handle(job, receipt()).await, JobDisposition::Done);
    let texts: Vec<String> = bridge.whatsapp_sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts,
        [
            "El plan básico cuesta $450 al mes.",
            "¿Quieres que te lo envíe por correo?"
        ]
    );
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
    let recorded = bridge.db_value("select count(*)::text from whatsapp_messages where customer_key = $1 and direction = 'outbound'").await;
    assert_eq!(recorded, "2");
}
