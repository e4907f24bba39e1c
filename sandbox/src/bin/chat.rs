//! `make chat PHONE=5215512345678`: be the customer. Each line you type is sent to the local
//! `/whatsapp` as Meta would send it (a signed webhook), and what the bridge sends back (read
//! from the sandbox's WhatsApp stand-in) is printed.
//!
//! Lines starting with `/` play the staff instead (`/help`): `/staff <text>` writes to the
//! customer as staff do from the dashboard (the dev server inserts the row into `staff_messages`
//! through the store's REST API, then delivers it to `POST /staff` as Supabase's Database
//! Webhook does), `/pause [minutes]` and `/resume` call `pause_conversation` and
//! `resume_conversation` as the SQL editor would.
//!
//! `/voice [file]` sends a voice note (default: the sandbox's fixture, which says "Hola, quiero
//! saber el precio del seguro"): the bytes go to the WhatsApp stand-in as Meta keeps a message's
//! media (`POST /sandbox/media`), then an `audio` message with its media id is delivered as
//! Meta would.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sandbox::meta_webhook::signature;
use serde_json::{Value, json};
use shared::domain::CustomerKey;
use shared::messenger::Recipient;
use shared::whatsapp::webhook::SIGNATURE_HEADER;
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = sandbox::dev::environment();
    let Some(phone) = std::env::args().nth(1).filter(|p| !p.is_empty()) else {
        bail!("usage: make chat PHONE=5215512345678 (the customer's WhatsApp number, digits)");
    };
    let wa_id: String = phone.chars().filter(char::is_ascii_digit).collect();
    let customer =
        CustomerKey::from_whatsapp_id(&wa_id).context("PHONE is not a WhatsApp number")?;
    let Recipient::Phone(to) = Recipient::for_customer(&customer) else {
        unreachable!("a phone number")
    };
    let port = env
        .get("DEV_PORT")
        .cloned()
        .unwrap_or_else(|| "3000".into());
    let secret = env
        .get("WHATSAPP_APP_SECRET")
        .cloned()
        .unwrap_or_else(|| "standin-app-secret".into());
    // The number the bridge answers for: the sandbox's, unless `.env` names the real Graph API's.
    let set = |name: &str| env.get(name).filter(|value| !value.trim().is_empty());
    let phone_number_id = match set("WHATSAPP_ACCESS_TOKEN") {
        Some(_) => set("WHATSAPP_PHONE_NUMBER_ID").cloned().unwrap_or_default(),
        None => sandbox::graph_standin::PHONE_NUMBER_ID.to_owned(),
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut seen = outbox(&http, &base, &to)
        .await
        .context("is `make dev` running?")?
        .len();
    println!("You are {wa_id} on WhatsApp. Type a message and press Enter; Ctrl-D to quit.");
    println!("/help: play the staff too (write as the business, pause and resume the agent).");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut sent = 0u32;
    while let Some(line) = lines.next_line().await? {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let content = match text.strip_prefix('/') {
            Some(command) if command == "voice" || command.starts_with("voice ") => {
                let path = command["voice".len()..].trim();
                match voice_note(&http, &base, path).await? {
                    Some(audio) => json!({ "type": "audio", "audio": audio }),
                    None => continue,
                }
            }
            Some(command) => {
                if staff_command(&http, &base, &customer, command).await? {
                    show_replies(&http, &base, &to, &mut seen, "staff").await?;
                }
                continue;
            }
            None => json!({ "type": "text", "text": { "body": text } }),
        };
        sent += 1;
        let mut message = json!({ "from": wa_id, "id": format!("wamid.CHAT.{}.{sent}", std::process::id()),
                                  "timestamp": chrono::Utc::now().timestamp().to_string() });
        for (name, value) in content.as_object().into_iter().flatten() {
            message[name] = value.clone();
        }
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "0", "changes": [{
            "field": "messages",
            "value": { "messaging_product": "whatsapp",
                       "metadata": { "display_phone_number": "15550000000", "phone_number_id": phone_number_id },
                       "contacts": [{ "profile": { "name": "Terminal" }, "wa_id": wa_id }],
                       "messages": [message] } }] }] })
        .to_string();
        let answer = http
            .post(format!("{base}/whatsapp"))
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature(body.as_bytes(), &secret))
            .body(body)
            .send()
            .await?;
        if !answer.status().is_success() {
            println!(
                "(the webhook answered {}: {})",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
            continue;
        }
        if let Some(until) = paused_until(&http, &base, &customer).await? {
            // Nothing comes back while a person has the conversation: say so, don't wait.
            tokio::time::sleep(Duration::from_millis(500)).await;
            println!(
                "(paused until {until}: your message is held for the agent; /resume to hand back)"
            );
            continue;
        }
        show_replies(&http, &base, &to, &mut seen, "bridge").await?;
    }
    Ok(())
}

const HELP: &str = "\
Commands:
  <text>            you, the customer, write on WhatsApp
  /voice [file]     you send a voice note (an .ogg/.opus, .mp3, .m4a, .aac or .amr file;
                    default: the sandbox's, which says 'Hola, quiero saber el precio del seguro')
  /staff <text>     staff write to the customer from the dashboard (a row in staff_messages):
                    it goes out as the business and pauses the agent
  /pause [minutes]  pause the agent (pause_conversation; no minutes: PAUSE_DEFAULT_MINUTES)
  /resume           hand back to the agent (resume_conversation): your next message gets an
                    answer that knows what was said in between
  /help             this";

/// Runs a staff command through the dev server's sandbox routes. True when something may have
/// gone out to the customer (to be shown).
async fn staff_command(
    http: &reqwest::Client,
    base: &str,
    customer: &CustomerKey,
    command: &str,
) -> anyhow::Result<bool> {
    let (name, rest) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(name, rest)| (name, rest.trim()));
    let (path, body) = match name {
        "staff" if !rest.is_empty() => (
            "/sandbox/staff",
            json!({ "customer_key": customer, "text": rest }),
        ),
        "pause" => {
            let minutes = match rest {
                "" => None,
                minutes => match minutes.parse::<u32>() {
                    Ok(minutes) if minutes > 0 => Some(minutes),
                    _ => {
                        println!("(/pause takes whole minutes, e.g. /pause 30)");
                        return Ok(false);
                    }
                },
            };
            (
                "/sandbox/pause",
                json!({ "customer_key": customer, "minutes": minutes }),
            )
        }
        "resume" => ("/sandbox/resume", json!({ "customer_key": customer })),
        _ => {
            println!("{HELP}");
            return Ok(false);
        }
    };
    let request = http.post(format!("{base}{path}")).json(&body);
    let Some(text) = dev_server_answer(request).await? else {
        return Ok(false);
    };
    if name != "staff" {
        println!("({name}: {text})");
        return Ok(false);
    }
    // The row as the job left it: sent, or refused with the reason staff would read.
    let row: Value = serde_json::from_str(&text).unwrap_or_default();
    let status = row["status"].as_str().unwrap_or("?");
    match row["status_reason"].as_str() {
        Some(reason) => println!("(staff message {}: {status}: {reason})", row["id"]),
        None => println!(
            "(staff message {}: {status}; the agent is paused)",
            row["id"]
        ),
    }
    Ok(status == "sent")
}

/// The dev server's answer to `request`, or `None` when it refused (said why).
async fn dev_server_answer(request: reqwest::RequestBuilder) -> anyhow::Result<Option<String>> {
    let answer = request.send().await?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    if !status.is_success() {
        println!("(the dev server answered {status}: {text})");
        return Ok(None);
    }
    Ok(Some(text))
}

/// WhatsApp's content type for an audio file, by its extension (a voice note is OGG/Opus).
fn audio_mime_type(path: &str) -> Option<&'static str> {
    let extension = std::path::Path::new(path)
        .extension()?
        .to_str()?
        .to_ascii_lowercase();
    Some(match extension.as_str() {
        "ogg" | "opus" | "oga" => sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
        "mp3" => "audio/mpeg",
        "m4a" | "mp4" => "audio/mp4",
        "aac" => "audio/aac",
        "amr" => "audio/amr",
        _ => return None,
    })
}

/// Puts the voice note at `path` (empty: the fixture) into the WhatsApp stand-in; the webhook's
/// `audio` object for it, or `None` when it could not (said why).
async fn voice_note(
    http: &reqwest::Client,
    base: &str,
    path: &str,
) -> anyhow::Result<Option<Value>> {
    let (bytes, mime_type) = if path.is_empty() {
        (
            sandbox::VOICE_NOTE_OGG.to_vec(),
            sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
        )
    } else {
        let Some(mime_type) = audio_mime_type(path) else {
            println!("(/voice takes an .ogg, .opus, .mp3, .m4a, .aac or .amr file)");
            return Ok(None);
        };
        match std::fs::read(path) {
            Ok(bytes) => (bytes, mime_type),
            Err(error) => {
                println!("(cannot read {path}: {error})");
                return Ok(None);
            }
        }
    };
    let sha256 = {
        use sha2::Digest as _;
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            sha2::Sha256::digest(&bytes),
        )
    };
    let request = http
        .post(format!("{base}/sandbox/media"))
        .header("content-type", mime_type)
        .body(bytes);
    let Some(text) = dev_server_answer(request).await? else {
        return Ok(None);
    };
    let media: Value = serde_json::from_str(&text)?;
    // As Meta delivers it: the webhook's sha256 is base64; `voice` marks a recorded note.
    Ok(Some(json!({
        "id": media["id"], "mime_type": mime_type, "sha256": sha256,
        "voice": mime_type == sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
    })))
}

/// When the customer's conversation is paused until, if it is.
async fn paused_until(
    http: &reqwest::Client,
    base: &str,
    customer: &CustomerKey,
) -> anyhow::Result<Option<String>> {
    let answer = http
        .get(format!("{base}/sandbox/session"))
        .query(&[("customer_key", customer.as_str())])
        .send()
        .await?;
    if !answer.status().is_success() {
        return Ok(None);
    }
    let session: Value = answer.json().await?;
    let until = session["paused_until"].as_str().and_then(|until| {
        let until = chrono::DateTime::parse_from_rfc3339(until).ok()?;
        (until > chrono::Utc::now()).then(|| {
            until
                .with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
    });
    Ok(until)
}

/// Prints what the bridge sends once the job ran: waits for it, then for the quiet after it.
async fn show_replies(
    http: &reqwest::Client,
    base: &str,
    to: &str,
    seen: &mut usize,
    who: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_reply = None::<Instant>;
    while started.elapsed() < Duration::from_secs(30)
        && last_reply.is_none_or(|t| t.elapsed() < Duration::from_millis(1500))
    {
        let messages = outbox(http, base, to).await?;
        for message in &messages[(*seen).min(messages.len())..] {
            let kind = message["type"].as_str().unwrap_or("");
            let text = message["text"].as_str().unwrap_or("");
            if kind == "template" {
                println!("{who}> [template {text}]");
            } else {
                println!("{who}> {text}");
            }
            last_reply = Some(Instant::now());
        }
        *seen = messages.len();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn outbox(http: &reqwest::Client, base: &str, to: &str) -> anyhow::Result<Vec<Value>> {
    let answer = http
        .get(format!("{base}/sandbox/outbox"))
        .query(&[("to", to)])
        .send()
        .await?;
    if !answer.status().is_success() {
        bail!(
            "the outbox answered {} (a sandbox needs no WHATSAPP_ACCESS_TOKEN)",
            answer.status()
        );
    }
    Ok(answer.json().await?)
}
