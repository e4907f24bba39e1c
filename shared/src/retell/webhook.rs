//! Retell's webhook: the `x-retell-signature` check and the chat event envelope.
//!
//! Retell signs `raw body ++ timestamp` with the API key that has the "webhook" badge, and
//! sends `x-retell-signature: v=<timestamp ms>,d=<hex HMAC-SHA256>`. The timestamp bounds
//! replays to a five-minute window, as Retell's SDKs do.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::domain::{ChatId, ChatStatus};
use crate::signature::verify_hmac_sha256;

/// The header Retell signs each webhook with.
pub const SIGNATURE_HEADER: &str = "x-retell-signature";

/// How far the signature's timestamp may be from now, either way: Retell's SDK default.
pub const SIGNATURE_TOLERANCE_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetellSignatureError {
    #[error("the x-retell-signature header is missing")]
    Missing,
    #[error(
        "the x-retell-signature header is not `v=<timestamp ms>,d=<64 lowercase hex digits>`: {0}"
    )]
    Malformed(&'static str),
    #[error(
        "the x-retell-signature was made at {signed_at_ms} ms, more than 5 minutes from now \
         ({now_ms} ms): a replay or a skewed clock"
    )]
    Stale { signed_at_ms: i64, now_ms: i64 },
    #[error("the x-retell-signature does not match the body and timestamp")]
    Mismatch,
}

/// Why the body of a request that says it is Retell's is not taken.
#[derive(Debug)]
pub enum RetellBodyError {
    Signature(RetellSignatureError),
    TooLarge,
}

/// The raw body of a request Retell signed: the signature header is required before the body is
/// looked at, the body may be at most `max_bytes`, and the signature must hold over `api_key` at
/// `now_ms` ([`verify_signature`]).
pub fn signed_body<'r, B: AsRef<[u8]>>(
    request: &'r http::Request<B>,
    api_key: &[u8],
    max_bytes: usize,
    now_ms: i64,
) -> Result<&'r [u8], RetellBodyError> {
    let header = request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    if header.is_none() {
        return Err(RetellBodyError::Signature(RetellSignatureError::Missing));
    }
    let body = request.body().as_ref();
    if body.len() > max_bytes {
        return Err(RetellBodyError::TooLarge);
    }
    verify_signature(api_key, body, header, now_ms).map_err(RetellBodyError::Signature)?;
    Ok(body)
}

/// Checks `x-retell-signature` against the body exactly as received (re-serialised JSON
/// differs from Retell's bytes) and `now_ms`, the current time in unix milliseconds.
///
/// The digest must be lowercase hex, the form Retell sends and the only one its SDKs' string
/// comparison accepts.
pub fn verify_signature(
    api_key: &[u8],
    raw_body: &[u8],
    header: Option<&str>,
    now_ms: i64,
) -> Result<(), RetellSignatureError> {
    let header = header.ok_or(RetellSignatureError::Missing)?;
    let (version, digest) =
        header
            .trim()
            .split_once(',')
            .ok_or(RetellSignatureError::Malformed(
                "no `,` between `v=` and `d=`",
            ))?;
    let timestamp = version
        .strip_prefix("v=")
        .ok_or(RetellSignatureError::Malformed("no `v=` timestamp first"))?;
    let hex_digest = digest
        .strip_prefix("d=")
        .ok_or(RetellSignatureError::Malformed("no `d=` digest second"))?;
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RetellSignatureError::Malformed(
            "the timestamp is not decimal digits",
        ));
    }
    let signed_at_ms: i64 = timestamp
        .parse()
        .map_err(|_| RetellSignatureError::Malformed("the timestamp is out of range"))?;
    if hex_digest.len() != 64
        || !hex_digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(RetellSignatureError::Malformed(
            "the digest is not 64 lowercase hex digits",
        ));
    }
    if now_ms.abs_diff(signed_at_ms) > SIGNATURE_TOLERANCE_MS {
        return Err(RetellSignatureError::Stale {
            signed_at_ms,
            now_ms,
        });
    }
    let digest = hex::decode(hex_digest).expect("checked to be 64 hex digits");
    // The timestamp exactly as the header wrote it: that is the text Retell signed. Compared in
    // constant time.
    if verify_hmac_sha256(api_key, &[raw_body, timestamp.as_bytes()], &digest) {
        Ok(())
    } else {
        Err(RetellSignatureError::Mismatch)
    }
}

/// A chat webhook: `{"event": "chat_ended", "chat": {...}}`. Retell documents this envelope for
/// calls only; chats are parsed the same way, tolerating fields this code does not know.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatWebhook {
    pub event: ChatEvent,
    pub chat: WebhookChat,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatEvent {
    ChatStarted,
    /// The chat ended or errored: everything but the analysis.
    ChatEnded,
    /// The chat with its post-chat analysis.
    ChatAnalyzed,
    /// An event this code does not know (`transcript_updated`, …), by name.
    #[serde(untagged)]
    Other(String),
}

/// The chat an event is about. Only `chat_id` is sure to be there. `Debug` leaves out what the
/// customer said and the metadata (which may name them).
#[derive(Clone, PartialEq, Deserialize)]
pub struct WebhookChat {
    pub chat_id: ChatId,
    pub agent_id: Option<String>,
    /// Absent, or a status this code does not know, reads as `None`.
    #[serde(default, deserialize_with = "known_chat_status")]
    pub chat_status: Option<ChatStatus>,
    pub chat_type: Option<String>,
    /// Unix milliseconds.
    pub start_timestamp: Option<i64>,
    pub end_timestamp: Option<i64>,
    pub transcript: Option<String>,
    /// What the bridge set when it created the chat.
    pub metadata: Option<Value>,
    pub retell_llm_dynamic_variables: Option<BTreeMap<String, Value>>,
    /// Only after the chat ends.
    pub collected_dynamic_variables: Option<BTreeMap<String, Value>>,
    /// Only in `chat_analyzed`.
    pub chat_analysis: Option<ChatAnalysis>,
}

pub use crate::domain::ChatAnalysis;

impl fmt::Debug for WebhookChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChat")
            .field("chat_id", &self.chat_id)
            .field("agent_id", &self.agent_id)
            .field("chat_status", &self.chat_status)
            .field("chat_type", &self.chat_type)
            .field("start_timestamp", &self.start_timestamp)
            .field("end_timestamp", &self.end_timestamp)
            .finish_non_exhaustive()
    }
}

fn known_chat_status<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ChatStatus>, D::Error> {
    let status = Option::<Value>::deserialize(deserializer)?;
    Ok(status.and_then(|status| serde_json::from_value(status).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::hmac_sha256_hex;
    use serde_json::json;

    const API_KEY: &[u8] = b"key_webhook_badge";
    const NOW_MS: i64 = 1_760_000_000_000;
    const BODY: &[u8] =
        r#"{"event":"chat_ended","chat":{"chat_id":"chat_1","transcript":"User: ¿Dónde está? 😀"}}"#
            .as_bytes();

    fn sign(body: &[u8], timestamp: &str) -> String {
        format!(
            "v={timestamp},d={}",
            hmac_sha256_hex(API_KEY, &[body, timestamp.as_bytes()])
        )
    }

    fn verify(header: &str, now_ms: i64) -> Result<(), RetellSignatureError> {
        verify_signature(API_KEY, BODY, Some(header), now_ms)
    }

    #[test]
    fn a_fresh_signature_over_body_and_timestamp_verifies() {
        let header = sign(BODY, &NOW_MS.to_string());
        assert_eq!(verify(&header, NOW_MS), Ok(()));
        // Within the window on both sides, up to its edge.
        assert_eq!(verify(&header, NOW_MS + 300_000), Ok(()));
        assert_eq!(verify(&header, NOW_MS - 300_000), Ok(()));
    }

    #[test]
    fn a_signature_more_than_five_minutes_away_is_stale() {
        let past = sign(BODY, &(NOW_MS - 300_001).to_string());
        assert_eq!(
            verify(&past, NOW_MS),
            Err(RetellSignatureError::Stale {
                signed_at_ms: NOW_MS - 300_001,
                now_ms: NOW_MS
            })
        );
        let future = sign(BODY, &(NOW_MS + 300_001).to_string());
        assert!(matches!(
            verify(&future, NOW_MS),
            Err(RetellSignatureError::Stale { .. })
        ));
        let hour_ago = sign(BODY, &(NOW_MS - 3_600_000).to_string());
        assert!(matches!(
            verify(&hour_ago, NOW_MS),
            Err(RetellSignatureError::Stale { .. })
        ));
    }

    #[test]
    fn a_tampered_body_does_not_verify() {
        let header = sign(BODY, &NOW_MS.to_string());
        let mut tampered = BODY.to_vec();
        tampered[30] ^= 1;
        assert_eq!(
            verify_signature(API_KEY, &tampered, Some(&header), NOW_MS),
            Err(RetellSignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another key", BODY, Some(&header), NOW_MS),
            Err(RetellSignatureError::Mismatch)
        );
    }

    #[test]
    fn a_tampered_timestamp_does_not_verify() {
        let header = sign(BODY, &NOW_MS.to_string());
        let moved = header.replacen(&NOW_MS.to_string(), &(NOW_MS + 1).to_string(), 1);
        assert_eq!(verify(&moved, NOW_MS), Err(RetellSignatureError::Mismatch));
        // The same instant written differently is other signed text.
        let padded = header.replacen("v=", "v=0", 1);
        assert_eq!(verify(&padded, NOW_MS), Err(RetellSignatureError::Mismatch));
    }

    #[test]
    fn a_missing_signature_is_refused() {
        assert_eq!(
            verify_signature(API_KEY, BODY, None, NOW_MS),
            Err(RetellSignatureError::Missing)
        );
    }

    #[test]
    fn malformed_signatures_are_refused_saying_what_is_wrong() {
        let valid = sign(BODY, &NOW_MS.to_string());
        let digest = valid.split_once(",d=").unwrap().1.to_owned();
        let cases = [
            ("".to_owned(), "`,`"),
            (format!("v={NOW_MS}"), "`,`"),
            (format!("d={digest},v={NOW_MS}"), "`v=`"),
            (format!("t={NOW_MS},d={digest}"), "`v=`"),
            (format!("v={NOW_MS},{digest}"), "`d=`"),
            (format!("v={NOW_MS},d={digest},x=1"), "64 lowercase"),
            (format!("v=,d={digest}"), "digits"),
            (format!("v=-{NOW_MS},d={digest}"), "digits"),
            (format!("v=1.5e12,d={digest}"), "digits"),
            (format!("v={NOW_MS}0000000000,d={digest}"), "out of range"),
            (format!("v={NOW_MS},d={}", &digest[..63]), "64 lowercase"),
            (format!("v={NOW_MS},d={digest}0"), "64 lowercase"),
            (format!("v={NOW_MS},d={}", "g".repeat(64)), "64 lowercase"),
            (
                format!("v={NOW_MS},d={}", digest.to_uppercase()),
                "64 lowercase",
            ),
        ];
        for (header, what) in cases {
            let err = verify(&header, NOW_MS).unwrap_err();
            assert!(
                matches!(err, RetellSignatureError::Malformed(_)),
                "{header}: {err:?}"
            );
            assert!(err.to_string().contains(what), "{header}: {err}");
        }
    }

    #[test]
    fn chat_events_parse_tolerating_unknown_fields() {
        let ended: ChatWebhook = serde_json::from_value(json!({
            "event": "chat_ended",
            "chat": {
                "chat_id": "chat_98f2",
                "agent_id": "agent_1",
                "chat_status": "ended",
                "chat_type": "api_chat",
                "start_timestamp": 1_760_000_000_000_i64,
                "end_timestamp": null,
                "transcript": "Agent: ¿Me comunico con Ana?\nUser: Sí\n",
                "metadata": { "customer_key": "525512345678" },
                "retell_llm_dynamic_variables": { "name": "Ana" },
                "message_with_tool_calls": [],
                "chat_cost": { "combined_cost": 1.5 },
                "a_field_from_the_future": true
            }
        }))
        .unwrap();
        assert_eq!(ended.event, ChatEvent::ChatEnded);
        assert_eq!(ended.chat.chat_id.as_str(), "chat_98f2");
        assert_eq!(ended.chat.chat_status, Some(ChatStatus::Ended));
        assert_eq!(ended.chat.end_timestamp, None);
        assert_eq!(
            ended.chat.metadata.as_ref().unwrap()["customer_key"],
            "525512345678"
        );
        let debug = format!("{:?}", ended.chat);
        assert!(
            !debug.contains("525512345678") && !debug.contains("Ana"),
            "{debug}"
        );

        let analyzed: ChatWebhook = serde_json::from_value(json!({
            "event": "chat_analyzed",
            "chat": { "chat_id": "chat_1", "chat_status": "paused",
                      "chat_analysis": { "chat_summary": "Agendó cita", "chat_successful": true } }
        }))
        .unwrap();
        assert_eq!(analyzed.event, ChatEvent::ChatAnalyzed);
        assert_eq!(analyzed.chat.chat_status, None, "unknown status");
        assert_eq!(
            analyzed.chat.chat_analysis.unwrap().chat_summary.as_deref(),
            Some("Agendó cita")
        );

        let other: ChatWebhook = serde_json::from_value(json!({
            "event": "transcript_updated", "chat": { "chat_id": "chat_1" }
        }))
        .unwrap();
        assert_eq!(
            other.event,
            ChatEvent::Other("transcript_updated".to_owned())
        );
        assert_eq!(
            serde_json::from_value::<ChatWebhook>(json!({ "event": "chat_started", "chat": {} }))
                .unwrap_err()
                .to_string(),
            "missing field `chat_id`"
        );
    }
}
