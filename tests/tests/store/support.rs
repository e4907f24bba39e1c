use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use sandbox::LocalStack;
use shared::domain::{
    CustomerKey, CustomerName, FormSubmission, IdempotencyKey, InboundMessage, MessageId,
    PhoneNumber,
};

/// The attempts claim_turn allows (TURN_MAX_ATTEMPTS's default).
pub const MAX_ATTEMPTS: u32 = 5;

pub fn stack() -> &'static LocalStack {
    LocalStack::shared()
}

/// A customer no other test uses: a US number built from the process id and a counter.
pub fn new_customer() -> CustomerKey {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let unique = (std::process::id() % 10_000) * 1_000 + n % 1_000;
    CustomerKey::from_whatsapp_id(&format!("1555{unique:07}")).unwrap()
}

pub fn wamid(label: &str) -> MessageId {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    MessageId::parse(format!("wamid.test.{}.{n}.{label}", std::process::id())).unwrap()
}

pub fn at(seconds_after_base: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000, 0).unwrap() + TimeDelta::seconds(seconds_after_base)
}

pub fn text_from(
    customer: &CustomerKey,
    wamid: MessageId,
    body: &str,
    sent_at: DateTime<Utc>,
) -> InboundMessage {
    InboundMessage {
        wamid,
        customer_key: customer.clone(),
        message_type: "text".into(),
        body: Some(body.into()),
        payload: Some(serde_json::json!({ "type": "text", "text": { "body": body } })),
        sent_at,
        wa_id: Some(customer.as_str().into()),
        whatsapp_user_id: None,
        profile_name: None,
    }
}

pub fn form(phone: &PhoneNumber, name: &str, key: &str) -> FormSubmission {
    FormSubmission {
        idempotency_key: IdempotencyKey::parse(format!("{key}-{}", std::process::id())).unwrap(),
        customer_key: CustomerKey::from_phone(phone),
        phone: phone.clone(),
        name: CustomerName::parse(name).unwrap(),
        fields: BTreeMap::from([("product".to_owned(), "seguro de auto".to_owned())]),
    }
}

/// The single number a `select count(*) …` returns, read behind the API.
pub async fn count(sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> i64 {
    let db = stack().database().await.unwrap();
    db.query_one(sql, params).await.unwrap().get(0)
}
