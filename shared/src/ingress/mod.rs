//! The doors of the bridge: Meta's webhook and the web form. Each takes the request as `http`
//! types and answers an `http::Response`, so `lambda_http` and the local axum server hand their
//! requests straight through. Each door has one error enum; its status and code are written
//! once, in its [`DoorError`] impl, and every refusal answers the same JSON shape.

pub mod form;
pub mod retell;
pub mod staff;
pub mod whatsapp;

use http::StatusCode;
use http::header::{self, AsHeaderName, HeaderMap, HeaderValue};

/// The address a request came from, as the entry point saw it (API Gateway's
/// `requestContext.http.sourceIp`, the dev server's socket), put in the request's extensions:
/// the form limits browsers' posts per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceIp(pub std::net::IpAddr);

/// What every door answers. The body is text: JSON, a challenge, or nothing.
pub type Response = http::Response<String>;

/// What a door's error enum tells the caller: the status, a stable code and, where one field
/// or header is at fault, its name. The message is the error's `Display`.
pub trait DoorError: std::error::Error {
    fn status(&self) -> StatusCode;

    /// A stable, machine-readable code (`unauthorized`, `invalid_field`, …).
    fn code(&self) -> &'static str;

    /// The field or header at fault, when there is one.
    fn field(&self) -> Option<&str> {
        None
    }

    /// Headers the refusal carries besides the body's type (`Retry-After`, `Allow`, …).
    fn add_headers(&self, _headers: &mut HeaderMap) {}

    /// `{"error": {"code", "message", "field"?}}` with the status and headers above.
    fn to_response(&self) -> Response {
        let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if let Some(field) = self.field() {
            error["field"] = serde_json::json!(field);
        }
        let mut response = json_response(self.status(), &serde_json::json!({ "error": error }));
        self.add_headers(response.headers_mut());
        response
    }
}

/// A JSON answer.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    with_content_type(status, body.to_string(), "application/json")
}

/// A plain-text answer.
pub fn text_response(status: StatusCode, body: impl Into<String>) -> Response {
    with_content_type(status, body.into(), "text/plain; charset=utf-8")
}

/// An answer without a body (a 204).
pub fn empty_response(status: StatusCode) -> Response {
    let mut response = Response::new(String::new());
    *response.status_mut() = status;
    response
}

fn with_content_type(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A header's value as text; a value that is not visible ASCII cannot be a credential, a type
/// or an origin, and reads as absent. The first of repeated headers wins.
pub fn header_text(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}
