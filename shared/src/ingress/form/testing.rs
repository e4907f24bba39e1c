//! What the form's tests share: a form on fakes with a fixed clock, requests built with
//! `http::Request::builder()`, and readers of the answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, Method, Request};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{FormError, FormIntake, SIGNATURE_HEADER};
use crate::config::{BrowserFormConfig, FormConfig};
use crate::domain::{AllowedFields, CountryId};
use crate::fakes::{FakeQueue, FakeStore};
use crate::ingress::{DoorError, Response};
use crate::signature::hmac_sha256_hex;

pub const SECRET: &str = "form-secret-3f9a-0c5e-4b7d-9a21-e8f6";

/// The extra fields the tests' forms may give the agent.
pub const FIELDS: &str = "producto,edad,cliente_nuevo,ciudad,comentario,notas,utm_source";

/// The status, error code and field of a refusal.
pub type Refusal = (u16, String, Option<String>);

pub fn config() -> FormConfig {
    FormConfig {
        shared_secret: SecretString::from(SECRET),
        default_country: CountryId::MX,
        fields: allowed(),
        max_body_bytes: FormConfig::DEFAULT_MAX_BODY_BYTES,
        outreach_cooldown: FormConfig::DEFAULT_OUTREACH_COOLDOWN,
        outreach_daily_limit: FormConfig::DEFAULT_OUTREACH_DAILY_LIMIT,
    }
}

/// Browser forms for Seguros Lupita, embeddable by www.example.com, with a logo and a number.
pub fn browser_config() -> BrowserFormConfig {
    let url = |text: &str| url::Url::parse(text).expect("a valid URL");
    BrowserFormConfig {
        site_key: "1x00000000000000000000AA".to_owned(),
        secret: SecretString::from("1x0000000000000000000000000000000AA"),
        verify_url: url(BrowserFormConfig::DEFAULT_VERIFY_URL),
        script_url: url(BrowserFormConfig::DEFAULT_SCRIPT_URL),
        allowed_origins: vec!["https://www.example.com".to_owned()],
        limit_per_hour: BrowserFormConfig::DEFAULT_LIMIT_PER_HOUR,
        business_name: "Seguros Lupita".to_owned(),
        brand_color: BrowserFormConfig::DEFAULT_BRAND_COLOR.to_owned(),
        logo_url: Some(url("https://cdn.example.com/lupita/logo.png")),
        consent_text: BrowserFormConfig::DEFAULT_CONSENT_TEXT.to_owned(),
        whatsapp_number: Some("5215512345678".to_owned()),
    }
}

pub fn allowed() -> AllowedFields {
    AllowedFields::parse(FIELDS).expect("valid field names")
}

/// `X-Form-Signature` of `body` signed with `secret` at `t` (unix seconds).
pub fn sign_at(secret: &str, t: u64, body: &[u8]) -> String {
    let signed = [format!("{t}.").as_bytes(), body].concat();
    format!(
        "t={t},v1={}",
        hmac_sha256_hex(secret.as_bytes(), &[signed.as_slice()])
    )
}

/// Unix seconds of `time`.
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

pub struct Harness {
    pub intake: FormIntake<FakeStore, FakeQueue>,
    pub store: FakeStore,
    pub queue: FakeQueue,
}

/// 2026-11-25 12:00:30 UTC: 30 s into a 10-minute period.
pub fn noon() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_608_030)
}

pub fn harness_with(config: FormConfig) -> Harness {
    let (store, queue) = (FakeStore::default(), FakeQueue::default());
    Harness {
        intake: FormIntake::new(store.clone(), queue.clone(), config).with_clock(noon),
        store,
        queue,
    }
}

pub fn harness() -> Harness {
    harness_with(config())
}

pub fn bearer() -> String {
    format!("Bearer {SECRET}")
}

/// `POST /form`, without headers.
pub fn post() -> http::request::Builder {
    Request::builder().method(Method::POST).uri("/form")
}

/// `POST /form` as JSON with the bearer token.
pub fn post_json() -> http::request::Builder {
    post()
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, bearer())
}

impl Harness {
    pub async fn send(
        &self,
        request: http::request::Builder,
        body: impl Into<Vec<u8>>,
    ) -> Response {
        let request = request.body(body.into()).expect("a valid test request");
        self.intake.handle(&request).await
    }

    /// Posts the form as JSON with the bearer token.
    pub async fn json(&self, form: &Value) -> Response {
        self.send(post_json(), form.to_string()).await
    }

    /// Posts the form urlencoded, signed now (at [`noon`]).
    pub async fn urlencoded(&self, form: &str) -> Response {
        let signature = sign_at(SECRET, unix(noon()), form.as_bytes());
        let request = post()
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(SIGNATURE_HEADER, signature);
        self.send(request, form).await
    }
}

pub fn valid_json() -> Value {
    json!({
        "name": "  Lupita Pérez ",
        "phone": "55 1234 5678",
        "consent": true,
        "producto": "seguro de auto",
        "edad": 34,
        "cliente_nuevo": false,
    })
}

pub fn with(mut value: Value, field: &str, v: Value) -> Value {
    value[field] = v;
    value
}

pub fn without(mut value: Value, field: &str) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove(field);
    }
    value
}

pub fn body(response: &Response) -> Value {
    serde_json::from_str(response.body()).expect("a JSON answer")
}

pub fn header(response: &Response, name: HeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The status, error code and field of an error answer.
pub fn error(response: &Response) -> Refusal {
    let error = &body(response)["error"];
    (
        response.status().as_u16(),
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["field"].as_str().map(str::to_owned),
    )
}

/// The status, error code and field a refusal answers with.
pub fn refusal(error: &FormError) -> Refusal {
    (
        error.status().as_u16(),
        error.code().to_owned(),
        error.field().map(str::to_owned),
    )
}

pub fn err(status: u16, code: &str, field: Option<&str>) -> Refusal {
    (status, code.to_owned(), field.map(str::to_owned))
}
