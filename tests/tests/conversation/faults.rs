use sandbox::retell_standin::RetellOperation::{CreateChatCompletion, GetChat};
use sandbox::{GraphFault, RetellFault};
use shared::engine::TurnOutcome;
use shared::queue::{JobDisposition, JobHandler, TurnJob};

use crate::support::{Bridge, minutes, receipt};

/// The next completion: Retell takes and answers it after the client (100 ms) gave up, and
/// reading the chat back fails too, so the turn ends unsure and is retried.
fn retell_takes_the_text_and_the_turn_dies(bridge: &Bridge) {
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(std::time::Duration::from_millis(400)),
    );
    for _ in 0..3 {
        bridge.retell.fail_next(GetChat, RetellFault::ServerError);
    }
}

fn job(bridge: &Bridge) -> TurnJob {
    TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    }
}

#[tokio::test]
async fn a_rate_limited_completion_is_retried_within_the_turn() {
    let bridge = Bridge::new();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::RateLimited { retry_after_ms: 5 },
    );
    assert_eq!(
        bridge.engine().handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    let statuses: Vec<u16> = bridge
        .retell
        .requests(CreateChatCompletion)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 201]);
    assert_eq!(bridge.whatsapp_sent().len(), 1);
}

#[tokio::test]
async fn a_failed_completion_is_retried_by_the_queue_not_resent_blindly() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge
        .retell
        .fail_next(CreateChatCompletion, RetellFault::ServerError);
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(ref retry) if retry.reason.contains("500")),
        "{disposition:?}"
    );
    let waiting = bridge
        .db_value(
            "select state || ':' || failure_reason from whatsapp_messages where customer_key = $1",
        )
        .await;
    assert!(
        waiting.starts_with("pending:"),
        "back to wait, reason kept: {waiting}"
    );

    // The queue delivers the job again.
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
    let chat = &bridge.retell.chats()[0];
    assert_eq!(
        chat.contents("user"),
        ["hola"],
        "the 500 was not received: one user turn"
    );
}

#[tokio::test]
async fn whatsapp_throughput_limits_are_ridden_out() {
    let bridge = Bridge::new();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.graph.fail_next(GraphFault::Code(130_429));
    bridge.graph.fail_next(GraphFault::Code(131_056));
    assert_eq!(
        bridge.engine().handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
}

#[tokio::test]
async fn an_undeliverable_customer_fails_the_turn_for_good_with_the_reason() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.graph.fail_next(GraphFault::Code(131_026));
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done,
        "not retried forever"
    );
    let failed = bridge.db_value("select state || ':' || failure_reason from whatsapp_messages where customer_key = $1 and direction = 'inbound'").await;
    assert!(
        failed.starts_with("failed:") && failed.contains("131026"),
        "{failed}"
    );
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Idle
    );
}

#[tokio::test]
async fn a_completion_that_timed_out_after_retell_answered_uses_that_answer() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("¿aceptan tarjeta?", minutes(0))
        .await;
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(std::time::Duration::from_millis(400)),
    );
    let engine = bridge.engine_with_completion_timeout(std::time::Duration::from_millis(100));
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        bridge.retell.requests(CreateChatCompletion).len(),
        1,
        "not sent again"
    );
    assert_eq!(
        bridge.whatsapp_sent(),
        [("text".to_owned(), "Recibido: ¿aceptan tarjeta?".to_owned())]
    );
}

#[tokio::test]
async fn a_completion_retell_received_but_never_answered_is_not_repeated_to_the_agent() {
    let bridge = Bridge::new();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.retell.script_reply(&[]);
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(std::time::Duration::from_millis(400)),
    );
    let engine = bridge.engine_with_completion_timeout(std::time::Duration::from_millis(100));
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(ref retry) if retry.reason.contains("did not answer in time")),
        "retried: Retell may still answer, {disposition:?}"
    );
    let waiting = bridge
        .db_value("select state from whatsapp_messages where customer_key = $1")
        .await;
    assert_eq!(waiting, "pending");

    // Retried once Retell has had the time to answer: it answered nothing, and nothing is sent.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        bridge.retell.chats()[0].contents("user"),
        ["hola"],
        "the agent saw it once"
    );
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
    assert!(bridge.whatsapp_sent().is_empty());
    let answered = bridge
        .db_value("select state from whatsapp_messages where customer_key = $1")
        .await;
    assert_eq!(answered, "answered");
}

#[tokio::test]
async fn a_turn_that_died_after_retell_took_its_text_is_answered_from_the_chat_on_retry() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("¿tienen cita hoy?", minutes(0))
        .await;
    retell_takes_the_text_and_the_turn_dies(&bridge);
    let engine = bridge.engine_with_completion_timeout(std::time::Duration::from_millis(100));
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(_)),
        "{disposition:?}"
    );
    assert!(bridge.whatsapp_sent().is_empty());

    // The queue delivers the job again: the chat holds the text and its answer.
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        bridge.retell.chats()[0].contents("user"),
        ["¿tienen cita hoy?"],
        "the agent saw it once"
    );
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
    assert_eq!(
        bridge.whatsapp_sent(),
        [("text".to_owned(), "Recibido: ¿tienen cita hoy?".to_owned())]
    );
}

#[tokio::test]
async fn a_retried_turn_still_sends_what_the_agent_does_not_have() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("ok", minutes(0)).await;
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    // The same words again, and the completion fails before Retell takes them: the chat's
    // last user message is the older "ok", which the retry must not take for this one.
    bridge.customer_writes("ok", minutes(0)).await;
    bridge
        .retell
        .fail_next(CreateChatCompletion, RetellFault::ServerError);
    assert!(matches!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::RetryLater(_)
    ));
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.retell.chats()[0].contents("user"), ["ok", "ok"]);
    assert_eq!(bridge.whatsapp_sent().len(), 2);
}

#[tokio::test]
async fn texts_retell_took_over_several_dead_turns_are_all_answered_from_the_chat() {
    let bridge = Bridge::new();
    let engine = bridge.engine_with_completion_timeout(std::time::Duration::from_millis(100));
    bridge.customer_writes("uno", minutes(0)).await;
    retell_takes_the_text_and_the_turn_dies(&bridge);
    assert!(matches!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::RetryLater(_)
    ));
    // The retry finds "uno" in the chat and sends only "dos", which dies the same way.
    bridge.customer_writes("dos", minutes(0)).await;
    retell_takes_the_text_and_the_turn_dies(&bridge);
    assert!(matches!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::RetryLater(_)
    ));

    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.retell.chats()[0].contents("user"), ["uno", "dos"]);
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 2);
    assert_eq!(
        bridge.whatsapp_sent(),
        [
            ("text".to_owned(), "Recibido: uno".to_owned()),
            ("text".to_owned(), "Recibido: dos".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_late_message_sorting_among_texts_retell_took_does_not_make_the_retry_repeat_them() {
    let bridge = Bridge::new();
    let engine = bridge.engine_with_completion_timeout(std::time::Duration::from_millis(100));
    bridge.customer_writes("uno", minutes(2)).await;
    bridge.customer_writes("tres", minutes(0)).await;
    retell_takes_the_text_and_the_turn_dies(&bridge);
    assert!(matches!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::RetryLater(_)
    ));
    // WhatsApp delivers the message between them only now: the retry's texts are uno, dos, tres.
    bridge.customer_writes("dos", minutes(1)).await;

    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        bridge.retell.chats()[0].contents("user"),
        ["uno\ntres", "dos"]
    );
    assert_eq!(
        bridge.whatsapp_sent(),
        [
            ("text".to_owned(), "Recibido: uno\ntres".to_owned()),
            ("text".to_owned(), "Recibido: dos".to_owned())
        ]
    );
}

#[tokio::test]
async fn an_expired_whatsapp_token_keeps_the_turn_waiting_uncounted_and_it_is_answered_once_fixed()
{
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge.graph.fail_next(GraphFault::Code(190));
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(ref retry) if retry.reason.contains("190")),
        "retried like any transient failure: {disposition:?}"
    );
    let waiting = bridge
        .db_value(
            "select state || ':' || attempts from whatsapp_messages \
             where customer_key = $1 and direction = 'inbound'",
        )
        .await;
    assert_eq!(
        waiting, "pending:0",
        "kept for the retry with the agent's answer, the attempt not counted"
    );

    // The token is replaced: the retry sends the saved answer, without asking the agent again.
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
}

#[tokio::test]
async fn retell_wanting_payment_keeps_the_message_waiting_uncounted_and_it_is_answered_once_paid() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("hola", minutes(0)).await;
    bridge
        .retell
        .fail_next(CreateChatCompletion, RetellFault::PaymentRequired);
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(_)),
        "{disposition:?}"
    );
    let waiting = bridge
        .db_value(
            "select state || ':' || attempts from whatsapp_messages \
             where customer_key = $1 and direction = 'inbound'",
        )
        .await;
    assert_eq!(waiting, "pending:0");

    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
    assert_eq!(bridge.retell.chats()[0].contents("user"), ["hola"]);
}

#[tokio::test]
async fn a_turn_without_the_time_for_a_completion_is_put_back_before_retell_sees_it() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    bridge.customer_writes("hola", minutes(0)).await;
    let almost_over = shared::queue::Receipt {
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(3),
        ..shared::queue::Receipt::unqueued()
    };
    let disposition = engine.handle(job(&bridge), almost_over).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(ref retry) if retry.reason.contains("time")),
        "{disposition:?}"
    );
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
    assert_eq!(
        bridge
            .db_value(
                "select state || ':' || attempts from whatsapp_messages where customer_key = $1"
            )
            .await,
        "pending:0"
    );
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
}
