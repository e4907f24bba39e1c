//! Voice notes as text: an OpenAI-compatible transcription API (`POST <base>/audio/
//! transcriptions`, multipart), which OpenAI, Groq and self-hosted Whisper servers all serve.
//!
//! One request per note and no retry here: a failure that may pass fails the turn, and the
//! queue retries it in seconds (the engine gives up on the note after `TRANSCRIBE_ATTEMPTS`).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::TranscribeConfig;
use crate::domain::{AccountProblem, Session};

/// The one sampling rate of Opus granule positions, whatever the recording's.
const OPUS_GRANULE_RATE: u64 = 48_000;

#[derive(Clone)]
pub struct Transcriber {
    endpoint: String,
    authorization: Option<HeaderValue>,
    model: String,
    language: Option<String>,
    client: reqwest::Client,
    request_timeout: Duration,
    max_bytes: u64,
    max_duration: Duration,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// 429: the API limits us (its `retry-after`, when it gave one).
    #[error("the transcription API is rate limiting us (HTTP 429)")]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx (and 408): trouble on the API's side.
    #[error("the transcription API is temporarily unavailable (HTTP {status}): {message}")]
    Unavailable { status: u16, message: String },
    #[error("the transcription API did not answer in time")]
    Timeout,
    #[error("could not connect to the transcription API: {0}")]
    Connect(String),
    /// 402, or OpenAI's 429 `insufficient_quota`: the account must pay; every note fails alike.
    #[error("the transcription API wants the account paid (HTTP {status}): {message}")]
    OutOfCredit { status: u16, message: String },
    /// 401/403: the key is wrong, revoked or may not use the model; every note fails alike.
    #[error("the transcription API refused our key (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Any other 4xx (413: too large; 400: a format it cannot read): this note cannot be heard.
    #[error("the transcription API refused the voice note (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the voice note has {bytes} bytes, more than the {limit} allowed")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the voice note lasts {seconds} s, more than the {limit} s allowed")]
    TooLong { seconds: u64, limit: u64 },
    #[error("the transcription is empty: nothing was understood")]
    Empty,
    #[error("the transcription API answered something unexpected: {0}")]
    Unexpected(String),
}

impl TranscribeError {
    /// Worth another try later (by the queue).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Timeout | Self::Connect(_)
        )
    }

    /// A refused key fails every customer's notes until a person fixes it.
    pub fn account_problem(&self) -> Option<AccountProblem> {
        match self {
            Self::Unauthorized { .. } => Some(AccountProblem::TranscriptionKey),
            Self::OutOfCredit { .. } => Some(AccountProblem::TranscriptionBilling),
            _ => None,
        }
    }

    /// How long the API asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct TranscriptionJson {
    text: String,
}

/// OpenAI's error object: `{"error": {"message", "type", "code"}}`.
#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    /// `insufficient_quota` tells an unpaid account from a rate limit (both 429).
    #[serde(default)]
    code: Option<String>,
}

impl Transcriber {
    /// `client` is the process's shared HTTP client ([`crate::http::client`]).
    pub fn new(config: &TranscribeConfig, client: reqwest::Client) -> Self {
        Self {
            endpoint: format!("{}/audio/transcriptions", config.url),
            authorization: config
                .api_key
                .as_ref()
                .map(|key| crate::http::bearer(key.expose_secret())),
            model: config.model.clone(),
            language: config.language.clone(),
            client,
            request_timeout: config.request_timeout,
            max_bytes: config.max_bytes,
            max_duration: config.max_duration,
        }
    }

    /// The most bytes a note may have (`VOICE_NOTE_MAX_BYTES`): larger ones are not downloaded.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The language hint for a customer's notes: `TRANSCRIBE_LANGUAGE`, else their country's.
    pub fn language_for(&self, session: &Session) -> Option<String> {
        if let Some(language) = &self.language {
            return Some(language.clone());
        }
        let key = session.customer_key.as_str();
        let digits = if key.bytes().all(|b| b.is_ascii_digit()) {
            key
        } else {
            // A username customer: the number they last wrote from, if WhatsApp gave one.
            session.wa_id.as_deref()?
        };
        language_of_number(digits).map(str::to_owned)
    }

    /// Refuses a note over the limits: its size, and its length when the format tells it
    /// (OGG/Opus, what WhatsApp records voice notes in); other formats by their size only.
    pub fn check_limits(&self, audio: &[u8]) -> Result<(), TranscribeError> {
        let bytes = audio.len() as u64;
        if bytes > self.max_bytes {
            return Err(TranscribeError::TooLarge {
                bytes,
                limit: self.max_bytes,
            });
        }
        match ogg_opus_duration(audio) {
            Some(duration) if duration > self.max_duration => Err(TranscribeError::TooLong {
                seconds: duration.as_secs(),
                limit: self.max_duration.as_secs(),
            }),
            _ => Ok(()),
        }
    }

    /// What the note says, trimmed; an empty transcript is an error (nothing to tell the agent).
    /// The request takes at most `TRANSCRIBE_TIMEOUT_SECONDS` (the engine bounds it by its
    /// deadline too).
    #[tracing::instrument(name = "transcribe", skip_all, fields(bytes = audio.len()))]
    pub async fn transcribe(
        &self,
        audio: &[u8],
        mime_type: &str,
        language: Option<&str>,
    ) -> Result<String, TranscribeError> {
        let mut fields = vec![("model", self.model.as_str()), ("response_format", "json")];
        if let Some(language) = language {
            fields.push(("language", language));
        }
        let form = Multipart::new(&fields, audio, mime_type);
        let mut request = self
            .client
            .post(&self.endpoint)
            .timeout(self.request_timeout)
            .header(CONTENT_TYPE, form.content_type())
            .body(form.body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(status_error(status, retry_after, &bytes));
        }
        let answer: TranscriptionJson = serde_json::from_slice(&bytes).map_err(|e| {
            TranscribeError::Unexpected(format!(
                "{e} in {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ))
        })?;
        let text = answer.text.trim();
        if text.is_empty() {
            return Err(TranscribeError::Empty);
        }
        Ok(text.to_owned())
    }
}

/// ISO-639-1 by the number's country code: Spanish for Mexico, Spain and Latin America, English
/// for the NANP (+1), Portuguese for Brazil and Portugal; else none (the API detects it).
fn language_of_number(digits: &str) -> Option<&'static str> {
    // Checked first: +1 787 (Puerto Rico) and +1 809 (the Dominican Republic) are Spanish
    // though +1 is English.
    const SPANISH: [&str; 24] = [
        "52", "54", "34", "57", "51", "56", "58", "53", "593", "591", "595", "598", "502", "503",
        "504", "505", "506", "507", "240", "1787", "1939", "1809", "1829", "1849",
    ];
    if SPANISH.iter().any(|code| digits.starts_with(code)) {
        Some("es")
    } else if digits.starts_with('1') {
        Some("en")
    } else if digits.starts_with("55") || digits.starts_with("351") {
        Some("pt")
    } else {
        None
    }
}

/// How long an OGG/Opus recording lasts: the last page's granule position less the OpusHead's
/// pre-skip, at 48 kHz. `None` for anything else (or a file too broken to tell).
pub fn ogg_opus_duration(audio: &[u8]) -> Option<Duration> {
    const CAPTURE: &[u8] = b"OggS";
    if !audio.starts_with(CAPTURE) {
        return None;
    }
    // The first page: a 27-byte header, the segment table, then the OpusHead packet.
    let segments = *audio.get(26)? as usize;
    let head = audio.get(27 + segments..)?;
    if !head.starts_with(b"OpusHead") {
        return None;
    }
    let pre_skip = u16::from_le_bytes([*head.get(10)?, *head.get(11)?]) as u64;
    // The last page is the last capture pattern whose header reads as one (version 0).
    let last = (0..=audio.len().saturating_sub(27))
        .rev()
        .find(|&at| audio[at..].starts_with(CAPTURE) && audio[at + 4] == 0)?;
    let granule = i64::from_le_bytes(audio.get(last + 6..last + 14)?.try_into().ok()?);
    // -1: no packet ends on that page; nothing to tell from it.
    let samples = u64::try_from(granule).ok()?.saturating_sub(pre_skip);
    Some(Duration::from_millis(samples * 1000 / OPUS_GRANULE_RATE))
}

/// The `file` part's name: OpenAI tells the format by the file's extension.
fn file_name(mime_type: &str) -> &'static str {
    match mime_essence(mime_type) {
        "audio/mpeg" | "audio/mp3" => "voice-note.mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "voice-note.m4a",
        "audio/aac" => "voice-note.aac",
        "audio/amr" => "voice-note.amr",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "voice-note.wav",
        "audio/webm" => "voice-note.webm",
        "audio/flac" | "audio/x-flac" => "voice-note.flac",
        // WhatsApp's voice notes: `audio/ogg; codecs=opus`.
        _ => "voice-note.ogg",
    }
}

/// `audio/ogg` of `audio/ogg; codecs=opus`.
fn mime_essence(mime_type: &str) -> &str {
    mime_type.split(';').next().unwrap_or("").trim()
}

/// A `multipart/form-data` body: the text fields, then the audio as `file`. Built here rather
/// than with reqwest's `multipart` feature: one small body, already in memory, and no extra
/// dependency in every function's binary.
struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    fn new(fields: &[(&str, &str)], audio: &[u8], mime_type: &str) -> Self {
        // A boundary found in the audio would cut it short: draw another.
        let boundary = loop {
            let candidate = format!(
                "bridge-{:016x}{:016x}",
                fastrand::u64(..),
                fastrand::u64(..)
            );
            if !audio
                .windows(candidate.len())
                .any(|w| w == candidate.as_bytes())
            {
                break candidate;
            }
        };
        let content_type = match mime_essence(mime_type) {
            "" => "application/octet-stream",
            essence => essence,
        };
        let mut body = Vec::with_capacity(audio.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 Content-Type: {content_type}\r\n\r\n",
                file_name(mime_type)
            )
            .as_bytes(),
        );
        body.extend_from_slice(audio);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        Self { boundary, body }
    }

    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }
}

/// `retry-after` in seconds, or OpenAI's `retry-after-ms`.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
        .or_else(|| number(RETRY_AFTER.as_str()).map(|s| Duration::from_secs_f64(s.max(0.0))))
}

fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> TranscribeError {
    let (message, code) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => (envelope.error.message, envelope.error.code),
        Err(_) => (
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            None,
        ),
    };
    let status = status.as_u16();
    match status {
        402 => TranscribeError::OutOfCredit { status, message },
        429 if code.as_deref() == Some("insufficient_quota") => {
            TranscribeError::OutOfCredit { status, message }
        }
        429 => TranscribeError::RateLimited { retry_after },
        401 | 403 => TranscribeError::Unauthorized { status, message },
        408 | 500..=599 => TranscribeError::Unavailable { status, message },
        _ => TranscribeError::Refused { status, message },
    }
}

fn transport_error(error: reqwest::Error) -> TranscribeError {
    if error.is_connect() {
        TranscribeError::Connect(crate::http::describe(&error))
    } else {
        TranscribeError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One OGG page: version 0, `granule`, one segment holding `packet`.
    fn page(granule: i64, packet: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\x02".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&[0; 12]); // serial, sequence, checksum
        page.push(1);
        page.push(packet.len() as u8);
        page.extend_from_slice(packet);
        page
    }

    fn opus(pre_skip: u16, last_granule: i64) -> Vec<u8> {
        let mut head = b"OpusHead\x01\x01".to_vec();
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]);
        let mut file = page(0, &head);
        file.extend(page(0, b"OpusTags\0\0\0\0"));
        file.extend(page(48_000, &[0xAB; 40]));
        file.extend(page(last_granule, &[0xCD; 40]));
        file
    }

    fn transcriber(max_bytes: u64, max_seconds: u64) -> Transcriber {
        Transcriber::new(
            &TranscribeConfig {
                url: "http://127.0.0.1:9/v1".into(),
                api_key: None,
                model: "whisper-1".into(),
                language: None,
                request_timeout: Duration::from_secs(60),
                max_bytes,
                max_duration: Duration::from_secs(max_seconds),
            },
            reqwest::Client::new(),
        )
    }

    #[test]
    fn an_ogg_opus_note_lasts_its_last_granule_less_the_pre_skip() {
        let note = opus(312, 312 + 48_000 * 7 + 24_000);
        assert_eq!(ogg_opus_duration(&note), Some(Duration::from_millis(7_500)));
        assert_eq!(ogg_opus_duration(b"ID3\x03 an mp3"), None);
        assert_eq!(ogg_opus_duration(&note[..30]), None, "cut short");
    }

    #[test]
    fn notes_over_the_limits_are_refused_before_transcribing() {
        let note = opus(312, 312 + 48_000 * 301);
        assert!(matches!(
            transcriber(1 << 20, 300).check_limits(&note),
            Err(TranscribeError::TooLong {
                seconds: 301,
                limit: 300
            })
        ));
        assert!(transcriber(1 << 20, 302).check_limits(&note).is_ok());
        assert!(matches!(
            transcriber(10, 300).check_limits(&note),
            Err(TranscribeError::TooLarge { .. })
        ));
        assert!(
            transcriber(1 << 20, 1)
                .check_limits(b"ID3 a long mp3")
                .is_ok(),
            "an unknown format: its size only"
        );
    }

    #[test]
    fn errors_are_transient_account_wide_or_the_notes_own() {
        let error = |status: u16, body: &str| {
            status_error(StatusCode::from_u16(status).unwrap(), None, body.as_bytes())
        };
        let openai = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let refused = error(401, openai);
        assert_eq!(
            refused.account_problem(),
            Some(AccountProblem::TranscriptionKey)
        );
        assert!(refused.to_string().contains("Incorrect API key provided"));
        for status in [500, 502, 503, 408] {
            assert!(error(status, "<html>").is_transient(), "{status}");
        }
        let limited = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(1)),
            b"{}",
        );
        assert!(limited.is_transient());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
        for status in [400, 413, 415] {
            let error = error(status, openai);
            assert!(
                !error.is_transient() && error.account_problem().is_none(),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_milliseconds() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
    }

    #[test]
    fn the_language_follows_the_override_else_the_country_code() {
        assert_eq!(language_of_number("525512345678"), Some("es"));
        assert_eq!(language_of_number("5491123456789"), Some("es"));
        assert_eq!(language_of_number("16505551234"), Some("en"));
        assert_eq!(language_of_number("17875551234"), Some("es"), "Puerto Rico");
        assert_eq!(language_of_number("5511912345678"), Some("pt"));
        assert_eq!(language_of_number("4915112345678"), None);
    }

    #[test]
    fn the_multipart_body_carries_the_fields_and_the_file_as_sent() {
        let audio = b"OggS\x00 the audio \r\n--x";
        let form = Multipart::new(
            &[("model", "whisper-1"), ("language", "es")],
            audio,
            "audio/ogg; codecs=opus",
        );
        let text = String::from_utf8_lossy(&form.body);
        let boundary = &form.boundary;
        assert!(form.content_type().ends_with(boundary.as_str()));
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"));
        assert!(text.contains("name=\"language\"\r\n\r\nes\r\n"));
        assert!(text.contains(
            "name=\"file\"; filename=\"voice-note.ogg\"\r\nContent-Type: audio/ogg\r\n\r\n"
        ));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        let start = form
            .body
            .windows(4)
            .position(|w| w == b"OggS")
            .expect("the audio is in the body");
        assert_eq!(&form.body[start..start + audio.len()], audio);
        assert_eq!(file_name("audio/mpeg"), "voice-note.mp3");
    }
}
