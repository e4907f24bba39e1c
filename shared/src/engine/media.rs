//! What each message a customer sent says to the agent. Retell's chat takes text only: a
//! message without text of its own reaches the agent as a marker with what is known of it
//! (`[imagen] mi casa`, `[documento: contrato.pdf]`, `[ubicación: Zócalo, 19.43,-99.13]`), a
//! voice note as its transcript (`[nota de voz] …`), so the agent can answer it.

use serde::Deserialize as _;

use crate::config::EngineConfig;
use crate::domain::ClaimedMessage;
use crate::whatsapp::webhook::{ContactCard, Location, MessageContent};

/// What one message gives the turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLine {
    /// A line the agent reads.
    Text(String),
    /// A voice note not transcribed yet (a transcript already made is on the message's body).
    NeedsTranscript {
        media_id: String,
        mime_type: Option<String>,
    },
    /// Nothing the agent can be told: the fixed reply, unless other lines of the turn go to it.
    Unsupported,
    /// Stored, never answered (a reaction): a turn of only these completes with no reply.
    Silent,
}

/// What `message` says to the agent. `can_transcribe`: a transcriber is configured, so a voice
/// note without a transcript needs one rather than the fixed reply.
pub fn agent_line(
    message: &ClaimedMessage,
    config: &EngineConfig,
    can_transcribe: bool,
) -> AgentLine {
    let kind = message.message_type.as_str();
    if kind == "reaction" {
        return AgentLine::Silent;
    }
    if !config.agent_message_types.iter().any(|t| t == kind) {
        return AgentLine::Unsupported;
    }
    // `body` holds the text, the tap's title, the caption, or a voice note's transcript.
    let body = message
        .body
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    // The message as Meta sent it (a recorded message may lack it: then only the marker).
    let content = message
        .payload
        .as_ref()
        .and_then(|payload| MessageContent::deserialize(payload).ok());
    let markers = &config.media_markers;
    let line = match (kind, &content) {
        ("text" | "button" | "interactive", _) => match body {
            Some(text) => text.to_owned(),
            // A Flow's answer, an empty text: nothing to read.
            None => return AgentLine::Unsupported,
        },
        ("image", _) => captioned(marker(&markers.image, None), body),
        ("video", _) => captioned(marker(&markers.video, None), body),
        ("document", content) => {
            let file_name = match content {
                Some(MessageContent::Document(document)) => document.filename.as_deref(),
                _ => None,
            };
            captioned(marker(&markers.document, file_name), body)
        }
        ("sticker", _) => marker(&markers.sticker, None),
        ("location", Some(MessageContent::Location(location))) => {
            marker(&markers.location, Some(&place(location)))
        }
        ("location", _) => marker(&markers.location, None),
        ("contacts", Some(MessageContent::Contacts(cards))) => {
            let cards: Vec<String> = cards.iter().map(card).filter(|c| !c.is_empty()).collect();
            marker(&markers.contacts, Some(&cards.join("; ")))
        }
        ("contacts", _) => marker(&markers.contacts, None),
        ("audio", content) => match body {
            Some(transcript) => heard(config, transcript),
            None => {
                let Some(MessageContent::Audio(audio)) = content else {
                    return AgentLine::Unsupported;
                };
                return match (&audio.id, can_transcribe) {
                    (Some(media_id), true) => AgentLine::NeedsTranscript {
                        media_id: media_id.clone(),
                        mime_type: audio.mime_type.clone(),
                    },
                    _ => AgentLine::Unsupported,
                };
            }
        },
        _ => return AgentLine::Unsupported,
    };
    AgentLine::Text(line)
}

/// A voice note's line: the transcript after the audio marker. The same text whether the
/// transcript was just made or read back from the message, so a retried turn's read-back of
/// what the agent has matches.
pub fn heard(config: &EngineConfig, transcript: &str) -> String {
    format!("[{}] {}", config.media_markers.audio, transcript.trim())
}

/// What the agent reads in place of a voice note that could not be transcribed, when other
/// lines of the turn go to it.
pub fn unheard(config: &EngineConfig) -> String {
    format!("[{} sin transcribir]", config.media_markers.audio)
}

/// `[word]`, or `[word: detail]`, the detail on one line.
fn marker(word: &str, detail: Option<&str>) -> String {
    let detail = detail.map(one_line).filter(|d| !d.is_empty());
    match detail {
        Some(detail) => format!("[{word}: {detail}]"),
        None => format!("[{word}]"),
    }
}

fn captioned(marker: String, caption: Option<&str>) -> String {
    match caption {
        Some(caption) => format!("{marker} {caption}"),
        None => marker,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `<name>, <address>, <lat>,<lon>`: the parts present.
fn place(location: &Location) -> String {
    let mut parts: Vec<String> = [&location.name, &location.address]
        .into_iter()
        .flatten()
        .map(|part| one_line(part))
        .filter(|part| !part.is_empty())
        .collect();
    if let (Some(latitude), Some(longitude)) = (location.latitude, location.longitude) {
        parts.push(format!("{latitude},{longitude}"));
    }
    parts.join(", ")
}

/// `Luis, +52 55 1111 2222`: the name and every number of a shared contact.
fn card(card: &ContactCard) -> String {
    let name = card.name.as_ref().and_then(|name| {
        name.formatted_name.clone().or_else(|| {
            let parts: Vec<&str> = [&name.first_name, &name.last_name]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
    });
    let phones = card.phones.iter().filter_map(|phone| {
        phone
            .phone
            .as_ref()
            .or(phone.wa_id.as_ref())
            .map(|p| p.as_str().to_owned())
    });
    name.into_iter()
        .chain(phones)
        .map(|part| one_line(&part))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::{Value, json};

    use super::*;
    use crate::config::{Env, MediaMarkers};
    use crate::domain::MessageId;

    fn config() -> EngineConfig {
        EngineConfig::from_env(&Env::default()).unwrap()
    }

    /// A claimed message as the store gives it: the payload as Meta sent it, the body as the
    /// webhook read it (text, title, caption).
    fn claimed(payload: Value, body: Option<&str>) -> ClaimedMessage {
        ClaimedMessage {
            wamid: MessageId::parse("wamid.1").unwrap(),
            message_type: payload["type"].as_str().unwrap().to_owned(),
            body: body.map(str::to_owned),
            payload: Some(payload),
            sent_at: Utc::now(),
            attempts: 1,
            failed_before: false,
        }
    }

    fn line(payload: Value, body: Option<&str>) -> AgentLine {
        agent_line(&claimed(payload, body), &config(), true)
    }

    fn text(line: &str) -> AgentLine {
        AgentLine::Text(line.to_owned())
    }

    /// Meta's own examples (its webhook reference), as the webhook records them.
    #[test]
    fn metas_examples_reach_the_agent_as_documented() {
        let image = json!({ "from": "16505551234", "id": "wamid.HBgL", "timestamp": "1744344496",
            "type": "image", "image": { "caption": "Taj Mahal", "id": "1003383421387256",
            "mime_type": "image/jpeg", "sha256": "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=" } });
        assert_eq!(line(image, Some("Taj Mahal")), text("[imagen] Taj Mahal"));

        let location = json!({ "from": "16505551234", "id": "wamid.HBgL", "timestamp": "1744344496",
            "type": "location", "location": { "address": "101 Forest Ave, Palo Alto, CA 94301",
            "latitude": 37.44221496582, "longitude": -122.16165924072, "name": "Philz Coffee",
            "url": "https://philzcoffee.com/" } });
        assert_eq!(
            line(location, None),
            text(
                "[ubicación: Philz Coffee, 101 Forest Ave, Palo Alto, CA 94301, \
                 37.44221496582,-122.16165924072]"
            )
        );

        let contacts = json!({ "from": "16505551234", "id": "wamid.HBgL", "timestamp": "1744344496",
            "type": "contacts", "contacts": [{ "name": { "first_name": "Lucía",
            "formatted_name": "Lucía Gómez", "last_name": "Gómez" }, "org": { "company": "Google" },
            "phones": [{ "phone": "+1 (983) 555-2319", "type": "MOBILE", "wa_id": "19835552319" }] }] });
        assert_eq!(
            line(contacts, None),
            text("[contacto: Lucía Gómez, +1 (983) 555-2319]")
        );

        let button = json!({ "from": "16505551234", "id": "wamid.HBgL", "timestamp": "1750091045",
            "type": "button", "button": { "payload": "Unsubscribe", "text": "Unsubscribe" } });
        assert_eq!(line(button, Some("Unsubscribe")), text("Unsubscribe"));

        let list = json!({ "from": "16505551234", "id": "wamid.HBgL", "timestamp": "1749854575",
            "type": "interactive", "interactive": { "type": "list_reply", "list_reply": {
            "description": "Next Day to 2 Days", "id": "priority_express",
            "title": "Priority Mail Express" } } });
        assert_eq!(
            line(list, Some("Priority Mail Express")),
            text("Priority Mail Express")
        );

        let reaction = json!({ "from": "16505551234", "id": "wamid.HBgL", "timestamp": "1749419544",
            "type": "reaction", "reaction": { "emoji": "👍", "message_id": "wamid.HBgLOTc" } });
        assert_eq!(line(reaction, None), AgentLine::Silent);

        let unsupported = json!({ "errors": [{ "code": 131051, "message": "Message type unknown",
            "title": "Message type unknown" }], "from": "16505551234", "id": "wamid.HBgL",
            "timestamp": "1750090702", "type": "unsupported" });
        assert_eq!(line(unsupported, None), AgentLine::Unsupported);
    }

    #[test]
    fn media_without_text_are_markers_with_what_is_known() {
        let document = json!({ "type": "document", "document": { "id": "d1",
            "mime_type": "application/pdf", "filename": "contrato.pdf" } });
        assert_eq!(
            line(document.clone(), None),
            text("[documento: contrato.pdf]")
        );
        assert_eq!(
            line(document, Some("el firmado")),
            text("[documento: contrato.pdf] el firmado")
        );
        let video = json!({ "type": "video", "video": { "id": "v1", "mime_type": "video/mp4" } });
        assert_eq!(line(video, None), text("[video]"));
        let sticker = json!({ "type": "sticker", "sticker": { "id": "s1", "animated": false } });
        assert_eq!(line(sticker, None), text("[sticker]"));
        let bare =
            json!({ "type": "location", "location": { "latitude": "19.43", "longitude": -99.13 } });
        assert_eq!(line(bare, None), text("[ubicación: 19.43,-99.13]"));
        let two = json!({ "type": "contacts", "contacts": [
            { "name": { "formatted_name": "Luis" }, "phones": [{ "phone": "+52 55 1111 2222" }] },
            { "name": { "first_name": "Ana", "last_name": "Ruiz" }, "phones": [] }] });
        assert_eq!(
            line(two, None),
            text("[contacto: Luis, +52 55 1111 2222; Ana Ruiz]")
        );
        // Recorded without Meta's object: the marker alone.
        let mut image = claimed(json!({ "type": "image" }), None);
        image.payload = None;
        assert_eq!(agent_line(&image, &config(), true), text("[imagen]"));
    }

    #[test]
    fn a_voice_note_needs_a_transcript_once_and_only_with_a_transcriber() {
        let note = json!({ "type": "audio", "audio": { "id": "a1",
            "mime_type": "audio/ogg; codecs=opus", "voice": true } });
        assert_eq!(
            line(note.clone(), None),
            AgentLine::NeedsTranscript {
                media_id: "a1".into(),
                mime_type: Some("audio/ogg; codecs=opus".into())
            }
        );
        assert_eq!(
            line(note.clone(), Some(" quiero el seguro ")),
            text("[nota de voz] quiero el seguro"),
            "transcribed already: the stored transcript"
        );
        assert_eq!(
            agent_line(&claimed(note, None), &config(), false),
            AgentLine::Unsupported,
            "no TRANSCRIBE_URL: the polite reply, as before"
        );
        assert_eq!(unheard(&config()), "[nota de voz sin transcribir]");
    }

    #[test]
    fn markers_and_the_types_that_reach_the_agent_are_configured() {
        let custom = EngineConfig {
            media_markers: MediaMarkers {
                image: "foto".into(),
                ..MediaMarkers::default()
            },
            agent_message_types: vec!["text".into(), "image".into()],
            ..config()
        };
        let image = claimed(json!({ "type": "image", "image": { "id": "i1" } }), None);
        assert_eq!(agent_line(&image, &custom, true), text("[foto]"));
        let sticker = claimed(
            json!({ "type": "sticker", "sticker": { "id": "s1" } }),
            None,
        );
        assert_eq!(agent_line(&sticker, &custom, true), AgentLine::Unsupported);
        let empty = claimed(
            json!({ "type": "text", "text": { "body": " " } }),
            Some(" "),
        );
        assert_eq!(agent_line(&empty, &custom, true), AgentLine::Unsupported);
        let flow = claimed(
            json!({ "type": "interactive", "interactive": { "type": "nfm_reply",
                "nfm_reply": { "name": "flow", "response_json": "{}" } } }),
            None,
        );
        assert_eq!(agent_line(&flow, &config(), true), AgentLine::Unsupported);
    }
}
