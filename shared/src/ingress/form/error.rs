//! Why the form refused a request, or could not take it: one variant per answer, its status
//! and code written once, in the [`DoorError`] impl.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use super::{ALLOWED_METHODS, AuthError};
use crate::bot_check::BotCheckError;
use crate::domain::{ExtraFieldError, FieldName, NameError};
use crate::ingress::DoorError;
use crate::queue::QueueError;
use crate::store::StoreError;

/// What a 503 asks the caller to wait, in seconds.
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("5");

/// Why the form refused a request, or could not take it. Each variant is one answer: its status
/// and code are in the [`DoorError`] impl, its message is the `Display`.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("{0} is not allowed here: GET the page or POST the form")]
    MethodNotAllowed(Method),
    /// `GET /form` without browser forms configured (`FORM_TURNSTILE_SITE_KEY`).
    #[error("there is no form page here: POST the form from a server")]
    NoPage,
    #[error("the form is {size} bytes; at most {limit} are accepted")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// What was sent instead of JSON or urlencoded UTF-8.
    #[error("{0}: send application/json or application/x-www-form-urlencoded (UTF-8)")]
    UnsupportedMediaType(String),
    #[error("Idempotency-Key must be 1 to 200 characters without control characters")]
    InvalidIdempotencyKey,
    #[error("{0}")]
    MalformedBody(String),
    /// One of the form's own fields is absent or blank.
    #[error("{message}")]
    MissingField {
        field: &'static str,
        message: String,
    },
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// The key was recorded for another customer; `from_header` when the caller chose it.
    #[error(
        "this Idempotency-Key was used for another submission; send a new key for a new submission"
    )]
    IdempotencyKeyReused { from_header: bool },
    /// A browser's post, but browsers' posts are not taken here (no `FORM_TURNSTILE_SITE_KEY`).
    #[error("this form takes no posts from browsers: post it from a server with the shared secret")]
    BrowserFormsDisabled,
    /// A browser's bot-check token is missing, refused, or for another page or action.
    #[error(
        "the form could not be verified as sent by a person ({0}); complete the check and send it again"
    )]
    BotCheckFailed(#[source] BotCheckError),
    /// The bot check could not be made (the provider down): fail closed, the caller may retry.
    #[error("the form could not be verified right now; send it again in a moment")]
    BotCheckUnavailable(#[source] BotCheckError),
    /// The browser's source reached its hourly limit of forms; nothing was recorded.
    #[error(
        "too many forms were sent from this connection; try again in {} minutes",
        retry_after.as_secs().div_ceil(60).max(1)
    )]
    TooManyForms { retry_after: std::time::Duration },
    /// The store or the queue is down: a retry may work, and records nothing twice.
    #[error("{}", .0.retry_message())]
    Unavailable(#[source] Outage),
    /// The store or the queue refused what we sent: our fault, and the cause stays in the log.
    #[error("{}", .0.internal_message())]
    Internal(#[source] Outage),
}

/// What failed behind the form. It goes to the log, never to the caller.
#[derive(Debug, thiserror::Error)]
pub enum Outage {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Outage {
    fn retry_message(&self) -> &'static str {
        match self {
            Self::Store(_) => "could not record the submission; retry",
            Self::Queue(_) => {
                "the submission was recorded but its conversation could not be queued; retry"
            }
        }
    }

    fn internal_message(&self) -> &'static str {
        match self {
            Self::Store(_) => "the submission could not be recorded",
            Self::Queue(_) => "the conversation could not be queued",
        }
    }
}

impl FormError {
    /// 422 for one field.
    pub(super) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: FieldName::shown(field),
            message: message.into(),
        }
    }

    pub(super) fn missing(field: &'static str, message: impl Into<String>) -> Self {
        Self::MissingField {
            field,
            message: message.into(),
        }
    }
}

impl From<NameError> for FormError {
    fn from(error: NameError) -> Self {
        match error {
            NameError::Blank => Self::missing("name", error.to_string()),
            _ => Self::invalid("name", error.to_string()),
        }
    }
}

impl From<ExtraFieldError> for FormError {
    fn from(error: ExtraFieldError) -> Self {
        Self::invalid(error.field(), error.to_string())
    }
}

impl DoorError for FormError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NoPage => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidIdempotencyKey | Self::MalformedBody(_) => StatusCode::BAD_REQUEST,
            Self::MissingField { .. } | Self::InvalidField { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::IdempotencyKeyReused { .. } => StatusCode::CONFLICT,
            Self::BrowserFormsDisabled | Self::BotCheckFailed(_) => StatusCode::FORBIDDEN,
            Self::BotCheckUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyForms { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::NoPage => "no_page",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Unauthorized(_) => "unauthorized",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::MalformedBody(_) => "malformed_body",
            Self::MissingField { .. } => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
            Self::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            Self::BrowserFormsDisabled => "browser_forms_disabled",
            Self::BotCheckFailed(_) => "bot_check_failed",
            Self::BotCheckUnavailable(_) => "bot_check_unavailable",
            Self::TooManyForms { .. } => "too_many_forms",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidIdempotencyKey | Self::IdempotencyKeyReused { from_header: true } => {
                Some("Idempotency-Key")
            }
            Self::MissingField { field, .. } => Some(field),
            Self::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }

    fn add_headers(&self, headers: &mut HeaderMap) {
        match self {
            Self::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, ALLOWED_METHODS);
            }
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unavailable(_) | Self::BotCheckUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS);
            }
            Self::TooManyForms { retry_after } => {
                // Whole seconds, rounded up: a retry is never early.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{body, err, header, refusal};
    use super::*;
    use crate::store::PostgrestError;

    #[test]
    fn every_refusal_answers_the_error_shape_with_its_headers() {
        let store_down = Outage::Store(StoreError::Unavailable("10.0.0.7 refused".into()));
        let rejected = Outage::Store(StoreError::Rejected(PostgrestError::from_body(
            400,
            br#"{"code":"22P02","message":"secret-internal"}"#,
        )));
        let key = Some("Idempotency-Key");
        for (error, expected) in [
            (
                FormError::MethodNotAllowed(Method::PUT),
                err(405, "method_not_allowed", None),
            ),
            (FormError::NoPage, err(404, "no_page", None)),
            (
                FormError::PayloadTooLarge { size: 2, limit: 1 },
                err(413, "payload_too_large", None),
            ),
            (AuthError::Missing.into(), err(401, "unauthorized", None)),
            (
                AuthError::MalformedSignature.into(),
                err(401, "unauthorized", None),
            ),
            (
                AuthError::Stale { seconds: 301 }.into(),
                err(401, "unauthorized", None),
            ),
            (
                AuthError::FromTheFuture { seconds: 301 }.into(),
                err(401, "unauthorized", None),
            ),
            (
                FormError::UnsupportedMediaType("x".into()),
                err(415, "unsupported_media_type", None),
            ),
            (
                FormError::InvalidIdempotencyKey,
                err(400, "invalid_idempotency_key", key),
            ),
            (
                FormError::MalformedBody("x".into()),
                err(400, "malformed_body", None),
            ),
            (
                NameError::Blank.into(),
                err(422, "missing_field", Some("name")),
            ),
            (
                NameError::TooLong.into(),
                err(422, "invalid_field", Some("name")),
            ),
            (
                NameError::Link.into(),
                err(422, "invalid_field", Some("name")),
            ),
            (
                NameError::PhoneNumber.into(),
                err(422, "invalid_field", Some("name")),
            ),
            (
                ExtraFieldError::Reserved("customer_name".into()).into(),
                err(422, "invalid_field", Some("customer_name")),
            ),
            (
                FormError::IdempotencyKeyReused { from_header: true },
                err(409, "idempotency_key_reused", key),
            ),
            (
                FormError::IdempotencyKeyReused { from_header: false },
                err(409, "idempotency_key_reused", None),
            ),
            (
                FormError::Unavailable(store_down),
                err(503, "unavailable", None),
            ),
            (
                FormError::BrowserFormsDisabled,
                err(403, "browser_forms_disabled", None),
            ),
            (
                FormError::BotCheckFailed(BotCheckError::Refused(vec![
                    "timeout-or-duplicate".into(),
                ])),
                err(403, "bot_check_failed", None),
            ),
            (
                FormError::BotCheckUnavailable(BotCheckError::Unavailable(
                    "10.0.0.7 refused".into(),
                )),
                err(503, "bot_check_unavailable", None),
            ),
            (
                FormError::TooManyForms {
                    retry_after: std::time::Duration::from_millis(1_799_001),
                },
                err(429, "too_many_forms", None),
            ),
            (
                FormError::Internal(rejected),
                err(500, "internal_error", None),
            ),
        ] {
            assert_eq!(refusal(&error), expected, "{error:?}");
            let response = error.to_response();
            assert_eq!(response.status(), error.status());
            assert_eq!(
                header(&response, header::CONTENT_TYPE),
                Some("application/json")
            );
            let answer = body(&response)["error"].clone();
            assert_eq!(answer["code"], error.code());
            assert_eq!(answer["message"], error.to_string());
            assert_eq!(answer["field"].as_str(), error.field());
            for internal in ["10.0.0.7", "secret-internal", "22P02"] {
                assert!(!response.body().contains(internal), "{}", response.body());
            }
            let extra = match error {
                FormError::MethodNotAllowed(_) => Some((header::ALLOW, "GET, POST")),
                FormError::Unauthorized(_) => Some((header::WWW_AUTHENTICATE, "Bearer")),
                FormError::Unavailable(_) | FormError::BotCheckUnavailable(_) => {
                    Some((header::RETRY_AFTER, "5"))
                }
                FormError::TooManyForms { .. } => Some((header::RETRY_AFTER, "1800")),
                _ => None,
            };
            if let Some((name, value)) = extra {
                assert_eq!(header(&response, name), Some(value), "{error:?}");
            }
        }
    }
}
