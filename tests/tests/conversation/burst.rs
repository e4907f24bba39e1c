//! Messages that arrive while a turn is in flight wait for the next turn, through the queue.

use std::sync::Arc;
use std::time::Duration;

use sandbox::RetellFault;
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use shared::queue::{InProcessQueue, InProcessSettings, TurnJob, TurnQueue};
use shared::retry::RetrySchedule;

use crate::support::{Bridge, minutes};

#[tokio::test]
async fn four_messages_sent_during_a_turn_are_answered_together_in_the_next_one() {
    let bridge = Bridge::new();
    let settings = InProcessSettings {
        schedule: RetrySchedule::new(vec![Duration::from_millis(20)]),
        ..InProcessSettings::default()
    };
    let queue = InProcessQueue::new(Arc::new(bridge.engine()), settings);
    let job = TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    };

    // The agent takes its time over the first message.
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(300)),
    );
    let first = bridge.customer_writes("Hola", minutes(0)).await;
    queue.enqueue(&job, first.as_str()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bridge.retell.requests(CreateChatCompletion).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first turn never reached Retell"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Meanwhile the customer sends four more, each its own webhook and job.
    for text in ["quiero", "cotizar", "un seguro", "para mi moto"] {
        let wamid = bridge.customer_writes(text, minutes(0)).await;
        queue.enqueue(&job, wamid.as_str()).await.unwrap();
    }
    queue.idle().await;

    let completions: Vec<String> = bridge
        .retell
        .requests(CreateChatCompletion)
        .iter()
        .map(|r| r.body["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        completions,
        ["Hola", "quiero\ncotizar\nun seguro\npara mi moto"],
        "one following turn, in order"
    );
    let texts: Vec<String> = bridge.whatsapp_sent().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts,
        [
            "Recibido: Hola",
            "Recibido: quiero\ncotizar\nun seguro\npara mi moto"
        ]
    );
    assert!(queue.dead_letters().is_empty());
    let states = bridge
        .db_value("select string_agg(distinct state, ',') || ' ' || count(*) from whatsapp_messages where customer_key = $1 and direction = 'inbound'")
        .await;
    assert_eq!(states, "answered 5", "none dropped, none left waiting");
}
