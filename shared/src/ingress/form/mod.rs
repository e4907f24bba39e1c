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
//!
//! The steps live beside this file: `auth` (the credentials), `parse` (content type and
//! syntax), `fields` (the form's fields), `submit` (idempotency, recording, queueing) and
//! `cors` (what browsers are told); `error` has [`FormError`], every answer but a 202 or 204.

mod auth;
mod cors;
mod error;
mod fields;
mod parse;
mod submit;
#[cfg(test)]
mod testing;

use std::time::SystemTime;

use http::Method;
use http::header::{self, HeaderValue};

use super::{DoorError, Response, header_text};
use crate::config::FormConfig;
use crate::domain::{CustomerName, ExtraField, FieldName};
use crate::queue::TurnQueue;
use crate::store::SessionStore;

pub use crate::domain::RESERVED_FIELDS;
pub use auth::{AuthError, SIGNATURE_HEADER};
pub use error::{FormError, Outage};
pub use fields::ValidForm;
pub use parse::read_form;
pub use submit::{DEDUPLICATION_PERIOD, IDEMPOTENCY_KEY_HEADER, derived_idempotency_key};

/// The longest name, in characters (after trimming).
pub const MAX_NAME_CHARS: usize = CustomerName::MAX_CHARS;
/// How many fields besides `name`, `phone` and `consent` a form may carry.
pub const MAX_EXTRA_FIELDS: usize = 20;
/// The longest extra field name; names are `[a-z0-9_]`.
pub const MAX_FIELD_NAME_CHARS: usize = FieldName::MAX_CHARS;
/// The longest extra field value, in characters.
pub const MAX_FIELD_VALUE_CHARS: usize = ExtraField::MAX_VALUE_CHARS;

/// The methods the form answers.
const ALLOWED_METHODS: HeaderValue = HeaderValue::from_static("POST, OPTIONS");

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

    /// Answers one request: `lambda_http`'s and axum's requests pass straight through. Every
    /// answer to an allowed origin carries the CORS headers, refusals included.
    #[tracing::instrument(
        name = "form_intake",
        skip_all,
        fields(
            method = %request.method(),
            bytes = request.body().as_ref().len(),
            customer = tracing::field::Empty,
            submission_id = tracing::field::Empty,
        )
    )]
    pub async fn handle<B: AsRef<[u8]>>(&self, request: &http::Request<B>) -> Response {
        let cors = cors::Cors::of(&self.config, request.headers());
        let mut response = self.answer(request, &cors).await.unwrap_or_else(|error| {
            log(&error);
            error.to_response()
        });
        cors.decorate(response.headers_mut());
        response
    }

    /// The checks in their documented order; the first that fails is the answer.
    async fn answer<B: AsRef<[u8]>>(
        &self,
        request: &http::Request<B>,
        cors: &cors::Cors,
    ) -> Result<Response, FormError> {
        match *request.method() {
            Method::POST => {}
            Method::OPTIONS => return cors.preflight(),
            ref other => return Err(FormError::MethodNotAllowed(other.clone())),
        }
        let (headers, body) = (request.headers(), request.body().as_ref());
        if body.len() > self.config.max_body_bytes {
            return Err(FormError::PayloadTooLarge {
                size: body.len(),
                limit: self.config.max_body_bytes,
            });
        }
        auth::authenticate(&self.config.shared_secret, headers, body)?;
        let encoding = parse::Encoding::of(header_text(headers, &header::CONTENT_TYPE))?;
        let client_key = submit::client_key(headers)?;
        let form = encoding.read(body, self.config.default_country)?;
        self.submit(form, client_key).await
    }
}

/// Refusals at WARN (status, code and field: the message may quote the customer's input),
/// failures at ERROR with their cause, which the answer never shows.
fn log(error: &FormError) {
    let (status, code) = (error.status().as_u16(), error.code());
    match error {
        FormError::Unavailable(cause) | FormError::Internal(cause) => {
            tracing::error!(status, code, %cause, "form failed");
        }
        refusal => tracing::warn!(status, code, field = refusal.field(), "form refused"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::header::{AUTHORIZATION, CONTENT_TYPE};
    use serde_json::json;

    use super::testing::*;
    use super::*;
    use crate::queue::TurnJob;

    #[tokio::test]
    async fn a_valid_json_form_is_recorded_queued_and_answered_202() {
        let h = harness();
        let response = h.json(&valid_json()).await;
        assert_eq!(response.status(), 202, "{}", response.body());
        assert_eq!(header(&response, CONTENT_TYPE), Some("application/json"));
        let reply = body(&response);
        assert_eq!(reply["status"], "queued");

        let recorded = h.store.recorded();
        assert_eq!(recorded.len(), 1);
        let submission = &recorded[0];
        assert_eq!(submission.name.as_str(), "Lupita Pérez", "trimmed");
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
        let response = h.urlencoded(form).await;
        assert_eq!(response.status(), 202, "{}", response.body());
        let submission = &h.store.recorded()[0];
        assert_eq!(submission.name.as_str(), "José Luis");
        assert_eq!(submission.customer_key.as_str(), "528123456789");
        assert_eq!(submission.fields["ciudad"], "Monterrey");
        assert_eq!(submission.fields["comentario"], "hola\nadiós");
        assert_eq!(h.queue.jobs().len(), 1);
    }

    #[tokio::test]
    async fn content_type_parameters_and_scheme_case_do_not_matter() {
        let h = harness();
        let request = post()
            .header(CONTENT_TYPE, "Application/JSON; charset=UTF-8")
            .header(AUTHORIZATION, bearer());
        let response = h.send(request, valid_json().to_string()).await;
        assert_eq!(response.status(), 202, "{}", response.body());
        let request = post()
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .header(AUTHORIZATION, format!("bearer {SECRET}"));
        let response = h.send(request, "name=Ana&phone=5512345678&consent=1").await;
        assert_eq!(response.status(), 202, "{}", response.body());
    }

    #[tokio::test]
    async fn other_methods_get_405_naming_the_allowed_ones() {
        let h = harness();
        let lowercase_post = Method::from_bytes(b"post").unwrap();
        for method in [Method::GET, Method::PUT, Method::DELETE, lowercase_post] {
            let response = h.send(post().method(method), "").await;
            assert_eq!(error(&response), err(405, "method_not_allowed", None));
            assert_eq!(header(&response, header::ALLOW), Some("POST, OPTIONS"));
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
        let response = h.json(&big).await;
        assert_eq!(error(&response), err(413, "payload_too_large", None));
        // The default limit is 64 KiB.
        let h = harness();
        let response = h
            .json(&with(valid_json(), "notas", json!("x".repeat(70_000))))
            .await;
        assert_eq!(error(&response), err(413, "payload_too_large", None));
        assert!(h.store.recorded().is_empty());
    }

    #[tokio::test]
    async fn missing_or_wrong_credentials_get_401_with_www_authenticate() {
        let h = harness();
        let body = valid_json().to_string();
        for request in [
            post().header(CONTENT_TYPE, "application/json"),
            post()
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, format!("Bearer {SECRET}x")),
        ] {
            let response = h.send(request, body.clone()).await;
            assert_eq!(error(&response), err(401, "unauthorized", None));
            assert_eq!(header(&response, header::WWW_AUTHENTICATE), Some("Bearer"));
            assert!(!response.body().contains(SECRET));
        }
        assert!(h.store.recorded().is_empty());
        assert!(h.queue.jobs().is_empty());
    }

    #[tokio::test]
    async fn credentials_are_checked_before_the_content_type() {
        let h = harness();
        let request = post().header(CONTENT_TYPE, "text/plain");
        assert_eq!(h.send(request, "name=Ana").await.status(), 401);
    }

    #[tokio::test]
    async fn each_step_answers_in_the_documented_order() {
        let h = harness();
        let wrong_type = post()
            .header(CONTENT_TYPE, "text/plain")
            .header(AUTHORIZATION, bearer());
        // Content type before the Idempotency-Key, the key before the syntax, the syntax
        // before the fields.
        let bad_key = post_json().header(IDEMPOTENCY_KEY_HEADER, " ");
        for (request, body, expected) in [
            (wrong_type, "{", err(415, "unsupported_media_type", None)),
            (
                bad_key,
                "{",
                err(400, "invalid_idempotency_key", Some("Idempotency-Key")),
            ),
            (post_json(), "{", err(400, "malformed_body", None)),
            (
                post_json(),
                r#"{"phone":"x"}"#,
                err(422, "missing_field", Some("name")),
            ),
        ] {
            assert_eq!(error(&h.send(request, body).await), expected, "{body}");
        }
        assert!(h.store.recorded().is_empty());
    }
}
