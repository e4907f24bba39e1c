//! `make chat PHONE=5215512345678`: be the customer. Each line you type is sent to the local
//! `/whatsapp` as Meta would send it (a signed webhook), and what the bridge sends back (read
//! from the sandbox's WhatsApp stand-in) is printed.
//!
//! Lines starting with `/` play the staff instead (`/help`): `/staff <text>` writes to the
//! customer as staff do from the dashboard (the dev server inserts the row into `staff_messages`
//! through the store's REST API, then delivers it to `POST /staff` as Supabase's Database
//! Webhook does), `/pause [minutes]` and `/resume` call `pause_conversation` and
//! `resume_conversation` as the SQL editor would.

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
        if let Some(command) = text.strip_prefix('/') {
            if staff_command(&http, &base, &customer, command).await? {
                show_replies(&http, &base, &to, &mut seen, "staff").await?;
            }
            continue;
        }
        sent += 1;
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "0", "changes": [{
            "field": "messages",
            "value": { "messaging_product": "whatsapp",
                       "metadata": { "display_phone_number": "15550000000", "phone_number_id": phone_number_id },
                       "contacts": [{ "profile": { "name": "Terminal" }, "wa_id": wa_id }],
                       "messages": [{ "from": wa_id, "id": format!("wamid.CHAT.{}.{sent}", std::process::id()),
                                      "timestamp": chrono::Utc::now().timestamp().to_string(),
                                      "type": "text", "text": { "body": text } }] } }] }] })
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
    let answer = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    if !status.is_success() {
        println!("(the dev server answered {status}: {text})");
        return Ok(false);
    }
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
