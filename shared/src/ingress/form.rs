//! `POST /form`: the web form's submissions.
//!
//! A submission is checked in this order, each step answering with its own status and, where
//! one field is at fault, naming it: the method (405; `OPTIONS` is the CORS preflight), the size
//! (413), the credentials (401: `Authorization: Bearer <FORM_SHARED_SECRET>` or
//! `X-Form-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, both compared in constant time),
//! the content type (415), the `Idempotency-Key` header (400), the body's syntax (400), then the
//! fields (422). An accepted form is recorded once per idempotency key and its conversation
//! queued; the answer is 202 with the submission's id and status.
//!
//! Without an `Idempotency-Key` the key is derived from what was submitted (customer, name,
//! extra fields) and the [`DEDUPLICATION_PERIOD`] it arrived in, so a form sent twice within
//! minutes (a double click, a retried request) starts one conversation.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::HttpAnswer;
use crate::config::FormConfig;
use crate::domain::{
    CountryId, CustomerKey, CustomerKeyError, FormSubmission, IdempotencyKey, PhoneNumber,
    SubmissionStatus,
};
use crate::queue::{QueueError, TurnJob, TurnQueue};
use crate::store::{SessionStore, StoreError};

/// The longest name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = 100;
/// How many fields besides `name`, `phone` and `consent` a form may carry.
pub const MAX_EXTRA_FIELDS: usize = 20;
/// The longest extra field name; names are `[a-z0-9_]`.
pub const MAX_FIELD_NAME_CHARS: usize = 40;
/// The longest extra field value, in characters.
pub const MAX_FIELD_VALUE_CHARS: usize = 500;
/// Submissions of the same form within one such period (aligned to the clock) are one
/// submission, when the caller sends no `Idempotency-Key`.
pub const DEDUPLICATION_PERIOD: Duration = Duration::from_secs(10 * 60);
/// Dynamic variables the engine sets itself: a form field may not take their names.
pub const RESERVED_FIELDS: [&str; 3] = [
    "customer_name",
    "conversation_continues",
    "previous_conversation",
];

/// The longest phone input looked at; longer is not a phone number.
const MAX_PHONE_CHARS: usize = 40;
/// What a 503 asks the caller to wait, in seconds.
const RETRY_AFTER_SECONDS: &str = "5";
/// How long a browser may cache a preflight, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";
const ALLOWED_METHODS: &str = "POST, OPTIONS";
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, x-form-signature";
/// Values of `consent` that mean yes in a urlencoded form (a checkbox sends `on`).
const CONSENT_WORDS: [&str; 4] = ["true", "on", "1", "yes"];

type HmacSha256 = Hmac<Sha256>;

/// The `POST /form` endpoint, free of any HTTP framework.
pub struct FormIntake<S, Q> {
    store: S,
    queue: Q,
    config: FormConfig,
    clock: fn() -> SystemTime,
}

impl<S: SessionStore, Q: TurnQueue> FormIntake<S, Q> {
    pub fn new(store: S, queue: Q, config: FormConfig) -> Self {
        Self {
            store,
            queue,
            config,
            clock: SystemTime::now,
        }
    }

    /// The clock that places a submission in its [`DEDUPLICATION_PERIOD`] (tests).
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Answers one request: its method, headers (names in any case) and raw body.
    #[tracing::instrument(
        name = "form_intake",
        skip_all,
        fields(method = %method, bytes = body.len(), customer = tracing::field::Empty)
    )]
    pub async fn handle(&self, method: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
        let headers = Headers(headers);
        let origin = headers.get("origin");
        let cors_origin = origin.and_then(|o| self.allowed_origin(o));
        let mut answer = match method {
            "POST" => match self.submit(&headers, body).await {
                Ok(answer) => answer,
                Err(rejection) => rejection.into_answer(),
            },
            "OPTIONS" => preflight(origin, cors_origin.is_some()),
            other => {
                tracing::warn!(method = other, "method not allowed");
                let mut answer = HttpAnswer::error(
                    405,
                    "method_not_allowed",
                    &format!("{other} is not allowed here: POST the form"),
                    None,
                );
                answer.headers.push(("allow", ALLOWED_METHODS.to_owned()));
                answer
            }
        };
        if let Some(allowed) = cors_origin {
            answer
                .headers
                .push(("access-control-allow-origin", allowed.to_owned()));
            answer
                .headers
                .push(("access-control-expose-headers", "retry-after".to_owned()));
        }
        if self.answer_varies_by_origin() {
            answer.headers.push(("vary", "origin".to_owned()));
        }
        answer
    }

    async fn submit(&self, headers: &Headers<'_>, body: &[u8]) -> Result<HttpAnswer, Rejection> {
        if body.len() > self.config.max_body_bytes {
            return Err(Rejection::new(
                413,
                "payload_too_large",
                format!(
                    "the form is {} bytes; at most {} are accepted",
                    body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        self.authenticate(headers, body)?;
        let encoding = Encoding::of(headers.get("content-type"))?;
        let client_key = match headers.get("idempotency-key") {
            Some(key) => Some(parse_idempotency_key(key)?),
            None => None,
        };
        let form = encoding.read(body, self.config.default_country)?;
        let customer_key = CustomerKey::from_phone(&form.phone);
        tracing::Span::current().record("customer", tracing::field::display(customer_key.masked()));

        let (idempotency_key, key_source) = match client_key {
            Some(key) => (key, "header"),
            None => (
                derived_idempotency_key(&customer_key, &form.name, &form.fields, (self.clock)()),
                "derived",
            ),
        };
        let submission = FormSubmission {
            idempotency_key,
            customer_key: customer_key.clone(),
            phone: form.phone,
            name: form.name,
            fields: form.fields,
        };
        let recorded = match self.store.record_form_submission(&submission).await {
            Ok(recorded) => recorded,
            Err(StoreError::Conflict(_)) => {
                tracing::warn!(key_source, "idempotency key reused for another customer");
                return Err(Rejection::new(
                    409,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for another submission; send a new key for a new submission",
                )
                .field((key_source == "header").then(|| "Idempotency-Key".to_owned())));
            }
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::error!(%error, "could not record the submission");
                return Err(Rejection::unavailable(
                    "could not record the submission; retry",
                ));
            }
            Err(error) => {
                tracing::error!(%error, "the store refused the submission");
                return Err(Rejection::new(
                    500,
                    "internal_error",
                    "the submission could not be recorded",
                ));
            }
        };
        // A submission still queued may be one whose job never reached the queue (an earlier
        // enqueue failed): queue it again. The queue drops a repeat of the same id.
        if recorded.is_new || recorded.status == SubmissionStatus::Queued {
            let job = TurnJob::StartConversation {
                customer_key,
                submission_id: recorded.submission_id,
            };
            match self
                .queue
                .enqueue(&job, &recorded.submission_id.to_string())
                .await
            {
                Ok(()) => {}
                Err(error @ QueueError::Unavailable(_)) => {
                    tracing::error!(%error, submission_id = %recorded.submission_id, "could not queue the conversation");
                    return Err(Rejection::unavailable(
                        "the submission was recorded but its conversation could not be queued; retry",
                    ));
                }
                Err(error @ QueueError::Rejected(_)) => {
                    tracing::error!(%error, submission_id = %recorded.submission_id, "the queue refused the conversation");
                    return Err(Rejection::new(
                        500,
                        "internal_error",
                        "the conversation could not be queued",
                    ));
                }
            }
        }
        let status = status_name(recorded.status);
        tracing::info!(
            submission_id = %recorded.submission_id,
            is_new = recorded.is_new,
            status,
            key_source,
            "form submission accepted"
        );
        Ok(HttpAnswer::json(
            202,
            &json!({ "submission_id": recorded.submission_id, "status": status }),
        ))
    }

    /// A bearer token equal to the secret, or a signature of the body with it. Both compared
    /// in constant time: the token through HMACs of both strings, the signature by `verify_slice`.
    fn authenticate(&self, headers: &Headers<'_>, body: &[u8]) -> Result<(), Rejection> {
        let secret = self.config.shared_secret.expose_secret().as_bytes();
        let bearer = headers.get("authorization").map(bearer_token);
        let signature = headers.get("x-form-signature");
        if let Some(Some(token)) = bearer {
            let expected = hmac(secret, secret).finalize().into_bytes();
            if hmac(secret, token.as_bytes())
                .verify_slice(&expected)
                .is_ok()
            {
                return Ok(());
            }
        }
        if let Some(signature) = signature {
            let digest = signature
                .trim()
                .strip_prefix("sha256=")
                .and_then(|hex_digest| hex::decode(hex_digest).ok());
            if let Some(digest) = digest {
                if hmac(secret, body).verify_slice(&digest).is_ok() {
                    return Ok(());
                }
            }
        }
        let message = if bearer.is_none() && signature.is_none() {
            "send Authorization: Bearer <shared secret> or X-Form-Signature: sha256=<hex HMAC-SHA256 of the body>"
        } else {
            "the credentials are not valid"
        };
        tracing::warn!(
            bearer = bearer.is_some(),
            signature = signature.is_some(),
            "form refused: not authenticated"
        );
        let mut rejection = Rejection::new(401, "unauthorized", message);
        rejection
            .headers
            .push(("www-authenticate", "Bearer".to_owned()));
        Err(rejection)
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin`, if it may post here.
    fn allowed_origin(&self, origin: &str) -> Option<&str> {
        let origin = origin.trim().trim_end_matches('/');
        self.config
            .allowed_origins
            .iter()
            .find(|allowed| *allowed == "*" || allowed.eq_ignore_ascii_case(origin))
            .map(String::as_str)
    }

    /// With a list of origins (not `*`), the answer depends on `Origin`: caches must know.
    fn answer_varies_by_origin(&self) -> bool {
        !self.config.allowed_origins.is_empty()
            && !self.config.allowed_origins.iter().any(|o| o == "*")
    }
}

/// The preflight: allowed origins learn what they may send; others are refused.
fn preflight(origin: Option<&str>, allowed: bool) -> HttpAnswer {
    let mut answer = match origin {
        Some(_) if !allowed => {
            tracing::warn!("preflight from an origin that is not allowed");
            return HttpAnswer::error(
                403,
                "origin_not_allowed",
                "this origin may not post the form (see FORM_ALLOWED_ORIGINS)",
                None,
            );
        }
        _ => HttpAnswer::text(204, ""),
    };
    answer.headers.push(("allow", ALLOWED_METHODS.to_owned()));
    if allowed {
        answer.headers.extend([
            ("access-control-allow-methods", ALLOWED_METHODS.to_owned()),
            ("access-control-allow-headers", ALLOWED_HEADERS.to_owned()),
            ("access-control-max-age", PREFLIGHT_MAX_AGE.to_owned()),
        ]);
    }
    answer
}

/// The content type, the body's syntax and the fields checked as `POST /form` checks them
/// (without the credentials and the `Idempotency-Key`): the form, or the 4xx answer it gets.
pub fn read_form(
    content_type: Option<&str>,
    body: &[u8],
    default_country: CountryId,
) -> Result<ValidForm, HttpAnswer> {
    Encoding::of(content_type)
        .and_then(|encoding| encoding.read(body, default_country))
        .map_err(Rejection::into_answer)
}

/// The idempotency key of a submission sent without one: a SHA-256 of the customer, the name,
/// the extra fields (sorted, as the map keeps them) and the [`DEDUPLICATION_PERIOD`] `at` falls
/// in. Every part is length-prefixed, so no two different forms hash the same bytes.
pub fn derived_idempotency_key(
    customer: &CustomerKey,
    name: &str,
    fields: &BTreeMap<String, String>,
    at: SystemTime,
) -> IdempotencyKey {
    let period = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
        / DEDUPLICATION_PERIOD.as_secs();
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(b"form-intake/v1");
    part(customer.as_str().as_bytes());
    part(name.as_bytes());
    for (field, value) in fields {
        part(field.as_bytes());
        part(value.as_bytes());
    }
    part(&period.to_be_bytes());
    IdempotencyKey::parse(format!("form-{}", hex::encode(hasher.finalize())))
        .expect("69 printable characters")
}

fn hmac(key: &[u8], message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac
}

/// `Bearer <token>` (the scheme in any case) → the token.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn parse_idempotency_key(key: &str) -> Result<IdempotencyKey, Rejection> {
    let key = key.trim();
    if key.chars().count() > 200 {
        return Err(Rejection::new(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 200 characters",
        )
        .field(Some("Idempotency-Key".to_owned())));
    }
    IdempotencyKey::parse(key).map_err(|_| {
        Rejection::new(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 200 characters without control characters",
        )
        .field(Some("Idempotency-Key".to_owned()))
    })
}

fn status_name(status: SubmissionStatus) -> &'static str {
    match status {
        SubmissionStatus::Queued => "queued",
        SubmissionStatus::Started => "started",
        SubmissionStatus::Failed => "failed",
    }
}

/// Header lookup by name, in any case; the first of repeated headers wins.
struct Headers<'a>(&'a [(&'a str, &'a str)]);

impl Headers<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A 4xx or 5xx answer on its way out.
#[derive(Debug)]
struct Rejection {
    status: u16,
    code: &'static str,
    message: String,
    field: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    fn field(mut self, field: Option<String>) -> Self {
        self.field = field;
        self
    }

    /// 422 for one field.
    fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(422, code, message).field(Some(printable_field_name(field)))
    }

    fn unavailable(message: &str) -> Self {
        let mut rejection = Self::new(503, "unavailable", message);
        rejection
            .headers
            .push(("retry-after", RETRY_AFTER_SECONDS.to_owned()));
        rejection
    }

    fn into_answer(self) -> HttpAnswer {
        if self.status < 500 {
            tracing::warn!(
                status = self.status,
                code = self.code,
                field = self.field.as_deref(),
                "form refused"
            );
        }
        let mut answer =
            HttpAnswer::error(self.status, self.code, &self.message, self.field.as_deref());
        answer.headers.extend(self.headers);
        answer
    }
}

/// A field name as an error may echo it: bounded, without control characters.
fn printable_field_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control())
        .take(MAX_FIELD_NAME_CHARS + 20)
        .collect()
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    UrlEncoded,
}

impl Encoding {
    /// `application/json` or `application/x-www-form-urlencoded`, with parameters; a charset,
    /// if named, must be UTF-8.
    fn of(content_type: Option<&str>) -> Result<Encoding, Rejection> {
        let unsupported = |what: String| {
            Rejection::new(
                415,
                "unsupported_media_type",
                format!(
                    "{what}: send application/json or application/x-www-form-urlencoded (UTF-8)"
                ),
            )
        };
        let Some(content_type) = content_type else {
            return Err(unsupported("no Content-Type".to_owned()));
        };
        let mut parts = content_type.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let encoding = match media_type.as_str() {
            "application/json" => Encoding::Json,
            "application/x-www-form-urlencoded" => Encoding::UrlEncoded,
            _ => {
                let shown: String = media_type.chars().take(100).collect();
                return Err(unsupported(format!("Content-Type {shown:?}")));
            }
        };
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=') {
                let value = value.trim().trim_matches('"');
                if name.trim().eq_ignore_ascii_case("charset")
                    && !value.eq_ignore_ascii_case("utf-8")
                    && !value.eq_ignore_ascii_case("utf8")
                {
                    let shown: String = value.chars().take(40).collect();
                    return Err(unsupported(format!("charset {shown:?}")));
                }
            }
        }
        Ok(encoding)
    }

    /// The body's syntax, then its fields.
    fn read(self, body: &[u8], country: CountryId) -> Result<ValidForm, Rejection> {
        let input = self.parse(body)?;
        ValidForm::from_input(input, country, self)
    }

    /// The body's fields, in order, before validation.
    fn parse(self, body: &[u8]) -> Result<Vec<(String, Input)>, Rejection> {
        let malformed = |message: String| Rejection::new(400, "malformed_body", message);
        match self {
            Encoding::Json => {
                let value: Value = serde_json::from_slice(body)
                    .map_err(|e| malformed(format!("the body is not valid JSON: {e}")))?;
                let Value::Object(object) = value else {
                    return Err(malformed("the body must be a JSON object".to_owned()));
                };
                Ok(object
                    .into_iter()
                    .map(|(name, value)| (name, Input::from_json(value)))
                    .collect())
            }
            Encoding::UrlEncoded => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| malformed("the body is not UTF-8".to_owned()))?;
                let mut fields: Vec<(String, Input)> = Vec::new();
                for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
                    if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                        return Err(malformed(
                            "the body's percent-encoded bytes are not UTF-8".to_owned(),
                        ));
                    }
                    if fields.iter().any(|(seen, _)| *seen == name) {
                        return Err(Rejection::invalid(
                            &name,
                            "invalid_field",
                            format!("{} is given more than once", printable_field_name(&name)),
                        ));
                    }
                    fields.push((name.into_owned(), Input::Text(value.into_owned())));
                }
                Ok(fields)
            }
        }
    }
}

/// One field's value as sent.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    Text(String),
    Bool(bool),
    Number(String),
    Null,
    /// An object or an array.
    Nested,
}

impl Input {
    fn from_json(value: Value) -> Input {
        match value {
            Value::String(text) => Input::Text(text),
            Value::Bool(b) => Input::Bool(b),
            Value::Number(n) => Input::Number(n.to_string()),
            Value::Null => Input::Null,
            Value::Array(_) | Value::Object(_) => Input::Nested,
        }
    }
}

/// A form that passed every check.
#[derive(Debug)]
pub struct ValidForm {
    /// The name, trimmed.
    pub name: String,
    /// The customer's mobile, in E.164 form.
    pub phone: PhoneNumber,
    /// The extra fields (the agent's dynamic variables), by name.
    pub fields: BTreeMap<String, String>,
}

impl ValidForm {
    fn from_input(
        input: Vec<(String, Input)>,
        country: CountryId,
        encoding: Encoding,
    ) -> Result<ValidForm, Rejection> {
        let mut name = None;
        let mut phone = None;
        let mut consent = None;
        let mut extra = Vec::new();
        for (field, value) in input {
            match field.as_str() {
                "name" => name = Some(value),
                "phone" => phone = Some(value),
                "consent" => consent = Some(value),
                _ if value == Input::Null => {}
                _ => extra.push((field, value)),
            }
        }
        let name = valid_name(name)?;
        let phone = valid_phone(phone, country)?;
        check_consent(consent, encoding)?;
        let fields = valid_fields(extra)?;
        Ok(ValidForm {
            name,
            phone,
            fields,
        })
    }
}

fn valid_name(input: Option<Input>) -> Result<String, Rejection> {
    let missing = || Rejection::invalid("name", "missing_field", "name is required");
    let name = match input {
        None | Some(Input::Null) => return Err(missing()),
        Some(Input::Text(text)) => text.trim().to_owned(),
        Some(_) => {
            return Err(Rejection::invalid(
                "name",
                "invalid_field",
                "name must be text",
            ));
        }
    };
    if name.is_empty() {
        return Err(missing());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Rejection::invalid(
            "name",
            "invalid_field",
            format!("name must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Rejection::invalid(
            "name",
            "invalid_field",
            "name must not contain control characters (line breaks, tabs, …)",
        ));
    }
    Ok(name)
}

/// A number of `country` (or any, with `+`) that WhatsApp can reach: valid, and a mobile
/// (or a number its country does not tell apart from a mobile, as in Mexico or the USA).
fn valid_phone(input: Option<Input>, country: CountryId) -> Result<PhoneNumber, Rejection> {
    let invalid = |message: String| Rejection::invalid("phone", "invalid_field", message);
    let text = match input {
        None | Some(Input::Null) => None,
        Some(Input::Text(text)) => Some(text.trim().to_owned()),
        Some(Input::Number(digits)) => Some(digits),
        Some(_) => return Err(invalid("phone must be text".to_owned())),
    };
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Err(Rejection::invalid(
            "phone",
            "missing_field",
            "phone is required",
        ));
    };
    if text.chars().count() > MAX_PHONE_CHARS {
        return Err(invalid(format!(
            "phone must be at most {MAX_PHONE_CHARS} characters"
        )));
    }
    let (text, parsed) = match PhoneNumber::parse(&text, country) {
        // WhatsApp shows Mexican mobiles as +52 1 …, the form of before 2019 that numbering
        // plans no longer accept: read them without the 1, as the customer key does.
        Err(CustomerKeyError::Invalid { e164, .. })
            if e164.len() == 14 && e164.starts_with("+521") =>
        {
            let current = format!("+52{}", &e164[4..]);
            let parsed = PhoneNumber::parse(&current, country);
            (current, parsed)
        }
        parsed => (text, parsed),
    };
    let phone = parsed.map_err(|error| match error {
        CustomerKeyError::Invalid { e164, .. } => invalid(format!(
            "phone is not a valid number (read as {e164}); numbers without + are read as {country:?} numbers"
        )),
        _ => invalid(format!(
            "phone is not a phone number; write it with its country code (+52 55 1234 5678) or as a {country:?} number"
        )),
    })?;
    let number_type = phonenumber::parse(Some(country), &text)
        .map(|parsed| parsed.number_type(&phonenumber::metadata::DATABASE))
        .unwrap_or(phonenumber::Type::Unknown);
    match number_type {
        phonenumber::Type::Mobile | phonenumber::Type::FixedLineOrMobile => Ok(phone),
        other => Err(invalid(format!(
            "phone must be a mobile number that can receive WhatsApp messages; {} is {}",
            phone,
            type_name(other)
        ))),
    }
}

/// "a landline", "a toll free number", …
fn type_name(number_type: phonenumber::Type) -> String {
    match number_type {
        phonenumber::Type::FixedLine => "a landline".to_owned(),
        phonenumber::Type::Unknown => "not a mobile number".to_owned(),
        other => {
            let words = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_else(|| format!("{other:?}"));
            format!("a {words} number")
        }
    }
}

fn check_consent(input: Option<Input>, encoding: Encoding) -> Result<(), Rejection> {
    let given = match input {
        None | Some(Input::Null) => {
            return Err(Rejection::invalid(
                "consent",
                "missing_field",
                "consent is required: the customer must agree to be contacted on WhatsApp",
            ));
        }
        Some(Input::Bool(b)) => b,
        Some(Input::Text(text)) if encoding == Encoding::UrlEncoded => CONSENT_WORDS
            .iter()
            .any(|word| text.trim().eq_ignore_ascii_case(word)),
        Some(_) => false,
    };
    if given {
        Ok(())
    } else {
        let expected = match encoding {
            Encoding::Json => "true",
            Encoding::UrlEncoded => "true, on, 1 or yes",
        };
        Err(Rejection::invalid(
            "consent",
            "invalid_field",
            format!(
                "consent must be {expected}: the customer must agree to be contacted on WhatsApp"
            ),
        ))
    }
}

/// Extra fields → the agent's dynamic variables: bounded in number, name and size, text only.
fn valid_fields(extra: Vec<(String, Input)>) -> Result<BTreeMap<String, String>, Rejection> {
    if extra.len() > MAX_EXTRA_FIELDS {
        return Err(Rejection::new(
            422,
            "too_many_fields",
            format!(
                "at most {MAX_EXTRA_FIELDS} fields besides name, phone and consent, got {}",
                extra.len()
            ),
        ));
    }
    let mut fields = BTreeMap::new();
    for (field, value) in extra {
        let invalid = |message: String| Rejection::invalid(&field, "invalid_field", message);
        let well_named = (1..=MAX_FIELD_NAME_CHARS).contains(&field.len())
            && field
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_named {
            return Err(invalid(format!(
                "{:?} is not a field name: 1 to {MAX_FIELD_NAME_CHARS} lowercase letters, digits or underscores",
                printable_field_name(&field)
            )));
        }
        if RESERVED_FIELDS.contains(&field.as_str()) {
            return Err(invalid(format!(
                "{field} is set by the bridge itself; give the field another name"
            )));
        }
        let value = match value {
            Input::Text(text) => text.trim().to_owned(),
            Input::Number(number) => number,
            Input::Bool(b) => b.to_string(),
            Input::Nested => {
                return Err(invalid(format!(
                    "{field} must be text, a number or true/false, not an object or a list"
                )));
            }
            Input::Null => continue,
        };
        if value.chars().count() > MAX_FIELD_VALUE_CHARS {
            return Err(invalid(format!(
                "{field} must be at most {MAX_FIELD_VALUE_CHARS} characters"
            )));
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(format!(
                "{field} must not contain control characters"
            )));
        }
        fields.insert(field, value);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;
    use crate::domain::SubmissionId;
    use crate::fakes::{FakeQueue, FakeStore};
    use crate::store::PostgrestError;

    const SECRET: &str = "form-secret-3f9a";
    const ORIGIN: &str = "https://www.example.com";

    // ---- helpers ----

    fn config() -> FormConfig {
        FormConfig {
            shared_secret: SecretString::from(SECRET),
            default_country: CountryId::MX,
            allowed_origins: vec![ORIGIN.to_owned(), "http://localhost:8080".to_owned()],
            max_body_bytes: FormConfig::DEFAULT_MAX_BODY_BYTES,
        }
    }

    struct Harness {
        intake: FormIntake<FakeStore, FakeQueue>,
        store: FakeStore,
        queue: FakeQueue,
    }

    fn noon() -> SystemTime {
        // 2026-11-25 12:00:30 UTC: 30 s into a 10-minute period.
        UNIX_EPOCH + Duration::from_secs(1_795_608_030)
    }

    fn harness_with(config: FormConfig) -> Harness {
        let (store, queue) = (FakeStore::default(), FakeQueue::default());
        Harness {
            intake: FormIntake::new(store.clone(), queue.clone(), config).with_clock(noon),
            store,
            queue,
        }
    }

    fn harness() -> Harness {
        harness_with(config())
    }

    fn bearer() -> String {
        format!("Bearer {SECRET}")
    }

    fn sign(body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(hmac(SECRET.as_bytes(), body).finalize().into_bytes())
        )
    }

    fn valid_json() -> Value {
        json!({
            "name": "  Lupita Pérez ",
            "phone": "55 1234 5678",
            "consent": true,
            "producto": "seguro de auto",
            "edad": 34,
            "cliente_nuevo": false,
        })
    }

    impl Harness {
        async fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
            self.intake.handle("POST", headers, body).await
        }

        /// Posts JSON with the bearer token and any extra headers.
        async fn post_json(&self, body: &Value, extra: &[(&str, &str)]) -> HttpAnswer {
            let auth = bearer();
            let mut headers = vec![
                ("Content-Type", "application/json"),
                ("Authorization", auth.as_str()),
            ];
            headers.extend_from_slice(extra);
            self.post(&headers, body.to_string().as_bytes()).await
        }

        async fn post_form(&self, body: &str) -> HttpAnswer {
            let signature = sign(body.as_bytes());
            self.post(
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-form-signature", &signature),
                ],
                body.as_bytes(),
            )
            .await
        }
    }

    fn body(answer: &HttpAnswer) -> Value {
        serde_json::from_str(&answer.body).unwrap()
    }

    fn header<'a>(answer: &'a HttpAnswer, name: &str) -> Option<&'a str> {
        answer
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status, error code and field of an error answer.
    fn error(answer: &HttpAnswer) -> (u16, String, Option<String>) {
        let error = &body(answer)["error"];
        (
            answer.status,
            error["code"].as_str().unwrap_or_default().to_owned(),
            error["field"].as_str().map(str::to_owned),
        )
    }

    fn err(status: u16, code: &str, field: Option<&str>) -> (u16, String, Option<String>) {
        (status, code.to_owned(), field.map(str::to_owned))
    }

    fn with(mut value: Value, field: &str, v: Value) -> Value {
        value[field] = v;
        value
    }

    fn without(mut value: Value, field: &str) -> Value {
        value.as_object_mut().unwrap().remove(field);
        value
    }

    // ---- success ----

    #[tokio::test]
    async fn a_valid_json_form_is_recorded_queued_and_answered_202() {
        let h = harness();
        let answer = h.post_json(&valid_json(), &[]).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(answer.content_type, "application/json");
        let reply = body(&answer);
        assert_eq!(reply["status"], "queued");

        let recorded = h.store.recorded();
        assert_eq!(recorded.len(), 1);
        let submission = &recorded[0];
        assert_eq!(submission.name, "Lupita Pérez", "trimmed");
        assert_eq!(submission.phone.as_str(), "+525512345678");
        assert_eq!(submission.customer_key.as_str(), "525512345678");
        assert_eq!(
            submission.fields,
            BTreeMap::from([
                ("cliente_nuevo".to_owned(), "false".to_owned()),
                ("edad".to_owned(), "34".to_owned()),
                ("producto".to_owned(), "seguro de auto".to_owned()),
            ]),
            "numbers and booleans become text; name, phone and consent are not fields"
        );
        assert!(submission.idempotency_key.as_str().starts_with("form-"));

        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1);
        let (job, dedup) = &jobs[0];
        let TurnJob::StartConversation {
            customer_key,
            submission_id,
        } = job
        else {
            panic!("{job:?}")
        };
        assert_eq!(customer_key.as_str(), "525512345678");
        assert_eq!(reply["submission_id"], submission_id.to_string());
        assert_eq!(
            *dedup,
            submission_id.to_string(),
            "dedup id = submission id"
        );
    }

    #[tokio::test]
    async fn a_urlencoded_form_with_a_signature_and_a_checkbox_is_accepted() {
        let h = harness();
        let form = "name=Jos%C3%A9+Luis&phone=%2B52+1+81+2345+6789&consent=on&ciudad=Monterrey&comentario=hola%0Aadi%C3%B3s";
        let answer = h.post_form(form).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        let submission = &h.store.recorded()[0];
        assert_eq!(submission.name, "José Luis");
        assert_eq!(submission.customer_key.as_str(), "528123456789");
        assert_eq!(submission.fields["ciudad"], "Monterrey");
        assert_eq!(submission.fields["comentario"], "hola\nadiós");
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn every_consent_word_of_a_urlencoded_form_counts_and_others_do_not() {
        for word in ["true", "on", "1", "yes", "YES", "On"] {
            let h = harness();
            let answer = h
                .post_form(&format!("name=Ana&phone=5512345678&consent={word}"))
                .await;
            assert_eq!(answer.status, 202, "{word}: {}", answer.body);
        }
        for word in ["false", "off", "0", "no", ""] {
            let h = harness();
            let answer = h
                .post_form(&format!("name=Ana&phone=5512345678&consent={word}"))
                .await;
            assert_eq!(
                error(&answer),
                err(422, "invalid_field", Some("consent")),
                "{word}"
            );
        }
    }

    #[tokio::test]
    async fn content_type_parameters_and_header_case_do_not_matter() {
        let h = harness();
        let body = valid_json().to_string();
        let auth = bearer();
        let answer = h
            .post(
                &[
                    ("CONTENT-TYPE", "Application/JSON; charset=UTF-8"),
                    ("authorization", &auth),
                ],
                body.as_bytes(),
            )
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        let lower_scheme = format!("bearer {SECRET}");
        let answer = h
            .post(
                &[
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded;charset=utf-8",
                    ),
                    ("Authorization", &lower_scheme),
                ],
                b"name=Ana&phone=5512345678&consent=1",
            )
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }

    // ---- method, size, auth, type, syntax ----

    #[tokio::test]
    async fn other_methods_get_405_naming_the_allowed_ones() {
        let h = harness();
        for method in ["GET", "PUT", "DELETE", "post"] {
            let answer = h.intake.handle(method, &[], b"").await;
            assert_eq!(error(&answer), err(405, "method_not_allowed", None));
            assert_eq!(header(&answer, "allow"), Some("POST, OPTIONS"));
        }
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let h = harness_with(FormConfig {
            max_body_bytes: 200,
            ..config()
        });
        let big = with(valid_json(), "notas", json!("x".repeat(150)));
        let answer = h.post_json(&big, &[]).await;
        assert_eq!(error(&answer), err(413, "payload_too_large", None));
        // The default limit is 64 KiB.
        let h = harness();
        let answer = h
            .post_json(&with(valid_json(), "notas", json!("x".repeat(70_000))), &[])
            .await;
        assert_eq!(error(&answer), err(413, "payload_too_large", None));
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn missing_or_wrong_credentials_get_401() {
        let h = harness();
        let body = valid_json().to_string();
        let ct = ("Content-Type", "application/json");
        let wrong_bearer = format!("Bearer {SECRET}x");
        let prefix_bearer = format!("Bearer {}", &SECRET[..5]);
        let other_secret_signature = format!(
            "sha256={}",
            hex::encode(
                hmac(b"another-secret", body.as_bytes())
                    .finalize()
                    .into_bytes()
            )
        );
        let tampered_signature = sign(b"{\"name\":\"someone else\"}");
        let basic = format!("Basic {SECRET}");
        let bare_hex = sign(body.as_bytes()).replace("sha256=", "");
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![ct],
            vec![ct, ("Authorization", &wrong_bearer)],
            vec![ct, ("Authorization", &prefix_bearer)],
            vec![ct, ("Authorization", "Bearer")],
            vec![ct, ("Authorization", &basic)],
            vec![ct, ("X-Form-Signature", &other_secret_signature)],
            vec![ct, ("X-Form-Signature", &tampered_signature)],
            vec![ct, ("X-Form-Signature", &bare_hex)],
            vec![ct, ("X-Form-Signature", "sha256=not-hex")],
        ];
        for headers in cases {
            let answer = h.post(&headers, body.as_bytes()).await;
            assert_eq!(
                error(&answer),
                err(401, "unauthorized", None),
                "{headers:?}"
            );
            assert_eq!(header(&answer, "www-authenticate"), Some("Bearer"));
            assert!(!answer.body.contains(SECRET));
        }
        assert!(h.store.recorded().is_empty());
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn a_valid_signature_is_enough_even_beside_a_wrong_bearer() {
        let h = harness();
        let body = valid_json().to_string();
        let signature = sign(body.as_bytes());
        let answer = h
            .post(
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", "Bearer nope"),
                    (
                        "X-Form-Signature",
                        &signature.to_uppercase().replace("SHA256=", "sha256="),
                    ),
                ],
                body.as_bytes(),
            )
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }

    #[tokio::test]
    async fn credentials_are_checked_before_the_content_type() {
        let h = harness();
        let answer = h.post(&[("Content-Type", "text/plain")], b"name=Ana").await;
        assert_eq!(answer.status, 401);
    }

    #[tokio::test]
    async fn other_content_types_get_415() {
        let h = harness();
        let body = valid_json().to_string();
        let auth = bearer();
        for content_type in [
            None,
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some("application/json; charset=latin1"),
        ] {
            let mut headers = vec![("Authorization", auth.as_str())];
            headers.extend(content_type.map(|ct| ("Content-Type", ct)));
            let answer = h.post(&headers, body.as_bytes()).await;
            assert_eq!(
                error(&answer),
                err(415, "unsupported_media_type", None),
                "{content_type:?}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_bodies_get_400() {
        let h = harness();
        let auth = bearer();
        for body in [
            &b"{\"name\": \"Ana\""[..],
            b"",
            b"[1, 2]",
            b"\"name\"",
            b"null",
            b"{\"name\": \"\xff\"}",
        ] {
            let answer = h
                .post(
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &auth),
                    ],
                    body,
                )
                .await;
            assert_eq!(
                error(&answer),
                err(400, "malformed_body", None),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for form in ["name=Ana%FF&phone=5512345678&consent=on"] {
            let answer = h.post_form(form).await;
            assert_eq!(error(&answer), err(400, "malformed_body", None), "{form}");
        }
        let signature = sign(b"name=\xff");
        let answer = h
            .post(
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("X-Form-Signature", &signature),
                ],
                b"name=\xff",
            )
            .await;
        assert_eq!(error(&answer), err(400, "malformed_body", None));
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn a_bad_idempotency_key_gets_400_naming_the_header() {
        let h = harness();
        let long = "k".repeat(201);
        for key in ["", "  ", long.as_str(), "a\u{7}b"] {
            let answer = h
                .post_json(&valid_json(), &[("Idempotency-Key", key)])
                .await;
            assert_eq!(
                error(&answer),
                err(400, "invalid_idempotency_key", Some("Idempotency-Key")),
                "{key:?}"
            );
        }
        let answer = h
            .post_json(&valid_json(), &[("Idempotency-Key", &"k".repeat(200))])
            .await;
        assert_eq!(answer.status, 202);
    }

    // ---- fields ----

    #[tokio::test]
    async fn name_is_required_bounded_and_free_of_control_characters() {
        let h = harness();
        let cases = [
            (without(valid_json(), "name"), "missing_field"),
            (with(valid_json(), "name", json!(null)), "missing_field"),
            (with(valid_json(), "name", json!("   ")), "missing_field"),
            (with(valid_json(), "name", json!(42)), "invalid_field"),
            (with(valid_json(), "name", json!(["Ana"])), "invalid_field"),
            (
                with(valid_json(), "name", json!("a".repeat(101))),
                "invalid_field",
            ),
            (
                with(valid_json(), "name", json!("Ana\nBeto")),
                "invalid_field",
            ),
            (
                with(valid_json(), "name", json!("Ana\u{0}")),
                "invalid_field",
            ),
        ];
        for (form, code) in cases {
            let answer = h.post_json(&form, &[]).await;
            assert_eq!(error(&answer), err(422, code, Some("name")), "{form}");
        }
        let hundred = "ñ".repeat(100);
        let answer = h
            .post_json(&with(valid_json(), "name", json!(hundred)), &[])
            .await;
        assert_eq!(answer.status, 202, "100 characters, 200 bytes");
        assert_eq!(h.store.recorded().len(), 1);
    }

    #[tokio::test]
    async fn phone_must_be_a_valid_mobile_with_a_clear_message() {
        let h = harness();
        let cases = [
            (without(valid_json(), "phone"), "missing_field", "required"),
            (
                with(valid_json(), "phone", json!("")),
                "missing_field",
                "required",
            ),
            (
                with(valid_json(), "phone", json!("call me")),
                "invalid_field",
                "not a phone number",
            ),
            (
                with(valid_json(), "phone", json!("55 1234")),
                "invalid_field",
                "not a valid number",
            ),
            (
                with(valid_json(), "phone", json!({"number": "5512345678"})),
                "invalid_field",
                "must be text",
            ),
            (
                with(valid_json(), "phone", json!("1".repeat(41))),
                "invalid_field",
                "at most",
            ),
            // A Mexican toll-free number.
            (
                with(valid_json(), "phone", json!("800 123 4567")),
                "invalid_field",
                "mobile",
            ),
            // A Spanish landline (Madrid).
            (
                with(valid_json(), "phone", json!("+34 912 345 678")),
                "invalid_field",
                "landline",
            ),
        ];
        for (form, code, says) in cases {
            let answer = h.post_json(&form, &[]).await;
            assert_eq!(error(&answer), err(422, code, Some("phone")), "{form}");
            let message = body(&answer)["error"]["message"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(message.contains(says), "{form}: {message}");
        }
        assert!(h.store.recorded().is_empty());
        // Mobiles of other countries, with +; a phone sent as a JSON number.
        for phone in [
            json!("+34 612 345 678"),
            json!("+1 650 555 1234"),
            json!("+55 11 98765-4321"),
            json!(5512345678_u64),
        ] {
            let answer = h
                .post_json(&with(valid_json(), "phone", phone.clone()), &[])
                .await;
            assert_eq!(answer.status, 202, "{phone}: {}", answer.body);
        }
    }

    #[tokio::test]
    async fn consent_must_be_json_true() {
        let h = harness();
        let cases = [
            (without(valid_json(), "consent"), "missing_field"),
            (with(valid_json(), "consent", json!(null)), "missing_field"),
            (with(valid_json(), "consent", json!(false)), "invalid_field"),
            (
                with(valid_json(), "consent", json!("true")),
                "invalid_field",
            ),
            (with(valid_json(), "consent", json!(1)), "invalid_field"),
        ];
        for (form, code) in cases {
            let answer = h.post_json(&form, &[]).await;
            assert_eq!(error(&answer), err(422, code, Some("consent")), "{form}");
        }
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn extra_fields_are_bounded_text_with_plain_names() {
        let h = harness();
        let long_name = "a".repeat(41);
        let cases = [
            (with(valid_json(), "Producto", json!("x")), "Producto"),
            (with(valid_json(), "mi-campo", json!("x")), "mi-campo"),
            (with(valid_json(), "", json!("x")), ""),
            (
                with(valid_json(), &long_name, json!("x")),
                long_name.as_str(),
            ),
            (with(valid_json(), "producto", json!({"a": 1})), "producto"),
            (with(valid_json(), "tags", json!(["a", "b"])), "tags"),
            (with(valid_json(), "notas", json!("x".repeat(501))), "notas"),
            (with(valid_json(), "notas", json!("a\u{1b}[31m")), "notas"),
            (
                with(valid_json(), "customer_name", json!("Impostor")),
                "customer_name",
            ),
        ];
        for (form, field) in cases {
            let answer = h.post_json(&form, &[]).await;
            assert_eq!(
                error(&answer),
                err(422, "invalid_field", Some(field)),
                "{form}"
            );
        }
        assert!(h.store.recorded().is_empty());

        // 500 characters, 40-character names, line breaks and nulls (left out) are fine.
        let mut form = valid_json();
        form["notas"] = json!(format!("{}\r\n\t", "é".repeat(500)));
        form[&"b".repeat(40)] = json!("ok");
        form["vacio"] = json!(null);
        let answer = h.post_json(&form, &[]).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        let fields = &h.store.recorded()[0].fields;
        assert_eq!(fields["notas"].chars().count(), 500, "trimmed");
        assert!(!fields.contains_key("vacio"));
    }

    #[tokio::test]
    async fn at_most_twenty_extra_fields() {
        let h = harness();
        let mut form = valid_json();
        for n in 0..17 {
            form[format!("campo_{n}")] = json!("x");
        }
        // 3 from valid_json + 17 = 20.
        let answer = h.post_json(&form, &[]).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        form["uno_mas"] = json!("x");
        let answer = h.post_json(&form, &[]).await;
        assert_eq!(error(&answer), err(422, "too_many_fields", None));
    }

    #[tokio::test]
    async fn a_field_repeated_in_a_urlencoded_form_is_named() {
        let h = harness();
        let answer = h
            .post_form("name=Ana&phone=5512345678&consent=on&color=rojo&color=azul")
            .await;
        assert_eq!(error(&answer), err(422, "invalid_field", Some("color")));
    }

    #[tokio::test]
    async fn the_first_fault_in_order_is_reported() {
        let h = harness();
        let answer = h
            .post_json(&json!({"phone": "x", "consent": false, "Bad": 1}), &[])
            .await;
        assert_eq!(error(&answer), err(422, "missing_field", Some("name")));
        let answer = h
            .post_json(&json!({"name": "Ana", "phone": "x", "consent": false}), &[])
            .await;
        assert_eq!(error(&answer), err(422, "invalid_field", Some("phone")));
    }

    // ---- idempotency ----

    #[test]
    fn the_derived_key_is_the_same_for_the_same_form_in_the_same_period() {
        let customer = CustomerKey::from_whatsapp_id("525512345678").unwrap();
        let fields = BTreeMap::from([("producto".to_owned(), "auto".to_owned())]);
        let at = noon();
        let key = derived_idempotency_key(&customer, "Ana", &fields, at);
        assert_eq!(key.as_str().len(), 5 + 64);
        assert_eq!(
            key,
            derived_idempotency_key(&customer, "Ana", &fields, at + Duration::from_secs(60)),
            "a minute later, same period"
        );
        let different = [
            derived_idempotency_key(
                &CustomerKey::from_whatsapp_id("525512345679").unwrap(),
                "Ana",
                &fields,
                at,
            ),
            derived_idempotency_key(&customer, "Ana María", &fields, at),
            derived_idempotency_key(
                &customer,
                "Ana",
                &BTreeMap::from([("producto".to_owned(), "moto".to_owned())]),
                at,
            ),
            derived_idempotency_key(&customer, "Ana", &BTreeMap::new(), at),
            derived_idempotency_key(&customer, "Ana", &fields, at + DEDUPLICATION_PERIOD),
            // Shifting bytes between parts changes the key (length-prefixed parts).
            derived_idempotency_key(
                &customer,
                "Ana",
                &BTreeMap::from([("producto".to_owned(), "aut".to_owned())]),
                at,
            ),
            derived_idempotency_key(
                &customer,
                "Ana",
                &BTreeMap::from([("productoa".to_owned(), "uto".to_owned())]),
                at,
            ),
        ];
        for other in &different {
            assert_ne!(key, *other);
        }
    }

    #[tokio::test]
    async fn the_same_form_twice_is_one_submission_and_one_job() {
        let h = harness();
        let first = h.post_json(&valid_json(), &[]).await;
        // The same form, in another order, phone written otherwise: the same submission.
        let again = json!({
            "cliente_nuevo": false, "edad": 34, "producto": "seguro de auto",
            "consent": true, "phone": "+52 1 55 1234 5678", "name": "Lupita Pérez",
        });
        let second = h.post_json(&again, &[]).await;
        assert_eq!((first.status, second.status), (202, 202));
        assert_eq!(
            body(&first)["submission_id"],
            body(&second)["submission_id"]
        );
        let recorded = h.store.recorded();
        assert_eq!(recorded[0].idempotency_key, recorded[1].idempotency_key);
        // Queued still: queued again with the same deduplication id (the queue drops it).
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0], jobs[1]);

        // Once started, a repeat queues nothing and says so.
        let id = SubmissionId(
            body(&first)["submission_id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
        h.store.set_status(id, SubmissionStatus::Started);
        let third = h.post_json(&valid_json(), &[]).await;
        assert_eq!(body(&third)["status"], "started");
        assert_eq!(h.queue.jobs().len(), 2);
        h.store.set_status(id, SubmissionStatus::Failed);
        let fourth = h.post_json(&valid_json(), &[]).await;
        assert_eq!(
            (fourth.status, body(&fourth)["status"].clone()),
            (202, json!("failed"))
        );
        assert_eq!(h.queue.jobs().len(), 2);
    }

    #[tokio::test]
    async fn a_different_field_is_another_submission() {
        let h = harness();
        let first = h.post_json(&valid_json(), &[]).await;
        let second = h
            .post_json(
                &with(valid_json(), "producto", json!("seguro de moto")),
                &[],
            )
            .await;
        assert_ne!(
            body(&first)["submission_id"],
            body(&second)["submission_id"]
        );
        let recorded = h.store.recorded();
        assert_ne!(recorded[0].idempotency_key, recorded[1].idempotency_key);
        assert_eq!(h.queue.jobs().len(), 2);
    }

    #[tokio::test]
    async fn the_idempotency_key_header_wins_and_its_reuse_for_another_phone_is_409() {
        let h = harness();
        let first = h
            .post_json(&valid_json(), &[("Idempotency-Key", "lead-7f3c")])
            .await;
        assert_eq!(first.status, 202);
        assert_eq!(h.store.recorded()[0].idempotency_key.as_str(), "lead-7f3c");
        // Another form with the same key and customer: the first submission.
        let second = h
            .post_json(
                &with(valid_json(), "producto", json!("otro")),
                &[("Idempotency-Key", "lead-7f3c")],
            )
            .await;
        assert_eq!(
            body(&first)["submission_id"],
            body(&second)["submission_id"]
        );
        // The same key for another phone.
        let other = with(valid_json(), "phone", json!("81 2345 6789"));
        let answer = h
            .post_json(&other, &[("Idempotency-Key", "lead-7f3c")])
            .await;
        assert_eq!(
            error(&answer),
            err(409, "idempotency_key_reused", Some("Idempotency-Key"))
        );
        assert_eq!(h.queue.jobs().len(), 2, "nothing queued for the conflict");
    }

    // ---- store and queue failures ----

    #[tokio::test]
    async fn store_unavailable_is_503_with_retry_after_and_other_errors_500_without_internals() {
        let h = harness();
        h.store.fail_next(StoreError::Unavailable(
            "connection refused to 10.0.0.7".into(),
        ));
        let answer = h.post_json(&valid_json(), &[]).await;
        assert_eq!(error(&answer), err(503, "unavailable", None));
        assert_eq!(header(&answer, "retry-after"), Some("5"));
        assert!(!answer.body.contains("10.0.0.7"));

        h.store
            .fail_next(StoreError::Rejected(PostgrestError::from_body(
            400,
            br#"{"code":"22P02","message":"invalid input syntax for type uuid: secret-internal"}"#,
        )));
        let answer = h.post_json(&valid_json(), &[]).await;
        assert_eq!(error(&answer), err(500, "internal_error", None));
        assert!(!answer.body.contains("secret-internal"));
        assert!(!answer.body.contains("22P02"));
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn queue_unavailable_is_503_and_the_retry_queues_the_recorded_submission() {
        let h = harness();
        h.queue
            .fail_next(QueueError::Unavailable("sqs timed out".into()));
        let answer = h.post_json(&valid_json(), &[]).await;
        assert_eq!(error(&answer), err(503, "unavailable", None));
        assert_eq!(header(&answer, "retry-after"), Some("5"));
        assert_eq!(
            h.store.recorded().len(),
            1,
            "recorded before the queue failed"
        );
        assert!(h.queue.jobs().is_empty());

        let retry = h.post_json(&valid_json(), &[]).await;
        assert_eq!(retry.status, 202, "{}", retry.body);
        let jobs = h.queue.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(body(&retry)["submission_id"], jobs[0].1);

        h.queue.fail_next(QueueError::Rejected("too big".into()));
        let answer = h
            .post_json(&with(valid_json(), "producto", json!("otro")), &[])
            .await;
        assert_eq!(error(&answer), err(500, "internal_error", None));
    }

    // ---- CORS ----

    #[tokio::test]
    async fn a_preflight_from_an_allowed_origin_gets_204_with_what_it_may_send() {
        let h = harness();
        let answer = h
            .intake
            .handle(
                "OPTIONS",
                &[
                    ("Origin", ORIGIN),
                    ("Access-Control-Request-Method", "POST"),
                    (
                        "Access-Control-Request-Headers",
                        "content-type,authorization",
                    ),
                ],
                b"",
            )
            .await;
        assert_eq!(answer.status, 204);
        assert!(answer.body.is_empty());
        assert_eq!(header(&answer, "access-control-allow-origin"), Some(ORIGIN));
        assert_eq!(
            header(&answer, "access-control-allow-methods"),
            Some("POST, OPTIONS")
        );
        let allowed = header(&answer, "access-control-allow-headers").unwrap();
        for name in [
            "authorization",
            "content-type",
            "idempotency-key",
            "x-form-signature",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert_eq!(header(&answer, "vary"), Some("origin"));
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn a_preflight_from_another_origin_is_refused_without_cors_headers() {
        let h = harness();
        let answer = h
            .intake
            .handle("OPTIONS", &[("origin", "https://evil.example")], b"")
            .await;
        assert_eq!(error(&answer), err(403, "origin_not_allowed", None));
        assert_eq!(header(&answer, "access-control-allow-origin"), None);
        // No Origin: not a CORS request; says what is allowed.
        let answer = h.intake.handle("OPTIONS", &[], b"").await;
        assert_eq!(answer.status, 204);
        assert_eq!(header(&answer, "allow"), Some("POST, OPTIONS"));
        assert_eq!(header(&answer, "access-control-allow-origin"), None);
    }

    #[tokio::test]
    async fn every_answer_to_an_allowed_origin_carries_the_cors_header() {
        let h = harness();
        let origin = ("Origin", "http://localhost:8080");
        let accepted = h.post_json(&valid_json(), &[origin]).await;
        let refused = h.post_json(&without(valid_json(), "name"), &[origin]).await;
        let unauthorized = h
            .post(&[("Content-Type", "application/json"), origin], b"{}")
            .await;
        let wrong_method = h.intake.handle("GET", &[origin], b"").await;
        for answer in [&accepted, &refused, &unauthorized, &wrong_method] {
            assert_eq!(
                header(answer, "access-control-allow-origin"),
                Some("http://localhost:8080"),
                "{answer:?}"
            );
            assert_eq!(header(answer, "vary"), Some("origin"));
        }
        assert_eq!(
            (
                accepted.status,
                refused.status,
                unauthorized.status,
                wrong_method.status
            ),
            (202, 422, 401, 405)
        );
        // Another origin: the answer is the same, without the header.
        let answer = h
            .post_json(&valid_json(), &[("Origin", "https://evil.example")])
            .await;
        assert_eq!(answer.status, 202);
        assert_eq!(header(&answer, "access-control-allow-origin"), None);
    }

    #[tokio::test]
    async fn no_origins_configured_means_no_cors_and_a_star_allows_any() {
        let h = harness_with(FormConfig {
            allowed_origins: vec![],
            ..config()
        });
        let answer = h.post_json(&valid_json(), &[("Origin", ORIGIN)]).await;
        assert_eq!(answer.status, 202);
        assert_eq!(header(&answer, "access-control-allow-origin"), None);
        assert_eq!(header(&answer, "vary"), None);
        let answer = h.intake.handle("OPTIONS", &[("Origin", ORIGIN)], b"").await;
        assert_eq!(answer.status, 403);

        let h = harness_with(FormConfig {
            allowed_origins: vec!["*".to_owned()],
            ..config()
        });
        let answer = h
            .intake
            .handle("OPTIONS", &[("Origin", "https://anywhere.example")], b"")
            .await;
        assert_eq!(answer.status, 204);
        assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&answer, "vary"), None);
    }
}
