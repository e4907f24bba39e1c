//! A person takes over and hands back: staff messages from the dashboard go out in the
//! customer's turn order and pause the agent, what the customer says meanwhile is held, and the
//! agent hears all of it, in order, in the first completion after the pause.

use std::sync::Arc;
use std::time::Duration;

use sandbox::retell_standin::RetellOperation::{CreateChatCompletion, GetChat};
use sandbox::{LocalStack, RetellFault};
use shared::engine::TurnOutcome;
use shared::queue::{
    InProcessQueue, InProcessSettings, JobDisposition, JobHandler, TurnJob, TurnQueue,
};
use shared::retry::RetrySchedule;

use crate::support::{Bridge, TestEngine, minutes, receipt};

/// Staff write to the customer as the Table Editor does: a row in `staff_messages`.
async fn staff_writes(bridge: &Bridge, text: &str) -> i64 {
    let db = LocalStack::shared().database().await.unwrap();
    db.query_one(
        "insert into staff_messages (customer_key, body) values ($1::text, $2::text) returning id",
        &[&bridge.customer.as_str(), &text],
    )
    .await
    .unwrap()
    .get(0)
}

fn staff_job(bridge: &Bridge, id: i64) -> TurnJob {
    TurnJob::SendStaffMessage {
        customer_key: bridge.customer.clone(),
        staff_message_id: id,
    }
}

/// The job the Database Webhook's delivery queues, run as the worker runs it.
async fn send_staff(engine: &TestEngine, bridge: &Bridge, id: i64) -> JobDisposition {
    engine.handle(staff_job(bridge, id), receipt()).await
}

fn completions(bridge: &Bridge) -> Vec<String> {
    bridge
        .retell
        .requests(CreateChatCompletion)
        .iter()
        .filter(|r| r.status < 300)
        .map(|r| r.body["content"].as_str().unwrap().to_owned())
        .collect()
}

fn texts_sent(bridge: &Bridge) -> Vec<String> {
    bridge.whatsapp_sent().into_iter().map(|(_, t)| t).collect()
}

async fn paused(bridge: &Bridge) -> bool {
    bridge
        .db_value("select coalesce(paused_until > now(), false)::text from chat_sessions where customer_key = $1")
        .await
        == "true"
}

async fn resume(bridge: &Bridge) {
    bridge
        .db_value("select resume_conversation($1)::text")
        .await;
}

/// The customer says hello and the agent answers: the conversation the staff step into.
async fn a_conversation(bridge: &Bridge, engine: &TestEngine) {
    bridge.customer_writes("Hola", minutes(0)).await;
    assert!(matches!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Answered { .. }
    ));
}

#[tokio::test]
async fn staff_take_over_and_hand_back_and_the_agent_hears_what_was_said_in_order() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    a_conversation(&bridge, &engine).await;

    let id = staff_writes(&bridge, "Soy Marta, del equipo. Te ayudo yo.").await;
    assert_eq!(send_staff(&engine, &bridge, id).await, JobDisposition::Done);
    assert_eq!(
        texts_sent(&bridge),
        ["Recibido: Hola", "Soy Marta, del equipo. Te ayudo yo."]
    );
    assert!(
        paused(&bridge).await,
        "the staff's message paused the agent"
    );
    let recorded = bridge
        .db_value(
            "select s.status || ' ' || m.author || ' ' || m.delivery_status from staff_messages s \
             join whatsapp_messages m on m.wamid = s.wamid where s.customer_key = $1",
        )
        .await;
    assert_eq!(recorded, "sent staff accepted");

    // The customer writes twice: nobody answers, nothing is lost.
    for text in ["¿Cuánto cuesta?", "¿Y con cobertura amplia?"] {
        bridge.customer_writes(text, minutes(0)).await;
        assert_eq!(
            engine.take_turn(&bridge.customer).await.unwrap(),
            TurnOutcome::Held
        );
    }
    assert_eq!(texts_sent(&bridge).len(), 2, "no agent reply while paused");
    assert_eq!(completions(&bridge), ["Hola"], "the agent heard nothing");
    let held = bridge
        .db_value("select count(*)::text from whatsapp_messages where customer_key = $1 and state = 'held'")
        .await;
    assert_eq!(held, "2");

    // Staff hand back; the customer's next message gets an answer that knows what happened.
    resume(&bridge).await;
    assert!(!paused(&bridge).await);
    bridge.customer_writes("Ok, gracias", minutes(0)).await;
    assert!(matches!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Answered { .. }
    ));
    let carried = "[Equipo] Soy Marta, del equipo. Te ayudo yo.\n\
                   [Cliente] ¿Cuánto cuesta?\n\
                   [Cliente] ¿Y con cobertura amplia?\n\
                   Ok, gracias";
    assert_eq!(completions(&bridge), ["Hola", carried]);
    assert_eq!(
        texts_sent(&bridge).last().unwrap(),
        &format!("Recibido: {carried}")
    );
    let chat = &bridge.retell.chats()[0];
    assert_eq!(
        chat.contents("user"),
        ["Hola", carried],
        "the chat's transcript shows it"
    );
    let states = bridge
        .db_value("select string_agg(distinct state, ',') from whatsapp_messages where customer_key = $1 and direction = 'inbound'")
        .await;
    assert_eq!(
        states, "answered",
        "the held messages were given to the agent"
    );

    // Told once: the next turn is the customer's words alone.
    bridge
        .customer_writes("¿Me mandas la póliza?", minutes(0))
        .await;
    engine.take_turn(&bridge.customer).await.unwrap();
    assert_eq!(
        completions(&bridge).last().unwrap(),
        "¿Me mandas la póliza?"
    );
}

#[tokio::test]
async fn a_turn_with_context_that_died_after_retell_took_it_is_answered_from_the_chat() {
    let bridge = Bridge::new();
    let engine = bridge.engine_with_completion_timeout(Duration::from_millis(100));
    a_conversation(&bridge, &engine).await;
    let id = staff_writes(&bridge, "Te escribe Marta").await;
    send_staff(&engine, &bridge, id).await;
    resume(&bridge).await;

    bridge.customer_writes("¿Sigues ahí?", minutes(0)).await;
    // Retell takes the completion and answers after the client gave up; the read-back fails.
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(400)),
    );
    for _ in 0..3 {
        bridge.retell.fail_next(GetChat, RetellFault::ServerError);
    }
    let take_turn = TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    };
    assert!(matches!(
        engine.handle(take_turn.clone(), receipt()).await,
        JobDisposition::RetryLater(_)
    ));
    assert_eq!(
        engine.handle(take_turn, receipt()).await,
        JobDisposition::Done
    );
    let carried = "[Equipo] Te escribe Marta\n¿Sigues ahí?";
    assert_eq!(
        bridge.retell.chats()[0].contents("user"),
        ["Hola", carried],
        "the agent heard it once, context and all"
    );
    assert_eq!(
        texts_sent(&bridge).last().unwrap(),
        &format!("Recibido: {carried}")
    );
}

#[tokio::test]
async fn a_staff_message_written_during_a_turn_goes_out_after_its_replies() {
    let bridge = Bridge::new();
    let settings = InProcessSettings {
        schedule: RetrySchedule::new(vec![Duration::from_millis(20)]),
        ..InProcessSettings::default()
    };
    let engine = Arc::new(bridge.engine());
    let queue = InProcessQueue::new(engine.clone(), settings);

    // The agent takes its time.
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(300)),
    );
    let wamid = bridge.customer_writes("Hola", minutes(0)).await;
    let take_turn = TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    };
    queue.enqueue(&take_turn, wamid.as_str()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bridge.retell.requests(CreateChatCompletion).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the turn never reached Retell"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Meanwhile staff write, and another worker (not the queue's group) runs the job at once:
    // the turn holds the customer, so it waits for the lease.
    let id = staff_writes(&bridge, "Hola, soy Marta").await;
    let disposition = engine.handle(staff_job(&bridge, id), receipt()).await;
    assert!(
        matches!(&disposition, JobDisposition::RetryLater(retry) if retry.not_before.is_some()),
        "{disposition:?}"
    );
    // The Database Webhook's job, through the queue: after the turn.
    queue
        .enqueue(&staff_job(&bridge, id), &format!("staff:{id}"))
        .await
        .unwrap();
    queue.idle().await;

    assert_eq!(texts_sent(&bridge), ["Recibido: Hola", "Hola, soy Marta"]);
    assert!(queue.dead_letters().is_empty());
}

#[tokio::test]
async fn a_staff_message_delivered_twice_is_sent_once() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    a_conversation(&bridge, &engine).await;
    let id = staff_writes(&bridge, "Un momento, por favor").await;
    assert_eq!(send_staff(&engine, &bridge, id).await, JobDisposition::Done);
    // The webhook's repeat, and the sweeper's, after the first was sent.
    assert_eq!(
        engine
            .send_staff_message(&bridge.customer, id)
            .await
            .unwrap(),
        shared::engine::StaffOutcome::NotClaimed
    );
    assert_eq!(send_staff(&engine, &bridge, id).await, JobDisposition::Done);
    assert_eq!(
        texts_sent(&bridge),
        ["Recibido: Hola", "Un momento, por favor"]
    );
}

#[tokio::test]
async fn outside_the_24_hour_window_a_staff_message_is_refused_with_the_reason() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    a_conversation(&bridge, &engine).await;
    bridge
        .db_execute("update chat_sessions set last_inbound_at = now() - interval '25 hours' where customer_key = $1")
        .await;
    let id = staff_writes(&bridge, "¿Sigues interesado?").await;
    assert_eq!(send_staff(&engine, &bridge, id).await, JobDisposition::Done);
    assert_eq!(texts_sent(&bridge), ["Recibido: Hola"], "nothing went out");
    let row = bridge
        .db_value(
            "select status || ': ' || status_reason from staff_messages where customer_key = $1",
        )
        .await;
    assert_eq!(row, format!("refused: {}", shared::engine::OUTSIDE_WINDOW));
}

#[tokio::test]
async fn a_pause_ends_by_itself_and_the_agent_answers_knowing_what_staff_said() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    a_conversation(&bridge, &engine).await;
    let id = staff_writes(&bridge, "Te llamo en 5 minutos").await;
    send_staff(&engine, &bridge, id).await;
    bridge.customer_writes("Va", minutes(0)).await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Held
    );

    // The pause's time runs out; nobody resumed.
    bridge
        .db_execute("update chat_sessions set paused_until = now() - interval '1 second' where customer_key = $1")
        .await;
    bridge.customer_writes("¿Hola?", minutes(0)).await;
    assert!(matches!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Answered { .. }
    ));
    assert_eq!(
        completions(&bridge).last().unwrap(),
        "[Equipo] Te llamo en 5 minutos\n[Cliente] Va\n¿Hola?"
    );
}

#[tokio::test]
async fn a_customer_who_opted_out_gets_no_staff_message_either() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    a_conversation(&bridge, &engine).await;
    bridge.customer_writes("BAJA", minutes(0)).await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    let id = staff_writes(&bridge, "¿Seguro que no quieres la cotización?").await;
    assert_eq!(send_staff(&engine, &bridge, id).await, JobDisposition::Done);
    assert_eq!(
        texts_sent(&bridge).len(),
        2,
        "the answer and the confirmation only"
    );
    let row = bridge
        .db_value(
            "select status || ': ' || status_reason from staff_messages where customer_key = $1",
        )
        .await;
    assert_eq!(row, format!("refused: {}", shared::engine::OPTED_OUT));
}

#[tokio::test]
async fn a_staff_message_whatsapp_could_not_take_for_now_is_retried_and_sent_once() {
    let bridge = Bridge::new();
    let engine = bridge.engine();
    a_conversation(&bridge, &engine).await;
    let id = staff_writes(&bridge, "Ya te llamo").await;
    for _ in 0..3 {
        bridge.graph.fail_next(sandbox::GraphFault::Code(131_000));
    }
    let disposition = send_staff(&engine, &bridge, id).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(_)),
        "{disposition:?}"
    );
    let row = bridge
        .db_value("select status from staff_messages where customer_key = $1")
        .await;
    assert_eq!(row, "queued", "put back for the retry, not left being sent");
    assert_eq!(send_staff(&engine, &bridge, id).await, JobDisposition::Done);
    assert_eq!(texts_sent(&bridge), ["Recibido: Hola", "Ya te llamo"]);
}
