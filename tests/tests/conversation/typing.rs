//! "Typing…" while the agent thinks: shown at the start of the turn, renewed while the
//! transcription and the completion run (WhatsApp drops it after 25 s), never after the reply.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use sandbox::retell_standin::RetellOperation::CreateChatCompletion;
use sandbox::{GraphFault, RetellFault, TranscribeFault, TranscribeStandIn, VOICE_NOTE_OGG};
use shared::engine::TurnOutcome;

use crate::support::{Bridge, TestEngine};

const RENEWAL: Duration = Duration::from_millis(100);

fn engine(bridge: &Bridge, transcribe: Option<&TranscribeStandIn>) -> TestEngine {
    let transcribe = transcribe.map(TranscribeStandIn::config);
    bridge.engine_configured(|worker| {
        worker.engine.typing_renewal = RENEWAL;
        worker.transcribe = transcribe;
    })
}

/// When each read receipt arrived; each one shows "typing…" for the customer's last message.
fn typing_at(bridge: &Bridge, last: &str) -> Vec<Instant> {
    bridge
        .graph
        .read_receipts_at()
        .into_iter()
        .map(|(receipt, at)| {
            assert_eq!(receipt["message_id"], last, "{receipt}");
            assert_eq!(receipt["typing_indicator"]["type"], "text", "{receipt}");
            at
        })
        .collect()
}

#[tokio::test]
async fn typing_is_renewed_during_a_slow_completion_and_never_after_the_reply() {
    let bridge = Bridge::new();
    let last = bridge
        .customer_writes("¿Qué cubre?", TimeDelta::zero())
        .await;
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(1500)),
    );
    let outcome = engine(&bridge, None)
        .take_turn(&bridge.customer)
        .await
        .unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { .. }),
        "{outcome:?}"
    );
    let replies = bridge.graph.accepted();
    let [reply] = replies.as_slice() else {
        panic!("one reply: {replies:?}");
    };
    let typing = typing_at(&bridge, last.as_str());
    assert!(
        typing.len() >= 4,
        "the start and a renewal every 100 ms of a 1.5 s completion (a loaded machine may \
         take a while over each): {}",
        typing.len()
    );
    assert!(
        typing.iter().all(|at| *at < reply.accepted_at),
        "every typing indicator came before the reply"
    );
    tokio::time::sleep(RENEWAL * 3).await;
    assert_eq!(
        bridge.graph.read_receipts_at().len(),
        typing.len(),
        "and none after it"
    );
}

#[tokio::test]
async fn a_quick_answer_gets_the_one_typing_indicator_of_the_start() {
    let bridge = Bridge::new();
    let last = bridge.customer_writes("hola", TimeDelta::zero()).await;
    let engine = bridge.engine_configured(|worker| {
        worker.engine.typing_renewal = Duration::from_secs(5);
    });
    engine.take_turn(&bridge.customer).await.unwrap();
    assert_eq!(typing_at(&bridge, last.as_str()).len(), 1);
}

#[tokio::test]
async fn typing_is_renewed_while_a_voice_note_is_transcribed() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    let last = bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, Utc::now())
        .await;
    transcribe.fail_next(TranscribeFault::Slow(Duration::from_millis(1000)));
    let outcome = engine(&bridge, Some(&transcribe))
        .take_turn(&bridge.customer)
        .await
        .unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { .. }),
        "{outcome:?}"
    );
    let reply_at = bridge.graph.accepted()[0].accepted_at;
    let typing = typing_at(&bridge, last.as_str());
    assert!(typing.len() >= 3, "{}", typing.len());
    assert!(typing.iter().all(|at| *at < reply_at));
}

#[tokio::test]
async fn a_renewal_that_fails_does_not_fail_the_turn() {
    let bridge = Bridge::new();
    bridge
        .customer_writes("¿Qué cubre?", TimeDelta::zero())
        .await;
    // The start's receipt and the first renewal are refused for good.
    bridge.graph.fail_next_read_receipt(GraphFault::Code(100));
    bridge.graph.fail_next_read_receipt(GraphFault::Code(100));
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(350)),
    );
    let outcome = engine(&bridge, None)
        .take_turn(&bridge.customer)
        .await
        .unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { .. }),
        "{outcome:?}"
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
}
