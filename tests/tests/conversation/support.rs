use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sandbox::{GraphStandIn, LocalStack, RetellStandIn};
use shared::domain::{
    CountryId, CustomerKey, CustomerName, FormSubmission, IdempotencyKey, InboundMessage,
    MessageId, OutreachLimits, PhoneNumber, SubmissionId,
};
use shared::store::{PostgrestStore, SessionStore};

pub type TestEngine = shared::engine::BridgeEngine;

/// One customer's world: the shared local stack, and stand-ins of their own.
pub struct Bridge {
    pub retell: RetellStandIn,
    pub graph: GraphStandIn,
    pub customer: CustomerKey,
    pub phone: PhoneNumber,
    next_message: AtomicU32,
}

impl Bridge {
    pub fn new() -> Bridge {
        let phone = unique_mexican_phone();
        Bridge {
            retell: RetellStandIn::start(),
            graph: GraphStandIn::start(),
            customer: CustomerKey::from_phone(&phone),
            phone,
            next_message: AtomicU32::new(0),
        }
    }

    /// A new engine with new clients and a new store, as a cold-started Lambda builds them.
    pub fn engine(&self) -> TestEngine {
        self.engine_with_completion_timeout(self.retell.config().completion_timeout)
    }

    pub fn engine_with_completion_timeout(&self, completion_timeout: Duration) -> TestEngine {
        let retell = shared::config::RetellConfig {
            completion_timeout,
            ..self.retell.config()
        };
        sandbox::standin_engine(&sandbox::worker_config(
            LocalStack::shared(),
            retell,
            self.graph.config(),
        ))
    }

    pub fn store(&self) -> PostgrestStore {
        LocalStack::shared().store()
    }

    /// The form is submitted (recorded as form-intake does) and returns its id.
    pub async fn submit_form(&self, name: &str) -> SubmissionId {
        let submission = FormSubmission {
            idempotency_key: IdempotencyKey::parse(format!("form-{}", self.customer)).unwrap(),
            customer_key: self.customer.clone(),
            phone: self.phone.clone(),
            name: CustomerName::parse(name).unwrap(),
            fields: BTreeMap::from([("producto".to_owned(), "seguro de auto".to_owned())]),
        };
        self.store()
            .record_form_submission(&submission, OutreachLimits::DEFAULT)
            .await
            .unwrap()
            .submission_id
    }

    /// The customer writes (recorded as the webhook does), `ago` before now.
    pub async fn customer_writes(&self, text: &str, ago: TimeDelta) -> MessageId {
        self.customer_sends(Some(text), "text", Utc::now() - ago)
            .await
    }

    pub async fn customer_sends(
        &self,
        text: Option<&str>,
        message_type: &str,
        sent_at: DateTime<Utc>,
    ) -> MessageId {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        let wamid = MessageId::parse(format!("wamid.IN.{}.{n}", self.customer)).unwrap();
        let message = InboundMessage {
            wamid: wamid.clone(),
            customer_key: self.customer.clone(),
            message_type: message_type.into(),
            body: text.map(str::to_owned),
            payload: None,
            sent_at,
            // WhatsApp's form of a Mexican mobile.
            wa_id: Some(format!("521{}", &self.customer.as_str()[2..])),
            whatsapp_user_id: None,
            profile_name: Some("Lupita".into()),
        };
        // The path production takes: the webhook records a delivery with record_webhook.
        let recorded = self
            .store()
            .record_webhook(&[message], &[], &[], &[])
            .await
            .unwrap();
        assert!(recorded.messages[0].is_new);
        wamid
    }

    /// What WhatsApp accepted for this customer, as (type, text).
    pub fn whatsapp_sent(&self) -> Vec<(String, String)> {
        self.graph
            .accepted()
            .into_iter()
            .map(|m| (m.message_type, m.text))
            .collect()
    }

    pub async fn db_value(&self, sql: &str) -> String {
        let db = LocalStack::shared().database().await.unwrap();
        db.query_one(sql, &[&self.customer.as_str()])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn db_execute(&self, sql: &str) {
        let db = LocalStack::shared().database().await.unwrap();
        db.execute(sql, &[&self.customer.as_str()]).await.unwrap();
    }
}

fn unique_mexican_phone() -> PhoneNumber {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let local = (std::process::id() % 10_000) * 100 + n % 100;
    // Monterrey numbers: 81 + 8 digits.
    PhoneNumber::parse(&format!("+52 81 {local:08}"), CountryId::MX).unwrap()
}

pub fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

/// A receive as the queue hands a job to the engine: the first, with a Lambda's full time.
pub fn receipt() -> shared::queue::Receipt {
    shared::queue::Receipt {
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(180),
        ..shared::queue::Receipt::unqueued()
    }
}

// --- Voice notes, media and typing (issue 17) ---

impl Bridge {
    /// A new engine from the stand-ins' worker configuration as `adjust` changed it (a
    /// transcriber, the typing renewal, the engine's words and markers).
    pub fn engine_configured(
        &self,
        adjust: impl FnOnce(&mut shared::config::WorkerConfig),
    ) -> TestEngine {
        let mut config = sandbox::worker_config(
            LocalStack::shared(),
            self.retell.config(),
            self.graph.config(),
        );
        adjust(&mut config);
        sandbox::standin_engine(&config)
    }

    /// The customer sends `message` (Meta's message object: its `type` and that type's object;
    /// `from`, `id` and `timestamp` become this customer's), recorded as the webhook records it,
    /// its body read by the webhook's own parser (the text, the tap's title, the caption).
    pub async fn customer_sends_message(
        &self,
        mut message: serde_json::Value,
        sent_at: DateTime<Utc>,
    ) -> MessageId {
        use serde::Deserialize as _;
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        let wamid = MessageId::parse(format!("wamid.IN.{}.{n}", self.customer)).unwrap();
        let wa_id = format!("521{}", &self.customer.as_str()[2..]);
        message["from"] = serde_json::json!(wa_id);
        message["id"] = serde_json::json!(wamid);
        message["timestamp"] = serde_json::json!(sent_at.timestamp().to_string());
        let content = shared::whatsapp::webhook::MessageContent::deserialize(&message)
            .expect("a message Meta could send");
        let inbound = InboundMessage {
            wamid: wamid.clone(),
            customer_key: self.customer.clone(),
            message_type: content.message_type().to_owned(),
            body: content.text().map(str::to_owned),
            payload: Some(message),
            sent_at,
            wa_id: Some(wa_id),
            whatsapp_user_id: None,
            profile_name: Some("Lupita".into()),
        };
        let recorded = self
            .store()
            .record_webhook(&[inbound], &[], &[], &[])
            .await
            .unwrap();
        assert!(recorded.messages[0].is_new);
        wamid
    }

    /// A voice note: `audio` kept by the Graph stand-in as WhatsApp keeps the customer's media,
    /// and the `audio` message (with `voice: true`) that names it.
    pub async fn customer_sends_voice_note(
        &self,
        audio: &[u8],
        sent_at: DateTime<Utc>,
    ) -> MessageId {
        let media_id = self.graph.add_media(
            audio.to_vec(),
            sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
        );
        let message = serde_json::json!({
            "type": "audio",
            "audio": {
                "id": media_id,
                "mime_type": sandbox::transcribe_standin::VOICE_NOTE_MIME_TYPE,
                "sha256": "bm90IGNoZWNrZWQ=",
                "voice": true
            }
        });
        self.customer_sends_message(message, sent_at).await
    }
}
