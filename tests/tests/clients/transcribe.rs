//! Our side of voice notes against the stand-ins: the Graph client downloads a customer's media
//! (the URL, then the bytes, the token on both, no further than the limit), and the
//! transcription client posts the note as OpenAI's API takes it and reads its answers and errors.

use std::time::Duration;

use sandbox::transcribe_standin::{DEFAULT_TRANSCRIPT, VOICE_NOTE_MIME_TYPE};
use sandbox::{GraphFault, GraphStandIn, TranscribeFault, TranscribeStandIn, VOICE_NOTE_OGG};
use shared::domain::AccountProblem;
use shared::messenger::{Messenger, MessengerError};
use shared::transcribe::{TranscribeError, Transcriber, ogg_opus_duration};
use shared::whatsapp::GraphClient;

use crate::FAST_RETRIES;

fn graph_client(graph: &GraphStandIn) -> GraphClient {
    GraphClient::new(&graph.config(), shared::http::client())
        .with_retry_policy(FAST_RETRIES, Duration::from_millis(1))
}

fn transcriber(config: shared::config::TranscribeConfig) -> Transcriber {
    Transcriber::new(&config, shared::http::client())
}

async fn transcribe(transcriber: &Transcriber) -> Result<String, TranscribeError> {
    transcriber
        .transcribe(VOICE_NOTE_OGG, VOICE_NOTE_MIME_TYPE, Some("es"))
        .await
}

#[tokio::test]
async fn a_voice_note_is_downloaded_whole_with_its_type() {
    let graph = GraphStandIn::start();
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    let media = graph_client(&graph)
        .fetch_media(&media_id, 16 * 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(media.bytes, VOICE_NOTE_OGG);
    assert_eq!(media.mime_type, VOICE_NOTE_MIME_TYPE);
    assert_eq!(graph.media_downloads(), 1);
}

#[tokio::test]
async fn media_over_the_limit_is_not_downloaded() {
    let graph = GraphStandIn::start();
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    let error = graph_client(&graph)
        .fetch_media(&media_id, VOICE_NOTE_OGG.len() as u64 - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(error, MessengerError::MediaTooLarge { .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(graph.media_downloads(), 0, "refused by its announced size");
}

#[tokio::test]
async fn unknown_or_expired_media_is_the_notes_own_failure_and_a_hiccup_is_retried() {
    let graph = GraphStandIn::start();
    let client = graph_client(&graph);
    let error = client.fetch_media("9999999999", 1 << 20).await.unwrap_err();
    assert_eq!(error.code(), Some(100), "{error:?}");
    assert!(!error.is_transient() && error.account_problem().is_none());

    graph.set_media_url_ttl(Duration::ZERO);
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    let error = client.fetch_media(&media_id, 1 << 20).await.unwrap_err();
    assert!(
        matches!(error, MessengerError::Permanent(ref e) if e.status == 404),
        "{error:?}"
    );

    graph.set_media_url_ttl(Duration::from_secs(300));
    graph.fail_next_media(GraphFault::Code(131_000));
    let media = client.fetch_media(&media_id, 1 << 20).await.unwrap();
    assert_eq!(
        media.bytes, VOICE_NOTE_OGG,
        "Meta's temporary failure retried"
    );
    assert!(
        client.fetch_media("../etc", 1 << 20).await.is_err(),
        "not a media id"
    );
}

#[tokio::test]
async fn the_fixture_is_a_real_voice_note_within_the_default_limits() {
    let seconds = ogg_opus_duration(VOICE_NOTE_OGG).expect("OGG/Opus");
    assert!(seconds > Duration::from_millis(500) && seconds < Duration::from_secs(30));
    let expected = sandbox::transcribe_standin::ogg_opus_seconds(VOICE_NOTE_OGG).unwrap();
    assert!(
        (seconds.as_secs_f64() - expected).abs() < 0.01,
        "{seconds:?} vs the stand-in's {expected}"
    );
    let transcribe = TranscribeStandIn::start();
    assert!(
        transcriber(transcribe.config())
            .check_limits(VOICE_NOTE_OGG)
            .is_ok()
    );
}

#[tokio::test]
async fn a_voice_note_is_transcribed_as_openai_takes_it() {
    let transcribe = TranscribeStandIn::start();
    let text = transcribe_once(&transcribe).await.unwrap();
    assert_eq!(text, DEFAULT_TRANSCRIPT);
    let requests = transcribe.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].bytes, VOICE_NOTE_OGG);
    assert_eq!(requests[0].language.as_deref(), Some("es"));
    assert_eq!(requests[0].file_name, "voice-note.ogg");
}

async fn transcribe_once(transcribe: &TranscribeStandIn) -> Result<String, TranscribeError> {
    self::transcribe(&transcriber(transcribe.config())).await
}

#[tokio::test]
async fn each_failure_is_told_apart() {
    let transcribe = TranscribeStandIn::start();
    transcribe.fail_next(TranscribeFault::Status(500));
    let error = transcribe_once(&transcribe).await.unwrap_err();
    assert!(
        matches!(error, TranscribeError::Unavailable { status: 500, .. }),
        "{error:?}"
    );
    assert!(error.is_transient());

    transcribe.fail_next(TranscribeFault::Status(429));
    let error = transcribe_once(&transcribe).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));

    transcribe.fail_next(TranscribeFault::Status(413));
    let error = transcribe_once(&transcribe).await.unwrap_err();
    assert!(
        matches!(error, TranscribeError::Refused { status: 413, .. }),
        "{error:?}"
    );
    assert!(!error.is_transient() && error.account_problem().is_none());

    transcribe.fail_next(TranscribeFault::Status(401));
    let error = transcribe_once(&transcribe).await.unwrap_err();
    assert_eq!(
        error.account_problem(),
        Some(AccountProblem::TranscriptionKey)
    );

    transcribe.fail_next(TranscribeFault::OutOfCredit);
    let error = transcribe_once(&transcribe).await.unwrap_err();
    assert_eq!(
        error.account_problem(),
        Some(AccountProblem::TranscriptionBilling),
        "a 429 for credit is not a rate limit: {error:?}"
    );
    assert_eq!(error.retry_after(), None);

    let wrong_key = shared::config::TranscribeConfig {
        api_key: Some("sk-wrong".to_owned().into()),
        ..transcribe.config()
    };
    let error = self::transcribe(&transcriber(wrong_key)).await.unwrap_err();
    assert_eq!(
        error.account_problem(),
        Some(AccountProblem::TranscriptionKey),
        "{error:?}"
    );

    transcribe.fail_next(TranscribeFault::Slow(Duration::from_secs(2)));
    let slow = shared::config::TranscribeConfig {
        request_timeout: Duration::from_millis(300),
        ..transcribe.config()
    };
    let error = self::transcribe(&transcriber(slow)).await.unwrap_err();
    assert!(matches!(error, TranscribeError::Timeout), "{error:?}");
    assert!(error.is_transient());

    transcribe.set_transcript("   ");
    let error = transcribe_once(&transcribe).await.unwrap_err();
    assert!(matches!(error, TranscribeError::Empty), "{error:?}");
}
