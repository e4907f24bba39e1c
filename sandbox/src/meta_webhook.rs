//! Meta's side of the WhatsApp webhook, for the tests, the benchmarks and the chaos run: the
//! deliveries it POSTs (text messages in the Cloud API's shape) and their signature.

use serde_json::{Value, json};
use shared::signature::hmac_sha256_hex;

use crate::graph_standin::PHONE_NUMBER_ID;

/// One text message of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// The sender's WhatsApp id (`521…` for a Mexican mobile).
    pub wa_id: String,
    pub wamid: String,
    /// Unix seconds, as Meta sends them.
    pub timestamp: i64,
    pub text: String,
}

/// `X-Hub-Signature-256` of `body`: `sha256=` and the hex HMAC-SHA256 with the app secret.
pub fn signature(body: &[u8], app_secret: &str) -> String {
    format!("sha256={}", hmac_sha256_hex(app_secret.as_bytes(), &[body]))
}

/// A delivery of text messages, as Meta POSTs it (one entry, one change).
pub fn text_delivery(messages: &[TextMessage]) -> String {
    let contacts: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "profile": { "name": "Lupita" }, "wa_id": m.wa_id }))
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({ "from": m.wa_id, "id": m.wamid, "timestamp": m.timestamp.to_string(),
                    "type": "text", "text": { "body": m.text } })
        })
        .collect();
    json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": [{
        "field": "messages",
        "value": { "messaging_product": "whatsapp",
                   "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID },
                   "contacts": contacts, "messages": messages } }] }] })
    .to_string()
}
