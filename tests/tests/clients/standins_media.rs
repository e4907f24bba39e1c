//! The stand-ins behind voice notes, driven over HTTP as a client would (bodies built by hand, so
//! that a mistake our client never makes can be sent): the transcription stand-in and the Graph
//! stand-in's media. What they refuse and answer is what the bridge's tests rely on.

use std::time::{Duration, Instant};

use sandbox::graph_standin::{ACCESS_TOKEN, API_VERSION, PHONE_NUMBER_ID};
use sandbox::schema::{ApiSpec, validate};
use sandbox::transcribe_standin::{API_KEY, DEFAULT_TRANSCRIPT, VOICE_NOTE_MIME_TYPE};
use sandbox::{GraphFault, GraphStandIn, TranscribeFault, TranscribeStandIn, VOICE_NOTE_OGG};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BOUNDARY: &str = "standinboundary7MA4YWxkTrZu0gW";

/// A part of a multipart form: a text field, or a file (name, file name, content type, bytes).
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a str, &'a [u8]),
}

fn form(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}")
                        .as_bytes(),
                );
            }
            Part::File(name, file_name, content_type, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// What the bridge sends: the fixture, `model`, `language`, `response_format=json`.
fn voice_note_form() -> Vec<u8> {
    form(&[
        Part::File(
            "file",
            "voice-note.ogg",
            VOICE_NOTE_MIME_TYPE,
            VOICE_NOTE_OGG,
        ),
        Part::Text("model", "whisper-1"),
        Part::Text("language", "es"),
        Part::Text("response_format", "json"),
    ])
}

async fn transcribe(
    standin: &TranscribeStandIn,
    token: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/audio/transcriptions", standin.config().url))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The status and the JSON body, checked to be OpenAI's error object.
async fn openai_error(answer: reqwest::Response) -> (u16, Value) {
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap();
    validate(ApiSpec::openai().schema("ErrorResponse"), &body)
        .unwrap_or_else(|v| panic!("{status} {body}: {v:?}"));
    (status, body)
}

#[tokio::test]
async fn a_voice_note_is_transcribed_in_the_documented_shape() {
    let standin = TranscribeStandIn::start();
    let config = standin.config();
    assert!(config.url.ends_with("/v1"), "{}", config.url);
    assert_eq!(config.model, "whisper-1");
    assert!(config.api_key.is_some());

    let answer = transcribe(&standin, Some(API_KEY), voice_note_form()).await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    validate(
        ApiSpec::openai().schema("CreateTranscriptionResponseJson"),
        &body,
    )
    .unwrap();
    assert_eq!(body["text"], DEFAULT_TRANSCRIPT);
    // The fixture's 3.02 s, billed by the second.
    assert_eq!(body["usage"], json!({ "type": "duration", "seconds": 4.0 }));

    let requests = standin.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].model, "whisper-1");
    assert_eq!(requests[0].language.as_deref(), Some("es"));
    assert_eq!(requests[0].file_name, "voice-note.ogg");
    assert_eq!(requests[0].content_type, VOICE_NOTE_MIME_TYPE);
    assert_eq!(requests[0].bytes, VOICE_NOTE_OGG);
    assert_eq!(requests[0].response_format.as_deref(), Some("json"));

    standin.set_transcript("Otra cosa");
    let answer = transcribe(&standin, Some(API_KEY), voice_note_form()).await;
    assert_eq!(answer.json::<Value>().await.unwrap()["text"], "Otra cosa");
    assert_eq!(standin.request_count(), 2);
    let (time, requests) = standin.service_time();
    assert_eq!(requests, 2);
    assert!(time > Duration::ZERO);
}

#[tokio::test]
async fn the_bearer_token_is_required() {
    let standin = TranscribeStandIn::start();
    let (status, body) = openai_error(transcribe(&standin, None, voice_note_form()).await).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("didn't provide an API key")
    );
    let (status, body) =
        openai_error(transcribe(&standin, Some("sk-wrong"), voice_note_form()).await).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(standin.requests().is_empty());
    assert_eq!(standin.request_count(), 2);
}

#[tokio::test]
async fn requests_the_spec_does_not_allow_are_refused() {
    let standin = TranscribeStandIn::start();
    let file = Part::File(
        "file",
        "voice-note.ogg",
        VOICE_NOTE_MIME_TYPE,
        VOICE_NOTE_OGG,
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an unknown field",
            form(&[
                Part::File(
                    "file",
                    "voice-note.ogg",
                    VOICE_NOTE_MIME_TYPE,
                    VOICE_NOTE_OGG,
                ),
                Part::Text("model", "whisper-1"),
                Part::Text("lang", "es"),
            ]),
            "'lang' was unexpected",
        ),
        (
            "no model",
            form(&[Part::File("file", "a.ogg", "audio/ogg", VOICE_NOTE_OGG)]),
            "\"model\" is a required property",
        ),
        (
            "no file",
            form(&[Part::Text("model", "whisper-1")]),
            "\"file\" is a required property",
        ),
        (
            "the file as a text field",
            form(&[
                Part::Text("file", "voice-note.ogg"),
                Part::Text("model", "whisper-1"),
            ]),
            "'file' must be a file upload",
        ),
        (
            "a response format the spec lacks",
            form(&[
                file,
                Part::Text("model", "whisper-1"),
                Part::Text("response_format", "xml"),
            ]),
            "/response_format",
        ),
        (
            "a temperature that is not a number",
            form(&[
                Part::File("file", "a.ogg", "audio/ogg", VOICE_NOTE_OGG),
                Part::Text("model", "whisper-1"),
                Part::Text("temperature", "warm"),
            ]),
            "/temperature",
        ),
        (
            "a language that is not ISO-639-1",
            form(&[
                Part::File("file", "a.ogg", "audio/ogg", VOICE_NOTE_OGG),
                Part::Text("model", "whisper-1"),
                Part::Text("language", "spanish"),
            ]),
            "ISO-639-1",
        ),
        (
            "an empty file",
            form(&[
                Part::File("file", "a.ogg", "audio/ogg", b""),
                Part::Text("model", "whisper-1"),
            ]),
            "Invalid file format",
        ),
        (
            "a picture",
            form(&[
                Part::File(
                    "file",
                    "a.ogg",
                    "audio/ogg",
                    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                ),
                Part::Text("model", "whisper-1"),
            ]),
            "Invalid file format",
        ),
    ];
    for (case, body, expected) in cases {
        let (status, error) = openai_error(transcribe(&standin, Some(API_KEY), body).await).await;
        assert_eq!(status, 400, "{case}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{case}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{case}: {message}");
    }
    // Not multipart at all.
    let answer = reqwest::Client::new()
        .post(format!("{}/audio/transcriptions", standin.config().url))
        .bearer_auth(API_KEY)
        .json(&json!({ "model": "whisper-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(openai_error(answer).await.0, 400);
    assert!(standin.requests().is_empty());

    // Fields the spec has, as OpenAI's clients send them, pass: numbers, booleans, arrays.
    let answer = transcribe(
        &standin,
        Some(API_KEY),
        form(&[
            Part::File("file", "a.ogg", "audio/ogg", VOICE_NOTE_OGG),
            Part::Text("model", "gpt-4o-transcribe"),
            Part::Text("temperature", "0.2"),
            Part::Text("stream", "false"),
            Part::Text("include[]", "logprobs"),
            Part::Text("prompt", "Seguros"),
        ]),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(standin.requests().len(), 1);
}

#[tokio::test]
async fn each_fault_answers_its_status_and_openai_error() {
    let standin = TranscribeStandIn::start();
    for status in [401, 413, 429, 500] {
        standin.fail_next(TranscribeFault::Status(status));
    }
    for expected in [401, 413, 429, 500] {
        let answer = transcribe(&standin, Some(API_KEY), voice_note_form()).await;
        let retry_after = answer
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, body) = openai_error(answer).await;
        assert_eq!(status, expected, "{body}");
        match expected {
            429 => {
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            }
            _ => assert_eq!(retry_after, None, "{expected}"),
        }
        if expected == 500 {
            assert_eq!(body["error"]["type"], "server_error");
        }
    }
    // Used up, in order: the next one is transcribed.
    let answer = transcribe(&standin, Some(API_KEY), voice_note_form()).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(standin.request_count(), 5);
    assert_eq!(standin.requests().len(), 1);
}

#[tokio::test]
async fn a_slow_answer_is_work_done_and_answered_late() {
    let standin = TranscribeStandIn::start();
    standin.fail_next(TranscribeFault::Slow(Duration::from_millis(2000)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer = impatient
        .post(format!("{}/audio/transcriptions", standin.config().url))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .bearer_auth(API_KEY)
        .body(voice_note_form())
        .send()
        .await;
    assert!(answer.unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_millis(2000));
    // Transcribed all the same: a retry would be a second transcription.
    assert_eq!(standin.requests().len(), 1);

    standin.fail_next(TranscribeFault::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let answer = transcribe(&standin, Some(API_KEY), voice_note_form()).await;
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

// ---------------------------------------------------------------- the Graph stand-in's media

fn media_lookup_url(graph: &GraphStandIn, media_id: &str) -> String {
    format!("{}/{API_VERSION}/{media_id}", graph.config().graph_url)
}

async fn lookup(graph: &GraphStandIn, media_id: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(media_lookup_url(graph, media_id));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn download(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn media_is_found_by_id_then_downloaded_with_the_token() {
    let graph = GraphStandIn::start();
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    assert!(media_id.bytes().all(|b| b.is_ascii_digit()), "{media_id}");
    assert_ne!(
        graph.add_media(b"x".to_vec(), "image/jpeg"),
        media_id,
        "one id per media"
    );

    let answer = lookup(&graph, &media_id, Some(ACCESS_TOKEN)).await;
    assert_eq!(answer.status(), 200);
    let found: Value = answer.json().await.unwrap();
    ApiSpec::whatsapp()
        .operation("retrieveMediaUrl")
        .validate_response(200, &found)
        .unwrap();
    assert_eq!(found["id"], media_id.as_str());
    assert_eq!(found["messaging_product"], "whatsapp");
    assert_eq!(found["mime_type"], VOICE_NOTE_MIME_TYPE);
    assert_eq!(found["file_size"], VOICE_NOTE_OGG.len().to_string());
    assert_eq!(
        found["sha256"],
        hex::encode(Sha256::digest(VOICE_NOTE_OGG)).as_str()
    );
    // The same media lookup with the phone number it came to.
    let answer = reqwest::Client::new()
        .get(media_lookup_url(&graph, &media_id))
        .query(&[("phone_number_id", PHONE_NUMBER_ID)])
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let url = found["url"].as_str().unwrap();
    let bytes = download(url, Some(ACCESS_TOKEN)).await;
    assert_eq!(bytes.status(), 200);
    assert_eq!(
        bytes.headers()["content-type"].to_str().unwrap(),
        VOICE_NOTE_MIME_TYPE
    );
    assert_eq!(bytes.bytes().await.unwrap(), VOICE_NOTE_OGG);
    assert_eq!(graph.media_downloads(), 1);
}

#[tokio::test]
async fn media_needs_the_access_token() {
    let graph = GraphStandIn::start();
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    let answer = lookup(&graph, &media_id, None).await;
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.json::<Value>().await.unwrap()["error"]["code"], 190);
    let answer = lookup(&graph, &media_id, Some("EAAGwrong")).await;
    assert_eq!(answer.status(), 401);

    let found: Value = lookup(&graph, &media_id, Some(ACCESS_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let url = found["url"].as_str().unwrap();
    // A plain GET of the URL, as a browser would: no media.
    assert_eq!(download(url, None).await.status(), 401);
    assert_eq!(download(url, Some("EAAGwrong")).await.status(), 401);
    assert_eq!(graph.media_downloads(), 0);
    assert_eq!(download(url, Some(ACCESS_TOKEN)).await.status(), 200);
    assert_eq!(graph.media_downloads(), 1);
}

#[tokio::test]
async fn unknown_media_is_graph_error_100() {
    let graph = GraphStandIn::start();
    let answer = lookup(&graph, "1234567890", Some(ACCESS_TOKEN)).await;
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], 100);
    assert!(
        body["error"]["error_data"]["details"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{body}"
    );
    // Media that came to another number.
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    let answer = reqwest::Client::new()
        .get(media_lookup_url(&graph, &media_id))
        .query(&[("phone_number_id", "999")])
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    // A URL never handed out.
    let url = format!("{}/media-download/nope", graph.config().graph_url);
    assert_eq!(download(&url, Some(ACCESS_TOKEN)).await.status(), 404);
}

#[tokio::test]
async fn media_urls_expire_and_a_new_lookup_gives_a_working_one() {
    let graph = GraphStandIn::start();
    graph.set_media_url_ttl(Duration::from_millis(200));
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    let url_of = |found: Value| found["url"].as_str().unwrap().to_owned();
    let first = url_of(
        lookup(&graph, &media_id, Some(ACCESS_TOKEN))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_eq!(download(&first, Some(ACCESS_TOKEN)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(download(&first, Some(ACCESS_TOKEN)).await.status(), 404);
    let second = url_of(
        lookup(&graph, &media_id, Some(ACCESS_TOKEN))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert_ne!(first, second, "each lookup hands out its own URL");
    assert_eq!(download(&second, Some(ACCESS_TOKEN)).await.status(), 200);
    assert_eq!(graph.media_downloads(), 2);
}

#[tokio::test]
async fn a_media_fault_is_the_lookups_alone() {
    let graph = GraphStandIn::start();
    let media_id = graph.add_media(VOICE_NOTE_OGG.to_vec(), VOICE_NOTE_MIME_TYPE);
    graph.fail_next_media(GraphFault::Code(131_000));
    graph.fail_next_media(GraphFault::SlowAnswer(Duration::from_millis(300)));

    // A send in between is not the media's: it goes through.
    let send = reqwest::Client::new()
        .post(format!(
            "{}/{API_VERSION}/{PHONE_NUMBER_ID}/messages",
            graph.config().graph_url
        ))
        .bearer_auth(ACCESS_TOKEN)
        .json(
            &json!({ "messaging_product": "whatsapp", "to": "+5215512345678",
                       "type": "text", "text": { "body": "hola" } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 200);

    let answer = lookup(&graph, &media_id, Some(ACCESS_TOKEN)).await;
    assert_eq!(answer.status(), 500);
    assert_eq!(
        answer.json::<Value>().await.unwrap()["error"]["code"],
        131_000
    );
    let started = Instant::now();
    let answer = lookup(&graph, &media_id, Some(ACCESS_TOKEN)).await;
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(graph.accepted().len(), 1);
}

/// The media route (`/<version>/<id>`) next to the send route (`/<version>/<number>/messages`):
/// each request reaches its own, a username user is sent to by `recipient`, and read receipts
/// are kept with when they came.
#[tokio::test]
async fn sends_still_route_and_read_receipts_carry_their_time() {
    let graph = GraphStandIn::start();
    let messages = format!(
        "{}/{API_VERSION}/{PHONE_NUMBER_ID}/messages",
        graph.config().graph_url
    );
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(&messages)
            .bearer_auth(ACCESS_TOKEN)
            .json(&body)
            .send()
    };

    let answer = post(
        json!({ "messaging_product": "whatsapp", "recipient": "US.13491208655302741918",
                              "type": "text", "text": { "body": "hola" } }),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert_eq!(graph.accepted()[0].to, "US.13491208655302741918");
    // Neither `to` nor `recipient`.
    let answer = post(json!({ "messaging_product": "whatsapp", "type": "text",
                              "text": { "body": "hola" } }))
    .await
    .unwrap();
    assert_eq!(answer.status(), 400);

    let before = Instant::now();
    let answer = post(json!({ "messaging_product": "whatsapp", "status": "read",
                              "message_id": "wamid.X", "typing_indicator": { "type": "text" } }))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let receipts = graph.read_receipts_at();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].0["message_id"], "wamid.X");
    assert!(receipts[0].1 >= before && receipts[0].1 <= Instant::now());
    assert_eq!(graph.read_receipts(), vec![receipts[0].0.clone()]);

    // A GET of the send path is no media lookup.
    let answer = http
        .get(&messages)
        .bearer_auth(ACCESS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 405);
    assert_eq!(graph.media_downloads(), 0);
}
