//! Voice notes: downloaded from the Graph stand-in, transcribed by the transcription stand-in,
//! merged in order with the customer's texts into one completion; their transcript kept on the
//! message so a retried turn never transcribes again; failures retried, then the polite reply.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sandbox::retell_standin::RetellOperation::{CreateChatCompletion, GetChat};
use sandbox::transcribe_standin::DEFAULT_TRANSCRIPT;
use sandbox::{RetellFault, TranscribeFault, TranscribeStandIn, VOICE_NOTE_OGG};
use shared::engine::TurnOutcome;
use shared::queue::{JobDisposition, JobHandler, Retry, TurnJob};

use crate::support::{Bridge, TestEngine, receipt};

const POLITE_REPLY: &str = "solo puedo leer mensajes de texto";

fn job(bridge: &Bridge) -> TurnJob {
    TurnJob::TakeTurn {
        customer_key: bridge.customer.clone(),
    }
}

/// The bridge's engine transcribing with `transcribe`.
fn engine(bridge: &Bridge, transcribe: &TranscribeStandIn) -> TestEngine {
    let config = transcribe.config();
    bridge.engine_configured(|worker| worker.transcribe = Some(config))
}

/// The transcription failures that may pass: a 500, a 429, an answer slower than the engine waits.
const PASSING_FAULTS: [TranscribeFault; 3] = [
    TranscribeFault::Status(500),
    TranscribeFault::Status(429),
    TranscribeFault::Slow(Duration::from_secs(2)),
];

/// A customer who has just sent a voice note, its transcription stand-in, and an engine that
/// gives up on a transcription after half a second (a `Slow` fault outlasts it).
async fn a_voice_note_waiting() -> (Bridge, TranscribeStandIn, TestEngine) {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    let mut config = transcribe.config();
    config.request_timeout = Duration::from_millis(500);
    let engine = bridge.engine_configured(|worker| worker.transcribe = Some(config));
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    (bridge, transcribe, engine)
}

fn ago(seconds: i64) -> chrono::DateTime<Utc> {
    Utc::now() - TimeDelta::seconds(seconds)
}

/// What the customer's inbound voice note holds in the database.
async fn stored_transcript(bridge: &Bridge) -> String {
    bridge
        .db_value(
            "select coalesce(body, '<none>') || ' | ' || state from whatsapp_messages \
             where customer_key = $1 and message_type = 'audio'",
        )
        .await
}

fn user_turns(bridge: &Bridge) -> Vec<String> {
    bridge
        .retell
        .chats()
        .iter()
        .flat_map(|chat| chat.contents("user"))
        .filter(|content| !content.is_empty())
        .collect()
}

#[tokio::test]
async fn a_voice_note_and_a_text_in_one_burst_are_one_completion_in_the_order_sent() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    bridge
        .customer_writes("Buenas tardes", TimeDelta::seconds(10))
        .await;
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;

    assert_eq!(
        engine(&bridge, &transcribe)
            .handle(job(&bridge), receipt())
            .await,
        JobDisposition::Done
    );
    assert_eq!(
        user_turns(&bridge),
        [format!("Buenas tardes\n[nota de voz] {DEFAULT_TRANSCRIPT}")],
        "one completion, the text first as it was sent first"
    );
    assert_eq!(bridge.retell.requests(CreateChatCompletion).len(), 1);
    assert_eq!(bridge.whatsapp_sent().len(), 1, "the reply goes out once");
    assert_eq!(
        stored_transcript(&bridge).await,
        format!("{DEFAULT_TRANSCRIPT} | answered"),
        "the dashboard shows what was understood"
    );
    // What the transcription API got: the real note, as a voice note, with the country's language.
    let requests = transcribe.requests();
    let [request] = requests.as_slice() else {
        panic!("one transcription: {requests:?}");
    };
    assert_eq!(request.bytes, VOICE_NOTE_OGG);
    assert_eq!(request.model, "whisper-1");
    assert_eq!(request.language.as_deref(), Some("es"), "a Mexican number");
    assert_eq!(request.file_name, "voice-note.ogg");
    assert_eq!(request.content_type, "audio/ogg");
    assert_eq!(request.response_format.as_deref(), Some("json"));
    assert_eq!(bridge.graph.media_downloads(), 1);
}

#[tokio::test]
async fn a_note_sent_before_a_text_leads_the_completion() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    transcribe.set_transcript("  ¿Cubre robo total?  ");
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(10))
        .await;
    bridge
        .customer_writes("Es un Versa 2021", TimeDelta::seconds(5))
        .await;
    let outcome = engine(&bridge, &transcribe)
        .take_turn(&bridge.customer)
        .await
        .unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { replies: 1, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        user_turns(&bridge),
        ["[nota de voz] ¿Cubre robo total?\nEs un Versa 2021"]
    );
}

#[tokio::test]
async fn a_turn_retried_after_the_transcription_does_not_transcribe_again() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    let engine = engine(&bridge, &transcribe);
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    bridge
        .retell
        .fail_next(CreateChatCompletion, RetellFault::ServerError);
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(_)),
        "{disposition:?}"
    );
    assert_eq!(
        stored_transcript(&bridge).await,
        format!("{DEFAULT_TRANSCRIPT} | pending"),
        "kept before the completion, put back for the retry"
    );

    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(transcribe.request_count(), 1, "transcribed once");
    assert_eq!(bridge.graph.media_downloads(), 1, "downloaded once");
    assert_eq!(
        user_turns(&bridge),
        [format!("[nota de voz] {DEFAULT_TRANSCRIPT}")]
    );
    assert_eq!(bridge.whatsapp_sent().len(), 1);
}

#[tokio::test]
async fn a_turn_that_died_after_retell_took_the_transcript_reads_it_back_and_sends_nothing_twice() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    bridge.customer_writes("Hola", TimeDelta::seconds(10)).await;
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    // Retell takes the completion and answers after the client (100 ms) gave up; reading the
    // chat back fails too: the turn ends unsure.
    bridge.retell.fail_next(
        CreateChatCompletion,
        RetellFault::SlowAnswer(Duration::from_millis(400)),
    );
    for _ in 0..3 {
        bridge.retell.fail_next(GetChat, RetellFault::ServerError);
    }
    let config = transcribe.config();
    let engine = bridge.engine_configured(|worker| {
        worker.transcribe = Some(config);
        worker.retell.completion_timeout = Duration::from_millis(100);
    });
    let disposition = engine.handle(job(&bridge), receipt()).await;
    assert!(
        matches!(disposition, JobDisposition::RetryLater(_)),
        "{disposition:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        bridge.retell.requests(CreateChatCompletion).len(),
        1,
        "the retry found the transcript's line in the chat: not sent again"
    );
    assert_eq!(
        user_turns(&bridge),
        [format!("Hola\n[nota de voz] {DEFAULT_TRANSCRIPT}")]
    );
    assert_eq!(transcribe.request_count(), 1);
    assert_eq!(bridge.whatsapp_sent().len(), 1, "the answer went out once");
}

#[tokio::test]
async fn a_transcription_that_fails_once_is_retried_by_the_queue() {
    for fault in PASSING_FAULTS {
        let (bridge, transcribe, engine) = a_voice_note_waiting().await;
        transcribe.fail_next(fault.clone());

        let disposition = engine.handle(job(&bridge), receipt()).await;
        let JobDisposition::RetryLater(Retry { not_before, .. }) = &disposition else {
            panic!("{fault:?}: {disposition:?}");
        };
        if fault == TranscribeFault::Status(429) {
            assert_eq!(*not_before, Some(Duration::from_secs(1)), "its retry-after");
        }
        assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
        assert!(
            bridge.whatsapp_sent().is_empty(),
            "{fault:?}: nothing said yet"
        );

        assert_eq!(
            engine.handle(job(&bridge), receipt()).await,
            JobDisposition::Done,
            "{fault:?}"
        );
        assert_eq!(
            user_turns(&bridge),
            [format!("[nota de voz] {DEFAULT_TRANSCRIPT}")],
            "{fault:?}"
        );
        assert_eq!(bridge.whatsapp_sent().len(), 1, "{fault:?}");
    }
}

#[tokio::test]
async fn a_transcription_failing_past_its_attempts_gets_the_polite_reply_once() {
    for fault in PASSING_FAULTS {
        let (bridge, transcribe, engine) = a_voice_note_waiting().await;
        for _ in 0..3 {
            transcribe.fail_next(fault.clone());
        }
        for attempt in 1..=2 {
            let disposition = engine.handle(job(&bridge), receipt()).await;
            assert!(
                matches!(disposition, JobDisposition::RetryLater(_)),
                "{fault:?}, attempt {attempt}: {disposition:?}"
            );
        }
        assert_eq!(
            engine.handle(job(&bridge), receipt()).await,
            JobDisposition::Done,
            "{fault:?}: TRANSCRIBE_ATTEMPTS (3) reached"
        );
        assert_eq!(transcribe.request_count(), 3, "{fault:?}");
        assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
        let sent = bridge.whatsapp_sent();
        assert_eq!(sent.len(), 1, "{fault:?}: {sent:?}");
        assert!(sent[0].1.contains(POLITE_REPLY), "{fault:?}: {sent:?}");
        assert_eq!(
            stored_transcript(&bridge).await,
            "<none> | answered",
            "{fault:?}"
        );
        assert_eq!(
            engine.handle(job(&bridge), receipt()).await,
            JobDisposition::Done
        );
        assert_eq!(bridge.whatsapp_sent().len(), 1, "{fault:?}: never twice");
    }
}

#[tokio::test]
async fn a_note_the_api_refuses_as_too_large_gets_the_polite_reply_at_once() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    transcribe.fail_next(TranscribeFault::Status(413));
    assert_eq!(
        engine(&bridge, &transcribe)
            .take_turn(&bridge.customer)
            .await
            .unwrap(),
        TurnOutcome::Acknowledged
    );
    assert_eq!(transcribe.request_count(), 1);
    let sent = bridge.whatsapp_sent();
    assert!(
        sent.len() == 1 && sent[0].1.contains(POLITE_REPLY),
        "{sent:?}"
    );
}

#[tokio::test]
async fn an_unheard_note_beside_a_text_reaches_the_agent_as_a_marker() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    bridge
        .customer_writes("Mira lo que te mandé", TimeDelta::seconds(10))
        .await;
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    transcribe.fail_next(TranscribeFault::Status(413));
    let outcome = engine(&bridge, &transcribe)
        .take_turn(&bridge.customer)
        .await
        .unwrap();
    assert!(
        matches!(outcome, TurnOutcome::Answered { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        user_turns(&bridge),
        ["Mira lo que te mandé\n[nota de voz sin transcribir]"]
    );
}

#[tokio::test]
async fn a_note_longer_than_allowed_is_not_sent_for_transcription() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    let seconds = sandbox::transcribe_standin::ogg_opus_seconds(VOICE_NOTE_OGG)
        .expect("the fixture is OGG/Opus");
    assert!(seconds >= 1.0, "{seconds}");
    let mut config = transcribe.config();
    config.max_duration = Duration::from_secs_f64(seconds) - Duration::from_millis(500);
    let engine = bridge.engine_configured(|worker| worker.transcribe = Some(config));
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    assert_eq!(transcribe.request_count(), 0);
    assert!(bridge.whatsapp_sent()[0].1.contains(POLITE_REPLY));
}

#[tokio::test]
async fn a_refused_transcription_key_waits_for_a_person_without_using_up_the_note() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    let engine = engine(&bridge, &transcribe);
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    for _ in 0..3 {
        transcribe.fail_next(TranscribeFault::Status(401));
    }
    for _ in 0..3 {
        let disposition = engine.handle(job(&bridge), receipt()).await;
        assert!(
            matches!(disposition, JobDisposition::RetryLater(ref retry) if retry.reason.contains("key")),
            "{disposition:?}"
        );
    }
    assert!(
        bridge.whatsapp_sent().is_empty(),
        "no polite reply for our own fault"
    );
    // The key is fixed: the note is heard.
    assert_eq!(
        engine.handle(job(&bridge), receipt()).await,
        JobDisposition::Done
    );
    assert_eq!(
        user_turns(&bridge),
        [format!("[nota de voz] {DEFAULT_TRANSCRIPT}")]
    );
}

#[tokio::test]
async fn without_a_transcriber_a_voice_note_gets_the_polite_reply_as_before() {
    let bridge = Bridge::new();
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    assert_eq!(
        bridge.engine().take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Acknowledged
    );
    assert_eq!(bridge.graph.media_downloads(), 0, "not even downloaded");
    assert!(bridge.retell.requests(CreateChatCompletion).is_empty());
    let sent = bridge.whatsapp_sent();
    assert!(
        sent.len() == 1 && sent[0].1.contains(POLITE_REPLY),
        "{sent:?}"
    );
}

#[tokio::test]
async fn a_voice_note_held_while_staff_took_over_is_transcribed_for_them_and_heard_after() {
    let bridge = Bridge::new();
    let transcribe = TranscribeStandIn::start();
    let engine = engine(&bridge, &transcribe);
    bridge
        .customer_sends_voice_note(VOICE_NOTE_OGG, ago(5))
        .await;
    bridge
        .db_execute("update chat_sessions set paused_until = now() + interval '1 hour' where customer_key = $1")
        .await;
    assert_eq!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Held
    );
    assert_eq!(
        stored_transcript(&bridge).await,
        format!("{DEFAULT_TRANSCRIPT} | held"),
        "staff read what the note said"
    );
    assert!(bridge.whatsapp_sent().is_empty() && user_turns(&bridge).is_empty());

    bridge
        .db_execute("update chat_sessions set paused_until = now() - interval '1 second' where customer_key = $1")
        .await;
    bridge
        .customer_writes("¿Me oíste?", TimeDelta::zero())
        .await;
    assert!(matches!(
        engine.take_turn(&bridge.customer).await.unwrap(),
        TurnOutcome::Answered { .. }
    ));
    assert_eq!(
        user_turns(&bridge),
        [format!(
            "[Cliente] [nota de voz] {DEFAULT_TRANSCRIPT}\n¿Me oíste?"
        )]
    );
    assert_eq!(
        transcribe.request_count(),
        1,
        "transcribed once, while held"
    );
}
