//! `make chat PHONE=5215512345678`: be the customer. Each line you type is sent to the local
//! `/whatsapp` as Meta would send it (a signed webhook), and what the bridge sends back (read
//! from the sandbox's WhatsApp stand-in) is printed.

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
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut sent = 0u32;
    while let Some(line) = lines.next_line().await? {
        let text = line.trim();
        if text.is_empty() {
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
        // Replies come once the turn ran: wait for them, then for the quiet after them.
        let started = Instant::now();
        let mut last_reply = None::<Instant>;
        while started.elapsed() < Duration::from_secs(30)
            && last_reply.is_none_or(|t| t.elapsed() < Duration::from_millis(1500))
        {
            let messages = outbox(&http, &base, &to).await?;
            for message in &messages[seen.min(messages.len())..] {
                let kind = message["type"].as_str().unwrap_or("");
                let text = message["text"].as_str().unwrap_or("");
                if kind == "template" {
                    println!("bridge> [template {text}]");
                } else {
                    println!("bridge> {text}");
                }
                last_reply = Some(Instant::now());
            }
            seen = messages.len();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
